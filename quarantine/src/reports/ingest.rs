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
}

/// Ingests every spool file of `dir` into `sink` (see the module documentation of
/// `reports`). An error of the store stops the walk: what was not stored stays in the spool.
pub(super) fn ingest_dir(dir: &Path, sink: &mut dyn Sink) -> Result<IngestStats> {
    let mut st = IngestStats::default();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(st);
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
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
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut records = Vec::new();
        let mut off = 0usize;
        while let Some(nl) = data[off..].iter().position(|&b| b == b'\n') {
            match parse(&data[off..off + nl], &here, &mut sym) {
                Some(r) => records.push((off as i64, r)),
                None => st.skipped += 1,
            }
            off += nl + 1;
        }
        st.records += sink.store_file(&name, &records)?;
        if writer_gone(&file) && std::fs::remove_file(&f).is_ok() {
            st.removed += 1;
        }
    }
    if st.skipped > 0 {
        eprintln!(
            "fracture: warning: {} spool lines in {} were not valid records and were skipped",
            st.skipped,
            dir.display()
        );
    }
    Ok(st)
}
