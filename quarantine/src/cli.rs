//! `fracture report`, `fracture plan`, `fracture partition`: argument parsing and output.
//! Each returns the exit code: 0 ok, 2 usage or a map that does not validate, 1 otherwise.

use crate::partition::{dot, min_cut, Graph};
use crate::plan::{plan, Strategy};
use crate::reports::{default_db_path, summary, Db};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::path::PathBuf;

/// println! that returns the error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        writeln!(std::io::stdout(), $($t)*)?;
    }};
}

/// A usage error (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(Usage(msg.into()))
}

/// Options as (name, value) pairs, and positionals.
type Parsed = (Vec<(String, String)>, Vec<String>);

/// Options as (name, value) pairs and positionals.
fn options(args: Vec<OsString>, with_value: &[&str], flags: &[&str]) -> Result<Parsed> {
    let mut opts = Vec::new();
    let mut pos = Vec::new();
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if let Some((k, v)) = a.split_once('=').filter(|(k, _)| with_value.contains(k)) {
            opts.push((k.to_string(), v.to_string()));
        } else if with_value.contains(&a.as_str()) {
            let v = it
                .next()
                .ok_or_else(|| usage(format!("{a} needs a value")))?;
            opts.push((a, v));
        } else if flags.contains(&a.as_str()) {
            opts.push((a, String::new()));
        } else if a.starts_with('-') && a.len() > 1 {
            return Err(usage(format!("unknown option {a}")));
        } else {
            pos.push(a);
        }
    }
    Ok((opts, pos))
}

fn get<'a>(opts: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

fn time(t: f64) -> String {
    if t <= 0.0 {
        return "-".into();
    }
    let secs = t as i64;
    let days = secs.div_euclid(86400);
    let (h, m, s) = (secs.rem_euclid(86400) / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// `fracture report [--db FILE]...`
pub fn cli_report(args: Vec<OsString>) -> Result<i32> {
    let (opts, pos) = options(args, &["--db"], &[])?;
    if let Some(p) = pos.first() {
        return Err(usage(format!("report takes no argument ({p})")));
    }
    let paths: Vec<PathBuf> = {
        let v: Vec<PathBuf> = opts
            .iter()
            .filter(|(k, _)| k == "--db")
            .map(|(_, v)| v.into())
            .collect();
        if v.is_empty() {
            vec![default_db_path()]
        } else {
            v
        }
    };
    let mut dbs = Vec::new();
    for p in &paths {
        dbs.push(Db::open(p)?);
    }
    let rows = summary(&dbs)?;
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if rows.is_empty() {
        say!("no reports in {}", names.join(", "));
        return Ok(0);
    }
    say!("crash reports in {}", names.join(", "));
    let head = [
        "module",
        "function",
        "crash",
        "hang",
        "gave-up",
        "mismatch",
        "prog-crash",
        "signals",
        "programs",
        "clean calls",
        "first seen",
        "last seen",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.module.clone(),
                if r.function.is_empty() {
                    "?".into()
                } else {
                    r.function.clone()
                },
                r.crash.to_string(),
                r.hang.to_string(),
                r.gave_up.to_string(),
                r.mismatch.to_string(),
                r.program_crash.to_string(),
                if r.signals.is_empty() {
                    "-".into()
                } else {
                    r.signals.clone()
                },
                r.programs.to_string(),
                r.clean_calls.to_string(),
                time(r.first),
                time(r.last),
            ]
        })
        .collect();
    let w: Vec<usize> = (0..head.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> Result<()> {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if (2..=6).contains(&i) || i == 8 || i == 9 {
                    format!("{c:>w$}", w = w[i])
                } else {
                    format!("{c:<w$}", w = w[i])
                }
            })
            .collect();
        say!("{}", s.join("  ").trim_end());
        Ok(())
    };
    line(head.to_vec())?;
    for r in &table {
        line(r.iter().map(String::as_str).collect())?;
    }
    Ok(0)
}

