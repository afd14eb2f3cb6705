//! The crash-report database: SQLite at `FRACTURE_REPORTS` (default
//! `$XDG_STATE_HOME/fracture/reports.db`), fed from the spool the shim writes beside it.
//!
//! The shim cannot run SQLite (it records from fatal-signal handlers), so each process appends
//! JSON lines to its own spool file `<db>.spool/<pid>-<ns>.jsonl`, holding a shared `flock` on
//! it for its lifetime. Opening the database ingests the spool: complete lines only, each keyed
//! by (spool file, byte offset) so that ingestion is idempotent and concurrent ingesters never
//! duplicate or lose a record; a file is deleted once ingested, when nobody holds its lock any
//! more (its writer is gone) and it is older than a second.

mod db;
mod ingest;
mod queries;
mod spool;
#[cfg(test)]
mod tests;

use rusqlite::Connection;
use std::path::{Path, PathBuf};

pub use queries::{count_events, module_history, summary, Row};
pub use spool::{has_events, spool_dir_of, MAX_SPOOL_FILE};

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
