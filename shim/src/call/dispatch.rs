//! The call path: what a trampoline does with a saved frame.
//!
//! In the process that owns the function, the frame is replayed on the real function. Else
//! the call goes to the owner: the program's calls through the hooks of the layers above
//! (recovery, replication), a helper's calls back to the program as nested calls on the
//! channel it serves. The client side of a channel is in `client.rs`, the server side in
//! `server.rs`, the records of nested calls in `nested.rs`; their public items are re-exported
//! here, the call layer's one entry.
//!
//! Must never panic across the FFI boundary: [`fracture_dispatch`] catches unwinding.
//! Nothing here runs after `fork` in a child or in a signal handler of ours.
//!
//! # Safety
//! Frames come from the stubs (exclusive, live for the call); the real function is replayed
//! with the stack words the spec or the ABI bound allows (`marshal::stack_reach`); errno is
//! this thread's.

#![allow(unsafe_code)]

use crate::call::handles;
use crate::call::marshal::Walk;
use crate::plan::runtime::{self, FnDesc, Runtime, PROGRAM};
use crate::platform::abi::{arg_value, Frame};
use crate::platform::stubs;
use module_map::ArgSpec;
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::*;
use std::time::Duration;

pub use super::channels::{control, gate_for, helper_gone, pending};
pub use super::client::{
    call_finish, call_once, call_post, client_call, nested_in, set_ret_str, Begun, Moved,
};
pub use super::nested::{
    digests, nested_digest, nested_mark, nested_mode, nested_since, set_seen, take_seen, Nested,
    NestedRec,
};
pub use super::server::{flat_target, serve, serve_flat};

/// How long a helper thread spins for the next request before it sleeps.
pub const SERVER_SPIN: Duration = Duration::from_micros(60);
/// Sleep slice between liveness checks of the peer.
pub(super) const SLICE: Duration = Duration::from_millis(50);

/// A callback slot as the program sends it to the helper: this tag or'ed with the slot's
/// function index (a non-canonical address, never a real pointer).
pub(super) const CB_TAG: u64 = 0xfc00_0000_0000_0000;
pub(super) const CB_TAG_MASK: u64 = 0xffff_0000_0000_0000;

/// A value that can be a function of the program: not NULL, not a small or negative
/// sentinel (`SQLITE_TRANSIENT` is -1), inside the user half of the address space.
pub(super) fn is_code_pointer(v: u64) -> bool {
    (4096..1 << 47).contains(&v)
}

/// Why a call could not be answered by its owner.
#[derive(Debug, Clone, Copy)]
pub enum CallError {
    /// The helper died; raw wait status (or -1 when unknown).
    Died(i32),
    /// An argument does not fit the channel's data area.
    TooLarge(u64),
    /// A `cb` argument is a function beyond the [`crate::plan::runtime::CB_SLOTS`] the
    /// callback type holds (the program's bound, not the helper's doing).
    CallbackBound,
    /// The peer answered with something we cannot use, or refused the call.
    BadReply,
    /// The helper could not run the call (unknown function, object not loadable).
    Refused,
    /// No helper process is running for the owner.
    NoHelper,
    /// The call ran longer than the process's `timeout_ms`; the helper was killed.
    Timeout(u64),
    /// The helper died of a fault in another thread's call while this one was in flight.
    Bystander(i32),
}

/// One channel this thread is using, innermost last.
#[derive(Clone, Copy, Default)]
pub(super) struct Active {
    pub(super) owner: runtime::Owner,
    /// The region (index in `procs`) the channel belongs to: replicas share an owner, not
    /// a region. NO_REGION in a helper, whose peer is the program.
    pub(super) region: u32,
    pub(super) ch: u16,
    /// First free byte of the channel's data area for a nested message.
    pub(super) top: u64,
}

pub(super) const MAX_DEPTH: usize = 32;
pub(super) const NO_REGION: u32 = u32::MAX;

