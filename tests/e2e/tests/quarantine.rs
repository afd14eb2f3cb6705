//! Quarantine (issue 5): crash reports across runs, plans, profiles, partitions and bisect,
//! on the event-loop fixture fx_chat (16 modules: ui, util, 14 dlopen'd protocol plugins;
//! p11 crashes on a rare input, p05 leaks, p03 calls util for every character).

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A workload of `n` events; `crash`: with the rare input that crashes p11.
pub(crate) fn workload(n: usize, crash: bool) -> Vec<u8> {
    let o = ok(run_with(
        plain(&fixture("fx_chat"), &["--gen", &n.to_string()]),
        b"",
        WATCHDOG,
    ));
    o.lines()
        .filter(|l| crash || !l.contains("\u{1}BUZZ"))
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

pub(crate) fn fracture_cmd(args: &[&str], db: &Path) -> Command {
    let mut c = Command::new(fracture());
    c.args(args)
        .env("FRACTURE_REPORTS", db)
        .env_remove("LD_PRELOAD")
        .env_remove("FRACTURE_CONFIG");
    c
}

/// `fracture run` with reports going to `db`.
pub(crate) fn run_reported(map: &Path, db: &Path, input: &[u8]) -> std::process::Output {
    let mut c = under(map, &[], &fixture("fx_chat"), &[]);
    c.env("FRACTURE_REPORTS", db);
    run_with(c, input, WATCHDOG)
}

#[test]
fn bisect_names_the_crashing_plugin_in_at_most_five_runs() {
    let input = workload(2000, true);
    let t = TempDir::new("bisect");
    let o = run_with(
        fracture_cmd(
            &[
                "bisect",
                "-c",
                config("chat.yaml").to_str().unwrap(),
                "--",
                fixture("fx_chat").to_str().unwrap(),
            ],
            &t.path("r.db"),
        ),
        &input,
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("culprit: p11 (object libchat_p11.so)"),
        "{out}"
    );
    let runs = stderr(&o).matches("bisect run").count();
    assert!(
        runs <= 5,
        "16 modules: log2(16) + 1 runs at most; took {runs}"
    );
    // No temporary map is left beside the map (another test's bisect may hold one briefly).
    let t0 = std::time::Instant::now();
    loop {
        let left: Vec<PathBuf> = std::fs::read_dir(config("chat.yaml").parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".fracture-bisect-"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(t0.elapsed().as_secs() < 30, "{left:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn bisect_says_when_the_workload_does_not_crash() {
    let input = workload(200, false);
    let t = TempDir::new("bisect-ok");
    let o = run_with(
        fracture_cmd(
            &[
                "bisect",
                "-c",
                config("chat.yaml").to_str().unwrap(),
                "--",
                fixture("fx_chat").to_str().unwrap(),
            ],
            &t.path("r.db"),
        ),
        &input,
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("finishes with nothing isolated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_crash_of_the_program_itself_is_spooled_with_its_module() {
    let input = workload(300, true);
    let t = TempDir::new("spool");
    let db = t.path("r.db");
    let o = run_reported(&config("chat.yaml"), &db, &input);
    assert_eq!(o.status.code(), Some(128 + 11), "it dies as it would have");
    // `fracture run` stored it when the program died (and removed the spool file, whose
    // writer is gone): the record as the shim wrote it is in the database.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (module, signal, process, frames): (String, i64, String, String) = conn
        .query_row(
            "SELECT module, signal, process, frames FROM events WHERE outcome = 'program-crash'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let crash = serde_json::json!({
        "module": module,
        "signal": signal,
        "process": process,
        "frames": serde_json::from_str::<serde_json::Value>(&frames).unwrap(),
    });
    assert_eq!(crash["module"], "p11");
    assert_eq!(crash["signal"], 11);
    assert_eq!(crash["process"], "main");
    let f0 = &crash["frames"][0];
    assert!(
        f0["obj"].as_str().unwrap().ends_with("libchat_p11.so"),
        "{f0}"
    );
}

// `fracture run` left a crash in the spool only: a user reading the database with sqlite3
// right after the run found nothing until `fracture report` had run.
#[test]
fn a_crashing_run_is_in_the_database_when_fracture_run_returns() {
    let t = TempDir::new("db-at-once");
    let db = t.path("r.db");
    let o = run_reported(&config("chat.yaml"), &db, &workload(300, true));
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("no database after the run: {e}"));
    let (module, function, signal, backtrace): (String, String, i64, String) = conn
        .query_row(
            "SELECT module, function, signal, backtrace FROM events WHERE outcome = 'program-crash'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((module.as_str(), signal), ("p11", 11));
    assert_eq!(function, "p11_parse");
    assert!(backtrace.contains("p11"), "{backtrace}");
    // A clean run with reports on leaves no database behind (its summary waits in the spool).
    let t2 = TempDir::new("db-clean");
    let o = run_reported(
        &config("chat.yaml"),
        &t2.path("r.db"),
        &workload(300, false),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!t2.path("r.db").exists());
}

/// Runs `fracture ARGS` with reports in `db`; asserts success; returns stdout.
pub(crate) fn fracture_ok(args: &[&str], db: &Path) -> String {
    ok(run_with(fracture_cmd(args, db), b"", WATCHDOG))
}

#[test]
fn crashing_run_then_report_then_plan_then_a_surviving_run() {
    let input = workload(2000, true);
    let clean = workload(2000, false);
    let t = TempDir::new("loop");
    let db = t.path("reports.db");
    // 1. The deployment isolates nothing; the program dies on the rare input.
    let o = run_reported(&config("chat.yaml"), &db, &input);
    assert_eq!(o.status.code(), Some(139), "{}", stderr(&o));
    // 2. The report names the plugin and the function.
    let rep = fracture_ok(&["report", "--db", db.to_str().unwrap()], &db);
    let row = rep
        .lines()
        .find(|l| l.starts_with("p11 "))
        .unwrap_or_else(|| panic!("{rep}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "p11_parse", "{rep}");
    assert_eq!(cells[6], "1", "one program crash: {rep}");
    assert_eq!(cells[8], "11", "SIGSEGV: {rep}");
    // 3. The optimistic plan isolates the culprit, and only it.
    let next = t.path("next.yaml");
    let o = run_with(
        fracture_cmd(
            &[
                "plan",
                "--db",
                db.to_str().unwrap(),
                "-c",
                config("chat.yaml").to_str().unwrap(),
                "-o",
                next.to_str().unwrap(),
            ],
            &db,
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&next).unwrap();
    let map: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let procs = map["processes"].as_mapping().unwrap();
    assert_eq!(procs.len(), 1, "{text}");
    assert_eq!(map["processes"]["q_p11"]["modules"][0], "p11", "{text}");
    // 4. The next run survives: every other message is printed as a plain run prints it.
    let o = run_reported(&next, &db, &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let want = ok(run_with(plain(&fixture("fx_chat"), &[]), &clean, WATCHDOG));
    let body = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("events:") && !l.contains("message dropped"))
            .map(String::from)
            .collect()
    };
    assert_eq!(body(&out), body(&want));
    assert!(out.contains("[p11: message dropped]"), "{out}");
    assert!(
        out.ends_with("events: 2000, dropped: 1, ui lines: 1999\n"),
        "{out}"
    );
    // The contained crash is reported too: the database now holds both runs' records.
    let rep = fracture_ok(&["report", "--db", db.to_str().unwrap()], &db);
    let row = rep.lines().find(|l| l.starts_with("p11 ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(
        cells[2].parse::<u32>().unwrap() >= 1,
        "helper crashes: {rep}"
    );
    assert_eq!(cells[4], "1", "one give-up: {rep}");
}

#[test]
fn pessimistic_plan_isolates_everything_then_merges_back_clean_modules() {
    let input = workload(2000, true);
    let t = TempDir::new("pess");
    let db = t.path("r.db");
    let all = t.path("all.yaml");
    let chat = config("chat.yaml");
    fracture_ok(
        &[
            "plan",
            "--strategy",
            "pessimistic",
            "--db",
            db.to_str().unwrap(),
            "-c",
            chat.to_str().unwrap(),
            "-o",
            all.to_str().unwrap(),
        ],
        &db,
    );
    let map: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&all).unwrap()).unwrap();
    assert_eq!(map["processes"].as_mapping().unwrap().len(), 16);
    // Everything isolated: the crash is contained, the run completes and is summarized.
    let o = run_reported(&all, &db, &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let next = t.path("next.yaml");
    let o = run_with(
        fracture_cmd(
            &[
                "plan",
                "--strategy",
                "pessimistic",
                "--min-clean-calls",
                "50",
                "--db",
                db.to_str().unwrap(),
                "-c",
                chat.to_str().unwrap(),
                "-o",
                next.to_str().unwrap(),
            ],
            &db,
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let map: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&next).unwrap()).unwrap();
    let procs = map["processes"].as_mapping().unwrap();
    let isolated: Vec<&str> = procs
        .values()
        .flat_map(|p| p["modules"].as_sequence().unwrap().iter())
        .filter_map(|m| m.as_str())
        .collect();
    assert!(
        isolated.contains(&"p11"),
        "the crasher stays isolated: {isolated:?}"
    );
    for m in ["ui", "p00", "p03", "p12"] {
        assert!(
            !isolated.contains(&m),
            "{m} had clean calls: {isolated:?}\n{}",
            stderr(&o)
        );
    }
    assert!(stderr(&o).contains("ui: "), "{}", stderr(&o));
}

#[test]
fn concurrent_programs_writing_one_database_lose_no_report() {
    // Four programs at once, each with five contained crashes (two records each: the crash
    // and the give-up), into one database.
    let t = TempDir::new("conc");
    let db = t.path("r.db");
    let input = b"segv\nok\nsegv\nok\nsegv\nsegv\nsegv\n";
    let kids: Vec<_> = (0..4)
        .map(|_| {
            let mut c = under(
                &config("fx.yaml"),
                &[
                    "--set",
                    "processes.fxhelper.on_crash={restart: true, max_retries: 0, give_up: {return: -1}}",
                ],
                &fixture("fx_crashy"),
                &[],
            );
            c.env("FRACTURE_REPORTS", &db);
            std::thread::spawn(move || run_with(c, input, WATCHDOG))
        })
        .collect();
    for k in kids {
        let o = k.join().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let rep = fracture_ok(&["report", "--db", db.to_str().unwrap()], &db);
    let row = rep
        .lines()
        .find(|l| l.starts_with("fx "))
        .unwrap_or_else(|| panic!("{rep}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "fx_crash_on");
    assert_eq!(cells[2], "20", "crashes: {rep}");
    assert_eq!(cells[4], "20", "give-ups: {rep}");
    assert_eq!(cells[9], "1", "one program: {rep}");
}

#[test]
fn the_leaky_plugin_is_found_by_valgrind_in_a_sampled_helper() {
    let input = workload(3000, false);
    let t = TempDir::new("chat-vg");
    let st = t.path("s.json");
    let o = Twin::new(&config("chat.yaml"), &fixture("fx_chat"), &[])
        .stdin(&input)
        .stats(&st)
        .set("processes={p05: {modules: [p05], sample: {count: 2, envs: [{}, {wrapper: [valgrind, --leak-check=full, -q]}]}}}")
        .fracture_speaks()
        .same_as_plain();
    let e = stderr(&o);
    assert!(
        e.contains("definitely lost") && e.contains("p05_parse (plugin.c"),
        "{e}"
    );
    let s = stats(&st);
    let reps = s["processes"]["p05"]["replicas"].as_array().unwrap();
    let vg = reps[1]["pid"].as_i64().unwrap();
    assert!(
        e.lines()
            .filter(|l| l.starts_with("=="))
            .all(|l| l.starts_with(&format!("=={vg}=="))),
        "{e}"
    );
    // The observer saw a sample; the plain replica answered every call.
    let answered = reps[0]["calls"].as_u64().unwrap();
    assert_eq!(answered, calls(&s, "p05", "p05_parse"));
    assert!(reps[1]["calls"].as_u64().unwrap() >= 2);
}

#[test]
fn bad_input_to_report_plan_and_bisect_is_a_clear_error() {
    let t = TempDir::new("q-bad");
    let db = t.path("r.db");
    let chat = config("chat.yaml");
    // A file that is not a report database.
    let not_db = t.write("not.db", "hello, this is not SQLite\n");
    let o = run_with(
        fracture_cmd(&["report", "--db", not_db.to_str().unwrap()], &db),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("fracture: error:"), "{}", stderr(&o));
    // Usage errors: exit 2 with the reason (clap's words).
    for (args, why) in [
        (vec!["plan", "-o", "x.yaml"], "--config <MAP.yaml>"),
        (
            vec![
                "plan",
                "-c",
                chat.to_str().unwrap(),
                "-o",
                "x.yaml",
                "--strategy",
                "bold",
            ],
            "[possible values: optimistic, pessimistic, valgrind-slices]",
        ),
        (
            vec!["report", "--frobnicate"],
            "unexpected argument '--frobnicate'",
        ),
        (vec!["partition", "--isolate", "p03"], "<GRAPH.json>"),
        (vec!["bisect", "-c", chat.to_str().unwrap()], "<PROGRAM>"),
    ] {
        let o = run_with(fracture_cmd(&args, &db), b"", WATCHDOG);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
    // A map that does not parse is refused by plan, naming the file and line.
    let bad = t.write(
        "bad.yaml",
        "modules:\n  m: {object: libx.so, functions: {f: {args: [nope]}}}\n",
    );
    let o = run_with(
        fracture_cmd(
            &[
                "plan",
                "-c",
                bad.to_str().unwrap(),
                "-o",
                t.path("o.yaml").to_str().unwrap(),
            ],
            &db,
        ),
        b"",
        WATCHDOG,
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("bad.yaml:2"), "{}", stderr(&o));
    // Garbage in the spool is skipped with a warning; good records around it are kept.
    let spool = t.path("r.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(
        spool.join("1-1.jsonl"),
        "\u{0}\u{1}garbage\n{\"v\":1,\"kind\":\"event\",\"time\":1.0,\"outcome\":\"crash\",\"module\":\"m\",\"function\":\"f\",\"signal\":11}\n{\"v\":1,\"kind\":\"event\"\n",
    )
    .unwrap();
    let o = run_with(
        fracture_cmd(&["report", "--db", db.to_str().unwrap()], &db),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("m ")),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("were not valid records"),
        "{}",
        stderr(&o)
    );
}
