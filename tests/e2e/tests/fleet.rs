//! The fleet (issue 13): crash reports of several deployments in one PostgreSQL store, uploads
//! that are idempotent and never block the program, plans made from every deployment's
//! reports.
//!
//! The server is real: `make test` starts a private one (`tests/pg/server.sh`) and passes
//! its URL in `FRACTURE_TEST_POSTGRES`; each test gets its own database, dropped at the end.
//! "Deployments" are told apart by `FRACTURE_DEPLOYMENT` and each has its own spool, as two
//! hosts would.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh database on the test server.
struct Pg {
    admin: String,
    name: String,
    url: String,
}

impl Pg {
    fn new(tag: &str) -> Pg {
        let admin = std::env::var("FRACTURE_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!(
                "FRACTURE_TEST_POSTGRES is not set: run the tests with `make test`, which starts \
                 a PostgreSQL server (tests/pg/server.sh)"
            )
        });
        let name = format!(
            "fleet_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("test server");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Pg { admin, name, url }
    }

    fn count(&self, sql: &str) -> i64 {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        c.query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A deployment: its name and its own spool, reporting to `store`.
struct Deployment {
    name: String,
    spool: PathBuf,
    store: String,
}

impl Deployment {
    fn new(t: &TempDir, name: &str, store: &str) -> Deployment {
        Deployment {
            name: name.into(),
            spool: t.path(&format!("{name}.spool")),
            store: store.into(),
        }
    }

    fn env(&self, c: &mut Command) {
        c.env("FRACTURE_REPORTS", &self.store)
            .env("FRACTURE_SPOOL", &self.spool)
            .env("FRACTURE_DEPLOYMENT", &self.name);
    }

    /// `fracture run -c MAP -- fx_chat` with `input`, reporting.
    fn run(&self, map: &Path, sets: &[&str], input: &[u8]) -> std::process::Output {
        let mut c = under(map, sets, &fixture("fx_chat"), &[]);
        self.env(&mut c);
        run_with(c, input, WATCHDOG)
    }

    /// A `fracture` subcommand on this deployment.
    fn fracture(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(fracture());
        c.args(args)
            .env_remove("LD_PRELOAD")
            .env_remove("FRACTURE_CONFIG");
        self.env(&mut c);
        run_with(c, b"", WATCHDOG)
    }

    fn spooled(&self) -> usize {
        std::fs::read_dir(&self.spool)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// fx_chat input: `n` ordinary events, and with `crash` the rare one that crashes p11.
fn chat_input(n: usize, crash: bool) -> Vec<u8> {
    let all = ok(run_with(
        plain(&fixture("fx_chat"), &["--gen", &(n.max(2000)).to_string()]),
        b"",
        WATCHDOG,
    ));
    let mut lines: Vec<&str> = all
        .lines()
        .filter(|l| !l.contains("BUZZ"))
        .take(n)
        .collect();
    let buzz = all
        .lines()
        .find(|l| l.contains("BUZZ"))
        .expect("a BUZZ event in 2000");
    if crash {
        lines.push(buzz);
    }
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn plan_args<'a>(store: &'a str, map: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["plan", "--db", store, "-c", map, "-o", out];
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_module_that_crashed_on_one_deployment_is_isolated_on_another_before_it_crashes_there() {
    let pg = Pg::new("coop");
    let t = TempDir::new("fleet-coop");
    let (a, b) = (
        Deployment::new(&t, "web-1", &pg.url),
        Deployment::new(&t, "web-2", &pg.url),
    );
    let crash = chat_input(300, true);
    // web-1 isolates nothing and dies on the rare input; its record reaches the store when
    // `fracture run` ends.
    let o = a.run(&config("chat.yaml"), &[], &crash);
    assert_eq!(o.status.code(), Some(139), "{}", stderr(&o));
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE deployment = 'web-1' AND module = 'p11'"),
        1
    );
    // web-2 has never crashed; its plan, from the fleet's reports, isolates p11.
    let next = t.path("next.yaml");
    let chat = config("chat.yaml");
    let fx = fixture("fx_chat");
    let o = b.fracture(&plan_args(
        &pg.url,
        chat.to_str().unwrap(),
        next.to_str().unwrap(),
        &["--program", fx.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("p11: 1 failures (on web-1)"),
        "{}",
        stderr(&o)
    );
    let map: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&next).unwrap()).unwrap();
    assert_eq!(map["processes"]["q_p11"]["modules"][0], "p11");
    assert_eq!(map["processes"].as_mapping().unwrap().len(), 1);
    // ... and the rare input does not bring web-2 down.
    let o = b.run(&next, &[], &crash);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("[p11: message dropped]"),
        "{}",
        stdout(&o)
    );
    // The report merges both deployments.
    let o = b.fracture(&["report", "--db", &pg.url]);
    let rep = ok(o);
    let row = rep
        .lines()
        .find(|l| l.starts_with("p11 "))
        .unwrap_or_else(|| panic!("{rep}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[6], "1", "web-1's program crash: {rep}");
    assert_eq!(cells[10], "2", "two deployments: {rep}");
    assert!(
        !rep.contains("fracture:fracture"),
        "no password in output: {rep}"
    );
}

#[test]
fn a_store_that_is_down_leaves_the_records_in_the_spool_and_sync_uploads_them_once() {
    let pg = Pg::new("down");
    let t = TempDir::new("fleet-down");
    // Nothing listens on port 1.
    let down = Deployment::new(
        &t,
        "edge",
        "postgresql://fracture:fracture@127.0.0.1:1/nope",
    );
    let crash = chat_input(50, true);
    let plain_out = run_with(plain(&fixture("fx_chat"), &[]), &crash, WATCHDOG);
    let o = down.run(&config("chat.yaml"), &[], &crash);
    // The program is unaffected: the same output and status as without fracture.
    assert_eq!(o.status.code(), shell_status(&plain_out.status));
    assert_eq!(stdout(&o), stdout(&plain_out));
    assert!(stderr(&o).contains("stay in the spool"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("fracture:fracture"), "{}", stderr(&o));
    assert_eq!(down.spooled(), 1);
    // A clean run while the store is down adds its summary to the spool.
    let o = down.run(
        &config("chat.yaml"),
        &["--set", "processes={q: {modules: [p03]}}"],
        &chat_input(50, false),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(down.spooled(), 2);
    // The store is back (here: the right URL): sync moves both records, once.
    let up = Deployment {
        store: pg.url.clone(),
        ..down
    };
    let o = up.fracture(&["sync"]);
    let out = ok(o);
    assert!(out.contains("2 new records from 2 spool files"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = ok(up.fracture(&["sync", "--db", &pg.url]));
    assert!(out.contains(": 0 new records"), "already stored: {out}");
    assert_eq!(pg.count("SELECT COUNT(*) FROM events"), 1);
    assert_eq!(pg.count("SELECT COUNT(*) FROM runs"), 1);
    assert!(pg.count("SELECT COUNT(*) FROM run_calls WHERE module = 'p03'") == 1);
    assert_eq!(
        up.spooled(),
        0,
        "stored files whose writer is gone are removed"
    );
    // Every record names its deployment and the program's build-id.
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE deployment = 'edge' AND length(build_id) = 40"),
        1
    );
}

#[test]
fn a_hundred_concurrent_writers_on_two_deployments_lose_and_duplicate_nothing() {
    let pg = Pg::new("hundred");
    let t = TempDir::new("fleet-100");
    let crash = std::sync::Arc::new(chat_input(20, true));
    let deps = std::sync::Arc::new([
        Deployment::new(&t, "host-a", &pg.url),
        Deployment::new(&t, "host-b", &pg.url),
    ]);
    // 100 programs at once, 50 per deployment, each dying with one record that `fracture
    // run` uploads when it ends, together with whatever else is in its deployment's spool
    // (so uploads of the same files race each other).
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let (crash, deps) = (crash.clone(), deps.clone());
            std::thread::spawn(move || {
                let o = deps[i % 2].run(&config("chat.yaml"), &[], &crash);
                assert_eq!(o.status.code(), Some(139), "{}", stderr(&o));
                assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for d in deps.iter() {
        ok(d.fracture(&["sync"]));
    }
    assert_eq!(pg.count("SELECT COUNT(*) FROM events"), 100);
    assert_eq!(
        pg.count("SELECT COUNT(DISTINCT (deployment, pid)) FROM events"),
        100,
        "one record per program"
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE deployment = 'host-a'"),
        50
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE deployment = 'host-b'"),
        50
    );
}

#[test]
fn the_pessimistic_plan_counts_clean_calls_of_every_deployment() {
    let pg = Pg::new("pess");
    let t = TempDir::new("fleet-pess");
    let (a, b) = (
        Deployment::new(&t, "a", &pg.url),
        Deployment::new(&t, "b", &pg.url),
    );
    let input = chat_input(300, false);
    let set = ["--set", "processes={q_p03: {modules: [p03]}}"];
    let mut calls = 0;
    for d in [&a, &b] {
        let st = t.path(&format!("{}.json", d.name));
        let mut args = set.to_vec();
        let st_s = st.to_str().unwrap().to_string();
        args.extend(["--stats", &st_s]);
        let o = d.run(&config("chat.yaml"), &args, &input);
        assert!(o.status.success(), "{}", stderr(&o));
        calls = calls.max(crate::util::calls(&stats(&st), "q_p03", "p03_parse"));
    }
    assert!(calls > 10, "{calls}");
    // More clean calls than either deployment made, fewer than both together.
    let need = (calls * 3 / 2).to_string();
    let chat = config("chat.yaml");
    let next = t.path("next.yaml");
    let o = a.fracture(&plan_args(
        &pg.url,
        chat.to_str().unwrap(),
        next.to_str().unwrap(),
        &["--strategy", "pessimistic", "--min-clean-calls", &need],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("p03: ") && stderr(&o).contains("no failure: merged back"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&next).unwrap();
    assert!(!text.contains("[p03]"), "{text}");
}

#[test]
fn a_plan_for_a_build_leaves_out_the_crashes_of_other_builds() {
    let pg = Pg::new("build");
    let t = TempDir::new("fleet-build");
    let d = Deployment::new(&t, "old", &pg.url);
    // A crash recorded by another build of fx_chat (another build-id), at the same path.
    std::fs::create_dir_all(&d.spool).unwrap();
    let fx = fixture("fx_chat");
    std::fs::write(
        d.spool.join("1-1.jsonl"),
        format!(
            "{{\"v\":1,\"kind\":\"event\",\"time\":1.5,\"program\":\"{}\",\"build_id\":\"{}\",\"deployment\":\"old\",\"pid\":1,\"process\":\"main\",\"module\":\"p07\",\"function\":\"p07_parse\",\"signal\":11,\"fault_addr\":\"0x0\",\"outcome\":\"program-crash\",\"env\":\"\",\"detail\":\"\",\"frames\":[]}}\n",
            fx.display(),
            "ab".repeat(20)
        ),
    )
    .unwrap();
    assert!(ok(d.fracture(&["sync"])).contains("1 new records"));
    let chat = config("chat.yaml");
    let next = t.path("next.yaml");
    let o = d.fracture(&plan_args(
        &pg.url,
        chat.to_str().unwrap(),
        next.to_str().unwrap(),
        &["--program", fx.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 failures reported for other builds of the program were left out"),
        "{}",
        stderr(&o)
    );
    assert!(!std::fs::read_to_string(&next).unwrap().contains("q_p07"));
    // Without --program (and no `target` in the map), every build counts.
    let o = d.fracture(&plan_args(
        &pg.url,
        chat.to_str().unwrap(),
        next.to_str().unwrap(),
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&next).unwrap().contains("q_p07"));
}

#[test]
fn bad_store_urls_are_clear_errors_without_the_password() {
    let t = TempDir::new("fleet-bad");
    let d = Deployment::new(&t, "x", "postgresql://fracture:s3cret@127.0.0.1:1/x");
    for args in [vec!["report"], vec!["sync"]] {
        let o = d.fracture(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(
                "cannot connect to the report store postgresql://fracture:***@127.0.0.1:1/x"
            ),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }
    let o = d.fracture(&["report", "--db", "postgresql://[::1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a PostgreSQL URL"),
        "{}",
        stderr(&o)
    );
}

/// Runs `cmd` feeding `input` a line every `gap`, as events arrive in an event loop (so a
/// sampled observer under valgrind is idle between them and takes pure calls too); killed
/// after [`WATCHDOG`].
fn run_paced(mut cmd: Command, input: &[u8], gap: std::time::Duration) -> std::process::Output {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<Vec<u8>> = input
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let feeder = std::thread::spawn(move || {
        for l in lines {
            if stdin.write_all(&l).is_err() {
                break;
            }
            std::thread::sleep(gap);
        }
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while !d2.load(std::sync::atomic::Ordering::Relaxed) {
            if t0.elapsed() > WATCHDOG {
                // The whole process group: fracture, the program and its helpers.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    feeder.join().unwrap();
    let o = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    o
}

#[test]
fn valgrind_slices_give_two_deployments_different_modules_and_the_store_holds_both_findings() {
    let pg = Pg::new("vg");
    let t = TempDir::new("fleet-vg");
    let deps = [
        Deployment::new(&t, "web-1", &pg.url),
        Deployment::new(&t, "web-2", &pg.url),
    ];
    let chat = config("chat.yaml");
    // Each deployment's plan: its slice of the 16 modules, sampled under valgrind.
    let mut slices = Vec::new();
    for (i, d) in deps.iter().enumerate() {
        let out = t.path(&format!("vg{}.yaml", i + 1));
        let k = (i + 1).to_string();
        let o = d.fracture(&plan_args(
            &pg.url,
            chat.to_str().unwrap(),
            out.to_str().unwrap(),
            &[
                "--strategy",
                "valgrind-slices",
                "--deployment",
                &k,
                "--deployments",
                "2",
            ],
        ));
        assert!(o.status.success(), "{}", stderr(&o));
        let map: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let p = &map["processes"][format!("valgrind_{k}").as_str()];
        let wrapper = p["sample"]["envs"][1]["wrapper"].as_sequence().unwrap();
        assert_eq!(wrapper[0], "valgrind");
        assert!(wrapper.iter().any(|w| w == "--xml=yes"));
        let mods: Vec<String> = p["modules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        slices.push((out, mods));
    }
    let (a, b) = (&slices[0].1, &slices[1].1);
    assert!(a.iter().all(|m| !b.contains(m)), "disjoint: {a:?} {b:?}");
    assert_eq!(
        a.len() + b.len(),
        16,
        "every module checked once: {a:?} {b:?}"
    );
    assert!(a.contains(&"p08".to_string()) && b.contains(&"p05".to_string()));
    // Each deployment runs its plan on a paced workload: the output is the plain run's.
    // 800 events over 8 s: valgrind takes a second or two to start on a loaded machine, and
    // more under the whole suite (with 400 over 4 s, web-1's first valgrind run found
    // nothing in 3 of 7 runs of the suite this stop, probably because its calls went by
    // while it started).
    let input = chat_input(800, false);
    let want = ok(run_with(plain(&fixture("fx_chat"), &[]), &input, WATCHDOG));
    for (d, (map, _)) in deps.iter().zip(&slices) {
        let mut c = under(map, &[], &fixture("fx_chat"), &[]);
        d.env(&mut c);
        let o = run_paced(c, &input, std::time::Duration::from_millis(10));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), want);
        ok(d.fracture(&["sync"]));
    }
    // The store holds web-1's finding in p08 (a branch on uninitialised memory) and web-2's
    // in p05 (the leak), charged to module and function, and nothing of fracture's own.
    let vg = |dep: &str, module: &str, kind: &str| {
        pg.count(&format!(
            "SELECT COUNT(*) FROM events WHERE outcome = 'valgrind' AND deployment = '{dep}' \
             AND module = '{module}' AND function = '{module}_parse' AND detail LIKE '{kind}:%'"
        ))
    };
    assert_eq!(vg("web-1", "p08", "UninitCondition"), 1);
    assert_eq!(vg("web-2", "p05", "Leak_DefinitelyLost"), 1);
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE outcome = 'valgrind' AND module NOT IN ('p05', 'p08')"),
        0
    );
    let rep = ok(deps[0].fracture(&["report"]));
    for m in ["p05 ", "p08 "] {
        let row = rep
            .lines()
            .find(|l| l.starts_with(m))
            .unwrap_or_else(|| panic!("{rep}"));
        assert_eq!(row.split_whitespace().nth(7), Some("1"), "{rep}");
    }
}

#[test]
fn the_html_report_renders_in_a_real_browser_with_crashes_costs_and_the_plan() {
    let t = TempDir::new("fleet-html");
    let db = t.path("r.db");
    let d = Deployment::new(&t, "web-1", db.to_str().unwrap());
    // A crash of the program in p11, and a profile of a clean run for the costs.
    let o = d.run(&config("chat.yaml"), &[], &chat_input(300, true));
    assert_eq!(o.status.code(), Some(139), "{}", stderr(&o));
    let graph = t.path("g.json");
    let mut c = Command::new(fracture());
    c.args(["profile", "-c"])
        .arg(config("chat.yaml"))
        .arg("-o")
        .arg(&graph)
        .arg("--")
        .arg(fixture("fx_chat"))
        .env_remove("LD_PRELOAD");
    ok(run_with(c, &chat_input(300, false), WATCHDOG));
    let html = t.path("report.html");
    let o = d.fracture(&[
        "report",
        "--html",
        html.to_str().unwrap(),
        "--profile",
        graph.to_str().unwrap(),
        "-c",
        config("chat.yaml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        text.contains("<b>p11</b>") && text.contains("p11: 1 failures; isolated"),
        "{text}"
    );
    assert!(
        text.contains("&micro;s/s"),
        "isolation costs from the profile: {text}"
    );
    assert!(
        !text.contains("src=") && !text.contains("href=\"http"),
        "self-contained"
    );
    let (w, h, px) = screenshot(&html, 1100, 1400, &t);
    assert_eq!((w, h), (1100, 1400));
    // Not a blank page: the program crash is drawn twice (its bar and its mark on the
    // timeline) in its colour, and there is text.
    let crash = pixels_of(&px, "#8c1c13");
    assert!(crash > 1500, "program-crash colour: {crash} pixels");
    let white = pixels_of(&px, "#ffffff");
    let total = (w * h) as usize;
    assert!(white < total * 97 / 100, "{white} of {total} pixels white");
    let dark = px
        .chunks(4)
        .filter(|c| c[0] < 80 && c[1] < 80 && c[2] < 80)
        .count();
    assert!(dark > 2000, "text: {dark} dark pixels");
}

#[test]
fn hostile_spool_lines_neither_block_the_store_nor_reach_the_program_the_password() {
    let pg = Pg::new("hostile");
    let t = TempDir::new("fleet-hostile");
    let d = Deployment::new(&t, "h", &pg.url);
    std::fs::create_dir_all(&d.spool).unwrap();
    let rec = |module: &str, pad: usize| {
        format!(
            "{{\"v\":1,\"kind\":\"event\",\"time\":2.5,\"program\":\"/bin/x\",\"build_id\":\"\",\"deployment\":\"h\",\"pid\":3,\"process\":\"p\",\"module\":\"{module}\",\"function\":\"f\",\"signal\":11,\"fault_addr\":\"0x0\",\"outcome\":\"crash\",\"env\":\"\",\"detail\":\"{}\",\"frames\":[]}}\n",
            "x".repeat(pad)
        )
    };
    // A NUL in a name (PostgreSQL refuses NUL in text: once, that stopped every upload), a
    // line longer than the shim ever writes, and an honest record in a later file.
    std::fs::write(
        d.spool.join("1-1.jsonl"),
        rec("nul\\u0000here", 0) + &rec("long", 9000),
    )
    .unwrap();
    std::fs::write(d.spool.join("2-1.jsonl"), rec("honest", 0)).unwrap();
    let o = d.fracture(&["sync"]);
    let out = ok(o);
    assert!(out.contains("2 new records"), "{out}");
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE module = 'honest'"),
        1
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE module = 'nul\u{fffd}here'"),
        1
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events WHERE module = 'long'"),
        0
    );
    // The program under `fracture run` sees the store without its password (and its spool).
    let mut c = under(&config("fx-none.yaml"), &[], Path::new("/usr/bin/env"), &[]);
    d.env(&mut c);
    c.env_remove("FRACTURE_TEST_POSTGRES");
    let env = ok(run_with(c, b"", WATCHDOG));
    assert!(!env.contains(":fracture@"), "{env}");
    assert!(
        env.contains("FRACTURE_REPORTS=postgresql://fracture:***@"),
        "{env}"
    );
    assert!(
        env.contains(&format!("FRACTURE_SPOOL={}", d.spool.display())),
        "{env}"
    );
    assert!(
        pg.url.contains(":fracture@"),
        "the test's URL has the password"
    );
}

// The upload used to ask the early connection "are you there?" before using it: one more
// round trip on every run's exit. Now it goes straight to the upload, and a connection the
// server dropped while the program ran must still cost no record: a new one takes over.
#[test]
fn a_connection_the_server_dropped_during_the_run_is_replaced_and_nothing_is_lost() {
    use std::io::Write;
    let pg = Pg::new("dropped");
    let t = TempDir::new("fleet-dropped");
    let d = Deployment::new(&t, "web-9", &pg.url);
    let input = chat_input(40, true);
    let plain_out = run_with(plain(&fixture("fx_chat"), &[]), &input, WATCHDOG);
    let mut c = under(&config("chat.yaml"), &[], &fixture("fx_chat"), &[]);
    d.env(&mut c);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The launcher's early connection is made and idle while the program waits for its
    // input; the server then ends it, as a restart or an idle timeout would.
    let mut admin = postgres::Client::connect(&pg.admin, postgres::NoTls).unwrap();
    let seen = "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'fracture' \
                AND datname = $1 AND state = 'idle'";
    let t0 = std::time::Instant::now();
    while admin.query_one(seen, &[&pg.name]).unwrap().get::<_, i64>(0) == 0 {
        assert!(t0.elapsed() < WATCHDOG, "no early connection to the store");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ended: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'fracture' AND datname = $1) t",
            &[&pg.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 1);
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), shell_status(&plain_out.status));
    assert_eq!(stdout(&o), stdout(&plain_out));
    assert!(!stderr(&o).contains("stay in the spool"), "{}", stderr(&o));
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM events"),
        1,
        "the crash is stored"
    );
    assert_eq!(d.spooled(), 0);
}