thread_local! {
    static ACTIVE: RefCell<[Active; MAX_DEPTH]> = const { RefCell::new([Active { owner: PROGRAM, region: NO_REGION, ch: 0, top: 0 }; MAX_DEPTH]) };
    pub(super) static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// The innermost channel this thread uses that `which` picks.
pub(super) fn active_where(which: impl Fn(&Active) -> bool) -> Option<Active> {
    let d = DEPTH.with(|d| d.get());
    if d == 0 {
        return None;
    }
    ACTIVE.with(|a| a.borrow()[..d].iter().rev().find(|x| which(x)).copied())
}

/// The innermost channel this thread uses with a process of `owner` (any of its replicas).
pub(super) fn active_find(owner: runtime::Owner) -> Option<Active> {
    active_where(|x| x.owner == owner)
}

/// The innermost channel this thread uses in region `region`: a new call there nests on it.
pub(super) fn active_find_region(region: u32) -> Option<Active> {
    active_where(|x| x.region == region)
}

pub(super) fn active_push(x: Active) -> bool {
    let d = DEPTH.with(|d| d.get());
    if d >= MAX_DEPTH {
        return false;
    }
    ACTIVE.with(|a| a.borrow_mut()[d] = x);
    DEPTH.with(|dd| dd.set(d + 1));
    true
}

pub(super) fn active_pop() {
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
}

/// This thread's errno.
pub fn get_errno() -> i32 {
    crate::platform::sys::errno()
}

pub fn set_errno(e: i32) {
    crate::platform::sys::set_errno(e)
}

entry_point! {
/// Entry from the trampoline of mapped function `idx` (the stubs' dispatcher).
///
/// # Safety
/// `frame` points to the frame the trampoline built on its stack.
pub unsafe fn fracture_dispatch(idx: u32, frame: *mut Frame) -> () = {
    error!("internal error in the call of mapped function #{idx}; returning 0 with errno EIO");
    // SAFETY: the trampoline's frame outlives the call; the body that panicked no longer
    // holds it.
    if let Some(frame) = unsafe { frame.as_mut() } {
        frame.ret_rax = 0;
        frame.ret_rdx = 0;
    }
    set_errno(libc::EIO);
}; {
    // SAFETY: the trampoline passes a pointer to its own live, exclusive frame.
    if let Some(frame) = unsafe { frame.as_mut() } {
        dispatch(idx as usize, frame)
    }
}
}

pub(super) fn dispatch(idx: usize, frame: &mut Frame) {
    let Some(rt) = runtime::get() else {
        frame.ret_rax = 0;
        set_errno(libc::ENOSYS);
        return;
    };
    let Some(f) = rt.fns.get(idx) else {
        frame.ret_rax = 0;
        set_errno(libc::ENOSYS);
        return;
    };
    let me = rt.me();
    if rt.detached.load(Relaxed) && f.owner != me {
        // A child the program forked has no helper of its own: the call runs here, which
        // a handle token cannot follow (the object it stands for lives in the program's
        // helper, not in this process).
        if passes_a_token(f, frame) {
            warn!(
                "{}: a handle of the program's helper cannot be used in a child the program forked; the call fails with EBADF",
                f.name
            );
            frame.ret_rax = 0;
            frame.ret_rdx = 0;
            set_errno(libc::EBADF);
            return;
        }
        call_local(rt, f, frame);
        return;
    }
    if f.owner == me {
        call_local(rt, f, frame);
        return;
    }
    if rt.profiling {
        match crate::call::hooks::get() {
            Some(u) => (u.profile)(rt, f, frame),
            None => call_local(rt, f, frame),
        }
        return;
    }
    if me == PROGRAM {
        let Some(p) = rt.proc_of(f.owner) else {
            call_local(rt, f, frame);
            return;
        };
        match crate::call::hooks::get() {
            Some(u) => (u.call_helper)(rt, f, p, frame),
            None => {
                error!(
                    "internal error: no call path to helpers; {} fails with EIO",
                    f.name
                );
                frame.ret_rax = 0;
                set_errno(libc::EIO);
            }
        }
    } else {
        // In a helper: the call goes back to the program over the channel this thread serves.
        match active_find(PROGRAM) {
            Some(a) => {
                let region = &rt.procs[rt.my_region()].region;
                let stop = || region.header().shutdown.load(Relaxed) != 0;
                f.stats.nested.fetch_add(1, Relaxed);
                let walk = Walk::of(f, frame);
                if let Err(e) = client_call(
                    rt,
                    f,
                    region,
                    a.ch as usize,
                    a.top,
                    frame,
                    &walk,
                    false,
                    &stop,
                ) {
                    error!(
                        "nested call of {} from process '{}' failed: {e:?}",
                        f.name,
                        rt.procs[rt.my_region()].name
                    );
                    frame.ret_rax = 0;
                    set_errno(libc::EIO);
                }
            }
            None if f.callback.is_some() => {
                let ty = f.callback.as_ref().map_or("cb", |c| c.ty.as_str());
                error!(
                    "callback `{ty}` of module `{}` was called in process '{}' while no call from the program is in flight (a thread the module started?): the helper stops",
                    f.module,
                    rt.procs[rt.my_region()].name
                );
                // A crash of the helper: the program's recovery takes it from here.
                crate::platform::sys::abort()
            }
            None => {
                warn!(
                    "{} called from a thread the helper made itself; running it in the helper",
                    f.name
                );
                call_local(rt, f, frame);
            }
        }
    }
}

/// True when a `handle` argument of the call in `frame` is one of the program's tokens.
pub(super) fn passes_a_token(f: &FnDesc, frame: &Frame) -> bool {
    let (stack, _) = crate::call::marshal::stack_words(frame, f.layout.nstack);
    f.layout.args.iter().any(|(spec, loc)| {
        *spec == ArgSpec::Handle && handles::is_token(arg_value(frame, &stack, *loc))
    })
}

/// The real address of `f` here, loading its object first in a helper if needed.
pub fn ensure_real(rt: &Runtime, f: &FnDesc) -> usize {
    let a = f.real.load(Acquire);
    if a != 0 {
        return a;
    }
    crate::plan::load::load_for(rt, f);
    f.real.load(Acquire)
}

pub fn call_local(rt: &Runtime, f: &FnDesc, frame: &mut Frame) {
    let real = ensure_real(rt, f);
    if real == 0 {
        error!(
            "{}: the real function is not loaded in this process",
            f.name
        );
        frame.ret_rax = 0;
        set_errno(libc::ENOSYS);
        return;
    }
    // Every stack word the caller may have placed, as far as its stack mapping goes.
    let nstack = crate::call::marshal::stack_reach(frame, f.layout.nstack);
    // SAFETY: `real` is the address dlsym gave for this very symbol, and the frame's stack
    // pointer is the caller's stack, which holds `nstack` readable words (stack_words
    // bounded them by the mapping).
    unsafe { stubs::replay(real, frame, nstack) }
}

pub(super) fn align8(n: u64) -> u64 {
    n.saturating_add(7) & !7
}

/// Copies `n` bytes.
///
/// # Safety
/// Both ranges are valid for `n` bytes and do not overlap.
pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: forwarded contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) }
}
