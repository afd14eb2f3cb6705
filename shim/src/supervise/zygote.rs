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

use crate::platform::process::{self, Forked};
use crate::platform::sys;

/// A command to the zygote: four native-endian words (kind, process, environment, 0).
fn encode_cmd(cmd: [u32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, w) in cmd.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    b
}

fn decode_cmd(b: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| {
        u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
    })
}

const CMD_SPAWN: u32 = 1;

struct Conn {
    fd: i32,
}

static CONN: Mutex<Option<Conn>> = Mutex::new(None);

/// The zygote's pid, which is also the process group of every helper and checkpoint (the
/// zygote makes its own group): told by the zygote itself over the socket at start.
static ZYGOTE: AtomicI32 = AtomicI32::new(0);

/// Forks the zygote (through an intermediate child). Called once, before `main`.
pub fn start(rt: &'static Runtime) -> std::io::Result<()> {
    crate::supervise::address::prepare_program(rt).map_err(std::io::Error::other)?;
    let (ours, theirs) = process::seqpacket_pair()?;
    // SAFETY: the program is single-threaded here (before main); the intermediate child
    // only forks again and leaves, the zygote is its single-threaded child.
    let mid = match unsafe { process::fork() }? {
        Forked::Parent(pid) => pid,
        Forked::Child => {
            sys::close(ours);
            // SAFETY: as above.
            if let Ok(Forked::Child) = unsafe { process::fork() } {
                if let Some(top) = crate::supervise::address::zygote_side() {
                    // On a stack of its own: the main thread's stack is the program's.
                    // SAFETY: `top` is the top of the zygote's own stack mapping, which
                    // nothing else uses; the function never returns.
                    unsafe {
                        crate::platform::vm::run_on_stack(top, zygote_on_stack, theirs as usize)
                    };
                }
                sys::child_entry(|| zygote_main(rt, theirs));
            }
            sys::exit_now(0);
        }
    };
    // The zygote's end is its own; the intermediate child is reaped at once.
    sys::close(theirs);
    process::waitpid(mid, 0);
    // The zygote sends its pid first thing.
    let zpid = sys::recv_i32(ours).unwrap_or(0);
    if zpid <= 0 {
        // Closing our own fd.
        sys::close(ours);
        return Err(std::io::Error::other("the zygote did not start"));
    }
    ZYGOTE.store(zpid, SeqCst);
    *CONN.lock().unwrap_or_else(|e| e.into_inner()) = Some(Conn { fd: ours });
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
    if !process::send(conn.fd, &encode_cmd([CMD_SPAWN, k as u32, env, 0])) {
        return Err(std::io::Error::last_os_error());
    }
    let pid = crate::platform::sys::recv_i32(conn.fd).unwrap_or(0);
    if pid <= 0 {
        return Err(std::io::Error::other("the zygote did not start a helper"));
    }
    p.pidfd.store(process::pidfd_open(pid), SeqCst);
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
        process::pidfd_send_signal(pidfd, sig);
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
            let fd = process::pidfd_open(pid);
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
        let fd = process::pidfd_open(c);
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
    process::new_process_group();
    sys::set_name(c"frac-zygote");
    process::purge_stdio();
    process::send(sock, &sys::getpid().to_ne_bytes());
    let mut kids: Vec<Child> = Vec::new();
    loop {
        let mut fds: Vec<process::PollFd> = vec![process::readable(sock)];
        fds.extend(kids.iter().map(|c| process::readable(c.pidfd)));
        let n = process::poll(&mut fds, -1);
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
            let mut buf = [0u8; 16];
            let n = match process::recv(sock, &mut buf) {
                Ok(0) => shutdown(rt, &kids),
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => 0,
                Err(_) => shutdown(rt, &kids),
            };
            let cmd = decode_cmd(&buf);
            if n == 16 && cmd[0] == CMD_SPAWN && (cmd[1] as usize) < rt.procs.len() {
                let k = cmd[1] as usize;
                let env = crate::supervise::helper::env_for(&rt.procs[k], cmd[2]);
                // Exec-mode: everything the child needs is built before the fork.
                let exec = env
                    .exec_mode()
                    .then(|| crate::supervise::helper::exec_plan(rt, k, cmd[2], &env));
                // SAFETY: fork of the single-threaded zygote.
                let pid = match unsafe { process::fork() } {
                    Ok(Forked::Parent(pid)) => pid,
                    Ok(Forked::Child) => 0,
                    Err(_) => -1,
                };
                if pid == 0 {
                    // Closing the zygote's end of the socket in the helper.
                    crate::platform::sys::close(sock);
                    crate::platform::sys::child_entry(|| match &exec {
                        Some(plan) => crate::supervise::helper::exec(rt, k, plan),
                        None => crate::supervise::helper::main(rt, k, cmd[2]),
                    });
                }
                let pidfd = if pid > 0 {
                    process::pidfd_open(pid)
                } else {
                    -1
                };
                if pid > 0 {
                    let w = rt.procs[k].watch;
                    w.pid.store(pid, SeqCst);
                    w.generation.fetch_add(1, SeqCst);
                    w.state.store(STATE_ALIVE, SeqCst);
                    kids.push(Child { k, pid, pidfd });
                }
                process::send(sock, &pid.max(0).to_ne_bytes());
            }
        }
    }
}

/// Collects a helper that ended and tells every waiter in the program.
fn reap(rt: &Runtime, c: &mut Child) {
    // Our own child, which the pidfd said has ended.
    let Some((r, st)) = process::waitpid(c.pid, libc::WNOHANG) else {
        return;
    };
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
        let mut fds: Vec<process::PollFd> =
            left.iter().map(|&(_, fd)| process::readable(fd)).collect();
        let ms = (deadline - now).as_millis().min(1000) as i32;
        process::poll(&mut fds, ms);
        let ready: Vec<bool> = fds.iter().map(|f| f.revents != 0).collect();
        let mut i = 0;
        left.retain(|&(pid, _)| {
            let r = ready[i];
            i += 1;
            if r {
                // Reaping our own child, which has exited.
                process::waitpid(pid, 0);
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
