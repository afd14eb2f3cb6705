//! The crash-report store: a SQLite file (default `$XDG_STATE_HOME/fracture/reports.db`) or a
//! PostgreSQL server shared by a fleet (`postgresql://` URL), fed from the local spool the shim
//! writes.
//!
//! The shim cannot run a database client (it records from fatal-signal handlers, and must
//! never wait on a network), so each process appends JSON lines to its own spool file
//! `<spool>/<pid>-<ns>.jsonl`, holding a shared `flock` on it for its lifetime (the spool is
//! `<db>.spool` beside a SQLite file; for a URL `FRACTURE_SPOOL`, else
//! `$XDG_STATE_HOME/fracture/fleet.spool`: `module_map::vars::Reports`). Opening a store
//! ingests the spool: complete lines only, each keyed by (deployment, spool file, byte offset)
//! so that ingestion is idempotent and concurrent ingesters never duplicate or lose a record;
//! a file is deleted once stored, when nobody holds its lock any more (its writer is gone: a
//! writer creates its file as `*.jsonl.new`, locks it, then renames it). A store that cannot be reached leaves the spool as it is.

mod db;
mod ingest;
mod postgres;
mod queries;
mod record;
mod spool;
#[cfg(test)]
mod tests;
mod valgrind;

use rusqlite::Connection;
use std::path::PathBuf;

pub use module_map::vars::Reports;
pub use postgres::{redact, Pg};
pub use queries::{count_events, module_history, summary, CallRow, EventRow, History, Row, Source};
pub use record::{parse as parse_record, Call, Event, Record, Run};
pub use spool::{has_events, has_spooled, spool_dir_of, MAX_SPOOL_FILE};

/// Outcomes that mean a module failed (as opposed to `mismatch`, a disagreement, or a
/// `valgrind` finding).
pub const CRASH_LIKE: &[&str] = &["crash", "hang", "gave-up", "helper-exit", "program-crash"];

/// `FRACTURE_REPORTS`, else `$XDG_STATE_HOME/fracture/reports.db`, else
/// `~/.local/state/fracture/reports.db` (`./fracture/reports.db` with no home at all).
pub fn default_location() -> Reports {
    match Reports::from_env() {
        Reports::Off if std::env::var_os(module_map::vars::REPORTS).is_none() => {
            Reports::Sqlite("fracture/reports.db".into())
        }
        r => r,
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

/// A SQLite report database.
pub struct Db {
    conn: Connection,
    pub path: PathBuf,
    pub ingested: IngestStats,
}

/// A store of either kind.
pub enum Store {
    Sqlite(Db),
    Postgres(Pg),
}

impl Store {
    /// Opens the store `loc` names and moves its spool into it.
    pub fn open(loc: &Reports) -> anyhow::Result<Store> {
        match loc {
            Reports::Off => anyhow::bail!("crash reports are off (FRACTURE_REPORTS=off)"),
            Reports::Sqlite(p) => Ok(Store::Sqlite(Db::open(p)?)),
            Reports::Url(u) => Ok(Store::Postgres(Pg::open(u, loc.spool_dir().as_deref())?)),
        }
    }

    /// What opening it ingested from the spool.
    pub fn ingested(&self) -> &IngestStats {
        match self {
            Store::Sqlite(d) => &d.ingested,
            Store::Postgres(p) => &p.ingested,
        }
    }
}

impl From<Db> for Store {
    fn from(d: Db) -> Store {
        Store::Sqlite(d)
    }
}

impl Source for Store {
    fn name(&self) -> String {
        match self {
            Store::Sqlite(d) => d.name(),
            Store::Postgres(p) => p.name(),
        }
    }
    fn events(&self) -> anyhow::Result<Vec<EventRow>> {
        match self {
            Store::Sqlite(d) => d.events(),
            Store::Postgres(p) => p.events(),
        }
    }
    fn calls(&self) -> anyhow::Result<Vec<CallRow>> {
        match self {
            Store::Sqlite(d) => d.calls(),
            Store::Postgres(p) => p.calls(),
        }
    }
}

/// Location names as `--db` takes them: a URL or a path.
pub fn location_of(arg: &std::ffi::OsStr) -> Reports {
    Reports::parse(arg)
}
