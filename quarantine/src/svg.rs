//! `fracture partition --svg`: the profiled module graph and its boundary as one standalone
//! SVG file, drawn with no Graphviz installed.
//!
//! The layout (ranks, crossing reduction, edge routing) comes from `layout-rs`, a maintained,
//! dependency-free Rust implementation of Graphviz's layered (`dot`) style of layout. Its own
//! SVG writer is not used: this module is the render backend, so every name from the graph is
//! escaped here, once, and the shapes carry classes a reader or a test can select: `node
//! helper` / `node program` groups holding a box and the module's `<text class="module">`,
//! one `edge` path per caller/module pair (as in the Graphviz drawing) with `cut` when it
//! crosses the boundary and `data-edges` the number of profile edges it stands for, and a
//! `label` per path (function, calls, bytes, cost). A module's calls to itself never cross a
//! boundary and `layout-rs` draws loops poorly: they are listed in the module's box instead.
//!
//! It must never panic on a graph it is given (empty, names with quotes or markup, duplicate
//! modules, cycles, self-calls): a failure of the layout crate comes back as an error.

use crate::partition::{Cut, Graph};
use crate::xml::escape as xml;
use anyhow::{bail, Result};
use layout::core::color::Color;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Fill of the modules that go to the helper (the colour of the Graphviz drawing's cluster).
const HELPER_FILL: &str = "#fde9d9";
/// Fill of the modules that stay in the program.
const PROGRAM_FILL: &str = "#dde8f6";
/// Stroke of the cut edges (RGBA, as `layout-rs` colours are).
const CUT_RGBA: u32 = 0xc6_28_28_ff;
const EDGE_RGBA: u32 = 0x55_55_55_ff;
/// Module names: monospace, this size in px; the box is sized for it.
const NODE_FONT: f64 = 14.0;
/// Edge labels, rendered at LABEL_FONT px monospace; `layout-rs` reserves LABEL_FONT_ROOM px
/// per character and per line for them, a little more than a monospace glyph takes.
const LABEL_FONT: f64 = 11.0;
const LABEL_FONT_ROOM: usize = 12;
/// The two title lines above the drawing.
const TITLE_BAND: f64 = 44.0;
/// `layout-rs`'s crossing reduction grows about as the cube of the arrows (0.35 s for 80
/// among 30 random modules, 1.9 s for 120, 9 s for a star of 600): above this many it is
/// skipped, and the drawing keeps its ranks but may cross more.
const REDUCE_CROSSINGS_UP_TO: usize = 80;
/// Even without it, placing a dense graph grows that way (1.3 s for 200 arrows among 25
/// random modules, 12 s for 300): a larger graph is refused, not drawn for minutes.
pub const MAX_ARROWS: usize = 200;

/// The drawing of `g` with the boundary `c` that isolates `isolate`, as an SVG document.
pub fn svg(g: &Graph, c: &Cut, isolate: &str) -> Result<String> {
    // Each module once, in the graph's order, then any edge end the module list lacks.
    let mut nodes: Vec<&str> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let names = g.modules.iter().map(String::as_str).chain(
        g.edges
            .iter()
            .flat_map(|e| [e.caller.as_str(), e.module.as_str()]),
    );
    for m in names {
        if !index.contains_key(m) {
            index.insert(m, nodes.len());
            nodes.push(m);
        }
    }
    let cut: BTreeSet<usize> = c.cut.iter().copied().collect();
    // One arrow per (caller, module) pair, as in the Graphviz drawing: an arrow per function
    // would multiply the nodes `layout-rs` places (each label is one), and its placement is
    // superlinear in them. A module's calls to itself go in its box.
    let mut pairs: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, e) in g.edges.iter().enumerate() {
        if let (Some(&a), Some(&b)) = (index.get(e.caller.as_str()), index.get(e.module.as_str())) {
            pairs.entry((a, b)).or_default().push(i);
        }
    }
    let mut own_calls: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    let mut edges = Vec::new();
    for (&(a, b), list) in &pairs {
        let calls: u64 = list.iter().map(|&i| g.edges[i].calls).sum();
        let bytes: u64 = list
            .iter()
            .map(|&i| g.edges[i].bytes_in + g.edges[i].bytes_out)
            .sum();
        let cost_us: f64 = list.iter().map(|&i| g.edge_cost(&g.edges[i])).sum::<f64>() / 1e3;
        let what = match list.as_slice() {
            [i] => g.edges[*i].function.clone(),
            l => format!("{} functions", l.len()),
        };
        if a == b {
            own_calls[a].push(format!("to itself: {calls} calls, {bytes} B ({what})"));
            continue;
        }
        let title: Vec<String> = list
            .iter()
            .map(|&i| {
                let e = &g.edges[i];
                format!(
                    "{} -> {}.{}: {} calls ({} cold), {} bytes in, {} bytes out, {:.0} us if isolated",
                    e.caller,
                    e.module,
                    e.function,
                    e.calls,
                    e.cold_calls,
                    e.bytes_in,
                    e.bytes_out,
                    g.edge_cost(e) / 1e3
                )
            })
            .collect();
        edges.push(EdgeInfo {
            from: a,
            to: b,
            cut: list.iter().filter(|i| cut.contains(i)).count(),
            count: list.len(),
            label: format!("{what}\n{calls} calls, {bytes} B\n{cost_us:.0} us"),
            title: title.join("\n"),
        });
    }
    if edges.len() > MAX_ARROWS {
        bail!(
            "{} caller/module pairs are more than the {MAX_ARROWS} this drawing lays out in \
             reasonable time; `--dot FILE.dot` writes the graph for Graphviz",
            edges.len()
        );
    }
    let mut canvas = Canvas {
        nodes: nodes
            .iter()
            .zip(own_calls)
            .map(|(m, own)| NodeInfo {
                name: m,
                helper: c.side.contains(*m),
                isolated: *m == isolate,
                own_calls: own,
            })
            .collect(),
        edges,
        ..Canvas::default()
    };
    if !nodes.is_empty() {
        let mut vg = VisualGraph::new(layout::core::base::Orientation::LeftToRight);
        let handles: Vec<_> = canvas
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                // The box is drawn here with its text; `layout-rs` gets no label, only a size.
                vg.add_node(Element::create_with_properties(
                    ShapeKind::new_box(""),
                    StyleAttr::simple(),
                    layout::core::base::Orientation::LeftToRight,
                    n.size(),
                    format!("n{i}"),
                ))
            })
            .collect();
        for (i, e) in canvas.edges.iter().enumerate() {
            let is_cut = e.cut > 0;
            let look = StyleAttr::new(
                Color::new(if is_cut { CUT_RGBA } else { EDGE_RGBA }),
                if is_cut { 2 } else { 1 },
                None,
                0,
                LABEL_FONT_ROOM,
            );
            vg.add_edge(
                Arrow::with_properties(
                    LineEndKind::None,
                    LineEndKind::Arrow,
                    if is_cut {
                        LineStyleKind::Dashed
                    } else {
                        LineStyleKind::Normal
                    },
                    &e.label,
                    &look,
                    format!("e{i}"),
                    &None,
                    &None,
                ),
                handles[e.from],
                handles[e.to],
            );
        }
        // `layout-rs` asserts its invariants; should one fail on a graph we did not foresee,
        // the caller gets an error instead of losing the report it already printed.
        let laid = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let reduce_crossings = canvas.edges.len() <= REDUCE_CROSSINGS_UP_TO;
            vg.do_it(false, !reduce_crossings, false, &mut canvas);
            canvas
        }));
        canvas = match laid {
            Ok(c) => c,
            Err(_) => bail!("the layout of the module graph failed (layout-rs)"),
        };
    }
    let helpers: Vec<&str> = c.side.iter().map(String::as_str).collect();
    Ok(canvas.finish(
        &format!(
            "isolating {isolate}: predicted {:.0} us over a {:.3} s run",
            c.cost_ns / 1e3,
            g.duration_s
        ),
        &format!(
            "helper: [{}]; {} cut edges (red, dashed)",
            helpers.join(", "),
            c.cut.len()
        ),
    ))
}

