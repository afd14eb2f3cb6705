//! `fracture`: isolate exported functions of an unmodified program into helper processes.
//!
//! The command line is parsed by clap (derive) into one struct per subcommand; each module
//! below runs one subcommand. Exit codes (SPEC.md "Command line"): `run` and `profile` exit
//! with the program's own status (128+signal when it was killed), 125 when fracture refuses
//! to start it (a broken map, a bad option), 126 when PROGRAM cannot be executed and 127 when
//! it is not found. The other subcommands exit 0 on success, 2 for usage errors and maps that
//! do not parse or do not fit the program, 1 for other failures.
#![deny(unsafe_code)]

/// println! that returns the error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        writeln!(std::io::stdout(), $($t)*)?;
    }};
}

mod bisect;
mod check;
mod isolate;
mod partition;
mod plan;
mod profile;
mod reaper;
mod report;
mod run;
mod sandbox_check;
mod store;
mod symbols;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// `fracture run` arguments, as `profile` and `bisect` also use them.
pub struct RunArgs {
    pub config: PathBuf,
    pub stats: Option<PathBuf>,
    pub sets: Vec<(String, String)>,
    pub program: Vec<OsString>,
}

#[derive(Parser)]
#[command(
    name = "fracture",
    version,
    about = "Isolate exported functions of an unmodified Linux program into helper processes",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The map and its overrides, for every subcommand that reads one.
#[derive(Args)]
struct MapArgs {
    /// The YAML module map
    #[arg(short = 'c', long = "config", value_name = "MAP.yaml")]
    config: PathBuf,
    /// Override one key of the map (a dotted path; VALUE is YAML); repeatable
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
}

/// `-- PROGRAM [ARGS...]`
#[derive(Args)]
struct ProgramArgs {
    /// The program to run and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    program: Vec<OsString>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run PROGRAM with the map's modules in helper processes; exits with its status
    Run {
        /// The YAML module map
        #[arg(
            short = 'c',
            long = "config",
            value_name = "MAP.yaml",
            required_unless_present = "isolate",
            conflicts_with = "isolate"
        )]
        config: Option<PathBuf>,
        /// No map: isolate every function the program imports from these objects, in one
        /// helper with `memory: on-demand` (the map `fracture init` writes)
        #[arg(long, value_name = "OBJECT[,OBJECT...]")]
        isolate: Vec<String>,
        /// Override one key of the map (a dotted path; VALUE is YAML); repeatable
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Write run statistics as JSON to this file at exit
        #[arg(long, value_name = "FILE.json")]
        stats: Option<PathBuf>,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// Write the map `run --isolate` uses: every function PROGRAM imports from OBJECT
    Init {
        /// The objects to isolate (sonames, file names or paths)
        #[arg(long, required = true, value_name = "OBJECT[,OBJECT...]")]
        isolate: Vec<String>,
        /// Where to write the map (default: standard output)
        #[arg(short = 'o', long = "output", value_name = "MAP.yaml")]
        out: Option<PathBuf>,
        /// The program whose imports are listed
        #[arg(last = true, value_name = "PROGRAM")]
        program: Option<PathBuf>,
    },
    /// Validate a map (against a program): objects and symbols exist, specs parse
    Check {
        #[command(flatten)]
        map: MapArgs,
        /// Check the map against this program
        #[arg(last = true, value_name = "PROGRAM")]
        program: Option<PathBuf>,
    },
    /// Exported (or imported) functions of an ELF object, one per line
    Symbols {
        /// Imported functions instead of exported ones
        #[arg(long)]
        imports: bool,
        /// A soname, file name or path
        #[arg(value_name = "OBJECT")]
        object: String,
    },
    /// A training run that records who calls whom and how much data moves
    Profile {
        #[command(flatten)]
        map: MapArgs,
        /// Where to write the module graph
        #[arg(short = 'o', long = "output", value_name = "GRAPH.json")]
        out: PathBuf,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// The cheapest boundary (min-cut) of a profiled graph that isolates a module
    Partition(partition::PartitionArgs),
    /// Crash history: per module, symbol, signal, outcome
    Report(report::ReportArgs),
    /// The next run's map, chosen from the crash history
    Plan(plan::PlanArgs),
    /// Move spooled crash reports to the store now
    Sync(store::SyncArgs),
    /// Find the module whose isolation stops a crash
    Bisect {
        #[command(flatten)]
        map: MapArgs,
        /// Run the culprit found by elimination alone once more, to confirm it
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// Internal: the calibration workload of `profile`
    #[command(name = "__calibrate", hide = true)]
    Calibrate { what: Option<String> },
}

/// `--set KEY=VALUE`
fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))
}

/// A usage error found after parsing (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn real_main(cli: Cli) -> anyhow::Result<i32> {
    let run_args = |map: MapArgs, stats, program: ProgramArgs| RunArgs {
        config: map.config,
        stats,
        sets: map.sets,
        program: program.program,
    };
    match cli.cmd {
        Cmd::Run {
            config,
            isolate,
            sets,
            stats,
            program,
        } => {
            let objects = isolate::objects(&isolate);
            let temp = match (&config, objects.is_empty()) {
                (Some(_), _) => None,
                (None, false) => {
                    let prog = program
                        .program
                        .first()
                        .map(PathBuf::from)
                        .unwrap_or_default();
                    match isolate::temp_map(&objects, &prog) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            eprintln!("fracture: error: {e:#}");
                            return Ok(125);
                        }
                    }
                }
                (None, true) => {
                    eprintln!("fracture: error: run needs -c MAP.yaml or --isolate OBJECT");
                    return Ok(125);
                }
            };
            let map = MapArgs {
                config: config.or(temp.clone()).unwrap_or_default(),
                sets,
            };
            let r = run::run(&run_args(map, stats, program));
            if let Some(t) = temp {
                let _ = std::fs::remove_file(t);
            }
            r
        }
        Cmd::Init {
            isolate,
            out,
            program,
        } => {
            let text = isolate::map_text(&isolate::objects(&isolate), program.as_deref())?;
            match out {
                Some(o) => std::fs::write(&o, text)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", o.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(text.as_bytes())?;
                }
            }
            Ok(0)
        }
        Cmd::Check { map, program } => check::main(&map.config, program.as_deref(), &map.sets),
        Cmd::Symbols { imports, object } => symbols::main(&object, imports),
        Cmd::Profile { map, out, program } => profile::profile(&run_args(map, None, program), &out),
        Cmd::Partition(a) => partition::main(&a),
        Cmd::Report(a) => report::main(&a),
        Cmd::Plan(a) => plan::main(&a),
        Cmd::Sync(a) => store::sync(&a),
        Cmd::Bisect {
            map,
            confirm,
            program,
        } => bisect::bisect(&run_args(map, None, program), confirm),
        Cmd::Calibrate { what } => profile::calibrator(what.as_deref()),
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                // A bad option of a command that starts a program: fracture refused to start it.
                _ if matches!(
                    std::env::args_os()
                        .nth(1)
                        .as_deref()
                        .and_then(|a| a.to_str()),
                    Some("run" | "profile")
                ) =>
                {
                    125
                }
                _ => e.exit_code(),
            };
            std::process::exit(code);
        }
    };
    let code = match real_main(cli) {
        Ok(c) => c,
        Err(e) => {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                std::process::exit(0);
            }
            eprintln!("fracture: error: {e:#}");
            if let Some(n) = e.downcast_ref::<run::NotStarted>() {
                n.code
            } else if e.downcast_ref::<Usage>().is_some()
                || e.downcast_ref::<check::MapRefused>().is_some()
            {
                2
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}
