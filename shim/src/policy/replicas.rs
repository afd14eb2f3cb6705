//! Replication and sampling (`replicate`, `sample`): several helper regions serve one process.
//!
//! `replicate`: every call goes to every replica; return values (not handles), returned
//! strings and out-buffers are compared; `majority` answers with the majority and restarts the
//! outliers, `first` answers with the first replica and records the mismatch, `abort` ends the
//! program. `sample`: an `effect: pure` call goes to one replica (round-robin or random); a
//! state call goes to all, so every replica holds the same module state. A replica that fails
//! is recovered under `on_crash` while the others' answer stands; the program gives up only
//! when no replica answered. Every replica gets a call at once and they work in parallel; the
//! program takes their answers in order.
//!
//! # Safety
//! Strings and buffers read here are the program's own (a `ret: str` the primary returned, out-
//! buffers measured by the walk before the call); copies back write at most the walked lengths
//! into those buffers; `Job` is `Send` because its pointers name the program's buffers, which the
//! waiting call keeps alive until the job is done or dropped.

#![allow(unsafe_code)]

use crate::call::dispatch::{nested_mode, Nested};
use crate::call::flat::{self, Flat};
use crate::call::handles;
use crate::call::marshal::Walk;
use crate::plan::runtime::{FnDesc, ProcRt, Runtime};
use crate::platform::abi::{arg_value, set_arg, Frame};
use crate::supervise::recovery::{self, try_call, try_call_after, Attempt, Done};
use module_map::{ArgSpec, OnMismatch, Pick, RetSpec};
use std::sync::atomic::{AtomicU64, Ordering::*};

static ROUND_ROBIN: AtomicU64 = AtomicU64::new(0);
/// Consecutive pure calls a sampled replica answers before the next one's turn.
const RR_BATCH: u64 = 16;

/// The program's way into a helper (the call layer's `call_helper` upcall): every replica,
/// or one sample, when the map asks for several; otherwise one call with restarts and
/// retries as `on_crash` says.
pub fn route(rt: &Runtime, f: &FnDesc, p: &ProcRt, frame: &mut Frame) {
    // A call of registers only answered at once takes the flat path (one region only).
    match flat::call(f, p, frame) {
        Flat::Done => return,
        Flat::Pending(pending) => return recovery::finish_flat(rt, f, p, frame, pending),
        Flat::NotTaken => {}
    }
    // The one buffer walk of this call: every later step uses these lengths.
    let walk = Walk::of(f, frame);
    if rt.procs.len() > rt.map.processes.len() && rt.replicas_of(p.primary).nth(1).is_some() {
        return call(rt, f, p.primary, frame, &walk);
    }
    recovery::call_helper(rt, f, p, frame, &walk)
}

/// What one replica answered, in comparable form.
#[derive(Clone, PartialEq)]
struct Answer {
    /// The compared return registers: rax for `ret: val`, xmm0/xmm1 for `ret: f64`.
    rax: [u64; 2],
    string: Option<Vec<u8>>,
    outs: Vec<Vec<u8>>,
    /// Digest of the nested calls and callbacks the replica made (`dispatch::nested_digest`).
    nested: u64,
}

/// A frame whose buffer arguments point at private copies of the caller's buffers.
// SAFETY (Send): the frame's buffer arguments point into `bufs`' own heap blocks, which move
// with it; `frame.stack` is re-pointed at `walk.stack` right before each use.
struct Private {
    frame: Frame,
    /// The caller's walk rebased on the copies (same lengths, same stack words).
    walk: Walk,
    bufs: Vec<(usize, ArgSpec, Vec<u8>)>,
}

/// Private copies of the caller's buffers at the lengths of the call's walk.
fn private_copy(f: &FnDesc, frame: &Frame, walk: &Walk) -> Private {
    let mut fr = *frame;
    let mut bufs: Vec<(usize, ArgSpec, Vec<u8>)> = walk
        .bufs()
        .iter()
        .map(|b| (b.arg as usize, f.layout.args[b.arg as usize].0, b.bytes()))
        .collect();
    let mut stack = walk.stack;
    let ptrs: Vec<u64> = bufs
        .iter_mut()
        .map(|(_, _, v)| v.as_mut_ptr() as u64)
        .collect();
    for ((i, _, _), p) in bufs.iter().zip(&ptrs) {
        set_arg(&mut fr, &mut stack, f.layout.args[*i].1, *p);
    }
    let mut walk = walk.rebased(&ptrs);
    walk.stack = stack;
    Private {
        frame: fr,
        walk,
        bufs,
    }
}

