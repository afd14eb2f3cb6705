//! Callbacks (SPEC.md "Callbacks"): function pointers the program passes run in the program,
//! during the call or later, nested, across a restart; a helper cannot make the program call
//! anything it did not pass.

use crate::util::*;
use std::path::Path;

#[test]
fn every_callback_case_prints_what_the_plain_program_prints() {
    let dir = TempDir::new("cb-all");
    let st = dir.path("stats.json");
    Twin::new(&config("fx-cb.yaml"), &fixture("fx_cb_prog"), &["all"])
        .stats(&st)
        .same_as_plain();
    let s = stats(&st);
    // The library ran in the helper and the program served its callbacks.
    assert_eq!(calls(&s, "cbhelper", "fxcb_fire"), 5);
    assert_eq!(calls(&s, "cbhelper", "callback fxcb.map#0"), 5);
    assert_eq!(calls(&s, "cbhelper", "callback fxcb.visit#0"), 4);
    // The same hook passed twice is one slot, fired four times.
    assert_eq!(calls(&s, "cbhelper", "callback fxcb.hook#0"), 4);
    assert_eq!(calls(&s, "cbhelper", "callback fxcb.hook#1"), 0);
}

#[test]
fn a_late_callback_fails_the_helper_cleanly_and_the_replay_does_not_rerun_the_programs_hook() {
    let o = under(
        &config("fx-cb.yaml"),
        &[],
        &fixture("fx_cb_prog"),
        &["late"],
    )
    .output()
    .unwrap();
    let out = stdout(&o);
    let err = stderr(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        err.contains("callback `hook` of module `fxcb` was called in process 'cbhelper' while no call from the program is in flight"),
        "{err}"
    );
    // The restarted helper has its hook (the registration was replayed) and its count (the
    // first fire was replayed, answered from the record: the program's hook ran once).
    assert_eq!(
        out,
        "hook: fired #1 v=1 (program calls so far 1)\nfire 1 -> 2\nhook: fired #2 v=2 (program calls so far 2)\nfire 2 -> 4\nprogram callbacks ran: 2\n",
        "{err}"
    );
}

#[test]
fn a_helper_calling_pointers_it_was_not_given_gets_refused_and_the_program_runs_nothing() {
    let o = under(
        &config("fx-cb.yaml"),
        &[],
        &fixture("fx_cb_prog"),
        &["forge"],
    )
    .output()
    .unwrap();
    let out = stdout(&o);
    let err = stderr(&o);
    assert!(o.status.success(), "{out}\n{err}");
    // Slots never bound, of its own type and of others: refused, the forger's call fails.
    for step in [1, 2, 31, 32, 64] {
        assert!(out.contains(&format!("forge {step} -> 0\n")), "{out}");
    }
    assert!(
        err.contains("the program never passed that function to it"),
        "{err}"
    );
    assert!(!out.contains("hook: forged"), "{out}");
    // One step back is `other`, which the program did pass as a hook: calling it with the
    // hook's type is what the contract allows.
    assert!(out.contains("OTHER CALLED: forged 7\n"), "{out}");
    assert!(out.ends_with("program callbacks ran: 0\n"), "{out}");
}

#[test]
fn a_map_naming_an_unknown_callback_type_is_refused_with_file_line_and_key() {
    let dir = TempDir::new("cb-bad");
    let map = dir.write(
        "bad.yaml",
        "modules:\n  m:\n    object: libfx_cb.so\n    callbacks:\n      hook: {args: [str, val], ret: void}\n    functions:\n      fxcb_set_hook: {args: [\"cb:hoook\"]}\nprocesses:\n  p: {modules: [m]}\n",
    );
    let o = under(&map, &[], &fixture("fx_cb_prog"), &["all"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("bad.yaml:7"), "{err}");
    assert!(
        err.contains("modules.m.functions.fxcb_set_hook.args[0]"),
        "{err}"
    );
    assert!(err.contains("unknown callback type `hoook`"), "{err}");
    assert!(err.contains("the module declares: hook"), "{err}");
    let bad_cb = dir.write(
        "bad2.yaml",
        "modules:\n  m:\n    object: libfx_cb.so\n    callbacks:\n      hook: {args: [handle]}\n    functions:\n      fxcb_set_hook: {args: [\"cb:hook\"]}\n",
    );
    let o = std::process::Command::new(fracture())
        .args(["check", "-c"])
        .arg(&bad_cb)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("bad2.yaml:5"), "{err}");
    assert!(
        err.contains("a callback's argument cannot be `handle`"),
        "{err}"
    );
}

