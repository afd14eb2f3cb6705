//! Queries over one or several stores: the summary `fracture report` shows, the history plans
//! are made from, counts. A store gives its rows ([`Source`]); the arithmetic is done here, the
//! same for SQLite and PostgreSQL.

use super::CRASH_LIKE;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

/// One stored event, as queries read it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub module: String,
    pub function: String,
    pub outcome: String,
    pub signal: i64,
    pub program: String,
    pub build_id: String,
    pub deployment: String,
    pub time: f64,
    pub detail: String,
}

/// Clean calls (calls less crashes) of one function, summed over the runs of one program
/// build on one deployment.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub module: String,
    pub function: String,
    pub program: String,
    pub build_id: String,
    pub deployment: String,
    /// A sum, as a float: it cannot overflow, and saturates when turned into a count.
    pub clean: f64,
}

/// A store queries read from.
pub trait Source {
    /// The store as users name it (a URL without its password).
    fn name(&self) -> String;
    fn events(&self) -> Result<Vec<EventRow>>;
    fn calls(&self) -> Result<Vec<CallRow>>;
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
    pub valgrind: u64,
    pub other: u64,
    pub signals: String,
    pub programs: u64,
    pub deployments: u64,
    pub first: f64,
    pub last: f64,
    pub clean_calls: u64,
}

fn saturating(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u64::MAX as f64 {
        u64::MAX
    } else {
        x as u64
    }
}

/// Events and clean calls per module and function, from every store given.
pub fn summary<S: Source>(dbs: &[S]) -> Result<Vec<Row>> {
    type Key = (String, String);
    let mut rows: BTreeMap<Key, Row> = Default::default();
    let mut programs: BTreeMap<Key, BTreeSet<String>> = Default::default();
    let mut deployments: BTreeMap<Key, BTreeSet<String>> = Default::default();
    let mut signals: BTreeMap<Key, BTreeSet<i64>> = Default::default();
    let new_row = |m: &str, f: &str| Row {
        module: m.to_string(),
        function: f.to_string(),
        first: f64::MAX,
        ..Row::default()
    };
    for db in dbs {
        for e in db.events()? {
            let key = (e.module.clone(), e.function.clone());
            let row = rows
                .entry(key.clone())
                .or_insert_with(|| new_row(&e.module, &e.function));
            match e.outcome.as_str() {
                "crash" | "helper-exit" => row.crash += 1,
                "hang" => row.hang += 1,
                "gave-up" => row.gave_up += 1,
                "mismatch" => row.mismatch += 1,
                "program-crash" => row.program_crash += 1,
                "valgrind" => row.valgrind += 1,
                _ => row.other += 1,
            }
            row.first = row.first.min(e.time);
            row.last = row.last.max(e.time);
            programs.entry(key.clone()).or_default().insert(e.program);
            deployments
                .entry(key.clone())
                .or_default()
                .insert(e.deployment);
            if e.signal != 0 {
                signals.entry(key).or_default().insert(e.signal);
            }
        }
        for c in db.calls()? {
            let row = rows
                .entry((c.module.clone(), c.function.clone()))
                .or_insert_with(|| new_row(&c.module, &c.function));
            row.clean_calls = row.clean_calls.saturating_add(saturating(c.clean));
        }
    }
    Ok(rows
        .into_iter()
        .map(|(k, mut r)| {
            r.programs = programs.get(&k).map_or(0, |p| p.len() as u64);
            r.deployments = deployments.get(&k).map_or(0, |p| p.len() as u64);
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

/// What plans know of one module: failures, clean calls while isolated, and where it failed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct History {
    /// Crash-like events (not mismatches, not valgrind findings).
    pub failures: u64,
    /// Calls less crashes while isolated.
    pub clean: u64,
    /// The deployments that reported the failures.
    pub failed_on: BTreeSet<String>,
    /// Valgrind findings.
    pub findings: u64,
}

/// Per module, for plans: the history of the records `keep(program, build_id)` accepts.
pub fn module_history<S: Source>(
    dbs: &[S],
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<BTreeMap<String, History>> {
    let mut h: BTreeMap<String, History> = Default::default();
    for db in dbs {
        for e in db.events()? {
            if !keep(&e.program, &e.build_id) {
                continue;
            }
            if CRASH_LIKE.contains(&e.outcome.as_str()) {
                let m = h.entry(e.module).or_default();
                m.failures += 1;
                m.failed_on.insert(e.deployment);
            } else if e.outcome == "valgrind" {
                h.entry(e.module).or_default().findings += 1;
            }
        }
        for c in db.calls()? {
            if keep(&c.program, &c.build_id) {
                let m = h.entry(c.module).or_default();
                m.clean = m.clean.saturating_add(saturating(c.clean));
            }
        }
    }
    Ok(h)
}

/// Number of events stored.
pub fn count_events<S: Source>(db: &S) -> Result<u64> {
    Ok(db.events()?.len() as u64)
}
