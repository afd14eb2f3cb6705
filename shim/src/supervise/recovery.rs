//! What the program does when a helper fails a call: restart it from the zygote and retry
//! (`on_crash`), and give up as configured.

use crate::call::dispatch::{self, CallError};
use crate::call::marshal::Walk;
use crate::plan::runtime::{FnDesc, ProcRt, Runtime};
use crate::platform::abi::Frame;
use module_map::GiveUp;
use std::sync::atomic::Ordering::*;
use std::sync::Mutex;

static RESTART: Mutex<()> = Mutex::new(());

thread_local! {
    /// (region, helper pid) whose failure a call nested in this thread's outer call reported
    /// (see `report`); usize::MAX: none.
    static INNER_REPORTED: std::cell::Cell<(usize, i32)> =
        const { std::cell::Cell::new((usize::MAX, 0)) };
}

/// Describes a raw wait status: "signal 11 (SIGSEGV)" or "exit status 3".
pub fn describe(status: i32) -> String {
    if status < 0 {
        "an unknown cause".into()
    } else if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        format!("signal {s} ({})", signal_name(s))
    } else if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else {
        format!("wait status {status:#x}")
    }
}

pub fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Program side: call `f` in the helper process that owns it (all its replicas, or one of its
/// samples, when the map asks for several), restarting and retrying per `on_crash`.
pub fn call_helper(rt: &Runtime, f: &FnDesc, p: &ProcRt, frame: &mut Frame, walk: &Walk) {
    let r = try_call(rt, f, p, frame, walk);
    settle(rt, f, p, frame, r);
}

/// A call the flat path posted and did not finish (see `policy::replicas::route`):
/// waits for it as any first attempt, then restarts and retries per `on_crash` as
/// [`call_helper`] does. The flat path takes no call that must be logged.
pub fn finish_flat<'a>(
    rt: &Runtime,
    f: &FnDesc,
    p: &'a ProcRt,
    frame: &mut Frame,
    pending: crate::call::flat::Pending<'a>,
) {
    // The walk of the registers and stack words, for a retry.
    let walk = Walk::of(f, frame);
    let crate::call::flat::Pending { begun, gate } = pending;
    let result = dispatch::call_finish(rt, f, p, begun, frame);
    // Released before a restart, which takes it exclusively (as `complete` does).
    drop(gate);
    let first = Done {
        result,
        logged: None,
    };
    let r = try_call_after(rt, f, p, frame, &walk, Some(first));
    settle(rt, f, p, frame, r);
}

/// What a program call that failed for good ends as: in a nested call of the same process
/// an EIO (the outer call recovers), else what `give_up` says.
fn settle(rt: &Runtime, f: &FnDesc, p: &ProcRt, frame: &mut Frame, r: Result<(), (i32, String)>) {
    if let Err((status, what)) = r {
        if dispatch::nested_in(f.owner) {
            // A call made while serving a nested call of the same process (module ->
            // program -> same module): the outermost call owns the restart and the retry;
            // this one only fails.
            frame.ret_rax = 0;
            frame.ret_rdx = 0;
            dispatch::set_errno(libc::EIO);
            debug!(
                "{}: {what}; the outer call of '{}' recovers",
                f.name, p.name
            );
            return;
        }
        give_up(rt, f, p, status, &what, frame);
    }
}

/// One helper region: call, restart and retry per `on_crash`; Err((status, what)) when the
/// retries are used up (the caller gives up as configured).
pub fn try_call(
    rt: &Runtime,
    f: &FnDesc,
    p: &ProcRt,
    frame: &mut Frame,
    walk: &Walk,
) -> Result<(), (i32, String)> {
    try_call_after(rt, f, p, frame, walk, None)
}

/// A first attempt of a call, posted to one helper region under its gate without waiting
/// (see [`post`]), so that several replicas work on one call at once.
pub struct Attempt<'a> {
    begun: dispatch::Begun,
    gate: std::sync::RwLockReadGuard<'a, ()>,
    logged: Option<crate::supervise::replay::Entry>,
}

/// The outcome of a first attempt that [`complete`] waited for.
pub struct Done {
    result: Result<dispatch::Moved, dispatch::CallError>,
    logged: Option<crate::supervise::replay::Entry>,
}

