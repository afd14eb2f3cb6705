//! `fracture plan`: the next run's map, chosen from the crash history (and a profile).

use anyhow::{Context, Result};
use quarantine::partition::Graph;
use quarantine::plan::{plan, Strategy};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// A report store (SQLite path or postgresql:// URL); repeatable [default: as `report`]
    #[arg(long = "db", value_name = "FILE|URL")]
    db: Vec<OsString>,
    /// The program the plan is for: only reports of its build-id count, from every deployment
    /// [default: the map's `target` when it names a file]
    #[arg(long, value_name = "PROGRAM")]
    program: Option<PathBuf>,
    /// Which modules to isolate
    #[arg(long, value_enum, default_value_t = StrategyArg::Optimistic)]
    strategy: StrategyArg,
    /// A profile (`fracture profile`), to place modules that crashed at the cheapest boundary
    #[arg(long, value_name = "GRAPH.json")]
    profile: Option<PathBuf>,
    /// valgrind-slices: which deployment this is, 1 to --deployments
    #[arg(long, value_name = "K", requires = "deployments")]
    deployment: Option<usize>,
    /// valgrind-slices: how many deployments share the checking
    #[arg(long, value_name = "N", requires = "deployment")]
    deployments: Option<usize>,
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
    /// Check this deployment's slice of the modules under valgrind, in a sampled replica
    ValgrindSlices,
}

pub fn main(args: &PlanArgs) -> Result<i32> {
    let strategy = match args.strategy {
        StrategyArg::Optimistic => Strategy::Optimistic,
        StrategyArg::Pessimistic => Strategy::Pessimistic,
        StrategyArg::ValgrindSlices => {
            let (Some(deployment), Some(deployments)) = (args.deployment, args.deployments) else {
                return Err(crate::Usage(
                    "--strategy valgrind-slices needs --deployment K --deployments N".into(),
                )
                .into());
            };
            if deployments == 0 || deployment == 0 || deployment > deployments {
                return Err(crate::Usage(format!(
                    "--deployment {deployment} --deployments {deployments}: deployments are counted from 1 to N"
                ))
                .into());
            }
            // Valgrind writes its findings into the spool of the (first) store, where the
            // next `sync`, `report` or `plan` takes them.
            let loc = crate::store::locations(&args.db)?.remove(0);
            let Some(spool) = loc.spool_dir() else {
                anyhow::bail!("no spool directory for {}", crate::store::name(&loc));
            };
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&spool)
                    .with_context(|| format!("cannot create {}", spool.display()))?;
            }
            let spool = std::path::absolute(&spool).unwrap_or(spool);
            Strategy::ValgrindSlices {
                deployment,
                deployments,
                spool,
            }
        }
    };
    if !matches!(args.strategy, StrategyArg::ValgrindSlices)
        && (args.deployment.is_some() || args.deployments.is_some())
    {
        return Err(crate::Usage(
            "--deployment and --deployments go with --strategy valgrind-slices".into(),
        )
        .into());
    }
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
    let dbs = crate::store::open_all(&args.db)?;
    let program = match &args.program {
        Some(p) => {
            let found = crate::run::find_program(p)
                .with_context(|| format!("--program {}: not found", p.display()))?;
            Some(found.canonicalize().unwrap_or(found))
        }
        None => target_file(&args.config),
    };
    let build = match &program {
        Some(p) => match quarantine::symbolize::build_id(p) {
            Some(b) => Some(b),
            None => {
                eprintln!(
                    "fracture: plan: {} has no build-id: reports are matched by program path",
                    p.display()
                );
                None
            }
        },
        None => None,
    };
    let p = plan(
        &args.config,
        &dbs,
        strategy,
        graph.as_ref(),
        args.min_clean_calls,
        build.as_deref(),
    )?;
    for n in &p.notes {
        eprintln!("fracture: plan: {n}");
    }
    let out = &args.out;
    std::fs::write(out, &p.text).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("fracture: plan: wrote {}", out.display());
    Ok(0)
}

/// The map's `target` when it is a plain path of an existing file (no glob).
fn target_file(map: &std::path::Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(map).ok()?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    let t = doc.get("target")?.as_str()?;
    let p = PathBuf::from(t);
    (!t.contains(['*', '?', '[']) && p.is_absolute() && p.is_file()).then_some(p)
}
