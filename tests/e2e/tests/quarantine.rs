//! Quarantine (issue 5): crash reports across runs, plans, profiles, partitions and bisect,
//! on the event-loop fixture fx_chat (16 modules: ui, util, 14 dlopen'd protocol plugins;
//! p11 crashes on a rare input, p05 leaks, p03 calls util for every character).

use fracture_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A workload of `n` events; `crash`: with the rare input that crashes p11.
fn workload(n: usize, crash: bool) -> Vec<u8> {
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

fn fracture_cmd(args: &[&str], db: &Path) -> Command {
    let mut c = Command::new(fracture());
    c.args(args)
        .env("FRACTURE_REPORTS", db)
        .env_remove("LD_PRELOAD")
        .env_remove("FRACTURE_CONFIG");
    c
}

/// `fracture run` with reports going to `db`.
fn run_reported(map: &Path, db: &Path, input: &[u8]) -> std::process::Output {
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
    assert!(out.starts_with("culprit: p11 (object libchat_p11.so)"), "{out}");
    let runs = stderr(&o).matches("bisect run").count();
    assert!(runs <= 5, "16 modules: log2(16) + 1 runs at most; took {runs}");
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
fn profile_counts_calls_and_bytes_per_calling_module() {
    let input = workload(1000, false);
    let want = ok(run_with(plain(&fixture("fx_chat"), &[]), &input, WATCHDOG));
    let t = TempDir::new("profile");
    let g = t.path("g.json");
    let o = run_with(
        fracture_cmd(
            &[
                "profile",
                "-c",
                config("chat.yaml").to_str().unwrap(),
                "-o",
                g.to_str().unwrap(),
                "--",
                fixture("fx_chat").to_str().unwrap(),
            ],
            &t.path("r.db"),
        ),
        &input,
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), want, "a profiled run prints what a plain run prints");
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&g).unwrap()).unwrap();
    let edge = |caller: &str, func: &str| {
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["caller"] == caller && e["function"] == func)
            .cloned()
    };
    // Every event is parsed by its plugin (called from main) and formatted by the UI.
    let events = input.iter().filter(|&&b| b == b'\n').count() as u64;
    let parses: u64 = (0..14)
        .filter_map(|i| edge("main", &format!("p{i:02}_parse")))
        .map(|e| e["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(parses, events);
    assert_eq!(edge("main", "ui_format").unwrap()["calls"], events);
    // p03 escapes each character through util: calls from p03, not from main.
    let esc = edge("p03", "util_escape").expect("p03 -> util_escape");
    let p03_bytes = edge("main", "p03_parse").unwrap()["bytes_in"].as_u64().unwrap();
    let p03_calls = edge("main", "p03_parse").unwrap()["calls"].as_u64().unwrap();
    // bytes_in of a str argument counts its NUL: characters = bytes - calls.
    assert_eq!(esc["calls"].as_u64().unwrap(), p03_bytes - p03_calls);
    assert!(edge("main", "util_escape").is_none());
    // out:arg2 with a 4096-byte buffer: every parse moves 4096 bytes back.
    assert_eq!(
        edge("main", "p03_parse").unwrap()["bytes_out"].as_u64().unwrap(),
        p03_calls * 4096
    );
    let cal = &g["calibration"];
    assert!(cal["per_call_ns"].as_f64().unwrap() > 0.0, "{cal}");
    assert!(cal["per_byte_ns"].as_f64().unwrap() >= 0.0, "{cal}");
    assert!(g["duration_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_crash_of_the_program_itself_is_spooled_with_its_module() {
    let input = workload(300, true);
    let t = TempDir::new("spool");
    let db = t.path("r.db");
    let o = run_reported(&config("chat.yaml"), &db, &input);
    assert_eq!(o.status.code(), Some(128 + 11), "it dies as it would have");
    let spool = t.path("r.db.spool");
    let text: String = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let crash = recs
        .iter()
        .find(|r| r["outcome"] == "program-crash")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(crash["module"], "p11");
    assert_eq!(crash["signal"], 11);
    assert_eq!(crash["process"], "main");
    let f0 = &crash["frames"][0];
    assert!(f0["obj"].as_str().unwrap().ends_with("libchat_p11.so"), "{f0}");
}
