//! Per-function call statistics, lock-free, written as JSON at exit (`FRACTURE_STATS`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Latency buckets: 4 per power of two of nanoseconds, up to 2^40 ns.
const BUCKETS: usize = 4 * 41;

pub struct FnStats {
    pub calls: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub failures: AtomicU64,
    pub nested: AtomicU64,
    /// Calls the flat path answered (registers only, a plain return within the spin).
    pub flat: AtomicU64,
    /// Sampled calls whose turn went to an observer (a tool such as valgrind) while its
    /// queue was full: answered, but not given to it.
    pub unsampled: AtomicU64,
    /// Calls whose helper died, hung or answered garbage (each try counts).
    pub crashes: AtomicU64,
    pub restarts: AtomicU64,
    pub retries: AtomicU64,
    pub give_ups: AtomicU64,
    /// Calls that succeeded on a retry.
    pub recovered: AtomicU64,
    /// Environment of the last successful retry: 0 = the process's env, n = retry_envs[n-1];
    /// u64::MAX while no retry succeeded.
    pub succeeded_env: AtomicU64,
    /// Running share of calls answered within [`SHORT_NS`], in 1/1024ths (starts at "all").
    short_share: AtomicU64,
    /// The same within [`MEDIUM_NS`] (on-demand calls: [`FnStats::spin_budget_on_demand`]).
    medium_share: AtomicU64,
    hist: [AtomicU64; BUCKETS],
}

