//! The launcher itself: bounded reaping of what a program leaves behind, scripts as PROGRAM,
//! the command line (clap: `--help`, `--version`, per-subcommand options), the exit codes of
//! SPEC.md "Command line", and the `--set` encoding that carries any value to the shim.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A watchdog well under what an unbounded wait for a `sleep 30` takes.
const PROMPT: Duration = Duration::from_secs(15);

fn fracture_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(fracture());
    c.args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("FRACTURE_CONFIG")
        .env("FRACTURE_REPORTS", "off");
    c
}

/// An executable shell script in `t`.
fn script(t: &TempDir, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = t.write(name, body);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `map` without its `target:` line.
fn without_target(t: &TempDir, map: &Path) -> PathBuf {
    let text: String = std::fs::read_to_string(map)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("target:"))
        .map(|l| format!("{l}\n"))
        .collect();
    t.write("no-target.yaml", &text)
}

// `fracture run` waited without bound for a grandchild left past its deadline: it killed its
// direct children, then blocked in waitpid until the `sleep 30` they left had ended.
#[test]
fn reaper_waits_without_bound_for_grandchildren() {
    let t = TempDir::new("reaper");
    let pidfile = t.path("sleep.pid");
    let (k, mark) = marker("reaper");
    // The program starts a shell that starts `sleep 30` and waits for it, then exits 3 as
    // soon as the sleep runs: the shell and its sleep are left to fracture.
    let prog = format!(
        "sh -c 'sleep 30 & echo $! > {p}; wait' & while [ ! -s {p} ]; do sleep 0.01; done; exit 3",
        p = pidfile.display()
    );
    for map in [config("fx.yaml"), without_target(&t, &config("fx.yaml"))] {
        let _ = std::fs::remove_file(&pidfile);
        let mut cmd = under(&map, &[], Path::new("/bin/sh"), &["-c", &prog]);
        cmd.env(&k, &mark);
        let o = run_with(cmd, b"", PROMPT);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let sleep: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !Path::new(&format!("/proc/{sleep}")).exists(),
            "the sleep outlived fracture run"
        );
        assert_eq!(marked_processes(&mark), vec![], "{}", map.display());
    }
}

// `python3` on PATH is a bash launcher script: `fracture run` refused every map for it ("not
// an ELF file"), even one without `target` that every process of the exec chain applies.
#[test]
fn script_as_program_is_refused_as_not_an_elf_file() {
    let t = TempDir::new("script-py");
    let map = without_target(&t, &config("python-zlib.yaml"));
    // A wrapper script of our own, so the program is a script whatever python3 is here.
    let wrapper = script(&t, "python3", "#!/bin/sh\nexec python3 \"$@\"\n");
    let code = "import zlib; print(zlib.crc32(b'abc'), zlib.adler32(b'abc'))";
    for prog in [wrapper.as_path(), Path::new("python3")] {
        let st = t.path("stats.json");
        let _ = std::fs::remove_file(&st);
        Twin::new(&map, prog, &["-c", code])
            .stats(&st)
            .same_as_plain();
        let s = stats(&st);
        assert_eq!(calls(&s, "zhelper", "crc32"), 1, "{s}");
        assert!(calls(&s, "zhelper", "adler32") >= 1, "{s}");
    }
}

// The same with a C fixture behind a script: libfx.so is found only through fx_demo's RUNPATH,
// so the launcher cannot find the map's object itself and must not refuse the map for it.
#[test]
fn script_as_program_whose_object_only_the_exec_chain_finds() {
    let t = TempDir::new("script-fx");
    let map = without_target(&t, &config("fx.yaml"));
    let demo = fixture("fx_demo");
    let wrapper = script(
        &t,
        "demo.sh",
        &format!("#!/bin/sh\nexec {} \"$@\"\n", demo.display()),
    );
    let st = t.path("stats.json");
    let o = Twin::new(&map, &wrapper, &[])
        .stats(&st)
        .fracture_speaks()
        .same_as_plain();
    assert!(
        stderr(&o).contains("fx: libfx.so is not loaded at start"),
        "the one thing the launcher could not check is said: {}",
        stderr(&o)
    );
    assert!(calls(&stats(&st), "fxhelper", "fx_add") >= 1);
    // `check` accepts it too, saying what it could not check.
    let o = run_with(
        fracture_cmd(&[
            "check",
            "-c",
            map.to_str().unwrap(),
            "--",
            wrapper.to_str().unwrap(),
        ]),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not an ELF executable"),
        "{}",
        stderr(&o)
    );
    // A script does not excuse a function the object does not export.
    let broken = t.write(
        "broken.yaml",
        "modules:\n  m:\n    object: libz.so.1\n    functions:\n      crc33: {}\nprocesses:\n  p:\n    modules: [m]\n",
    );
    let o = run_with(under(&broken, &[], &wrapper, &[]), b"", WATCHDOG);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("broken.yaml:5"), "{}", stderr(&o));
}

