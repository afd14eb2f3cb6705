//! The flat path: a program's call of registers only, to a helper that answers it within the
//! caller's spin.
//!
//! Most calls of a flat function (`FnDesc::flat`: `val`/`f64` arguments, a `val`/`f64`/`void`
//! result) carry no buffer, no handle, no callback and no page, and are answered by a plain
//! return in well under a microsecond. For them the general path's work (the buffer walk, a
//! 1 KiB message built on the stack and copied into the slot, the channel stack of nested
//! calls, the retry loop's saved frame) costs more than the round trip itself. This path
//! writes the call straight into the slot (`Channel::write_flat_call`), spins for the answer
//! and reads its return registers straight out of it (`Channel::read_flat_answer`).
//!
//! It is taken only where nothing else may happen to the call: a process with one region
//! (no replicas, no samples), no log of calls to keep (`restore: none`, or a pure function),
//! not on-demand, no call of this thread in flight (nothing to nest on; a replay of the log
//! makes its calls itself, and what the helper asks meanwhile is nested), a spinning wait,
//! the gate free. Anything else the answer may be (a nested call, a refusal,
//! garbage, no answer within the spin, a dead helper) is handed to the general wait as a
//! posted call ([`Flat::Pending`]): the supervision layer waits for it and recovers as it
//! does for any call, so the outcome of a call never depends on the path it took.

use super::channels::{acquire, known_dead, release};
use super::client::Begun;
use super::dispatch::{get_errno, set_errno, DEPTH};
use crate::plan::runtime::{FnDesc, ProcRt};
use crate::platform::abi::Frame;
use crate::transport::region::{self, FlatCall, MSG_RETURN};
use std::sync::atomic::Ordering::*;
use std::sync::{RwLockReadGuard, TryLockError};

/// What became of a call offered to the flat path. (Returned once and matched at once: a
/// box for the large variant would cost an allocation, a move costs nothing here.)
#[allow(clippy::large_enum_variant)]
pub enum Flat<'a> {
    /// Not a call for it: nothing was sent, the frame is untouched.
    NotTaken,
    /// Answered: the frame holds the result, errno is the callee's, statistics are noted.
    Done,
    /// Posted, not answered by a plain return within the spin: to be finished by the general
    /// wait (`supervise::recovery::finish_flat`, which the program's route to a helper calls).
    Pending(Pending<'a>),
}

/// A flat call posted and not yet answered, with the gate of its process held shared (as the
/// general path holds it for a call), to be released once the call is finished.
pub struct Pending<'a> {
    pub begun: Begun,
    pub gate: RwLockReadGuard<'a, ()>,
}

/// Offers the call of `f` in `frame` to the flat path (program side, `f` owned by `p`'s
/// process).
pub fn call<'a>(f: &FnDesc, p: &'a ProcRt, frame: &mut Frame) -> Flat<'a> {
    if !f.flat
        || p.spec.replicate.is_some()
        || p.spec.sample.is_some()
        || !(f.pure || p.spec.on_crash.restore == module_map::Restore::None)
    {
        return Flat::NotTaken;
    }
    // A sleeping wait takes the general path: it places the helper on the caller's CPU.
    let spin = f.stats.spin_budget();
    if spin.is_zero()
        || DEPTH.with(|d| d.get()) != 0
        || p.pid.load(Acquire) <= 0
        || crate::call::pages::program::is_on_demand(&p.region)
    {
        return Flat::NotTaken;
    }
    let gate = match p.gate.try_read() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        // A restart or checkpoint holds it: the general path waits for it.
        Err(TryLockError::WouldBlock) => return Flat::NotTaken,
    };
    let c = acquire(p);
    if known_dead(p).is_some() {
        // The general path reports it (a bystander of an earlier death).
        release(p, c);
        return Flat::NotTaken;
    }
    let t0 = crate::platform::clock::Stamp::now();
    let ch = p.region.channel(c);
    // As `client_post` does for a spinning call: hint 0, and a spin that yields while the
    // serving thread may still sit on our CPU (sent there by a sleeping call before).
    let last_hint = ch.last_hint.load(Relaxed);
    if last_hint != 0 {
        ch.last_hint.store(0, Relaxed);
    }
    let yielding = last_hint != 0 && last_hint == crate::call::colocate::here();
    let (send, recv) = (ch.to_helper(), ch.to_prog());
    let seen = recv.seq.load(SeqCst);
    ch.write_flat_call(&FlatCall {
        func: f.idx as u32,
        errno: get_errno(),
        hint: 0,
        gp: &frame.gp,
        rax: frame.rax,
        xmm: &frame.xmm,
        stack: crate::call::marshal::stack_in_place(frame, f.layout.nstack),
    });
    send.post();
    if ch.served.load(SeqCst) == 0 {
        region::ring(&p.region.header().doorbell);
    }
    // The general wait takes over with the call's spin budget for its waits, as if it had
    // posted the call; `spun`: the first one's spin is spent.
    let pending = |gate, spun| {
        Flat::Pending(Pending {
            begun: Begun::flat(c, t0, seen, yielding, spin, spun),
            gate,
        })
    };
    if recv.spin(seen, spin, yielding).is_none() {
        // A long call: the first wait sleeps at once.
        return pending(gate, true);
    }
    // Copied once; whatever the helper writes into the slot later is not read again.
    let a = ch.read_flat_answer();
    if a.kind != MSG_RETURN {
        // A nested call (or anything else): the general wait reads it at once.
        return pending(gate, false);
    }
    release(p, c);
    drop(gate);
    frame.ret_rax = a.ret_rax;
    frame.ret_rdx = a.ret_rdx;
    frame.ret_xmm0 = a.ret_xmm0;
    frame.ret_xmm1 = a.ret_xmm1;
    // The statistics the general path notes for a call answered at once (`call_finish`):
    // the helper's word on its work, else (unless the spin yielded to a
    // helper on our CPU, which measured the migration) the caller's own elapsed time.
    let ns = t0.elapsed_ns();
    f.stats.record(ns, 0, 0);
    f.stats.flat.fetch_add(1, Relaxed);
    if a.hint != 0 {
        f.stats.note_service(u64::from(a.hint));
    } else if !yielding {
        f.stats.note_service(ns);
    }
    // (`p.calls`, the general path's count per replica, is reported only for processes with
    // replicas, which the flat path never serves: not counted, a locked add fewer.)
    set_errno(a.errno);
    Flat::Done
}
