//! `fracture report --html`: one self-contained page (inline CSS and SVG, no script, nothing
//! fetched) with, per module, its crashes, hangs, mismatches and valgrind findings over time,
//! what isolating it costs (from a profile, when given), and the plan the reports lead to.

use crate::partition::Graph;
use crate::reports::{EventRow, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// What the page shows.
pub struct Page<'a> {
    /// The stores read, as users name them.
    pub stores: &'a [String],
    pub rows: &'a [Row],
    pub events: &'a [EventRow],
    pub profile: Option<&'a Graph>,
    /// The plan: its notes and the map it writes.
    pub plan: Option<(&'a [String], &'a str)>,
    /// When the page was made (seconds since the epoch).
    pub now: f64,
}

/// The colour of each kind of event, in the legend, the bars and the timeline.
pub const KINDS: &[(&str, &str, &str)] = &[
    ("crash", "crashes", "#d62728"),
    ("program-crash", "program crashes", "#8c1c13"),
    ("hang", "hangs", "#ff7f0e"),
    ("gave-up", "give-ups", "#7f7f7f"),
    ("mismatch", "mismatches", "#9467bd"),
    ("valgrind", "valgrind findings", "#1f77b4"),
];

fn kind_of(outcome: &str) -> &'static str {
    match outcome {
        "crash" | "helper-exit" => "crash",
        "program-crash" => "program-crash",
        "hang" => "hang",
        "gave-up" => "gave-up",
        "mismatch" => "mismatch",
        "valgrind" => "valgrind",
        _ => "crash",
    }
}

fn colour(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| k.0 == kind)
        .map_or("#000000", |k| k.2)
}

/// Text escaped for HTML (and XML inside inline SVG).
pub fn esc(s: &str) -> String {
    crate::xml::escape(s)
}

/// `YYYY-MM-DD HH:MM` (UTC) of seconds since the epoch.
fn date(t: f64) -> String {
    crate::utc::format(t, false)
}

/// Per module: counts per kind, clean calls, deployments.
#[derive(Default)]
struct ModuleSum {
    kinds: BTreeMap<&'static str, u64>,
    clean: u64,
    functions: BTreeSet<String>,
    deployments: BTreeSet<String>,
}

