//! Replication and sampling (issue 4): several helpers serve one process. Replicas get every
//! call and the answers are voted on; sampled replicas share the pure calls, so an expensive
//! tool (valgrind) runs on one of them only.

use crate::util::*;
use std::path::Path;

/// Files whose description depends on the magic database: ELF programs and shell scripts.
fn some_files() -> Vec<String> {
    let mut v = Vec::new();
    for p in [
        "/bin/ls",
        "/usr/bin/gzexe",
        "/etc/passwd",
        "/bin/sh",
        "/usr/bin/file",
    ] {
        if Path::new(p).exists() {
            v.push(p.to_string());
        }
    }
    v
}

#[test]
fn file_replicated_three_ways_with_one_faulty_replica_prints_what_plain_file_prints() {
    let t = TempDir::new("file-rep");
    // The faulty environment: a magic database of two wrong rules, chosen through $MAGIC in
    // the third replica only.
    let magic = t.write(
        "faulty.magic",
        "0\tstring\t\\x7fELF\tFAULTY executable\n0\tstring\t#!\tFAULTY script\n",
    );
    let files = some_files();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let st = t.path("s.json");
    let envs = format!(
        "processes.parser.replicate.envs=[{{}}, {{}}, {{vars: {{MAGIC: \"{}\"}}}}]",
        magic.display()
    );
    // The majority answers.
    let o = Twin::new(
        &config("file-replicate.yaml"),
        Path::new("/usr/bin/file"),
        &args,
    )
    .stats(&st)
    .set(&envs)
    .fracture_speaks()
    .same_as_plain();
    let e = stderr(&o);
    assert!(
        e.contains("warn: mismatch in magic_file(handle ")
            && e.contains("\"/bin/ls\"")
            && e.contains("replicas [0, 1] answered \"ELF 64-bit")
            && e.contains("replicas [2] answered \"FAULTY executable"),
        "{e}"
    );
    let s = stats(&st);
    let reps = s["processes"]["parser"]["replicas"].as_array().unwrap();
    assert_eq!(reps.len(), 3);
    assert_eq!(reps[0]["mismatches"], 0);
    assert_eq!(reps[1]["mismatches"], 0);
    assert!(reps[2]["mismatches"].as_u64().unwrap() >= 2, "{reps:?}");
    for r in reps {
        assert!(r["calls"].as_u64().unwrap() >= files.len() as u64, "{r}");
    }
}

#[test]
fn n_version_replica_with_another_build_of_the_library() {
    // The third replica loads target/fixtures/v2/libfx.so (library_path: an exec-mode helper);
    // its fx_checksum has a regression. Handles (fx_counter) are translated per replica.
    let t = TempDir::new("nv");
    let st = t.path("s.json");
    let o = Twin::new(&config("fx-nversion.yaml"), &fixture("fx_demo"), &[])
        .stats(&st)
        .fracture_speaks()
        .same_as_plain();
    let e = stderr(&o);
    let line = e
        .lines()
        .find(|l| l.contains("mismatch in"))
        .unwrap_or_else(|| panic!("no mismatch reported: {e}"));
    assert!(
        line.contains("fx_checksum(<4096 bytes>, 4096)")
            && line.contains("replicas [0, 1] answered 3579104709")
            && line.contains("replicas [2] answered"),
        "{line}"
    );
    assert_eq!(
        e.matches("mismatch in").count(),
        1,
        "only the regression differs: {e}"
    );
    let s = stats(&st);
    assert_eq!(s["processes"]["fxhelper"]["replicas"][2]["mismatches"], 1);
}

