//! The SQLite store: opening the database (the schema and its migrations, the mode of a new
//! file, waiting out a busy database), storing records, reading rows back.

use super::ingest::Sink;
use super::queries::{CallRow, EventRow, Source};
use super::record::Record;
use super::{Db, IngestStats};
use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use std::path::Path;

/// Schema migrations, in order: the database's `user_version` says how many are applied.
/// A migration is never edited once released; a change of schema is a new one at the end.
const MIGRATIONS: &[&str] = &[SCHEMA_1, SCHEMA_2];

/// Version 1: the tables before deployments.
pub(super) const SCHEMA_1: &str = "
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

/// Version 2: records name their deployment (SPEC.md "Fleet"); a record is keyed by
/// (deployment, spool, offset). (Version 1's `UNIQUE (spool, offset)` stays: one machine's
/// spool names never repeat.)
const SCHEMA_2: &str = "
ALTER TABLE events ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (deployment, spool, offset);
CREATE UNIQUE INDEX IF NOT EXISTS runs_key ON runs (deployment, spool, offset);
CREATE INDEX IF NOT EXISTS events_build ON events (build_id);
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
        migrate(&conn)
            .with_context(|| format!("{} is not a fracture report database", path.display()))?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
            ingested: IngestStats::default(),
        };
        let spool = super::spool_dir_of(path);
        db.ingested = super::ingest::ingest_dir(&spool, &mut db)?;
        Ok(db)
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

/// Applies the migrations the database lacks, in one immediate transaction (concurrent
/// openers wait for each other; the version is read inside it).
fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize == MIGRATIONS.len() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| -> Result<()> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < 0 || version as usize > MIGRATIONS.len() {
            anyhow::bail!("schema version {version} is newer than this fracture knows");
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(m)
                .with_context(|| format!("schema migration {}", i + 1))?;
        }
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        Ok(())
    })();
    match r {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl Sink for Db {
    fn store_file(&mut self, spool: &str, records: &[(i64, Record)]) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut new = 0;
        for (off, r) in records {
            new += match r {
                Record::Event(e) => tx.execute(
                    "INSERT OR IGNORE INTO events (spool, offset, time, program, build_id, pid, process,
                       module, function, signal, fault_addr, outcome, env, detail, frames, backtrace,
                       deployment)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                    params![
                        spool, off, e.time, e.program, e.build_id, e.pid, e.process, e.module,
                        e.function, e.signal, e.fault_addr, e.outcome, e.env, e.detail, e.frames,
                        e.backtrace, e.deployment,
                    ],
                )?,
                Record::Run(r) => {
                    let n = tx.execute(
                        "INSERT OR IGNORE INTO runs (spool, offset, time, program, build_id, pid, map,
                           isolated, exit, deployment)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        params![
                            spool, off, r.time, r.program, r.build_id, r.pid, r.map, r.isolated,
                            r.exit, r.deployment,
                        ],
                    )?;
                    if n == 1 {
                        let run = tx.last_insert_rowid();
                        for c in &r.calls {
                            tx.execute(
                                "INSERT INTO run_calls (run, process, module, function, calls, crashes)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                params![run, c.process, c.module, c.function, c.calls, c.crashes],
                            )?;
                        }
                    }
                    n
                }
            };
        }
        tx.commit()?;
        Ok(new)
    }
}

impl Source for Db {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn events(&self) -> Result<Vec<EventRow>> {
        let mut q = self.conn.prepare(
            "SELECT module, function, outcome, signal, program, build_id, deployment, time, detail FROM events",
        )?;
        let rows = q.query_map([], |r| {
            Ok(EventRow {
                module: r.get(0)?,
                function: r.get(1)?,
                outcome: r.get(2)?,
                signal: r.get(3)?,
                program: r.get(4)?,
                build_id: r.get(5)?,
                deployment: r.get(6)?,
                time: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn calls(&self) -> Result<Vec<CallRow>> {
        // TOTAL, not SUM: SUM fails on integer overflow; TOTAL is a REAL.
        let mut q = self.conn.prepare(
            "SELECT c.module, c.function, r.program, r.build_id, r.deployment,
                    TOTAL(c.calls) - TOTAL(c.crashes)
             FROM run_calls c JOIN runs r ON c.run = r.id
             GROUP BY c.module, c.function, r.program, r.build_id, r.deployment",
        )?;
        let rows = q.query_map([], |r| {
            Ok(CallRow {
                module: r.get(0)?,
                function: r.get(1)?,
                program: r.get(2)?,
                build_id: r.get(3)?,
                deployment: r.get(4)?,
                clean: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
