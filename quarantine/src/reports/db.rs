//! Opening the database: the schema, the mode of a new file, waiting out a busy database.

use super::{Db, IngestStats};
use anyhow::{Context, Result};
use rusqlite::Connection;
use std::path::Path;

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
