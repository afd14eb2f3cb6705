//! Reading a module map: YAML text -> [`ModuleMap`], with every error located.
//!
//! The text is parsed into a generic YAML tree (syntax errors carry serde_yaml_ng's line), the
//! `--set` overrides are applied to that tree, and the tree is then converted by hand rather
//! than with `#[derive(Deserialize)]`: walking it ourselves gives every error its dotted key
//! path, an "expected one of" list for unknown keys, and the line from [`LineIndex`]. Semantic
//! checks across entries (a process naming an unknown module, a module in two processes) run
//! last. Nothing here touches ELF files; whether a function exists is the second stage's job.

mod error;
mod module;
mod process;
mod walk;

use std::collections::HashMap;
use std::path::Path;

use serde_yaml_ng::Value;

use crate::budget::{LoadError, MAX_MAP_BYTES, MAX_VALUES};
use crate::locate::{duplicate_key_line, join_key, LineIndex};
use crate::ModuleMap;

pub use error::{MapError, MapErrorKind};
use walk::Cx;

/// Reads and parses the module map at `path` (no overrides).
pub fn parse_map(path: &Path) -> Result<ModuleMap, MapError> {
    parse_map_str(&read_map(path)?, path, &[])
}

/// The text of the module map at `path`: at most [`MAX_MAP_BYTES`] bytes are read (so a
/// device such as `/dev/zero` named as the map is refused, not read forever), and text that
/// is not UTF-8 is refused with the line of the first bad byte.
pub fn read_map(path: &Path) -> Result<String, MapError> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MAP_BYTES as u64 + 1).read_to_end(&mut data))
        .map_err(|e| {
            MapError::new(
                MapErrorKind::Io,
                path,
                format!(
                    "cannot read the module map: {e}; check the path given with -c or FRACTURE_CONFIG"
                ),
            )
        })?;
    if data.len() > MAX_MAP_BYTES {
        return Err(MapError::new(
            MapErrorKind::Invalid,
            path,
            format!(
                "the map is larger than {} MiB (a module map is a few KiB); check the path given with -c or FRACTURE_CONFIG",
                MAX_MAP_BYTES >> 20
            ),
        ));
    }
    String::from_utf8(data).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let mut err = MapError::new(
            MapErrorKind::Syntax,
            path,
            format!(
                "the map is not UTF-8 text (byte {:#04x} at offset {at}); save it as UTF-8",
                bytes.get(at).copied().unwrap_or(0)
            ),
        );
        err.line = Some(1 + bytes[..at].iter().filter(|&&b| b == b'\n').count());
        err
    })
}

/// Parses a module map from `text`; `file` is only used in errors and [`ModuleMap::file`].
/// `sets` are `--set KEY=VALUE` overrides, applied in order over the document before validation.
pub fn parse_map_str(
    text: &str,
    file: &Path,
    sets: &[(String, String)],
) -> Result<ModuleMap, MapError> {
    let mut root = load(text, file)?;
    root.apply_merge()
        .map_err(|e| MapError::new(MapErrorKind::Syntax, file, strip_marks(&e.to_string())))?;
    let mut set_paths = Vec::new();
    for (key, value) in sets {
        let path = crate::overrides::apply(&mut root, key, value).map_err(|message| MapError {
            kind: MapErrorKind::Schema,
            file: file.to_owned(),
            line: None,
            key: Some(format!("--set {key}")),
            message,
        })?;
        set_paths.push((path, key.clone()));
    }
    let cx = Cx {
        file,
        index: LineIndex::new(text),
        set_paths,
    };
    let map = cx.map(&root)?;
    cx.cross_check(&map)?;
    Ok(map)
}

/// The YAML document of `text`, within the bounds of [`crate::budget`].
fn load(text: &str, file: &Path) -> Result<Value, MapError> {
    crate::budget::from_str(text).map_err(|e| match e {
        LoadError::Yaml(e) => syntax_error(file, text, &e),
        LoadError::TooLong => MapError::new(
            MapErrorKind::Invalid,
            file,
            format!(
                "the map is {} bytes; at most {} MiB are read (a module map is a few KiB)",
                text.len(),
                MAX_MAP_BYTES >> 20
            ),
        ),
        LoadError::TooLarge { line } => {
            let mut err = MapError::new(
                MapErrorKind::Invalid,
                file,
                format!("the map expands to more than {MAX_VALUES} YAML values (an alias `*NAME` counts its anchor's values once more each time it is used); a module map needs a few hundred, so use fewer aliases of large anchors"),
            );
            err.line = line;
            err
        }
    })
}