fn returned_string(f: &FnDesc, rax: u64) -> Option<Vec<u8>> {
    if f.ret != RetSpec::Str || rax == 0 {
        return None;
    }
    // SAFETY: rax points at the per-thread copy the call path made of the returned string.
    Some(
        unsafe { std::ffi::CStr::from_ptr(rax as *const libc::c_char) }
            .to_bytes()
            .to_vec(),
    )
}

fn outs_of(bufs: &[(usize, ArgSpec, Vec<u8>)]) -> Vec<Vec<u8>> {
    bufs.iter()
        .filter(|b| matches!(b.1, ArgSpec::Out(_) | ArgSpec::InOut(_)))
        .map(|b| b.2.clone())
        .collect()
}

/// The return registers a replica's answer is compared on (none for handles and void).
fn value_of(f: &FnDesc, frame: &Frame) -> [u64; 2] {
    match f.ret {
        RetSpec::Val => [frame.ret_rax, 0],
        RetSpec::Float => [frame.ret_xmm0[0], frame.ret_xmm1[0]],
        _ => [0, 0],
    }
}

/// Runs the call in replica `p` on private copies (its first attempt already made when
/// `first` is given); the answer and the fresh handle token.
fn run_private(
    rt: &Runtime,
    f: &FnDesc,
    p: &ProcRt,
    mut pv: Private,
    first: Option<(Done, Option<Vec<u8>>)>,
) -> Option<(Answer, u64)> {
    pv.frame.stack = pv.walk.stack.as_ptr();
    let (first, string) = split_first(first);
    crate::call::hooks::set_secondary(true);
    let res = try_call_after(rt, f, p, &mut pv.frame, &pv.walk, first);
    crate::call::hooks::set_secondary(false);
    match res {
        Ok(()) => {
            let rax = pv.frame.ret_rax;
            let a = Answer {
                rax: value_of(f, &pv.frame),
                string: string.unwrap_or_else(|| returned_string(f, rax)),
                outs: outs_of(&pv.bufs),
                nested: crate::call::dispatch::take_seen(),
            };
            Some((a, if f.ret == RetSpec::Handle { rax } else { 0 }))
        }
        Err(_) => None,
    }
}

/// A completed first attempt with the string it returned, taken at once: every replica's
/// string goes through the same per-thread buffer.
fn with_string(f: &FnDesc, d: Done, rax: u64) -> (Done, Option<Vec<u8>>) {
    let s = if d.ok() {
        returned_string(f, rax)
    } else {
        None
    };
    (d, s)
}

/// The first attempt for [`try_call_after`] and, when it succeeded (no retry will run), the
/// string it returned.
fn split_first(first: Option<(Done, Option<Vec<u8>>)>) -> (Option<Done>, Option<Option<Vec<u8>>>) {
    match first {
        Some((d, s)) => {
            let ok = d.ok();
            (Some(d), ok.then_some(s))
        }
        None => (None, None),
    }
}

/// Ends recording nested calls; what was recorded.
fn take_record() -> Vec<crate::call::dispatch::NestedRec> {
    match nested_mode(Nested::Off) {
        Nested::Record(r) => r,
        _ => Vec::new(),
    }
}

/// The caller's out-buffers as replica 0 left them, at the lengths measured before the call.
fn caller_outs(walk: &Walk) -> Vec<Vec<u8>> {
    walk.bufs()
        .iter()
        .filter(|b| b.copied_back())
        .map(|b| b.bytes())
        .collect()
}

