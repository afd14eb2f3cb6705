//! How the layers above take part in a call without the call layer naming them.
//!
//! - [`Upcalls`]: set once by the composition root (lib.rs) before any slot is routed: what
//!   the program does with a call of a function another process owns (supervision and policy:
//!   restart, retry, replicate, sample), how a helper that overran its time is killed, and how
//!   `fracture profile` counts a call.
//! - The per-thread call context: whether the current call is a replay of the log or a copy
//!   sent to a secondary replica (set by those layers around the calls they make, read by the
//!   call layer to give returned handles fresh tokens and to keep such calls out of the log).

use crate::plan::runtime::{FnDesc, ProcRt, Runtime};
use crate::platform::abi::Frame;
use std::cell::Cell;
use std::sync::OnceLock;

/// The supervision and policy entry points the call layer calls up through.
pub struct Upcalls {
    /// Program side: run `f` in the helper process `p` owns (with restarts, retries, replicas).
    pub call_helper: fn(&Runtime, &FnDesc, &ProcRt, &mut Frame),
    /// Ends the helper of `p` (its call overran `timeout_ms`).
    pub kill_helper: fn(&ProcRt),
    /// `fracture profile`: count the call and run it in place.
    pub profile: fn(&Runtime, &FnDesc, &mut Frame),
}

static UPCALLS: OnceLock<Upcalls> = OnceLock::new();

/// Sets the upcalls (once; later calls are ignored).
pub fn set(u: Upcalls) {
    let _ = UPCALLS.set(u);
}

/// The upcalls. Before the root set them no call can reach a helper (nothing is routed),
/// so a missing set is an internal error reported as a failed call by the caller.
pub fn get() -> Option<&'static Upcalls> {
    UPCALLS.get()
}

thread_local! {
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    static SECONDARY: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread replays a log (`restore: replay` / `checkpoint`).
pub fn replaying() -> bool {
    REPLAYING.with(|r| r.get())
}

/// Marks this thread as replaying (true) or not.
pub fn set_replaying(on: bool) {
    REPLAYING.with(|r| r.set(on));
}

/// True while the current call is a copy sent to another replica than the one answering.
pub fn secondary() -> bool {
    SECONDARY.with(|s| s.get())
}

/// Marks this thread's calls as secondary-replica copies (true) or not.
pub fn set_secondary(on: bool) {
    SECONDARY.with(|s| s.set(on));
}
