//! `env.sandbox` (SPEC.md, "Sandbox"): a module in a sandboxed helper is refused what the map
//! does not allow, sees EACCES/EPERM as the result of its own calls, and the program goes on.
//! The probes are real syscalls from a C fixture (libfx_sandbox.so); one that worked where it
//! must not (a SIGKILL of the program) ends the program, so the test fails loudly.

use crate::util::*;
use std::path::Path;

/// The fixture's functions: every probe in module `box`, a pid in module `peer`.
const MODULES: &str = "\
modules:
  box:
    object: libfx_sandbox.so
    functions:
      sb_open: {args: [str, val]}
      sb_socket: {}
      sb_abstract: {args: [str]}
      sb_exec: {args: [str]}
      sb_kill: {}
      sb_ptrace: {}
      sb_proc_mem: {}
      sb_vm_read: {}
      sb_pid: {}
      sb_ppid: {}
      sb_count: {}
      sb_crash: {}
  peer:
    object: libfx_sandbox.so
    functions:
      sbpeer_pid: {}
";

/// A scratch tree: `ro/data` to read, `rw/` to write, `outside/secret` that is not allowed.
fn tree(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    for sub in ["ro", "rw", "outside"] {
        std::fs::create_dir_all(d.path(sub)).unwrap();
    }
    d.write("ro/data", "data\n");
    d.write("outside/secret", "secret\n");
    d
}

/// A map with process `boxed` (module `box`, `env` as given, `extra` lines after it) and
/// process `other` (module `peer`, no sandbox).
fn map(d: &TempDir, env: &str, extra: &str) -> std::path::PathBuf {
    // `target`: a wrapper that is a program of its own (/usr/bin/env) is left alone, and the
    // program it starts becomes the helper.
    let text = format!(
        "target: \"*/fx_sandbox_prog\"\n{MODULES}processes:\n  boxed:\n    modules: [box]\n    env:\n{env}{extra}  other:\n    modules: [peer]\n"
    );
    d.write("map.yaml", &text)
}

fn strict_env(d: &TempDir) -> String {
    format!(
        "      sandbox:\n        files: {{read: [{}], write: [{}]}}\n        network: false\n        exec: false\n",
        d.path("ro").display(),
        d.path("rw").display()
    )
}

/// What every probe of the strict sandbox prints, in order.
const STRICT: &[&str] = &[
    "read allowed: ok",
    "read outside: EACCES",
    "read /etc/passwd: EACCES",
    "write read-only dir: EACCES",
    "write allowed: ok",
    "socket inet: EACCES",
    "socket inet6: EACCES",
    "socket unix: ok",
    "abstract socket of the program: EPERM",
    "exec: EPERM",
    "kill program 0: EPERM",
    "kill program: EPERM",
    "ptrace program: EPERM",
    "mem of program: EACCES",
    "vm_read program: EPERM",
    "kill peer: EPERM",
    "ptrace peer: EPERM",
    "mem of peer: EACCES",
];

fn run_prog(map: &Path, d: &TempDir, args: &[&str]) -> String {
    let mut a = vec![d.0.to_str().unwrap()];
    a.extend_from_slice(args);
    ok(run_with(
        under(map, &[], &fixture("fx_sandbox_prog"), &a),
        b"",
        WATCHDOG,
    ))
}

fn assert_lines(out: &str, want: &[&str]) {
    for w in want {
        assert!(out.lines().any(|l| l == *w), "missing `{w}` in:\n{out}");
    }
}

#[test]
fn sandboxed_helper_is_refused_what_the_map_does_not_allow() {
    let d = tree("sb-strict");
    let m = map(&d, &strict_env(&d), "");
    let out = run_prog(&m, &d, &[]);
    assert_lines(&out, &["in a helper: yes", "count: 1"]);
    assert_lines(&out, STRICT);
    // The helper still reads its own memory (the shim does, through process_vm_readv).
    assert_lines(&out, &["vm_read self: ok", "secret: 5ec2e7", "done"]);
    assert_eq!(
        std::fs::read_to_string(d.path("rw/new")).unwrap(),
        "written by the helper\n"
    );
    assert!(!d.path("ro/new").exists());
}

