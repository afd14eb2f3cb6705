//! Crash reports on their way to the database: the spool the shim writes (records, modes, the
//! fault handler) and what `fracture report`, `plan` and `run` make of a spool that holds
//! something the shim never wrote.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// What a test that used to hang waits at most (a watchdog, not a timing test).
const HANG_WATCHDOG: Duration = Duration::from_secs(60);

fn fracture_cmd(args: &[&str], db: &Path) -> Command {
    let mut c = Command::new(fracture());
    c.args(args)
        .env("FRACTURE_REPORTS", db)
        .env_remove("LD_PRELOAD")
        .env_remove("FRACTURE_CONFIG");
    c
}

/// `fracture report --db DB`: asserts success, returns (stdout, stderr).
fn report(db: &Path) -> (String, String) {
    let o = run_with(
        fracture_cmd(&["report", "--db", db.to_str().unwrap()], db),
        b"",
        HANG_WATCHDOG,
    );
    assert!(
        o.status.success(),
        "status {:?}\n{}\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    (stdout(&o), stderr(&o))
}

/// The cells of the report row of `module` `function`.
fn row(rep: &str, module: &str, function: &str) -> Vec<String> {
    rep.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|c| c.len() > 6 && c[0] == module && c[1] == function)
        .unwrap_or_else(|| panic!("no row {module} {function}:\n{rep}"))
}

/// fx_crashy under fx-none.yaml (nothing isolated) with `input`, reports going to `db`.
fn crashy_run(db: &Path, input: &str) -> Output {
    let mut c = under(&config("fx-none.yaml"), &[], &fixture("fx_crashy"), &[]);
    c.env("FRACTURE_REPORTS", db);
    run_with(c, input.as_bytes(), HANG_WATCHDOG)
}

/// A spool record as the shim writes it, with `frames` as given.
fn record(pid: u32, module: &str, frames: &str) -> String {
    format!(
        "{{\"v\":1,\"kind\":\"event\",\"time\":1700000000.5,\"program\":\"/bin/x\",\"build_id\":\"ab\",\"pid\":{pid},\"outcome\":\"program-crash\",\"process\":\"main\",\"module\":\"{module}\",\"function\":\"f\",\"signal\":11,\"fault_addr\":\"0x0\",\"frames\":{frames},\"env\":\"\",\"detail\":\"\"}}\n"
    )
}

/// A spool directory for `db` holding one good record (module `good`) in a file no writer
/// holds, older than the ingester's one-second grace.
fn spool_with_a_good_record(db: &Path) -> PathBuf {
    let spool = PathBuf::from(format!("{}.spool", db.display()));
    std::fs::create_dir_all(&spool).unwrap();
    let good = spool.join("1-1.jsonl");
    std::fs::write(&good, record(1, "good", "[]")).unwrap();
    age(&good);
    spool
}

