//! The launcher itself: bounded reaping of what a program leaves behind, scripts as PROGRAM,
//! the command line (clap: `--help`, `--version`, per-subcommand options), the exit codes of
//! SPEC.md "Command line", and the `--set` encoding that carries any value to the shim.

use fracture_e2e::*;
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
    let want = ok(run_with(
        plain(Path::new("python3"), &["-c", code]),
        b"",
        WATCHDOG,
    ));
    for prog in [wrapper.as_path(), Path::new("python3")] {
        let st = t.path("stats.json");
        let _ = std::fs::remove_file(&st);
        let (k, mark) = marker("script-py");
        let mut cmd = under(&map, &["--stats", st.to_str().unwrap()], prog, &["-c", code]);
        cmd.env(&k, &mark);
        let got = ok(run_with(cmd, b"", WATCHDOG));
        assert_eq!(got, want, "{}", prog.display());
        let s = stats(&st);
        assert_eq!(calls(&s, "zhelper", "crc32"), 1, "{s}");
        assert!(calls(&s, "zhelper", "adler32") >= 1, "{s}");
        assert!(leftovers(&mark).is_empty());
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
    let want = ok(run_with(plain(&demo, &[]), b"", WATCHDOG));
    let st = t.path("stats.json");
    let got = ok(run_with(
        under(&map, &["--stats", st.to_str().unwrap()], &wrapper, &[]),
        b"",
        WATCHDOG,
    ));
    assert_eq!(got, want);
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
    assert!(stderr(&o).contains("not an ELF executable"), "{}", stderr(&o));
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
