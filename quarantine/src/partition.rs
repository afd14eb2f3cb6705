//! The cheapest boundary that isolates a module: a minimum s-t cut of the module graph a
//! `fracture profile` run recorded, with s = `main` and t = the module to isolate.
//!
//! An edge (caller module → module of the called function) costs, if cut, its calls times the
//! cost of an isolated call plus its bytes times the cost of a copied byte; both figures were
//! measured on the machine by the profiler (`calibration`), never constants here. Edges between
//! the same two modules add up in both directions (either direction crosses the boundary).
//! The max-flow / min-cut comes from `pathfinding` (Edmonds-Karp on integer capacities): it is
//! maintained, small, and returns the flows we need to find the sink side.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One edge of the profile.
#[derive(Debug, Clone)]
pub struct Edge {
    pub caller: String,
    pub module: String,
    pub function: String,
    pub calls: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Calls that came after their module had been idle longer than a helper spins.
    pub cold_calls: u64,
}

/// A `fracture profile` graph.
#[derive(Debug, Clone)]
pub struct Graph {
    pub program: String,
    pub map: String,
    pub duration_s: f64,
    pub per_call_ns: f64,
    pub per_byte_ns: f64,
    /// What one helper costs a run (start, shutdown), measured by the profiler; 0 in graphs
    /// that do not have it.
    pub per_process_ns: f64,
    /// What waking a sleeping helper adds to a call; 0 in graphs that do not have it.
    pub per_cold_call_ns: f64,
    pub modules: Vec<String>,
    pub edges: Vec<Edge>,
}

impl Graph {
    pub fn from_json(text: &str) -> Result<Graph> {
        let v: Value = serde_json::from_str(text).context("the graph is not JSON")?;
        let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let cal = v
            .get("calibration")
            .context("the graph has no calibration")?;
        let num = |x: &Value, k: &str| {
            x.get(k)
                .and_then(Value::as_f64)
                .filter(|n| n.is_finite() && *n >= 0.0)
                .with_context(|| format!("the graph's `{k}` is missing or not a number"))
        };
        let mut modules: Vec<String> = v
            .get("modules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(String::from))
            .collect();
        if !modules.iter().any(|m| m == "main") {
            modules.insert(0, "main".into());
        }
        let mut edges = Vec::new();
        for (i, e) in v
            .get("edges")
            .and_then(Value::as_array)
            .context("the graph has no edges list")?
            .iter()
            .enumerate()
        {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .map(String::from)
                    .with_context(|| format!("edge {i}: `{k}` is missing"))
            };
            let n = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
            let edge = Edge {
                caller: s("caller")?,
                module: s("module")?,
                function: s("function")?,
                calls: n("calls"),
                bytes_in: n("bytes_in"),
                bytes_out: n("bytes_out"),
                cold_calls: n("cold_calls").min(n("calls")),
            };
            for m in [&edge.caller, &edge.module] {
                if !modules.contains(m) {
                    modules.push(m.clone());
                }
            }
            edges.push(edge);
        }
        Ok(Graph {
            program: str_of("program"),
            map: str_of("map"),
            duration_s: num(&v, "duration_s")?,
            per_call_ns: num(cal, "per_call_ns")?,
            per_byte_ns: num(cal, "per_byte_ns")?,
            per_process_ns: num(cal, "per_process_ns").unwrap_or(0.0),
            per_cold_call_ns: num(cal, "per_cold_call_ns").unwrap_or(0.0),
            modules,
            edges,
        })
    }

    /// Cost (ns) of cutting edge `e`. The calibrated byte is an `in:` byte, copied once into
    /// the channel. A byte out is copied twice: an out-buffer goes in too (bytes the function
    /// does not write keep the caller's values) and comes back, and a returned string is
    /// copied into the channel by the helper and out of it by the program. A cold call (its
    /// module idle for longer than a helper spins) also pays for waking the helper.
    pub fn edge_cost(&self, e: &Edge) -> f64 {
        e.calls as f64 * self.per_call_ns
            + e.cold_calls as f64 * self.per_cold_call_ns
            + (e.bytes_in + 2 * e.bytes_out) as f64 * self.per_byte_ns
    }

    /// Predicted cost (ns over the training run) of isolating `side` (modules in one helper):
    /// the helper itself, and every call and byte that crosses the boundary.
    pub fn predicted_cost(&self, side: &BTreeSet<String>) -> f64 {
        self.per_process_ns
            + self
                .edges
                .iter()
                .filter(|e| e.caller != e.module)
                .filter(|e| side.contains(&e.caller) != side.contains(&e.module))
                .map(|e| self.edge_cost(e))
                .sum::<f64>()
    }
}

