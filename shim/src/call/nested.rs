//! Nested calls kept for later: what the program answered to a call's nested calls and
//! callbacks, so that replicas other than the first and replayed calls are answered from the
//! record instead of running the program's functions again, and the digest that lets
//! replicas whose nested calls differ lose the vote.

use crate::plan::runtime::FnDesc;
use module_map::ArgSpec;
use std::cell::{Cell, RefCell};
thread_local! {
    /// Nested calls of a replicated call (see [`Nested`]).
    pub(super) static NESTED: RefCell<Nested> = const { RefCell::new(Nested::Off) };
    /// Digest of the nested calls served for the replica now answering (see [`take_seen`]).
    pub(super) static SEEN: Cell<u64> = const { Cell::new(0) };
    /// Set while a replicated call runs (see [`digests`]).
    pub(super) static DIGESTS: Cell<bool> = const { Cell::new(false) };
}

/// A nested call the program served for replica 0 of a replicated call: what it answered.
#[derive(Clone)]
pub struct NestedRec {
    pub(super) func: u32,
    pub(super) ret: (u64, u64, [u64; 2], [u64; 2]),
    pub(super) errno: i32,
    /// (argument index, bytes) of the out/inout buffers after the call.
    pub(super) outs: Vec<(usize, Vec<u8>)>,
    pub(super) ret_str: Option<Vec<u8>>,
    /// What the call asked: its function and the bytes of its buffers (see [`asked`]).
    pub(super) asked: u64,
}

/// One nested call as the program saw it, for comparing replicas: the function and the bytes
/// of its buffer arguments. `val` arguments are left out: they may be the replica's own
/// pointers (a `sqlite3_context *`), which differ between helpers that agree.
pub(super) fn asked(f: &FnDesc, private: &[(usize, Vec<u8>)]) -> u64 {
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

pub(super) fn fold(acc: u64, x: u64) -> u64 {
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
