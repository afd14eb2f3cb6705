//! The call path: what a trampoline does with a saved frame.
//!
//! In the process that owns the function, the frame is replayed on the real function. Else
//! the call is marshalled into a channel of the owner's shared-memory region (client side),
//! and the caller waits for the answer, serving nested calls the peer makes meanwhile. The
//! same code serves a received call (server side): the helper runs it on pointers into the
//! shared data area; the program, which trusts nothing the helper wrote, on private copies.
//!
//! Must never panic across the FFI boundary: [`fracture_dispatch`] catches unwinding.
//! Nothing here runs after `fork` in a child or in a signal handler of ours.
//!
//! # Safety
//! Frames come from the stubs (exclusive, live for the call); reads of the data area use offsets
//! and lengths validated against `DATA_SIZE` after one copy of the message; buffers of the
//! program are written only with the lengths the walk measured before the call; the real function
//! is replayed with the stack words the spec or the ABI bound allows (`marshal::stack_reach`);
//! `read_self` reads our own memory with `process_vm_readv`, so an unmapped address is an error,
//! not a fault.

#![allow(unsafe_code)]

use crate::call::handles;
use crate::call::marshal::Walk;
use crate::plan::runtime::{self, FnDesc, ProcRt, Runtime, PROGRAM};
use crate::platform::abi::{arg_value, set_arg, Frame, MAX_STACK};
use crate::platform::stubs;
use crate::transport::region::{
    self, Channel, Msg, Region, DATA_SIZE, MSG_CALL, MSG_FAIL, MSG_RETURN, NULL_OFF,
};
use module_map::{ArgSpec, RetSpec};
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

/// How long a helper thread spins for the next request before it sleeps.
pub const SERVER_SPIN: Duration = Duration::from_micros(60);
/// Sleep slice between liveness checks of the peer.
const SLICE: Duration = Duration::from_millis(50);

/// A callback slot as the program sends it to the helper: this tag or'ed with the slot's
/// function index (a non-canonical address, never a real pointer).
const CB_TAG: u64 = 0xfc00_0000_0000_0000;
const CB_TAG_MASK: u64 = 0xffff_0000_0000_0000;

/// A value that can be a function of the program: not NULL, not a small or negative
/// sentinel (`SQLITE_TRANSIENT` is -1), inside the user half of the address space.
fn is_code_pointer(v: u64) -> bool {
    (4096..1 << 47).contains(&v)
}

