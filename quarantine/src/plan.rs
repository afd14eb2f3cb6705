//! The next run's map, from the crash reports of earlier runs (several databases merge: the
//! cooperative approach).
//!
//! - optimistic: isolate the modules that failed (crash, hang, give-up, helper exit, or a
//!   crash of the program inside them); with a profile, the cheapest boundary around each.
//! - pessimistic: isolate every module, except those whose runs show enough clean calls while
//!   isolated and no failure: those are merged back into the program.
//!
//! A process a plan adds answers a crashed call with 0 after one retry, so the next run
//! survives a deterministic crash; processes the map already had are kept.

use crate::partition::{min_cut, Graph};
use crate::reports::{module_history, Source};
use anyhow::{bail, Context, Result};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Optimistic,
    Pessimistic,
    /// Deployment `deployment` (1-based) of `deployments` samples its slice of the map's
    /// modules into one replica under valgrind, whose XML findings go to `spool`.
    ValgrindSlices {
        deployment: usize,
        deployments: usize,
        spool: std::path::PathBuf,
    },
}

/// The `sample` of a process checked under valgrind: two replicas, the second an observer
/// under valgrind writing XML into the spool, with the process's modules and their objects
/// in the user comment (so that findings can be charged to them).
fn valgrind_sample(process: &str, modules: &[(String, String)], spool: &std::path::Path) -> Value {
    let comment: String = modules
        .iter()
        .map(|(m, o)| {
            format!(
                "<module name=\"{}\" object=\"{}\"/>",
                crate::xml::escape(m),
                crate::xml::escape(o)
            )
        })
        .collect();
    let wrapper: Vec<Value> = [
        "valgrind".to_string(),
        "-q".into(),
        "--xml=yes".into(),
        // %p and the exec id: pids repeat (in a container, at every start) and valgrind
        // numbers its findings from 0 in every file, so the file name keys the findings.
        format!(
            "--xml-file={}/valgrind-{}-%p-%q{{{}}}.xml",
            spool.display().to_string().replace('%', "%%"),
            process.replace('%', "%%").replace('/', "_"),
            module_map::vars::EXEC_ID
        ),
        format!(
            "--xml-user-comment=<fracture process=\"{}\">{comment}</fracture>",
            crate::xml::escape(process)
        ),
        "--leak-check=full".into(),
        "--child-silent-after-fork=yes".into(),
    ]
    .into_iter()
    .map(Value::from)
    .collect();
    let mut observer = Mapping::new();
    observer.insert("wrapper".into(), Value::Sequence(wrapper));
    let mut sample = Mapping::new();
    sample.insert("count".into(), 2.into());
    sample.insert(
        "envs".into(),
        Value::Sequence(vec![
            Value::Mapping(Mapping::new()),
            Value::Mapping(observer),
        ]),
    );
    Value::Mapping(sample)
}

pub struct Plan {
    /// The new map's text.
    pub text: String,
    /// What was decided and why, one line each.
    pub notes: Vec<String>,
}

/// The `on_crash` of a process a plan adds.
const ON_CRASH: &str = "{restart: true, restore: replay, max_retries: 1, give_up: {return: 0}}";