impl Default for FnStats {
    fn default() -> Self {
        FnStats {
            calls: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            nested: AtomicU64::new(0),
            flat: AtomicU64::new(0),
            unsampled: AtomicU64::new(0),
            short_share: AtomicU64::new(1024),
            medium_share: AtomicU64::new(1024),
            crashes: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            give_ups: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            succeeded_env: AtomicU64::new(u64::MAX),
            hist: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A call answered within this is cheaper to wait for spinning than sleeping: a futex wake of
/// an idle vCPU costs 20-40 µs here, and the spin budget is at most twice the usual latency.
pub const SHORT_NS: u64 = 16_000;

/// Under on-demand memory a wait ends in a page request, a write table or the answer; one
/// that sleeps costs a hand-off on every one of them (the serving thread pinned to the
/// caller's CPU, two context switches and two affinity changes per message). Measured with
/// `file -f` over 1000 files under `--isolate libmagic.so.1`, paired rounds: sleeping at once
/// 1.52x plain wall / 1.45x CPU, spinning up to 200 us 1.27x / 1.50x, 600 us 1.20x / 1.75x.
/// So waits that are mostly this short are spun for, up to twice as long. (200 us until stop
/// 22: `magic_file` calls take 150-250 us, so half of them were slept for; at 400 us, 11 paired
/// rounds: 1.68x -> 1.35x wall, 2.26x -> 2.60x CPU. Calls that compress a buffer, 1 ms and
/// more, are still slept for at once.)
pub const MEDIUM_NS: u64 = 400_000;

fn bucket_of(ns: u64) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let p = 63 - ns.leading_zeros() as usize; // 2^p <= ns
    let sub = ((ns >> (p - 2)) & 3) as usize;
    (4 * (p - 1) + sub).min(BUCKETS - 1)
}

fn bucket_mid(b: usize) -> f64 {
    if b < 4 {
        return b as f64;
    }
    let p = b / 4 + 1;
    let sub = (b % 4) as f64;
    let lo = (1u64 << p) as f64 * (1.0 + sub / 4.0);
    lo + (1u64 << p) as f64 / 8.0
}

impl FnStats {
    pub fn record(&self, ns: u64, bytes_in: u64, bytes_out: u64) {
        self.calls.fetch_add(1, Relaxed);
        // (Each add is a locked instruction: one that adds nothing is left out.)
        if bytes_in != 0 {
            self.bytes_in.fetch_add(bytes_in, Relaxed);
        }
        if bytes_out != 0 {
            self.bytes_out.fetch_add(bytes_out, Relaxed);
        }
        self.hist[bucket_of(ns)].fetch_add(1, Relaxed);
    }

    /// Notes how long the helper took to serve one call (its own word, from the answer; the
    /// caller's elapsed time when it gave none): what [`FnStats::spin_budget`] decides from.
    /// The service time, not the caller's elapsed time, so that a function slept for (and
    /// slower for it) is spun for again once its calls turn out short.
    pub fn note_service(&self, ns: u64) {
        // Share of short calls, a moving average over about the last 16 calls.
        let short = if ns <= SHORT_NS { 1024 } else { 0 };
        let old = self.short_share.load(Relaxed);
        self.short_share.store((old * 15 + short) / 16, Relaxed);
        let medium = if ns <= MEDIUM_NS { 1024 } else { 0 };
        let old = self.medium_share.load(Relaxed);
        self.medium_share.store((old * 15 + medium) / 16, Relaxed);
    }

    /// [`FnStats::spin_budget`] for a call into an on-demand process: waits mostly shorter
    /// than [`MEDIUM_NS`] are spun for up to twice that (see there); long ones (compressing a
    /// buffer) are slept for at once, as before.
    pub fn spin_budget_on_demand(&self) -> std::time::Duration {
        if self.medium_share.load(Relaxed) < 512 {
            return self.spin_budget();
        }
        std::time::Duration::from_nanos(2 * MEDIUM_NS)
    }

    /// How long a caller should spin before sleeping. Spinning pays only when the answer is
    /// due within a wake-up's cost: when fewer than half of the recent waits were that short
    /// ([`SHORT_NS`] of the helper's own work), the caller sleeps at once (a spin that rarely
    /// ends in an answer burns a CPU for the whole call: `file -f` with libmagic isolated cost
    /// twice the CPU of plain `file`); otherwise it spins as long as a short wait takes, twice
    /// over, and sleeps if the answer is not there by then (the call is a long one).
    pub fn spin_budget(&self) -> std::time::Duration {
        if self.short_share.load(Relaxed) < 512 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_nanos(2 * SHORT_NS)
    }

    /// Latency percentile in microseconds (bucket midpoint, ±12%).
    pub fn percentile_us(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.hist.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (b, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return bucket_mid(b) / 1000.0;
            }
        }
        0.0
    }
}

/// Escapes a string for JSON.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for ns in [1u64, 5, 9, 100, 1000, 1234, 10_000, 1 << 30] {
            let b = bucket_of(ns);
            assert!(b >= last);
            last = b;
            let mid = bucket_mid(b);
            assert!(
                (mid - ns as f64).abs() <= ns as f64 * 0.25 + 1.0,
                "{ns} -> {mid}"
            );
        }
    }

    #[test]
    fn long_calls_are_slept_through_short_ones_spun_for() {
        let s = FnStats::default();
        assert!(
            s.spin_budget() > std::time::Duration::ZERO,
            "a new function spins"
        );
        for _ in 0..50 {
            s.note_service(2_000);
        }
        let short = s.spin_budget();
        assert!(short >= std::time::Duration::from_micros(20), "{short:?}");
        for _ in 0..50 {
            s.note_service(900_000);
        }
        assert_eq!(s.spin_budget(), std::time::Duration::ZERO);
        // A mix where most calls are short again spins again.
        for _ in 0..50 {
            s.note_service(5_000);
        }
        assert!(s.spin_budget() > std::time::Duration::ZERO);
        // One slow call among fast ones does not turn spinning off.
        s.note_service(5_000_000);
        assert!(s.spin_budget() > std::time::Duration::ZERO);
    }

    #[test]
    fn percentiles() {
        let s = FnStats::default();
        for _ in 0..99 {
            s.record(1000, 0, 0);
        }
        s.record(1_000_000, 0, 0);
        assert!((s.percentile_us(0.5) - 1.0).abs() < 0.2);
        assert!(s.percentile_us(0.999) > 800.0);
    }
}

/// `memory: on-demand` traffic of one process, counted by the program (see `call::pages`).
#[derive(Default)]
pub struct PageStats {
    /// Pages the helper asked for during calls (faults), and pages sent ahead with calls.
    pub fetched: AtomicU64,
    pub sent_ahead: AtomicU64,
    /// Bytes of the module's writes applied to the program's memory.
    pub written: AtomicU64,
    /// Pages of module memory the program read (faults in the program, and pages the helper
    /// sent back with an answer), and of those the ones the program faulted in.
    pub peeked: AtomicU64,
    pub faulted: AtomicU64,
}

/// Per process index (at most 64 processes).
pub static PAGES: [PageStats; 64] = [const {
    PageStats {
        fetched: AtomicU64::new(0),
        sent_ahead: AtomicU64::new(0),
        written: AtomicU64::new(0),
        peeked: AtomicU64::new(0),
        faulted: AtomicU64::new(0),
    }
}; 64];
