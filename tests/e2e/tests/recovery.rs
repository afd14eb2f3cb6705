//! Helpers that crash, exit, hang: restart, retry (Rx environments), give up as configured.

use crate::util::*;
use std::os::unix::process::ExitStatusExt;

fn crashy(sets: &[&str], input: &[u8]) -> std::process::Output {
    let mut extra = Vec::new();
    for s in sets {
        extra.push("--set");
        extra.push(*s);
    }
    run_with(
        under(&config("fx.yaml"), &extra, &fixture("fx_crashy"), &[]),
        input,
        WATCHDOG,
    )
}

#[test]
fn give_up_return_answers_the_value_and_the_program_goes_on() {
    let o = crashy(
        &["processes.fxhelper.on_crash.give_up={return: -7, errno: EIO}"],
        b"one\nsegv\nthree\nabort\nfive\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "one: 3\nsegv: -7\nthree: 5\nabort: -7\nfive: 4\n"
    );
    assert!(
        stderr(&o).contains("SIGSEGV") && stderr(&o).contains("SIGABRT"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_hang_is_cut_off_after_timeout_ms() {
    let o = crashy(
        &[
            "processes.fxhelper.timeout_ms=300",
            "processes.fxhelper.on_crash.give_up={return: -9, errno: ETIMEDOUT}",
        ],
        b"a\nhang\nbb\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a: 1\nhang: -9\nbb: 2\n");
    assert!(stderr(&o).contains("hung"), "{}", stderr(&o));
}

#[test]
fn a_hang_given_up_with_crash_ends_the_program() {
    let o = crashy(&["processes.fxhelper.timeout_ms=200"], b"hang\n");
    assert_eq!(o.status.signal(), None, "the launcher reports 128+signal");
    assert_eq!(o.status.code(), Some(128 + 9), "{}", stderr(&o));
}

#[test]
fn a_retry_in_a_changed_environment_recovers_the_faulty_input() {
    // fx_crash_if_env crashes on "envbug" unless FX_SAFE is set: the second retry's
    // environment sets it, so the call succeeds and the program never notices.
    let o = run_with(under(&config("fx.yaml"), &["--set", "processes.fxhelper.on_crash.max_retries=2", "--set", "processes.fxhelper.on_crash.retry_envs=[{vars: {FX_NOTHING: \"1\"}}, {vars: {FX_SAFE: \"1\"}}]"], &fixture("fx_envbug"), &[]), b"a\nenvbug\nbb\n", WATCHDOG);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a: 1\nenvbug: 6\nbb: 2\n");
    let e = stderr(&o);
    assert_eq!(e.matches(" of 2)").count(), 2, "two failed tries: {e}");
    assert!(
        e.contains("recovered: ") && e.contains("retry 2 succeeded in retry_envs[1]"),
        "one recovery line: {e}"
    );
}

#[test]
fn retries_that_keep_crashing_give_up() {
    let o = crashy(&["processes.fxhelper.on_crash.max_retries=2"], b"segv\n");
    assert_eq!(o.status.code(), Some(139), "{}", stderr(&o));
    assert!(stderr(&o).contains("retry 2 of 2"), "{}", stderr(&o));
}

fn state_run(restore: &str, input: &[u8]) -> std::process::Output {
    let sets = [
        format!("processes.fxhelper.on_crash.restore={restore}"),
        "processes.fxhelper.on_crash.max_retries=1".to_string(),
        "processes.fxhelper.on_crash.give_up={return: -1, errno: EIO}".to_string(),
    ];
    let mut extra = Vec::new();
    for s in &sets {
        extra.push("--set");
        extra.push(s.as_str());
    }
    run_with(
        under(&config("fx.yaml"), &extra, &fixture("fx_state"), &[]),
        input,
        WATCHDOG,
    )
}

const STATE_IN: &[u8] = b"new 100\nadd 5\nadd 7\nsegv\nadd 1\nabort\nget\n";

#[test]
fn replay_keeps_module_state_and_handles_across_restarts() {
    let o = state_run("replay", STATE_IN);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every line but the faulty inputs' matches what a plain run prints before it crashes,
    // and the counter goes on where it was.
    assert_eq!(
        stdout(&o),
        "new: ok\nadd: 105\nadd: 112\nsegv: -1\nadd: 113\nabort: -1\nget: 113\n"
    );
}

#[test]
fn restore_none_restarts_pristine() {
    let o = state_run("none", b"new 100\nadd 5\nsegv\nnew 7\nadd 1\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "new: ok\nadd: 105\nsegv: -1\nnew: ok\nadd: 8\n");
}

/// fx_stress (4 threads × 400 calls, a crash every 40) with `restore`, one retry, and a
/// give-up by value.
fn stress_cmd(restore: &str) -> std::process::Command {
    let sets = [
        format!("processes.fxhelper.on_crash.restore={restore}"),
        "processes.fxhelper.on_crash.max_retries=1".to_string(),
        "processes.fxhelper.on_crash.give_up={return: -1, errno: EIO}".to_string(),
    ];
    let mut extra = vec![];
    for s in &sets {
        extra.push("--set");
        extra.push(s.as_str());
    }
    under(
        &config("fx.yaml"),
        &extra,
        &fixture("fx_stress"),
        &["4", "400", "40"],
    )
}

#[test]
fn threads_with_repeated_crashes_lose_and_duplicate_no_call() {
    for restore in ["replay", "checkpoint"] {
        let (k, mark) = marker("stress");
        let t = TempDir::new("stress-db");
        let mut cmd = stress_cmd(restore);
        cmd.env(&k, &mark)
            .env("FRACTURE_LOG", "error")
            .env("FRACTURE_REPORTS", t.path("r.db"));
        let o = run_with(cmd, b"", WATCHDOG);
        // One crash record per fault, naming the call that faulted: 10 fx_crash_on calls,
        // each crashing its first attempt and its retry. The calls of other threads that were
        // in flight (retried as bystanders) are not blamed.
        let crashed = stored(
            &t.path("r.db"),
            "SELECT function FROM events WHERE outcome = 'crash'",
        );
        assert_eq!(crashed.len(), 20, "{restore}: {crashed:?}");
        assert!(
            crashed.iter().all(|f| f == "fx_crash_on"),
            "{restore}: {crashed:?}"
        );
        assert!(
            o.status.success(),
            "{restore}: {} {}",
            stdout(&o),
            stderr(&o)
        );
        assert_eq!(
            stdout(&o),
            "threads: 4 calls: 1600 crashes: 10 errors: 0\n",
            "{restore}"
        );
        assert!(
            leftovers(&mark).is_empty(),
            "{restore}: {:?}",
            leftovers(&mark)
        );
    }
}

// Under CPU load two races lost calls (about one run in twelve): the helper's fault handler
// published the signal before the faulting channel, so an innocent in-flight call could be
// taken for the faulting one and use up its retries; and a replayed handle whose address a
// restarted helper reused took over another handle's token, whose next call then crashed.
#[test]
fn threads_with_repeated_crashes_under_cpu_load_lose_no_call() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut bad = Vec::new();
    for i in 0..12 {
        let restore = if i % 2 == 0 { "replay" } else { "checkpoint" };
        let mut cmd = stress_cmd(restore);
        cmd.env("FRACTURE_LOG", "error");
        let o = run_with(cmd, b"", WATCHDOG);
        let out = stdout(&o);
        if out != "threads: 4 calls: 1600 crashes: 10 errors: 0\n" {
            bad.push(format!("{restore}: {}", out.lines().next().unwrap_or("")));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn checkpoint_restarts_resume_from_the_last_checkpoint() {
    let mut input = String::from("new 100\n");
    for _ in 0..300 {
        input.push_str("add 1\n");
    }
    input.push_str("segv\nget\n");
    let (k, mark) = marker("ckpt");
    let mut extra = vec![];
    let sets = [
        "processes.fxhelper.on_crash.restore=checkpoint",
        "processes.fxhelper.on_crash.max_retries=1",
        "processes.fxhelper.on_crash.give_up={return: -1, errno: EIO}",
    ];
    for s in &sets {
        extra.push("--set");
        extra.push(*s);
    }
    let mut cmd = under(&config("fx.yaml"), &extra, &fixture("fx_state"), &[]);
    cmd.env(&k, &mark).env("FRACTURE_LOG", "info");
    let o = run_with(cmd, input.as_bytes(), WATCHDOG);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with("add: 400\nsegv: -1\nget: 400\n"),
        "{}",
        stdout(&o)
    );
    let e = stderr(&o);
    // Not replayed from the start: from the last checkpoint (every 64 logged calls).
    assert!(e.contains("replayed from log entry 257"), "{e}");
    assert!(leftovers(&mark).is_empty(), "{:?}", leftovers(&mark));
}

#[test]
fn rx_malloc_padding_recovers_a_heap_overflow() {
    // fx_smash overflows a heap block into the next one's header: free() aborts. The retry
    // runs in an environment whose allocator pads every block, and succeeds.
    let o = run_with(
        under(
            &config("fx.yaml"),
            &[
                "--set",
                "processes.fxhelper.on_crash.max_retries=1",
                "--set",
                "processes.fxhelper.on_crash.retry_envs=[{malloc: {pad: 128}}]",
            ],
            &fixture("fx_heap"),
            &[],
        ),
        b"smash 40\nsmash 100\n",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "smash 40: 40\nsmash 100: 100\n");
    assert!(
        stderr(&o).contains("SIGABRT") && stderr(&o).contains("succeeded in retry_envs[0]"),
        "{}",
        stderr(&o)
    );
    // Plain, the same input kills the program.
    let plain_o = run_with(plain(&fixture("fx_heap"), &[]), b"smash 40\n", WATCHDOG);
    assert!(!plain_o.status.success());
}

#[test]
fn rx_malloc_delay_free_applies_in_the_helper_only() {
    let run = |env: Option<&str>| {
        let mut extra = vec![];
        if let Some(e) = env {
            extra.push("--set");
            extra.push(e);
        }
        ok(run_with(
            under(&config("fx.yaml"), &extra, &fixture("fx_heap"), &[]),
            b"uaf 64\n",
            WATCHDOG,
        ))
    };
    assert_eq!(run(None), "uaf 64: 0\n", "freed block reused at once");
    assert_eq!(
        run(Some("processes.fxhelper.env={malloc: {delay_free: 16}}")),
        "uaf 64: 1\n",
        "free delayed in the helper"
    );
    assert_eq!(
        ok(run_with(
            plain(&fixture("fx_heap"), &[]),
            b"uaf 64\n",
            WATCHDOG
        )),
        "uaf 64: 0\n"
    );
}

#[test]
fn rx_malloc_perturb_and_zero_fill_and_rlimits_apply_in_the_helper() {
    let run = |set: &str, input: &[u8]| {
        let mut extra = vec![];
        if !set.is_empty() {
            extra.push("--set");
            extra.push(set);
        }
        ok(run_with(
            under(&config("fx.yaml"), &extra, &fixture("fx_heap"), &[]),
            input,
            WATCHDOG,
        ))
    };
    // An uninitialised read sees what the block held before (7)...
    assert_eq!(run("", b"uninit 64\n"), "uninit 64: 7\n");
    // ...zeroes with zero_fill, and glibc's perturb byte (165 ^ 0xff) with perturb.
    assert_eq!(
        run(
            "processes.fxhelper.env={malloc: {zero_fill: true}}",
            b"uninit 64\n"
        ),
        "uninit 64: 0\n"
    );
    assert_eq!(
        run(
            "processes.fxhelper.env={malloc: {perturb: 165}}",
            b"uninit 64\n"
        ),
        "uninit 64: 90\n"
    );
    // An address-space limit makes a 4 GiB allocation fail in the helper only.
    assert_eq!(run("", b"leak 4294967296\n"), "leak 4294967296: ok\n");
    assert_eq!(
        run(
            "processes.fxhelper.env={rlimits: {as: 2GiB}}",
            b"leak 4294967296\n"
        ),
        "leak 4294967296: null\n"
    );
    assert_eq!(
        ok(run_with(
            plain(&fixture("fx_heap"), &[]),
            b"uninit 64\nleak 4294967296\n",
            WATCHDOG
        )),
        "uninit 64: 7\nleak 4294967296: ok\n"
    );
}
