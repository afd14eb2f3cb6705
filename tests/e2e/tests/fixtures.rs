//! The C fixtures: every spec kind, nested calls, threads, dlopen/dlsym, crashes.

use crate::util::*;

/// `prog` under `map` prints what it prints plain; returns its stdout.
fn fixture_same_as_plain(map: &str, prog: &str, args: &[&str]) -> String {
    stdout(&same_as_plain(&config(map), &fixture(prog), args, b""))
}

#[test]
fn every_spec_kind_returns_what_the_program_would_have_seen() {
    let out = fixture_same_as_plain("fx.yaml", "fx_demo", &[]);
    assert!(out.lines().count() > 15, "{out}");
}

#[test]
fn fx_demo_runs_its_library_in_the_helper() {
    let o = ok(run_with(
        under(&config("fx.yaml"), &[], &fixture("fx_demo"), &["--where"]),
        b"",
        WATCHDOG,
    ));
    assert!(o.ends_with("where: helper\n"), "{o}");
    let o = ok(run_with(
        plain(&fixture("fx_demo"), &["--where"]),
        b"",
        WATCHDOG,
    ));
    assert!(o.ends_with("where: program\n"), "{o}");
}

#[test]
fn glob_dat_calls_of_a_no_plt_build_are_routed() {
    fixture_same_as_plain("fx.yaml", "fx_demo_noplt", &[]);
    let o = ok(run_with(
        under(
            &config("fx.yaml"),
            &[],
            &fixture("fx_demo_noplt"),
            &["--where"],
        ),
        b"",
        WATCHDOG,
    ));
    assert!(o.ends_with("where: helper\n"), "{o}");
}

#[test]
fn stats_count_calls_bytes_and_latency() {
    let t = TempDir::new("fxstats");
    let st = t.path("s.json");
    ok(run_with(
        under(
            &config("fx.yaml"),
            &["--stats", st.to_str().unwrap()],
            &fixture("fx_demo"),
            &[],
        ),
        b"",
        WATCHDOG,
    ));
    let s = stats(&st);
    let f = &s["processes"]["fxhelper"]["functions"];
    assert!(f["fx_add"]["calls"].as_u64().unwrap() >= 1);
    assert!(f["fx_checksum"]["bytes_in"].as_u64().unwrap() > 0);
    assert!(f["fx_fill"]["bytes_out"].as_u64().unwrap() > 0);
    assert!(f["fx_add"]["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        f["fx_add"]["latency_us"]["p99"].as_f64().unwrap()
            >= f["fx_add"]["latency_us"]["p50"].as_f64().unwrap()
    );
}

#[test]
fn a_map_that_isolates_nothing_starts_no_process() {
    let o = Twin::new(&config("fx-none.yaml"), &fixture("fx_demo"), &["--where"])
        .preloaded()
        .same_as_plain();
    assert!(stdout(&o).ends_with("where: program\n"));
}

#[test]
fn nested_calls_run_where_their_module_lives() {
    let p = fixture("fx_nest_prog");
    let plain_o = ok(run_with(plain(&p, &[]), b"", WATCHDOG));
    let o = stdout(
        &Twin::new(&config("nest.yaml"), &p, &[])
            .ignoring_lines(|l| l.starts_with("nest_in_helper"))
            .same_as_plain(),
    );
    assert!(o.contains("outer: 41"), "{o}");
    assert!(
        o.contains("count: 2") && o.contains("host_count: 3"),
        "state stayed in one place: {o}"
    );
    assert!(plain_o.contains("nest_in_helper: no"));
    // A module -> program -> same module chain (nest_deep -> host_back -> nest_leaf): the
    // outer call took the answer of the innermost one for its own (a stale sequence number
    // after the nested exchange), so nest_deep returned host_back's value.
    assert!(o.contains("deep: 1042\ndeep: 1053\nleaves: 2\n"), "{o}");
}

#[test]
fn nested_module_really_is_in_the_helper() {
    let o = ok(run_with(
        under(&config("nest.yaml"), &[], &fixture("fx_nest_prog"), &[]),
        b"",
        WATCHDOG,
    ));
    assert!(o.contains("nest_in_helper: yes"), "{o}");
    assert!(o.contains("host_in_program: yes"), "{o}");
}

#[test]
fn many_threads_call_the_helper_at_once() {
    let (k, mark) = marker("threads");
    let mut cmd = under(
        &config("fx.yaml"),
        &[],
        &fixture("fx_threads"),
        &["8", "3000"],
    );
    cmd.env(&k, &mark);
    let o = ok(run_with(cmd, b"", WATCHDOG));
    assert!(o.contains("errors: 0"), "{o}");
    assert!(leftovers(&mark).is_empty());
}

#[test]
fn dlopen_and_dlsym_are_routed() {
    let o = stdout(
        &Twin::new(&config("plugin.yaml"), &fixture("fx_dlopen_prog"), &[])
            .ignoring_lines(|l| l.contains("where"))
            .same_as_plain(),
    );
    assert!(
        o.contains("plugin_where: helper"),
        "a dlopen'd object's calls are routed: {o}"
    );
    assert!(
        o.contains("dlsym_where: helper"),
        "dlsym answers with the routed entry: {o}"
    );
}

#[test]
fn a_helper_crash_ends_the_program_like_the_crash_would() {
    let (k, mark) = marker("crash");
    let mut cmd = under(&config("fx.yaml"), &[], &fixture("fx_crashy"), &[]);
    cmd.env(&k, &mark);
    let o = run_with(cmd, b"hello\nsegv\nafter\n", WATCHDOG);
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    assert!(stdout(&o).contains("hello: 5"));
    let err = stderr(&o);
    assert!(
        err.contains("fxhelper") && err.contains("fx_crash_on") && err.contains("SIGSEGV"),
        "{err}"
    );
    assert!(leftovers(&mark).is_empty());
}

#[test]
fn a_helper_that_exits_is_reported_with_its_status() {
    let o = run_with(
        under(&config("fx.yaml"), &[], &fixture("fx_crashy"), &[]),
        b"exit\n",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("exit status 3"), "{}", stderr(&o));
}

#[test]
fn an_abort_in_the_helper_is_reported_with_sigabrt() {
    let o = run_with(
        preloaded(&config("fx.yaml"), &fixture("fx_crashy"), &[]),
        b"abort\n",
        WATCHDOG,
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGABRT),
        "{:?} {}",
        o.status,
        stderr(&o)
    );
    assert!(stderr(&o).contains("SIGABRT"));
}

