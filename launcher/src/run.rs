//! `fracture run`: validate the map against the program, then start the program with the shim
//! preloaded and exit with its status.
//!
//! The launcher makes itself a child subreaper, so the zygote and helpers (which the shim
//! detaches from the program) are reparented to it if the program dies first; after the
//! program exits it reaps them, so nothing outlives `fracture run`.

use crate::RunArgs;
use anyhow::{bail, Context, Result};
use module_map::vars;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim: `FRACTURE_SHIM`, or `libfracture.so` beside this executable.
pub fn shim_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(vars::SHIM).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("{} names {}, which does not exist", vars::SHIM, p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find the fracture executable")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let p = dir.join("libfracture.so");
    if !p.exists() {
        bail!(
            "{} does not exist: build it with `make`, or set FRACTURE_SHIM",
            p.display()
        );
    }
    Ok(p)
}

/// `PROGRAM` as a path: as given when it has a '/', else found in PATH.
pub fn find_program(prog: &Path) -> Option<PathBuf> {
    if prog.components().count() > 1 || prog.to_string_lossy().contains('/') {
        return prog.exists().then(|| prog.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// LD_PRELOAD with the shim first, keeping what the user had.
pub fn preload_value(shim: &Path) -> OsString {
    let mut v = OsString::from(shim.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

pub fn run(args: &RunArgs) -> Result<i32> {
    run_with(args, &Options::default())
}

/// What `profile` and `bisect` change about a run.
#[derive(Default)]
pub struct Options {
    /// Extra environment for the program.
    pub env: Vec<(String, OsString)>,
    /// Fed to the program's standard input (None: inherited).
    pub stdin: Option<Vec<u8>>,
    /// Standard output and error of the program discarded.
    pub quiet: bool,
}

/// PROGRAM was not started: `run` and `profile` exit with `code`, 125 when fracture refused
/// to start it (a broken map, a missing shim), 126 when it cannot be executed and 127 when it
/// is not found (the convention of `env` and `timeout`).
#[derive(Debug)]
pub struct NotStarted {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NotStarted {}

fn not_started(prog: &Path, e: &std::io::Error) -> anyhow::Error {
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    NotStarted {
        code,
        message: format!("cannot run {}: {e}", prog.display()),
    }
    .into()
}

/// Where PROGRAM is, if it is there and the kernel may execute it.
fn executable(prog: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let os = std::io::Error::from_raw_os_error;
    let path = find_program(prog).ok_or_else(|| not_started(prog, &os(libc::ENOENT)))?;
    let meta = std::fs::metadata(&path).map_err(|e| not_started(prog, &e))?;
    if meta.is_dir() {
        return Err(not_started(prog, &os(libc::EISDIR)));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(not_started(prog, &os(libc::EACCES)));
    }
    Ok(path)
}

pub fn run_with(args: &RunArgs, opts: &Options) -> Result<i32> {
    let mut cmd = command(args, opts).map_err(|e| {
        if e.is::<NotStarted>() {
            e
        } else {
            NotStarted {
                code: 125,
                message: format!("{e:#}"),
            }
            .into()
        }
    })?;
    crate::reaper::become_subreaper();
    let prog = Path::new(cmd.get_program()).to_path_buf();
    // The store's connection is made while the program runs (from before its exec: the
    // connection and authentication take a few ms that a short run cannot hide).
    let store = crate::store::connect_early();
    let mut child = cmd.spawn().map_err(|e| not_started(&prog, &e))?;
    if let (Some(input), Some(mut w)) = (opts.stdin.clone(), child.stdin.take()) {
        // A writer thread, so a program that does not read its input cannot block us.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&input);
        });
    }
    // The program gets the terminal's signals itself; the launcher just waits.
    crate::reaper::ignore_now();
    let pid = child.id();
    let status = child.wait().context("waiting for the program")?;
    crate::reaper::reap_descendants();
    crate::store::after_run(pid, store);
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    })
}

/// The program's command, once the map is read and fits the program.
fn command(args: &RunArgs, opts: &Options) -> Result<Command> {
    let Some(prog) = args.program.first() else {
        bail!("no program given after `--`")
    };
    let config = std::fs::canonicalize(&args.config)
        .with_context(|| format!("cannot open the map {}", args.config.display()))?;
    let map = module_map::parse_map_str(
        &module_map::read_map(&config).map_err(|e| anyhow::anyhow!("{e}"))?,
        &config,
        &args.sets,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let resolved = executable(Path::new(prog))?;
    match crate::check::check_map(&map, Some(&resolved), false) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("fracture: warning: {w}");
            }
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("fracture: error: {e}");
            }
            bail!(
                "the map {} does not fit {}; the program was not started",
                config.display(),
                Path::new(prog).display()
            );
        }
    }
    let shim = shim_path()?;
    let mut cmd = Command::new(prog);
    cmd.args(&args.program[1..]);
    cmd.env("LD_PRELOAD", preload_value(&shim));
    cmd.env(vars::CONFIG, &config);
    // A fleet store's URL holds a password the program (and the quarantined module in it)
    // has no use for: the shim only needs the spool. The program sees the URL without it.
    let reports = vars::Reports::from_env();
    if let (vars::Reports::Url(u), Some(spool)) = (&reports, reports.spool_dir()) {
        cmd.env(vars::SPOOL, spool);
        cmd.env(vars::REPORTS, quarantine::reports::redact(u));
    }
    if !args.sets.is_empty() {
        cmd.env(vars::SET, vars::encode_sets(&args.sets));
    }
    if let Some(stats) = &args.stats {
        let abs = if stats.is_absolute() {
            stats.clone()
        } else {
            std::env::current_dir()?.join(stats)
        };
        cmd.env(vars::STATS, abs);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    if opts.stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    if opts.quiet {
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::null());
    }
    Ok(cmd)
}