impl Done {
    /// True when the attempt succeeded.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Posts the call in `frame` to `p` and returns without waiting. None when it is better made
/// the ordinary way: inside a nested call of the same owner (one channel), while replaying, or
/// while somebody wants the gate exclusively (a thread never blocks on a gate while it holds
/// another's). The ordinary call also reports what stopped a post (no helper, too large).
pub fn post<'a>(f: &FnDesc, p: &'a ProcRt, frame: &Frame, walk: &Walk) -> Option<Attempt<'a>> {
    if dispatch::nested_in(f.owner) || crate::supervise::replay::replaying() {
        return None;
    }
    let gate = match p.gate.try_read() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    let logged = crate::supervise::replay::wanted(f, p)
        .then(|| crate::supervise::replay::capture(f, frame, walk));
    let begun = dispatch::call_post(f, p, frame, walk).ok()?;
    Some(Attempt {
        begun,
        gate,
        logged,
    })
}

/// Waits for a posted attempt; a successful call enters the replay log under the gate, which
/// is released before the caller restarts or retries anything ([`try_call_after`]).
pub fn complete(rt: &Runtime, f: &FnDesc, p: &ProcRt, a: Attempt<'_>, frame: &mut Frame) -> Done {
    let Attempt {
        begun,
        gate,
        logged,
    } = a;
    let mark = logged.is_some().then(dispatch::nested_mark);
    let result = dispatch::call_finish(rt, f, p, begun, frame);
    let nested = mark.map(dispatch::nested_since).unwrap_or_default();
    if let (Ok(_), Some(entry)) = (&result, logged.as_ref()) {
        crate::supervise::replay::record(p, f, entry.clone(), frame, nested);
    }
    drop(gate);
    Done { result, logged }
}