#[test]
fn empty_sandbox_still_keeps_the_program_and_other_helpers_out_of_reach() {
    let d = tree("sb-empty");
    let m = map(&d, "      sandbox: {}\n", "");
    let out = run_prog(&m, &d, &[]);
    // Files, network and exec are left as they are...
    assert_lines(
        &out,
        &[
            "read outside: ok",
            "write read-only dir: ok",
            "socket inet: ok",
            "exec: ok",
        ],
    );
    // ...but no signal, ptrace or memory access reaches another process.
    assert_lines(
        &out,
        &[
            "abstract socket of the program: EPERM",
            "kill program 0: EPERM",
            "kill program: EPERM",
            "ptrace program: EPERM",
            "mem of program: EACCES",
            "vm_read program: EPERM",
            "kill peer: EPERM",
            "ptrace peer: EPERM",
            "mem of peer: EACCES",
            "done",
        ],
    );
}

#[test]
fn exec_mode_helper_applies_its_sandbox() {
    let d = tree("sb-exec");
    // library_path makes the helper a fresh execution of the program (exec_main).
    let env = format!(
        "      library_path: {}\n{}",
        fixture("libfx_sandbox.so").parent().unwrap().display(),
        strict_env(&d)
    );
    let m = map(&d, &env, "");
    let out = run_prog(&m, &d, &[]);
    assert_lines(&out, STRICT);
    assert_lines(&out, &["done"]);
}

#[test]
fn wrapper_that_execs_the_program_keeps_the_sandbox() {
    // The shim inside the wrapped program applies it (valgrind is refused: see below).
    let d = tree("sb-wrapper");
    let env = format!("      wrapper: [/usr/bin/env]\n{}", strict_env(&d));
    let m = map(&d, &env, "");
    let out = run_prog(&m, &d, &[]);
    assert_lines(&out, STRICT);
    assert_lines(&out, &["done"]);
}

// A sandboxed checkpoint copy checked that the program was alive with kill(program, 0), which
// the signal scope answers with EPERM: every copy exited at once and each restart silently
// fell back to a fresh helper and a full replay (and took 2 s).
#[test]
fn sandboxed_checkpoint_copy_took_eperm_for_a_dead_program() {
    let d = tree("sb-ckpt");
    let extra = "    on_crash: {restore: checkpoint, max_retries: 2, retry_envs: [{vars: {FX_SANDBOX_CALM: \"1\"}}]}\n";
    let m = map(&d, &strict_env(&d), extra);
    let out = run_prog(&m, &d, &["crash"]);
    assert_lines(
        &out,
        &[
            "restarted: yes",
            "resumed from checkpoint: yes",
            "count after restart: 3",
            "done",
        ],
    );
    // The resumed helper inherited the sandbox: the second round of probes is refused too.
    for w in STRICT {
        let n = out.lines().filter(|l| l == w).count();
        assert_eq!(
            n, 2,
            "`{w}` should appear before and after the restart:\n{out}"
        );
    }
}

// A helper resumed from a checkpoint kept the sandbox of the helper it was copied from, so a
// sandbox given only in a retry environment was never applied to it.
#[test]
fn helper_resumed_from_checkpoint_skipped_its_retry_env_sandbox() {
    let d = tree("sb-ckpt-retry");
    let sandbox: String = strict_env(&d)
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let retry = format!(
        "    on_crash:\n      restore: checkpoint\n      max_retries: 1\n      retry_envs:\n        - vars: {{FX_SANDBOX_CALM: \"1\"}}\n{sandbox}"
    );
    let m = map(&d, "      vars: {A: \"1\"}\n", &retry);
    let out = run_prog(&m, &d, &["crash-first"]);
    assert_lines(
        &out,
        &["resumed from checkpoint: yes", "count after restart: 3"],
    );
    assert_lines(&out, STRICT);
    assert_lines(&out, &["done"]);
}

