//! The crash-report database: SQLite at `FRACTURE_REPORTS` (default
//! `$XDG_STATE_HOME/fracture/reports.db`), fed from the spool the shim writes beside it.
//!
//! The shim cannot run SQLite (it records from fatal-signal handlers), so each process appends
//! JSON lines to its own spool file `<db>.spool/<pid>-<ns>.jsonl`, holding a shared `flock` on
//! it for its lifetime. Opening the database ingests the spool: complete lines only, each keyed
//! by (spool file, byte offset) so that ingestion is idempotent and concurrent ingesters never
//! duplicate or lose a record; a file is deleted once ingested, when nobody holds its lock any
//! more (its writer is gone) and it is older than a second.

use crate::symbolize::Symbolizer;
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Outcomes that mean a module failed (as opposed to `mismatch`, a disagreement).
pub const CRASH_LIKE: &[&str] = &["crash", "hang", "gave-up", "helper-exit", "program-crash"];

/// `FRACTURE_REPORTS`, else `$XDG_STATE_HOME/fracture/reports.db`, else
/// `~/.local/state/fracture/reports.db`.
pub fn default_db_path() -> PathBuf {
    if let Some(p) = std::env::var_os(module_map::vars::REPORTS).filter(|p| !p.is_empty()) {
        return p.into();
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("fracture/reports.db")
}

/// The database's spool directory: `<db>.spool`.
pub fn spool_dir_of(db: &Path) -> PathBuf {
    let mut s = db.to_path_buf().into_os_string();
    s.push(".spool");
    s.into()
}

/// True when a spool file that process `pid` wrote (`<pid>-<ns>.jsonl`; a program that
/// `exec`s keeps its pid) holds an event record: a crash, hang, give-up or mismatch, not only
/// a run summary. Reads spool files as ingestion does (regular files only, bounded).
pub fn has_events(db: &Path, pid: u32) -> bool {
    let prefix = format!("{pid}-");
    let Ok(rd) = std::fs::read_dir(spool_dir_of(db)) else {
        return false;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| match read_spool_file(&e.path()) {
            SpoolRead::Ok { data, .. } => Some(data),
            _ => None,
        })
        .any(|data| {
            data.split(|&b| b == b'\n').any(|line| {
                serde_json::from_slice::<Value>(line)
                    .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some("event"))
            })
        })
}

/// Largest spool file ingested (64 MiB: thousands of records of at most 8 KiB each). A larger
/// file is moved aside: it is not something the shim writes.
pub const MAX_SPOOL_FILE: u64 = 64 << 20;

/// What reading one spool file gave.
enum SpoolRead {
    Ok {
        data: Vec<u8>,
        file: std::fs::File,
    },
    /// Gone meanwhile (another ingester removed it): nothing to say.
    Gone,
    /// Not a spool file the shim wrote (a symlink, a FIFO, a device, too large): why.
    Bad(String),
    /// Could not be read (permissions): why.
    Unreadable(String),
}