/// [`try_call`] whose first attempt was already made (`first`, from [`complete`]); `frame`
/// is as the attempt left it (unchanged when it failed).
pub fn try_call_after(
    rt: &Runtime,
    f: &FnDesc,
    p: &ProcRt,
    frame: &mut Frame,
    walk: &Walk,
    first: Option<Done>,
) -> Result<(), (i32, String)> {
    let saved = *frame;
    let oc = &p.spec.on_crash;
    let k = p.index;
    let mut retry = 0u32;
    let mut first_failure: Option<(String, u64)> = None;
    let mut restart_us = 0u128;
    let mut bystander_retries = 0u32;
    let (mut first, logged) = match first {
        Some(d) => (Some(d.result), d.logged),
        None => (
            None,
            crate::supervise::replay::wanted(f, p)
                .then(|| crate::supervise::replay::capture(f, frame, walk)),
        ),
    };
    loop {
        // The call and its log entry happen under the gate, so a checkpoint (taken under the
        // exclusive gate) never holds the effect of a call the log does not have yet.
        let res = match first.take() {
            Some(r) => r,
            None => {
                let _gate = dispatch::gate_for(p, f.owner);
                let mark = logged.is_some().then(dispatch::nested_mark);
                let r = dispatch::call_once(rt, f, p, frame, walk);
                let nested = mark.map(dispatch::nested_since).unwrap_or_default();
                if let (Ok(_), Some(entry)) = (&r, logged.as_ref()) {
                    crate::supervise::replay::record(p, f, entry.clone(), frame, nested);
                }
                r
            }
        };
        let e = match res {
            Ok(_) => {
                if logged.is_some() {
                    maybe_checkpoint(rt, p);
                }
                if let Some((what, addr)) = first_failure {
                    let env = retry_env(oc, retry);
                    f.stats.recovered.fetch_add(1, Relaxed);
                    f.stats.succeeded_env.store(u64::from(env), Relaxed);
                    warn!(
                        "recovered: process '{}' {what} during {} (fault address {addr:#x}); restart took {restart_us} us; retry {retry} succeeded in {}",
                        p.name,
                        f.name,
                        env_name(env)
                    );
                }
                p.calls.fetch_add(1, Relaxed);
                return Ok(());
            }
            Err(e) => e,
        };
        p.crashes.fetch_add(1, Relaxed);
        f.stats.failures.fetch_add(1, Relaxed);
        f.stats.crashes.fetch_add(1, Relaxed);
        let status = match e {
            CallError::Died(s) | CallError::Bystander(s) => s,
            // A hang that is given up on ends the program as the killed helper ended.
            CallError::Timeout(_) => libc::SIGKILL,
            _ => -1,
        };
        let what = match e {
            CallError::Died(s) => format!("died of {}", describe(s)),
            CallError::Bystander(s) => format!("died of {} in another call", describe(s)),
            CallError::TooLarge(n) => format!(
                "could not take an argument of {n} bytes (over {} MiB)",
                crate::transport::region::DATA_SIZE >> 20
            ),
            CallError::CallbackBound => format!(
                "could not take one more function as a callback (the bound is {} per callback type)",
                crate::plan::runtime::CB_SLOTS
            ),
            CallError::BadReply => "answered with garbage".into(),
            CallError::Refused => "refused the call".into(),
            CallError::NoHelper => "is not running".into(),
            CallError::Timeout(ms) => format!("hung (no answer within timeout_ms {ms}; killed)"),
        };
        let addr = p.region.header().fault_addr.load(SeqCst);
        // A bystander's crash is the faulting call's, which reports it: one record per fault,
        // blaming the function that faulted, not every call that was in flight.
        if !matches!(e, CallError::Bystander(_)) {
            report(p, f, &e, status, addr, &what, retry_env(oc, retry));
        }
        warn!(
            "process '{}' {what} during {} (fault address {addr:#x}; retry {retry} of {})",
            p.name, f.name, oc.max_retries
        );
        if first_failure.is_none() {
            first_failure = Some((what.clone(), addr));
        }
        // Inside a nested call of this same process the outer call, further up this thread,
        // holds the gate a restart needs: it restarts and retries, not this call.
        let restartable = !matches!(e, CallError::TooLarge(_) | CallError::CallbackBound)
            && !dispatch::nested_in(f.owner);
        if matches!(e, CallError::BadReply | CallError::Refused) {
            // A helper that answers garbage (or refuses what it should serve) is not trusted
            // with another call.
            kill_helper(p);
        }
        // A call that was only in flight when another call crashed the helper is retried
        // without using up its retries (bounded, in case every helper dies at once).
        let bystander = matches!(e, CallError::Bystander(_)) && bystander_retries < 64;
        let will_retry = restartable && oc.restart && (retry < oc.max_retries || bystander);
        let goes_on = matches!(oc.give_up, GiveUp::Return { .. });
        if restartable && oc.restart && (will_retry || goes_on) {
            let t = std::time::Instant::now();
            let env = if will_retry {
                retry_env(oc, retry + 1)
            } else {
                0
            };
            if restart(rt, k, env) {
                f.stats.restarts.fetch_add(1, Relaxed);
            }
            restart_us = t.elapsed().as_micros();
        }
        if will_retry {
            f.stats.retries.fetch_add(1, Relaxed);
            if bystander {
                bystander_retries += 1;
            } else {
                retry += 1;
            }
            *frame = saved;
            continue;
        }
        f.stats.give_ups.fetch_add(1, Relaxed);
        return Err((status, what));
    }
}

/// Records a failed call in the crash-report spool.
fn report(p: &ProcRt, f: &FnDesc, e: &CallError, status: i32, addr: u64, what: &str, env: u32) {
    // One record per fault: in a module -> program -> same module chain, the inner call that
    // faulted reports it, and the outer call on this thread, failing of the same death, does
    // not report it again.
    let mark = (p.index, p.pid.load(SeqCst));
    if dispatch::nested_in(f.owner) {
        INNER_REPORTED.with(|r| r.set(mark));
    } else if INNER_REPORTED.with(|r| r.replace((usize::MAX, 0))) == mark {
        return;
    }
    let died = matches!(e, CallError::Died(_));
    let outcome = match e {
        CallError::Timeout(_) => "hang",
        CallError::Died(s) if *s >= 0 && libc::WIFEXITED(*s) => "helper-exit",
        _ => "crash",
    };
    let sig = if died && status >= 0 && libc::WIFSIGNALED(status) {
        libc::WTERMSIG(status)
    } else {
        0
    };
    let h = p.region.header();
    let mut frames = [0u64; crate::observe::reports::MAX_FRAMES];
    let n = if died {
        (h.fault_nframes.load(SeqCst) as usize).min(frames.len())
    } else {
        0
    };
    for (i, fr) in frames.iter_mut().enumerate().take(n) {
        *fr = h.fault_frames[i].load(SeqCst);
    }
    crate::observe::reports::event(&crate::observe::reports::Event {
        outcome,
        process: &p.spec.name,
        module: &f.module,
        function: &f.name,
        signal: sig,
        fault_addr: if died { addr } else { 0 },
        env: &env_name(env),
        detail: what,
        frames: &frames[..n],
    });
}