/// Why a call could not be answered by its owner.
#[derive(Debug, Clone, Copy)]
pub enum CallError {
    /// The helper died; raw wait status (or -1 when unknown).
    Died(i32),
    /// An argument does not fit the channel's data area.
    TooLarge(u64),
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
struct Active {
    owner: u32,
    /// The region (index in `procs`) the channel belongs to: replicas share an owner, not
    /// a region. NO_REGION in a helper, whose peer is the program.
    region: u32,
    ch: u16,
    /// First free byte of the channel's data area for a nested message.
    top: u64,
}

const MAX_DEPTH: usize = 32;
const NO_REGION: u32 = u32::MAX;

thread_local! {
    static ACTIVE: RefCell<[Active; MAX_DEPTH]> = const { RefCell::new([Active { owner: 0, region: NO_REGION, ch: 0, top: 0 }; MAX_DEPTH]) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Returned strings (`ret: str`), per function, valid until the next call of it here.
    static RET_STR: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Nested calls of a replicated call (see [`Nested`]).
    static NESTED: RefCell<Nested> = const { RefCell::new(Nested::Off) };
    /// Digest of the nested calls served for the replica now answering (see [`take_seen`]).
    static SEEN: Cell<u64> = const { Cell::new(0) };
    /// Set while a replicated call runs (see [`digests`]).
    static DIGESTS: Cell<bool> = const { Cell::new(false) };
}

/// A nested call the program served for replica 0 of a replicated call: what it answered.
#[derive(Clone)]
pub struct NestedRec {
    func: u32,
    ret: (u64, u64, [u64; 2], [u64; 2]),
    errno: i32,
    /// (argument index, bytes) of the out/inout buffers after the call.
    outs: Vec<(usize, Vec<u8>)>,
    ret_str: Option<Vec<u8>>,
    /// What the call asked: its function and the bytes of its buffers (see [`asked`]).
    asked: u64,
}

/// One nested call as the program saw it, for comparing replicas: the function and the bytes
/// of its buffer arguments. `val` arguments are left out: they may be the replica's own
/// pointers (a `sqlite3_context *`), which differ between helpers that agree.
fn asked(f: &FnDesc, private: &[(usize, Vec<u8>)]) -> u64 {
    let mut h = fold(0xcbf2_9ce4_8422_2325, f.idx as u64);
    for (i, v) in private {
        h = fold(h, *i as u64);
        // A string array's pointer words are this process's addresses: only its count (word
        // 0, kept by `unpack_strv`) and its strings are compared.
        let skip = match f.layout.args.get(*i) {
            Some((ArgSpec::Strv(_), _)) => v
                .get(..8)
                .and_then(|w| w.try_into().ok())
                .map(u64::from_le_bytes)
                .map_or(0, |n| (n as usize).saturating_add(2).saturating_mul(8)),
            _ => 0,
        };
        h = fold(h, v.len() as u64);
        let bytes = v.get(skip..).unwrap_or_default();
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            h = fold(h, u64::from_le_bytes(w.try_into().unwrap_or_default()));
        }
        for &b in words.remainder() {
            h = fold(h, u64::from(b));
        }
    }
    h
}

/// Compares replicas' nested calls only while a replicated call runs (the digest costs a
/// pass over every buffer of every nested call). Returns the previous setting, which the
/// caller restores (a replicated call may nest in another one's callback).
pub fn digests(on: bool) -> bool {
    DIGESTS.with(|d| d.replace(on))
}

fn fold(acc: u64, x: u64) -> u64 {
    (acc ^ x).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The digest of a sequence of nested calls (what replica 0 did, from its record).
pub fn nested_digest(recs: &[NestedRec]) -> u64 {
    recs.iter().fold(0, |acc, r| fold(acc, r.asked))
}

/// Starts this thread's digest of the nested calls it serves (see [`take_seen`]).
pub fn set_seen(d: u64) {
    SEEN.with(|s| s.set(d));
}

/// The digest of the nested calls served since [`set_seen`]: a replica whose callbacks differ
/// from replica 0's gets a different digest, and its answer loses the vote.
pub fn take_seen() -> u64 {
    SEEN.with(|s| s.replace(0))
}

/// While a replicated call runs: replica 0's nested calls into the program are executed and
/// recorded; the other replicas' nested calls are answered from the record, in order, so the
/// program's state changes once, as with one helper. A replica whose nested calls differ
/// from the record gets a refused call (and then, most likely, a mismatch).
pub enum Nested {
    Off,
    Record(Vec<NestedRec>),
    Replay(Vec<NestedRec>, usize),
}

/// Where the nested calls of one call begin in this thread's record (see [`nested_since`]).
pub struct NestedMark {
    start: usize,
    /// The mode was off: recording was switched on for this call alone.
    own: bool,
}

/// Starts keeping the nested calls (callbacks included) the next call makes, for its replay
/// log entry: a replayed call is answered from them, so a restart does not run the program's
/// callbacks twice. Inside a replicated call the replicas' record is shared.
pub fn nested_mark() -> NestedMark {
    NESTED.with(|n| {
        let mut n = n.borrow_mut();
        match &*n {
            Nested::Record(r) => NestedMark {
                start: r.len(),
                own: false,
            },
            Nested::Off => {
                *n = Nested::Record(Vec::new());
                NestedMark {
                    start: 0,
                    own: true,
                }
            }
            Nested::Replay(..) => NestedMark {
                start: usize::MAX,
                own: false,
            },
        }
    })
}

/// The nested calls made since `mark`; ends the recording [`nested_mark`] started.
pub fn nested_since(mark: NestedMark) -> Vec<NestedRec> {
    NESTED.with(|n| {
        let mut n = n.borrow_mut();
        let recs = match &*n {
            Nested::Record(r) => r.get(mark.start..).map(|s| s.to_vec()).unwrap_or_default(),
            _ => Vec::new(),
        };
        if mark.own {
            *n = Nested::Off;
        }
        recs
    })
}

/// Sets this thread's nested-call mode; returns the previous one.
pub fn nested_mode(m: Nested) -> Nested {
    NESTED.with(|n| std::mem::replace(&mut *n.borrow_mut(), m))
}

/// The innermost channel this thread uses that `which` picks.
fn active_where(which: impl Fn(&Active) -> bool) -> Option<Active> {
    let d = DEPTH.with(|d| d.get());
    if d == 0 {
        return None;
    }
    ACTIVE.with(|a| a.borrow()[..d].iter().rev().find(|x| which(x)).copied())
}

/// The innermost channel this thread uses with a process of `owner` (any of its replicas).
fn active_find(owner: u32) -> Option<Active> {
    active_where(|x| x.owner == owner)
}

/// The innermost channel this thread uses in region `region`: a new call there nests on it.
fn active_find_region(region: u32) -> Option<Active> {
    active_where(|x| x.region == region)
}

fn active_push(x: Active) -> bool {
    let d = DEPTH.with(|d| d.get());
    if d >= MAX_DEPTH {
        return false;
    }
    ACTIVE.with(|a| a.borrow_mut()[d] = x);
    DEPTH.with(|dd| dd.set(d + 1));
    true
}

fn active_pop() {
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
}

fn errno_ptr() -> *mut i32 {
    // SAFETY: __errno_location has no preconditions and returns this thread's errno.
    unsafe { libc::__errno_location() }
}

/// This thread's errno.
pub fn get_errno() -> i32 {
    // SAFETY: see errno_ptr.
    unsafe { *errno_ptr() }
}

pub fn set_errno(e: i32) {
    // SAFETY: see errno_ptr.
    unsafe { *errno_ptr() = e }
}

/// Entry from the trampoline of mapped function `idx`.
///
/// # Safety
/// `frame` points to the frame the trampoline built on its stack.
pub unsafe extern "C" fn fracture_dispatch(idx: u32, frame: *mut Frame) {
    // SAFETY: the trampoline passes a pointer to its own live, exclusive frame.
    let frame = unsafe { &mut *frame };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(idx as usize, frame)
    }));
    if r.is_err() {
        error!("internal error in the call of mapped function #{idx}; returning 0 with errno EIO");
        frame.ret_rax = 0;
        frame.ret_rdx = 0;
        set_errno(libc::EIO);
    }
}

fn dispatch(idx: usize, frame: &mut Frame) {
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
                // SAFETY: abort has no preconditions.
                unsafe { libc::abort() }
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
fn passes_a_token(f: &FnDesc, frame: &Frame) -> bool {
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

fn align8(n: u64) -> u64 {
    n.saturating_add(7) & !7
}

/// Copies `n` bytes.
///
/// # Safety
/// Both ranges are valid for `n` bytes and do not overlap.
unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: forwarded contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) }
}

/// Totals of one call, for the statistics.
#[derive(Default, Clone, Copy)]
pub struct Moved {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How long the helper says it took (ns; 0: not said).
    pub served_ns: u64,
}