/// `fracture plan [--db FILE]... [--strategy S] [--profile GRAPH] [--min-clean-calls N] -c MAP -o NEXT`
pub fn cli_plan(args: Vec<OsString>) -> Result<i32> {
    let (opts, pos) = options(
        args,
        &[
            "--db",
            "--strategy",
            "--profile",
            "--min-clean-calls",
            "-c",
            "--config",
            "-o",
            "--output",
        ],
        &[],
    )?;
    if let Some(p) = pos.first() {
        return Err(usage(format!("plan takes no positional argument ({p})")));
    }
    let map = get(&opts, &["-c", "--config"]).ok_or_else(|| usage("plan needs -c MAP.yaml"))?;
    let out = get(&opts, &["-o", "--output"]).ok_or_else(|| usage("plan needs -o NEXT.yaml"))?;
    let strategy = match get(&opts, &["--strategy"]).unwrap_or("optimistic") {
        "optimistic" => Strategy::Optimistic,
        "pessimistic" => Strategy::Pessimistic,
        s => {
            return Err(usage(format!(
                "--strategy {s}: expected optimistic or pessimistic"
            )))
        }
    };
    let min_clean: u64 = match get(&opts, &["--min-clean-calls"]) {
        Some(n) => n
            .parse()
            .map_err(|_| usage(format!("--min-clean-calls {n}: expected a count")))?,
        None => 1000,
    };
    let graph = match get(&opts, &["--profile"]) {
        Some(p) => Some(
            Graph::from_json(
                &std::fs::read_to_string(p).with_context(|| format!("cannot read {p}"))?,
            )
            .with_context(|| p.to_string())?,
        ),
        None => None,
    };
    let mut paths: Vec<PathBuf> = opts
        .iter()
        .filter(|(k, _)| k == "--db")
        .map(|(_, v)| v.into())
        .collect();
    if paths.is_empty() {
        paths.push(default_db_path());
    }
    let mut dbs = Vec::new();
    for p in &paths {
        dbs.push(Db::open(p)?);
    }
    let p = plan(
        std::path::Path::new(map),
        &dbs,
        strategy,
        graph.as_ref(),
        min_clean,
    )?;
    for n in &p.notes {
        eprintln!("fracture: plan: {n}");
    }
    std::fs::write(out, &p.text).with_context(|| format!("cannot write {out}"))?;
    eprintln!("fracture: plan: wrote {out}");
    Ok(0)
}