pub fn call(rt: &Runtime, f: &FnDesc, k: usize, frame: &mut Frame, walk: &Walk) {
    let mut reps: Vec<&ProcRt> = rt.replicas_of(k).collect();
    let spec = &reps[0].spec;
    let mut observed: Vec<(&ProcRt, Private)> = Vec::new();
    if let Some(sample) = &spec.sample {
        let all = reps.clone();
        reps.retain(|p| !p.observer);
        if f.pure {
            let n = all.len() as u64;
            // The turns start with the observer (a short run is sampled too: ten calls over
            // two replicas once gave valgrind none).
            let start = all.iter().position(|p| p.observer).unwrap_or(0) as u64;
            let pick = match sample.pick {
                // In turns of RR_BATCH calls: the same helper keeps its caches and its spinning
                // thread for a while; over a run every replica gets its share.
                Pick::RoundRobin => (ROUND_ROBIN.fetch_add(1, Relaxed) / RR_BATCH + start) % n,
                Pick::Random => u64::from(crate::platform::sys::rand()) % n,
            } as usize;
            if all[pick].observer {
                // The observer gets this call (queued, never dropped) when its queue has room;
                // an answering replica answers. Its nested calls into the program are refused
                // (an empty record): the program's state changes only through the replica that
                // answers.
                let pv = private_copy(f, frame, walk);
                if has_room(rt, all[pick], &pv) {
                    observe(rt, f, all[pick], pv, 0, Vec::new());
                } else {
                    f.stats.unsampled.fetch_add(1, Relaxed);
                }
            }
            let first = if all[pick].observer {
                pick
            } else {
                all[..pick].iter().filter(|p| !p.observer).count()
            };
            let saved = *frame;
            let mut last = (-1, String::new());
            for i in 0..reps.len() {
                let p = reps[(first + i) % reps.len()];
                *frame = saved;
                match try_call(rt, f, p, frame, walk) {
                    Ok(()) => return,
                    Err(e) => last = e,
                }
            }
            recovery::give_up(rt, f, reps[0], last.0, &last.1, frame);
            return;
        }
        // A state call: observers get it too (in order, never dropped), on copies of the
        // inputs taken before an answering replica writes the caller's buffers.
        for p in all.iter().filter(|p| p.observer) {
            observed.push((p, private_copy(f, frame, walk)));
        }
    }
    let saved = *frame;
    // Every replica gets the call at once, each on its own channel: replica 0 on the caller's
    // own buffers, replicas 1.. on private copies of the inputs, and they work in parallel.
    // Their answers are taken in order: replica 0's first, its nested calls into the program
    // run and recorded; then the others', their nested calls answered from that record (a
    // replica that calls back waits until its turn). Only then are failed attempts restarted
    // and retried, so no gate is held while a restart waits for one.
    let mut copies: Vec<Private> = (1..reps.len())
        .map(|_| private_copy(f, &saved, walk))
        .collect();
    for pv in copies.iter_mut() {
        pv.frame.stack = pv.walk.stack.as_ptr();
    }
    let mut attempts: Vec<Option<Attempt>> = Vec::with_capacity(reps.len());
    attempts.push(recovery::post(f, reps[0], frame, walk));
    for (p, pv) in reps.iter().skip(1).zip(&copies) {
        attempts.push(recovery::post(f, p, &pv.frame, &pv.walk));
    }
    let mut attempts = attempts.into_iter();
    let outer = nested_mode(Nested::Record(Vec::new()));
    let outer_digests = crate::call::dispatch::digests(true);
    crate::supervise::replay::take_last(k);
    let done0 = attempts.next().flatten().map(|a| {
        with_string(
            f,
            recovery::complete(rt, f, reps[0], a, frame),
            frame.ret_rax,
        )
    });
    let record = take_record();
    let logged0 = crate::supervise::replay::take_last(k);
    let mut done: Vec<Option<(Done, Option<Vec<u8>>)>> = Vec::with_capacity(reps.len());
    crate::call::hooks::set_secondary(true);
    let mut seen_first: Vec<u64> = Vec::with_capacity(reps.len());
    for ((p, pv), a) in reps.iter().skip(1).zip(copies.iter_mut()).zip(attempts) {
        nested_mode(Nested::Replay(record.clone(), 0));
        crate::call::dispatch::set_seen(0);
        done.push(a.map(|a| {
            let d = recovery::complete(rt, f, p, a, &mut pv.frame);
            with_string(f, d, pv.frame.ret_rax)
        }));
        seen_first.push(crate::call::dispatch::take_seen());
    }
    crate::call::hooks::set_secondary(false);
    // A retry of replica 0 records afresh: the record is what its answering attempt did.
    let ok0 = done0.as_ref().is_some_and(|d| d.0.ok());
    nested_mode(Nested::Record(if ok0 { record } else { Vec::new() }));
    let (done0, string0) = split_first(done0);
    crate::supervise::replay::take_last(k);
    let first = try_call_after(rt, f, reps[0], frame, walk, done0);
    // The entry replica 0 logged for this call (in `complete` or in its retry).
    let own_entry = crate::supervise::replay::take_last(k).or(logged0);
    let record = take_record();
    let errno0 = crate::call::dispatch::get_errno();
    let mut answers: Vec<Option<Answer>> = vec![None; reps.len()];
    let mut tokens: Vec<u64> = vec![0; reps.len()];
    let mut failure = None;
    match &first {
        Ok(()) => {
            let rax = frame.ret_rax;
            answers[0] = Some(Answer {
                rax: value_of(f, frame),
                string: string0.unwrap_or_else(|| returned_string(f, rax)),
                outs: caller_outs(walk),
                nested: crate::call::dispatch::nested_digest(&record),
            });
        }
        Err(e) => failure = Some(e.clone()),
    }
    let answer0 = *frame;
    // A replica restarted to retry this call replays the log without this call's own entry.
    crate::supervise::replay::skip_entry(k, own_entry);
    for ((((r, p), pv), d), seen) in reps
        .iter()
        .enumerate()
        .skip(1)
        .zip(copies)
        .zip(done)
        .zip(seen_first)
    {
        nested_mode(Nested::Replay(record.clone(), 0));
        // A first attempt that succeeded keeps its digest; a retry starts afresh.
        let ok = d.as_ref().is_some_and(|x| x.0.ok());
        crate::call::dispatch::set_seen(if ok { seen } else { 0 });
        if let Some((a, tok)) = run_private(rt, f, p, pv, d) {
            answers[r] = Some(a);
            tokens[r] = tok;
        }
    }
    crate::supervise::replay::skip_entry(k, None);
    nested_mode(outer);
    crate::call::dispatch::digests(outer_digests);
    *frame = answer0;
    crate::call::dispatch::set_errno(errno0);
    if let Some(Some(s)) = answers[0].as_ref().map(|a| a.string.as_ref()) {
        // The other replicas' strings went through the same per-thread buffer.
        frame.ret_rax = crate::call::dispatch::set_ret_str(f, s);
    }
    // Handles: the program keeps one token, bound to each replica's own value.
    if f.ret == RetSpec::Handle {
        let keep = if first.is_ok() {
            frame.ret_rax
        } else {
            tokens.iter().copied().find(|t| *t != 0).unwrap_or(0)
        };
        for t in tokens.iter().skip(1) {
            if *t != 0 && *t != keep {
                handles::adopt_fresh(keep, *t);
            }
        }
        if first.is_err() && keep != 0 {
            frame.ret_rax = keep;
        }
    }
    if spec.sample.is_some() {
        // A state call of a sampled process: every replica applied it; replica 0 answers.
        let keep = if f.ret == RetSpec::Handle && failure.is_none() {
            frame.ret_rax
        } else {
            0
        };
        for (p, pv) in observed {
            observe(rt, f, p, pv, keep, record.clone());
        }
        if let Some((st, what)) = failure {
            if answers.iter().all(|a| a.is_none()) {
                recovery::give_up(rt, f, reps[0], st, &what, frame);
            }
        }
        return;
    }
    vote(rt, f, &reps, &answers, frame, &saved, walk, failure);
}

