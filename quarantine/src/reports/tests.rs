//! Unit tests of the report database: ingestion, queries, the spool reader.

use super::spool::{read_spool_file, SpoolRead};
use super::*;
use std::io::Write;
use std::path::{Path, PathBuf};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "quarantine-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn event(i: usize, module: &str) -> String {
    format!(
        "{{\"v\":1,\"kind\":\"event\",\"time\":{i}.5,\"program\":\"/bin/x\",\"build_id\":\"ab\",\"pid\":{i},\"process\":\"p\",\"module\":\"{module}\",\"function\":\"f\",\"signal\":11,\"fault_addr\":\"0x0\",\"outcome\":\"crash\",\"env\":\"\",\"detail\":\"d\",\"frames\":[]}}\n"
    )
}

#[test]
fn ingestion_is_idempotent_skips_garbage_and_keeps_partial_lines() {
    let d = tmp("idem");
    let db = d.join("r.db");
    let spool = d.join("r.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut text = event(1, "a") + &event(2, "b");
    text.push_str("not json\n{\"v\":2}\n");
    text.push_str(&event(3, "c")[..20]); // a line still being written
    std::fs::write(spool.join("1-1.jsonl"), &text).unwrap();
    let a = Db::open(&db).unwrap();
    assert_eq!(a.ingested.records, 2);
    assert_eq!(a.ingested.skipped, 2);
    assert_eq!(count_events(&a).unwrap(), 2);
    drop(a);
    let b = Db::open(&db).unwrap();
    assert_eq!(b.ingested.records, 0, "already stored");
    assert_eq!(count_events(&b).unwrap(), 2);
    let rows = summary(&[b]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].crash, 1);
    assert_eq!(rows[0].signals, "11");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn records_of_any_shape_are_stored_or_skipped_never_a_panic() {
    let d = tmp("shapes");
    let db = d.join("r.db");
    let spool = d.join("r.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    let head = r#"{"v":1,"time":1.5,"pid":1,"program":"/bin/x""#;
    let mut text = String::new();
    for line in [
        "[]",
        "0",
        "\"x\"",
        "null",
        "true",
        "{}",
        r#"{"v":"1"}"#,
        r#"{"v":1,"time":"1"}"#,
        r#"{"v":1,"time":1e400,"kind":"run"}"#,
        &format!("{}{}", "[".repeat(200), "]".repeat(200)),
    ] {
        text += line;
        text += "\n";
    }
    for body in [
        r#""kind":"event","outcome":"crash","frames":[7,"x",null,[1],{"obj":5,"off":{}}]"#,
        r#""kind":"event","outcome":"crash","frames":{"a":1},"module":[1],"signal":"x""#,
        r#""kind":"event","outcome":"crash","frames":[{"obj":"/dev/zero","off":"0x10"}]"#,
        r#""kind":"event","outcome":["crash"]"#,
        r#""kind":"run","calls":[3,"x",{"calls":"many"},{"calls":1e300}],"isolated":5"#,
        r#""kind":"run","calls":{"a":1},"exit":"0""#,
        r#""kind":[1]"#,
        r#""kind":"run","calls":[{"calls":-5,"crashes":-9223372036854775808}]"#,
    ] {
        text += &format!("{head},{body}}}\n");
    }
    std::fs::write(spool.join("1-1.jsonl"), &text).unwrap();
    let a = Db::open(&db).unwrap();
    assert_eq!(a.ingested.records, 6, "{:?}", a.ingested);
    assert_eq!(a.ingested.skipped, 12);
    assert_eq!(count_events(&a).unwrap(), 3);
    let rows = summary(&[a]).unwrap();
    assert!(rows.iter().all(|r| r.clean_calls < 1 << 40), "{rows:?}");
    let _ = std::fs::remove_dir_all(d);
}

// `SUM(calls) - SUM(crashes)` became a REAL past i64 (and SUM fails on overflow), so
// two runs with huge counts made `fracture report` and `fracture plan` fail on the
// database for good ("Invalid column type Real").
#[test]
fn clean_calls_past_i64_do_not_break_report_or_plan() {
    let d = tmp("sum");
    let db = d.join("r.db");
    let spool = d.join("r.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    let run = r#"{"v":1,"kind":"run","time":1.5,"pid":1,"program":"/bin/x","calls":[{"process":"p","module":"m","function":"f","calls":9223372036854775807,"crashes":-1}]}"#;
    std::fs::write(spool.join("1-1.jsonl"), format!("{run}\n{run}\n{run}\n")).unwrap();
    let a = Db::open(&db).unwrap();
    assert_eq!(a.ingested.records, 3);
    let dbs = [a];
    let rows = summary(&dbs).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].clean_calls,
        u64::MAX,
        "three sums of i64::MAX saturate"
    );
    let h = module_history(&dbs, &|_, _| true).unwrap();
    assert_eq!((h["m"].failures, h["m"].clean), (0, u64::MAX));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn concurrent_writers_and_ingesters_lose_nothing() {
    let d = tmp("conc");
    let db = d.join("r.db");
    let spool = d.join("r.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                // As the shim does: created under a name ingesters skip, locked, renamed.
                let path = spool.join(format!("{w}-0.jsonl"));
                let new = spool.join(format!("{w}-0.jsonl.new"));
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&new)
                    .unwrap();
                f.lock_shared().unwrap();
                std::fs::rename(&new, &path).unwrap();
                for i in 0..200 {
                    f.write_all(event(w * 1000 + i, "m").as_bytes()).unwrap();
                    if i % 50 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            })
        })
        .collect();
    let ingesters: Vec<_> = (0..3)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    Db::open(&db).unwrap();
                }
            })
        })
        .collect();
    for t in writers.into_iter().chain(ingesters) {
        t.join().unwrap();
    }
    let last = Db::open(&db).unwrap();
    assert_eq!(count_events(&last).unwrap(), 800);
    let _ = std::fs::remove_dir_all(d);
}