/// Plans for `map_path` from the reports in `dbs`. `build_id`: the program's build-id, when
/// known: then only records of that build count (wherever the program is installed), and
/// records of other builds are left out with a note; records without a build-id count when
/// their program matches the map's `target`.
pub fn plan<S: Source>(
    map_path: &Path,
    dbs: &[S],
    strategy: Strategy,
    profile: Option<&Graph>,
    min_clean_calls: u64,
    build_id: Option<&str>,
) -> Result<Plan> {
    let text = std::fs::read_to_string(map_path)
        .with_context(|| format!("cannot read {}", map_path.display()))?;
    let map =
        module_map::parse_map_str(&text, map_path, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let by_path = |prog: &str| prog.is_empty() || map.matches_target(prog);
    let history = module_history(dbs, &|prog, bid| match build_id {
        Some(b) if !bid.is_empty() => bid == b,
        _ => by_path(prog),
    })?;
    let mut doc: Value = serde_yaml_ng::from_str(&text)?;
    let mut notes = Vec::new();
    if let Some(b) = build_id {
        let all = module_history(dbs, &|prog, bid| {
            !bid.is_empty() && bid != b && by_path(prog)
        })?;
        let other: u64 = all.values().map(|h| h.failures).sum();
        if other > 0 {
            notes.push(format!(
                "{other} failures reported for other builds of the program were left out (this build: {b})"
            ));
        }
    }
    let isolated: BTreeSet<String> = map
        .processes
        .iter()
        .flat_map(|p| p.modules.iter().cloned())
        .collect();
    let names: Vec<String> = map.modules.iter().map(|m| m.name.clone()).collect();
    let failures = |m: &str| history.get(m).map_or(0, |h| h.failures);
    let clean = |m: &str| history.get(m).map_or(0, |h| h.clean);
    // "3 failures (on web-1, web-2)": where the fleet saw them, when not (only) here.
    let here = module_map::vars::deployment();
    let failed = |m: &str| {
        let f = failures(m);
        let on: Vec<&str> = history
            .get(m)
            .map(|h| {
                h.failed_on
                    .iter()
                    .map(String::as_str)
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if on.is_empty() || on == [here.as_str()] {
            format!("{f} failures")
        } else {
            format!("{f} failures (on {})", on.join(", "))
        }
    };
    for (m, h) in &history {
        let f = h.failures;
        if f > 0 && !names.contains(m) && m != "main" {
            notes.push(format!(
                "{m}: {f} failures reported, but the map has no such module; ignored"
            ));
        }
    }
    let mut procs: Mapping = doc
        .get("processes")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let new_process = |modules: &[String]| -> Result<Value> {
        Ok(serde_yaml_ng::from_str(&format!(
            "modules: [{}]\non_crash: {ON_CRASH}\n",
            modules.join(", ")
        ))?)
    };
    match &strategy {
        Strategy::Optimistic => {
            let mut taken: BTreeSet<String> = isolated.clone();
            for m in &names {
                if failures(m) == 0 {
                    continue;
                }
                let f = failed(m);
                if taken.contains(m) {
                    notes.push(format!("{m}: {f}; already isolated, kept as it is"));
                    continue;
                }
                let side: Vec<String> = match profile {
                    Some(g) if g.modules.contains(m) => {
                        let c = min_cut(g, m)?;
                        let side: Vec<String> = c
                            .side
                            .iter()
                            .filter(|x| !taken.contains(*x) && names.contains(x))
                            .cloned()
                            .collect();
                        notes.push(format!(
                            "{m}: {f}; isolated with [{}], the cheapest boundary in the profile ({:.0} us over the {:.3} s training run)",
                            side.join(", "),
                            c.cost_ns / 1e3,
                            g.duration_s
                        ));
                        side
                    }
                    _ => {
                        notes.push(format!("{m}: {f}; isolated in its own helper"));
                        vec![m.clone()]
                    }
                };
                taken.extend(side.iter().cloned());
                procs.insert(format!("q_{m}").into(), new_process(&side)?);
            }
            if !names.iter().any(|m| failures(m) > 0) {
                notes.push(
                    "no failures reported for this map's modules: the map is unchanged".into(),
                );
            }
        }
        Strategy::ValgrindSlices {
            deployment: k,
            deployments: n,
            spool,
        } => {
            if *n == 0 || *k == 0 || k > n {
                bail!("--deployment {k} of --deployments {n}: deployments are counted from 1 to N");
            }
            let mut sorted = names.clone();
            sorted.sort();
            let slice: Vec<String> = sorted
                .iter()
                .enumerate()
                .filter(|(i, _)| i % n == k - 1)
                .map(|(_, m)| m.clone())
                .collect();
            notes.push(format!(
                "deployment {k} of {n} checks [{}] under valgrind (findings into {})",
                slice.join(", "),
                spool.display()
            ));
            let object = |m: &str| {
                map.modules
                    .iter()
                    .find(|x| x.name == m)
                    .map_or(String::new(), |x| x.object.clone())
            };
            let mut fresh = Vec::new();
            let mut sampled: BTreeSet<String> = BTreeSet::new();
            for m in &slice {
                let Some(p) = map.processes.iter().find(|p| p.modules.contains(m)) else {
                    fresh.push(m.clone());
                    continue;
                };
                if sampled.contains(&p.name) {
                    continue;
                }
                let why = if p.replicate.is_some() {
                    Some("replicates")
                } else if p.sample.is_some() {
                    Some("samples already")
                } else if p.memory != module_map::Memory::Copy {
                    Some("uses on-demand memory")
                } else if !p.env.wrapper.is_empty() {
                    Some("has a wrapper")
                } else {
                    None
                };
                if let Some(why) = why {
                    notes.push(format!(
                        "{m}: its process {} {why}: not checked on this deployment",
                        p.name
                    ));
                    continue;
                }
                let mods: Vec<(String, String)> =
                    p.modules.iter().map(|x| (x.clone(), object(x))).collect();
                if let Some(Value::Mapping(pm)) = procs.get_mut(p.name.as_str()) {
                    pm.insert("sample".into(), valgrind_sample(&p.name, &mods, spool));
                }
                notes.push(format!(
                    "{}: sampled in its process {} under valgrind",
                    p.modules.join(", "),
                    p.name
                ));
                sampled.insert(p.name.clone());
            }
            if !fresh.is_empty() {
                let name = format!("valgrind_{k}");
                let mods: Vec<(String, String)> =
                    fresh.iter().map(|x| (x.clone(), object(x))).collect();
                let mut v = new_process(&fresh)?;
                if let Value::Mapping(pm) = &mut v {
                    pm.insert("sample".into(), valgrind_sample(&name, &mods, spool));
                }
                procs.insert(name.clone().into(), v);
                notes.push(format!(
                    "{}: in helper {name}, sampled into a replica under valgrind",
                    fresh.join(", ")
                ));
            }
        }
        Strategy::Pessimistic => {
            let mut merged = Vec::new();
            for m in &names {
                let (f, c) = (failures(m), clean(m));
                if f == 0 && c >= min_clean_calls {
                    merged.push(m.clone());
                    notes.push(format!(
                        "{m}: {c} clean calls while isolated, no failure: merged back into the program"
                    ));
                } else if !isolated.contains(m) {
                    procs.insert(
                        format!("q_{m}").into(),
                        new_process(std::slice::from_ref(m))?,
                    );
                    notes.push(format!(
                        "{m}: {f} failures, {c} clean calls (< {min_clean_calls}): isolated"
                    ));
                } else {
                    notes.push(format!(
                        "{m}: {f} failures, {c} clean calls: stays isolated"
                    ));
                }
            }
            // Merged-back modules leave the processes that held them; empty processes go.
            let mut keep = Mapping::new();
            for (k, v) in procs {
                let mut v = v;
                if let Some(list) = v.get_mut("modules").and_then(Value::as_sequence_mut) {
                    list.retain(|x| x.as_str().is_none_or(|s| !merged.iter().any(|m| m == s)));
                    if list.is_empty() {
                        continue;
                    }
                }
                keep.insert(k, v);
            }
            procs = keep;
        }
    }
    match doc.as_mapping_mut() {
        Some(m) => {
            m.insert("processes".into(), Value::Mapping(procs));
        }
        None => bail!("{} is not a YAML mapping", map_path.display()),
    }
    let out = format!(
        "# written by `fracture plan --strategy {}` from {}\n{}",
        match strategy {
            Strategy::Optimistic => "optimistic".to_string(),
            Strategy::Pessimistic => "pessimistic".to_string(),
            Strategy::ValgrindSlices {
                deployment,
                deployments,
                ..
            } => format!("valgrind-slices --deployment {deployment} --deployments {deployments}"),
        },
        map_path.display(),
        serde_yaml_ng::to_string(&doc)?
    );
    // The plan must be a valid map (relative paths resolve beside the input map).
    module_map::parse_map_str(&out, map_path, &[])
        .map_err(|e| anyhow::anyhow!("internal error: the planned map does not validate: {e}"))?;
    Ok(Plan { text: out, notes })
}