/// Sends the call in `frame` to the peer on channel `c` of `region` and waits for the answer,
/// serving the peer's nested calls meanwhile. `from_program` says which side we are.
#[allow(clippy::too_many_arguments)]
pub fn client_call(
    rt: &Runtime,
    f: &FnDesc,
    region: &Region,
    c: usize,
    base: u64,
    frame: &mut Frame,
    walk: &Walk,
    from_program: bool,
    stop: &dyn Fn() -> bool,
) -> Result<Moved, CallError> {
    let posted = client_post(f, region, c, base, frame, walk, from_program, false)?;
    client_wait(rt, f, region, posted, frame, from_program, stop)
}

/// A call marshalled into a channel and posted to the peer, not yet answered: what the
/// answer's copy-back needs (the caller's buffers, at the offsets we chose).
pub struct Posted {
    c: usize,
    /// (caller pointer, offset, length, copy back?) per non-NULL buffer argument.
    bufs: [(u64, u64, u64, bool); crate::platform::abi::MAX_ARGS],
    nbufs: usize,
    /// First byte after the marshalled buffers: a returned string or mirror lies beyond.
    cursor: u64,
    mirror_token: u64,
    /// The answer direction's sequence when we posted.
    seen: u32,
    moved: Moved,
    /// How long the caller spins before it sleeps (see `call::colocate`).
    spin: Duration,
    /// The CPU hint the call carries (0: none).
    hint: u32,
    /// Spin yielding the CPU (the serving thread may be on ours).
    yielding: bool,
}

/// Marshals the call in `frame` into channel `c` of `region` and posts it; the caller's
/// frame and buffers are only read, at the places and lengths `walk` computed before.
/// [`client_wait`] takes the answer. `colocate`: a caller that sleeps asks the helper onto
/// its CPU (not for replicas, which must run side by side).
#[allow(clippy::too_many_arguments)]
pub fn client_post(
    f: &FnDesc,
    region: &Region,
    c: usize,
    base: u64,
    frame: &Frame,
    walk: &Walk,
    from_program: bool,
    colocate: bool,
) -> Result<Posted, CallError> {
    let ch = region.channel(c);
    let data = region.data(c);
    let mut stack = walk.stack;
    let nstack = walk.nstack.min(MAX_STACK);
    // Program side: handle tokens go back to the helper's own values.
    let mut tf = *frame;
    let mut mirror_token = 0u64;
    if from_program {
        for (spec, loc) in &f.layout.args {
            if *spec == ArgSpec::Handle {
                let v = arg_value(frame, &walk.stack, *loc);
                if mirror_token == 0 && handles::is_token(v) {
                    mirror_token = v;
                }
                set_arg(
                    &mut tf,
                    &mut stack,
                    *loc,
                    handles::remote_of(region.key(), v),
                );
            }
        }
    }
    // Program side: function pointers passed as `cb` become callback slots, which the helper
    // turns into stubs of its own (see `serve`).
    if from_program && !f.cb_args.is_empty() {
        let rt = runtime::get().ok_or(CallError::Refused)?;
        for &(i, first) in &f.cb_args {
            let loc = f.layout.args[i].1;
            let v = arg_value(frame, &walk.stack, loc);
            if !is_code_pointer(v) {
                continue; // NULL and sentinels such as SQLITE_TRANSIENT pass as they are
            }
            let Some(slot) = rt.cb_slot(first, v as usize) else {
                warn!(
                    "{}: more than {} distinct functions were passed as callback `{}`: the call is refused",
                    f.name,
                    runtime::CB_SLOTS,
                    rt.fns[first].callback.as_ref().map_or("cb", |c| c.ty.as_str())
                );
                return Err(CallError::Refused);
            };
            set_arg(&mut tf, &mut stack, loc, CB_TAG | slot as u64);
        }
    }
    let frame_in = &tf;
    // The caller's wait, decided once per call: spin, or sleep with the helper on our CPU.
    let spin = if from_program {
        f.stats.spin_budget()
    } else {
        crate::call::colocate::server_spin(SERVER_SPIN)
    };
    // Program: where it waits (see `call::colocate`). Helper: how long it worked since the
    // program last spoke to it (for the program's wait policy).
    let spin_hint = if from_program && colocate {
        crate::call::colocate::hint_for(spin)
    } else if from_program {
        0
    } else {
        crate::call::colocate::worked_ns()
    };
    // A caller about to spin while the serving thread sits on its CPU (sent there by a sleeping
    // call before) yields while it spins: the helper must get the CPU to answer (and, told
    // hint 0, moves off it).
    let yielding = from_program
        && !spin.is_zero()
        && ch.last_hint.load(Relaxed) != 0
        && crate::call::colocate::hint_for(Duration::ZERO) == ch.last_hint.load(Relaxed);
    if from_program {
        ch.last_hint.store(spin_hint, Relaxed);
    }
    let mut m: Msg = Msg {
        kind: MSG_CALL,
        func: f.idx as u32,
        errno: get_errno(),
        nstack: nstack as u32,
        nargs: f.layout.args.len() as u32,
        hint: spin_hint,
        data_base: base,
        data_end: base,
        gp: frame_in.gp,
        rax: frame_in.rax,
        xmm: frame_in.xmm,
        stack,
        arg_off: [NULL_OFF; crate::platform::abi::MAX_ARGS],
        arg_len: [0; crate::platform::abi::MAX_ARGS],
        ret_rax: 0,
        ret_rdx: 0,
        ret_xmm0: [0; 2],
        ret_xmm1: [0; 2],
        ret_off: NULL_OFF,
        ret_len: 0,
        mirror_off: NULL_OFF,
        mirror_len: 0,
    };
    let mut bufs = [(0u64, 0u64, 0u64, false); crate::platform::abi::MAX_ARGS];
    let mut nbufs = 0;
    let mut cursor = align8(base);
    let moved = Moved {
        bytes_in: walk.bytes_in(),
        bytes_out: 0,
        served_ns: 0,
    };
    for b in walk.bufs() {
        let end = cursor
            .checked_add(b.len)
            .filter(|e| *e <= DATA_SIZE as u64)
            .ok_or(CallError::TooLarge(b.len))?;
        // Out-buffers are copied in too: bytes the function does not write keep their values.
        // SAFETY: the caller's buffer holds `b.len` bytes (the walk measured it before the
        // call); the destination lies in the channel's data area (end <= DATA_SIZE, checked).
        unsafe {
            copy(
                data.add(cursor as usize),
                b.ptr as *const u8,
                b.len as usize,
            )
        };
        bufs[nbufs] = (b.ptr, cursor, b.len, b.copied_back());
        nbufs += 1;
        m.arg_off[b.arg as usize] = cursor;
        m.arg_len[b.arg as usize] = b.len;
        cursor = align8(end);
    }
    m.data_end = cursor.min(DATA_SIZE as u64);
    let (send, recv) = if from_program {
        (ch.to_helper(), ch.to_prog())
    } else {
        (ch.to_prog(), ch.to_helper())
    };
    let seen = recv.seq.load(SeqCst);
    // The channel is ours for this call (acquired, or nested on it); the message slot
    // belongs to the sender until the peer answers.
    ch.write_msg(&m);
    send.post();
    if from_program && ch.served.load(SeqCst) == 0 {
        region::ring(&region.header().doorbell);
    }
    Ok(Posted {
        c,
        bufs,
        nbufs,
        cursor,
        mirror_token,
        seen,
        moved,
        spin,
        hint: spin_hint,
        yielding,
    })
}

