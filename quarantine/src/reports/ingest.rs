//! Ingesting the spool: each complete line of each spool file stored once, as an event or a
//! run with its calls.

use super::spool::{move_aside, read_spool_file, spool_dir_of, writer_gone, SpoolRead};
use super::{Db, IngestStats};
use crate::symbolize::Symbolizer;
use anyhow::Result;
use rusqlite::params;
use serde_json::Value;
use std::path::PathBuf;

impl Db {
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
