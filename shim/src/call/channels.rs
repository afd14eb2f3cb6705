//! The channels of a helper process, from the program's side: which one a thread calls on
//! (`acquire`/`release`, a thread keeps its own), the gate a call holds, whether the helper
//! is known to be dead and its wait status, and control messages (checkpoints).

use super::dispatch::{active_find, CallError, SLICE};
use super::server::fail;
use crate::plan::runtime::ProcRt;
use crate::transport::region::{self, Channel, Msg};
use std::cell::Cell;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

/// The wait status of a helper that died, as the zygote reaped it; it writes it just after
/// the pidfd says the helper is gone, so wait for it briefly. A helper resumed from a
/// checkpoint is nobody's child that we can ask: only the signal its fatal-signal handler
/// recorded is known, and it is the helper's word (callers re-raise only signals that end a
/// process, see `recovery::give_up`).
pub fn death_status(p: &ProcRt) -> i32 {
    let w = p.watch;
    if p.zygote_child.load(SeqCst) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(200) {
            if let Some(st) = w.reaped() {
                return st;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        return -1;
    }
    match p.region.header().fault_sig.load(SeqCst) {
        sig if sig > 0 && sig < 65 => sig, // a raw wait status of "killed by sig"
        _ => -1,
    }
}

/// Holds the gate of `p` shared for one call, unless this thread already runs under it (a
/// nested call, or a replay under the exclusive gate).
pub fn gate_for(
    p: &ProcRt,
    owner: crate::plan::runtime::Owner,
) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
    if crate::call::hooks::replaying() || active_find(owner).is_some() {
        None
    } else {
        Some(p.gate.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The status of the helper of `p` when it is known to have died: the wait status the
/// zygote wrote, or, when its fault handler says it is dying, the signal it recorded (the
/// helper's own word: it can only fail its own calls with it). No syscall.
pub(crate) fn known_dead(p: &ProcRt) -> Option<i32> {
    if let Some(st) = p.watch.reaped() {
        return Some(st);
    }
    match p.region.header().fault_sig.load(SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// True when the helper serving `p` has died (the zygote says so, or its pidfd does).
pub fn helper_gone(p: &ProcRt) -> bool {
    if known_dead(p).is_some() {
        return true;
    }
    let fd = p.pidfd.load(Relaxed);
    if fd < 0 {
        return false;
    }
    crate::platform::sys::readable_now(fd)
}

thread_local! {
    /// Per region (index, up to 64): the channel this thread used last, + 1 (0: none). A thread
    /// keeps its channel, so its calls meet the same serving thread in the helper: the module's
    /// thread-local state (a `static __thread` buffer it returns, errno) stays this thread's.
    static MINE: Cell<[u8; 64]> = const { Cell::new([0; 64]) };
}

pub(crate) fn acquire(p: &ProcRt) -> usize {
    let last = MINE.with(|m| m.get().get(p.index).copied().unwrap_or(0));
    if last != 0 {
        let bit = 1u32 << (last - 1);
        if p.free.fetch_and(!bit, AcqRel) & bit != 0 {
            return (last - 1) as usize;
        }
    }
    let c = acquire_any(p);
    p.claimed.fetch_or(1 << c, Relaxed);
    MINE.with(|m| {
        let mut v = m.get();
        if let Some(e) = v.get_mut(p.index) {
            *e = c as u8 + 1;
        }
        m.set(v);
    });
    c
}

fn acquire_any(p: &ProcRt) -> usize {
    let mut spins = 0u32;
    loop {
        let free = p.free.load(Acquire);
        if free != 0 {
            // A channel no other thread calls as its own, if one is free.
            let unclaimed = free & !p.claimed.load(Relaxed);
            let i = if unclaimed != 0 {
                unclaimed.trailing_zeros()
            } else {
                free.trailing_zeros()
            };
            if p.free
                .compare_exchange(free, free & !(1 << i), AcqRel, Relaxed)
                .is_ok()
            {
                return i as usize;
            }
            continue;
        }
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

pub(crate) fn release(p: &ProcRt, c: usize) {
    p.free.fetch_or(1 << c, Release);
}

/// True when `ch` is idle for a new server thread (used by the helper's main loop).
pub fn pending(ch: &Channel) -> bool {
    ch.to_helper_seq.load(SeqCst) != ch.consumed.load(SeqCst)
}

/// Sends a control message (no function, no data) to the helper of `p` and waits for the
/// answer. Used for checkpoints, while the caller holds the gate exclusively.
pub fn control(p: &ProcRt, kind: u32, limit: Duration) -> Result<Msg, CallError> {
    let c = acquire(p);
    let ch = p.region.channel(c);
    let mut m = fail();
    m.kind = kind;
    let seen = ch.to_prog_seq.load(SeqCst);
    ch.write_msg(&m);
    ch.to_helper().post();
    if ch.served.load(SeqCst) == 0 {
        region::ring(&p.region.header().doorbell);
    }
    let t0 = Instant::now();
    let stop = || helper_gone(p) || t0.elapsed() > limit;
    let r = match ch
        .to_prog()
        .wait(seen, Duration::from_micros(50), false, SLICE, stop)
    {
        Some(_) => Ok(ch.read_reply()),
        None => Err(CallError::Died(-1)),
    };
    release(p, c);
    r
}