/// Reads a spool file without ever blocking or following a symlink: opened with
/// `O_NOFOLLOW | O_NONBLOCK` (a FIFO opens at once, a symlink fails with ELOOP), then checked
/// with `fstat` to be a regular file of at most [`MAX_SPOOL_FILE`] bytes, read through that
/// same descriptor.
fn read_spool_file(path: &Path) -> SpoolRead {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SpoolRead::Gone,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return SpoolRead::Bad("is a symbolic link".into())
        }
        Err(e) => return SpoolRead::Unreadable(e.to_string()),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return SpoolRead::Unreadable(e.to_string()),
    };
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return SpoolRead::Bad(format!("is {what}"));
    }
    if meta.len() > MAX_SPOOL_FILE {
        return SpoolRead::Bad(format!(
            "is larger than {} MiB ({} bytes)",
            MAX_SPOOL_FILE >> 20,
            meta.len()
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // One byte more than the bound: a file that grew past it since fstat is caught too.
    match (&file).take(MAX_SPOOL_FILE + 1).read_to_end(&mut data) {
        Ok(_) if data.len() as u64 > MAX_SPOOL_FILE => {
            SpoolRead::Bad(format!("is larger than {} MiB", MAX_SPOOL_FILE >> 20))
        }
        Ok(_) => SpoolRead::Ok { data, file },
        Err(e) => SpoolRead::Unreadable(e.to_string()),
    }
}

/// Moves a bad spool file aside (`<name>.bad`, never ingested again) with one warning.
fn move_aside(path: &Path, why: &str) {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    match std::fs::rename(path, &bad) {
        Ok(()) => eprintln!(
            "fracture: warning: spool file {} {why}: moved aside to {}",
            path.display(),
            bad.display()
        ),
        Err(e) => eprintln!(
            "fracture: warning: spool file {} {why}, and it cannot be moved aside ({e}): remove it",
            path.display()
        ),
    }
}

/// What one ingestion did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestStats {
    pub files: usize,
    /// Records newly stored (already stored ones are not counted).
    pub records: usize,
    /// Lines that were not valid records.
    pub skipped: usize,
    pub removed: usize,
}

pub struct Db {
    conn: Connection,
    pub path: PathBuf,
    pub ingested: IngestStats,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    spool TEXT NOT NULL, offset INTEGER NOT NULL,
    time REAL NOT NULL, program TEXT NOT NULL, build_id TEXT NOT NULL, pid INTEGER NOT NULL,
    process TEXT NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
    signal INTEGER NOT NULL, fault_addr TEXT NOT NULL, outcome TEXT NOT NULL,
    env TEXT NOT NULL, detail TEXT NOT NULL, frames TEXT NOT NULL, backtrace TEXT NOT NULL,
    UNIQUE (spool, offset)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    spool TEXT NOT NULL, offset INTEGER NOT NULL,
    time REAL NOT NULL, program TEXT NOT NULL, build_id TEXT NOT NULL, pid INTEGER NOT NULL,
    map TEXT NOT NULL, isolated TEXT NOT NULL, exit INTEGER,
    UNIQUE (spool, offset)
);
CREATE TABLE IF NOT EXISTS run_calls (
    run INTEGER NOT NULL REFERENCES runs(id),
    process TEXT NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
    calls INTEGER NOT NULL, crashes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_module ON events (module, function);
";

impl Db {
    /// Opens (creating) the database and ingests its spool. Several programs may open one
    /// database at once: a busy database is waited for (up to a minute), not an error.
    pub fn open(path: &Path) -> Result<Db> {
        // Crash reports hold program paths, arguments and addresses: the user's alone (a
        // directory created here is 0700, a new database 0600; SQLite gives its -wal and -shm
        // files the database's mode).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Created empty with mode 0600 when missing (SQLite would create it 0644); an
            // existing file keeps its mode.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path);
        }
        let t0 = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Db::try_open(path) {
                Err(e) if busy(&e) && t0.elapsed().as_secs() < 60 => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                r => return r,
            }
        }
    }

    fn try_open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the report database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("{} is not a fracture report database", path.display()))?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
            ingested: IngestStats::default(),
        };
        db.ingested = db.ingest()?;
        Ok(db)
    }

    fn spool_dir(&self) -> PathBuf {
        spool_dir_of(&self.path)
    }

    /// Ingests every spool file (see the module documentation).
    pub fn ingest(&mut self) -> Result<IngestStats> {
        let mut st = IngestStats::default();
        let Ok(rd) = std::fs::read_dir(self.spool_dir()) else {
            return Ok(st);
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        let mut sym = Symbolizer::default();
        for f in files {
            let (data, file) = match read_spool_file(&f) {
                SpoolRead::Ok { data, file } => (data, file),
                SpoolRead::Gone => continue,
                SpoolRead::Bad(why) => {
                    move_aside(&f, &why);
                    continue;
                }
                SpoolRead::Unreadable(why) => {
                    eprintln!(
                        "fracture: warning: spool file {} cannot be read ({why}): skipped",
                        f.display()
                    );
                    continue;
                }
            };
            st.files += 1;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut off = 0usize;
            while let Some(nl) = data[off..].iter().position(|&b| b == b'\n') {
                let line = &data[off..off + nl];
                match serde_json::from_slice::<Value>(line)
                    .ok()
                    .and_then(|v| store(&tx, &name, off as i64, &v, &mut sym).transpose())
                {
                    Some(Ok(new)) => st.records += usize::from(new),
                    Some(Err(e)) => return Err(e),
                    None => st.skipped += 1,
                }
                off += nl + 1;
            }
            tx.commit()?;
            if writer_gone(&file) && std::fs::remove_file(&f).is_ok() {
                st.removed += 1;
            }
        }
        if st.skipped > 0 {
            eprintln!(
                "fracture: warning: {} spool lines in {} were not valid records and were skipped",
                st.skipped,
                self.spool_dir().display()
            );
        }
        Ok(st)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// True when `e` is SQLite's "busy" or "locked" (another connection holds the database).
fn busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<rusqlite::Error>().is_some_and(|r| {
            matches!(
                r.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            )
        })
    })
}

/// True when nobody holds the spool file's lock and it is older than a second (a writer takes
/// its lock right after creating the file). Asked of the descriptor the file was read through,
/// so the answer is about that file, whatever the path names by now.
fn writer_gone(file: &std::fs::File) -> bool {
    let old = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|d| d.as_secs_f64() > 1.0);
    old && matches!(file.try_lock(), Ok(()))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A count of a `calls` entry: a non-negative integer, else 0.
fn count(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0).max(0)
}

