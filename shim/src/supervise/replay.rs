//! `restore: replay` (and the tail after a checkpoint): the program logs every successful
//! `effect: state` call of an isolated process (its registers, stack words and the input
//! bytes of its buffers, as the program passed them), and replays the log into a fresh helper
//! before the crashed call is retried. A call enters the log only after it returned, so the
//! crashed call is never applied twice. Handles returned by logged calls are re-pointed at the
//! new helper's values, so the tokens the program holds stay valid.
//!
//! # Safety
//! `Entry` is `Send` although its walk holds the caller's buffer addresses: they are only
//! compared and counted after the call returned, never dereferenced on another thread (the copied
//! bytes live in the entry).

#![allow(unsafe_code)]

use crate::call::dispatch;
use crate::call::handles;
use crate::call::marshal::{KeptWalk, Walk};
use crate::plan::runtime::{FnDesc, ProcRt, Runtime};
use crate::platform::abi::{set_arg, Frame};
use module_map::RetSpec;
use std::cell::Cell;
use std::sync::Mutex;

#[derive(Clone)]
pub struct Entry {
    func: usize,
    frame: Frame,
    /// The call's buffer walk (lengths and stack words as the program measured them before
    /// the call), and per buffer its input bytes: an `out:` buffer's are not kept (the
    /// replayed call gets zeroes: what it writes there is discarded anyway).
    walk: KeptWalk,
    inputs: Vec<Vec<u8>>,
    /// The token the program got back (ret: handle), re-pointed on replay.
    ret_token: u64,
    /// What the program answered to the call's nested calls and callbacks: a replay is
    /// answered from it, so the program's functions do not run twice.
    nested: Vec<dispatch::NestedRec>,
}

// SAFETY: an Entry's frame has its stack pointer nulled at capture (the stack words are
// in `walk`); its walk's pointers are never dereferenced (replay rebases them on copies).
unsafe impl Send for Entry {}

thread_local! {
    /// Set while this thread replays: replayed calls are neither logged nor counted.
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
    crate::call::hooks::replaying()
}

/// True when calls of `f` in `p` must be logged.
pub fn wanted(f: &FnDesc, p: &ProcRt) -> bool {
    // One log per process: replicas are rebuilt from the primary's.
    !f.pure
        && p.replica == 0
        && p.spec.on_crash.restore != module_map::Restore::None
        && !replaying()
}

/// Captures the inputs of a call (before it runs: out-buffers keep their input bytes), at
/// the lengths of the call's walk.
pub fn capture(f: &FnDesc, frame: &Frame, walk: &Walk) -> Entry {
    let inputs = walk
        .bufs()
        .iter()
        .map(|b| {
            if b.dir == crate::call::marshal::Dir::Out {
                Vec::new()
            } else {
                b.bytes()
            }
        })
        .collect();
    let mut frame = *frame;
    frame.stack = std::ptr::null();
    Entry {
        func: f.idx,
        frame,
        walk: walk.keep(),
        inputs,
        ret_token: 0,
        nested: Vec::new(),
    }
}

/// Appends a call that returned to the log of `p`.
pub fn record(
    p: &ProcRt,
    f: &FnDesc,
    mut e: Entry,
    frame_after: &Frame,
    nested: Vec<dispatch::NestedRec>,
) {
    if f.ret == RetSpec::Handle {
        e.ret_token = frame_after.ret_rax;
    }
    e.nested = nested;
    let mut log = log_of(p.index).lock().unwrap_or_else(|x| x.into_inner());
    log.push(e);
    LAST.with(|l| l.set(Some((p.primary, log.len() - 1))));
}

/// Replays the log of `p` from entry `from` into its (new) helper. Returns false when the
/// helper failed during the replay.
pub fn replay(rt: &Runtime, p: &ProcRt, from: usize) -> bool {
    let log = log_of(p.primary).lock().unwrap_or_else(|x| x.into_inner());
    crate::call::hooks::set_replaying(true);
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
        let logged = e.walk.walk();
        let mut stack = logged.stack;
        // Private copies at the logged lengths; the walk is the logged one, rebased on them.
        let mut copies: Vec<Vec<u8>> = logged
            .bufs()
            .iter()
            .zip(&e.inputs)
            .map(|(b, v)| {
                let mut v = v.clone();
                v.resize(
                    b.len.min(crate::transport::region::DATA_SIZE as u64) as usize,
                    0,
                );
                v
            })
            .collect();
        let ptrs: Vec<u64> = copies.iter_mut().map(|v| v.as_mut_ptr() as u64).collect();
        for (b, p) in logged.bufs().iter().zip(&ptrs) {
            set_arg(&mut frame, &mut stack, f.layout.args[b.arg as usize].1, *p);
        }
        let mut walk = logged.rebased(&ptrs);
        walk.stack = stack;
        frame.stack = walk.stack.as_ptr();
        let outer = dispatch::nested_mode(dispatch::Nested::Replay(e.nested.clone(), 0));
        let r = dispatch::call_once(rt, f, p, &mut frame, &walk);
        dispatch::nested_mode(outer);
        if let Err(e) = r {
            debug!("replay of {} into '{}' failed: {e:?}", f.name, p.name);
            ok = false;
            break;
        }
        drop(copies);
        if f.ret == RetSpec::Handle && e.ret_token != 0 {
            handles::retarget_fresh(e.ret_token, frame.ret_rax);
        }
    }
    crate::call::hooks::set_replaying(false);
    ok
}

/// Number of entries logged so far (in the process's primary region's log).
pub fn len(p: &ProcRt) -> usize {
    log_of(p.index)
        .lock()
        .unwrap_or_else(|x| x.into_inner())
        .len()
}

/// The log of region `index` (`Runtime::procs`): successful state calls, program side.
/// One per region, made with the first log the plan asks for and kept for the life of the
/// process; appending to one takes only that region's lock (no global one per call).
fn log_of(index: usize) -> &'static Mutex<Vec<Entry>> {
    static LOGS: std::sync::OnceLock<Box<[Mutex<Vec<Entry>>]>> = std::sync::OnceLock::new();
    // Regions beyond the plan's (none exist): one shared log, never replayed wrongly since
    // nothing replays into a region the plan does not have.
    static SPARE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    let logs = LOGS.get_or_init(|| {
        let n = crate::plan::runtime::get().map_or(0, |rt| rt.procs.len());
        (0..n).map(|_| Mutex::new(Vec::new())).collect()
    });
    logs.get(index).unwrap_or(&SPARE)
}
