//! The launcher as a child subreaper: processes the program leaves behind (the shim's zygote
//! and helpers, detached from the program on purpose, and whatever the program or a module
//! started and did not wait for) are reparented to us and reaped before `fracture run` exits,
//! so it leaves no process behind.
//!
//! Reaping is bounded. The shim's own processes (named `frac-*` by the shim, or exec-mode
//! helpers, which carry `FRACTURE_HELPER`) stop by themselves once the program is gone: the
//! zygote asks its helpers to stop and kills them after at most 5 s, so they get
//! [`SHIM_GRACE`]. Anything else gets [`LEFTOVER_GRACE`]; then it is killed with SIGKILL,
//! with every process below it, and reaped. Past [`SHIM_GRACE`] the whole remaining tree is
//! killed.
//!
//! # Safety
//! Only syscalls on our own process (prctl, signal dispositions, waitpid) and on processes
//! of our own subtree, signalled through a pidfd opened before their parent is checked, so a
//! recycled pid is never signalled.
#![allow(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long processes the program left behind that are not the shim's get after it exited.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(1);
/// How long the shim's zygote and helpers get to shut down in order (the zygote's own bound
/// is 5 s; an exec-mode helper under valgrind writes its leak report meanwhile).
pub const SHIM_GRACE: Duration = Duration::from_secs(6);
/// How long killed processes get to be reaped (a process in uninterruptible sleep dies only
/// when its I/O ends); past it `fracture run` returns anyway.
const KILL_WAIT: Duration = Duration::from_secs(2);

pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Ignores SIGINT and SIGQUIT in the launcher (the program receives them from the terminal).
pub fn ignore_now() {
    // SAFETY: plain signal disposition changes in our own process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
}

/// One process of our subtree, from /proc.
struct Proc {
    pid: i32,
    ppid: i32,
    comm: String,
}

/// pid, ppid and command name from /proc/PID/stat.
fn stat_of(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may itself hold ')' or spaces.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    if state == "Z" || state == "X" {
        // A zombie is our child already (reaped below) or its parent's to reap.
        return None;
    }
    let ppid = f.next()?.parse().ok()?;
    Some(Proc { pid, ppid, comm })
}

/// Every live process below us, parents before their children.
fn subtree() -> Vec<Proc> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut by_parent: HashMap<i32, Vec<Proc>> = HashMap::new();
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(p) = stat_of(pid) {
            by_parent.entry(p.ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut next = vec![me];
    while let Some(parent) = next.pop() {
        for p in by_parent.remove(&parent).unwrap_or_default() {
            next.push(p.pid);
            out.push(p);
        }
    }
    out
}

/// Whether `p` is one of the shim's processes: a zygote, helper or checkpoint (which the
/// shim names `frac-*`), or an exec-mode helper (started with `FRACTURE_HELPER`, perhaps
/// under a wrapper that keeps its own name).
fn is_shims(p: &Proc) -> bool {
    if p.comm.starts_with("frac-") {
        return true;
    }
    let needle = format!("{}=", module_map::vars::HELPER);
    std::fs::read(format!("/proc/{}/environ", p.pid))
        .map(|env| {
            env.split(|&b| b == 0)
                .any(|kv| kv.starts_with(needle.as_bytes()))
        })
        .unwrap_or(false)
}

/// SIGKILL to `pid` if it is still in our subtree (its parent is us or in `tree`).
fn kill_in_tree(pid: i32, tree: &HashSet<i32>) {
    let me = std::process::id() as i32;
    // SAFETY: pidfd_open with integer arguments; the result is an fd we own or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return; // gone already
    }
    // The pidfd names the process that had `pid` when it was opened; if that process is
    // still alive, /proc/PID is it, so its parent seen now is the parent of what we signal.
    let ours = stat_of(pid).is_some_and(|p| p.ppid == me || tree.contains(&p.ppid));
    if ours {
        // SAFETY: pidfd_send_signal on the pidfd opened above, no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
}

/// Kills every process of `procs` that `doomed` selects, with everything below it.
fn kill_where(procs: &[Proc], doomed: impl Fn(&Proc) -> bool) -> usize {
    let tree: HashSet<i32> = procs.iter().map(|p| p.pid).collect();
    let mut dead: HashSet<i32> = HashSet::new();
    // Parents come before their children in `procs`.
    for p in procs {
        if dead.contains(&p.ppid) || doomed(p) {
            dead.insert(p.pid);
            kill_in_tree(p.pid, &tree);
        }
    }
    dead.len()
}

/// Reaps every child that has ended; false once we have no child left.
fn reap_ready() -> bool {
    loop {
        let mut st = 0;
        // SAFETY: waitpid on any child, non-blocking, into a local.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r == 0 {
            return true;
        }
        if r < 0 {
            return false; // ECHILD: nothing left
        }
    }
}

/// After the program exited: reaps every descendant reparented to us, killing what outstays
/// its grace (see the module doc). Returns within about `SHIM_GRACE + KILL_WAIT`.
pub fn reap_descendants() {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    let mut leftovers_killed = false;
    let mut last_scan = start;
    while reap_ready() {
        let waited = start.elapsed();
        if waited >= SHIM_GRACE {
            break;
        }
        // Past the short grace, look for leftovers that are not the shim's every 100 ms (a
        // shim process may still start a leftover of its own, a module's child).
        if waited >= LEFTOVER_GRACE
            && (!leftovers_killed || last_scan.elapsed() >= Duration::from_millis(100))
        {
            leftovers_killed = true;
            last_scan = Instant::now();
            kill_where(&subtree(), |p| !is_shims(p));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    let deadline = Instant::now() + KILL_WAIT;
    while reap_ready() {
        if Instant::now() >= deadline {
            let left: Vec<String> = subtree()
                .iter()
                .map(|p| format!("{} ({})", p.pid, p.comm))
                .collect();
            eprintln!(
                "fracture: warning: processes left behind that do not die: {}",
                left.join(", ")
            );
            return;
        }
        kill_where(&subtree(), |_| true);
        std::thread::sleep(Duration::from_millis(1));
    }
}
