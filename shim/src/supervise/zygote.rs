//! The zygote and the helpers it forks.
//!
//! Before `main` (single-threaded, every constructor run), the program forks an intermediate
//! child that forks the zygote and exits at once, so the zygote is not the program's child: a
//! program that `wait`s for its own children never sees it. The zygote keeps the pristine
//! state; on a SPAWN command (over a close-on-exec SOCK_SEQPACKET pair) it forks a helper,
//! answers its pid, and watches it through a pidfd: when a helper ends, it writes the wait
//! status into the helper's region and wakes every program thread waiting on that region.
//! When the program exits or execs, its end of the socket closes: the zygote asks its helpers
//! to stop (region `shutdown`), gives them a moment to flush, kills what remains, and exits.
//! Helpers die with the zygote (PR_SET_PDEATHSIG; the zygote is single-threaded).
//!
//! # Safety
//! Runs in freshly forked children of a single-threaded process: no lock can be held by a
//! thread that no longer exists. Raw syscalls are used on fds this module owns.

#![allow(unsafe_code)]

use crate::plan::runtime::Runtime;
use crate::transport::region::{self, STATE_ALIVE, STATE_DEAD, STATE_NONE};
use std::sync::atomic::{AtomicI32, Ordering::*};
use std::sync::Mutex;

const CMD_SPAWN: u32 = 1;

struct Conn {
    fd: i32,
}

static CONN: Mutex<Option<Conn>> = Mutex::new(None);

/// The zygote's pid, which is also the process group of every helper and checkpoint (the
/// zygote makes its own group): told by the zygote itself over the socket at start.
static ZYGOTE: AtomicI32 = AtomicI32::new(0);

fn pidfd_open(pid: i32) -> i32 {
    // SAFETY: pidfd_open has no memory arguments.
    unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32 }
}

/// Forks the zygote (through an intermediate child). Called once, before `main`.
pub fn start(rt: &'static Runtime) -> std::io::Result<()> {
    crate::supervise::address::prepare_program(rt).map_err(std::io::Error::other)?;
    let mut sv = [0i32; 2];
    // SAFETY: socketpair fills two fds.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fork in a single-threaded process (before main).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the intermediate child: fork again and leave.
        unsafe {
            libc::close(sv[0]);
            let z = libc::fork();
            if z == 0 {
                if let Some(top) = crate::supervise::address::zygote_side() {
                    // On a stack of its own: the main thread's stack is the program's.
                    crate::platform::vm::run_on_stack(top, zygote_on_stack, sv[1] as usize);
                }
                crate::platform::sys::child_entry(|| zygote_main(rt, sv[1]));
            }
            libc::_exit(0);
        }
    }
    // SAFETY: closing the zygote's end in the program and reaping the intermediate child.
    unsafe {
        libc::close(sv[1]);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
    // The zygote sends its pid first thing.
    let zpid = crate::platform::sys::recv_i32(sv[0]).unwrap_or(0);
    if zpid <= 0 {
        // Closing our own fd.
        crate::platform::sys::close(sv[0]);
        return Err(std::io::Error::other("the zygote did not start"));
    }
    ZYGOTE.store(zpid, SeqCst);
    *CONN.lock().unwrap_or_else(|e| e.into_inner()) = Some(Conn { fd: sv[0] });
    Ok(())
}

/// Forgets the zygote in a child the program forked: its end of the socket is closed so the
/// zygote still sees the program's exit.
pub fn forget_in_child() {
    if let Ok(mut c) = CONN.try_lock() {
        if let Some(conn) = c.take() {
            // Closing our own fd.
            crate::platform::sys::close(conn.fd);
        }
    }
}

