//! `restore: replay` (and the tail after a checkpoint): the program logs every successful
//! `effect: state` call of an isolated process (its registers, stack words and the input
//! bytes of its buffers, as the program passed them), and replays the log into a fresh helper
//! before the crashed call is retried. A call enters the log only after it returned, so the
//! crashed call is never applied twice. Handles returned by logged calls are re-pointed at the
//! new helper's values, so the tokens the program holds stay valid.

use crate::abi::{arg_value, set_arg, Frame, MAX_STACK};
use crate::dispatch::{self, eval_size};
use crate::handles;
use crate::runtime::{FnDesc, ProcRt, Runtime};
use module_map::{ArgSpec, RetSpec};
use std::cell::Cell;

#[derive(Clone)]
pub struct Entry {
    func: usize,
    frame: Frame,
    stack: [u64; MAX_STACK],
    /// (argument index, input bytes, length) for each non-NULL buffer argument; an `out:`
    /// buffer's input bytes are not kept (the replayed call gets zeroes: what it writes there
    /// is discarded anyway).
    bufs: Vec<(usize, Vec<u8>, usize)>,
    /// The token the program got back (ret: handle), re-pointed on replay.
    ret_token: u64,
}

// SAFETY: an Entry's frame has its stack pointer nulled at capture (the stack words are
// copied into `stack`); everything else is plain data.
unsafe impl Send for Entry {}

thread_local! {
    /// Set while this thread replays: replayed calls are neither logged nor counted.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// The log entry this thread appended last: (process, index in its log).
    static LAST: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    /// A log entry this thread's replays leave out (see [`skip_entry`]).
    static SKIP: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// The entry this thread appended to the log of process `k` (its primary region) since the
/// last call of this function, if that was the last entry it appended anywhere.
pub fn take_last(k: usize) -> Option<usize> {
    LAST.with(|l| l.take())
        .filter(|(p, _)| *p == k)
        .map(|(_, i)| i)
}

/// While a replicated call of process `k` is retried on a replica: the entry replica 0 logged
/// for that very call. A replica restarted to retry it must not get it twice (replayed, then
/// retried).
pub fn skip_entry(k: usize, i: Option<usize>) {
    SKIP.with(|s| s.set(i.map(|i| (k, i))));
}

pub fn replaying() -> bool {
    REPLAYING.with(|r| r.get())
}

/// True when calls of `f` in `p` must be logged.
pub fn wanted(f: &FnDesc, p: &ProcRt) -> bool {
    // One log per process: replicas are rebuilt from the primary's.
    !f.pure
        && p.replica == 0
        && p.spec.on_crash.restore != module_map::Restore::None
        && !replaying()
}

/// Captures the inputs of a call (before it runs: out-buffers keep their input bytes).
pub fn capture(f: &FnDesc, frame: &Frame) -> Entry {
    let nstack = f.layout.nstack.min(MAX_STACK);
    let mut stack = [0u64; MAX_STACK];
    if nstack > 0 && !frame.stack.is_null() {
        // SAFETY: the caller's stack holds the listed stack arguments.
        unsafe { std::ptr::copy_nonoverlapping(frame.stack, stack.as_mut_ptr(), nstack) };
    }
    let mut bufs = Vec::new();
    for (i, (spec, loc)) in f.layout.args.iter().enumerate() {
        if !spec.is_buffer() {
            continue;
        }
        let p = arg_value(frame, &stack, *loc);
        if p == 0 {
            continue;
        }
        let len = match spec {
            // SAFETY: a `str` argument is a NUL-terminated string of the caller's.
            ArgSpec::Str => unsafe { libc::strlen(p as *const libc::c_char) as u64 + 1 },
            ArgSpec::In(s) | ArgSpec::Out(s) | ArgSpec::InOut(s) => eval_size(s, f, frame, &stack),
            _ => 0,
        };
        let len = len.min(crate::shm::DATA_SIZE as u64) as usize;
        let v = if matches!(spec, ArgSpec::Out(_)) {
            Vec::new()
        } else {
            // SAFETY: the caller's buffer holds `len` bytes per its spec (as for the call).
            unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec()
        };
        bufs.push((i, v, len));
    }
    let mut frame = *frame;
    frame.stack = std::ptr::null();
    Entry {
        func: f.idx,
        frame,
        stack,
        bufs,
        ret_token: 0,
    }
}

/// Appends a call that returned to the log of `p`.
pub fn record(p: &ProcRt, f: &FnDesc, mut e: Entry, frame_after: &Frame) {
    if f.ret == RetSpec::Handle {
        e.ret_token = frame_after.ret_rax;
    }
    let mut log = p.log.lock().unwrap_or_else(|x| x.into_inner());
    log.push(e);
    LAST.with(|l| l.set(Some((p.primary, log.len() - 1))));
}

/// Replays the log of `p` from entry `from` into its (new) helper. Returns false when the
/// helper failed during the replay.
pub fn replay(rt: &Runtime, p: &ProcRt, from: usize) -> bool {
    let log = rt.procs[p.primary]
        .log
        .lock()
        .unwrap_or_else(|x| x.into_inner());
    REPLAYING.with(|r| r.set(true));
    let skip = SKIP
        .with(|s| s.get())
        .filter(|(k, _)| *k == p.primary)
        .map(|(_, i)| i);
    let mut ok = true;
    for (_, e) in log
        .iter()
        .enumerate()
        .skip(from)
        .filter(|(i, _)| Some(*i) != skip)
    {
        let f = &rt.fns[e.func];
        let mut frame = e.frame;
        let mut stack = e.stack;
        let mut bufs: Vec<(usize, Vec<u8>)> = e
            .bufs
            .iter()
            .map(|(i, v, len)| {
                let mut v = v.clone();
                v.resize(*len, 0);
                (*i, v)
            })
            .collect();
        for (i, v) in bufs.iter_mut() {
            let loc = f.layout.args[*i].1;
            set_arg(&mut frame, &mut stack, loc, v.as_mut_ptr() as u64);
        }
        frame.stack = stack.as_ptr();
        if let Err(e) = dispatch::call_once(rt, f, p, &mut frame) {
            debug!("replay of {} into '{}' failed: {e:?}", f.name, p.name);
            ok = false;
            break;
        }
        if f.ret == RetSpec::Handle && e.ret_token != 0 {
            handles::retarget_fresh(e.ret_token, frame.ret_rax);
        }
    }
    REPLAYING.with(|r| r.set(false));
    ok
}

/// Number of entries logged so far (in the process's primary region's log).
pub fn len(p: &ProcRt) -> usize {
    p.log.lock().unwrap_or_else(|x| x.into_inner()).len()
}