/// The result of a partition.
#[derive(Debug, Clone)]
pub struct Cut {
    /// Modules on the isolated side (with the one asked for).
    pub side: BTreeSet<String>,
    /// Indices of the edges that cross the boundary.
    pub cut: Vec<usize>,
    /// Predicted cost over the training run, ns.
    pub cost_ns: f64,
}

/// The minimum-cost boundary separating `isolate` from `main`.
pub fn min_cut(g: &Graph, isolate: &str) -> Result<Cut> {
    if isolate == "main" {
        bail!("`main` is the program itself: name a module to isolate");
    }
    let idx: BTreeMap<&str, usize> = g
        .modules
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let Some(&t) = idx.get(isolate) else {
        bail!(
            "module `{isolate}` is not in the graph; its modules: {}",
            g.modules.join(", ")
        );
    };
    let s = idx["main"];
    let n = g.modules.len();
    // Undirected capacities, in integer ns (at least 1 for an edge that moved anything).
    let mut cap = vec![vec![0i64; n]; n];
    for e in &g.edges {
        let (a, b) = (idx[e.caller.as_str()], idx[e.module.as_str()]);
        if a == b || e.calls == 0 {
            continue;
        }
        let c = (g.edge_cost(e).round() as i64).max(1);
        cap[a][b] += c;
        cap[b][a] += c;
    }
    let vertices: Vec<usize> = (0..n).collect();
    let mut caps = Vec::new();
    for (a, row) in cap.iter().enumerate() {
        for (b, &c) in row.iter().enumerate() {
            if c > 0 {
                caps.push(((a, b), c));
            }
        }
    }
    let (flows, _max, _cut) =
        pathfinding::directed::edmonds_karp::edmonds_karp_dense(&vertices, &s, &t, caps);
    let mut flow = vec![vec![0i64; n]; n];
    for ((a, b), f) in flows {
        flow[a][b] += f;
    }
    // Source side: reachable from main in the residual graph.
    let residual = |a: usize, b: usize| cap[a][b] - flow[a][b] + flow[b][a];
    let mut reach = vec![false; n];
    let mut stack = vec![s];
    reach[s] = true;
    while let Some(a) = stack.pop() {
        let next: Vec<usize> = (0..n)
            .filter(|&b| !reach[b] && residual(a, b) > 0)
            .collect();
        for b in next {
            reach[b] = true;
            stack.push(b);
        }
    }
    // Isolated side: the module and what is connected to it outside the source side; modules
    // with no edge at all stay with main.
    let mut side_v = vec![false; n];
    let mut stack = vec![t];
    side_v[t] = true;
    while let Some(a) = stack.pop() {
        let next: Vec<usize> = (0..n)
            .filter(|&b| !side_v[b] && !reach[b] && cap[a][b] > 0)
            .collect();
        for b in next {
            side_v[b] = true;
            stack.push(b);
        }
    }
    let side: BTreeSet<String> = (0..n)
        .filter(|&i| side_v[i])
        .map(|i| g.modules[i].clone())
        .collect();
    let cut = g
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.caller != e.module && side.contains(&e.caller) != side.contains(&e.module)
        })
        .map(|(i, _)| i)
        .collect();
    Ok(Cut {
        cost_ns: g.predicted_cost(&side),
        side,
        cut,
    })
}

