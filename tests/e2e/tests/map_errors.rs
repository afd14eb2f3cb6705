//! A broken map is refused with a message naming the file, line and key, and the program is
//! never started.

use crate::util::*;
use std::path::Path;

fn refused(map_text: &str, expect: &[&str]) {
    let t = TempDir::new("maperr");
    let map = t.write("broken.yaml", map_text);
    let marker = t.path("started");
    let o = run_with(
        under(
            &map,
            &[],
            Path::new("/usr/bin/touch"),
            &[marker.to_str().unwrap()],
        ),
        b"",
        WATCHDOG,
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "accepted: {err}");
    assert!(!marker.exists(), "the program was started");
    assert!(err.contains("broken.yaml"), "no file named: {err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` not in: {err}");
    }
}

#[test]
fn bad_yaml_is_refused_with_its_line() {
    refused(
        "modules:\n  m:\n    object: libc.so.6\n    functions: {a: [\n",
        &["broken.yaml:"],
    );
}

#[test]
fn unknown_key_is_refused_with_line_and_key() {
    refused(
        "modules:\n  m:\n    object: libc.so.6\n    functions:\n      strlen: {args: [str], rett: val}\n",
        &["broken.yaml:5", "rett"],
    );
}

#[test]
fn bad_spec_is_refused_with_line_and_key() {
    refused(
        "modules:\n  m:\n    object: libc.so.6\n    functions:\n      strlen: {args: [strr]}\n",
        &[
            "broken.yaml:5",
            "modules.m.functions.strlen.args[0]",
            "strr",
        ],
    );
}

#[test]
fn unknown_module_in_a_process_is_refused() {
    refused(
        "modules: {}\nprocesses:\n  p:\n    modules: [nope]\n",
        &["broken.yaml:4", "nope"],
    );
}

#[test]
fn function_the_object_does_not_export_is_refused() {
    let t = TempDir::new("nosym");
    let map = t.write(
        "broken.yaml",
        "modules:\n  magic:\n    object: libmagic.so.1\n    functions:\n      magic_open: {ret: handle}\n      magic_fil: {args: [handle, str], ret: str}\nprocesses:\n  parser:\n    modules: [magic]\n",
    );
    // Launcher: refused before the program starts.
    let o = run_with(
        under(&map, &[], Path::new("/usr/bin/file"), &["/etc/passwd"]),
        b"",
        WATCHDOG,
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty(), "the program ran: {}", stdout(&o));
    assert!(
        err.contains("broken.yaml:6") && err.contains("magic_fil"),
        "{err}"
    );
    // Preload: the shim exits with 127 before main.
    let o = run_with(
        preloaded(&map, Path::new("/usr/bin/file"), &["/etc/passwd"]),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("broken.yaml:6"), "{}", stderr(&o));
}

#[test]
fn broken_map_under_preload_exits_127_before_main() {
    let t = TempDir::new("preload127");
    let map = t.write("broken.yaml", "modules:\n  m:\n    objec: libc.so.6\n");
    let marker = t.path("started");
    let o = run_with(
        preloaded(
            &map,
            Path::new("/usr/bin/touch"),
            &[marker.to_str().unwrap()],
        ),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(127));
    assert!(!marker.exists());
    assert!(stderr(&o).contains("broken.yaml:3"), "{}", stderr(&o));
}

#[test]
fn check_accepts_the_shipped_maps() {
    for m in ["file-magic.yaml", "python-zlib.yaml"] {
        let o = run_with(
            {
                let mut c = std::process::Command::new(fracture());
                c.arg("check").arg("-c").arg(config(m));
                c
            },
            b"",
            WATCHDOG,
        );
        assert!(o.status.success(), "{m}: {}", stderr(&o));
    }
}