/// `fracture partition GRAPH.json --isolate MODULE [-o MAP.yaml] [--dot FILE.dot]`
pub fn cli_partition(args: Vec<OsString>) -> Result<i32> {
    let (opts, pos) = options(
        args,
        &["--isolate", "-o", "--output", "--dot", "--side"],
        &[],
    )?;
    let [graph_path] = pos.as_slice() else {
        return Err(usage("partition needs one GRAPH.json"));
    };
    let isolate =
        get(&opts, &["--isolate"]).ok_or_else(|| usage("partition needs --isolate MODULE"))?;
    let g = Graph::from_json(
        &std::fs::read_to_string(graph_path)
            .with_context(|| format!("cannot read {graph_path}"))?,
    )
    .with_context(|| graph_path.clone())?;
    let c = match get(&opts, &["--side"]) {
        // An explicit boundary, to compare candidates: the helper holds these modules.
        Some(list) => {
            let mut side: std::collections::BTreeSet<String> = list
                .split(',')
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
            side.insert(isolate.to_string());
            if let Some(m) = side
                .iter()
                .find(|m| !g.modules.contains(*m) || *m == "main")
            {
                return Err(usage(format!("--side: `{m}` is not a module of the graph")));
            }
            let cut = g
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.caller != e.module && side.contains(&e.caller) != side.contains(&e.module)
                })
                .map(|(i, _)| i)
                .collect();
            crate::partition::Cut {
                cost_ns: g.predicted_cost(&side),
                side,
                cut,
            }
        }
        None => min_cut(&g, isolate)?,
    };
    let per_s = if g.duration_s > 0.0 {
        c.cost_ns / 1e3 / g.duration_s
    } else {
        0.0
    };
    say!(
        "isolate {isolate}: one helper with [{}]",
        c.side.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    say!(
        "predicted cost: {:.0} us over the {:.3} s training run = {per_s:.0} us per second ({:.1}% of run time)",
        c.cost_ns / 1e3,
        g.duration_s,
        per_s / 1e4
    );
    say!(
        "calibration: {:.0} ns per isolated call (+{:.0} ns when its helper sleeps), {:.3} ns per byte",
        g.per_call_ns,
        g.per_cold_call_ns,
        g.per_byte_ns
    );
    say!("boundary ({} edges):", c.cut.len());
    for &i in &c.cut {
        let e = &g.edges[i];
        say!(
            "  {} -> {}.{}: {} calls ({} cold), {} bytes, {:.0} us",
            e.caller,
            e.module,
            e.function,
            e.calls,
            e.cold_calls,
            e.bytes_in + e.bytes_out,
            g.edge_cost(e) / 1e3
        );
    }
    if let Some(out) = get(&opts, &["-o", "--output"]) {
        let text = partition_map(&g, &c.side, isolate)?;
        std::fs::write(out, text).with_context(|| format!("cannot write {out}"))?;
        say!("wrote {out}");
    }
    if let Some(d) = get(&opts, &["--dot"]) {
        std::fs::write(d, dot(&g, &c, isolate)).with_context(|| format!("cannot write {d}"))?;
        say!("wrote {d}");
        let svg = PathBuf::from(d).with_extension("svg");
        match std::process::Command::new("dot")
            .arg("-Tsvg")
            .arg(d)
            .arg("-o")
            .arg(&svg)
            .status()
        {
            Ok(s) if s.success() => say!("wrote {}", svg.display()),
            Ok(s) => eprintln!("fracture: warning: dot failed ({s}); no SVG"),
            Err(_) => say!("(Graphviz `dot` is not installed: SVG rendering skipped)"),
        }
    }
    Ok(0)
}

/// The graph's map with one process `isolated_<MODULE>` holding `side`.
fn partition_map(
    g: &Graph,
    side: &std::collections::BTreeSet<String>,
    isolate: &str,
) -> Result<String> {
    use serde_yaml_ng::{Mapping, Value};
    if g.map.is_empty() {
        bail!("the graph names no map");
    }
    let path = std::path::Path::new(&g.map);
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", g.map))?;
    let mut doc: Value = serde_yaml_ng::from_str(&text)?;
    let procs: Mapping = doc
        .get("processes")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let mut template: Option<Value> = None;
    let mut keep = Mapping::new();
    for (k, mut v) in procs {
        let holds = v
            .get("modules")
            .and_then(Value::as_sequence)
            .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(isolate)));
        if holds {
            template = Some(v.clone());
        }
        if let Some(list) = v.get_mut("modules").and_then(Value::as_sequence_mut) {
            list.retain(|x| x.as_str().is_none_or(|s| !side.contains(s)));
            if list.is_empty() {
                continue;
            }
        }
        keep.insert(k, v);
    }
    let mods: Vec<String> = side.iter().filter(|m| *m != "main").cloned().collect();
    let mut p: Value = match template {
        Some(t) => t,
        None => serde_yaml_ng::from_str(
            "on_crash: {restart: true, restore: replay, max_retries: 1, give_up: {return: 0}}",
        )?,
    };
    if let Some(m) = p.as_mapping_mut() {
        m.insert(
            "modules".into(),
            Value::Sequence(mods.into_iter().map(Value::from).collect()),
        );
    }
    keep.insert(format!("isolated_{isolate}").into(), p);
    doc.as_mapping_mut()
        .context("the map is not a YAML mapping")?
        .insert("processes".into(), Value::Mapping(keep));
    let out = format!(
        "# written by `fracture partition --isolate {isolate}` from {}\n{}",
        g.map,
        serde_yaml_ng::to_string(&doc)?
    );
    module_map::parse_map_str(&out, path, &[])
        .map_err(|e| anyhow!("internal error: the partition's map does not validate: {e}"))?;
    Ok(out)
}