/// Debian's python3 (libexpat linked in), parsing a real XML file of ~1 MB with handlers for
/// every element and text run while libexpat runs in a helper.
#[test]
fn python_pyexpat_handlers_run_in_the_program_while_libexpat_runs_in_a_helper() {
    let xml = "/usr/share/xml/iso-codes/iso_639-3.xml";
    if !Path::new(xml).exists() || !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipped: no {xml} or /usr/bin/python3");
        return;
    }
    let dir = TempDir::new("cb-expat");
    let st = dir.path("stats.json");
    let script = root().join("tests/data/expat_walk.py");
    let script = script.to_string_lossy().into_owned();
    let o = Twin::new(
        &config("python-expat.yaml"),
        Path::new("/usr/bin/python3"),
        &[&script, xml],
    )
    .stats(&st)
    .same_as_plain();
    assert!(stdout(&o).contains("elements 7911 7911"), "{}", stdout(&o));
    let s = stats(&st);
    assert_eq!(calls(&s, "xmlhelper", "XML_Parse"), 2);
    assert_eq!(calls(&s, "xmlhelper", "callback expat.start#0"), 7911);
    assert_eq!(calls(&s, "xmlhelper", "callback expat.end#0"), 7911);
    assert!(calls(&s, "xmlhelper", "callback expat.text#0") > 10_000);
}

/// A C program on the system's libsqlite3: its scalar and aggregate SQL functions, its
/// collation and its sqlite3_exec row callback run in the program while sqlite runs in a helper.
#[test]
fn sqlite_functions_collation_and_exec_rows_are_the_programs_own_while_sqlite_is_isolated() {
    let dir = TempDir::new("cb-sqlite");
    let st = dir.path("stats.json");
    let o = Twin::new(&config("sqlite-cb.yaml"), &fixture("fx_sql_prog"), &[])
        .stats(&st)
        .same_as_plain();
    assert!(
        stdout(&o).contains("rows 24, function calls 41"),
        "{}",
        stdout(&o)
    );
    let s = stats(&st);
    assert_eq!(calls(&s, "sqlhelper", "sqlite3_exec"), 7);
    assert_eq!(calls(&s, "sqlhelper", "callback sql.row#0"), 24);
    assert_eq!(calls(&s, "sqlhelper", "callback sql.final#0"), 3);
    assert!(calls(&s, "sqlhelper", "callback sql.collate#0") > 0);
    // The SQL functions' own calls back into sqlite were nested calls into the helper.
    assert_eq!(calls(&s, "sqlhelper", "sqlite3_result_text"), 20);
}

#[test]
fn replicated_callbacks_run_once_in_the_program() {
    // Replica 0's callbacks run in the program, the others are answered from the record:
    // the program's own counters show every callback ran once.
    Twin::new(&config("fx-cb.yaml"), &fixture("fx_cb_prog"), &["all"])
        .set("processes.cbhelper.replicate={count: 3, on_mismatch: majority}")
        .same_as_plain();
}