/// Waits for the answer to a call [`client_post`] sent, serving the peer's nested calls
/// meanwhile, and copies the results into `frame` and the caller's out-buffers.
pub fn client_wait(
    rt: &Runtime,
    f: &FnDesc,
    region: &Region,
    posted: Posted,
    frame: &mut Frame,
    from_program: bool,
    stop: &dyn Fn() -> bool,
) -> Result<Moved, CallError> {
    let Posted {
        c,
        bufs,
        nbufs,
        cursor,
        mut mirror_token,
        mut seen,
        mut moved,
        spin,
        hint,
        yielding,
    } = posted;
    let _stay = crate::call::colocate::stay_for(hint);
    let ch = region.channel(c);
    let data = region.data(c);
    let (send, recv) = if from_program {
        (ch.to_helper(), ch.to_prog())
    } else {
        (ch.to_prog(), ch.to_helper())
    };
    loop {
        let Some(s) = recv.wait(seen, spin, yielding, SLICE, stop) else {
            // The program side (call_once) finds the status; a helper just fails the call.
            return Err(CallError::Died(-1));
        };
        if !from_program {
            ch.consumed.store(s, SeqCst);
        }
        let r = ch.read_msg();
        if from_program {
            // The helper's word on how long this wait was work (policy only).
            if r.hint != 0 {
                f.stats.note_service(u64::from(r.hint));
            }
        } else {
            crate::call::colocate::heard();
        }
        match r.kind {
            MSG_RETURN => {
                moved.served_ns = u64::from(r.hint);
                frame.ret_rax = r.ret_rax;
                frame.ret_rdx = r.ret_rdx;
                frame.ret_xmm0 = r.ret_xmm0;
                frame.ret_xmm1 = r.ret_xmm1;
                if f.ret == RetSpec::Str {
                    frame.ret_rax =
                        take_ret_str(f, data, cursor, r.ret_off, r.ret_len, &mut moved)?;
                }
                if from_program {
                    if f.ret == RetSpec::Handle {
                        // Replayed calls and replicas other than the answering one get
                        // fresh tokens, handed over to the program's token afterwards.
                        let tok =
                            if crate::call::hooks::replaying() || crate::call::hooks::secondary() {
                                handles::fresh_token(region.key(), r.ret_rax)
                            } else {
                                handles::token_for(region.key(), r.ret_rax)
                            };
                        let Some(tok) = tok else {
                            warn!(
                                "{} returned a new handle after {} others: refused",
                                f.name,
                                handles::MAX_TOKENS
                            );
                            return Err(CallError::BadReply);
                        };
                        frame.ret_rax = tok;
                        mirror_token = frame.ret_rax;
                    }
                    if mirror_token != 0 && r.mirror_off != NULL_OFF {
                        let ok = r.mirror_len as usize <= handles::MIRROR
                            && r.mirror_off >= cursor
                            && r.mirror_off
                                .checked_add(r.mirror_len)
                                .is_some_and(|e| e <= DATA_SIZE as u64);
                        if ok {
                            // SAFETY: the range lies inside the data area (checked above).
                            let snap = unsafe {
                                std::slice::from_raw_parts(
                                    data.add(r.mirror_off as usize),
                                    r.mirror_len as usize,
                                )
                            };
                            handles::refresh(mirror_token, snap);
                        }
                    }
                }
                // Copy back out-buffers at the offsets and lengths we chose, never the peer's,
                // and only once the answer is known to be good: a failed call writes nothing.
                for &(p, off, len, back) in &bufs[..nbufs] {
                    if back {
                        // SAFETY: same ranges as the copy-in above.
                        unsafe { copy(p as *mut u8, data.add(off as usize), len as usize) };
                        moved.bytes_out += len;
                    }
                }
                set_errno(r.errno);
                return Ok(moved);
            }
            MSG_CALL => {
                // A nested call of the peer: serve it and keep waiting for our answer.
                let reply = serve(rt, region, c, &r, !from_program);
                // Serving it may have made calls of its own on this channel (module ->
                // program -> same module), whose answers moved the sequence past `seen`: the
                // peer posts nothing more until it has our reply, so take the sequence now.
                seen = recv.seq.load(SeqCst);
                ch.write_msg(&reply);
                send.post();
                // A peer that keeps sending nested calls never lets the wait reach its
                // sleeping path, where `stop` is asked: ask it here too (timeout_ms holds).
                if stop() {
                    return Err(CallError::Died(-1));
                }
            }
            MSG_FAIL => return Err(CallError::Refused),
            _ => return Err(CallError::BadReply),
        }
    }
}