#[test]
fn on_mismatch_first_answers_with_the_first_replica_and_abort_ends_the_program() {
    let p = fixture("fx_demo");
    let want = ok(run_with(plain(&p, &[]), b"", WATCHDOG));
    // The first replica is the faulty one: `first` answers with it.
    let o = run_with(
        under(
            &config("fx-nversion.yaml"),
            &[
                "--set",
                "processes.fxhelper.replicate.on_mismatch=first",
                "--set",
                "processes.fxhelper.replicate.envs=[{library_path: ../target/fixtures/v2}, {}, {}]",
            ],
            &p,
            &[],
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_ne!(out, want);
    assert!(!out.contains("fx_checksum: 3579104709"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| !l.starts_with("fx_checksum:"))
            .collect::<Vec<_>>(),
        want.lines()
            .filter(|l| !l.starts_with("fx_checksum:"))
            .collect::<Vec<_>>()
    );
    assert!(
        stderr(&o).contains("answering with the first replica"),
        "{}",
        stderr(&o)
    );
    // `abort`: the program ends with a message, before printing the checksum.
    let o = run_with(
        under(
            &config("fx-nversion.yaml"),
            &["--set", "processes.fxhelper.replicate.on_mismatch=abort"],
            &p,
            &[],
        ),
        b"",
        WATCHDOG,
    );
    assert_eq!(
        o.status.code(),
        Some(128 + libc_sigabrt()),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("on_mismatch: abort"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("fx_checksum:"));
}

fn libc_sigabrt() -> i32 {
    6
}

/// fx_envbug replicated with `sets` on `input` prints what a plain run with FX_SAFE prints:
/// the replicated run and its stats.
fn envbug_replicated(
    tag: &str,
    input: &[u8],
    sets: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let t = TempDir::new(tag);
    let st = t.path("s.json");
    let mut twin = Twin::new(&config("fx.yaml"), &fixture("fx_envbug"), &[])
        .stdin(input)
        .plain_env("FX_SAFE", "1")
        .stats(&st)
        .fracture_speaks();
    for s in sets {
        twin = twin.set(s);
    }
    let o = twin.same_as_plain();
    (o, stats(&st))
}

#[test]
fn a_crashing_replica_is_restarted_while_the_others_answer() {
    // fx_envbug crashes on "envbug" unless FX_SAFE is set: replica 2 lacks it.
    let (_, s) = envbug_replicated(
        "rep-crash",
        b"a\nenvbug\nb\nenvbug\nc\n",
        &[
            "processes.fxhelper.on_crash={restart: true, restore: replay, max_retries: 1, give_up: {return: -1}}",
            "processes.fxhelper.replicate={count: 3, on_mismatch: majority, envs: [{vars: {FX_SAFE: \"1\"}}, {vars: {FX_SAFE: \"1\"}}, {}]}",
        ],
    );
    let reps = s["processes"]["fxhelper"]["replicas"].as_array().unwrap();
    assert_eq!(reps[0]["crashes"], 0);
    assert_eq!(reps[1]["crashes"], 0);
    assert!(reps[2]["crashes"].as_u64().unwrap() >= 2, "{reps:?}");
}

#[test]
fn a_hanging_replica_is_cut_off_while_the_others_answer() {
    // Replica 1 lacks FX_SAFE: "envhang" hangs it. The call is posted to all three at once;
    // replicas 0 and 2 answer, replica 1 is killed after timeout_ms, restarted, hangs again on
    // its retry and gives up: the two that answered agree, so the program goes on. Its
    // restart replays the log without the call it retries (replica 0 logged it first).
    let (o, s) = envbug_replicated(
        "rep-hang",
        b"a\nenvhang\nb\n",
        &[
            "processes.fxhelper.timeout_ms=300",
            "processes.fxhelper.on_crash={restart: true, restore: replay, max_retries: 1, give_up: {return: -1}}",
            "processes.fxhelper.replicate={count: 3, envs: [{vars: {FX_SAFE: \"1\"}}, {}, {vars: {FX_SAFE: \"1\"}}]}",
        ],
    );
    let e = stderr(&o);
    assert!(
        e.contains("hung (no answer within timeout_ms 300; killed)"),
        "{e}"
    );
    assert!(!e.contains("the replay of logged calls"), "{e}");
    let reps = s["processes"]["fxhelper"]["replicas"].as_array().unwrap();
    assert_eq!(reps[0]["crashes"], 0);
    assert_eq!(reps[2]["crashes"], 0);
    assert_eq!(reps[1]["crashes"], 2, "{reps:?}");
}

#[test]
fn sampling_sends_each_pure_call_to_one_replica_and_state_calls_to_all() {
    let t = TempDir::new("sample");
    let st = t.path("s.json");
    // fx_pid is pure: it answers from one replica, which is still a helper.
    Twin::new(&config("fx.yaml"), &fixture("fx_demo"), &[])
        .stats(&st)
        .set("processes.fxhelper.sample={count: 2, pick: round-robin}")
        .same_as_plain();
    let s = stats(&st);
    let reps = s["processes"]["fxhelper"]["replicas"].as_array().unwrap();
    let (a, b) = (
        reps[0]["calls"].as_u64().unwrap(),
        reps[1]["calls"].as_u64().unwrap(),
    );
    let fns = s["processes"]["fxhelper"]["functions"].as_object().unwrap();
    let (mut pure, mut state) = (0, 0);
    for f in fns.values() {
        let n = f["calls"].as_u64().unwrap();
        if f["effect"] == "pure" {
            pure += n;
        } else {
            state += n;
        }
    }
    assert!(pure > 4 && state > 4, "{pure} {state}");
    assert_eq!(
        a + b,
        pure + 2 * state,
        "pure calls once, state calls twice"
    );
    // Round-robin in turns of 16 pure calls: fx_demo's pure calls fill one turn and start
    // the next.
    assert!(pure > 16, "{pure}");
    assert!(
        a > state && b > state,
        "both replicas answered pure calls: {a} {b}"
    );
    // A longer run shares the pure calls about evenly.
    let st2 = t.path("s2.json");
    let o = run_with(
        under(
            &config("fx.yaml"),
            &[
                "--stats",
                st2.to_str().unwrap(),
                "--set",
                "processes.fxhelper.sample={count: 2, pick: round-robin}",
            ],
            &fixture("fx_bench"),
            &["scalar", "640"],
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stats(&st2);
    let reps = s["processes"]["fxhelper"]["replicas"].as_array().unwrap();
    let (a, b) = (
        reps[0]["calls"].as_u64().unwrap(),
        reps[1]["calls"].as_u64().unwrap(),
    );
    assert_eq!(a + b, calls(&s, "fxhelper", "fx_add"));
    assert!(a.abs_diff(b) <= 16, "{a} {b}");
}

#[test]
fn valgrind_on_one_of_four_sampled_replicas_finds_the_leak_and_the_overflow() {
    let t = TempDir::new("vg-sample");
    let st = t.path("s.json");
    let o = Twin::new(&config("fx.yaml"), &fixture("fx_heap"), &[])
        .stdin(b"leak 1000\noverflow 24\n")
        .stats(&st)
        .set("processes.fxhelper.sample={count: 4, envs: [{}, {}, {}, {wrapper: [valgrind, --leak-check=full, -q]}]}")
        .fracture_speaks()
        .same_as_plain();
    let e = stderr(&o);
    assert!(
        e.contains("Invalid write") && e.contains("fx_overflow (fx.c"),
        "{e}"
    );
    assert!(
        e.contains("definitely lost") && e.contains("fx_leak (fx.c"),
        "{e}"
    );
    // Valgrind ran in replica 3 only: every valgrind line carries its pid.
    let s = stats(&st);
    let vg = s["processes"]["fxhelper"]["replicas"][3]["pid"]
        .as_i64()
        .unwrap();
    let tag = format!("=={vg}==");
    assert!(
        e.lines()
            .filter(|l| l.starts_with("=="))
            .all(|l| l.starts_with(&tag)),
        "{e}"
    );
    assert_ne!(s["pid"].as_i64().unwrap(), vg);
}

#[test]
fn nested_calls_of_a_replicated_module_change_the_program_once() {
    // nest_count_twice calls host_count (a module that stays in the program) twice: with three
    // replicas, replica 0's nested calls run and the others are answered from their record.
    let p = fixture("fx_nest_prog");
    let single = ok(run_with(
        under(&config("nest.yaml"), &[], &p, &[]),
        b"",
        WATCHDOG,
    ));
    let t = TempDir::new("rep-nest");
    let st = t.path("s.json");
    let o = run_with(
        under(
            &config("nest.yaml"),
            &[
                "--stats",
                st.to_str().unwrap(),
                "--set",
                "processes.nester.replicate={count: 3}",
            ],
            &p,
            &[],
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), single);
    assert!(single.contains("host_count: 3"), "{single}");
    // nest_deep -> host_back (program) -> nest_leaf (the replicated module again): each
    // replica's nest_leaf runs in that replica, on a channel of its own region.
    assert!(single.contains("deep: 1053\nleaves: 2\n"), "{single}");
    // nest_pid answers each helper's own pid: that one differs, nothing else.
    let e = stderr(&o);
    assert!(
        e.lines()
            .filter(|l| l.contains("mismatch in"))
            .all(|l| l.contains("mismatch in nest_pid()")),
        "{e}"
    );
    // The same with sampling and an observer (an exec-mode replica): its nested calls are
    // answered from the record too.
    let o = run_with(
        under(
            &config("nest.yaml"),
            &[
                "--stats",
                st.to_str().unwrap(),
                "--set",
                "processes.nester.sample={count: 3, envs: [{}, {}, {wrapper: [env]}]}",
            ],
            &p,
            &[],
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), single);
    let s = stats(&st);
    let reps = s["processes"]["nester"]["replicas"].as_array().unwrap();
    assert!(reps[2]["calls"].as_u64().unwrap() >= 3, "{reps:?}");
}