/// Asks the zygote for a new helper of process `k` in environment `env` (0 = the process's
/// `env`, n = its n-th `retry_envs`). Resets the region first, so nothing is served twice.
pub fn spawn(rt: &Runtime, k: usize, env: u32) -> std::io::Result<i32> {
    let p = &rt.procs[k];
    let conn = CONN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(conn) = conn.as_ref() else {
        return Err(std::io::Error::other("no zygote"));
    };
    reset_region(p);
    let cmd = [CMD_SPAWN, k as u32, env, 0];
    // SAFETY: sending 16 bytes from a local array on our socket.
    let n = unsafe { libc::send(conn.fd, cmd.as_ptr().cast(), 16, libc::MSG_NOSIGNAL) };
    if n != 16 {
        return Err(std::io::Error::last_os_error());
    }
    let pid = crate::platform::sys::recv_i32(conn.fd).unwrap_or(0);
    if pid <= 0 {
        return Err(std::io::Error::other("the zygote did not start a helper"));
    }
    p.pidfd.store(pidfd_open(pid), SeqCst);
    p.pid.store(pid, SeqCst);
    p.zygote_child.store(true, SeqCst);
    Ok(pid)
}

/// True when `pid` names a process fracture started for the program: one in the zygote's
/// process group (helpers, their checkpoints and what they forked), neither the program nor
/// the zygote itself. A pid read from shared memory is only a candidate until this says so.
pub fn in_family(rt: &Runtime, pid: i32) -> bool {
    let z = ZYGOTE.load(SeqCst);
    if pid <= 0 || z <= 0 || pid == z || pid == rt.program_pid() {
        return false;
    }
    parent_and_group(pid).is_some_and(|(_, g)| g == z)
}

/// True when `pid` is a process of the zygote's group whose parent is `parent`.
pub fn is_child_of(rt: &Runtime, pid: i32, parent: i32) -> bool {
    in_family(rt, pid) && parent_and_group(pid).is_some_and(|(pp, _)| pp == parent)
}

/// Sends `sig` to a helper: through its pidfd when the program holds one (a pid may have been
/// reaped and reused since), else by pid.
pub fn signal(pidfd: i32, pid: i32, sig: i32) {
    if pidfd >= 0 {
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, 0usize, 0u32) };
    } else if pid > 0 {
        // Signalling the helper we started (no pidfd could be opened for it).
        crate::platform::sys::kill(pid, sig);
    }
}

