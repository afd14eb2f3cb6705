//! Queries over one or several databases: the summary `fracture report` shows, the history
//! plans are made from, counts.

use super::{Db, CRASH_LIKE};
use anyhow::Result;
use rusqlite::OptionalExtension;

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