/// Stores one record; Ok(None) when it is not a valid record; Ok(Some(true)) when new.
fn store(
    tx: &rusqlite::Transaction,
    spool: &str,
    off: i64,
    v: &Value,
    sym: &mut Symbolizer,
) -> Result<Option<bool>> {
    if v.get("v").and_then(Value::as_u64) != Some(1) {
        return Ok(None);
    }
    let Some(time) = v.get("time").and_then(Value::as_f64) else {
        return Ok(None);
    };
    let pid = v.get("pid").and_then(Value::as_i64).unwrap_or(0);
    match s(v, "kind") {
        "event" => {
            let outcome = s(v, "outcome");
            if outcome.is_empty() {
                return Ok(None);
            }
            // Frames: symbolized here when the shim could not (it records object + offset).
            // Frames that are not objects are dropped (indexing one to add a key panics).
            let mut frames: Vec<Value> = v
                .get("frames")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|f| f.is_object())
                .cloned()
                .collect();
            for fr in frames.iter_mut() {
                if s(fr, "module").is_empty() {
                    fr["module"] = "main".into();
                }
                if s(fr, "symbol").is_empty() {
                    let off = u64::from_str_radix(s(fr, "off").trim_start_matches("0x"), 16).ok();
                    if let Some(name) = off.and_then(|o| sym.symbol(s(fr, "obj"), o)) {
                        fr["symbol"] = name.into();
                    }
                }
            }
            let mut module = s(v, "module").to_string();
            let mut function = s(v, "function").to_string();
            let culprit = frames.iter().find(|f| s(f, "module") != "main");
            if module.is_empty() {
                module = culprit.map_or("main", |f| s(f, "module")).to_string();
            }
            if function.is_empty() {
                function = culprit
                    .or(frames.first())
                    .map(|f| s(f, "symbol").split('+').next().unwrap_or("").to_string())
                    .unwrap_or_default();
            }
            let bt: Vec<String> = frames
                .iter()
                .map(|f| {
                    let name = s(f, "symbol");
                    format!(
                        "{}:{}",
                        s(f, "module"),
                        if name.is_empty() { s(f, "off") } else { name }
                    )
                })
                .collect();
            let n = tx.execute(
                "INSERT OR IGNORE INTO events (spool, offset, time, program, build_id, pid, process,
                   module, function, signal, fault_addr, outcome, env, detail, frames, backtrace)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    spool,
                    off,
                    time,
                    s(v, "program"),
                    s(v, "build_id"),
                    pid,
                    s(v, "process"),
                    module,
                    function,
                    v.get("signal").and_then(Value::as_i64).unwrap_or(0),
                    s(v, "fault_addr"),
                    outcome,
                    s(v, "env"),
                    s(v, "detail"),
                    Value::Array(frames).to_string(),
                    bt.join(" <- "),
                ],
            )?;
            Ok(Some(n == 1))
        }
        "run" => {
            let n = tx.execute(
                "INSERT OR IGNORE INTO runs (spool, offset, time, program, build_id, pid, map, isolated, exit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    spool,
                    off,
                    time,
                    s(v, "program"),
                    s(v, "build_id"),
                    pid,
                    s(v, "map"),
                    v.get("isolated").cloned().unwrap_or(Value::Array(vec![])).to_string(),
                    v.get("exit").and_then(Value::as_i64),
                ],
            )?;
            if n == 1 {
                let run = tx.last_insert_rowid();
                for c in v
                    .get("calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.is_object())
                {
                    tx.execute(
                        "INSERT INTO run_calls (run, process, module, function, calls, crashes)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            run,
                            s(c, "process"),
                            s(c, "module"),
                            s(c, "function"),
                            count(c, "calls"),
                            count(c, "crashes"),
                        ],
                    )?;
                }
            }
            Ok(Some(n == 1))
        }
        _ => Ok(None),
    }
}

/// One row of the summary: a module and function, with what happened to it.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub module: String,
    pub function: String,
    pub crash: u64,
    pub hang: u64,
    pub gave_up: u64,
    pub mismatch: u64,
    pub program_crash: u64,
    pub other: u64,
    pub signals: String,
    pub programs: u64,
    pub first: f64,
    pub last: f64,
    pub clean_calls: u64,
}

