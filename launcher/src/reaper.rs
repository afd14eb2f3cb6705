//! The launcher as a child subreaper: processes the program leaves behind (the shim's zygote
//! and helpers, detached from the program on purpose) are reparented to us and reaped before
//! `fracture run` exits, so it leaves no process behind.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

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

/// Our children other than those already reaped, from /proc.
fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // ppid is the 2nd field after the parenthesised command name.
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse::<i32>().ok());
        if ppid == Some(me) {
            v.push(pid);
        }
    }
    v
}

/// Reaps every descendant reparented to us; past `deadline`, kills what remains.
pub fn reap_descendants(deadline: Instant) {
    loop {
        let mut st = 0;
        // SAFETY: waitpid on any child, non-blocking, into a local.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        if r < 0 {
            return; // ECHILD: nothing left
        }
        if Instant::now() >= deadline {
            for pid in children() {
                // SAFETY: killing our own child process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // SAFETY: as above, blocking reap of what we just killed.
            while unsafe { libc::waitpid(-1, &mut st, 0) } > 0 {}
            return;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
