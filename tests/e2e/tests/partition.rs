//! Profiles and partitions (issue 5) on the event-loop fixture fx_chat: calls and bytes per
//! calling module, modules of one object told apart, the cut that keeps a chatty pair in one
//! helper, a plan that takes its cost into account, and the graph drawn as SVG.

use crate::quarantine::{fracture_cmd, fracture_ok, workload};
use crate::util::*;
use std::path::Path;
use std::process::Output;

/// Profiles fx_chat under chat.yaml on `input` into the graph `g` (reports in `db`).
fn profile_chat(input: &[u8], g: &Path, db: &Path) -> Output {
    run_with(
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
            db,
        ),
        input,
        WATCHDOG,
    )
}

#[test]
fn profile_counts_calls_and_bytes_per_calling_module() {
    let input = workload(1000, false);
    let want = ok(run_with(plain(&fixture("fx_chat"), &[]), &input, WATCHDOG));
    let t = TempDir::new("profile");
    let g = t.path("g.json");
    let o = profile_chat(&input, &g, &t.path("r.db"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        want,
        "a profiled run prints what a plain run prints"
    );
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
    let p03_bytes = edge("main", "p03_parse").unwrap()["bytes_in"]
        .as_u64()
        .unwrap();
    let p03_calls = edge("main", "p03_parse").unwrap()["calls"]
        .as_u64()
        .unwrap();
    // bytes_in of a str argument counts its NUL: characters = bytes - calls.
    assert_eq!(esc["calls"].as_u64().unwrap(), p03_bytes - p03_calls);
    assert!(edge("main", "util_escape").is_none());
    // out:arg2 with a 4096-byte buffer: every parse moves 4096 bytes back.
    assert_eq!(
        edge("main", "p03_parse").unwrap()["bytes_out"]
            .as_u64()
            .unwrap(),
        p03_calls * 4096
    );
    let cal = &g["calibration"];
    assert!(cal["per_call_ns"].as_f64().unwrap() > 0.0, "{cal}");
    assert!(cal["per_byte_ns"].as_f64().unwrap() >= 0.0, "{cal}");
    // The wake-up of a sleeping helper is calibrated too (its size is for the bench: parallel
    // tests on two CPUs make hot calls as slow as cold ones).
    assert!(cal["per_cold_call_ns"].as_f64().unwrap() >= 0.0, "{cal}");
    // Every module's first call is cold; a module called per character (util from p03) is
    // mostly warm.
    for e in g["edges"].as_array().unwrap() {
        let (calls, cold) = (
            e["calls"].as_u64().unwrap(),
            e["cold_calls"].as_u64().unwrap(),
        );
        assert!(cold <= calls, "{e}");
    }
    assert!(edge("main", "util_version").unwrap()["cold_calls"] == 1);
    let esc = edge("p03", "util_escape").unwrap();
    assert!(
        esc["cold_calls"].as_u64().unwrap() * 2 < esc["calls"].as_u64().unwrap(),
        "{esc}"
    );
    assert!(g["duration_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn partition_puts_the_chatty_pair_in_one_helper_and_writes_a_working_map() {
    let input = workload(2000, false);
    let t = TempDir::new("part");
    let db = t.path("r.db");
    let g = t.path("g.json");
    let o = profile_chat(&input, &g, &db);
    assert!(o.status.success(), "{}", stderr(&o));
    let map = t.path("p03.yaml");
    let dot = t.path("p03.dot");
    let out = fracture_ok(
        &[
            "partition",
            g.to_str().unwrap(),
            "--isolate",
            "p03",
            "-o",
            map.to_str().unwrap(),
            "--dot",
            dot.to_str().unwrap(),
        ],
        &db,
    );
    // p03 calls util for every character; main calls util once: they go together.
    assert!(
        out.starts_with("isolate p03: one helper with [p03, util]"),
        "{out}"
    );
    assert!(out.contains("main -> p03.p03_parse"), "{out}");
    assert!(!out.contains("p03 -> util"), "{out}");
    let d = std::fs::read_to_string(&dot).unwrap();
    assert!(
        d.contains("\"main\" -> \"p03\"") && d.contains("color=red"),
        "{d}"
    );
    // The map it wrote runs the workload with the pair in one helper.
    let st = t.path("s.json");
    Twin::new(&map, &fixture("fx_chat"), &[])
        .stdin(&input)
        .stats(&st)
        .same_as_plain();
    let s = stats(&st);
    assert!(calls(&s, "isolated_p03", "p03_parse") > 0);
    // Bad input: an unknown module, a graph that is not one.
    let o = run_with(
        fracture_cmd(
            &["partition", g.to_str().unwrap(), "--isolate", "nope"],
            &db,
        ),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("module `nope` is not in the graph"),
        "{}",
        stderr(&o)
    );
    let bad = t.write("bad.json", "{\"edges\": 3}");
    let o = run_with(
        fracture_cmd(
            &["partition", bad.to_str().unwrap(), "--isolate", "p03"],
            &db,
        ),
        b"",
        WATCHDOG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("fracture: error:"), "{}", stderr(&o));
}

#[test]
fn profile_tells_two_modules_of_one_object_apart_by_symbol() {
    // fx_add3 (module front) calls fx_add (module adder) through libfx.so's own PLT; both
    // modules name the same object. Python's ctypes loads libfx with dlopen.
    let py = [
        "/usr/bin/python3",
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("an ELF python3");
    let t = TempDir::new("split");
    let map = t.write(
        "split.yaml",
        "modules:\n  adder:\n    object: libfx.so\n    functions:\n      fx_add: {args: [val, val], effect: pure}\n  front:\n    object: libfx.so\n    functions:\n      fx_add3: {args: [val, val, val], effect: pure}\nprocesses: {}\n",
    );
    let script = format!(
        "import ctypes\nl = ctypes.CDLL('{}')\nprint(sum(l.fx_add3(i, 1, 2) for i in range(10)), l.fx_add(2, 3))\n",
        fixture("libfx.so").display()
    );
    let g = t.path("g.json");
    let o = run_with(
        fracture_cmd(
            &[
                "profile",
                "-c",
                map.to_str().unwrap(),
                "-o",
                g.to_str().unwrap(),
                "--",
                py,
                "-c",
                &script,
            ],
            &t.path("r.db"),
        ),
        b"",
        WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "75 5\n");
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&g).unwrap()).unwrap();
    let calls = |caller: &str, func: &str| {
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["caller"] == caller && e["function"] == func)
            .map(|e| e["calls"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(calls("main", "fx_add3"), 10);
    // The inner fx_add of each fx_add3 returns into fx_add3: module front. (The outer one is a
    // tail call: its return address is fx_add3's caller's.)
    assert_eq!(calls("front", "fx_add"), 10, "{g}");
    assert_eq!(calls("adder", "fx_add"), 0);
}

#[test]
fn optimistic_plan_with_a_profile_isolates_the_culprit_with_its_chatty_neighbour() {
    // A report of crashes in p03 (as another deployment's spool would hold them), and a
    // profile in which p03 calls util for every character: the plan puts both in one helper.
    let input = workload(1000, false);
    let t = TempDir::new("plan-prof");
    let db = t.path("r.db");
    let g = t.path("g.json");
    let o = profile_chat(&input, &g, &db);
    assert!(o.status.success(), "{}", stderr(&o));
    let spool = t.path("r.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    let rec = |i: u32| {
        format!(
            "{{\"v\":1,\"kind\":\"event\",\"time\":{i}.0,\"program\":\"{}\",\"build_id\":\"\",\"pid\":{i},\"process\":\"q\",\"module\":\"p03\",\"function\":\"p03_parse\",\"signal\":11,\"fault_addr\":\"0x0\",\"outcome\":\"crash\",\"env\":\"\",\"detail\":\"\",\"frames\":[]}}\n",
            fixture("fx_chat").display()
        )
    };
    std::fs::write(spool.join("7-7.jsonl"), rec(1) + &rec(2)).unwrap();
    let next = t.path("next.yaml");
    let o = run_with(
        fracture_cmd(
            &[
                "plan",
                "--db",
                db.to_str().unwrap(),
                "--profile",
                g.to_str().unwrap(),
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
    assert!(
        stderr(&o).contains("p03: 2 failures; isolated with [p03, util]"),
        "{}",
        stderr(&o)
    );
    let map: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&next).unwrap()).unwrap();
    let mods: Vec<&str> = map["processes"]["q_p03"]["modules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert_eq!(mods, ["p03", "util"]);
    // And the planned map runs the workload as a plain run prints it.
    Twin::new(&next, &fixture("fx_chat"), &[])
        .stdin(&input)
        .env("FRACTURE_REPORTS", &db)
        .same_as_plain();
}

#[test]
fn partition_draws_the_graph_and_its_cut_as_svg_without_graphviz() {
    // The profile as in partition_puts_the_chatty_pair_in_one_helper_and_writes_a_working_map.
    let input = workload(2000, false);
    let t = TempDir::new("partsvg");
    let db = t.path("r.db");
    let g = t.path("g.json");
    let o = profile_chat(&input, &g, &db);
    assert!(o.status.success(), "{}", stderr(&o));
    // No `dot` on the PATH; `--dot` beside the same name leaves the drawing to `--svg`.
    let svg = t.path("p03.svg");
    let mut c = fracture_cmd(
        &[
            "partition",
            g.to_str().unwrap(),
            "--isolate",
            "p03",
            "--dot",
            t.path("p03.dot").to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
        &db,
    );
    c.env("PATH", t.path("no-bin"));
    let o = run_with(c, b"", WATCHDOG);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains(&format!("wrote {}", svg.display())), "{out}");
    assert!(!out.contains("Graphviz"), "{out}");
    let cut_edges: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("boundary (")?.strip_suffix(" edges):"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no boundary line: {out}"));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let classed = |n: &roxmltree::Node, c: &str| {
        n.attribute("class")
            .is_some_and(|v| v.split(' ').any(|x| x == c))
    };
    let nodes = |c: &str| -> Vec<String> {
        let mut v: Vec<String> = doc
            .descendants()
            .filter(|n| classed(n, "node") && classed(n, c))
            .flat_map(|n| n.children().filter(|t| classed(t, "module")))
            .map(|t| t.text().unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    };
    // The chatty pair on the helper side, the isolated module marked, main with the program.
    assert_eq!(nodes("helper"), ["p03", "util"], "{text}");
    assert_eq!(nodes("isolated"), ["p03"], "{text}");
    let program = nodes("program");
    assert!(program.contains(&"main".to_string()), "{program:?}");
    assert!(!program.iter().any(|m| m == "p03" || m == "util"));
    // Each arrow stands for the profile's edges between two modules: the cut ones add up to
    // the boundary the report printed.
    let cut: usize = doc
        .descendants()
        .filter(|n| n.has_tag_name("path") && classed(n, "edge") && classed(n, "cut"))
        .map(|n| n.attribute("data-edges").unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(cut > 0);
    assert_eq!(cut, cut_edges, "{out}\n{text}");
    // It opens in a real browser: the helper side's fill, the program side's and the cut's
    // red are on the screen.
    let (_, _, px) = screenshot(&svg, 1400, 1000, &t);
    let (helper, program, red) = (
        pixels_of(&px, "#fde9d9"),
        pixels_of(&px, "#dde8f6"),
        pixels_of(&px, "#c62828"),
    );
    assert!(
        helper > 500 && program > 2000 && red > 50,
        "{helper} {program} {red}"
    );
}