/// Groups of equal answers, in order of first appearance, each with the replicas that gave it,
/// and the winning group: the largest; a tie goes to the group holding replica 0, else to the
/// first of them. Replicas
/// that gave no answer are in no group.
fn tally<A: PartialEq>(answers: &[Option<A>]) -> (Vec<(&A, Vec<usize>)>, usize) {
    let mut groups: Vec<(&A, Vec<usize>)> = Vec::new();
    for (r, a) in answers.iter().enumerate() {
        let Some(a) = a else { continue };
        match groups.iter_mut().find(|g| g.0 == a) {
            Some(g) => g.1.push(r),
            None => groups.push((a, vec![r])),
        }
    }
    // (`max_by_key` keeps the last of equal keys: the index, reversed, makes it the first.)
    let best = (0..groups.len())
        .max_by_key(|&g| {
            (
                groups[g].1.len(),
                groups[g].1.contains(&0),
                std::cmp::Reverse(g),
            )
        })
        .unwrap_or(0);
    (groups, best)
}

#[allow(clippy::too_many_arguments)]
fn vote(
    rt: &Runtime,
    f: &FnDesc,
    reps: &[&ProcRt],
    answers: &[Option<Answer>],
    frame: &mut Frame,
    saved: &Frame,
    walk: &Walk,
    failure: Option<(i32, String)>,
) {
    let on_mismatch = reps[0]
        .spec
        .replicate
        .as_ref()
        .map(|r| r.on_mismatch.clone())
        .unwrap_or(OnMismatch::Majority);
    let (groups, best) = tally(answers);
    if groups.is_empty() {
        let (st, what) = failure.unwrap_or((-1, "no replica answered".into()));
        recovery::give_up(rt, f, reps[0], st, &what, frame);
        return;
    }
    if groups.len() == 1 {
        if answers[0].is_none() {
            apply(f, groups[0].0, frame, walk);
        }
        return;
    }
    let args = describe_args(f, saved, walk);
    let desc: Vec<String> = groups
        .iter()
        .map(|(a, rs)| format!("replicas {:?} answered {}", rs, describe_answer(f, a)))
        .collect();
    for (g, (_, rs)) in groups.iter().enumerate() {
        if g != best {
            for r in rs {
                reps[*r].mismatches.fetch_add(1, Relaxed);
            }
        }
    }
    let detail = format!("{}({}): {}", f.name, args, desc.join("; "));
    crate::observe::reports::event(&crate::observe::reports::Event {
        outcome: "mismatch",
        process: &reps[0].spec.name,
        module: &f.module,
        function: &f.name,
        signal: 0,
        fault_addr: 0,
        env: "",
        detail: &detail,
        frames: &[],
    });
    match on_mismatch {
        OnMismatch::Abort => {
            crate::observe::log::emit(
                crate::observe::log::ERROR,
                format_args!(
                    "mismatch in {}({}): {}; on_mismatch: abort",
                    f.name,
                    args,
                    desc.join("; ")
                ),
            );
            crate::plan::stats_file::write(rt);
            // Ending the program as configured.
            crate::platform::sys::abort();
        }
        OnMismatch::First => {
            warn!(
                "mismatch in {}({}): {}; answering with the first replica",
                f.name,
                args,
                desc.join("; ")
            );
            if answers[0].is_none() {
                apply(f, groups[0].0, frame, walk);
            }
        }
        OnMismatch::Majority => {
            warn!(
                "mismatch in {}({}): {}; answering with the majority, restarting the others",
                f.name,
                args,
                desc.join("; ")
            );
            if !groups[best].1.contains(&0) {
                apply(f, groups[best].0, frame, walk);
            }
            for (g, (_, rs)) in groups.iter().enumerate() {
                if g != best {
                    for r in rs {
                        recovery::kill_helper(reps[*r]);
                        recovery::restart(rt, reps[*r].index, 0);
                    }
                }
            }
        }
    }
}

