//! `fracture`: isolate exported functions of an unmodified program into helper processes.
//!
//! Exit codes: the program's own status for `run`; 0 on success; 2 for usage errors and maps
//! that do not parse or do not fit the program; 1 for other failures.
#![deny(unsafe_code)]

mod bisect;
mod check;
mod profile;
mod reaper;
mod run;
mod sandbox_check;
mod symbols;

use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "usage:
  fracture run -c MAP.yaml [--stats FILE.json] [--set KEY=VALUE]... -- PROGRAM [ARGS...]
  fracture check -c MAP.yaml [-- PROGRAM]
  fracture symbols [--imports] OBJECT
  fracture profile -c MAP.yaml -o GRAPH.json -- PROGRAM [ARGS...]
  fracture partition GRAPH.json --isolate MODULE [--side M,...] [-o MAP.yaml] [--dot FILE.dot]
  fracture report [--db FILE]
  fracture plan [--db FILE]... [--strategy optimistic|pessimistic] [--profile GRAPH.json] -c MAP.yaml -o NEXT.yaml
  fracture bisect [--confirm] -c MAP.yaml -- PROGRAM [ARGS...]";

/// `fracture run` arguments.
pub struct RunArgs {
    pub config: PathBuf,
    pub stats: Option<PathBuf>,
    pub sets: Vec<(String, String)>,
    pub program: Vec<OsString>,
}

#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{USAGE}", self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// Options before `--`, and what follows it.
struct Parsed {
    config: Option<PathBuf>,
    stats: Option<PathBuf>,
    sets: Vec<(String, String)>,
    imports: bool,
    confirm: bool,
    out: Option<PathBuf>,
    positional: Vec<OsString>,
    rest: Option<Vec<OsString>>,
}

fn parse(args: Vec<OsString>) -> anyhow::Result<Parsed> {
    let mut p = Parsed {
        config: None,
        stats: None,
        sets: Vec::new(),
        imports: false,
        confirm: false,
        out: None,
        positional: Vec::new(),
        rest: None,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match s.as_str() {
            "--" => {
                p.rest = Some(it.by_ref().collect());
                break;
            }
            "-c" | "--config" => p.config = Some(value(&s)?.into()),
            "--stats" => p.stats = Some(value(&s)?.into()),
            "--set" => {
                let kv = value(&s)?.to_string_lossy().into_owned();
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--set {kv}: expected KEY=VALUE")))?;
                p.sets.push((k.to_string(), v.to_string()));
            }
            "--imports" => p.imports = true,
            "--confirm" => p.confirm = true,
            "-o" | "--output" => p.out = Some(value(&s)?.into()),
            _ if s.starts_with("--config=") => p.config = Some(s["--config=".len()..].into()),
            _ if s.starts_with("--stats=") => p.stats = Some(s["--stats=".len()..].into()),
            _ if s.starts_with('-') && s.len() > 1 => {
                return Err(usage(format!("unknown option {s}")))
            }
            _ => p.positional.push(a),
        }
    }
    Ok(p)
}

fn real_main() -> anyhow::Result<i32> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        return Err(usage("no command given"));
    }
    let cmd = args.remove(0).to_string_lossy().into_owned();
    match cmd.as_str() {
        "run" => {
            let p = parse(args)?;
            let config = p.config.ok_or_else(|| usage("run needs -c MAP.yaml"))?;
            let program = p
                .rest
                .filter(|r| !r.is_empty())
                .ok_or_else(|| usage("run needs `-- PROGRAM [ARGS...]`"))?;
            run::run(&RunArgs {
                config,
                stats: p.stats,
                sets: p.sets,
                program,
            })
        }
        "check" => {
            let p = parse(args)?;
            let config = p.config.ok_or_else(|| usage("check needs -c MAP.yaml"))?;
            check::main(
                &config,
                p.rest
                    .as_ref()
                    .and_then(|r| r.first())
                    .map(PathBuf::from)
                    .as_deref(),
                &p.sets,
            )
        }
        "symbols" => {
            let p = parse(args)?;
            let [obj] = p.positional.as_slice() else {
                return Err(usage("symbols needs one OBJECT"));
            };
            symbols::main(&obj.to_string_lossy(), p.imports)
        }
        "profile" | "bisect" => {
            let p = parse(args)?;
            let config = p
                .config
                .ok_or_else(|| usage(format!("{cmd} needs -c MAP.yaml")))?;
            let program = p
                .rest
                .filter(|r| !r.is_empty())
                .ok_or_else(|| usage(format!("{cmd} needs `-- PROGRAM [ARGS...]`")))?;
            let ra = RunArgs {
                config,
                stats: None,
                sets: p.sets,
                program,
            };
            if cmd == "bisect" {
                bisect::bisect(&ra, p.confirm)
            } else {
                let out = p.out.ok_or_else(|| usage("profile needs -o GRAPH.json"))?;
                profile::profile(&ra, &out)
            }
        }
        "__calibrate" => profile::calibrator(args.first().and_then(|a| a.to_str())),
        "report" => quarantine::cli::cli_report(args),
        "plan" => quarantine::cli::cli_plan(args),
        "partition" => quarantine::cli::cli_partition(args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(usage(format!("unknown command `{other}`"))),
    }
}

fn main() {
    let code = match real_main() {
        Ok(c) => c,
        Err(e) => {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                std::process::exit(0);
            }
            eprintln!("fracture: error: {e:#}");
            if e.downcast_ref::<Usage>().is_some()
                || e.downcast_ref::<check::MapRefused>().is_some()
                || e.downcast_ref::<quarantine::cli::Usage>().is_some()
            {
                2
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}