// The hand-rolled parser answered `--help` only as a command, and had no `--version`.
#[test]
fn subcommands_did_not_answer_help_and_there_was_no_version() {
    let o = run_with(fracture_cmd(&["--version"]), b"", WATCHDOG);
    assert_eq!(
        ok(o).trim(),
        format!("fracture {}", env!("CARGO_PKG_VERSION"))
    );
    let top = ok(run_with(fracture_cmd(&["--help"]), b"", WATCHDOG));
    for sub in [
        "run",
        "check",
        "symbols",
        "profile",
        "partition",
        "report",
        "plan",
        "bisect",
    ] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} not listed: {top}"
        );
        let help = ok(run_with(fracture_cmd(&[sub, "--help"]), b"", WATCHDOG));
        assert!(
            help.contains(&format!("Usage: fracture {sub}")),
            "{sub}: {help}"
        );
    }
    let help = ok(run_with(fracture_cmd(&["run", "--help"]), b"", WATCHDOG));
    for opt in [
        "--config <MAP.yaml>",
        "--stats <FILE.json>",
        "--set <KEY=VALUE>",
    ] {
        assert!(help.contains(opt), "{opt}: {help}");
    }
    assert!(!help.contains("--imports"), "{help}");
}

/// `fracture ARGS...` where PROGRAM is `touch MARKER`: its status, stderr, and whether the
/// program ran.
fn starts_touch(t: &TempDir, args: &[&str], program: &[&str]) -> (Option<i32>, String, bool) {
    let marker = t.path("started");
    let _ = std::fs::remove_file(&marker);
    let mut c = fracture_cmd(args);
    c.arg("--").args(program).arg(&marker);
    let o = run_with(c, b"", WATCHDOG);
    (o.status.code(), stderr(&o), marker.exists())
}

// `run --imports` (an option of `symbols`) was accepted and ignored; every refusal to start
// the program exited 1 or 2 instead of SPEC.md's 125, 126 and 127.
#[test]
fn run_accepted_foreign_options_and_refusals_exited_1() {
    let t = TempDir::new("exit-codes");
    let good = config("fx.yaml");
    let good = good.to_str().unwrap();
    let broken = t.write("broken.yaml", "modules:\n  m:\n    objec: libc.so.6\n");
    let broken = broken.to_str().unwrap();
    let touch = ["/usr/bin/touch"];
    // The program's own status when it runs.
    let (code, err, ran) = starts_touch(&t, &["run", "-c", good], &touch);
    assert_eq!((code, ran), (Some(0), true), "{err}");
    let o = run_with(
        under(
            &config("fx.yaml"),
            &[],
            Path::new("/bin/sh"),
            &["-c", "exit 7"],
        ),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(7));
    let o = run_with(
        under(
            &config("fx.yaml"),
            &[],
            Path::new("/bin/sh"),
            &["-c", "kill -TERM $$"],
        ),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM));
    // 125: fracture refuses (an option `run` does not have, a broken map, a missing map).
    for sub in ["run", "profile"] {
        let graph = t.path("g.json");
        let out = ["-o", graph.to_str().unwrap()];
        let extra: &[&str] = if sub == "profile" { &out } else { &[] };
        let cases: [(Vec<&str>, &str); 4] = [
            (vec![sub, "-c", good, "--imports"], "--imports"),
            (vec![sub, "-c", broken], "broken.yaml:3"),
            (vec![sub, "-c", "/no/such/map.yaml"], "/no/such/map.yaml"),
            (vec![sub, "--stat", "s.json", "-c", good], "--stat"),
        ];
        for (mut args, why) in cases {
            args.extend_from_slice(extra);
            let (code, err, ran) = starts_touch(&t, &args, &touch);
            assert_eq!(code, Some(125), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
            assert!(!ran, "{args:?}: the program was started");
        }
        let mut args = vec![sub, "-c", good];
        args.extend_from_slice(extra);
        // 126: PROGRAM is there but cannot be executed (a file without x bits, a directory).
        let plain_file = t.write("not-executable", "#!/bin/sh\ntouch \"$1\"\n");
        for p in [plain_file.to_str().unwrap(), "/tmp"] {
            let (code, err, ran) = starts_touch(&t, &args, &[p]);
            assert_eq!(code, Some(126), "{p}: {err}");
            assert!(err.contains(p) && !ran, "{p}: {err}");
        }
        // 127: PROGRAM is not found (in PATH, or at the path given).
        for p in ["no-such-program-here", "/no/such/program"] {
            let (code, err, ran) = starts_touch(&t, &args, &[p]);
            assert_eq!(code, Some(127), "{p}: {err}");
            assert!(err.contains(p) && !ran, "{p}: {err}");
        }
    }
}

// `--set` reached the shim as `KEY=VALUE` lines in FRACTURE_SET: a value with a newline was
// cut at it, so the shim saw another map than the launcher had checked.
#[test]
fn set_value_with_a_newline_was_cut_on_its_way_to_the_shim() {
    // fx_crash_if_env("envbug") crashes unless FX_SAFE is set in the helper; the helper's
    // vars are a flow mapping spread over two lines, FX_SAFE on the second.
    let o = run_with(
        under(
            &config("fx.yaml"),
            &[
                "--set",
                "processes.fxhelper.env.vars={FX_NOTHING: \"1\",\n  FX_SAFE: \"1\"}",
                "--set",
                "processes.fxhelper.on_crash.restart=false",
            ],
            &fixture("fx_envbug"),
            &[],
        ),
        b"a\nenvbug\n",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a: 1\nenvbug: 6\n");
}
