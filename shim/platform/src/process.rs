//! Processes: fork, wait, pidfds, process groups, exec, resource limits, and the zygote's
//! command socket. Everything the supervision layer does to processes goes through here.
//!
//! # Safety
//! Each wrapper hands the kernel only locals, caller-owned fds or slices whose lengths it
//! passes itself. None allocates except [`exec`] (documented there), so they may run in a
//! forked child and, where marked, in a signal handler. [`fork`] is the one `unsafe fn`: what
//! the child may do depends on the caller's process, which only the caller knows.

#![allow(unsafe_code)]

use std::ffi::CString;

/// What [`fork`] returned, on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the new child.
    Child,
    /// In the parent: the child's pid.
    Parent(i32),
}

/// fork(2).
///
/// # Safety
/// In a process with other threads, the child may only make async-signal-safe calls until it
/// execs or exits (another thread may have held a lock, malloc's for one, which stays held in
/// the child). The caller says why its child is safe: the process is single-threaded (the
/// program before `main`, the zygote, a frozen checkpoint), or the child only execs.
pub unsafe fn fork() -> std::io::Result<Forked> {
    // SAFETY: the caller upholds the child's restrictions (see above).
    match unsafe { libc::fork() } {
        0 => Ok(Forked::Child),
        pid if pid > 0 => Ok(Forked::Parent(pid)),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// waitpid(2) for `pid` with `flags`: `Some((pid, raw status))` for a child that changed
/// state, `Some((0, 0))` when `WNOHANG` found none, `None` on error (no such child).
pub fn waitpid(pid: i32, flags: i32) -> Option<(i32, i32)> {
    let mut st = 0;
    loop {
        // SAFETY: the status goes into a local.
        let r = unsafe { libc::waitpid(pid, &mut st, flags) };
        if r < 0 && crate::sys::errno() == libc::EINTR {
            continue;
        }
        return (r >= 0).then_some((r, if r == 0 { 0 } else { st }));
    }
}

/// pidfd_open(2): a pidfd for `pid`, or -1.
pub fn pidfd_open(pid: i32) -> i32 {
    // SAFETY: pidfd_open has no memory arguments.
    unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32 }
}

/// pidfd_send_signal(2) with no siginfo; false when the kernel refused.
pub fn pidfd_send_signal(pidfd: i32, sig: i32) -> bool {
    // SAFETY: no memory arguments (a NULL siginfo).
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, 0usize, 0u32) == 0 }
}

/// A close-on-exec `SOCK_SEQPACKET` socket pair: (one end, the other end).
pub fn seqpacket_pair() -> std::io::Result<(i32, i32)> {
    let mut sv = [0i32; 2];
    // SAFETY: socketpair fills the two fds of the local array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((sv[0], sv[1]))
}

/// Sends `bytes` as one message (no SIGPIPE when the peer is gone); true when all went.
/// Async-signal-safe.
pub fn send(fd: i32, bytes: &[u8]) -> bool {
    // SAFETY: reading `bytes.len()` bytes of the caller's slice.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    n >= 0 && n as usize == bytes.len()
}

