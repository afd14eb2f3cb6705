//! `memory: on-demand` (SPEC.md "Memory") and `--isolate` with no map: the module reaches the
//! program's memory through pointers nobody described, real programs print what they print
//! plain, and the calls are counted in the helper.

use crate::util::*;
use std::path::Path;

#[test]
fn a_module_follows_unspecified_pointers_into_the_programs_stack_heap_mappings_and_globals() {
    let t = TempDir::new("od");
    let st = t.path("stats.json");
    let out = Twin::new(&config("fx-od.yaml"), &fixture("fx_od_prog"), &[])
        .stats(&st)
        .same_as_plain();
    // The walk doubled every value (written back), the stream kept its state in the module
    // between calls, the program's own function ran, the returned string was read.
    assert!(
        stdout(&out).contains("values now 12 80 400 28"),
        "{}",
        stdout(&out)
    );
    let s = stats(&st);
    assert_eq!(calls(&s, "odhelper", "od_walk"), 2);
    assert_eq!(calls(&s, "odhelper", "od_step"), 7);
    assert_eq!(calls(&s, "odhelper", "od_name"), 2);
}

#[test]
fn a_crashed_on_demand_call_writes_nothing_back() {
    // od_write_then_crash stores 42 through its pointer, then faults: the program's variable
    // keeps 5, and give_up answers -1.
    let o = under(
        &config("fx-od.yaml"),
        &[],
        &fixture("fx_od_prog"),
        &["crash"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "crash: r=-1 v=5\n");
    assert!(stderr(&o).contains("SIGSEGV"), "{}", stderr(&o));
}

#[test]
fn xz_compresses_and_decompresses_with_liblzma_isolated_and_no_map() {
    let t = TempDir::new("xz");
    // A real file of a few MB: the xz executable and libraries, concatenated.
    let mut data = std::fs::read("/usr/bin/xz").unwrap();
    for lib in [
        "/lib/x86_64-linux-gnu/liblzma.so.5",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ] {
        data.extend(std::fs::read(lib).unwrap_or_default());
    }
    let input = t.path("input");
    std::fs::write(&input, &data).unwrap();
    let st = t.path("stats.json");
    let packed = Twin::isolating(
        "liblzma.so.5",
        Path::new("xz"),
        &["-6", "-c", input.to_str().unwrap()],
    )
    .stats(&st)
    .same_as_plain();
    assert!(calls(&stats(&st), "isolated", "lzma_code") > 10);
    let xzfile = t.path("input.xz");
    std::fs::write(&xzfile, &packed.stdout).unwrap();
    let unpacked = Twin::isolating(
        "liblzma.so.5",
        Path::new("xz"),
        &["-d", "-c", xzfile.to_str().unwrap()],
    )
    .same_as_plain();
    assert_eq!(unpacked.stdout, data);
}

#[test]
fn python_streams_through_zlib_bz2_and_lzma_on_demand_with_nothing_specified() {
    let t = TempDir::new("pystreams");
    let st = t.path("stats.json");
    let script = root().join("tests/data/streams.py");
    // The python3 on PATH (a launcher script that execs the interpreter, which dlopens the
    // three extension modules and, through them, the libraries).
    Twin::isolating(
        "libz.so.1,libbz2.so.1.0,liblzma.so.5",
        Path::new("python3"),
        &[script.to_str().unwrap(), "200000"],
    )
    .stats(&st)
    .same_as_plain();
    let s = stats(&st);
    for f in [
        "deflate",
        "inflate",
        "BZ2_bzCompress",
        "BZ2_bzDecompress",
        "lzma_code",
    ] {
        assert!(calls(&s, "isolated", f) > 0, "{f} ran in the helper");
    }
}

#[test]
fn a_script_with_isolate_libm_routes_what_its_interpreter_binds() {
    // A script as PROGRAM: what it will import cannot be read from its files, so the map
    // holds every function libm exports. That is more than the 1024 stubs there were, and its
    // hidden compat versions (`__acos_finite@GLIBC_2.15`) were listed and refused as "not
    // exported": both made `fracture run` exit 127.
    let t = TempDir::new("script-libm");
    let st = t.path("stats.json");
    let script = root().join("tests/data/math_walk.py");
    Twin::isolating("libm.so.6", &script, &["20000"])
        .stats(&st)
        .same_as_plain();
    let s = stats(&st);
    for f in ["cos", "sin", "pow", "atan2"] {
        assert!(calls(&s, "isolated", f) >= 20000, "{f} ran in the helper");
    }
}

#[test]
fn file_with_isolate_libmagic_prints_what_plain_file_prints() {
    let t = TempDir::new("file-isolate");
    let files = real_files(300);
    let list = t.write("files", &(files.join("\n") + "\n"));
    let st = t.path("stats.json");
    Twin::isolating(
        "libmagic.so.1",
        Path::new("file"),
        &["-f", list.to_str().unwrap()],
    )
    .stats(&st)
    .same_as_plain();
    assert_eq!(
        calls(&stats(&st), "isolated", "magic_file"),
        files.len() as u64
    );
}

#[test]
fn the_sqlite3_shell_runs_a_script_with_libsqlite3_isolated() {
    let t = TempDir::new("sqlite-isolate");
    let st = t.path("stats.json");
    let script = std::fs::read(root().join("tests/data/shell.sql")).unwrap();
    Twin::isolating("libsqlite3.so.0", Path::new("sqlite3"), &[":memory:"])
        .stdin(&script)
        .stats(&st)
        .same_as_plain();
    let s = stats(&st);
    assert!(calls(&s, "isolated", "sqlite3_step") > 20);
    assert!(calls(&s, "isolated", "sqlite3_column_text") > 20);
}

#[test]
fn init_writes_the_map_that_run_isolate_uses() {
    let t = TempDir::new("init");
    let map = t.path("map.yaml");
    let o = std::process::Command::new(fracture())
        .args(["init", "--isolate", "liblzma.so.5", "-o"])
        .arg(&map)
        .args(["--", "xz"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&map).unwrap();
    assert!(text.contains("memory: on-demand"), "{text}");
    assert!(text.contains("      lzma_code: {}"), "{text}");
    // The map is a map: check accepts it against the program, and a run with it works.
    let c = std::process::Command::new(fracture())
        .arg("check")
        .arg("-c")
        .arg(&map)
        .args(["--", "/usr/bin/xz"])
        .output()
        .unwrap();
    assert!(c.status.success(), "{}{}", stdout(&c), stderr(&c));
    Twin::new(&map, Path::new("xz"), &["--version"]).same_as_plain();
}

#[test]
fn on_demand_memory_with_replay_or_replicas_is_refused_naming_the_key() {
    let t = TempDir::new("od-refused");
    for (extra, key) in [
        (
            "    on_crash: {restart: true, restore: replay}\n",
            "on_crash",
        ),
        ("    replicate: {count: 2}\n", "replicate"),
        ("    env: {wrapper: [valgrind]}\n", "env"),
        ("    env: {rlimits: {as: 1GiB}}\n", "env"),
    ] {
        let map = t.write(
            "m.yaml",
            &format!(
                "modules:\n  m:\n    object: libfx_od.so\n    functions:\n      od_walk: {{}}\nprocesses:\n  p:\n    modules: [m]\n    memory: on-demand\n{extra}"
            ),
        );
        let o = under(&map, &[], &fixture("fx_od_prog"), &[])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{extra}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("on-demand") && e.contains(&format!("processes.p.{key}")),
            "{extra}: {e}"
        );
    }
}

#[test]
fn a_module_thread_touching_program_memory_outside_a_call_fails_the_helper_cleanly() {
    // The module's own thread reads a program global 100 ms after the call that started it
    // returned: no call is in flight to fetch the page through, so the helper dies of the
    // fault (reported), and the next call runs in a restarted helper.
    let out = Twin::new(&config("fx-od.yaml"), &fixture("fx_od_prog"), &["toucher"])
        .fracture_speaks()
        .same_as_plain();
    assert!(stdout(&out).contains("walk after: 6"), "{}", stdout(&out));
    assert!(stderr(&out).contains("SIGSEGV"), "{}", stderr(&out));
}

#[test]
fn concurrent_calls_of_many_threads_on_demand_are_neither_lost_nor_crossed() {
    let (k, mark) = marker("od-threads");
    let mut cmd = under(
        &config("fx.yaml"),
        &["--set", "processes.fxhelper.memory=on-demand"],
        &fixture("fx_threads"),
        &["8", "2000"],
    );
    cmd.env(&k, &mark);
    let o = ok(run_with(cmd, b"", WATCHDOG));
    assert!(o.contains("errors: 0"), "{o}");
    assert!(leftovers(&mark).is_empty());
}

#[test]
fn many_threads_calling_an_isolated_library_with_no_specs_keep_their_own_results() {
    // fx_threads: 8 threads, each with its own counter handle, checksums of its own stack
    // buffer, and greetings the library returns in a thread-local buffer (a pointer into
    // module memory under on-demand): a thread must read its own, which needs it to keep its
    // channel, and so its serving thread in the helper (`call::client::acquire`).
    let (k, mark) = marker("od-threads-isolate");
    let mut cmd = under(
        Path::new(""),
        &["--isolate", "libfx.so"],
        &fixture("fx_threads"),
        &["8", "2000"],
    );
    cmd.env(&k, &mark);
    let o = ok(run_with(cmd, b"", WATCHDOG));
    assert!(o.contains("errors: 0"), "{o}");
    assert!(leftovers(&mark).is_empty());
}

#[test]
fn callbacks_keep_working_under_on_demand_memory() {
    Twin::new(&config("fx-cb.yaml"), &fixture("fx_cb_prog"), &[])
        .set("processes.cbhelper.memory=on-demand")
        .set("processes.cbhelper.on_crash.restore=none")
        .same_as_plain();
}

#[test]
fn the_programs_own_sigsegv_handler_keeps_working_beside_module_memory_faults() {
    // fx_od_prog installs a SIGSEGV handler after start (through sigaction, which the shim
    // interposes): module memory (a static buffer of the module's) is still read through
    // faults, and the program's own NULL dereference still reaches its handler.
    let out =
        Twin::new(&config("fx-od.yaml"), &fixture("fx_od_prog"), &["handler"]).same_as_plain();
    assert!(
        stdout(&out).contains("caught the program's own fault"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("name again: one"), "{}", stdout(&out));
}

#[test]
fn a_system_call_of_the_module_on_program_memory_it_never_touched_works() {
    // od_read_into read()s a file into a fresh buffer of the program's that it reaches through
    // a structure and never touches itself: the kernel does not fault for us (EFAULT), so the
    // module's I/O imports go through wrappers that fetch the buffer's pages first.
    let out = Twin::new(
        &config("fx-od.yaml"),
        &fixture("fx_od_prog"),
        &["read", "/usr/bin/xz"],
    )
    .same_as_plain();
    assert!(!stdout(&out).contains("read: -1"), "{}", stdout(&out));
}

// Every `fracture run --isolate libexpat.so.1 -- /usr/bin/python3 ...` ended with SIGSEGV
// after the program's own work was done: at exit the loader runs libexpat's destructor in the
// program, which touched the module's data that on-demand memory keeps inaccessible there
// (it belongs to the helper). The program now gets that data back before the destructors run.
#[test]
fn a_module_destructor_run_at_exit_finds_its_data_under_on_demand_memory() {
    let py = Path::new("/usr/bin/python3");
    if !py.exists() {
        eprintln!("skipped: no {}", py.display());
        return;
    }
    // Debian's python3 links libexpat (pyexpat is built in): its destructor runs at every
    // exit, whether or not the program called it.
    Twin::isolating("libexpat.so.1", py, &["-c", "print(6 * 7)"]).same_as_plain();
}

// The same python3 died in the helper on pyexpat's first call: the executable is not
// position-independent, its GOT lies in its writable data, which the helper kept
// inaccessible as the program's, and every call through the executable's PLT faulted there
// (glibc's `free`, whose canonical address is the executable's PLT stub, called by the shim
// itself). The executable's GOT pages stay the helper's inherited copy now.
#[test]
fn a_non_pie_program_parses_with_its_linked_libexpat_isolated_and_no_map() {
    let py = Path::new("/usr/bin/python3");
    let xml = Path::new("/usr/share/xml/iso-codes/iso_639-3.xml");
    if !py.exists() || !xml.exists() {
        eprintln!("skipped: no {} or {}", py.display(), xml.display());
        return;
    }
    let walk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/expat_walk.py");
    let t = TempDir::new("expat-non-pie");
    let st = t.path("stats.json");
    Twin::isolating(
        "libexpat.so.1",
        py,
        &[walk.to_str().unwrap(), xml.to_str().unwrap()],
    )
    .stats(&st)
    .same_as_plain();
    assert!(calls(&stats(&st), "isolated", "XML_Parse") > 0);
}

#[test]
fn module_memory_the_program_reads_after_every_call_comes_back_with_the_answers_fresh() {
    // fx_od_prog peek reads its stream's state (module memory) after every od_step, as `file`
    // reads its magic_t after every magic_file. The answers bring that page back once the
    // program faulted it in, refreshed in place: each read sees the call just made, and the
    // program faults only when what it learned expires (every 17th call at most).
    let t = TempDir::new("od-peek");
    let st = t.path("stats.json");
    let out = Twin::new(
        &config("fx-od.yaml"),
        &fixture("fx_od_prog"),
        &["peek", "200"],
    )
    .stats(&st)
    .same_as_plain();
    assert!(
        stdout(&out).contains("peek: 200 calls, 0 stale reads"),
        "{}",
        stdout(&out)
    );
    let s = stats(&st);
    assert_eq!(calls(&s, "odhelper", "od_step"), 200);
    let faults = s["processes"]["odhelper"]["pages"]["peek_faults"]
        .as_u64()
        .expect("peek_faults in the stats");
    assert!(
        (1..=200 / 17 + 2).contains(&faults),
        "{faults} faults for 200 calls reading module memory after each"
    );
}

#[test]
fn a_program_page_kept_mapped_after_an_answer_is_never_read_stale_by_a_later_call() {
    // The helper keeps the pages of a call mapped after its answer (one serving thread, no
    // module thread) and refreshes those the next call sends again. fx_od_prog held changes a
    // node between calls that the next call reaches only through a pointer, not sent ahead:
    // the held page must be dropped and fetched as it is now (with the bug of keeping it, the
    // module summed the last call's value: "held: 10 22 33").
    let out = Twin::new(&config("fx-od.yaml"), &fixture("fx_od_prog"), &["held"]).same_as_plain();
    assert_eq!(stdout(&out), "held: 10 112 20, values now 14 4\n");
}

#[test]
fn threads_reading_module_memory_their_calls_return_never_see_an_older_snapshot() {
    // Eight threads each write their slot of one page of module memory (od_slot) and read it
    // through the pointer the call returns. Every answer brings that page back, taken at the
    // end of its own segment, and the threads take their answers in any order: a page is
    // refreshed only by a newer snapshot, and one held from before a newer answer's segment is
    // dropped. (Before, an older copy could win: 110 stale reads in 16 000 calls.)
    let out = Twin::new(
        &config("fx-od.yaml"),
        &fixture("fx_od_prog"),
        &["slots", "8", "2000"],
    )
    .same_as_plain();
    assert_eq!(
        stdout(&out),
        "slots: 8 threads x 2000 calls, 0 stale reads\n"
    );
}

#[test]
fn module_memory_read_after_a_helper_restart_comes_from_the_new_helper_without_a_hang() {
    // Forty calls return module memory the program reads, then a call crashes the helper
    // (give_up answers -1) and the new one, whose segment numbers start over, returns more.
    // Before, the program kept the old helper's numbers: its answers were taken as older than
    // the ones seen, and the read of the next returned string asked again for ever.
    let cmd = under(
        &config("fx-od.yaml"),
        &[],
        &fixture("fx_od_prog"),
        &["restart"],
    );
    let o = run_with(cmd, b"", std::time::Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "restart: r=-1 v=5 one two zero\n");
}