/// `f()` on another thread, failing the test if it has not answered within a minute (a
/// watchdog: the reads below once blocked forever).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("watchdog: still reading after a minute")
}

fn read_outcome(path: &Path) -> String {
    let p = path.to_path_buf();
    bounded(move || match read_spool_file(&p) {
        SpoolRead::Ok { data, .. } => format!("ok {} bytes", data.len()),
        SpoolRead::Gone => "gone".into(),
        SpoolRead::Bad(why) => format!("bad {why}"),
        SpoolRead::Unreadable(why) => format!("unreadable {why}"),
    })
}

#[test]
fn spool_reader_reads_regular_files_only_and_never_blocks() {
    let d = tmp("kinds");
    let file = d.join("1-1.jsonl");
    std::fs::write(&file, event(1, "a")).unwrap();
    assert_eq!(
        read_outcome(&file),
        format!("ok {} bytes", event(1, "a").len())
    );
    assert_eq!(read_outcome(&d.join("missing.jsonl")), "gone");
    let fifo = d.join("f.jsonl");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(read_outcome(&fifo), "bad is a FIFO");
    let link = d.join("l.jsonl");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert_eq!(read_outcome(&link), "bad is a symbolic link");
    let dir = d.join("d.jsonl");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(read_outcome(&dir), "bad is a directory");
    // One byte over the bound, sparse: refused from its size, never read.
    let big = d.join("big.jsonl");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_SPOOL_FILE + 1)
        .unwrap();
    assert!(
        read_outcome(&big).starts_with("bad is larger than 64 MiB"),
        "{}",
        read_outcome(&big)
    );
    let at_bound = d.join("at.jsonl");
    std::fs::File::create(&at_bound)
        .unwrap()
        .set_len(MAX_SPOOL_FILE)
        .unwrap();
    assert_eq!(
        read_outcome(&at_bound),
        format!("ok {MAX_SPOOL_FILE} bytes")
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn has_events_reads_only_the_pids_own_files_and_ignores_run_summaries() {
    let d = tmp("has");
    let db = d.join("r.db");
    assert_eq!(spool_dir_of(&db), d.join("r.db.spool"));
    assert!(!has_events(&spool_dir_of(&db), 1), "no spool directory");
    let spool = spool_dir_of(&db);
    std::fs::create_dir_all(&spool).unwrap();
    let run = "{\"v\":1,\"kind\":\"run\",\"time\":1.5,\"pid\":1,\"calls\":[]}\n";
    std::fs::write(spool.join("1-5.jsonl"), format!("{run}not json\n")).unwrap();
    // Pid 12's file starts with "1" but is not pid 1's.
    std::fs::write(spool.join("12-5.jsonl"), event(12, "m")).unwrap();
    assert!(!has_events(&spool_dir_of(&db), 1), "a run summary only");
    assert!(has_events(&spool_dir_of(&db), 12));
    assert!(!has_events(&spool_dir_of(&db), 2));
    // A line still being written is no event yet; once complete, it is.
    let partial = event(1, "m");
    std::fs::write(spool.join("1-6.jsonl"), &partial[..partial.len() - 10]).unwrap();
    assert!(!has_events(&spool_dir_of(&db), 1));
    std::fs::write(spool.join("1-6.jsonl"), &partial).unwrap();
    assert!(has_events(&spool_dir_of(&db), 1));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_database_of_schema_1_is_migrated_and_keeps_its_records() {
    let d = tmp("migrate");
    let db = d.join("r.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(super::db::SCHEMA_1).unwrap();
        c.execute(
            "INSERT INTO events (spool, offset, time, program, build_id, pid, process, module,
               function, signal, fault_addr, outcome, env, detail, frames, backtrace)
             VALUES ('1-1.jsonl', 0, 1.5, '/bin/x', 'ab', 1, 'p', 'old', 'f', 11, '0x0', 'crash',
               '', '', '[]', '')",
            [],
        )
        .unwrap();
    }
    let spool = spool_dir_of(&db);
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("2-1.jsonl"), event(2, "new")).unwrap();
    let a = Db::open(&db).unwrap();
    let version: i64 = a
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let rows = summary(&[a]).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.module.as_str()).collect();
    assert_eq!(names, ["new", "old"]);
    // The new record names this host's deployment (it had none); the old one keeps ''.
    let a = Db::open(&db).unwrap();
    let deps: Vec<String> = a
        .events()
        .unwrap()
        .into_iter()
        .map(|e| e.deployment)
        .collect();
    assert_eq!(deps.len(), 2);
    assert!(deps.contains(&String::new()));
    assert!(deps.contains(&module_map::vars::deployment()));
    // A database from a newer fracture is refused, not damaged.
    a.conn().pragma_update(None, "user_version", 99).unwrap();
    drop(a);
    let e = Db::open(&db).err().unwrap();
    assert!(
        format!("{e:#}").contains("newer than this fracture knows"),
        "{e:#}"
    );
    let _ = std::fs::remove_dir_all(d);
}