struct NodeInfo<'a> {
    name: &'a str,
    helper: bool,
    isolated: bool,
    /// One line per function of the module that the module calls itself.
    own_calls: Vec<String>,
}

/// Box padding above and below the text.
const NODE_PAD: f64 = 9.0;
const LINE: f64 = LABEL_FONT + 2.0;

impl NodeInfo<'_> {
    fn size(&self) -> Point {
        let name_w = self.name.chars().count().max(4) as f64 * NODE_FONT * 0.62;
        let own_w = self
            .own_calls
            .iter()
            .map(|l| l.chars().count() as f64 * LABEL_FONT * 0.62)
            .fold(0.0, f64::max);
        Point::new(
            name_w.max(own_w) + 24.0,
            2.0 * NODE_PAD + NODE_FONT + self.own_calls.len() as f64 * LINE,
        )
    }
}

/// One arrow: the profile's edges from one module to another.
struct EdgeInfo {
    from: usize,
    to: usize,
    /// How many of its edges the boundary cuts (all or none, for a boundary between modules).
    cut: usize,
    /// How many edges of the profile it stands for.
    count: usize,
    label: String,
    /// One line per edge of the profile.
    title: String,
}

/// The render backend: `layout-rs` calls it with the placed shapes; the `n<i>` / `e<i>`
/// properties set above say which module or edge a shape is.
#[derive(Default)]
struct Canvas<'a> {
    nodes: Vec<NodeInfo<'a>>,
    edges: Vec<EdgeInfo>,
    /// Drawn in this order: edges under the boxes, labels on top.
    edge_svg: String,
    node_svg: String,
    label_svg: String,
    /// Bounding box of what was drawn (min, max), if anything was.
    bounds: Option<(Point, Point)>,
}

