//! A cheap monotonic clock for the call path. `Instant::now()` is a vDSO `clock_gettime`
//! (25-40 ns in this VM, three of them on every isolated call); the time-stamp counter is
//! one instruction. Elapsed ticks are scaled to nanoseconds by a factor measured against
//! `CLOCK_MONOTONIC` over the first millisecond after [`start`] (until then, and on a CPU
//! without an invariant TSC, [`Stamp`] falls back to the monotonic clock).
//!
//! # Safety
//! `rdtsc` has no preconditions; `clock_gettime` writes a local.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// TSC and monotonic ns at [`start`] (0: not started).
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
static BASE_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per tick, 32.32 fixed point (0: not measured yet, or no usable TSC).
static SCALE: AtomicU64 = AtomicU64::new(0);
/// Set when the TSC must not be used (no `constant_tsc`/`nonstop_tsc`).
static NO_TSC: AtomicU64 = AtomicU64::new(0);

fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions (x86_64 always has it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CLOCK_MONOTONIC in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Starts the calibration (at load: the first calls then find it done). `invariant_tsc`:
/// the CPU says its TSC runs at a constant rate in every state (`constant_tsc` and
/// `nonstop_tsc` in /proc/cpuinfo); without it the clock stays the monotonic one.
pub fn start(invariant_tsc: bool) {
    if !invariant_tsc {
        NO_TSC.store(1, Relaxed);
        return;
    }
    BASE_NS.store(monotonic_ns(), Relaxed);
    BASE_TSC.store(tsc(), Relaxed);
}

/// The scale, measuring it once a millisecond has passed since [`start`].
fn scale() -> u64 {
    let s = SCALE.load(Relaxed);
    if s != 0 || NO_TSC.load(Relaxed) != 0 {
        return s;
    }
    let (t0, n0) = (BASE_TSC.load(Relaxed), BASE_NS.load(Relaxed));
    if t0 == 0 {
        return 0;
    }
    let (n1, t1) = (monotonic_ns(), tsc());
    if n1.saturating_sub(n0) < 1_000_000 || t1 <= t0 {
        return 0;
    }
    let s = (((n1 - n0) as u128) << 32) / u128::from(t1 - t0);
    let s = u64::try_from(s).unwrap_or(0);
    SCALE.store(s, Relaxed);
    s
}

/// A point in time, for measuring what follows it.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// Ticks when `scaled`, else monotonic ns.
    at: u64,
    scaled: bool,
}

impl Stamp {
    /// Now.
    #[inline]
    pub fn now() -> Stamp {
        if scale() != 0 {
            Stamp {
                at: tsc(),
                scaled: true,
            }
        } else {
            Stamp {
                at: monotonic_ns(),
                scaled: false,
            }
        }
    }

    /// Nanoseconds since this stamp.
    #[inline]
    pub fn elapsed_ns(&self) -> u64 {
        if self.scaled {
            let d = tsc().saturating_sub(self.at);
            ((u128::from(d) * u128::from(SCALE.load(Relaxed))) >> 32) as u64
        } else {
            monotonic_ns().saturating_sub(self.at)
        }
    }

    /// Time since this stamp.
    #[inline]
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns())
    }
}

/// True when /proc/cpuinfo says the TSC is invariant (read once at load).
pub fn tsc_is_invariant() -> bool {
    let c = crate::fs::read_proc("/proc/cpuinfo");
    c.lines().find(|l| l.starts_with("flags")).is_some_and(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.contains(&"constant_tsc") && f.contains(&"nonstop_tsc")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaled_clock_agrees_with_the_monotonic_one() {
        start(tsc_is_invariant());
        let before = Stamp::now();
        std::thread::sleep(Duration::from_millis(3));
        let s = Stamp::now();
        let m = monotonic_ns();
        std::thread::sleep(Duration::from_millis(20));
        let (a, b) = (s.elapsed_ns(), monotonic_ns() - m);
        assert!(
            a.abs_diff(b) < b / 50 + 50_000,
            "tsc {a} ns, monotonic {b} ns"
        );
        assert!(before.elapsed_ns() >= a);
    }
}