pub fn page(p: &Page) -> String {
    let mut mods: BTreeMap<String, ModuleSum> = BTreeMap::new();
    for r in p.rows {
        let m = mods.entry(r.module.clone()).or_default();
        m.clean = m.clean.saturating_add(r.clean_calls);
        if !r.function.is_empty() {
            m.functions.insert(r.function.clone());
        }
    }
    for e in p.events {
        let m = mods.entry(e.module.clone()).or_default();
        *m.kinds.entry(kind_of(&e.outcome)).or_default() += 1;
        m.deployments.insert(e.deployment.clone());
    }
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fracture report</title><style>\
         body{{font:14px/1.4 sans-serif;margin:24px;color:#222;background:#fff}}\
         h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:17px;margin:28px 0 8px}}\
         table{{border-collapse:collapse}} td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}} .muted{{color:#777}}\
         pre{{background:#f6f6f6;padding:10px;overflow:auto;max-height:480px}}\
         .legend span{{display:inline-block;margin-right:14px}} .sw{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}}\
         </style></head><body>\n<h1>fracture report</h1>\n<p class=\"muted\">{} events, {} modules, from {} &mdash; made {} UTC</p>\n",
        p.events.len(),
        mods.len(),
        esc(&p.stores.join(", ")),
        date(p.now)
    );
    // Legend.
    h.push_str("<p class=\"legend\">");
    for (_, label, c) in KINDS {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{c}\"></i>{}</span>",
            esc(label)
        );
    }
    h.push_str("</p>\n");
    // The table, with the bars and the cost of isolating each module.
    h.push_str("<h2 id=\"modules\">Per module</h2>\n<table><tr><th>module</th><th>functions</th>");
    for (_, label, _) in KINDS {
        let _ = write!(h, "<th>{}</th>", esc(label));
    }
    h.push_str(
        "<th>clean calls</th><th>deployments</th><th>isolation cost</th><th>events</th></tr>\n",
    );
    let widest = mods
        .values()
        .map(|m| m.kinds.values().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    for (name, m) in &mods {
        let _ = write!(
            h,
            "<tr data-module=\"{}\"><td><b>{}</b></td><td class=\"muted\">{}</td>",
            esc(name),
            esc(name),
            esc(&m.functions.iter().cloned().collect::<Vec<_>>().join(", "))
        );
        for (k, _, _) in KINDS {
            let _ = write!(h, "<td>{}</td>", m.kinds.get(k).copied().unwrap_or(0));
        }
        let cost = match p.profile {
            Some(g) if g.modules.contains(name) && name != "main" => {
                let side: BTreeSet<String> = [name.clone()].into();
                let ns = g.predicted_cost(&side);
                if g.duration_s > 0.0 {
                    format!(
                        "{:.0} &micro;s/s ({:.2}%)",
                        ns / 1e3 / g.duration_s,
                        ns / 1e7 / g.duration_s
                    )
                } else {
                    format!("{:.0} &micro;s", ns / 1e3)
                }
            }
            Some(_) => "not in the profile".into(),
            None => "<span class=\"muted\">no profile</span>".into(),
        };
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{cost}</td><td>",
            m.clean,
            m.deployments.len()
        );
        // A stacked bar of the module's events.
        let total: u64 = m.kinds.values().sum();
        let _ = write!(
            h,
            "<svg class=\"bar\" width=\"204\" height=\"16\" role=\"img\" aria-label=\"{total} events\">"
        );
        let mut x = 0.0;
        for (k, _, c) in KINDS {
            let n = m.kinds.get(k).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let w = 200.0 * n as f64 / widest as f64;
            let _ = write!(
                h,
                "<rect class=\"{k}\" x=\"{x:.1}\" y=\"1\" width=\"{w:.1}\" height=\"14\" fill=\"{c}\"/>"
            );
            x += w;
        }
        h.push_str("</svg></td></tr>\n");
    }
    h.push_str("</table>\n");
    // Over time: one lane per module with events, a mark per event.
    let times: Vec<f64> = p
        .events
        .iter()
        .map(|e| e.time)
        .filter(|t| *t > 0.0)
        .collect();
    h.push_str("<h2 id=\"timeline\">Over time</h2>\n");
    if times.is_empty() {
        h.push_str("<p class=\"muted\">no events</p>\n");
    } else {
        let t0 = times.iter().cloned().fold(f64::MAX, f64::min);
        let t1 = times.iter().cloned().fold(f64::MIN, f64::max);
        let span = (t1 - t0).max(1.0);
        let lanes: Vec<&String> = mods
            .iter()
            .filter(|(_, m)| !m.kinds.is_empty())
            .map(|(n, _)| n)
            .collect();
        let (left, width, lane) = (120.0, 760.0, 22.0);
        let height = lane * lanes.len() as f64 + 30.0;
        let _ = write!(
            h,
            "<svg id=\"timeline-chart\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"events over time\">",
            left + width + 20.0
        );
        for (i, name) in lanes.iter().enumerate() {
            let y = lane * i as f64;
            let _ = write!(
                h,
                "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">{}</text><line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
                y + 15.0,
                esc(name),
                left + width,
                y + 11.0,
                y + 11.0
            );
        }
        let lane_of: std::collections::HashMap<&str, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for e in p.events.iter().filter(|e| e.time > 0.0) {
            let Some(&i) = lane_of.get(e.module.as_str()) else {
                continue;
            };
            let x = left + width * (e.time - t0) / span;
            let k = kind_of(&e.outcome);
            let _ = write!(
                h,
                "<rect class=\"{k}\" x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"16\" fill=\"{}\"><title>{} {} {} on {}</title></rect>",
                (x - 4.0).max(left - 4.0),
                lane * i as f64 + 3.0,
                colour(k),
                esc(&e.outcome),
                esc(&e.function),
                date(e.time),
                esc(&e.deployment)
            );
        }
        let y = lane * lanes.len() as f64 + 20.0;
        let _ = writeln!(
            h,
            "<text x=\"{left}\" y=\"{y:.1}\" font-size=\"11\" fill=\"#777\">{}</text><text x=\"{}\" y=\"{y:.1}\" font-size=\"11\" fill=\"#777\" text-anchor=\"end\">{}</text></svg>",
            date(t0),
            left + width,
            date(t1)
        );
    }
    // The plan.
    h.push_str("<h2 id=\"plan\">Plan</h2>\n");
    match p.plan {
        Some((notes, text)) => {
            h.push_str("<ul>");
            for n in notes {
                let _ = write!(h, "<li>{}</li>", esc(n));
            }
            let _ = write!(h, "</ul>\n<pre>{}</pre>\n", esc(text));
        }
        None => h.push_str(
            "<p class=\"muted\">no map given (<code>fracture report --html FILE -c MAP.yaml</code> shows the plan)</p>\n",
        ),
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(module: &str, outcome: &str, time: f64) -> EventRow {
        EventRow {
            module: module.into(),
            function: format!("{module}_f"),
            outcome: outcome.into(),
            signal: 11,
            program: "/bin/x".into(),
            build_id: String::new(),
            deployment: "d<1>".into(),
            time,
            detail: String::new(),
        }
    }

    #[test]
    fn the_page_names_every_module_escapes_text_and_draws_one_mark_per_event() {
        let events = vec![
            ev("a&b", "crash", 100.0),
            ev("a&b", "valgrind", 200.0),
            ev("<c>", "hang", 150.0),
        ];
        let notes = vec!["a&b: 1 failures; isolated".to_string()];
        let html = page(&Page {
            stores: &["postgresql://u:***@h/db".into()],
            rows: &[],
            events: &events,
            profile: None,
            plan: Some((&notes, "processes: {q: <x>}")),
            now: 1.0e9,
        });
        assert!(
            html.contains("<b>a&amp;b</b>") && html.contains("<b>&lt;c&gt;</b>"),
            "{html}"
        );
        assert!(!html.contains("<c>"));
        assert!(html.contains("processes: {q: &lt;x&gt;}"));
        assert_eq!(
            html.matches("<title>").count(),
            1 + 3,
            "one tooltip per event"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("<script")
        );
        // The timeline is well-formed XML.
        let a = html.find("<svg id=\"timeline-chart\"").unwrap();
        let b = html[a..].find("</svg>").unwrap() + a + 6;
        roxmltree::Document::parse(&html[a..b]).unwrap();
    }
}
