//! The server side of a call: runs a call received on a channel and builds the answer. The
//! helper runs it on pointers into the shared data area; the program, which trusts nothing the
//! helper wrote, on private copies, and only for functions and callback slots the helper may
//! ask for.
//!
//! # Safety
//! Offsets and lengths of the data area are validated against the message's bounds and
//! `DATA_SIZE` after one copy of the message; the real function is replayed with the stack
//! words the spec allows; `read_self` reads our own memory with `process_vm_readv`, so an
//! unmapped address is an error, not a fault.

#![allow(unsafe_code)]

use super::dispatch::{
    active_pop, active_push, align8, copy, dispatch, ensure_real, get_errno, set_errno, Active,
    CB_TAG, CB_TAG_MASK, DEPTH, MAX_DEPTH, NO_REGION,
};
use super::nested::{asked, fold, Nested, NestedRec, DIGESTS, NESTED, SEEN};
use crate::call::handles;
use crate::plan::runtime::{self, FnDesc, Runtime, PROGRAM};
use crate::platform::abi::{arg_value, set_arg, Frame, MAX_STACK};
use crate::platform::stubs;
use crate::transport::region::{
    FlatAnswer, Msg, Region, DATA_SIZE, MSG_FAIL, MSG_RETURN, NULL_OFF,
};
use module_map::{ArgSpec, RetSpec};
use std::cell::Cell;
use std::sync::atomic::Ordering::*;
/// Program side of a nested call: true when every `in:`/`out:`/`inout:` buffer the helper
/// sent is exactly as long as the spec says, and every `strv:SIZE` array has exactly that many
/// entries, evaluated on the helper's argument values and on the program's private copies
/// (`*argN` reads the copy of buffer N; a size behind a pointer that is not a buffer cannot be
/// checked, and is refused).
pub(super) fn sizes_match(f: &FnDesc, m: &Msg, nargs: usize, private: &[(usize, Vec<u8>)]) -> bool {
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
        if m.arg_off[i] == NULL_OFF {
            continue;
        }
        let (sz, have) = match spec {
            ArgSpec::In(sz) | ArgSpec::Out(sz) | ArgSpec::InOut(sz) => (sz, Some(m.arg_len[i])),
            // The entry count, word 0 of the unpacked copy (`marshal::unpack_strv` keeps it).
            ArgSpec::Strv(Some(sz)) => (
                sz,
                private
                    .iter()
                    .find(|(j, _)| *j == i)
                    .and_then(|(_, v)| Some(u64::from_le_bytes(v.get(..8)?.try_into().ok()?))),
            ),
            _ => continue,
        };
        if have.is_none() || crate::call::marshal::size_of(sz, arg, deref) != have {
            return false;
        }
    }
    true
}

pub(super) fn fail() -> Msg {
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
            .map(|k| (rt.procs[k].owner(), k as u32))
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
        let ptr = if zero_copy {
            // SAFETY: [off, end) lies inside the data area (checked above); the program wrote
            // it and waits for the answer.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(data.add(off as usize), len as usize) };
            match spec {
                ArgSpec::Strv(_) => match crate::call::marshal::unpack_strv(bytes) {
                    Some((arr, _)) => arr,
                    None => return fail(),
                },
                _ => {
                    if *spec == ArgSpec::Str && len > 0 {
                        // The program wrote the NUL, but the string must end inside its slot
                        // whatever happened.
                        bytes[len as usize - 1] = 0;
                    }
                    bytes.as_mut_ptr() as u64
                }
            }
        } else {
            // SAFETY: in bounds (checked above); copied once into memory the peer cannot touch.
            let mut v = unsafe { std::slice::from_raw_parts(data.add(off as usize), len as usize) }
                .to_vec();
            let p = match spec {
                ArgSpec::Strv(_) => match crate::call::marshal::unpack_strv(&mut v) {
                    // Its count is checked against the spec with the other sizes below.
                    Some((arr, _)) => arr,
                    None => {
                        warn!(
                            "refused a nested call of {}: argument {i} is not a well-formed string array",
                            f.name
                        );
                        return fail();
                    }
                },
                ArgSpec::Str => {
                    if v.last() != Some(&0) {
                        v.push(0);
                    }
                    v.as_mut_ptr() as u64
                }
                _ => {
                    if v.is_empty() {
                        v.push(0);
                    }
                    v.as_mut_ptr() as u64
                }
            };
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
            "refused a nested call of {}: its buffers or string arrays are not the sizes its spec gives",
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
    // Replicas are compared on what their nested calls asked, only while a replicated call runs.
    let asked_now = (!zero_copy && DIGESTS.with(|d| d.get())).then(|| asked(f, &private));
    if let Some(a) = asked_now {
        SEEN.with(|s| s.set(fold(s.get(), a)));
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
                    asked: asked_now.unwrap_or(0),
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
        let len = unsafe {
            std::ffi::CStr::from_ptr(frame.ret_rax as *const std::ffi::c_char).count_bytes()
        } as u64;
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

/// Helper side: the real address of the function a call of registers only (read by
/// `Channel::read_flat_call`) runs, when [`serve_flat`] may run it: a flat function of this
/// process, loaded, with no on-demand memory to set up. None: the general [`serve`] runs it.
pub fn flat_target(rt: &Runtime, m: &Msg) -> Option<usize> {
    let f = rt.fns.get(m.func as usize)?;
    if !f.flat || f.owner != rt.me() || crate::call::pages::helper::active() {
        return None;
    }
    match ensure_real(rt, f) {
        0 => None,
        real => Some(real),
    }
}

/// Helper side: runs the call of registers only in `m` on `real` ([`flat_target`]) as
/// [`serve`] would, and gives its answer without building an answer message.
pub fn serve_flat(c: usize, m: &Msg, real: usize) -> FlatAnswer {
    let mut frame = Frame {
        gp: m.gp,
        rax: m.rax,
        xmm: m.xmm,
        stack: m.stack.as_ptr(),
        ..Frame::default()
    };
    // The module may call the program back: its calls nest on this channel.
    let pushed = active_push(Active {
        owner: PROGRAM,
        region: NO_REGION,
        ch: c as u16,
        top: m.data_end,
    });
    set_errno(m.errno);
    let nstack = (m.nstack as usize).min(MAX_STACK);
    // SAFETY: real is the function the spec describes (flat_target); `m.stack` holds the
    // `nstack` words the program sent, and outlives the call.
    unsafe { stubs::replay(real, &mut frame, nstack) };
    let errno = get_errno();
    if pushed {
        active_pop();
    }
    FlatAnswer {
        kind: MSG_RETURN,
        errno,
        hint: 0,
        ret_rax: frame.ret_rax,
        ret_rdx: frame.ret_rdx,
        ret_xmm0: frame.ret_xmm0,
        ret_xmm1: frame.ret_xmm1,
    }
}

/// This process's pid, cached per thread (a helper never forks its serving threads).
fn my_pid() -> libc::pid_t {
    thread_local! { static PID: Cell<libc::pid_t> = const { Cell::new(0) }; }
    PID.with(|p| {
        if p.get() == 0 {
            p.set(crate::platform::sys::getpid());
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
    // SAFETY: `dst` is valid for `n` bytes (forwarded contract), and nothing else refers to
    // them while the kernel copies.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst, n) };
    crate::platform::sys::read_own_memory(my_pid(), src, dst)
}