fn age(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Warning lines of `err` that name `what`.
fn warnings_naming(err: &str, what: &Path) -> usize {
    let name = what.display().to_string();
    err.lines()
        .filter(|l| l.contains("warning") && l.contains(&name))
        .count()
}

// A record whose `frames` held a value that is not an object (`[7]`) panicked the ingester
// (indexing a JSON number), and the file was never removed: every later `report`, `plan`
// and crashing `run` exited 101.
#[test]
fn a_frame_that_is_not_a_json_object_no_longer_panics_ingestion() {
    let t = TempDir::new("nonobj");
    let db = t.path("r.db");
    let spool = spool_with_a_good_record(&db);
    let bad = spool.join("2-2.jsonl");
    let text = record(
        2,
        "weird",
        "[7, \"x\", null, [1], {\"obj\": 5, \"off\": {}}]",
    ) + "[1,2]\n5\n\"s\"\nnull\n"
        + &record(2, "m2", "{\"not\":\"an array\"}");
    std::fs::write(&bad, text).unwrap();
    age(&bad);
    let (rep, _) = report(&db);
    row(&rep, "good", "f");
    // The record itself is kept: only its frames that are not objects are dropped.
    row(&rep, "weird", "f");
    row(&rep, "m2", "f");
    assert!(!bad.exists(), "ingested and removed");
    // And the next commands work too.
    report(&db);
    let plan = t.path("next.yaml");
    let o = run_with(
        fracture_cmd(
            &[
                "plan",
                "--db",
                db.to_str().unwrap(),
                "-c",
                config("fx-none.yaml").to_str().unwrap(),
                "-o",
                plan.to_str().unwrap(),
            ],
            &db,
        ),
        b"",
        HANG_WATCHDOG,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

// A FIFO named x.jsonl in the spool directory hung ingestion (it was opened and read like a
// file): a crashing `fracture run`, and every `report` and `plan`, never returned.
#[test]
fn a_fifo_named_jsonl_in_the_spool_no_longer_hangs_run_or_report() {
    let t = TempDir::new("fifo");
    let db = t.path("r.db");
    let spool = spool_with_a_good_record(&db);
    let fifo = spool.join("x.jsonl");
    let o = Command::new("mkfifo").arg(&fifo).output().unwrap();
    assert!(o.status.success(), "mkfifo: {}", stderr(&o));
    // The crashing run stores its report (and the good one) on its way out.
    let o = crashy_run(&db, "a\nsegv\n");
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(warnings_naming(&err, &fifo), 1, "{err}");
    assert!(!fifo.exists(), "moved aside");
    assert!(spool.join("x.jsonl.bad").exists());
    let (rep, err) = report(&db);
    assert_eq!(row(&rep, "fx", "fx_crash_on")[6], "1", "{rep}");
    row(&rep, "good", "f");
    assert!(!err.contains("x.jsonl"), "warned once: {err}");
}

// A symlink to /dev/zero named z.jsonl in the spool directory made ingestion read forever
// (until memory ran out): `report` never returned.
#[test]
fn a_symlink_to_dev_zero_in_the_spool_no_longer_hangs_report() {
    let t = TempDir::new("devzero");
    let db = t.path("r.db");
    let spool = spool_with_a_good_record(&db);
    let link = spool.join("z.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let (rep, err) = report(&db);
    row(&rep, "good", "f");
    assert_eq!(warnings_naming(&err, &link), 1, "{err}");
    assert!(std::fs::symlink_metadata(&link).is_err(), "moved aside");
    let aside = spool.join("z.jsonl.bad");
    assert!(std::fs::symlink_metadata(&aside).unwrap().is_symlink());
    assert!(
        std::path::Path::new("/dev/zero").exists(),
        "the target is left alone"
    );
    let (_, err) = report(&db);
    assert!(!err.contains("z.jsonl"), "warned once: {err}");
}

// The spool directory was created 0755 and its files 0644 (and SQLite made the database
// 0644): anyone on the machine could read the paths, arguments and addresses of a user's
// crashes.
#[test]
fn a_new_spool_dir_its_files_and_the_database_are_private_to_the_user() {
    let t = TempDir::new("modes");
    let state = t.path("state");
    let db = state.join("fracture/r.db");
    // Preloaded directly, so that no launcher ingests (and removes) the spool file.
    let mut c = preloaded(&config("fx-none.yaml"), &fixture("fx_crashy"), &[]);
    c.env("FRACTURE_REPORTS", &db);
    let o = run_with(c, b"segv\n", WATCHDOG);
    assert_eq!(o.status.code(), None, "killed by SIGSEGV: {}", stderr(&o));
    let spool = state.join("fracture/r.db.spool");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("fracture")), 0o700);
    assert_eq!(mode(&spool), 0o700);
    let files: Vec<PathBuf> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600, "{}", files[0].display());
    // The database: created by `report`, in a directory `report` creates.
    let (rep, _) = report(&db);
    row(&rep, "fx", "fx_crash_on");
    assert_eq!(mode(&db), 0o600);
    let fresh = t.path("fresh/sub/r.db");
    report(&fresh);
    assert_eq!(mode(&t.path("fresh")), 0o700);
    assert_eq!(mode(&t.path("fresh/sub")), 0o700);
    assert_eq!(mode(&fresh), 0o600);
}

// A record longer than the shim's 8 KiB line buffer (long program and library paths, 16
// frames) was cut mid-string: not JSON, so the crash never reached the database.
#[test]
fn a_crash_record_over_8_kib_still_reaches_the_database() {
    let t = TempDir::new("long");
    // 14 components of 200 characters: paths of some 2.8 KiB, for the program and libfx.so.
    let mut dir = t.0.clone();
    for i in 0..14 {
        dir.push(format!("{i:02}{}", "d".repeat(198)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["fx_crashy", "libfx.so"] {
        std::fs::copy(fixture(f), dir.join(f)).unwrap();
    }
    let prog = dir.join("fx_crashy");
    let db = t.path("r.db");
    let mut c = under(&config("fx-none.yaml"), &[], &prog, &[]);
    c.env("FRACTURE_REPORTS", &db);
    let o = run_with(c, b"segv\n", WATCHDOG);
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("no database after the run: {e}"));
    let (program, module, function, backtrace): (String, String, String, String) = conn
        .query_row(
            "SELECT program, module, function, backtrace FROM events WHERE outcome = 'program-crash'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("no crash record: {e}"));
    assert_eq!(Path::new(&program), prog.as_path());
    assert_eq!((module.as_str(), function.as_str()), ("fx", "fx_crash_on"));
    assert!(backtrace.starts_with("fx:fx_crash_on+"), "{backtrace}");
}

// The program's fault handler ran without SA_ONSTACK: on a stack overflow the kernel could
// not run it (no stack left) and killed the program unrecorded.
#[test]
fn a_stack_overflow_of_the_program_is_recorded() {
    let t = TempDir::new("overflow");
    let db = t.path("r.db");
    let o = crashy_run(&db, "a\nstack\n");
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a: 1\n");
    let (rep, _) = report(&db);
    let cells = row(&rep, "fx", "fx_crash_on");
    assert_eq!(cells[6], "1", "one program crash: {rep}");
    assert_eq!(cells[8], "11", "SIGSEGV: {rep}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let bt: String = conn
        .query_row("SELECT backtrace FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(bt.starts_with("fx:fx_recurse+"), "{bt}");
}

// A crash of /usr/bin/file itself (nothing isolated) deep inside libmagic, under
// magic_file, was recorded with function "" (`?` in the report): libmagic is stripped, its
// internal functions have no symbols, and the handler did not say which call was in progress.
#[test]
fn a_crash_inside_stripped_libmagic_is_reported_under_magic_file() {
    let t = TempDir::new("magicfn");
    let map = t.write(
        "magic.yaml",
        "target: \"*/file\"\nmodules:\n  magic:\n    object: libmagic.so.1\n    functions:\n      \
         magic_open: {ret: handle}\n      magic_load: {args: [handle, str]}\n      \
         magic_file: {args: [handle, str], ret: str}\n      magic_close: {args: [handle]}\n",
    );
    // libfx_faultymagic.so hands libmagic's magic_file a bad handle for this name.
    let victim = t.write("LIBFAULT.txt", "some text\n");
    let db = t.path("r.db");
    let mut c = under(
        &map,
        &[],
        Path::new("/usr/bin/file"),
        &["/etc/passwd", victim.to_str().unwrap()],
    );
    c.env("FRACTURE_REPORTS", &db)
        .env("LD_PRELOAD", fixture("libfx_faultymagic.so"));
    let o = run_with(c, b"", WATCHDOG);
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    let (rep, _) = report(&db);
    let cells = row(&rep, "magic", "magic_file");
    assert_eq!(cells[6], "1", "one program crash: {rep}");
    // The fault is in libmagic's own code, not in the preloaded wrapper.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let bt: String = conn
        .query_row("SELECT backtrace FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(bt.starts_with("magic:"), "{bt}");
}