/// Graphviz DOT: one node per module, edges labelled with calls and bytes, the cut edges red
/// and dashed, the isolated side in a filled cluster.
pub fn dot(g: &Graph, c: &Cut, isolate: &str) -> String {
    let mut o = String::from(
        "digraph fracture {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    o.push_str(&format!(
        "  label=\"isolating {isolate}: predicted {:.0} us over a {:.3} s run\";\n",
        c.cost_ns / 1e3,
        g.duration_s
    ));
    o.push_str("  subgraph cluster_isolated {\n    label=\"helper\"; style=filled; fillcolor=\"#fde9d9\";\n");
    for m in &c.side {
        o.push_str(&format!("    \"{m}\";\n"));
    }
    o.push_str("  }\n");
    for m in g.modules.iter().filter(|m| !c.side.contains(*m)) {
        o.push_str(&format!("  \"{m}\";\n"));
    }
    // One arrow per (caller, module) pair.
    let mut pairs: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for e in &g.edges {
        let p = pairs.entry((&e.caller, &e.module)).or_default();
        p.0 += e.calls;
        p.1 += e.bytes_in + e.bytes_out;
    }
    for ((a, b), (calls, bytes)) in pairs {
        let crossing = c.side.contains(a) != c.side.contains(b);
        o.push_str(&format!(
            "  \"{a}\" -> \"{b}\" [label=\"{calls} calls\\n{bytes} B\"{}];\n",
            if crossing {
                ", color=red, style=dashed, fontcolor=red"
            } else {
                ""
            }
        ));
    }
    o.push_str("}\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str, u64)]) -> Graph {
        let e: Vec<Value> = edges
            .iter()
            .map(|(a, b, n)| {
                serde_json::json!({"caller": a, "module": b, "function": format!("{b}_f"),
                                   "calls": n, "bytes_in": 0, "bytes_out": 0})
            })
            .collect();
        Graph::from_json(
            &serde_json::json!({"v": 1, "program": "/p", "map": "/m.yaml", "duration_s": 1.0,
                "calibration": {"per_call_ns": 1000.0, "per_byte_ns": 0.5},
                "modules": ["main", "a", "b", "c"], "edges": e})
            .to_string(),
        )
        .unwrap()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_light_edge_is_cut_rather_than_a_heavy_one() {
        // main calls a a lot; a calls b a little: isolating b cuts a -> b only.
        let g = graph(&[("main", "a", 10_000), ("a", "b", 10)]);
        let c = min_cut(&g, "b").unwrap();
        assert_eq!(c.side, set(&["b"]));
        assert_eq!(c.cost_ns, 10.0 * 1000.0);
    }

    #[test]
    fn a_chatty_neighbour_joins_the_isolated_module() {
        // main calls a a little; a calls b a lot; main calls b once: isolate a -> {a, b}.
        let g = graph(&[("main", "a", 100), ("a", "b", 50_000), ("main", "b", 1)]);
        let c = min_cut(&g, "a").unwrap();
        assert_eq!(c.side, set(&["a", "b"]));
        assert_eq!(c.cost_ns, 101.0 * 1000.0);
        assert!(g.predicted_cost(&set(&["a"])) > c.cost_ns);
        // c has no edges: it stays with main.
        assert!(!c.side.contains("c"));
    }

    #[test]
    fn bytes_out_count_twice_and_cold_calls_pay_the_wake_up() {
        let mut g = graph(&[("main", "a", 10)]);
        g.edges[0].bytes_out = 1000;
        assert_eq!(
            g.predicted_cost(&set(&["a"])),
            10.0 * 1000.0 + 2.0 * 1000.0 * 0.5
        );
        // A graph without the wake-up figure prices cold calls at 0; with it, each cold call
        // adds one wake-up.
        g.edges[0].cold_calls = 3;
        assert_eq!(g.predicted_cost(&set(&["a"])), 11_000.0);
        g.per_cold_call_ns = 20_000.0;
        assert_eq!(g.predicted_cost(&set(&["a"])), 11_000.0 + 60_000.0);
        // A sparse edge (every call cold) outweighs a busier warm one in the cut: isolating b
        // cuts a -> b while main -> a is the sparse one, and main -> a once a -> b is.
        let mut g = graph(&[("main", "a", 100), ("a", "b", 300)]);
        g.per_cold_call_ns = 20_000.0;
        g.edges[0].cold_calls = 100;
        assert_eq!(min_cut(&g, "b").unwrap().side, set(&["b"]));
        g.edges[0].cold_calls = 0;
        g.edges[1].cold_calls = 300;
        assert_eq!(min_cut(&g, "b").unwrap().side, set(&["a", "b"]));
    }

    #[test]
    fn bytes_count_and_bad_graphs_are_errors() {
        let mut g = graph(&[("main", "a", 1)]);
        g.edges[0].bytes_in = 2000;
        assert_eq!(g.predicted_cost(&set(&["a"])), 1000.0 + 1000.0);
        assert!(min_cut(&g, "zzz")
            .unwrap_err()
            .to_string()
            .contains("not in the graph"));
        assert!(min_cut(&g, "main").is_err());
        assert!(Graph::from_json("{}").is_err());
        assert!(Graph::from_json("[1").is_err());
        let d = dot(&g, &min_cut(&g, "a").unwrap(), "a");
        assert!(d.contains("color=red"), "{d}");
    }
}
