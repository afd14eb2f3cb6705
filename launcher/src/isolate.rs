//! `--isolate OBJECT[,OBJECT...]` with no map: `fracture init` writes the map, `fracture run`
//! writes it to a temporary file and runs with it (SPEC.md "Command line").
//!
//! One module per OBJECT holding every function the program's loaded objects import from it,
//! all in one helper process named `isolated` with `memory: on-demand`, so no argument needs a
//! spec. When PROGRAM is not an ELF executable (a script) or does not load OBJECT at start (it
//! `dlopen`s it, as CPython loads its extension modules), what it will import cannot be read
//! from its files: the module then holds every function OBJECT exports.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The map text for `objects` and `program` (None: no program to read imports from).
pub fn map_text(objects: &[String], program: Option<&Path>) -> Result<String> {
    if objects.is_empty() {
        bail!("--isolate needs at least one object (a soname, file name or path)");
    }
    let closure = program
        .and_then(crate::run::find_program)
        .and_then(|p| symbol_map::load_closure(&p).ok())
        .map(|(c, _)| c);
    let mut out = String::new();
    out.push_str(&format!(
        "# Written by `fracture init --isolate {}`{}: every function the program imports from\n\
         # each object, in one helper with `memory: on-demand` (edit and use with -c).\n",
        objects.join(","),
        program.map_or(String::new(), |p| format!(" -- {}", p.display()))
    ));
    out.push_str("modules:\n");
    let mut names: Vec<String> = Vec::new();
    for obj in objects {
        let (functions, how) = functions_of(obj, closure.as_deref())?;
        if functions.is_empty() {
            bail!("{obj}: the program imports no function from it, and it exports none");
        }
        let mut name = module_name(obj);
        while names.contains(&name) {
            name.push('_');
        }
        out.push_str(&format!(
            "  {name}:   # {how}\n    object: {obj}\n    functions:\n"
        ));
        for f in functions {
            out.push_str(&format!("      {f}: {{}}\n"));
        }
        names.push(name);
    }
    out.push_str(&format!(
        "processes:\n  isolated:\n    modules: [{}]\n    memory: on-demand\n",
        names.join(", ")
    ));
    Ok(out)
}

/// The functions of `obj` to route, and how they were found.
fn functions_of(
    obj: &str,
    closure: Option<&[symbol_map::ElfObject]>,
) -> Result<(BTreeSet<String>, &'static str)> {
    if let Some(closure) = closure {
        if let Some(o) = symbol_map::find_object(closure, obj) {
            let mut set = BTreeSet::new();
            for user in closure.iter().filter(|u| u.path != o.path) {
                for i in &user.imports {
                    if o.exports_function(&i.name) {
                        set.insert(i.name.clone());
                    }
                }
            }
            return Ok((set, "the functions the program's objects import from it"));
        }
    }
    let path = if Path::new(obj).exists() {
        PathBuf::from(obj)
    } else {
        symbol_map::find_library(obj, &[])
            .with_context(|| format!("{obj}: no such file or library"))?
    };
    let o = symbol_map::read(&path)?;
    // Only the default version of a name: a hidden one (`name@VER`, kept for binaries linked
    // against an old library: libm's `__acos_finite`) is bound by nothing new, and the shim
    // cannot look it up by name.
    let set = o
        .exports
        .iter()
        .filter(|e| e.is_function && e.default_version)
        .map(|e| e.name.clone())
        .collect();
    Ok((
        set,
        "every function it exports (the program does not load it at start)",
    ))
}

/// A module name from an object name: `libz.so.1` -> `libz`, `/x/liblzma.so.5` -> `liblzma`.
fn module_name(obj: &str) -> String {
    let file = obj.rsplit('/').next().unwrap_or(obj);
    let stem = file.split(".so").next().unwrap_or(file);
    let s: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("m_{s}")
    } else {
        s
    }
}

/// Splits `a,b` and repeated `--isolate` values into object names.
pub fn objects(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes the map for `fracture run --isolate` to a private temporary file.
pub fn temp_map(objects: &[String], program: &Path) -> Result<PathBuf> {
    let text = map_text(objects, Some(program))?;
    let dir = std::env::temp_dir();
    let path = dir.join(format!("fracture-isolate-{}.yaml", std::process::id()));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_come_from_the_object_name() {
        assert_eq!(module_name("libz.so.1"), "libz");
        assert_eq!(
            module_name("/usr/lib/x86_64-linux-gnu/liblzma.so.5"),
            "liblzma"
        );
        assert_eq!(module_name("libsqlite3.so.0"), "libsqlite3");
        assert_eq!(module_name("9lives.so"), "m_9lives");
        assert_eq!(objects(&["a,b".into(), " c ".into()]), vec!["a", "b", "c"]);
    }

    #[test]
    fn the_map_for_a_library_the_program_links_lists_what_it_imports() {
        let text = map_text(&["liblzma.so.5".into()], Some(Path::new("/usr/bin/xz"))).unwrap();
        let map = module_map::parse_map_str(&text, Path::new("isolate.yaml"), &[]).unwrap();
        let m = map.modules.iter().find(|m| m.name == "liblzma").unwrap();
        assert!(m.functions.iter().any(|f| f.name == "lzma_code"));
        assert!(!m
            .functions
            .iter()
            .any(|f| f.name == "lzma_block_buffer_bound"));
        let p = map.processes.iter().find(|p| p.name == "isolated").unwrap();
        assert_eq!(p.memory, module_map::Memory::OnDemand);
    }
}
