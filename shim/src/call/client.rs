//! The client side of a call: marshals a frame into a channel, posts it, and waits for the
//! answer, serving the peer's nested calls meanwhile; the program's side of a call to a helper
//! (channels, the gate, statistics, a dead helper's status).
//!
//! # Safety
//! The caller's buffers are read at the lengths the walk measured before the call and written
//! back only after a good answer, at the offsets we chose; returned strings and mirrors are
//! read from the data area only inside bounds checked against `DATA_SIZE`.

#![allow(unsafe_code)]

use super::channels::{acquire, death_status, helper_gone, known_dead, release};
use super::dispatch::{
    active_find, active_find_region, active_pop, active_push, align8, copy, get_errno,
    is_code_pointer, set_errno, Active, CallError, CB_TAG, SERVER_SPIN, SLICE,
};
use super::server::{fail, serve};
use crate::call::handles;
use crate::call::marshal::Walk;
use crate::call::pages;
use crate::plan::runtime::{self, FnDesc, ProcRt, Runtime};
use crate::platform::abi::{arg_value, set_arg, Frame, MAX_STACK};
use crate::transport::region::{
    self, Msg, Region, DATA_SIZE, MSG_CALL, MSG_FAIL, MSG_PAGES, MSG_RETURN, MSG_WRITES, NULL_OFF,
};
use module_map::{ArgSpec, RetSpec};
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::*;
use std::time::Duration;
thread_local! {
    /// Returned strings (`ret: str`), per function, valid until the next call of it here.
    static RET_STR: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// How long a program thread waiting on an on-demand call spins before it sleeps.
const OD_SPIN: Duration = Duration::from_micros(30);

/// Totals of one call, for the statistics.
#[derive(Default, Clone, Copy)]
pub struct Moved {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How long the helper says it took (ns; 0: not said, the caller's elapsed time stands
    /// in; u64::MAX: not to be noted).
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
    /// The buffers copied back after a good answer: (caller pointer, offset, length).
    back: CopyBack,
    /// First byte after the marshalled buffers: a returned string or mirror lies beyond.
    cursor: u64,
    mirror_token: u64,
    /// The answer direction's sequence when we posted.
    seen: u32,
    moved: Moved,
    /// How long the caller spins before it sleeps (see `call::colocate`).
    spin: Duration,
    /// The first wait's spin is spent already (the flat path spun for it): it sleeps.
    spun: bool,
    /// The CPU hint the call carries (0: none).
    hint: u32,
    /// Spin yielding the CPU (the serving thread may be on ours).
    yielding: bool,
    /// A program call into a `memory: on-demand` process (looked up once per call).
    od: bool,
}

/// The out- and inout-buffers of a posted call: (caller pointer, offset in the data area,
/// length), the first few inline. (A posted call is moved several times before its answer
/// (into `Begun`, an attempt, replicas' lists): it stays small, where an array for every
/// possible argument was 1 KiB copied at each move.)
#[derive(Default)]
struct CopyBack {
    n: usize,
    inline: [(u64, u32, u32); 4],
    more: Vec<(u64, u32, u32)>,
}

impl CopyBack {
    fn push(&mut self, ptr: u64, off: u64, len: u64) {
        // Offsets and lengths lie inside the data area (16 MiB): they fit 32 bits.
        let e = (ptr, off as u32, len as u32);
        match self.inline.get_mut(self.n) {
            Some(slot) => *slot = e,
            None => self.more.push(e),
        }
        self.n += 1;
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.inline[..self.n.min(self.inline.len())]
            .iter()
            .chain(self.more.iter())
            .map(|&(p, o, l)| (p, u64::from(o), u64::from(l)))
    }
}

const _: () = assert!(DATA_SIZE <= u32::MAX as usize);

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
                    "{}: more than {} distinct functions were passed as callback `{}`: the call fails",
                    f.name,
                    runtime::CB_SLOTS,
                    rt.fns[first].callback.as_ref().map_or("cb", |c| c.ty.as_str())
                );
                return Err(CallError::CallbackBound);
            };
            set_arg(&mut tf, &mut stack, loc, CB_TAG | slot as u64);
        }
    }
    let frame_in = &tf;
    // The caller's wait, decided once per call: spin, or sleep with the helper on our CPU.
    let od = from_program && pages::program::is_on_demand(region);
    let spin = if from_program {
        if od {
            f.stats.spin_budget_on_demand()
        } else {
            f.stats.spin_budget()
        }
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
    // (Written only when it changes: the word shares a cache line with the page table, which
    // the helper reads with every message.)
    let last_hint = if from_program {
        let last = ch.last_hint.load(Relaxed);
        if last != spin_hint {
            ch.last_hint.store(spin_hint, Relaxed);
        }
        last
    } else {
        0
    };
    let yielding = !spin.is_zero() && last_hint != 0 && last_hint == crate::call::colocate::here();
    let mut m: Msg = Msg {
        kind: MSG_CALL,
        func: f.idx as u32,
        errno: get_errno(),
        nstack: nstack as u32,
        // Offsets and lengths up to the last buffer only (the receiver reads the rest as
        // NULL): a call without buffers sends neither table.
        nargs: walk.bufs().last().map_or(0, |b| u32::from(b.arg) + 1),
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
        pages_off: NULL_OFF,
        pages_len: 0,
    };
    let mut back = CopyBack::default();
    let mut cursor = align8(base);
    let moved = Moved {
        bytes_in: walk.bytes_in(),
        bytes_out: 0,
        served_ns: 0,
    };
    for b in walk.bufs() {
        let end = cursor
            .checked_add(b.len)
            .filter(|e| *e <= crate::call::pages::AREA_BASE)
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
        if b.copied_back() {
            back.push(b.ptr, cursor, b.len);
        }
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
    if od {
        pages::program::send_ahead(region, c, frame_in, &mut m);
    } else if !from_program {
        // A helper's nested call ends its segment: the module's writes go with it.
        pages::helper::end(&mut m);
    }
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
        back,
        cursor,
        mirror_token,
        seen,
        moved,
        spin,
        spun: false,
        // A helper's `spin_hint` is its work time, not a CPU: nothing to stay on.
        hint: if from_program { spin_hint } else { 0 },
        yielding,
        od,
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
    let od = posted.od;
    let r = wait_answer(rt, f, region, posted, frame, from_program, od, stop);
    if od && r.is_err() {
        pages::program::discard(region);
        pages::program::end_without_answer(region);
    }
    if !from_program {
        // The module goes on: a new segment.
        pages::helper::begin(None);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn wait_answer(
    rt: &Runtime,
    f: &FnDesc,
    region: &Region,
    posted: Posted,
    frame: &mut Frame,
    from_program: bool,
    od: bool,
    stop: &dyn Fn() -> bool,
) -> Result<Moved, CallError> {
    let Posted {
        c,
        back,
        cursor,
        mut mirror_token,
        mut seen,
        mut moved,
        spin,
        mut spun,
        hint,
        yielding,
        od: _,
    } = posted;
    let _stay = crate::call::colocate::stay_for(hint);
    let ch = region.channel(c);
    let data = region.data(c);
    let (send, recv) = if from_program {
        (ch.to_helper(), ch.to_prog())
    } else {
        (ch.to_prog(), ch.to_helper())
    };
    // On demand, the helper asks for pages while it works: a page request is due within
    // microseconds of the call or of the last page, so the wait spins that long first.
    // A caller co-located with the helper (`hint` != 0) sleeps: its CPU is the helper's.
    let spin = if od && hint == 0 {
        spin.max(OD_SPIN)
    } else {
        spin
    };
    // One message for every read of this wait (see `read_msg_into`).
    let mut r = Msg::zeroed();
    loop {
        let this_spin = if spun { Duration::ZERO } else { spin };
        spun = false;
        let Some(s) = recv.wait(seen, this_spin, yielding, SLICE, stop) else {
            // The program side (call_once) finds the status; a helper just fails the call.
            return Err(CallError::Died(-1));
        };
        if !from_program {
            ch.consumed.store(s, SeqCst);
        }
        if from_program {
            ch.read_reply_into(&mut r);
        } else {
            ch.read_msg_into(&mut r);
        }
        if from_program {
            // The helper's word on how long this wait was work (policy only).
            if r.hint != 0 {
                f.stats.note_service(u64::from(r.hint));
            }
        } else {
            crate::call::colocate::heard();
        }
        match r.kind {
            MSG_RETURN if od && !pages::program::hold(region, c, &r) => {
                return Err(CallError::BadReply)
            }
            MSG_RETURN => {
                if od {
                    pages::program::apply(region);
                    pages::program::adopt_sent_back(region, c, &r);
                }
                // A spin that had to yield to a helper on our CPU (and that moved off it
                // meanwhile) measured the migration, not the call: it says nothing.
                moved.served_ns = if r.hint == 0 && yielding {
                    u64::MAX
                } else {
                    u64::from(r.hint)
                };
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
                    if mirror_token != 0 && r.mirror_off != NULL_OFF && !od {
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
                for (p, off, len) in back.iter() {
                    // SAFETY: same ranges as the copy-in above.
                    unsafe { copy(p as *mut u8, data.add(off as usize), len as usize) };
                    moved.bytes_out += len;
                }
                set_errno(r.errno);
                return Ok(moved);
            }
            MSG_PAGES | MSG_WRITES if od => {
                // On-demand memory: pages the module touched, or writes it made ahead of the
                // segment's end.
                let reply = if r.kind == MSG_PAGES {
                    pages::program::serve_pages(region, c, &r)
                } else if pages::program::hold(region, c, &r) {
                    let mut a = fail();
                    a.kind = MSG_RETURN;
                    a
                } else {
                    return Err(CallError::BadReply);
                };
                seen = recv.seq.load(SeqCst);
                ch.write_msg(&reply);
                send.post();
                if stop() {
                    return Err(CallError::Died(-1));
                }
            }
            MSG_CALL => {
                // A nested call of the peer: serve it and keep waiting for our answer. The
                // helper's segment ends with it: its writes first.
                if od {
                    if !pages::program::hold(region, c, &r) {
                        return Err(CallError::BadReply);
                    }
                    pages::program::apply(region);
                    pages::program::nested_call(region, c, &r);
                }
                if !from_program {
                    pages::helper::begin(Some(&r));
                }
                let mut reply = serve(rt, region, c, &r, !from_program);
                if !from_program {
                    pages::helper::end(&mut reply);
                }
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
pub(super) fn take_ret_str(
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
    // SAFETY: [off, end) lies inside the data area (checked above); copied once.
    let src = unsafe { std::slice::from_raw_parts(data.add(off as usize), len as usize) };
    let n = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    moved.bytes_out += n as u64;
    Ok(set_ret_str(f, &src[..n]))
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
    t0: crate::platform::clock::Stamp,
    posted: Posted,
}

impl Begun {
    /// A call the flat path (`call::flat`) posted on channel `c`, which it acquired at `t0`,
    /// when the answer is not a plain return or has not come within its spin: the general
    /// wait takes it from there (`seen`: the answer direction's sequence before the post; a
    /// message that came meanwhile is read at once). `spin`: the call's spin budget, for
    /// each wait after the first as on the general path; `spun`: the flat path's spin ran
    /// out, so the first wait sleeps at once.
    pub(super) fn flat(
        c: usize,
        t0: crate::platform::clock::Stamp,
        seen: u32,
        yielding: bool,
        spin: Duration,
        spun: bool,
    ) -> Begun {
        Begun {
            c,
            base: 0,
            acquired: true,
            t0,
            posted: Posted {
                c,
                back: CopyBack::default(),
                cursor: 0,
                mirror_token: 0,
                seen,
                moved: Moved::default(),
                spin,
                spun,
                hint: 0,
                yielding,
                od: false,
            },
        }
    }
}

impl Begun {
    /// Waits for the answer to this call, serving the helper's nested calls on its channel
    /// meanwhile (they nest on it: the channel is on this thread's stack for the wait), until
    /// `stop` ends the wait; the channel is released after, if the call acquired it.
    pub(super) fn wait_with(
        self,
        rt: &Runtime,
        f: &FnDesc,
        p: &ProcRt,
        frame: &mut Frame,
        stop: &dyn Fn() -> bool,
    ) -> Result<Moved, CallError> {
        let pushed = active_push(Active {
            owner: f.owner,
            region: p.index as u32,
            ch: self.c as u16,
            top: self.base,
        });
        let r = client_wait(rt, f, &p.region, self.posted, frame, true, stop);
        if pushed {
            active_pop();
        }
        if self.acquired {
            release(p, self.c);
        }
        r
    }
}

/// True when this thread is inside a call of `owner` (serving its nested call): a new call
/// of it goes on the same channel, and must be waited for before anything else is posted.
pub fn nested_in(owner: crate::plan::runtime::Owner) -> bool {
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
    let t0 = crate::platform::clock::Stamp::now();
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
    let (c, t0) = (b.c, b.t0);
    let region = &p.region;
    let timeout = p.spec.timeout_ms.map(Duration::from_millis);
    let timed_out = Cell::new(false);
    // Before the first sleep of a wait, the zygote's word is enough: when it reaps a helper
    // it bumps and wakes every channel's event word, so a sleep it would end is never begun
    // blind. The pidfd is asked from the second check on (a slice passed without news: the
    // zygote may be gone, or the helper is a resumed checkpoint the zygote does not reap).
    let checks = Cell::new(0u32);
    let stop = || {
        let n = checks.get();
        checks.set(n.saturating_add(1));
        let gone = if n == 0 && p.zygote_child.load(Relaxed) {
            known_dead(p).is_some()
        } else {
            helper_gone(p)
        };
        if gone {
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
    let r = match b.wait_with(rt, f, p, frame, &stop) {
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
    if let (Ok(m), false) = (
        &r,
        crate::call::hooks::replaying() || crate::call::hooks::secondary(),
    ) {
        let ns = t0.elapsed_ns();
        f.stats.record(ns, m.bytes_in, m.bytes_out);
        if m.served_ns == 0 {
            // The helper said nothing: the caller's own elapsed time stands in.
            f.stats.note_service(ns);
        }
    }
    r
}
