//! Shared by `fuzz_map.rs` and `fuzz_map_pinned.rs`: the watchdog every case runs under, and
//! the file name errors must name.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills the test process when one case runs longer than [`Watchdog::LIMIT`] (a hang or a
/// blow-up), printing its seed and input: a hung case cannot be interrupted any other way.
pub struct Watchdog {
    /// Milliseconds since `t0` when the current case started, 0 between cases.
    started: Arc<AtomicU64>,
    current: Arc<Mutex<(u64, String)>>,
    t0: Instant,
}

impl Watchdog {
    /// Far above what any case takes, so only a real hang fires it.
    const LIMIT: Duration = Duration::from_secs(20);

    pub fn new(target: &'static str) -> Watchdog {
        let started = Arc::new(AtomicU64::new(0));
        let current = Arc::new(Mutex::new((0, String::new())));
        let t0 = Instant::now();
        let (s, c) = (started.clone(), current.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let at = s.load(Ordering::Acquire);
            if at != 0 && t0.elapsed().as_millis() as u64 > at + Self::LIMIT.as_millis() as u64 {
                let (seed, input) = c.lock().map(|g| g.clone()).unwrap_or_default();
                eprintln!(
                    "{target}: case with seed {seed:#x} still running after {:?}: hang or blow-up; input:\n{input}",
                    Self::LIMIT
                );
                std::process::exit(101);
            }
        });
        Watchdog {
            started,
            current,
            t0,
        }
    }

    /// Runs one case under the watchdog and `catch_unwind`; a panic fails the test with the
    /// seed and the input.
    pub fn run<R>(&self, seed: u64, input: &dyn Fn() -> String, f: impl FnOnce() -> R) -> R {
        if let Ok(mut g) = self.current.lock() {
            *g = (seed, input());
        }
        self.started
            .store(self.t0.elapsed().as_millis() as u64 + 1, Ordering::Release);
        let r = catch_unwind(AssertUnwindSafe(f));
        self.started.store(0, Ordering::Release);
        match r {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "panic `{msg}` for seed {seed:#x} (rerun with FRACTURE_FUZZ_SEED={seed:#x}); input:\n{}",
                    input()
                )
            }
        }
    }
}

pub const FILE: &str = "fuzz dir/map.yaml";