/// Events and clean calls per module and function, from every database given.
pub fn summary(dbs: &[Db]) -> Result<Vec<Row>> {
    let mut rows: std::collections::BTreeMap<(String, String), Row> = Default::default();
    let mut programs: std::collections::BTreeMap<
        (String, String),
        std::collections::BTreeSet<String>,
    > = Default::default();
    let mut signals: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<i64>> =
        Default::default();
    for db in dbs {
        let mut q = db
            .conn
            .prepare("SELECT module, function, outcome, signal, program, time FROM events")?;
        let it = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, f64>(5)?,
            ))
        })?;
        for e in it {
            let (m, f, outcome, sig, prog, time) = e?;
            let key = (m.clone(), f.clone());
            let row = rows.entry(key.clone()).or_insert_with(|| Row {
                module: m,
                function: f,
                first: f64::MAX,
                ..Row::default()
            });
            match outcome.as_str() {
                "crash" | "helper-exit" => row.crash += 1,
                "hang" => row.hang += 1,
                "gave-up" => row.gave_up += 1,
                "mismatch" => row.mismatch += 1,
                "program-crash" => row.program_crash += 1,
                _ => row.other += 1,
            }
            row.first = row.first.min(time);
            row.last = row.last.max(time);
            programs.entry(key.clone()).or_default().insert(prog);
            if sig != 0 {
                signals.entry(key).or_default().insert(sig);
            }
        }
        // TOTAL, not SUM: SUM fails on integer overflow and the difference of two SUMs turns
        // into a REAL, either of which would stop `report` for good on this database; the
        // CAST of a too-large REAL saturates.
        let mut q = db.conn.prepare(
            "SELECT module, function, CAST(TOTAL(calls) - TOTAL(crashes) AS INTEGER) FROM run_calls GROUP BY module, function",
        )?;
        let it = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for c in it {
            let (m, f, n) = c?;
            let row = rows.entry((m.clone(), f.clone())).or_insert_with(|| Row {
                module: m,
                function: f,
                first: f64::MAX,
                ..Row::default()
            });
            row.clean_calls = row.clean_calls.saturating_add(n.max(0) as u64);
        }
    }
    Ok(rows
        .into_iter()
        .map(|(k, mut r)| {
            r.programs = programs.get(&k).map_or(0, |p| p.len() as u64);
            r.signals = signals
                .get(&k)
                .map(|s| {
                    s.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            if r.first == f64::MAX {
                r.first = 0.0;
            }
            r
        })
        .collect())
}

/// Per module: (crash-like events, clean calls while isolated), for plans.
pub fn module_history(
    dbs: &[Db],
    program_matches: &dyn Fn(&str) -> bool,
) -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let mut h: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let marks = CRASH_LIKE
        .iter()
        .map(|o| format!("'{o}'"))
        .collect::<Vec<_>>()
        .join(",");
    for db in dbs {
        let mut q = db.conn.prepare(&format!(
            "SELECT module, program, COUNT(*) FROM events WHERE outcome IN ({marks}) GROUP BY module, program"
        ))?;
        let it = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for e in it {
            let (m, prog, n) = e?;
            if program_matches(&prog) {
                h.entry(m).or_default().0 += n as u64;
            }
        }
        let mut q = db.conn.prepare(
            "SELECT c.module, r.program, CAST(TOTAL(c.calls) - TOTAL(c.crashes) AS INTEGER) FROM run_calls c JOIN runs r ON c.run = r.id GROUP BY c.module, r.program",
        )?;
        let it = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for e in it {
            let (m, prog, n) = e?;
            if program_matches(&prog) {
                let clean = &mut h.entry(m).or_default().1;
                *clean = clean.saturating_add(n.max(0) as u64);
            }
        }
    }
    Ok(h)
}

/// Number of events stored.
pub fn count_events(db: &Db) -> Result<u64> {
    Ok(db
        .conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        assert_eq!(rows[0].clean_calls, i64::MAX as u64);
        let h = module_history(&dbs, &|_| true).unwrap();
        assert_eq!(h["m"], (0, i64::MAX as u64));
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
                    let path = spool.join(format!("{w}-0.jsonl"));
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .unwrap();
                    f.lock_shared().unwrap();
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
        assert!(!has_events(&db, 1), "no spool directory");
        let spool = spool_dir_of(&db);
        std::fs::create_dir_all(&spool).unwrap();
        let run = "{\"v\":1,\"kind\":\"run\",\"time\":1.5,\"pid\":1,\"calls\":[]}\n";
        std::fs::write(spool.join("1-5.jsonl"), format!("{run}not json\n")).unwrap();
        // Pid 12's file starts with "1" but is not pid 1's.
        std::fs::write(spool.join("12-5.jsonl"), event(12, "m")).unwrap();
        assert!(!has_events(&db, 1), "a run summary only");
        assert!(has_events(&db, 12));
        assert!(!has_events(&db, 2));
        // A line still being written is no event yet; once complete, it is.
        let partial = event(1, "m");
        std::fs::write(spool.join("1-6.jsonl"), &partial[..partial.len() - 10]).unwrap();
        assert!(!has_events(&db, 1));
        std::fs::write(spool.join("1-6.jsonl"), &partial).unwrap();
        assert!(has_events(&db, 1));
        let _ = std::fs::remove_dir_all(d);
    }
}