/// Puts `s` into this thread's returned-string buffer for `f`; returns its address.
pub fn set_ret_str(f: &FnDesc, s: &[u8]) -> u64 {
    RET_STR.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() <= f.idx {
            r.resize_with(f.idx + 1, Vec::new);
        }
        let buf = &mut r[f.idx];
        buf.clear();
        buf.extend_from_slice(s);
        buf.push(0);
        buf.as_ptr() as u64
    })
}

/// Copies a returned string out of the data area into this thread's buffer for `f`.
fn take_ret_str(
    f: &FnDesc,
    data: *mut u8,
    lo: u64,
    off: u64,
    len: u64,
    moved: &mut Moved,
) -> Result<u64, CallError> {
    if off == NULL_OFF {
        return Ok(0);
    }
    let end = off.checked_add(len).ok_or(CallError::BadReply)?;
    if off < lo || end > DATA_SIZE as u64 {
        return Err(CallError::BadReply);
    }
    if crate::call::hooks::replaying() {
        // A replayed call's string is nobody's: the program's copy from an earlier call of
        // `f` stays valid, as the spec promises.
        return Ok(1);
    }
    RET_STR.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() <= f.idx {
            r.resize_with(f.idx + 1, Vec::new);
        }
        let buf = &mut r[f.idx];
        buf.clear();
        // SAFETY: [off, end) lies inside the data area (checked above); copied once.
        let src = unsafe { std::slice::from_raw_parts(data.add(off as usize), len as usize) };
        let n = src.iter().position(|&b| b == 0).unwrap_or(src.len());
        buf.extend_from_slice(&src[..n]);
        buf.push(0);
        moved.bytes_out += n as u64;
        Ok(buf.as_ptr() as u64)
    })
}

/// Program side of a nested call: true when every `in:`/`out:`/`inout:` buffer the helper
/// sent is exactly as long as the spec says, evaluated on the helper's argument values and
/// on the program's private copies (`*argN` reads the copy of buffer N; a size behind a
/// pointer that is not a buffer cannot be checked, and is refused).
fn sizes_match(f: &FnDesc, m: &Msg, nargs: usize, private: &[(usize, Vec<u8>)]) -> bool {
    let orig = Frame {
        gp: m.gp,
        xmm: m.xmm,
        ..Frame::default()
    };
    let arg = |i: usize| {
        f.layout
            .args
            .get(i)
            .map_or(0, |a| arg_value(&orig, &m.stack, a.1))
    };
    let deref = |i: usize| -> Option<u64> {
        let spec = f.layout.args.get(i)?.0;
        if !spec.is_buffer() {
            return None;
        }
        match private.iter().find(|(j, _)| *j == i) {
            Some((_, v)) => Some(u64::from_le_bytes(v.get(..8)?.try_into().ok()?)),
            None => Some(0), // NULL points to no size
        }
    };
    for (i, (spec, _)) in f.layout.args.iter().enumerate().take(nargs) {
        let (ArgSpec::In(sz) | ArgSpec::Out(sz) | ArgSpec::InOut(sz)) = spec else {
            continue;
        };
        if m.arg_off[i] == NULL_OFF {
            continue;
        }
        if crate::call::marshal::size_of(sz, arg, deref) != Some(m.arg_len[i]) {
            return false;
        }
    }
    true
}

fn fail() -> Msg {
    // SAFETY: Msg is plain data; all-zero is a valid value.
    let mut m: Msg = unsafe { std::mem::zeroed() };
    m.kind = MSG_FAIL;
    m
}

