//! `fracture bisect`: finds the module whose isolation lets a crashing workload finish, by
//! halving the set of isolated modules. One run with nothing isolated shows the crash; then
//! each run isolates half of the remaining candidates (in one helper that answers a crashed
//! call with 0 and goes on): if the workload finishes, the culprit is in that half, else in
//! the other. 16 modules take 1 + 4 runs.

use crate::run::{run_with, Options};
use crate::RunArgs;
use anyhow::{bail, Context, Result};
use serde_yaml_ng::{Mapping, Value};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

pub fn bisect(args: &RunArgs, confirm: bool) -> Result<i32> {
    let config = std::fs::canonicalize(&args.config)
        .with_context(|| format!("cannot open the map {}", args.config.display()))?;
    let text =
        module_map::read_map(&config).map_err(|e| crate::check::MapRefused(e.to_string()))?;
    let map = module_map::parse_map_str(&text, &config, &args.sets)
        .map_err(|e| crate::check::MapRefused(e.to_string()))?;
    let modules: Vec<String> = map.modules.iter().map(|m| m.name.clone()).collect();
    if modules.is_empty() {
        bail!("the map {} has no modules to bisect", config.display());
    }
    let doc: Value = serde_yaml_ng::from_str(&text)?;
    // The workload's input, fed to every run.
    let mut input = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().read_to_end(&mut input)?;
    }
    let dir = config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut runs = 0;
    let mut run = |isolated: &[String]| -> Result<(bool, i32)> {
        runs += 1;
        let variant = write_variant(&doc, &dir, runs, isolated)?;
        let a = RunArgs {
            config: variant.clone(),
            stats: None,
            sets: Vec::new(),
            program: args.program.clone(),
        };
        let opts = Options {
            env: vec![(module_map::vars::LOG.into(), "error".into())],
            stdin: Some(input.clone()),
            quiet: true,
        };
        let r = run_with(&a, &opts);
        let _ = std::fs::remove_file(&variant);
        let code = r?;
        let finished = code < 128;
        eprintln!(
            "fracture: bisect run {runs}: isolating {} -> {}",
            if isolated.is_empty() {
                "nothing".to_string()
            } else {
                format!("[{}]", isolated.join(", "))
            },
            describe(code)
        );
        Ok((finished, code))
    };
    let (finished, code) = run(&[])?;
    if finished {
        eprintln!(
            "fracture: bisect: the workload finishes with nothing isolated ({}); nothing to find",
            describe(code)
        );
        return Ok(1);
    }
    let mut cand = modules.clone();
    let mut confirmed = false;
    while cand.len() > 1 {
        let half: Vec<String> = cand[..cand.len().div_ceil(2)].to_vec();
        let (ok, _) = run(&half)?;
        if ok {
            confirmed = half.len() == 1;
            cand = half;
        } else {
            confirmed = false;
            cand = cand[half.len()..].to_vec();
        }
    }
    if !confirmed && (confirm || modules.len() == 1) {
        let (ok, code) = run(&cand)?;
        if !ok {
            eprintln!(
                "fracture: bisect: isolating `{}` alone does not let the workload finish ({}): the crash is not in one mapped module",
                cand[0],
                describe(code)
            );
            return Ok(1);
        }
        confirmed = true;
    }
    let object = map
        .modules
        .iter()
        .find(|m| m.name == cand[0])
        .map(|m| m.object.clone())
        .unwrap_or_default();
    println!(
        "culprit: {} (object {object}) — {} in {} runs of the workload",
        cand[0],
        if confirmed {
            "isolating it lets the workload finish"
        } else {
            "found by elimination (run with --confirm to check it alone)"
        },
        runs
    );
    Ok(0)
}

fn describe(code: i32) -> String {
    if code >= 128 {
        format!("crashed (signal {})", code - 128)
    } else {
        format!("finished (exit {code})")
    }
}

/// The map with `processes` replaced by one helper holding `isolated`, which answers a
/// crashed call with 0 and goes on. Written beside the map, so relative paths keep working.
fn write_variant(doc: &Value, dir: &Path, n: usize, isolated: &[String]) -> Result<PathBuf> {
    let mut doc = doc.clone();
    let mut procs = Mapping::new();
    if !isolated.is_empty() {
        let p: Value = serde_yaml_ng::from_str(&format!(
            "modules: [{}]\non_crash: {{restart: true, restore: replay, max_retries: 1, give_up: {{return: 0}}}}\n",
            isolated.join(", ")
        ))?;
        procs.insert("bisect".into(), p);
    }
    match doc.as_mapping_mut() {
        Some(m) => {
            m.insert("processes".into(), Value::Mapping(procs));
        }
        None => bail!("the map is not a YAML mapping"),
    }
    let path = dir.join(format!(".fracture-bisect-{}-{n}.yaml", std::process::id()));
    std::fs::write(&path, serde_yaml_ng::to_string(&doc)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