impl Canvas<'_> {
    fn grow(&mut self, p: Point) {
        if !(p.x.is_finite() && p.y.is_finite()) {
            return;
        }
        let (lo, hi) = self.bounds.get_or_insert((p, p));
        lo.x = lo.x.min(p.x);
        lo.y = lo.y.min(p.y);
        hi.x = hi.x.max(p.x);
        hi.y = hi.y.max(p.y);
    }

    fn finish(self, title: &str, subtitle: &str) -> String {
        let margin = 12.0;
        let (lo, hi) = self
            .bounds
            .unwrap_or((Point::new(0.0, 0.0), Point::new(0.0, 0.0)));
        let title_w = title.chars().count().max(subtitle.chars().count()) as f64 * 13.0 * 0.62;
        let x0 = lo.x - margin;
        let y0 = lo.y - margin - TITLE_BAND;
        let w = (hi.x - lo.x).max(title_w) + 2.0 * margin;
        let h = hi.y - lo.y + 2.0 * margin + TITLE_BAND;
        let mut o = String::new();
        let _ = write!(
            o,
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
             viewBox=\"{x0:.1} {y0:.1} {w:.1} {h:.1}\" font-family=\"monospace\">\n\
             <title>{}</title>\n<defs>\n",
            xml(title)
        );
        for (id, colour) in [("edge", rgb(EDGE_RGBA)), ("cut", rgb(CUT_RGBA))] {
            let _ = writeln!(
                o,
                "<marker id=\"{id}-end\" markerWidth=\"10\" markerHeight=\"7\" refX=\"10\" refY=\"3.5\" orient=\"auto\"><polygon points=\"0 0, 10 3.5, 0 7\" fill=\"{colour}\"/></marker>\n\
                 <marker id=\"{id}-start\" markerWidth=\"10\" markerHeight=\"7\" refX=\"0\" refY=\"3.5\" orient=\"auto\"><polygon points=\"10 0, 10 7, 0 3.5\" fill=\"{colour}\"/></marker>"
            );
        }
        let _ = write!(
            o,
            "</defs>\n<rect class=\"background\" x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"white\"/>\n\
             <text class=\"title\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\">{}</text>\n\
             <text class=\"subtitle\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#444444\">{}</text>\n",
            x0 + margin,
            y0 + margin + 10.0,
            xml(title),
            x0 + margin,
            y0 + margin + 28.0,
            xml(subtitle)
        );
        o.push_str(&self.edge_svg);
        o.push_str(&self.node_svg);
        o.push_str(&self.label_svg);
        o.push_str("</svg>\n");
        o
    }
}