/// Runs the call in message `m` received on channel `c` here and builds the answer.
/// `zero_copy`: run on pointers into the data area (helper); else on private copies (program).
pub fn serve(rt: &Runtime, region: &Region, c: usize, m: &Msg, zero_copy: bool) -> Msg {
    let Some(f) = rt.fns.get(m.func as usize) else {
        return fail();
    };
    if f.owner != rt.me() && !(rt.me() == PROGRAM && f.owner != PROGRAM) {
        return fail();
    }
    if m.data_base > m.data_end || m.data_end > DATA_SIZE as u64 {
        return fail();
    }
    // The helper serves the program's calls on the stack words the program sent (it may
    // pass more than the spec lists); the program serves a helper's nested call on the
    // spec's words only, whatever count the helper wrote.
    let nstack = if zero_copy {
        m.nstack as usize
    } else {
        f.layout.nstack
    };
    if nstack > MAX_STACK {
        return fail();
    }
    let (peer, peer_region) = if rt.me() == PROGRAM {
        // We serve the helper of this region: its owner id, and the region itself.
        rt.procs
            .iter()
            .position(|p| std::ptr::eq(&p.region as *const Region, region as *const Region))
            .map(|k| (rt.procs[k].primary as u32 + 1, k as u32))
            .unwrap_or((PROGRAM, NO_REGION))
    } else {
        (PROGRAM, NO_REGION)
    };
    // A helper asking the program to call one of the helper's own functions would make the
    // program call back into the very call it is serving: refused, as is nesting deeper
    // than the channel stack goes (each level costs the program stack).
    if !zero_copy && f.owner == peer {
        warn!(
            "refused a nested call of {} from its own process '{}'",
            f.name,
            rt.procs.get(peer_region as usize).map_or("?", |p| &p.name)
        );
        return fail();
    }
    // A callback: only a slot the program bound itself, for the process it passed it to.
    if let Some(cb) = &f.callback {
        if zero_copy || f.real.load(Acquire) == 0 || cb.process != peer {
            warn!(
                "refused a call of callback `{}` of module `{}` from process '{}': the program never passed that function to it",
                cb.ty,
                f.module,
                rt.procs.get(peer_region as usize).map_or("?", |p| &p.name)
            );
            return fail();
        }
        f.stats.calls.fetch_add(1, Relaxed);
    }
    if DEPTH.with(|d| d.get()) + 2 > MAX_DEPTH {
        warn!(
            "refused a nested call of {}: calls nest deeper than {}",
            f.name,
            MAX_DEPTH / 2
        );
        return fail();
    }
    let data = region.data(c);
    let mut stack = m.stack;
    let mut frame = Frame {
        gp: m.gp,
        rax: m.rax,
        xmm: m.xmm,
        ..Frame::default()
    };
    let nargs = (m.nargs as usize).min(crate::platform::abi::MAX_ARGS);
    let mut private: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, (spec, loc)) in f.layout.args.iter().enumerate() {
        if !spec.is_buffer() {
            continue;
        }
        // Entries past the sender's count were never written: NULL.
        let (off, len) = if i < nargs {
            (m.arg_off[i], m.arg_len[i])
        } else {
            (NULL_OFF, 0)
        };
        if off == NULL_OFF {
            set_arg(&mut frame, &mut stack, *loc, 0);
            continue;
        }
        let Some(end) = off.checked_add(len) else {
            return fail();
        };
        if off < m.data_base || end > m.data_end {
            return fail();
        }
        let ptr = if let (ArgSpec::Strv(count), true) = (spec, zero_copy) {
            // SAFETY: [off, end) lies inside the data area (checked above); the program wrote
            // it and waits for the answer.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(data.add(off as usize), len as usize) };
            let _ = count;
            match crate::call::marshal::unpack_strv(bytes) {
                Some((arr, _)) => arr,
                None => return fail(),
            }
        } else if let ArgSpec::Strv(count) = spec {
            // SAFETY: in bounds (checked above); copied once into memory the peer cannot touch.
            let mut v = unsafe { std::slice::from_raw_parts(data.add(off as usize), len as usize) }
                .to_vec();
            let Some((arr, n)) = crate::call::marshal::unpack_strv(&mut v) else {
                warn!(
                    "refused a nested call of {}: argument {i} is not a well-formed string array",
                    f.name
                );
                return fail();
            };
            if let Some(sz) = count {
                let orig = Frame {
                    gp: m.gp,
                    xmm: m.xmm,
                    ..Frame::default()
                };
                let arg = |j: usize| {
                    f.layout
                        .args
                        .get(j)
                        .map_or(0, |a| arg_value(&orig, &m.stack, a.1))
                };
                if crate::call::marshal::size_of(sz, arg, |_| None) != Some(n as u64) {
                    warn!(
                        "refused a nested call of {}: argument {i} has {n} strings, not the count its spec gives",
                        f.name
                    );
                    return fail();
                }
            }
            private.push((i, v));
            arr
        } else if zero_copy {
            if *spec == ArgSpec::Str && len > 0 {
                // SAFETY: inside the data area (checked); the program wrote the NUL, but the
                // string must end inside its slot whatever happened.
                unsafe { *data.add((end - 1) as usize) = 0 };
            }
            // SAFETY: in bounds (checked above).
            unsafe { data.add(off as usize) as u64 }
        } else {
            // SAFETY: in bounds (checked above); copied once into memory the peer cannot touch.
            let mut v = unsafe { std::slice::from_raw_parts(data.add(off as usize), len as usize) }
                .to_vec();
            if *spec == ArgSpec::Str {
                if v.last() != Some(&0) {
                    v.push(0);
                }
            } else if v.is_empty() {
                v.push(0);
            }
            let p = v.as_mut_ptr() as u64;
            private.push((i, v));
            p
        };
        set_arg(&mut frame, &mut stack, *loc, ptr);
    }
    if zero_copy {
        for &(i, first) in &f.cb_args {
            let loc = f.layout.args[i].1;
            let v = arg_value(&frame, &stack, loc);
            if v & CB_TAG_MASK != CB_TAG {
                continue;
            }
            let slot = (v & !CB_TAG_MASK) as usize;
            if !(first..first + runtime::CB_SLOTS).contains(&slot) {
                return fail();
            }
            set_arg(&mut frame, &mut stack, loc, stubs::stub_addr(slot) as u64);
        }
    }
    if !zero_copy && !sizes_match(f, m, nargs, &private) {
        warn!(
            "refused a nested call of {}: its buffers are not the sizes its spec gives",
            f.name
        );
        return fail();
    }
    frame.stack = stack.as_ptr();
    let owner_here = f.owner == rt.me();
    let pushed = active_push(Active {
        owner: peer,
        region: peer_region,
        ch: c as u16,
        top: m.data_end,
    });
    set_errno(m.errno);
    let asked_now = if zero_copy || !DIGESTS.with(|d| d.get()) {
        0
    } else {
        asked(f, &private)
    };
    if asked_now != 0 {
        SEEN.with(|s| s.set(fold(s.get(), asked_now)));
    }
    // Replicated call, program side: answer from the record, or record what ran.
    let replaying = !zero_copy && NESTED.with(|n| matches!(*n.borrow(), Nested::Replay(..)));
    let recorded: Option<NestedRec> = if replaying {
        let next = NESTED.with(|n| match &mut *n.borrow_mut() {
            Nested::Replay(recs, i) => {
                let r = recs.get(*i).filter(|r| r.func == m.func).cloned();
                if r.is_some() {
                    *i += 1;
                }
                r
            }
            _ => None,
        });
        match next {
            Some(r) => Some(r),
            None => {
                if pushed {
                    active_pop();
                }
                return fail();
            }
        }
    } else {
        None
    };
    // A recorded returned string, kept alive until it is copied into the answer below.
    let kept_str: Option<Vec<u8>> = recorded
        .as_ref()
        .and_then(|r| r.ret_str.as_ref())
        .map(|s| s.iter().copied().chain([0]).collect());
    if let Some(rec) = &recorded {
        (frame.ret_rax, frame.ret_rdx, frame.ret_xmm0, frame.ret_xmm1) = rec.ret;
        set_errno(rec.errno);
        for (i, bytes) in &rec.outs {
            if let Some((_, v)) = private.iter_mut().find(|(j, _)| j == i) {
                let n = v.len().min(bytes.len());
                v[..n].copy_from_slice(&bytes[..n]);
            }
        }
        if let Some(k) = &kept_str {
            frame.ret_rax = k.as_ptr() as u64;
        }
    } else if owner_here {
        let real = ensure_real(rt, f);
        if real == 0 {
            if pushed {
                active_pop();
            }
            return fail();
        }
        // SAFETY: real is the function the spec describes; `stack` holds `nstack` words.
        unsafe { stubs::replay(real, &mut frame, nstack) };
    } else {
        // The program forwards a helper's call to the process that owns the function.
        dispatch(f.idx, &mut frame);
    }
    let errno = get_errno();
    if pushed {
        active_pop();
    }
    if !zero_copy && recorded.is_none() {
        NESTED.with(|n| {
            if let Nested::Record(recs) = &mut *n.borrow_mut() {
                recs.push(NestedRec {
                    func: m.func,
                    ret: (frame.ret_rax, frame.ret_rdx, frame.ret_xmm0, frame.ret_xmm1),
                    errno,
                    outs: private
                        .iter()
                        .filter(|(i, _)| {
                            matches!(f.layout.args[*i].0, ArgSpec::Out(_) | ArgSpec::InOut(_))
                        })
                        .cloned()
                        .collect(),
                    asked: asked_now,
                    ret_str: (f.ret == RetSpec::Str && frame.ret_rax != 0).then(|| {
                        // SAFETY: the function returned a NUL-terminated string (its spec).
                        unsafe { std::ffi::CStr::from_ptr(frame.ret_rax as *const libc::c_char) }
                            .to_bytes()
                            .to_vec()
                    }),
                });
            }
        });
    }
    let mut r = fail();
    r.kind = MSG_RETURN;
    r.func = m.func;
    r.errno = errno;
    r.ret_rax = frame.ret_rax;
    r.ret_rdx = frame.ret_rdx;
    r.ret_xmm0 = frame.ret_xmm0;
    r.ret_xmm1 = frame.ret_xmm1;
    r.ret_off = NULL_OFF;
    r.mirror_off = NULL_OFF;
    if !zero_copy {
        for (i, v) in &private {
            let spec = f.layout.args[*i].0;
            if matches!(spec, ArgSpec::Out(_) | ArgSpec::InOut(_)) {
                let n = (m.arg_len[*i] as usize).min(v.len());
                // SAFETY: writing back into the slot the peer gave for this argument, in bounds.
                unsafe { copy(data.add(m.arg_off[*i] as usize), v.as_ptr(), n) };
            }
        }
    }
    let mut top = align8(m.data_end);
    if f.ret == RetSpec::Str && frame.ret_rax != 0 {
        // SAFETY: the function returned a NUL-terminated string (its spec says so).
        let len = unsafe { libc::strlen(frame.ret_rax as *const libc::c_char) } as u64;
        let off = align8(m.data_end);
        match off.checked_add(len + 1).filter(|e| *e <= DATA_SIZE as u64) {
            Some(_) => {
                // SAFETY: [off, off+len+1) is inside the data area (checked).
                unsafe {
                    copy(
                        data.add(off as usize),
                        frame.ret_rax as *const u8,
                        len as usize,
                    );
                    *data.add((off + len) as usize) = 0;
                }
                r.ret_off = off;
                r.ret_len = len;
                top = align8(off + len + 1);
            }
            None => return fail(),
        }
        r.ret_rax = 0;
    }
    if zero_copy {
        // Helper side: snapshot the object behind the returned (or first) handle.
        let src = if f.ret == RetSpec::Handle {
            frame.ret_rax
        } else {
            let orig = Frame {
                gp: m.gp,
                xmm: m.xmm,
                ..Frame::default()
            };
            f.layout
                .args
                .iter()
                .find(|a| a.0 == ArgSpec::Handle)
                .map(|a| arg_value(&orig, &m.stack, a.1))
                .unwrap_or(0)
        };
        if src != 0 && top + handles::MIRROR as u64 <= DATA_SIZE as u64 {
            // SAFETY: the destination lies in the data area (checked); the source is read
            // with process_vm_readv, which fails instead of faulting on unmapped memory.
            let n = unsafe { read_self(src, data.add(top as usize), handles::MIRROR) };
            if n > 0 {
                r.mirror_off = top;
                r.mirror_len = n as u64;
            }
        }
    }
    r
}

