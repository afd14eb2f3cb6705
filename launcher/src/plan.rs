//! `fracture plan`: the next run's map, chosen from the crash history (and a profile).

use anyhow::{Context, Result};
use quarantine::partition::Graph;
use quarantine::plan::{plan, Strategy};
use quarantine::reports::Db;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// A report database (SQLite path); repeatable [default: as `report`]
    #[arg(long = "db", value_name = "FILE")]
    db: Vec<PathBuf>,
    /// Which modules to isolate
    #[arg(long, value_enum, default_value_t = StrategyArg::Optimistic)]
    strategy: StrategyArg,
    /// A profile (`fracture profile`), to place modules that crashed at the cheapest boundary
    #[arg(long, value_name = "GRAPH.json")]
    profile: Option<PathBuf>,
    /// Calls without a crash after which an isolated module is trusted again
    #[arg(long, value_name = "N", default_value_t = 1000)]
    min_clean_calls: u64,
    /// The map to start from
    #[arg(short = 'c', long = "config", value_name = "MAP.yaml")]
    config: PathBuf,
    /// Where to write the next run's map
    #[arg(short = 'o', long = "output", value_name = "NEXT.yaml")]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StrategyArg {
    /// Isolate only what crashed
    Optimistic,
    /// Isolate everything until it has proven itself
    Pessimistic,
}

pub fn main(args: &PlanArgs) -> Result<i32> {
    let strategy = match args.strategy {
        StrategyArg::Optimistic => Strategy::Optimistic,
        StrategyArg::Pessimistic => Strategy::Pessimistic,
    };
    let graph = match &args.profile {
        Some(p) => Some(
            Graph::from_json(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| p.display().to_string())?,
        ),
        None => None,
    };
    let paths = crate::report::databases(&args.db);
    let mut dbs = Vec::new();
    for p in &paths {
        dbs.push(Db::open(p)?);
    }
    let p = plan(
        &args.config,
        &dbs,
        strategy,
        graph.as_ref(),
        args.min_clean_calls,
    )?;
    for n in &p.notes {
        eprintln!("fracture: plan: {n}");
    }
    let out = &args.out;
    std::fs::write(out, &p.text).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("fracture: plan: wrote {}", out.display());
    Ok(0)
}