impl RenderBackend for Canvas<'_> {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        // Only module boxes carry properties (debug rectangles do not, and are not drawn).
        let Some(i) = properties.as_deref().and_then(|p| token(p, 'n')) else {
            return;
        };
        let Some(n) = self.nodes.get(i) else { return };
        let class = match (n.helper, n.isolated) {
            (true, true) => "node helper isolated",
            (true, false) => "node helper",
            _ => "node program",
        };
        let fill = if n.helper { HELPER_FILL } else { PROGRAM_FILL };
        let stroke = if n.isolated { 3 } else { 1 };
        let name = xml(n.name);
        let mid = xy.x + size.x / 2.0;
        let _ = write!(
            self.node_svg,
            "<g class=\"{class}\" data-module=\"{name}\">\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"4\" fill=\"{fill}\" stroke=\"#333333\" stroke-width=\"{stroke}\"/>\
             <text class=\"module\" x=\"{mid:.1}\" y=\"{:.1}\" font-size=\"{NODE_FONT}\" text-anchor=\"middle\" dominant-baseline=\"central\">{name}</text>",
            xy.x,
            xy.y,
            size.x,
            size.y,
            xy.y + NODE_PAD + NODE_FONT / 2.0,
        );
        for (k, line) in n.own_calls.iter().enumerate() {
            let _ = write!(
                self.node_svg,
                "<text class=\"label self\" x=\"{mid:.1}\" y=\"{:.1}\" font-size=\"{LABEL_FONT}\" text-anchor=\"middle\" dominant-baseline=\"central\" fill=\"#333333\">{}</text>",
                xy.y + NODE_PAD + NODE_FONT + (k as f64 + 0.5) * LINE,
                xml(line)
            );
        }
        self.node_svg.push_str("</g>\n");
        self.grow(xy);
        self.grow(Point::new(xy.x + size.x, xy.y + size.y));
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    /// The edge labels (the module boxes have none: they are drawn with their text).
    fn draw_text(&mut self, xy: Point, text: &str, look: &StyleAttr) {
        if text.is_empty() {
            return;
        }
        let cut = look.line_color.to_web_color() == Color::new(CUT_RGBA).to_web_color();
        let lines: Vec<&str> = text.lines().collect();
        let step = LINE;
        // The edge runs through `xy`: the label sits just above it.
        let top = xy.y - lines.len() as f64 * step + step / 2.0 - 2.0;
        let _ = write!(
            self.label_svg,
            // A white halo keeps the label readable where an edge runs under it.
            "<text class=\"label\" x=\"{:.1}\" y=\"{top:.1}\" font-size=\"{LABEL_FONT}\" text-anchor=\"middle\" dominant-baseline=\"central\" fill=\"{}\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">",
            xy.x,
            if cut { rgb(CUT_RGBA) } else { "#333333".into() }
        );
        for (k, line) in lines.iter().enumerate() {
            let _ = write!(
                self.label_svg,
                "<tspan x=\"{:.1}\" dy=\"{}\">{}</tspan>",
                xy.x,
                if k == 0 { 0.0 } else { step },
                xml(line)
            );
        }
        self.label_svg.push_str("</text>\n");
        let half_w =
            lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * LABEL_FONT * 0.31;
        self.grow(Point::new(xy.x - half_w, top - step / 2.0));
        self.grow(Point::new(
            xy.x + half_w,
            top + lines.len() as f64 * step - step / 2.0,
        ));
    }

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        dashed: bool,
        head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        _text: &str,
    ) {
        let Some(i) = properties.as_deref().and_then(|p| token(p, 'e')) else {
            return;
        };
        let (Some(e), [first, second, rest @ ..]) = (self.edges.get(i), path) else {
            return;
        };
        // `layout-rs` paths: the first pair is (start, its control point), each next pair is
        // (control point, point): one cubic, then smooth cubics.
        let mut d = format!(
            "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            first.0.x,
            first.0.y,
            first.1.x,
            first.1.y,
            second.0.x,
            second.0.y,
            second.1.x,
            second.1.y
        );
        for p in rest {
            let _ = write!(d, " S {:.1} {:.1}, {:.1} {:.1}", p.0.x, p.0.y, p.1.x, p.1.y);
        }
        let (class, id, colour, width) = if e.cut > 0 {
            ("edge cut", "cut", rgb(CUT_RGBA), 2)
        } else {
            ("edge", "edge", rgb(EDGE_RGBA), 1)
        };
        let mut attrs = String::new();
        if dashed {
            attrs.push_str(" stroke-dasharray=\"6,4\"");
        }
        if head.0 {
            let _ = write!(attrs, " marker-start=\"url(#{id}-start)\"");
        }
        if head.1 {
            let _ = write!(attrs, " marker-end=\"url(#{id}-end)\"");
        }
        let _ = writeln!(
            self.edge_svg,
            "<path class=\"{class}\" data-edges=\"{}\" d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"{attrs}><title>{}</title></path>",
            e.count,
            xml(&e.title)
        );
        for p in path {
            self.grow(p.0);
            self.grow(p.1);
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

/// `n12` -> 12 for `kind` 'n'.
fn token(p: &str, kind: char) -> Option<usize> {
    p.strip_prefix(kind)?.parse().ok()
}

/// `#rrggbb` of a `layout-rs` RGBA colour.
fn rgb(rgba: u32) -> String {
    format!("#{:06x}", rgba >> 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::min_cut;

    fn graph(modules: &[&str], edges: &[(&str, &str, u64)]) -> Graph {
        let e: Vec<serde_json::Value> = edges
            .iter()
            .map(|(a, b, n)| {
                serde_json::json!({"caller": a, "module": b, "function": format!("{b}_f{n}"),
                                   "calls": n, "bytes_in": 8 * n, "bytes_out": 0})
            })
            .collect();
        Graph::from_json(
            &serde_json::json!({"v": 1, "program": "/p", "map": "/m.yaml", "duration_s": 1.0,
                "calibration": {"per_call_ns": 1000.0, "per_byte_ns": 0.5},
                "modules": modules, "edges": e})
            .to_string(),
        )
        .unwrap()
    }

    /// The module names drawn as node text on the helper side and on the program side, and the
    /// profile edges the arrows marked cut stand for.
    fn parse(svg: &str) -> (Vec<String>, Vec<String>, usize) {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
        let classed = |n: &roxmltree::Node, c: &str| {
            n.attribute("class")
                .is_some_and(|v| v.split(' ').any(|x| x == c))
        };
        let texts = |c: &str| -> Vec<String> {
            doc.descendants()
                .filter(|n| classed(n, "node") && classed(n, c))
                .flat_map(|n| n.children().filter(|t| classed(t, "module")))
                .map(|t| t.text().unwrap_or("").to_string())
                .collect()
        };
        let cut = doc
            .descendants()
            .filter(|n| n.has_tag_name("path") && classed(n, "edge") && classed(n, "cut"))
            .map(|n| n.attribute("data-edges").unwrap().parse::<usize>().unwrap())
            .sum();
        (texts("helper"), texts("program"), cut)
    }

    #[test]
    fn every_module_is_drawn_once_on_its_side_and_the_cut_edges_are_marked() {
        let g = graph(
            &["main", "a", "b", "c"],
            &[
                ("main", "a", 100),
                ("main", "a", 1),
                ("a", "b", 50_000),
                ("main", "b", 1),
                ("b", "a", 7),
                ("c", "c", 3),
            ],
        );
        let c = min_cut(&g, "a").unwrap();
        let s = svg(&g, &c, "a").unwrap();
        let (mut helper, mut program, cut) = parse(&s);
        helper.sort();
        program.sort();
        assert_eq!(helper, ["a", "b"], "{s}");
        assert_eq!(program, ["c", "main"], "{s}");
        assert_eq!(cut, c.cut.len(), "{s}");
        assert_eq!(cut, 3);
        // main -> a: one arrow for its two functions.
        assert_eq!(s.matches("class=\"edge cut\"").count(), 2, "{s}");
        assert!(
            s.contains(">2 functions<") && s.contains(">101 calls, 808 B<"),
            "{s}"
        );
        assert!(s.contains("class=\"node helper isolated\" data-module=\"a\""));
        assert!(s.contains("50000 calls"), "{s}");
        assert!(s.contains("to itself: 3 calls, 24 B (c_f3)"), "{s}");
    }

    #[test]
    fn names_with_markup_quotes_and_controls_stay_well_formed_text() {
        let odd = "lib<&>\"q'\u{1}\u{ffff}";
        let g = graph(
            &["main", odd, "x]]>"],
            &[("main", odd, 5), (odd, "x]]>", 9)],
        );
        let c = min_cut(&g, odd).unwrap();
        let s = svg(&g, &c, odd).unwrap();
        let (helper, program, cut) = parse(&s);
        assert!(
            helper.contains(&"lib<&>\"q'\u{fffd}\u{fffd}".to_string()),
            "{s}"
        );
        assert!(program.contains(&"main".to_string()), "{s}");
        assert_eq!(cut, c.cut.len());
    }

    #[test]
    fn an_empty_graph_and_a_graph_without_edges_still_draw() {
        let empty = Graph {
            program: String::new(),
            map: String::new(),
            duration_s: 0.0,
            per_call_ns: 0.0,
            per_byte_ns: 0.0,
            per_process_ns: 0.0,
            per_cold_call_ns: 0.0,
            modules: vec![],
            edges: vec![],
        };
        let c = Cut {
            side: Default::default(),
            cut: vec![],
            cost_ns: 0.0,
        };
        let (h, p, cut) = parse(&svg(&empty, &c, "").unwrap());
        assert!(h.is_empty() && p.is_empty() && cut == 0);
        let lonely = graph(&["main", "a", "a"], &[]);
        let c = min_cut(&lonely, "a").unwrap();
        let (h, p, _) = parse(&svg(&lonely, &c, "a").unwrap());
        assert_eq!((h, p), (vec!["a".to_string()], vec!["main".to_string()]));
    }

    #[test]
    fn a_graph_too_large_to_lay_out_is_refused_and_a_wide_one_is_drawn() {
        let names: Vec<String> = (0..=MAX_ARROWS).map(|i| format!("m{i}")).collect();
        let mut edges: Vec<(&str, &str, u64)> =
            names.iter().map(|m| ("main", m.as_str(), 1)).collect();
        let g = graph(&["main"], &edges);
        let c = min_cut(&g, "m0").unwrap();
        let e = svg(&g, &c, "m0").unwrap_err().to_string();
        let n = format!("{} caller/module pairs", MAX_ARROWS + 1);
        assert!(e.contains(&n) && e.contains("--dot"), "{e}");
        // Past the crossing reduction's bound: drawn all the same.
        edges.truncate(REDUCE_CROSSINGS_UP_TO + 20);
        let g = graph(&["main"], &edges);
        let c = min_cut(&g, "m0").unwrap();
        let (h, p, cut) = parse(&svg(&g, &c, "m0").unwrap());
        assert_eq!((h.len(), p.len(), cut), (1, REDUCE_CROSSINGS_UP_TO + 20, 1));
    }

    #[test]
    fn random_graphs_lay_out_without_a_panic() {
        // Cycles, parallel and self edges, fan-in and fan-out: what a profile can hold.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = ["main", "a", "b", "c", "d", "e", "f", "g"];
        for _ in 0..200 {
            let n = 2 + next(7) as usize;
            let edges: Vec<(&str, &str, u64)> = (0..next(16))
                .map(|_| {
                    (
                        names[next(n as u64) as usize],
                        names[next(n as u64) as usize],
                        1 + next(1000),
                    )
                })
                .collect();
            let g = graph(&names[..n], &edges);
            let c = min_cut(&g, names[1]).unwrap();
            let s = svg(&g, &c, names[1]).unwrap();
            let (h, p, cut) = parse(&s);
            assert_eq!(h.len() + p.len(), n, "{edges:?}\n{s}");
            assert_eq!(cut, c.cut.len(), "{edges:?}\n{s}");
        }
    }
}
