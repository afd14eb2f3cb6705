//! `fracture profile`: a training run with every mapped function routed but run in place
//! (the shim counts calls and bytes per calling module and function), followed by a
//! calibration of what an isolated call and an isolated byte cost on this machine. The graph
//! (`GRAPH.json`) is what `fracture partition` cuts.

use crate::run::{run_with, shim_path, Options};
use crate::RunArgs;
use anyhow::{bail, Context, Result};
use module_map::vars;
use std::path::Path;
use std::process::Command;

pub fn profile(args: &RunArgs, out: &Path) -> Result<i32> {
    let dir = std::env::temp_dir().join(format!("fracture-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let raw = dir.join("raw.json");
    let opts = Options {
        env: vec![(vars::PROFILE.into(), raw.clone().into_os_string())],
        ..Options::default()
    };
    let status = run_with(args, &opts)?;
    let text = std::fs::read_to_string(&raw).with_context(|| {
        format!(
            "the program wrote no profile (does the map's target match {}?)",
            args.program[0].to_string_lossy()
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut graph: serde_json::Value =
        serde_json::from_str(&text?).context("the profile the shim wrote does not parse")?;
    eprintln!("fracture: calibrating an isolated call on this machine...");
    let cal = calibrate()?;
    let map = std::fs::canonicalize(&args.config)?;
    graph["map"] = map.to_string_lossy().into_owned().into();
    graph["args"] = args
        .program
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .into();
    graph["exit"] = status.into();
    graph["calibration"] = serde_json::json!({
        "per_call_ns": cal.per_call_ns,
        "per_byte_ns": cal.per_byte_ns,
        "per_process_ns": cal.per_process_ns,
        "per_cold_call_ns": cal.per_cold_call_ns,
    });
    std::fs::write(out, serde_json::to_string_pretty(&graph)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    let edges = graph["edges"].as_array().map_or(0, |e| e.len());
    let calls: u64 = graph["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["calls"].as_u64())
        .sum();
    eprintln!(
        "fracture: profile: {edges} caller/function pairs, {calls} calls in {:.3} s; here an isolated call costs {:.0} ns ({:.0} ns more when its helper sleeps), a byte {:.3} ns, a helper {:.0} us a run; wrote {}",
        graph["duration_s"].as_f64().unwrap_or(0.0),
        cal.per_call_ns,
        cal.per_cold_call_ns,
        cal.per_byte_ns,
        cal.per_process_ns / 1e3,
        out.display()
    );
    Ok(status)
}

pub struct Calibration {
    pub per_call_ns: f64,
    pub per_byte_ns: f64,
    /// Starting and ending a helper (zygote, fork, shutdown) in a program's run.
    pub per_process_ns: f64,
    /// What a call costs on top of `per_call_ns` when its helper has gone to sleep (no call
    /// for longer than it spins): the futex wake-up of an idle helper.
    pub per_cold_call_ns: f64,
}

/// Size of the buffer whose copy measures the per-byte cost.
const BIG: usize = 64 << 10;

/// Measures, on this machine, the cost of an isolated call (`strnlen` of libc in a helper,
/// with an `in:` buffer of 0 and of 64 KiB) against the same calls made directly.
pub fn calibrate() -> Result<Calibration> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("fracture-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let map = dir.join("calibrate.yaml");
    std::fs::write(
        &map,
        "# written by fracture profile: libc's strnlen isolated, to time an isolated call\n\
         modules:\n  libc:\n    object: libc.so.6\n    functions:\n      \
         strnlen: {args: [\"in:arg1\", val], effect: pure}\n\
         processes:\n  calibrate:\n    modules: [libc]\n",
    )?;
    let shim = shim_path()?;
    // Three runs each, alternated, and the median of each figure: one run on a shared machine
    // can land in a slow spell (seen: 1.0 vs 1.4 us per call from one profile to the next).
    let mut direct = Vec::new();
    let mut isolated = Vec::new();
    for _ in 0..3 {
        direct.push(run_calibrator(&exe, None, "calls")?);
        isolated.push(run_calibrator(&exe, Some((&shim, &map)), "calls"));
    }
    // A run with a helper and no call, against one without: what a helper costs a run.
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..7 {
        let t = std::time::Instant::now();
        run_calibrator(&exe, Some((&shim, &map)), "empty")?;
        with.push(t.elapsed().as_nanos() as f64);
        let t = std::time::Instant::now();
        run_calibrator(&exe, None, "empty")?;
        without.push(t.elapsed().as_nanos() as f64);
    }
    let cold_direct = run_calibrator(&exe, None, "cold").map(|c| c.0);
    let cold_isolated = run_calibrator(&exe, Some((&shim, &map)), "cold").map(|c| c.0);
    let _ = std::fs::remove_dir_all(&dir);
    let (cold_direct, cold_isolated) = (cold_direct?, cold_isolated?);
    let isolated = isolated.into_iter().collect::<Result<Vec<_>>>()?;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pair = |v: &[(f64, f64)]| {
        let mut a: Vec<f64> = v.iter().map(|x| x.0).collect();
        let mut b: Vec<f64> = v.iter().map(|x| x.1).collect();
        (median(&mut a), median(&mut b))
    };
    let (direct, isolated) = (pair(&direct), pair(&isolated));
    let per_process = (median(&mut with) - median(&mut without)).max(0.0);
    let per_call = (isolated.0 - direct.0).max(1.0);
    let per_byte = ((isolated.1 - isolated.0) - (direct.1 - direct.0)).max(0.0) / BIG as f64;
    let per_cold = (cold_isolated - cold_direct - per_call).max(0.0);
    Ok(Calibration {
        per_call_ns: per_call,
        per_byte_ns: per_byte,
        per_process_ns: per_process,
        per_cold_call_ns: per_cold,
    })
}

fn run_calibrator(exe: &Path, shim: Option<(&Path, &Path)>, what: &str) -> Result<(f64, f64)> {
    let mut cmd = Command::new(exe);
    cmd.arg("__calibrate")
        .arg(what)
        .env_remove("LD_PRELOAD")
        .env_remove(vars::CONFIG)
        .env_remove(vars::STATS)
        .env_remove(vars::PROFILE)
        .env(vars::REPORTS, "off");
    if let Some((shim, map)) = shim {
        cmd.env("LD_PRELOAD", shim).env(vars::CONFIG, map);
    }
    let out = cmd.output().context("cannot run the calibration")?;
    if !out.status.success() {
        bail!(
            "the calibration failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if what == "empty" {
        return Ok((0.0, 0.0));
    }
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        (Some(Ok(a)), None) if what == "cold" => Ok((a, 0.0)),
        _ => bail!("the calibration printed {text:?}"),
    }
}

/// `fracture __calibrate`: median ns of strnlen(buf, 0) and strnlen(buf, 64 KiB), printed as
/// two numbers. Under the shim with the calibration map, each call is an isolated call.
pub fn calibrator(what: Option<&str>) -> Result<i32> {
    if what == Some("empty") {
        return Ok(0);
    }
    let buf = vec![b'x'; BIG];
    if what == Some("cold") {
        // One call after each pause long enough for a helper to stop spinning and sleep.
        std::hint::black_box(sys::strnlen(&buf, 0));
        let mut samples = Vec::new();
        for _ in 0..25 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let t = std::time::Instant::now();
            std::hint::black_box(sys::strnlen(std::hint::black_box(&buf), 0));
            samples.push(t.elapsed().as_nanos() as f64);
        }
        samples.sort_by(f64::total_cmp);
        println!("{}", samples[samples.len() / 2]);
        return Ok(0);
    }
    let time = |n: usize| {
        let mut samples = Vec::new();
        // Five samples a run; the caller takes the median of three runs.
        for _ in 0..5 {
            let reps = if n == 0 { 2000 } else { 50 };
            let t = std::time::Instant::now();
            for _ in 0..reps {
                std::hint::black_box(sys::strnlen(std::hint::black_box(&buf), n));
            }
            samples.push(t.elapsed().as_nanos() as f64 / reps as f64);
        }
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    // Warm up (the first isolated calls start the helper's threads).
    time(0);
    time(BIG);
    println!("{} {}", time(0), time(BIG));
    Ok(0)
}

#[allow(unsafe_code)]
mod sys {
    /// libc's strnlen through this executable's GOT (the slot the shim routes).
    #[inline(never)]
    pub fn strnlen(buf: &[u8], n: usize) -> usize {
        let n = n.min(buf.len());
        // SAFETY: reads at most n <= buf.len() bytes of buf.
        unsafe { libc::strnlen(buf.as_ptr().cast(), n) }
    }
}
