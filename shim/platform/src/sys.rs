//! Thin, safe wrappers of libc calls that several layers need (the platform layer's start: new
//! code calls these instead of naming libc).
//!
//! # Safety
//! Each wrapper passes only locals or caller-checked values to the kernel or the loader and
//! returns owned data; none of them allocates, so they may run after `fork`.

#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};

/// What the loader knows about an address: the object's path and load base.
pub struct ObjectOf {
    pub path: Option<&'static CStr>,
    pub base: usize,
}

/// `dladdr`: the loaded object that contains `addr`, if any.
pub fn dladdr(addr: usize) -> Option<ObjectOf> {
    // SAFETY: Dl_info is plain data (pointers and integers); all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's lists and fills the local `info`.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 {
        return None;
    }
    let path = if info.dli_fname.is_null() {
        None
    } else {
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader, which keeps it while
        // the object is loaded (the objects we ask about are never unloaded: our own, or a
        // module we route).
        Some(unsafe { CStr::from_ptr(info.dli_fname) })
    };
    Some(ObjectOf {
        path,
        base: info.dli_fbase as usize,
    })
}

/// Receives exactly one native-endian `i32` from a stream socket, retrying on EINTR.
/// None on end of stream, error or a short read.
pub fn recv_i32(fd: i32) -> Option<i32> {
    let mut v = 0i32;
    loop {
        // SAFETY: receiving at most 4 bytes into the local `v`.
        let n = unsafe { libc::recv(fd, (&mut v as *mut i32).cast(), 4, 0) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return (n == 4).then_some(v);
    }
}

/// Runs the body of a freshly forked child of ours (zygote, helper, checkpoint) and never
/// returns into the code that forked it: a panic ends the child with status 70 instead of
/// unwinding into the program's `main`, which would then run a second time (a panic in an
/// exec-mode helper's plan once did exactly that).
pub fn child_entry(body: impl FnOnce()) -> ! {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    // SAFETY: leaving the child without running anything of the program's.
    unsafe { libc::_exit(70) }
}

/// The calling process's pid.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// The parent's pid.
pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// Ends this process at once with `code`: no atexit handlers, no stdio flush (`_exit`).
/// Async-signal-safe; the way out of a forked child that must not run the program's code.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Closes `fd`, which the caller owns and gives up; errors (EBADF, EINTR) are ignored.
pub fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: closing a descriptor the caller owns; nothing of ours refers to it after.
        unsafe { libc::close(fd) };
    }
}

/// Sends `sig` to the process `pid` (0: only checks that it exists); false when it failed.
/// Only a single process: a pid that is not positive (a process group, every process) is
/// refused, so that a stale or zero pid cannot signal more than one process.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions; pid > 0 names one process.
    pid > 0 && unsafe { libc::kill(pid, sig) } == 0
}

/// Kills the process `pid` (SIGKILL) and waits for it, `flags` as `waitpid` takes them
/// (`__WALL` for a child that is not ours to reap in the usual way). Single processes only.
pub fn kill_and_reap(pid: i32, flags: i32) {
    if kill(pid, libc::SIGKILL) {
        let mut st = 0;
        // SAFETY: waitpid writes the local status word.
        unsafe { libc::waitpid(pid, &mut st, flags) };
    }
}

/// Names the calling thread (the main thread's name is the process's in `ps`); the kernel
/// keeps the first 15 bytes.
pub fn set_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which a CStr is.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// The signal this process gets when its parent dies (`PR_SET_PDEATHSIG`; 0: none).
pub fn set_parent_death_signal(sig: i32) {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number, no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig) };
}

/// Makes this process die (SIGKILL) with its parent, and ends it now when the parent died
/// before that was in place (then it has been reparented already).
pub fn die_with_parent() {
    let parent = getppid();
    set_parent_death_signal(libc::SIGKILL);
    if getppid() != parent {
        exit_now(0);
    }
}

/// The real-time clock as (seconds, nanoseconds) since the epoch (async-signal-safe, unlike
/// `SystemTime::now` it is documented to be: `clock_gettime` on a local).
pub fn realtime() -> (u64, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec.max(0) as u64, ts.tv_nsec.max(0) as u64)
}

/// Raises `sig` in the calling thread (async-signal-safe).
pub fn raise(sig: i32) {
    // SAFETY: raise has no memory preconditions.
    unsafe { libc::raise(sig) };
}

