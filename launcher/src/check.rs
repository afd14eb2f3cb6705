//! `fracture check`: the map against the ELF objects it names (and against a program):
//! every object can be found, every function is exported, and (with a program) is imported
//! by something the program loads. Reports every problem, not only the first.

use anyhow::Result;
use module_map::{MapError, ModuleMap};
use std::path::Path;
use symbol_map::ElfObject;

/// The map does not fit: the program must not be started.
#[derive(Debug)]
pub struct MapRefused(pub String);

impl std::fmt::Display for MapRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MapRefused {}

fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= 3.max(name.len() / 3))
        .min()
        .map(|x| x.1)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `program` is a file that the kernel runs but that is not ELF (a `#!` script).
fn is_script(program: &Path) -> bool {
    use std::io::Read;
    let mut magic = Vec::new();
    std::fs::File::open(program)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .is_ok_and(|_| magic != b"\x7fELF")
}

/// Checks `map` (optionally against `program`); Ok(warnings) or Err(errors), each one line.
pub fn check_map(
    map: &ModuleMap,
    program: Option<&Path>,
    verbose: bool,
) -> std::result::Result<Vec<String>, Vec<String>> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let err = |line: usize, key: String, msg: String| {
        MapError::at(&map.file, Some(line), Some(key), msg).to_string()
    };
    let mut closure: Vec<ElfObject> = Vec::new();
    let mut exe_runpath = Vec::new();
    // A PROGRAM that is not ELF (a `#!` script, such as a `python3` that is a shell wrapper)
    // execs the process the map is meant for: the shim of each process of the exec chain
    // applies the map where `target` matches, so the objects are checked on their own and an
    // object that is not found may still be loaded by a later process of the chain.
    let script = program.filter(|p| is_script(p));
    if let Some(p) = script {
        if verbose {
            warnings.push(format!(
                "{} is not an ELF executable (a script?): the map is checked against its objects only; each process it starts applies the map where `target` matches",
                p.display()
            ));
        }
    }
    let program = program.filter(|_| script.is_none());
    if let Some(p) = program {
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if !map.matches_target(&real.to_string_lossy()) {
            warnings.push(format!(
                "target `{}` does not match {}: the map will be ignored for it",
                map.target.as_deref().unwrap_or(""),
                real.display()
            ));
        }
        // `check` walks the whole DT_NEEDED closure (to say what is loaded at start and who
        // imports what); `run` only needs the executable, then finds each module's object as
        // the loader would, which reads a handful of files instead of every library.
        let loaded = if verbose {
            symbol_map::load_closure(&real)
        } else {
            symbol_map::read(&real).map(|o| (vec![o], Vec::new()))
        };
        match loaded {
            Ok((c, missing)) => {
                for m in missing {
                    warnings.push(format!(
                        "{} needs {m}, which cannot be found",
                        real.display()
                    ));
                }
                exe_runpath = c.first().map(|o| o.runpath.clone()).unwrap_or_default();
                closure = c;
                // Objects the user preloads come first in the search order, as ld.so does.
                for lib in std::env::var("LD_PRELOAD")
                    .unwrap_or_default()
                    .split([':', ' '])
                    .filter(|x| !x.is_empty())
                {
                    if let Some(o) = symbol_map::find_library(lib, &exe_runpath)
                        .and_then(|p| symbol_map::read(&p).ok())
                    {
                        closure.insert(1, o);
                    }
                }
            }
            Err(e) => errors.push(format!("{e}")),
        }
    }
    for m in &map.modules {
        let mkey = format!("modules.{}.object", m.name);
        let loaded = symbol_map::find_object(&closure, &m.object).cloned();
        let obj = match loaded {
            Some(o) => Some(o),
            None if m.object == "main" && program.is_none() => None,
            None => {
                let path = symbol_map::find_library(&m.object, &exe_runpath).or_else(|| {
                    program
                        .and_then(|p| p.parent())
                        .map(|d| d.join(&m.object))
                        .filter(|p| p.is_file())
                });
                match path.map(|p| symbol_map::read(&p)) {
                    Some(Ok(o)) => {
                        if program.is_some() && verbose {
                            warnings.push(format!(
                                "{}: {} is not loaded at start; it must be loaded with dlopen",
                                m.name, m.object
                            ));
                        }
                        Some(o)
                    }
                    Some(Err(e)) => {
                        errors.push(err(m.line, mkey.clone(), format!("{e}")));
                        None
                    }
                    None => {
                        if program.is_some() || script.is_some() {
                            warnings.push(format!("{}: {} is not loaded at start and not found in the library path; it can only be checked when the program loads it", m.name, m.object));
                        } else {
                            errors.push(err(m.line, mkey.clone(), format!("object `{}` not found (LD_LIBRARY_PATH, ld.so.cache, /lib, /usr/lib)", m.object)));
                        }
                        None
                    }
                }
            }
        };
        let Some(obj) = obj else { continue };
        if verbose && map.process_of(&m.name).is_some() {
            // Resources a module shares with the program are outside what isolation promises:
            // FILE* buffers are per process (output order changes), fds opened after the fork
            // are not shared back.
            const SHARED: &[&str] = &[
                "printf", "fprintf", "vfprintf", "puts", "fputs", "fwrite", "putchar", "fputc",
                "perror", "fflush", "fopen", "fdopen", "open", "open64", "openat", "socket",
                "dup2",
            ];
            let mut uses: Vec<&str> = SHARED
                .iter()
                .copied()
                .filter(|f| obj.imports_function(f))
                .collect();
            uses.dedup();
            if !uses.is_empty() {
                warnings.push(format!(
                    "{}: {} uses {}: output through stdio is buffered in the helper (its order against the program's output can change) and files it opens stay in the helper",
                    m.name,
                    m.object,
                    uses.join(", ")
                ));
            }
        }
        if verbose && map.process_of(&m.name).is_some() && program.is_some() {
            // Functions of the object that the program calls but the map leaves out run in the
            // program: given a pointer the module made in the helper (a handle, a parser),
            // such a call crashes the program with no word from fracture.
            let listed: Vec<&str> = m.functions.iter().map(|f| f.symbol()).collect();
            let mut unlisted: Vec<&str> = closure
                .iter()
                .filter(|o| o.path != obj.path)
                .flat_map(|o| o.imports.iter().map(|i| i.name.as_str()))
                .filter(|n| !listed.contains(n) && obj.exports_function(n))
                .collect();
            unlisted.sort_unstable();
            unlisted.dedup();
            if !unlisted.is_empty() {
                let shown: Vec<&str> = unlisted.iter().copied().take(8).collect();
                warnings.push(format!(
                    "{}: the program also calls {} function(s) of {} that the map does not list ({}{}): they run in the program, and one given a pointer the module made in the helper crashes it; list every function that takes the module's objects",
                    m.name,
                    unlisted.len(),
                    m.object,
                    shown.join(", "),
                    if unlisted.len() > shown.len() { ", ..." } else { "" }
                ));
            }
        }
        for f in &m.functions {
            let key = format!("modules.{}.functions.{}", m.name, f.name);
            if !obj.exports_function(&f.name) {
                let hint = closest(
                    f.symbol(),
                    obj.exports
                        .iter()
                        .filter(|e| e.is_function)
                        .map(|e| e.name.as_str()),
                )
                .map(|c| format!("; closest: {c}"))
                .unwrap_or_default();
                errors.push(err(
                    f.line,
                    key,
                    format!(
                        "function `{}` is not exported by {} ({}){hint}",
                        f.name,
                        m.object,
                        obj.path.display()
                    ),
                ));
            } else if verbose
                && program.is_some()
                && !closure.is_empty()
                && !closure.iter().any(|o| o.imports_function(&f.name))
            {
                warnings.push(format!("{}:{}: {key}: no object loaded at start imports `{}`; only dlopen'd objects or dlsym can reach it", map.file.display(), f.line, f.symbol()));
            }
        }
    }
    crate::sandbox_check::check(map, &mut warnings, &mut errors);
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors)
    }
}

pub fn main(config: &Path, program: Option<&Path>, sets: &[(String, String)]) -> Result<i32> {
    let text = module_map::read_map(config).map_err(|e| MapRefused(e.to_string()))?;
    let map =
        module_map::parse_map_str(&text, config, sets).map_err(|e| MapRefused(e.to_string()))?;
    let resolved = program.map(|p| crate::run::find_program(p).unwrap_or_else(|| p.to_path_buf()));
    match check_map(&map, resolved.as_deref(), true) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("fracture: warning: {w}");
            }
            let nf: usize = map.modules.iter().map(|m| m.functions.len()).sum();
            println!(
                "ok: {} modules, {nf} functions, {} processes",
                map.modules.len(),
                map.processes.len()
            );
            Ok(0)
        }
        Err(errors) => {
            let n = errors.len();
            for e in errors {
                eprintln!("fracture: error: {e}");
            }
            Err(MapRefused(format!("{n} problem(s) in {}", config.display())).into())
        }
    }
}
