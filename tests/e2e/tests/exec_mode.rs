//! Exec-mode helpers (issue 4, first step): an environment with `wrapper`, `preload` or
//! `library_path` runs the helper as a fresh execution of the program in which the shim serves
//! requests in place of `main`.

use crate::util::*;

#[test]
fn an_exec_mode_helper_answers_like_a_fork_mode_one() {
    let p = fixture("fx_demo");
    let fork_mode = ok(run_with(
        under(&config("fx.yaml"), &[], &p, &["--where"]),
        b"",
        WATCHDOG,
    ));
    for env in [
        "processes.fxhelper.env={wrapper: [env]}",
        "processes.fxhelper.env={library_path: /nonexistent, vars: {FX_SAFE: \"1\"}}",
    ] {
        let (k, mark) = marker("exec");
        let mut cmd = under(&config("fx.yaml"), &["--set", env], &p, &["--where"]);
        cmd.env(&k, &mark);
        let o = ok(run_with(cmd, b"", WATCHDOG));
        assert_eq!(o, fork_mode, "{env}");
        assert!(o.ends_with("where: helper\n"));
        assert!(leftovers(&mark).is_empty(), "{env}: {:?}", leftovers(&mark));
    }
}

#[test]
fn an_exec_mode_helper_has_its_vars_from_the_start() {
    // libfx notes FX_AT_LOAD in a constructor. A forked helper inherits the program's
    // constructors (run before `vars` were set); an exec-mode helper loads libfx anew with them.
    let p = fixture("fx_demo");
    let arg = ["--env-at-load"];
    let plain_out = ok(run_with(plain(&p, &arg), b"", WATCHDOG));
    assert_eq!(plain_out, "env at load: 0\n");
    let fork_mode = "processes.fxhelper.env={vars: {FX_AT_LOAD: \"1\"}}";
    let o = ok(run_with(
        under(&config("fx.yaml"), &["--set", fork_mode], &p, &arg),
        b"",
        WATCHDOG,
    ));
    assert_eq!(
        o, "env at load: 0\n",
        "fork mode: the constructor ran in the program"
    );
    let exec_mode = "processes.fxhelper.env={preload: [], library_path: /nonexistent, vars: {FX_AT_LOAD: \"1\"}}";
    let o = ok(run_with(
        under(&config("fx.yaml"), &["--set", exec_mode], &p, &arg),
        b"",
        WATCHDOG,
    ));
    assert_eq!(o, "env at load: 1\n", "exec mode: vars from the start");
}

#[test]
fn valgrind_on_the_isolated_slice_only() {
    // The helper runs under valgrind; the program does not. Valgrind names the leak and the
    // heap overflow of the isolated functions; the program's output is unchanged.
    let t = TempDir::new("vg");
    let st = t.path("s.json");
    let o = Twin::new(&config("fx.yaml"), &fixture("fx_heap"), &[])
        .stdin(b"leak 1000\noverflow 24\n")
        .stats(&st)
        .set("processes.fxhelper.env={wrapper: [valgrind, --leak-check=full, -q]}")
        .fracture_speaks()
        .same_as_plain();
    let e = stderr(&o);
    assert!(
        e.contains("Invalid write") && e.contains("fx_overflow"),
        "{e}"
    );
    assert!(
        e.contains("definitely lost") && e.contains("fx_leak"),
        "{e}"
    );
    // Every valgrind line comes from the helper's pid, not the program's.
    let s = stats(&st);
    let helper = s["processes"]["fxhelper"]["pid"].as_i64().unwrap();
    let tag = format!("=={helper}==");
    assert!(
        e.lines()
            .filter(|l| l.starts_with("=="))
            .all(|l| l.starts_with(&tag)),
        "{e}"
    );
    assert_ne!(s["pid"].as_i64().unwrap(), helper);
}
