//! Waiting that costs no CPU: a caller that sleeps for its answer has the helper's serving
//! thread brought onto its own CPU.
//!
//! Measured on this kind of machine (2 virtual CPUs), a futex round trip between two
//! processes costs ~65 us across CPUs (waking an idle virtual CPU) and ~5 us on one CPU
//! (`pingpong futex` under `taskset -c 0`). A caller that spins for a long call burns a CPU for
//! its whole length; one that sleeps pays the cross-CPU wake-up. So the program decides per
//! function ([`crate::observe::stats::FnStats::spin_budget`]): it spins when most recent
//! calls were short, else it sleeps and writes its CPU into the call's `hint`. The helper's
//! serving thread follows that hint: it restricts itself to the caller's CPU (inside the
//! affinity it started with) while the caller sleeps, and returns to its full affinity as
//! soon as a caller spins again (a spinner beside it on one CPU would keep it from running).
//! A synchronous call leaves nothing to run in parallel: while the helper works the caller
//! waits, so sharing the CPU costs nothing and the wake-up becomes a local one.
//!
//! While pinned, the serving thread does not spin either (its peer is on its own CPU).

use crate::platform::sys;
use std::cell::Cell;
use std::time::Duration;

/// A serving thread's state, in one thread-local (each one is a `__tls_get_addr` call in a
/// preloaded library, on the path of every call).
#[derive(Clone, Copy)]
struct Serving {
    /// The CPU (+ 1) this serving thread is pinned to, 0 when it runs with its own affinity.
    pinned: u32,
    /// When this thread last heard from the program (a call, or the answer to a nested call
    /// it made), while the call is measured.
    heard: Option<std::time::Instant>,
}

thread_local! {
    static SERVING: Cell<Serving> = const { Cell::new(Serving { pinned: 0, heard: None }) };
    /// The affinity the thread had before its first pin.
    static ORIGINAL: Cell<Option<libc::cpu_set_t>> = const { Cell::new(None) };
}

/// Helper side, for each call received: follow the caller's hint (see [`follow`]); a caller
/// that sleeps (`hint` != 0) is told how long this thread works before each message it sends
/// back; one that spins measures the call itself (two clock reads on the helper's path would
/// be a good part of what a short call costs).
pub fn on_call(hint: u32) {
    SERVING.with(|c| {
        let mut s = c.get();
        if hint != s.pinned {
            s.pinned = follow_from(s.pinned, hint);
        }
        s.heard = (hint != 0).then(std::time::Instant::now);
        c.set(s);
    });
}

/// Helper side: the answer to a nested call just arrived (the clock restarts if this call is
/// measured).
pub fn heard() {
    SERVING.with(|c| {
        let mut s = c.get();
        if s.heard.is_some() {
            s.heard = Some(std::time::Instant::now());
            c.set(s);
        }
    });
}

/// Helper side, for a message to the program: how long this thread worked since it last
/// heard from it, in ns (1 at least; 0 when unknown). The program's wait policy reads it: each
/// wait of a call (for a nested call, a callback or the answer) is as long as the work
/// between two messages, whatever the program's callbacks took in between.
pub fn worked_ns() -> u32 {
    SERVING.with(|c| {
        c.get().heard.map_or(0, |t| {
            u32::try_from(t.elapsed().as_nanos())
                .unwrap_or(u32::MAX)
                .max(1)
        })
    })
}

/// The hint a caller writes into its call: its CPU + 1 when it will sleep for the answer.
pub fn hint_for(spin: Duration) -> u32 {
    if !spin.is_zero() {
        return 0;
    }
    here()
}

/// The calling thread's CPU + 1, as a hint names it (0: unknown).
pub fn here() -> u32 {
    sys::current_cpu().map_or(0, |c| c.saturating_add(1))
}

/// The caller's side of a sleeping wait: the calling thread stays on its CPU until the answer
/// came (else the scheduler wakes it on the other, idle CPU, and the helper chases it there on
/// every call), then gets its own affinity back. Made by [`stay_for`].
pub struct Stay(Option<libc::cpu_set_t>);

/// Keeps the calling thread on CPU `hint - 1` while the returned guard lives (nothing for a
/// hint of 0: the caller spins).
pub fn stay_for(hint: u32) -> Stay {
    if hint == 0 {
        return Stay(None);
    }
    let Some(own) = sys::affinity() else {
        return Stay(None);
    };
    if sys::cpu_in(&own, hint - 1) && sys::set_affinity(&sys::only_cpu(hint - 1)) {
        Stay(Some(own))
    } else {
        Stay(None)
    }
}

impl Drop for Stay {
    fn drop(&mut self) {
        if let Some(own) = &self.0 {
            sys::set_affinity(own);
        }
    }
}

/// Helper side: follow the caller's hint (tests; the serving loop uses [`on_call`]).
#[cfg(test)]
fn follow(hint: u32) {
    SERVING.with(|c| {
        let mut s = c.get();
        if hint != s.pinned {
            s.pinned = follow_from(s.pinned, hint);
        }
        c.set(s);
    });
}

/// Moves this serving thread from `pinned` to what `hint` asks; returns where it is now.
fn follow_from(pinned: u32, hint: u32) -> u32 {
    let original = ORIGINAL.with(|o| {
        if o.get().is_none() {
            o.set(sys::affinity());
        }
        o.get()
    });
    let Some(original) = original else {
        return pinned;
    };
    if hint == 0 {
        return if sys::set_affinity(&original) {
            0
        } else {
            pinned
        };
    }
    let cpu = hint - 1;
    // Only inside the affinity the helper was given (a lying or stale hint changes nothing).
    if sys::cpu_in(&original, cpu) && sys::set_affinity(&sys::only_cpu(cpu)) {
        hint
    } else {
        pinned
    }
}

/// How long this serving thread spins for its peer before sleeping.
pub fn server_spin(normal: Duration) -> Duration {
    if SERVING.with(|c| c.get().pinned) != 0 {
        Duration::ZERO
    } else {
        normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_thread_follows_a_sleeping_caller_and_lets_go_for_a_spinning_one() {
        std::thread::spawn(|| {
            let before = sys::affinity().expect("affinity");
            let cpu = sys::current_cpu().expect("cpu");
            follow(cpu + 1);
            let now = sys::affinity().expect("affinity");
            assert!(sys::cpu_in(&now, cpu));
            assert_eq!(server_spin(Duration::from_micros(60)), Duration::ZERO);
            follow(0);
            let after = sys::affinity().expect("affinity");
            let same = (0..libc::CPU_SETSIZE as u32)
                .all(|c| sys::cpu_in(&before, c) == sys::cpu_in(&after, c));
            assert!(same, "the original affinity is restored");
            assert_eq!(
                server_spin(Duration::from_micros(60)),
                Duration::from_micros(60)
            );
            // A CPU outside the thread's affinity is not followed.
            follow(100_000);
            assert_eq!(SERVING.with(|c| c.get().pinned), 0);
        })
        .join()
        .unwrap();
    }
}
