//! Spool lines as records: what a valid line holds, normalized (frames symbolized, the culprit
//! module and function filled in) the same way whichever store keeps it.

use crate::symbolize::Symbolizer;
use serde_json::Value;

/// An event: a crash, hang, give-up, helper exit, mismatch, a crash of the program, or a
/// valgrind finding (`outcome` `valgrind`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: f64,
    pub program: String,
    pub build_id: String,
    pub deployment: String,
    pub pid: i64,
    pub process: String,
    pub module: String,
    pub function: String,
    pub signal: i64,
    pub fault_addr: String,
    pub outcome: String,
    pub env: String,
    pub detail: String,
    /// The frames as JSON.
    pub frames: String,
    pub backtrace: String,
}

/// A run summary and its calls per function.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    pub time: f64,
    pub program: String,
    pub build_id: String,
    pub deployment: String,
    pub pid: i64,
    pub map: String,
    /// The isolated modules as JSON.
    pub isolated: String,
    pub exit: Option<i64>,
    pub calls: Vec<Call>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Call {
    pub process: String,
    pub module: String,
    pub function: String,
    pub calls: i64,
    pub crashes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Event(Event),
    Run(Run),
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Text as a store can hold it: PostgreSQL refuses NUL in text (a record holding one would
/// stop every upload), so it becomes U+FFFD, in SQLite too.
pub(super) fn clean(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

/// Longest line read as a record: what the shim writes at most (`LINE_MAX` there).
pub const MAX_LINE: usize = 8192;

/// A count of a `calls` entry: a non-negative integer, else 0.
fn count(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0).max(0)
}

/// The record a spool line holds, or None when it is not a valid record. `deployment`: the
/// one a record without its own is stamped with (records written before deployments existed).
pub fn parse(line: &[u8], deployment: &str, sym: &mut Symbolizer) -> Option<Record> {
    if line.len() > MAX_LINE {
        return None;
    }
    let v: Value = serde_json::from_slice(line).ok()?;
    if v.get("v").and_then(Value::as_u64) != Some(1) {
        return None;
    }
    let time = v.get("time").and_then(Value::as_f64)?;
    let pid = v.get("pid").and_then(Value::as_i64).unwrap_or(0);
    let dep = clean(match s(&v, "deployment") {
        "" => deployment,
        d => d,
    });
    match s(&v, "kind") {
        "event" => {
            let outcome = s(&v, "outcome");
            if outcome.is_empty() {
                return None;
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
            let mut module = s(&v, "module").to_string();
            let mut function = s(&v, "function").to_string();
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
            Some(Record::Event(Event {
                time,
                program: clean(s(&v, "program")),
                build_id: clean(s(&v, "build_id")),
                deployment: dep,
                pid,
                process: clean(s(&v, "process")),
                module: clean(&module),
                function: clean(&function),
                signal: v.get("signal").and_then(Value::as_i64).unwrap_or(0),
                fault_addr: clean(s(&v, "fault_addr")),
                outcome: clean(outcome),
                env: clean(s(&v, "env")),
                detail: clean(s(&v, "detail")),
                frames: clean(&Value::Array(frames).to_string()),
                backtrace: clean(&bt.join(" <- ")),
            }))
        }
        "run" => Some(Record::Run(Run {
            time,
            program: clean(s(&v, "program")),
            build_id: clean(s(&v, "build_id")),
            deployment: dep,
            pid,
            map: clean(s(&v, "map")),
            isolated: clean(
                &v.get("isolated")
                    .cloned()
                    .unwrap_or(Value::Array(vec![]))
                    .to_string(),
            ),
            exit: v.get("exit").and_then(Value::as_i64),
            calls: v
                .get("calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| c.is_object())
                .map(|c| Call {
                    process: clean(s(c, "process")),
                    module: clean(s(c, "module")),
                    function: clean(s(c, "function")),
                    calls: count(c, "calls"),
                    crashes: count(c, "crashes"),
                })
                .collect(),
        })),
        _ => None,
    }
}