/// Kills the current helper of `p` and waits (bounded) until its process is gone.
pub fn kill_helper(p: &ProcRt) {
    let pid = p.pid.load(SeqCst);
    if pid <= 0 {
        return;
    }
    crate::supervise::zygote::signal(p.pidfd.load(SeqCst), pid, libc::SIGKILL);
    let fd = p.pidfd.load(SeqCst);
    if fd < 0 {
        return;
    }
    // Our own pidfd, at most 2 s.
    crate::platform::sys::wait_readable(fd, 2000);
}

/// The environment of retry `n`: retry_envs[n-1] while there is one, else the process's.
fn retry_env(oc: &module_map::OnCrash, n: u32) -> u32 {
    if n >= 1 && (n as usize) <= oc.retry_envs.len() {
        n
    } else {
        0
    }
}

fn env_name(env: u32) -> String {
    if env == 0 {
        "the process's env".into()
    } else {
        format!("retry_envs[{}]", env - 1)
    }
}

/// Starts a fresh helper for process `k` in environment `env` unless another thread already
/// did. Returns true when this call started one.
pub fn restart(rt: &Runtime, k: usize, env: u32) -> bool {
    let _g = RESTART.lock().unwrap_or_else(|e| e.into_inner());
    let p = &rt.procs[k];
    let _gate = p.gate.write().unwrap_or_else(|e| e.into_inner());
    if p.pid.load(SeqCst) > 0 && !dispatch::helper_gone(p) {
        return false;
    }
    // The old helper must be gone before another serves its region: kill it now, start the
    // new one while the kernel tears the old one down, and wait for the old pidfd after.
    let old_pid = p.pid.load(SeqCst);
    let old_fd = p.pidfd.swap(-1, SeqCst);
    if old_pid > 0 {
        crate::supervise::zygote::signal(old_fd, old_pid, libc::SIGKILL);
    }
    // Module memory the program fetched from the old helper is not the new one's.
    crate::call::pages::peek::forget(k);
    let from_ckpt = p.spec.on_crash.restore == module_map::Restore::Checkpoint
        && p.ckpt_len.load(SeqCst) != usize::MAX;
    let started = if from_ckpt {
        crate::supervise::zygote::resume(rt, k, env).map(|pid| (pid, p.ckpt_len.load(SeqCst)))
    } else {
        Err(std::io::Error::other("no checkpoint"))
    };
    let started = match started {
        Ok(x) => Ok(x),
        Err(_) => crate::supervise::zygote::spawn(rt, k, env).map(|pid| (pid, 0)),
    };
    if old_fd >= 0 {
        // The old helper's pidfd, which we own: at most 2 s.
        crate::platform::sys::wait_then_close(old_fd, 2000);
    }
    match started {
        Ok((pid, from)) => {
            if p.spec.on_crash.restore == module_map::Restore::None {
                crate::call::handles::forget_region(p.region.key());
            } else {
                let n = crate::supervise::replay::len(&rt.procs[p.primary]);
                if !crate::supervise::replay::replay(rt, p, from) {
                    warn!(
                        "process '{}': the replay of logged calls {from}..{n} failed",
                        p.name
                    );
                }
            }
            info!(
                "process '{}' restarted as pid {pid} ({}; replayed from log entry {from})",
                p.name,
                env_name(env)
            );
            true
        }
        Err(e) => {
            p.pid.store(0, SeqCst);
            error!("process '{}' cannot be restarted: {e}", p.name);
            false
        }
    }
}