/// Writes `bytes` to stderr with one `write` (no buffer, no lock: usable after fork and in
/// signal handlers); a short or failed write is ignored.
pub fn write_stderr(bytes: &[u8]) {
    // SAFETY: the pointer and length come from one live slice.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// Waits up to `ms` for `fd` (a pidfd) to become readable.
pub fn wait_readable(fd: i32, ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one local pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// Waits up to `ms` for `fd` (a pidfd) to become readable, then closes it.
pub fn wait_then_close(fd: i32, ms: i32) {
    wait_readable(fd, ms);
    // SAFETY: closing an fd the caller owns and gives up.
    unsafe { libc::close(fd) };
}

/// Ends this process the way another one ended: by `sig`'s default action (the caller checks
/// that it ends a process), or with the exit status in `status`, or 70 when neither is known.
pub fn end_like(sig: i32, status: i32) -> ! {
    if sig != 0 {
        // SAFETY: restoring the default action and unblocking `sig` only affect this thread's
        // signal state; `set` is a local initialised by sigemptyset.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
            libc::_exit(128 + sig);
        }
    }
    // SAFETY: _exit has no preconditions.
    unsafe {
        if status >= 0 && libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        libc::_exit(70)
    }
}

/// The CPU the calling thread runs on now (a hint: it may move right after).
pub fn current_cpu() -> Option<u32> {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    u32::try_from(c).ok()
}

/// A pseudo-random number from libc's `rand` (for choices that need no quality: which
/// sampled replica takes a call).
pub fn rand() -> u32 {
    // SAFETY: rand has no preconditions.
    unsafe { libc::rand() as u32 }
}

/// Gives the CPU to another runnable thread, if any (async-signal-safe, takes no lock).
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// The calling thread's CPU affinity mask.
pub fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size is the local set's.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

/// Sets the calling thread's CPU affinity mask; false when the kernel refused.
pub fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: pid 0 is the calling thread; the set is a live local of the caller's.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// True when `cpu` is in `set`.
pub fn cpu_in(set: &libc::cpu_set_t, cpu: u32) -> bool {
    (cpu as usize) < libc::CPU_SETSIZE as usize && {
        // SAFETY: CPU_ISSET reads one bit of the set, in bounds (checked above).
        unsafe { libc::CPU_ISSET(cpu as usize, set) }
    }
}

/// The set holding `cpu` alone.
pub fn only_cpu(cpu: u32) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if (cpu as usize) < libc::CPU_SETSIZE as usize {
        // SAFETY: CPU_SET writes one bit of the local set, in bounds (checked above).
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    }
    set
}

/// This thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location has no preconditions and returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's errno.
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

/// Ends this process with SIGABRT (a crash its supervisor sees as one).
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// True when `fd` (a pidfd) is readable now: its process has ended. Never blocks.
pub fn readable_now(fd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one local pollfd, without blocking.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}

/// The calling thread's stack mapping [lo, hi), from `pthread_getattr_np` (for the main
/// thread glibc reads /proc/self/maps once). None when glibc cannot say.
pub fn thread_stack() -> Option<(u64, u64)> {
    // SAFETY: pthread_attr_t is plain data, filled by pthread_getattr_np for this thread and
    // destroyed after use; the out-pointers are locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (r == 0).then(|| (addr as u64, addr as u64 + size as u64))
    }
}

/// Copies up to `dst.len()` bytes of this process's memory at `src` into `dst` with
/// `process_vm_readv`: unmapped or unreadable memory is an error (or a short count), never a
/// fault. Returns the bytes copied, or -1.
pub fn read_own_memory(pid: i32, src: u64, dst: &mut [u8]) -> isize {
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src as *mut libc::c_void,
        iov_len: dst.len(),
    };
    // SAFETY: the kernel checks the source range; the destination is the caller's slice.
    unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) }
}

extern "C" {
    fn __fpending(f: *mut libc::FILE) -> libc::size_t;
    static mut stdout: *mut libc::FILE;
}

/// Writes out what the program's `stdout` holds, if anything: output a helper then writes
/// to the same descriptor comes after it, as it would without fracture.
pub fn flush_stdout_if_pending() {
    // SAFETY: glibc's own stdout FILE; __fpending only reads its buffer pointers, fflush
    // takes the stream's lock as any caller does.
    unsafe {
        let f = stdout;
        if !f.is_null() && __fpending(f) > 0 {
            libc::fflush(f);
        }
    }
}

/// Makes this process's `stdout` unbuffered (a helper whose module writes to it: each write
/// reaches the descriptor at once, in order with the program's).
pub fn stdout_unbuffered() {
    // SAFETY: glibc's own stdout FILE, before anything was written to it in this process.
    unsafe {
        let f = stdout;
        if !f.is_null() {
            libc::setvbuf(f, std::ptr::null_mut(), libc::_IONBF, 0);
        }
    }
}
