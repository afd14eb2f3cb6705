//! Ingesting a spool: each complete line of each spool file stored once, whichever store
//! takes it. A store implements [`Sink`]; the spool walk, the checks of each file and the
//! removal of files whose writer is gone are the same for all.

use super::record::{parse, Record};
use super::spool::{move_aside, read_spool_file, writer_gone, SpoolRead};
use super::IngestStats;
use crate::symbolize::Symbolizer;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A store records go into.
pub(super) trait Sink {
    /// Stores the records of one spool file (`spool`: its file name; each record keyed by
    /// its deployment, `spool` and its byte offset), all or none; returns how many were new.
    fn store_file(&mut self, spool: &str, records: &[(i64, Record)]) -> Result<usize>;

    /// True when `e` (from [`Sink::store_file`]) says the store refuses the file's contents,
    /// not that it cannot be reached: then the file is moved aside and the walk goes on,
    /// instead of one bad file stopping every upload for good.
    fn refused(&self, _e: &anyhow::Error) -> bool {
        false
    }
}

/// The files of the spool directory whose names `want` accepts, in name order (none when it
/// cannot be read).
fn spool_files(dir: &Path, want: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| want(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// The file name of a spool path, for keys.
fn name_of(f: &Path) -> String {
    f.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Stores one file's records; a file the store refuses is moved aside with a warning.
fn store_or_set_aside(
    sink: &mut dyn Sink,
    path: &Path,
    name: &str,
    records: &[(i64, Record)],
) -> Result<Option<usize>> {
    match sink.store_file(name, records) {
        Ok(n) => Ok(Some(n)),
        Err(e) if sink.refused(&e) => {
            move_aside(path, &format!("was refused by the store ({e:#})"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Ingests every spool file of `dir` into `sink` (see the module documentation of
/// `reports`). An error of the store stops the walk: what was not stored stays in the spool.
pub(super) fn ingest_dir(dir: &Path, sink: &mut dyn Sink) -> Result<IngestStats> {
    let mut st = IngestStats::default();
    let files = spool_files(dir, |name| name.ends_with(".jsonl"));
    let mut sym = Symbolizer::default();
    let here = module_map::vars::deployment();
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
        let name = name_of(&f);
        let mut records = Vec::new();
        let mut off = 0usize;
        while let Some(nl) = data[off..].iter().position(|&b| b == b'\n') {
            match parse(&data[off..off + nl], &here, &mut sym) {
                Some(r) => records.push((off as i64, r)),
                None => st.skipped += 1,
            }
            off += nl + 1;
        }
        let Some(n) = store_or_set_aside(sink, &f, &name, &records)? else {
            continue;
        };
        st.records += n;
        if writer_gone(&file, data.len()) && std::fs::remove_file(&f).is_ok() {
            st.removed += 1;
        }
    }
    ingest_valgrind(dir, sink, &here, &mut st)?;
    if st.skipped > 0 {
        eprintln!(
            "fracture: warning: {} spool lines in {} were not valid records and were skipped",
            st.skipped,
            dir.display()
        );
    }
    Ok(st)
}

/// A valgrind file not finished this long after its last write, whose valgrind is gone, is
/// one whose valgrind died.
const VALGRIND_STALE_S: f64 = 600.0;

/// Valgrind's XML files in the spool (`valgrind-*.xml`, written by the replica of a
/// valgrind-slices plan): each finding stored as an event of outcome `valgrind`, keyed by
/// (deployment, file, the finding's unique id); a finished file is removed once stored.
fn ingest_valgrind(
    dir: &Path,
    sink: &mut dyn Sink,
    here: &str,
    st: &mut IngestStats,
) -> Result<()> {
    let files = spool_files(dir, |name| {
        name.starts_with("valgrind-") && name.ends_with(".xml")
    });
    for f in files {
        let (data, file) = match read_spool_file(&f) {
            SpoolRead::Ok { data, file } => (data, file),
            SpoolRead::Gone | SpoolRead::Unreadable(_) => continue,
            SpoolRead::Bad(why) => {
                move_aside(&f, &why);
                continue;
            }
        };
        let modified = file.metadata().and_then(|m| m.modified()).ok();
        let age = modified
            .and_then(|t| t.elapsed().ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let time = modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        // Dead, not merely quiet: valgrind writes nothing while it finds nothing, so a file
        // is cut only when it is old and the process it names is gone.
        let stale = age > VALGRIND_STALE_S && super::valgrind::writer_gone(&data);
        let text = String::from_utf8_lossy(&data);
        let Some(out) = super::valgrind::parse(&text, stale, time, here) else {
            if stale {
                move_aside(&f, "is not valgrind XML output");
            }
            continue;
        };
        st.files += 1;
        let name = name_of(&f);
        let records: Vec<(i64, Record)> = out
            .findings
            .into_iter()
            .map(|(id, e)| (id, Record::Event(e)))
            .collect();
        let Some(n) = store_or_set_aside(sink, &f, &name, &records)? else {
            continue;
        };
        st.records += n;
        if out.complete && std::fs::remove_file(&f).is_ok() {
            st.removed += 1;
        }
    }
    Ok(())
}
