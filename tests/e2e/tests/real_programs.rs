//! Real programs nobody here wrote, run plain and under fracture: same output, and the
//! statistics show the isolated functions answered by the helper.

use crate::util::*;
use std::path::Path;

#[test]
fn file_with_libmagic_isolated_prints_what_plain_file_prints() {
    let t = TempDir::new("file");
    let files = real_files(150);
    let list = t.write("files", &(files.join("\n") + "\n"));
    let st = t.path("stats.json");
    // `file` as PATH finds it: the launcher's own search.
    Twin::new(
        &config("file-magic.yaml"),
        Path::new("file"),
        &["-f", list.to_str().unwrap()],
    )
    .stats(&st)
    .same_as_plain();
    let s = stats(&st);
    assert_eq!(
        calls(&s, "parser", "magic_file"),
        files.len() as u64,
        "every magic_file call answered by the helper"
    );
    assert_eq!(calls(&s, "parser", "magic_open"), 1);
    assert_ne!(
        s["processes"]["parser"]["pid"], s["pid"],
        "the helper is another process"
    );
}

#[test]
fn file_under_plain_ld_preload_behaves_the_same() {
    let t = TempDir::new("file-preload");
    let files = real_files(30);
    let list = t.write("files", &(files.join("\n") + "\n"));
    let st = t.path("stats.json");
    Twin::new(
        &config("file-magic.yaml"),
        Path::new("/usr/bin/file"),
        &["-f", list.to_str().unwrap()],
    )
    .preloaded()
    .env("FRACTURE_STATS", &st)
    .same_as_plain();
    assert_eq!(
        calls(&stats(&st), "parser", "magic_file"),
        files.len() as u64
    );
}

#[test]
fn file_with_a_raw_flag_sees_the_handle_fields() {
    // `file` reads ms->flags of its "opaque" magic_t: the handle mirror must carry them.
    let t = TempDir::new("file-raw");
    let name = t.write("caf\u{e9}\u{1}.txt", "plain text\n");
    for flags in [&["-r"][..], &[][..]] {
        let mut args: Vec<&str> = flags.to_vec();
        args.push(name.to_str().unwrap());
        same_as_plain(
            &config("file-magic.yaml"),
            Path::new("/usr/bin/file"),
            &args,
            b"",
        );
    }
}

/// The python3 to use: one whose zlib module is a dlopen'd extension if there is one.
fn python() -> String {
    for p in [
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
        "python3",
        "/usr/bin/python3",
    ] {
        if std::process::Command::new(p)
            .arg("-c")
            .arg("1")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return p.to_string();
        }
    }
    panic!("no python3")
}

const PY: &str = "import zlib\nprint(zlib.crc32(b'hello world'), zlib.adler32(b'abc' * 1000), zlib.ZLIB_RUNTIME_VERSION)\nprint(zlib.crc32(bytes(range(256)) * 1000, 7))\nprint(len(zlib.compress(b'x' * 10000)))\n";

#[test]
fn python_zlib_checksums_run_in_the_helper() {
    let t = TempDir::new("py");
    let st = t.path("stats.json");
    let py = python();
    Twin::new(&config("python-zlib.yaml"), Path::new(&py), &["-c", PY])
        .stats(&st)
        .same_as_plain();
    let s = stats(&st);
    assert_eq!(calls(&s, "zhelper", "crc32"), 2);
    // Python's call, and zlib's own calls from compress() (unmapped, run in the program):
    // those go through libz's PLT slot for its own export, routed like any other, so the
    // mapped function runs in the helper whoever calls it.
    assert!(calls(&s, "zhelper", "adler32") > 1);
    assert!(
        s["processes"]["zhelper"]["functions"]["crc32"]["bytes_in"]
            .as_u64()
            .unwrap()
            >= 256_000
    );
}

#[test]
fn a_map_whose_target_does_not_match_leaves_the_program_alone() {
    let t = TempDir::new("target");
    let map = t.write("m.yaml", "target: \"*/no-such-program\"\nmodules:\n  magic:\n    object: libmagic.so.1\n    functions:\n      magic_file: {args: [handle, str], ret: str}\nprocesses:\n  parser:\n    modules: [magic]\n");
    let st = t.path("stats.json");
    let (k, mark) = marker("target");
    let mut cmd = preloaded(&map, Path::new("/usr/bin/file"), &["/etc/passwd"]);
    cmd.env("FRACTURE_STATS", &st).env(&k, &mark);
    let out = ok(run_with(cmd, b"", WATCHDOG));
    assert!(out.contains("/etc/passwd:"));
    assert!(!st.exists(), "an ignored map writes no statistics");
    assert!(marked_processes(&mark).is_empty());
}

#[test]
fn file_survives_faults_injected_into_its_isolated_magic_file() {
    // libfx_faultymagic.so (preloaded in front of libmagic) crashes on names containing
    // "CRASH". Isolated, each crash restarts the helper, the magic state is replayed, and file
    // goes on: every line but the faulty inputs' matches a plain run.
    let t = TempDir::new("faulty");
    let mut files = real_files(60);
    for i in 0..3 {
        let p = t.write(&format!("CRASH{i}.txt"), "some text\n");
        files.insert(10 + 20 * i, p.to_string_lossy().into_owned());
    }
    let list = t.write("files", &(files.join("\n") + "\n"));
    let st = t.path("stats.json");
    let (k, mark) = marker("faulty");
    let want = stdout(&run_with(
        plain(Path::new("/usr/bin/file"), &["-f", list.to_str().unwrap()]),
        b"",
        WATCHDOG,
    ));
    let mut cmd = under(
        &config("file-faulty.yaml"),
        &["--stats", st.to_str().unwrap()],
        Path::new("/usr/bin/file"),
        &["-f", list.to_str().unwrap()],
    );
    cmd.env("LD_PRELOAD", fixture("libfx_faultymagic.so"))
        .env(&k, &mark);
    let o = run_with(cmd, b"", WATCHDOG);
    let got = stdout(&o);
    assert_eq!(got.lines().count(), want.lines().count(), "{}", stderr(&o));
    for (g, w) in got.lines().zip(want.lines()) {
        if w.contains("CRASH") {
            assert!(g.contains("ERROR"), "{g}");
        } else {
            assert_eq!(g, w);
        }
    }
    let s = stats(&st);
    let mf = &s["processes"]["parser"]["functions"]["magic_file"];
    assert_eq!(mf["give_ups"].as_u64(), Some(3), "{mf}");
    assert_eq!(mf["restarts"].as_u64(), Some(6), "{mf}");
    assert!(leftovers(&mark).is_empty());
}