/// A YAML syntax error, keeping serde_yaml_ng's line but not its "at line L column C" text.
fn syntax_error(file: &Path, text: &str, e: &serde_yaml_ng::Error) -> MapError {
    let message = strip_marks(&e.to_string());
    let mut err = MapError::new(
        MapErrorKind::Syntax,
        file,
        format!("invalid YAML: {message}"),
    );
    err.line = e.location().map(|l| l.line());
    // serde_yaml_ng points at the mapping holding a duplicate key; point at the duplicate.
    if let Some((parent, key)) = duplicated_key(&message) {
        if let Some(from) = err.line {
            err.line = duplicate_key_line(text, from, key).or(err.line);
        }
        err.key = Some(join_key(parent, key));
        err.message = format!("duplicate key `{key}`; remove or rename one of the two");
    }
    err
}

/// The parent path and key of serde_yaml_ng's `[PATH: ]duplicate entry with key "NAME"`
/// (string keys only).
fn duplicated_key(message: &str) -> Option<(&str, &str)> {
    let (before, rest) = message.split_once("duplicate entry with key \"")?;
    let parent = before.strip_suffix(": ").unwrap_or("");
    let (key, _) = rest.rsplit_once('"')?;
    Some((parent, key))
}

/// Removes every " at line L column C" and " at position P" from a serde_yaml_ng message (the
/// line is reported in front; the column would be noise in a one-line error).
fn strip_marks(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" at ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        let skip = mark_len(after);
        if skip == 0 {
            out.push_str(" at ");
        }
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// Length of a leading `line L column C` or `position P`, or 0.
fn mark_len(s: &str) -> usize {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    if let Some(r) = s.strip_prefix("line ") {
        let n = digits(r);
        if n > 0 {
            if let Some(c) = r[n..].strip_prefix(" column ") {
                let m = digits(c);
                if m > 0 {
                    return 5 + n + 8 + m;
                }
            }
        }
    } else if let Some(r) = s.strip_prefix("position ") {
        let n = digits(r);
        if n > 0 {
            return 9 + n;
        }
    }
    0
}

const TOP_KEYS: &[&str] = &["target", "modules", "processes"];
/// Resource limits a helper may set (`setrlimit` names without `RLIMIT_`).
pub const RLIMIT_NAMES: &[&str] = &[
    "as", "cpu", "data", "stack", "core", "nofile", "fsize", "nproc", "memlock",
];

/// Most retries allowed: beyond this a crash loop would stall the program for minutes.
pub const MAX_RETRIES: u64 = 100;
/// Most replicas or samples of one process: each is a forked helper, so a typo must not become
/// a fork bomb.
pub const MAX_COUNT: u64 = 256;

impl Cx<'_> {
    fn map(&self, root: &Value) -> Result<ModuleMap, MapError> {
        let top = self.fields(root, "", "the module map", TOP_KEYS)?;
        let target = match top.get("target") {
            Some((v, path)) => {
                let t = self.string(v, &path)?;
                if t.is_empty() {
                    return Err(self.schema(
                        &path,
                        "empty target matches nothing; remove `target` to apply the map to every program",
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let mut modules = Vec::new();
        if let Some((v, path)) = top.get("modules") {
            for (name, mv) in self.entries(v, &path, "modules")? {
                modules.push(self.module(&name, mv, &join_key(&path, &name))?);
            }
        }
        let mut processes = Vec::new();
        if let Some((v, path)) = top.get("processes") {
            for (name, pv) in self.entries(v, &path, "processes")? {
                processes.push(self.process(&name, pv, &join_key(&path, &name))?);
            }
        }
        Ok(ModuleMap {
            file: self.file.to_owned(),
            target,
            modules,
            processes,
        })
    }

    /// Checks between entries: modules named by processes exist and are placed once, and a
    /// function is claimed by one module only (the shim routes by symbol name).
    fn cross_check(&self, map: &ModuleMap) -> Result<(), MapError> {
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for m in &map.modules {
            for f in &m.functions {
                if let Some(first) = owner.insert(&f.name, &m.name) {
                    return Err(self.invalid(
                        &format!("modules.{}.functions.{}", m.name, f.name),
                        format!("function `{}` is already in module `{first}`; a function belongs to one module", f.name),
                    ));
                }
            }
        }
        let mut placed: HashMap<&str, &str> = HashMap::new();
        for p in &map.processes {
            for (i, m) in p.modules.iter().enumerate() {
                let path = format!("processes.{}.modules[{i}]", p.name);
                if !map.modules.iter().any(|d| &d.name == m) {
                    let known: Vec<&str> = map.modules.iter().map(|d| d.name.as_str()).collect();
                    let known = if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    };
                    return Err(self.invalid(
                        &path,
                        format!(
                            "unknown module `{m}`; define it under `modules` (defined: {known})"
                        ),
                    ));
                }
                if let Some(first) = placed.insert(m, &p.name) {
                    return Err(self.invalid(
                        &path,
                        format!("module `{m}` is already in process `{first}`; a module runs in one process only"),
                    ));
                }
            }
        }
        Ok(())
    }
}