#[test]
fn a_checkpointed_helper_keeps_its_callbacks_across_a_restart() {
    let o = under(
        &config("fx-cb.yaml"),
        &["--set", "processes.cbhelper.on_crash.restore=checkpoint"],
        &fixture("fx_cb_prog"),
        &["late"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "hook: fired #1 v=1 (program calls so far 1)\nfire 1 -> 2\nhook: fired #2 v=2 (program calls so far 2)\nfire 2 -> 4\nprogram callbacks ran: 2\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_replica_whose_callbacks_differ_is_a_mismatch_and_is_outvoted() {
    // The third replica loads a build of libfx_cb whose fxcb_fire returns the same value but
    // tells the hook another message: only its callbacks differ.
    let dir = TempDir::new("cb-nversion");
    let st = dir.path("stats.json");
    let v2 = root().join("target/fixtures/v2");
    let set = format!(
        "processes.cbhelper.replicate={{count: 3, on_mismatch: majority, envs: [{{}}, {{}}, {{library_path: {}}}]}}",
        v2.display()
    );
    let o = Twin::new(&config("fx-cb.yaml"), &fixture("fx_cb_prog"), &["all"])
        .set(&set)
        .stats(&st)
        .fracture_speaks()
        .same_as_plain();
    let err = stderr(&o);
    assert!(
        err.contains("mismatch in fxcb_fire(1): replicas [0, 1] answered 2"),
        "{err}"
    );
    assert!(!err.contains("mismatch in fxcb_each"), "{err}");
    let s = stats(&st);
    let reps = s["processes"]["cbhelper"]["replicas"].as_array().unwrap();
    assert_eq!(reps[2]["mismatches"], 4, "{s}");
    assert_eq!(reps[0]["mismatches"], 0, "{s}");
    assert_eq!(reps[1]["mismatches"], 0, "{s}");
}

#[test]
fn past_32_distinct_functions_of_one_callback_type_the_call_fails_and_the_helper_stays() {
    let o = under(
        &config("fx-cb.yaml"),
        &[
            "--set",
            "processes.cbhelper.on_crash.give_up={return: -1, errno: E2BIG}",
        ],
        &fixture("fx_cb_prog"),
        &["many"],
    )
    .output()
    .unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    // 32 hooks bound and fired; the 33rd and 34th cannot be passed: the helper keeps the last
    // hook it got (no restart: the bound is the program's, not the helper's doing).
    assert!(out.contains("h31 fired 31\n"), "{out}");
    assert!(out.contains("h31 fired 32\nfire 32 -> 64\n"), "{out}");
    assert!(out.contains("h31 fired 33\nfire 33 -> 66\n"), "{out}");
    // A function passed before keeps its slot.
    assert!(out.ends_with("h0 fired 100\nfire again -> 200\n"), "{out}");
    assert!(
        err.contains("more than 32 distinct functions were passed as callback `hook`"),
        "{err}"
    );
    assert!(!err.contains("restart"), "{err}");
}

/// A map written from SPEC.md alone that lists only the obvious expat functions: `check` names
/// the ones the program also calls (they would run in the program on the helper's parser), and
/// sees the handler setters pyexpat reaches through a table of function pointers as imports.
#[test]
fn check_names_the_functions_of_an_isolated_object_that_the_map_leaves_in_the_program() {
    if !Path::new("/usr/bin/python3.11").exists() {
        eprintln!("skipped: no /usr/bin/python3.11");
        return;
    }
    let dir = TempDir::new("cb-check");
    let map = dir.write(
        "xml.yaml",
        "modules:\n  expat:\n    object: libexpat.so.1\n    callbacks:\n      start: {args: [val, str, strv], ret: void}\n    functions:\n      XML_ParserCreate_MM: {args: [str, val, str]}\n      XML_SetStartElementHandler: {args: [val, \"cb:start\"], ret: void}\n      XML_Parse: {args: [val, \"in:arg2\", val, val]}\nprocesses:\n  xml:\n    modules: [expat]\n",
    );
    let o = std::process::Command::new(fracture())
        .args(["check", "-c"])
        .arg(&map)
        .args(["--", "/usr/bin/python3.11"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("expat: the program also calls") && err.contains("XML_GetBase"),
        "{err}"
    );
    assert!(
        !err.contains("imports `XML_SetStartElementHandler`"),
        "the setter is imported through a data word: {err}"
    );
}