/// Answers the caller with `a` (another replica's answer than replica 0's).
fn apply(f: &FnDesc, a: &Answer, frame: &mut Frame, walk: &Walk) {
    match f.ret {
        RetSpec::Val => frame.ret_rax = a.rax[0],
        RetSpec::Float => {
            frame.ret_xmm0[0] = a.rax[0];
            frame.ret_xmm1[0] = a.rax[1];
        }
        _ => {}
    }
    if let Some(s) = &a.string {
        frame.ret_rax = crate::call::dispatch::set_ret_str(f, s);
    }
    // Out-buffers: into the caller's own, within the lengths measured before the call.
    let mut outs = a.outs.iter();
    for b in walk.bufs().iter().filter(|b| b.copied_back()) {
        if let Some(o) = outs.next() {
            let n = o.len().min(b.len as usize);
            // SAFETY: the caller's buffer holds b.len bytes (the walk measured it).
            unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), b.ptr as *mut u8, n) };
        }
    }
}

/// Shortens `s` to at most `max` characters for a log line.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The argument values of a call, for a mismatch report: strings quoted, buffers by size.
fn describe_args(f: &FnDesc, saved: &Frame, walk: &Walk) -> String {
    let pv = private_copy(f, saved, walk);
    let mut out = Vec::new();
    for (i, (spec, loc)) in f.layout.args.iter().enumerate() {
        let v = arg_value(saved, &walk.stack, *loc);
        let buf = pv.bufs.iter().find(|b| b.0 == i).map(|b| &b.2);
        out.push(match (spec, buf) {
            (ArgSpec::Str, Some(b)) => {
                let s = String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b));
                format!("{:?}", clip(&s, 60))
            }
            (ArgSpec::In(_) | ArgSpec::Out(_) | ArgSpec::InOut(_), Some(b)) => {
                format!("<{} bytes>", b.len())
            }
            (ArgSpec::Handle, _) => format!("handle {v:#x}"),
            (_, None) if spec.is_buffer() => "NULL".to_string(),
            _ => format!("{}", v as i64),
        });
    }
    out.join(", ")
}