/// This process's pid, cached per thread (a helper never forks its serving threads).
fn my_pid() -> libc::pid_t {
    thread_local! { static PID: Cell<libc::pid_t> = const { Cell::new(0) }; }
    PID.with(|p| {
        if p.get() == 0 {
            // SAFETY: getpid has no preconditions.
            p.set(unsafe { libc::getpid() });
        }
        p.get()
    })
}

/// Reads up to `n` bytes at `src` of this process into `dst`, stopping at unmapped memory.
///
/// # Safety
/// `dst` is valid for `n` bytes.
unsafe fn read_self(src: u64, dst: *mut u8, n: usize) -> isize {
    // Try the whole snapshot; if the object ends near unmapped memory, the rest of its page.
    // SAFETY: forwarded contract.
    let r = unsafe { read_self_once(src, dst, n) };
    if r > 0 {
        return r;
    }
    let in_page = (4096 - (src as usize & 4095)).min(n);
    // SAFETY: forwarded contract; in_page <= n.
    unsafe { read_self_once(src, dst, in_page) }
}

/// # Safety
/// `dst` is valid for `n` bytes.
unsafe fn read_self_once(src: u64, dst: *mut u8, n: usize) -> isize {
    let local = libc::iovec {
        iov_base: dst.cast(),
        iov_len: n,
    };
    let remote = libc::iovec {
        iov_base: src as *mut libc::c_void,
        iov_len: n,
    };
    // SAFETY: process_vm_readv on ourselves: the kernel checks the source range.
    unsafe { libc::process_vm_readv(my_pid(), &local, 1, &remote, 1, 0) }
}

