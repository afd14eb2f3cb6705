//! `fracture report [--db FILE|URL]...`: the crash history as a table, per module and function.

use anyhow::Result;
use quarantine::reports::{summary, Source};
use std::ffi::OsString;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A report store (SQLite path or postgresql:// URL); repeatable [default:
    /// $FRACTURE_REPORTS, else ~/.local/state/fracture/reports.db]
    #[arg(long = "db", value_name = "FILE|URL")]
    db: Vec<OsString>,
    /// Also write the report as one self-contained HTML page
    #[arg(long, value_name = "FILE.html")]
    html: Option<std::path::PathBuf>,
    /// With --html: a profile (`fracture profile`), to show what isolating each module costs
    #[arg(long, value_name = "GRAPH.json", requires = "html")]
    profile: Option<std::path::PathBuf>,
    /// With --html: the map in use, to show the plan the reports lead to (optimistic)
    #[arg(
        short = 'c',
        long = "config",
        value_name = "MAP.yaml",
        requires = "html"
    )]
    config: Option<std::path::PathBuf>,
}

/// Writes the HTML page of `rows` and the stores' events.
fn write_html(
    args: &ReportArgs,
    out: &std::path::Path,
    dbs: &[quarantine::reports::Store],
    rows: &[quarantine::reports::Row],
) -> Result<()> {
    use anyhow::Context;
    let mut events = Vec::new();
    for d in dbs {
        events.extend(d.events()?);
    }
    let graph = match &args.profile {
        Some(p) => Some(
            quarantine::partition::Graph::from_json(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| p.display().to_string())?,
        ),
        None => None,
    };
    let plan = match &args.config {
        Some(map) => Some(quarantine::plan::plan(
            map,
            dbs,
            quarantine::plan::Strategy::Optimistic,
            graph.as_ref(),
            1000,
            None,
        )?),
        None => None,
    };
    let names: Vec<String> = dbs.iter().map(Source::name).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let page = quarantine::html::page(&quarantine::html::Page {
        stores: &names,
        rows,
        events: &events,
        profile: graph.as_ref(),
        plan: plan.as_ref().map(|p| (p.notes.as_slice(), p.text.as_str())),
        now,
    });
    std::fs::write(out, page).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("fracture: report: wrote {}", out.display());
    Ok(())
}

fn time(t: f64) -> String {
    quarantine::utc::format(t, true)
}

pub fn main(args: &ReportArgs) -> Result<i32> {
    let dbs = crate::store::open_all(&args.db)?;
    let rows = summary(&dbs)?;
    if let Some(out) = &args.html {
        write_html(args, out, &dbs, &rows)?;
    }
    let names: Vec<String> = dbs.iter().map(Source::name).collect();
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
        "valgrind",
        "signals",
        "programs",
        "deployments",
        "clean calls",
        "first seen",
        "last seen",
    ];
    // Names come from spool records, which anyone who can write the spool wrote: control
    // characters (terminal escapes) are shown as U+FFFD.
    let printable = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect()
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                printable(&r.module),
                if r.function.is_empty() {
                    "?".into()
                } else {
                    printable(&r.function)
                },
                r.crash.to_string(),
                r.hang.to_string(),
                r.gave_up.to_string(),
                r.mismatch.to_string(),
                r.program_crash.to_string(),
                r.valgrind.to_string(),
                if r.signals.is_empty() {
                    "-".into()
                } else {
                    r.signals.clone()
                },
                r.programs.to_string(),
                r.deployments.to_string(),
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
                if (2..=7).contains(&i) || (9..=11).contains(&i) {
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