#[test]
fn a_helper_that_writes_garbage_into_the_queue_fails_its_own_call_only() {
    // libfx_evil scribbles over the shared queue from inside the helper and declares out:8
    // for a function that writes 24 bytes: the program survives, sees -1 for the attacked
    // call, gets a fresh helper, and its buffer changes only within the declared 8 bytes.
    let (k, mark) = marker("evil");
    let mut cmd = under(&config("evil.yaml"), &[], &fixture("fx_evil_prog"), &[]);
    cmd.env(&k, &mark);
    let o = ok(run_with(cmd, b"", WATCHDOG));
    assert!(
        o.contains("overwrite: 24 EEEEEEEE........................\n"),
        "{o}"
    );
    assert!(o.contains("add: 5\n"));
    assert!(o.contains("long_string: 65535\n"));
    assert!(o.contains("scribble: -1\n"), "{o}");
    assert!(o.contains("add_after: 42\n"), "a fresh helper answers: {o}");
    assert!(leftovers(&mark).is_empty());
}

/// Calls of `func` the flat path answered.
fn flat_calls(s: &serde_json::Value, proc_: &str, func: &str) -> u64 {
    fn_stat(s, proc_, func, "flat_calls")
}

#[test]
fn flat_calls_keep_errno_slow_answers_and_nested_calls_as_the_general_path_does() {
    // Calls of registers only take the flat path; whatever else their answer is goes on in
    // the general wait (a nested call back into the program, an answer later than the spin).
    let dir = TempDir::new("flat");
    let st = dir.path("stats.json");
    let o = Twin::new(
        &config("fx-flat.yaml"),
        &fixture("fx_flat_prog"),
        &["nocrash"],
    )
    .stats(&st)
    .same_as_plain();
    assert!(stdout(&o).contains("errno: -1 ERANGE"), "{}", stdout(&o));
    let s = stats(&st);
    assert_eq!(calls(&s, "fxhelper", "fx_add"), 46000);
    // Short calls are answered by the flat path: 44000 of them on a quiet machine, fewer
    // when a loaded one deschedules the helper for longer than the spin (not a timing test:
    // a tenth shows the path is taken).
    assert!(flat_calls(&s, "fxhelper", "fx_add") > 4600, "{s}");
    assert_eq!(calls(&s, "fxhelper", "fx_set_errno"), 1);
    // 300 us answers outlast the spin: the general wait takes them (unless a loaded machine
    // preempted the spinning caller past the answer: then it was there when the spin looked
    // again, so the count of those is not checked).
    assert_eq!(calls(&s, "fxhelper", "fx_sleep_us"), 20);
    // Every nest_outer call asks the program for host_twice before it answers.
    assert_eq!(calls(&s, "nester", "nest_outer"), 2000);
    assert_eq!(flat_calls(&s, "nester", "nest_outer"), 0, "{s}");
}

#[test]
fn a_helper_that_crashes_in_a_flat_call_is_restarted_and_the_call_given_up_as_configured() {
    // fx_segv_at crashes on input 15000 (a null write), after 15000 flat calls: the restart
    // and retry (which crashes again), the give-up value -1, and the calls after it all work.
    let o = run_with(
        under(&config("fx-flat.yaml"), &[], &fixture("fx_flat_prog"), &[]),
        b"",
        WATCHDOG,
    );
    let out = ok(o.clone());
    let want = ok(run_with(
        plain(&fixture("fx_flat_prog"), &["nocrash"]),
        b"",
        WATCHDOG,
    ));
    // The parts before the crash print what the plain run prints.
    assert!(out.starts_with(&want), "{out}\n---\n{want}");
    // 2 * (0 + ... + 19999) without 2 * 15000; one call given up; fx_add works after it.
    assert!(out.ends_with("crash: 399950000 1 after: 42\n"), "{out}");
    let e = stderr(&o);
    assert!(e.contains("fx_segv_at") && e.contains("SIGSEGV"), "{e}");
}