/// The program side of one call to a helper: pick a channel, call, record statistics.
pub fn call_once(
    rt: &Runtime,
    f: &FnDesc,
    p: &ProcRt,
    frame: &mut Frame,
    walk: &Walk,
) -> Result<Moved, CallError> {
    let c = call_post(f, p, frame, walk)?;
    call_finish(rt, f, p, c, frame)
}

/// A call of the program's posted to a helper (see [`call_post`]).
pub struct Begun {
    c: usize,
    base: u64,
    acquired: bool,
    t0: Instant,
    posted: Posted,
}

/// True when this thread is inside a call of `owner` (serving its nested call): a new call
/// of it goes on the same channel, and must be waited for before anything else is posted.
pub fn nested_in(owner: u32) -> bool {
    active_find(owner).is_some()
}

/// Picks a channel of `p` and posts the call in `frame` there; [`call_finish`] waits for the
/// answer. Several calls to different helpers may be posted before the first is finished.
pub fn call_post(f: &FnDesc, p: &ProcRt, frame: &Frame, walk: &Walk) -> Result<Begun, CallError> {
    if p.pid.load(Acquire) <= 0 {
        return Err(CallError::NoHelper);
    }
    let (c, base, acquired) = match active_find_region(p.index as u32) {
        Some(a) => (a.ch as usize, a.top, false),
        None => (acquire(p), 0, true),
    };
    // A helper that died before this call was sent (checked once the channel is ours, so a
    // fault recorded for an earlier call on it is seen): not this call's fault. Posted, the
    // call would be taken for the faulting one and use up its retries.
    if let Some(st) = known_dead(p) {
        if acquired {
            release(p, c);
        }
        return Err(CallError::Bystander(st));
    }
    let t0 = Instant::now();
    let colocate = p.spec.replicate.is_none() && p.spec.sample.is_none();
    match client_post(f, &p.region, c, base, frame, walk, true, colocate) {
        Ok(posted) => Ok(Begun {
            c,
            base,
            acquired,
            t0,
            posted,
        }),
        Err(e) => {
            if acquired {
                release(p, c);
            }
            Err(e)
        }
    }
}

/// Waits for the answer of a call [`call_post`] sent to `p`, serving its nested calls.
pub fn call_finish(
    rt: &Runtime,
    f: &FnDesc,
    p: &ProcRt,
    b: Begun,
    frame: &mut Frame,
) -> Result<Moved, CallError> {
    let Begun {
        c,
        base,
        acquired,
        t0,
        posted,
    } = b;
    let pushed = active_push(Active {
        owner: f.owner,
        region: p.index as u32,
        ch: c as u16,
        top: base,
    });
    let region = &p.region;
    let timeout = p.spec.timeout_ms.map(Duration::from_millis);
    let timed_out = Cell::new(false);
    let stop = || {
        if helper_gone(p) {
            return true;
        }
        if timeout.is_some_and(|t| t0.elapsed() >= t) {
            timed_out.set(true);
            if let Some(u) = crate::call::hooks::get() {
                (u.kill_helper)(p);
            }
            return true;
        }
        false
    };
    let r = client_wait(rt, f, region, posted, frame, true, &stop);
    let r = match r {
        Err(CallError::Died(_)) if timed_out.get() => Err(CallError::Timeout(
            timeout.map_or(0, |t| t.as_millis() as u64),
        )),
        Err(CallError::Died(_)) => {
            let st = death_status(p);
            let fc = region.header().fault_channel.load(SeqCst);
            if fc >= 0 && fc as usize != c {
                Err(CallError::Bystander(st))
            } else {
                Err(CallError::Died(st))
            }
        }
        r => r,
    };
    if pushed {
        active_pop();
    }
    if acquired {
        release(p, c);
    }
    if let (Ok(m), false) = (
        &r,
        crate::call::hooks::replaying() || crate::call::hooks::secondary(),
    ) {
        let ns = t0.elapsed().as_nanos() as u64;
        f.stats.record(ns, m.bytes_in, m.bytes_out);
        if m.served_ns == 0 {
            // The helper said nothing: the caller's own elapsed time stands in.
            f.stats.note_service(ns);
        }
    }
    r
}

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
pub fn gate_for(p: &ProcRt, owner: u32) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
    if crate::call::hooks::replaying() || active_find(owner).is_some() {
        None
    } else {
        Some(p.gate.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The status of the helper of `p` when it is known to have died: the wait status the
/// zygote wrote, or, when its fault handler says it is dying, the signal it recorded (the
/// helper's own word: it can only fail its own calls with it). No syscall.
fn known_dead(p: &ProcRt) -> Option<i32> {
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
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one pidfd we own, without blocking.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}

fn acquire(p: &ProcRt) -> usize {
    let mut spins = 0u32;
    loop {
        let free = p.free.load(Acquire);
        if free != 0 {
            let i = free.trailing_zeros();
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

fn release(p: &ProcRt, c: usize) {
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
        Some(_) => Ok(ch.read_msg()),
        None => Err(CallError::Died(-1)),
    };
    release(p, c);
    r
}