/// One replica's answer, for a mismatch report.
fn describe_answer(f: &FnDesc, a: &Answer) -> String {
    let mut s = match &a.string {
        Some(b) => format!("{:?}", clip(&String::from_utf8_lossy(b), 80)),
        None if f.ret == RetSpec::Str => "NULL".to_string(),
        None if f.ret == RetSpec::Float => {
            format!("{} {}", f64::from_bits(a.rax[0]), f64::from_bits(a.rax[1]))
        }
        None => format!("{}", a.rax[0] as i64),
    };
    if !a.outs.is_empty() {
        let sum: u64 = a.outs.iter().flatten().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100000001b3)
        });
        s.push_str(&format!(" (out-buffers {sum:016x})"));
    }
    if a.nested != 0 {
        s.push_str(&format!(" (nested calls and callbacks {:016x})", a.nested));
    }
    s
}

/// A call an observer replica runs in the background.
struct Job {
    func: usize,
    pv: Private,
    /// The token the program got for a returned handle: the observer's value is bound to it.
    keep: u64,
    /// The answering replica's nested calls: the observer's are answered from it.
    record: Vec<crate::call::dispatch::NestedRec>,
}

// SAFETY: see `Private`: every pointer in the job points into the job's own allocations.
unsafe impl Send for Job {}

#[derive(Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    /// Bytes of the queued jobs' private copies.
    bytes: usize,
    busy: bool,
    started: bool,
}

/// One queue per observer region, served by one thread of the program.
struct Observer {
    q: std::sync::Mutex<Queue>,
    cv: std::sync::Condvar,
}

static OBSERVERS: std::sync::OnceLock<Vec<Observer>> = std::sync::OnceLock::new();

/// Sampled pure calls an observer may have queued, and their bytes: a sampled call is given
/// to the observer only while its queue is below both, so a slow tool never holds the
/// program back; once given, a call is never dropped.
const SAMPLE_BACKLOG: usize = 16;
const SAMPLE_BYTES: usize = 64 << 20;

/// State calls an observer may lag behind before the program waits for it.
const MAX_BACKLOG: usize = 4096;

fn observers(rt: &Runtime) -> &'static [Observer] {
    OBSERVERS.get_or_init(|| {
        (0..rt.procs.len())
            .map(|_| Observer {
                q: std::sync::Mutex::new(Queue::default()),
                cv: std::sync::Condvar::new(),
            })
            .collect()
    })
}

fn job_bytes(pv: &Private) -> usize {
    pv.bufs.iter().map(|b| b.2.len()).sum::<usize>() + std::mem::size_of::<Job>()
}

/// True when observer `p` may be given a sampled call of this size now.
fn has_room(rt: &Runtime, p: &ProcRt, pv: &Private) -> bool {
    let q = observers(rt)[p.index]
        .q
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    q.jobs.len() < SAMPLE_BACKLOG && q.bytes + job_bytes(pv) <= SAMPLE_BYTES
}

