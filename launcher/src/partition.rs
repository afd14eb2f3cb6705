//! `fracture partition GRAPH.json --isolate MODULE`: the cheapest boundary of a profiled
//! module graph that isolates MODULE, as a report, a map, a Graphviz drawing and an SVG
//! drawn without Graphviz.

use anyhow::{anyhow, bail, Context, Result};
use quarantine::partition::{dot, min_cut, Graph};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PartitionArgs {
    /// A graph written by `fracture profile`
    #[arg(value_name = "GRAPH.json")]
    graph: PathBuf,
    /// The module to isolate
    #[arg(long, value_name = "MODULE")]
    isolate: String,
    /// Price this boundary instead of the cheapest: the helper holds these modules
    #[arg(long, value_name = "M,...")]
    side: Option<String>,
    /// Write the map that isolates the boundary found
    #[arg(short = 'o', long = "output", value_name = "MAP.yaml")]
    out: Option<PathBuf>,
    /// Write the graph and the boundary for Graphviz (and an SVG beside it when `dot` runs)
    #[arg(long = "dot", value_name = "FILE.dot")]
    dot: Option<PathBuf>,
    /// Draw the graph and the boundary as a standalone SVG (no Graphviz needed)
    #[arg(long = "svg", value_name = "FILE.svg")]
    svg: Option<PathBuf>,
}

pub fn main(args: &PartitionArgs) -> Result<i32> {
    let graph_path = args.graph.display().to_string();
    let isolate = args.isolate.as_str();
    let g = Graph::from_json(
        &std::fs::read_to_string(&args.graph)
            .with_context(|| format!("cannot read {graph_path}"))?,
    )
    .with_context(|| graph_path.clone())?;
    let c = match &args.side {
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
                return Err(
                    crate::Usage(format!("--side: `{m}` is not a module of the graph")).into(),
                );
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
            quarantine::partition::Cut {
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
    if let Some(out) = &args.out {
        let text = partition_map(&g, &c.side, isolate)?;
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
        say!("wrote {}", out.display());
    }
    if let Some(d) = &args.dot {
        std::fs::write(d, dot(&g, &c, isolate))
            .with_context(|| format!("cannot write {}", d.display()))?;
        say!("wrote {}", d.display());
        let svg = d.with_extension("svg");
        // When `--svg` names that file, its drawing is the one asked for: Graphviz is not run.
        if args.svg.as_ref() != Some(&svg) {
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
    }
    if let Some(path) = &args.svg {
        let text = quarantine::svg::svg(&g, &c, isolate)
            .with_context(|| format!("cannot draw {graph_path} as SVG"))?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        say!("wrote {}", path.display());
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