/// (parent pid, process group) of `pid`, from /proc.
fn parent_and_group(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name's closing parenthesis: state, ppid, pgrp.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace().skip(1);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// Prepares a region for a new helper: nothing sent before is served again.
pub fn reset_region(p: &crate::plan::runtime::ProcRt) {
    let h = p.region.header();
    h.state.store(STATE_NONE, SeqCst);
    h.pid.store(0, SeqCst);
    p.watch.state.store(STATE_NONE, SeqCst);
    p.watch.wait_status.store(-1, SeqCst);
    h.fault_sig.store(0, SeqCst);
    h.fault_addr.store(0, SeqCst);
    h.fault_channel.store(-1, SeqCst);
    for c in 0..region::CHANNELS {
        let ch = p.region.channel(c);
        ch.served.store(0, SeqCst);
        ch.consumed.store(ch.to_helper_seq.load(SeqCst), SeqCst);
    }
    let old = p.pidfd.swap(-1, SeqCst);
    if old >= 0 {
        // Closing our own pidfd of the previous helper.
        crate::platform::sys::close(old);
    }
}

/// `restore: checkpoint`: wakes the frozen copy of process `k`, whose child becomes the
/// helper. Returns its pid.
pub fn resume(rt: &Runtime, k: usize, env: u32) -> std::io::Result<i32> {
    let p = &rt.procs[k];
    let h = p.region.header();
    // The frozen copy the program verified when it was made (a child of the helper then).
    let ck = p.ckpt.load(SeqCst);
    if !in_family(rt, ck) {
        return Err(std::io::Error::other("no checkpoint"));
    }
    // The resumed helper is the frozen copy's new child. Its pid is found among the copy's
    // children (never read from the region, which the helper writes: a pid from there once
    // named the program itself, which a later restart killed) and held by a pidfd.
    let before = children_of(ck);
    reset_region(p);
    h.ckpt_env.store(env, SeqCst);
    h.ckpt_cmd.store(region::CKPT_RESUME, SeqCst);
    region::futex_wake(&h.ckpt_cmd);
    let t = std::time::Instant::now();
    let started = || -> Vec<i32> {
        children_of(ck)
            .into_iter()
            .filter(|c| !before.contains(c) && in_family(rt, *c))
            .collect()
    };
    while t.elapsed() < std::time::Duration::from_secs(2) {
        if let [pid] = started()[..] {
            let fd = pidfd_open(pid);
            // Still the copy's child once the pidfd holds it (no pid reuse in between).
            if fd >= 0 && is_child_of(rt, pid, ck) {
                p.pidfd.store(fd, SeqCst);
                p.pid.store(pid, SeqCst);
                p.watch.pid.store(pid, SeqCst);
                p.watch.state.store(STATE_ALIVE, SeqCst);
                p.zygote_child.store(false, SeqCst);
                return Ok(pid);
            }
            if fd >= 0 {
                // Closing the pidfd we just opened.
                crate::platform::sys::close(fd);
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    // Nothing adoptable: whatever the copy started must not serve the region beside the
    // fresh helper the caller starts next.
    for c in started() {
        let fd = pidfd_open(c);
        if fd >= 0 {
            signal(fd, c, libc::SIGKILL);
            // Closing the pidfd we just opened.
            crate::platform::sys::close(fd);
        }
    }
    Err(std::io::Error::other("the checkpoint did not resume"))
}

/// The children of `pid` (its main thread's, which is the only thread of a frozen copy).
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

struct Child {
    k: usize,
    pid: i32,
    pidfd: i32,
}

/// The zygote's start on its own stack (`memory: on-demand`).
extern "C" fn zygote_on_stack(sock: usize) -> ! {
    crate::platform::sys::child_entry(|| match crate::plan::runtime::get() {
        Some(rt) => zygote_main(rt, sock as i32),
        // Leaving the child.
        None => crate::platform::sys::exit_now(70),
    })
}

fn zygote_main(rt: &'static Runtime, sock: i32) -> ! {
    // SAFETY: single-threaded child; only syscalls and our own data.
    unsafe {
        libc::setpgid(0, 0);
        let name = b"frac-zygote\0";
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        purge_stdio();
        let me = libc::getpid();
        libc::send(sock, (&me as *const i32).cast(), 4, libc::MSG_NOSIGNAL);
    }
    let mut kids: Vec<Child> = Vec::new();
    loop {
        let mut fds: Vec<libc::pollfd> = vec![libc::pollfd {
            fd: sock,
            events: libc::POLLIN,
            revents: 0,
        }];
        fds.extend(kids.iter().map(|c| libc::pollfd {
            fd: c.pidfd,
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: polling our own fds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        let ready: Vec<usize> = fds
            .iter()
            .skip(1)
            .enumerate()
            .filter(|(_, p)| p.revents != 0)
            .map(|(i, _)| i)
            .collect();
        for i in ready {
            reap(rt, &mut kids[i]);
        }
        kids.retain(|c| c.pidfd >= 0);
        if fds[0].revents != 0 {
            let mut cmd = [0u32; 4];
            // SAFETY: receiving at most 16 bytes into a local array.
            let n = unsafe { libc::recv(sock, cmd.as_mut_ptr().cast(), 16, 0) };
            if n == 0
                || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
            {
                shutdown(rt, &kids);
            }
            if n == 16 && cmd[0] == CMD_SPAWN && (cmd[1] as usize) < rt.procs.len() {
                let k = cmd[1] as usize;
                let env = crate::supervise::helper::env_for(&rt.procs[k], cmd[2]);
                // Exec-mode: everything the child needs is built before the fork.
                let exec = env
                    .exec_mode()
                    .then(|| crate::supervise::helper::exec_plan(rt, k, cmd[2], &env));
                // SAFETY: fork of the single-threaded zygote.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // Closing the zygote's end of the socket in the helper.
                    crate::platform::sys::close(sock);
                    crate::platform::sys::child_entry(|| match &exec {
                        Some(plan) => crate::supervise::helper::exec(rt, k, plan),
                        None => crate::supervise::helper::main(rt, k, cmd[2]),
                    });
                }
                let pidfd = if pid > 0 { pidfd_open(pid) } else { -1 };
                if pid > 0 {
                    let w = rt.procs[k].watch;
                    w.pid.store(pid, SeqCst);
                    w.generation.fetch_add(1, SeqCst);
                    w.state.store(STATE_ALIVE, SeqCst);
                    kids.push(Child { k, pid, pidfd });
                }
                let reply = pid.max(0);
                // SAFETY: sending 4 bytes from a local.
                unsafe { libc::send(sock, (&reply as *const i32).cast(), 4, libc::MSG_NOSIGNAL) };
            }
        }
    }
}

/// Collects a helper that ended and tells every waiter in the program.
fn reap(rt: &Runtime, c: &mut Child) {
    let mut st = 0;
    // SAFETY: waiting for our own child, which the pidfd said has ended.
    let r = unsafe { libc::waitpid(c.pid, &mut st, libc::WNOHANG) };
    if r != c.pid {
        return;
    }
    let w = rt.procs[c.k].watch;
    if w.pid.load(SeqCst) == c.pid {
        w.wait_status.store(st, SeqCst);
        w.state.store(STATE_DEAD, SeqCst);
        for i in 0..region::CHANNELS {
            let ch = rt.procs[c.k].region.channel(i);
            ch.to_prog_ev.fetch_add(1, SeqCst);
            region::futex_wake(&ch.to_prog_ev);
        }
    }
    // Closing the pidfd we opened; the caller drops the entry.
    crate::platform::sys::close(c.pidfd);
    c.pidfd = -1;
}

/// The program is gone: ask helpers to finish, wait briefly, kill the rest, exit.
fn shutdown(rt: &Runtime, kids: &[Child]) -> ! {
    // Every region: helpers resumed from checkpoints and the checkpoints themselves are not
    // our children but watch the same flag.
    for p in &rt.procs {
        let h = p.region.header();
        h.shutdown.store(1, SeqCst);
        region::ring(&h.doorbell);
        region::futex_wake(&h.ckpt_cmd);
    }
    // Wait for them on their pidfds (at most 5 s), then kill what remains.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left: Vec<(i32, i32)> = kids.iter().map(|c| (c.pid, c.pidfd)).collect();
    while !left.is_empty() {
        let now = std::time::Instant::now();
        if now >= deadline {
            break;
        }
        let mut fds: Vec<libc::pollfd> = left
            .iter()
            .map(|&(_, fd)| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = (deadline - now).as_millis().min(1000) as i32;
        // SAFETY: polling our own pidfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        let ready: Vec<bool> = fds.iter().map(|f| f.revents != 0).collect();
        let mut i = 0;
        left.retain(|&(pid, _)| {
            let r = ready[i];
            i += 1;
            if r {
                let mut st = 0;
                // SAFETY: reaping our own child, which has exited.
                unsafe { libc::waitpid(pid, &mut st, 0) };
            }
            !r
        });
    }
    let left: Vec<i32> = left.iter().map(|x| x.0).collect();
    for pid in left {
        // Our own children: killed and reaped.
        crate::platform::sys::kill_and_reap(pid, 0);
    }
    // Leaving without running the program's atexit handlers.
    crate::platform::sys::exit_now(0)
}

extern "C" {
    fn __fpurge(f: *mut libc::FILE);
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
}

/// Drops whatever the program had buffered in stdio before the fork, so a helper that
/// flushes at exit does not print the program's output a second time.
unsafe fn purge_stdio() {
    // SAFETY: stdout/stderr are glibc's FILE pointers; __fpurge only empties their buffers.
    unsafe {
        __fpurge(stdout);
        __fpurge(stderr);
    }
}
