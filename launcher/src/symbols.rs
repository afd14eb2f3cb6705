//! `fracture symbols [--imports] OBJECT`: exported (or imported) functions, one per line.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

pub fn main(object: &str, imports: bool) -> Result<i32> {
    let path = if Path::new(object).exists() {
        Path::new(object).to_path_buf()
    } else {
        symbol_map::find_library(object, &[])
            .with_context(|| format!("{object}: no such file or library"))?
    };
    let o = symbol_map::read(&path)?;
    let mut names: Vec<String> = if imports {
        o.imports
            .iter()
            .map(|i| match &i.version {
                Some(v) => format!("{}@{v}", i.name),
                None => i.name.clone(),
            })
            .collect()
    } else {
        o.exports
            .iter()
            .filter(|e| e.is_function)
            .map(|e| match (&e.version, e.default_version) {
                (Some(v), false) => format!("{}@{v}", e.name),
                _ => e.name.clone(),
            })
            .collect()
    };
    names.sort();
    names.dedup();
    let mut out = std::io::stdout().lock();
    for n in names {
        writeln!(out, "{n}")?;
    }
    Ok(0)
}