pub fn give_up(rt: &Runtime, f: &FnDesc, p: &ProcRt, status: i32, what: &str, frame: &mut Frame) {
    // The zygote's word, when it has one, over anything the helper wrote about itself.
    let status = trusted_status(p).unwrap_or(status);
    let sig = if status >= 0 && libc::WIFSIGNALED(status) {
        libc::WTERMSIG(status)
    } else {
        0
    };
    crate::observe::reports::event(&crate::observe::reports::Event {
        outcome: "gave-up",
        process: &p.spec.name,
        module: &f.module,
        function: &f.name,
        signal: sig,
        fault_addr: 0,
        env: "",
        detail: what,
        frames: &[],
    });
    match &p.spec.on_crash.give_up {
        GiveUp::Return { value, errno } => {
            frame.ret_rax = *value as u64;
            frame.ret_rdx = 0;
            dispatch::set_errno(*errno);
        }
        GiveUp::Crash => {
            if log_enabled_error() {
                crate::observe::log::emit(
                    crate::observe::log::ERROR,
                    format_args!("process '{}' {what} during {}; giving up", p.name, f.name),
                );
            }
            crate::plan::stats_file::write(rt);
            if sig != 0 && ends_the_process(sig) {
                // The program ends the way the helper ended: a signal whose default action
                // ends a process.
                crate::platform::sys::end_like(sig, status);
            }
            // The helper's exit status, or 70 when its end is unknown (or named a signal
            // that would not end a process).
            crate::platform::sys::end_like(0, if sig == 0 { status } else { -1 })
        }
    }
}

/// The wait status the zygote reported for the helper of `p`, once it reaped it (a helper
/// resumed from a checkpoint has none).
fn trusted_status(p: &ProcRt) -> Option<i32> {
    p.watch.reaped().filter(|_| p.zygote_child.load(SeqCst))
}

/// True for signals whose default action terminates a process (with or without a core).
/// A helper that claims to have died of SIGSTOP once stopped the program, and `fracture run`
/// never returned.
pub fn ends_the_process(sig: i32) -> bool {
    !matches!(
        sig,
        libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
            | libc::SIGCONT
            | libc::SIGCHLD
            | libc::SIGURG
            | libc::SIGWINCH
    ) && sig > 0
        && sig <= libc::SIGRTMAX()
}

fn log_enabled_error() -> bool {
    crate::observe::log::enabled(crate::observe::log::ERROR)
}

/// Logged calls between two checkpoints (`restore: checkpoint`): bounds what a restart
/// replays, whatever the length of the log.
const CKPT_EVERY: usize = 64;

/// Takes a checkpoint when enough state calls were logged since the last one and no call is
/// in flight (the gate is free); otherwise tries again after a later call.
fn maybe_checkpoint(rt: &Runtime, p: &ProcRt) {
    if p.spec.on_crash.restore != module_map::Restore::Checkpoint {
        return;
    }
    let last = p.ckpt_len.load(SeqCst);
    let len = crate::supervise::replay::len(p);
    if last != usize::MAX && len < last + CKPT_EVERY {
        return;
    }
    let Ok(_gate) = p.gate.try_write() else {
        return;
    };
    let len = crate::supervise::replay::len(p);
    // A helper that does not answer holds the exclusive gate no longer than a call may take.
    let limit = std::time::Duration::from_millis(p.spec.timeout_ms.unwrap_or(10_000).min(10_000));
    let helper = p.pid.load(SeqCst);
    match dispatch::control(p, crate::transport::region::MSG_CHECKPOINT, limit) {
        // The frozen copy's pid is the helper's word: a child of the helper, in the zygote's
        // group, or no checkpoint (a pid from there once let a helper name another helper's
        // processes for `resume` to adopt or kill).
        Ok(m)
            if m.kind == crate::transport::region::MSG_RETURN
                && crate::supervise::zygote::is_child_of(rt, m.ret_rax as i32, helper) =>
        {
            p.ckpt.store(m.ret_rax as i32, SeqCst);
            p.ckpt_len.store(len, SeqCst);
            debug!(
                "process '{}': checkpoint pid {} at log entry {len}",
                p.name, m.ret_rax
            );
        }
        _ => {
            // Try again 64 logged calls later, not after every call.
            p.ckpt.store(0, SeqCst);
            p.ckpt_len.store(len, SeqCst);
            debug!("process '{}': no checkpoint this time", p.name);
        }
    }
}
