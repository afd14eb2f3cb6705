//! `fracture symbols` and `fracture check` on the fixtures and real objects. Golden files
//! live in tests/e2e/golden; regenerate with FRACTURE_BLESS=1.

use crate::util::*;
use std::process::Command;

fn fracture_cmd(args: &[&str]) -> std::process::Output {
    let mut c = Command::new(fracture());
    c.args(args);
    run_with(c, b"", WATCHDOG)
}

fn golden(name: &str, got: &str) {
    let p = root().join("tests/e2e/golden").join(name);
    if std::env::var_os("FRACTURE_BLESS").is_some() {
        std::fs::write(&p, got).unwrap();
    }
    let want = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (FRACTURE_BLESS=1 writes it)", p.display()));
    assert_eq!(got, want, "{name} differs from its golden file");
}

#[test]
fn symbols_of_the_fixture_libraries_match_their_golden_files() {
    for lib in [
        "libfx.so",
        "libfx_nest.so",
        "libfx_host.so",
        "libfx_plugin.so",
    ] {
        let o = ok(fracture_cmd(&["symbols", fixture(lib).to_str().unwrap()]));
        golden(&format!("{lib}.exports"), &o);
        let o = ok(fracture_cmd(&[
            "symbols",
            "--imports",
            fixture(lib).to_str().unwrap(),
        ]));
        assert!(
            lib != "libfx_plugin.so" || o.lines().any(|l| l == "fx_add"),
            "{o}"
        );
    }
}

#[test]
fn symbols_of_real_objects() {
    let o = ok(fracture_cmd(&["symbols", "libmagic.so.1"]));
    assert!(o.lines().any(|l| l == "magic_file") && o.lines().any(|l| l == "magic_open"));
    let o = ok(fracture_cmd(&["symbols", "--imports", "/usr/bin/file"]));
    assert!(o.lines().any(|l| l == "magic_file"));
    let o = fracture_cmd(&["symbols", "/no/such/object.so"]);
    assert!(!o.status.success() && stderr(&o).contains("/no/such/object.so"));
}

#[test]
fn check_against_a_program_reports_every_problem() {
    let t = TempDir::new("check");
    let map = t.write(
        "m.yaml",
        "modules:\n  magic:\n    object: libmagic.so.1\n    functions:\n      magic_fil: {args: [handle, str], ret: str}\n      magic_opn: {ret: handle}\nprocesses:\n  p:\n    modules: [magic]\n",
    );
    let o = fracture_cmd(&["check", "-c", map.to_str().unwrap(), "--", "file"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("m.yaml:5") && e.contains("closest: magic_file"),
        "{e}"
    );
    assert!(
        e.contains("m.yaml:6") && e.contains("closest: magic_open"),
        "{e}"
    );
    let o = fracture_cmd(&[
        "check",
        "-c",
        config("fx.yaml").to_str().unwrap(),
        "--",
        fixture("fx_demo").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 1 modules, 31 functions, 1 processes"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_warns_about_resources_a_module_shares_with_the_program() {
    let o = fracture_cmd(&[
        "check",
        "-c",
        config("file-magic.yaml").to_str().unwrap(),
        "--",
        "file",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("magic: libmagic.so.1 uses") && stderr(&o).contains("fopen"),
        "{}",
        stderr(&o)
    );
}