/// Hands a call to observer `p`: queued (every state call, and the sampled calls it was
/// given), waiting only past MAX_BACKLOG queued calls, and served in order by one thread.
fn observe(
    rt: &Runtime,
    f: &FnDesc,
    p: &ProcRt,
    pv: Private,
    keep: u64,
    record: Vec<crate::call::dispatch::NestedRec>,
) {
    let rt: &'static Runtime = match crate::plan::runtime::get() {
        Some(r) if std::ptr::eq(r, rt) => r,
        _ => return,
    };
    let o = &observers(rt)[p.index];
    let mut q = o.q.lock().unwrap_or_else(|e| e.into_inner());
    while q.jobs.len() >= MAX_BACKLOG {
        q = o.cv.wait(q).unwrap_or_else(|e| e.into_inner());
    }
    q.bytes += job_bytes(&pv);
    q.jobs.push_back(Job {
        func: f.idx,
        pv,
        keep,
        record,
    });
    if !q.started {
        let idx = p.index;
        let spawned = std::thread::Builder::new()
            .name(format!("frac-observe-{idx}"))
            .spawn(move || serve_observer(rt, idx));
        q.started = spawned.is_ok();
        if !q.started {
            q.jobs.clear();
            q.bytes = 0;
        }
    }
    o.cv.notify_all();
}

fn serve_observer(rt: &'static Runtime, idx: usize) {
    let o = &observers(rt)[idx];
    let p = &rt.procs[idx];
    loop {
        let mut job = {
            let mut q = o.q.lock().unwrap_or_else(|e| e.into_inner());
            q.busy = false;
            o.cv.notify_all();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    q.bytes = q.bytes.saturating_sub(job_bytes(&j.pv));
                    q.busy = true;
                    o.cv.notify_all();
                    break j;
                }
                q = o.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let f = &rt.fns[job.func];
        job.pv.frame.stack = job.pv.walk.stack.as_ptr();
        nested_mode(Nested::Replay(std::mem::take(&mut job.record), 0));
        crate::call::hooks::set_secondary(true);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            try_call(rt, f, p, &mut job.pv.frame, &job.pv.walk)
        }));
        crate::call::hooks::set_secondary(false);
        nested_mode(Nested::Off);
        if let Ok(Ok(())) = res {
            if f.ret == RetSpec::Handle && job.keep != 0 {
                handles::adopt_fresh(job.keep, job.pv.frame.ret_rax);
            }
        }
    }
}

/// At exit: lets the observers finish what they were given (bounded), so that a tool such as
/// valgrind sees every state call and ends with its report.
pub fn drain(limit: std::time::Duration) {
    let Some(obs) = OBSERVERS.get() else { return };
    let t0 = std::time::Instant::now();
    for o in obs {
        let mut q = o.q.lock().unwrap_or_else(|e| e.into_inner());
        while q.started && (q.busy || !q.jobs.is_empty()) {
            let left = limit.saturating_sub(t0.elapsed());
            if left.is_zero() {
                warn!(
                    "an observer replica still had {} calls queued at exit",
                    q.jobs.len()
                );
                break;
            }
            q =
                o.cv.wait_timeout(q, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
        }
    }
    debug!("observers drained in {:?}", t0.elapsed());
}

#[cfg(test)]
mod tests {
    use super::tally;

    fn winner(answers: &[Option<u32>]) -> (Option<u32>, Vec<Vec<usize>>) {
        let (groups, best) = tally(answers);
        (
            groups.get(best).map(|g| *g.0),
            groups.iter().map(|g| g.1.clone()).collect(),
        )
    }

    #[test]
    fn the_majority_wins_and_a_tie_goes_to_replica_0() {
        assert_eq!(
            winner(&[Some(1), Some(2), Some(2)]),
            (Some(2), vec![vec![0], vec![1, 2]])
        );
        assert_eq!(
            winner(&[Some(1), Some(2)]),
            (Some(1), vec![vec![0], vec![1]])
        );
        assert_eq!(
            winner(&[Some(5), Some(5), Some(5)]),
            (Some(5), vec![vec![0, 1, 2]])
        );
        // Replica 0 failed: a tie among the others goes to the first group.
        assert_eq!(
            winner(&[None, Some(3), Some(4)]),
            (Some(3), vec![vec![1], vec![2]])
        );
        // Silent replicas are in no group; no answer at all is no winner.
        assert_eq!(winner(&[Some(7), None, Some(8), Some(8)]).0, Some(8));
        assert_eq!(winner(&[None, None]), (None, vec![]));
    }
}