/// Receives one message into `buf`: its length, 0 at end of stream, or the error (EINTR
/// included: the caller decides).
pub fn recv(fd: i32, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: writing at most `buf.len()` bytes into the caller's slice.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One fd to wait on with [`poll`], and whether it became readable (or hung up).
pub type PollFd = libc::pollfd;

/// An entry of a [`poll`] set: `fd`, waiting for input.
pub fn readable(fd: i32) -> PollFd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// poll(2) on `fds` for up to `ms` (-1: no limit): how many are ready, or -1 (EINTR too).
pub fn poll(fds: &mut [PollFd], ms: i32) -> i32 {
    // SAFETY: the kernel writes `revents` of the caller's entries, `fds.len()` of them.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
}

/// Makes the calling process the leader of a new process group (its pid).
pub fn new_process_group() {
    // SAFETY: no memory arguments.
    unsafe { libc::setpgid(0, 0) };
}

/// Sets both limits of resource `res` (a `libc::RLIMIT_*`) to `v`; false when refused.
pub fn set_limit(res: libc::__rlimit_resource_t, v: u64) -> bool {
    let lim = libc::rlimit {
        rlim_cur: v as libc::rlim_t,
        rlim_max: v as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a local struct.
    unsafe { libc::setrlimit(res, &lim) == 0 }
}

/// Flushes every stdio stream of the process (what a module printed), then ends it at once
/// with `code`, without the program's atexit handlers.
pub fn flush_and_exit(code: i32) -> ! {
    // SAFETY: fflush(NULL) flushes every stream; _exit ends the process.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}

extern "C" {
    fn __fpurge(f: *mut libc::FILE);
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
}

/// Drops whatever stdout and stderr hold buffered, unwritten: in a child forked from the
/// program, so that a helper that flushes at exit does not print the program's output a
/// second time. Takes no lock (for a freshly forked, single-threaded child).
pub fn purge_stdio() {
    // SAFETY: stdout/stderr are glibc's FILE pointers, read once each; __fpurge only empties
    // their buffers.
    unsafe {
        __fpurge(stdout);
        __fpurge(stderr);
    }
}

/// Clears close-on-exec on `fd`, so an exec keeps it; false when refused.
pub fn keep_across_exec(fd: i32) -> bool {
    // SAFETY: no memory arguments.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) == 0 }
}

/// Executes `argv[0]` (searched in PATH) with `argv` and the environment `envp`; returns only
/// when that failed, with the error. Allocates the two pointer arrays: call it only where
/// allocation is safe (a single-threaded child, or before any fork).
pub fn exec(argv: &[CString], envp: &[CString]) -> std::io::Error {
    let Some(first) = argv.first() else {
        return std::io::Error::from_raw_os_error(libc::EINVAL);
    };
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NUL-terminated strings owned by the caller's CStrings, in NULL-terminated
    // arrays that live until execvpe returns (it returns only on failure).
    unsafe { libc::execvpe(first.as_ptr(), a.as_ptr(), e.as_ptr()) };
    std::io::Error::last_os_error()
}

/// Registers `f` to run in the child after every `fork` of this process (pthread_atfork).
pub fn at_fork_child(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" function; glibc keeps the pointer.
    unsafe { libc::pthread_atfork(None, None, Some(f)) };
}

/// Registers `f` to run when the process exits through `exit` (atexit): before the loader
/// runs the objects' destructors when it is registered after `__libc_start_main` began.
pub fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: registering a plain extern "C" function; glibc keeps the pointer.
    unsafe { libc::atexit(f) == 0 }
}

/// Sends `sig` to the calling thread (tgkill): for a handler that re-raises the signal it
/// caught. Async-signal-safe.
pub fn raise_on_this_thread(sig: i32) {
    // SAFETY: getpid/gettid/tgkill have no memory arguments.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            sig,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_is_waited_for_with_its_status() {
        // SAFETY: the child only exits (async-signal-safe).
        match unsafe { fork() }.expect("fork") {
            Forked::Child => crate::sys::exit_now(7),
            Forked::Parent(pid) => {
                let (p, st) = waitpid(pid, 0).expect("waited");
                assert_eq!(p, pid);
                assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7);
                assert_eq!(waitpid(pid, libc::WNOHANG), None, "already reaped");
            }
        }
    }

    #[test]
    fn a_seqpacket_pair_keeps_message_boundaries() {
        let (a, b) = seqpacket_pair().expect("pair");
        assert!(send(a, &[1, 2, 3]));
        assert!(send(a, &[4]));
        let mut buf = [0u8; 16];
        assert_eq!(recv(b, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], &[1, 2, 3]);
        let mut fds = [readable(b)];
        assert_eq!(poll(&mut fds, 1000), 1);
        assert_eq!(recv(b, &mut buf).unwrap(), 1);
        crate::sys::close(a);
        assert_eq!(recv(b, &mut buf).unwrap(), 0, "end of stream");
        crate::sys::close(b);
    }
}
