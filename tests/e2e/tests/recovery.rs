//! Helpers that crash, exit, hang: restart, retry (Rx environments), give up as configured.

use fracture_e2e::*;
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