#[test]
fn file_with_libmagic_in_a_sandbox_prints_what_plain_file_prints() {
    let d = TempDir::new("sb-file");
    let files = d.path("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::copy("/bin/ls", files.join("ls")).unwrap();
    std::fs::write(files.join("j.json"), "{\"a\": [1, 2]}\n").unwrap();
    std::fs::write(files.join("s.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(files.join("t.txt"), "plain text\n").unwrap();
    std::fs::write(files.join("z.gz"), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]).unwrap();
    let outside = d.path("outside.txt");
    std::fs::write(&outside, "not allowed\n").unwrap();
    let text = std::fs::read_to_string(config("file-magic.yaml")).unwrap();
    // The database (magic.mgc is a symlink into /usr/lib/file), /etc/magic, the files.
    let text = format!(
        "{text}    env:\n      sandbox:\n        files: {{read: [/usr/share/misc, /usr/lib/file, /etc/magic, {}]}}\n        network: false\n        exec: false\n",
        files.display()
    );
    let m = d.write("map.yaml", &text);
    let mut names: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    names.sort();
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    same_as_plain(&m, Path::new("/usr/bin/file"), &args, b"");
    // A file outside the sandbox: libmagic's open fails inside the helper and `file` says
    // so, where plain `file` reads it.
    let o = ok(run_with(
        under(
            &m,
            &[],
            Path::new("/usr/bin/file"),
            &[outside.to_str().unwrap()],
        ),
        b"",
        WATCHDOG,
    ));
    assert!(o.contains("no read permission"), "{o}");
    let p = ok(run_with(
        plain(Path::new("/usr/bin/file"), &[outside.to_str().unwrap()]),
        b"",
        WATCHDOG,
    ));
    assert!(p.contains("ASCII text"), "{p}");
}

#[test]
fn sandbox_under_valgrind_is_refused_before_the_program_starts() {
    let d = tree("sb-valgrind");
    let env = format!("      wrapper: [valgrind, -q]\n{}", strict_env(&d));
    let m = map(&d, &env, "");
    let o = run_with(
        under(
            &m,
            &[],
            &fixture("fx_sandbox_prog"),
            &[d.0.to_str().unwrap()],
        ),
        b"",
        WATCHDOG,
    );
    // A map `run` refuses: 125 (SPEC.md, exit codes).
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "the program ran: {}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains("processes.boxed.env"), "{e}");
    assert!(e.contains("valgrind does not pass Landlock"), "{e}");
    // Preloaded without the launcher: the shim stops it before main with status 127.
    let o = run_with(
        preloaded(&m, &fixture("fx_sandbox_prog"), &[d.0.to_str().unwrap()]),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("valgrind does not pass Landlock"));
}

#[test]
fn check_accepts_a_sandbox_and_warns_of_missing_paths() {
    let d = tree("sb-check");
    let env = strict_env(&d).replace(
        &d.path("rw").display().to_string(),
        &d.path("missing").display().to_string(),
    );
    let m = map(&d, &env, "");
    let mut c = std::process::Command::new(fracture());
    c.arg("check")
        .arg("-c")
        .arg(&m)
        .arg("--")
        .arg(fixture("fx_sandbox_prog"));
    let o = run_with(c, b"", WATCHDOG);
    assert!(stdout(&o).starts_with("ok: 2 modules"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("processes.boxed.env.sandbox.files: `")
            && stderr(&o).contains("missing` does not exist"),
        "{}",
        stderr(&o)
    );
    // And the helper runs: a missing path only allows nothing.
    let out = run_prog(&m, &d, &[]);
    assert_lines(&out, &["read allowed: ok", "write allowed: EACCES", "done"]);
}
