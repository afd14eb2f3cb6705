//! Reading a module map: YAML text -> [`ModuleMap`], with every error located.
//!
//! The text is parsed into a generic YAML tree (syntax errors carry serde_yaml_ng's line), the
//! `--set` overrides are applied to that tree, and the tree is then converted by hand rather
//! than with `#[derive(Deserialize)]`: walking it ourselves gives every error its dotted key
//! path, an "expected one of" list for unknown keys, and the line from [`LineIndex`]. Semantic
//! checks across entries (a process naming an unknown module, a module in two processes) run
//! last. Nothing here touches ELF files; whether a function exists is the second stage's job.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::budget::{LoadError, MAX_MAP_BYTES, MAX_VALUES};
use crate::errno::errno_from_name;
use crate::locate::{duplicate_key_line, join_index, join_key, LineIndex};
use crate::spec::parse_byte_count;
use crate::{
    ArgSpec, Callback, Env, FileRules, Function, GiveUp, Malloc, Module, ModuleMap, OnCrash,
    OnMismatch, Pick, Process, Replicate, Restore, RetSpec, Sample, Sandbox, SizeBase,
};

/// What kind of problem a [`MapError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML.
    Syntax,
    /// A key or value does not fit the schema: unknown key, wrong type, bad spec string, bad
    /// `--set` key.
    Schema,
    /// The entries contradict each other or a limit (unknown module, module in two processes).
    Invalid,
    /// Reported by a later stage through [`MapError::at`] (e.g. a function the object does not
    /// export).
    Resolve,
}

/// A problem with a module map, located as precisely as known.
///
/// Displays as one line, `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are unknown; the
/// message says what to change where it can. Errors about a `--set` override have the key
/// `--set KEY` and no line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapError {
    kind: MapErrorKind,
    file: PathBuf,
    line: Option<usize>,
    key: Option<String>,
    message: String,
}

impl MapError {
    /// An error in the same format for later stages (the shim, the launcher), e.g.
    /// `MapError::at(&map.file, Some(f.line), Some(key), "function not exported by libmagic.so.1")`.
    pub fn at(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> MapError {
        MapError {
            kind: MapErrorKind::Resolve,
            file: file.into(),
            line,
            key,
            message: message.into(),
        }
    }

    fn new(kind: MapErrorKind, file: &Path, message: impl Into<String>) -> MapError {
        MapError {
            kind,
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> MapErrorKind {
        self.kind
    }
    /// The map's file, or `<string>` style placeholders given to [`parse_map_str`].
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// 1-based line of the offending key, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
    /// Dotted key path (`modules.magic.functions.magic_file.args[1]`) or `--set KEY`.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// The message alone, without file, line or key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for MapError {
    /// Control characters (a newline in a quoted key, in a value quoted back in the message)
    /// are shown escaped, so the error stays one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one_line(f, &self.file.display().to_string())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            f.write_str(": ")?;
            write_one_line(f, key)?;
        }
        f.write_str(": ")?;
        write_one_line(f, &self.message)
    }
}

/// `s` with its control characters escaped (`\n`, `\u{85}`).
fn write_one_line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

impl std::error::Error for MapError {}

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

/// Conversion context: where errors point.
struct Cx<'a> {
    file: &'a Path,
    index: LineIndex,
    /// Canonical path written by each `--set`, with the KEY as the user wrote it.
    set_paths: Vec<(String, String)>,
}

/// The non-null values of a mapping whose keys were checked against a schema.
struct Fields<'v> {
    path: String,
    entries: Vec<(String, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// The value of `name`; an explicit `null` counts as absent (so `env:` with nothing after
    /// it means the default environment).
    fn get(&self, name: &str) -> Option<(&'v Value, String)> {
        self.entries
            .iter()
            .find(|(k, v)| k == name && !v.is_null())
            .map(|(k, v)| (*v, join_key(&self.path, k)))
    }
}

const TOP_KEYS: &[&str] = &["target", "modules", "processes"];
const MODULE_KEYS: &[&str] = &["object", "functions", "callbacks", "capabilities"];
const CALLBACK_KEYS: &[&str] = &["args", "ret"];
const FUNCTION_KEYS: &[&str] = &["args", "ret", "effect"];
const PROCESS_KEYS: &[&str] = &[
    "modules",
    "env",
    "timeout_ms",
    "on_crash",
    "replicate",
    "sample",
];
const ENV_KEYS: &[&str] = &[
    "vars",
    "rlimits",
    "malloc",
    "wrapper",
    "preload",
    "library_path",
    "sandbox",
];
const SANDBOX_KEYS: &[&str] = &["files", "network", "exec"];
const FILES_KEYS: &[&str] = &["read", "write"];
const MALLOC_KEYS: &[&str] = &["perturb", "pad", "zero_fill", "delay_free"];
const ON_CRASH_KEYS: &[&str] = &["restart", "restore", "max_retries", "retry_envs", "give_up"];
const GIVE_UP_KEYS: &[&str] = &["return", "errno"];
const REPLICATE_KEYS: &[&str] = &["count", "on_mismatch", "envs"];
const SAMPLE_KEYS: &[&str] = &["count", "envs", "pick"];
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
    fn err(&self, kind: MapErrorKind, path: &str, message: impl Into<String>) -> MapError {
        let from_set = self
            .set_paths
            .iter()
            .rev()
            .find(|(p, _)| is_within(p, path));
        let (line, key) = match from_set {
            Some((_, written)) => (None, Some(format!("--set {written}"))),
            None => (
                self.index.line_of(path),
                (!path.is_empty()).then(|| path.to_owned()),
            ),
        };
        MapError {
            kind,
            file: self.file.to_owned(),
            line,
            key,
            message: message.into(),
        }
    }

    fn schema(&self, path: &str, message: impl Into<String>) -> MapError {
        self.err(MapErrorKind::Schema, path, message)
    }

    fn invalid(&self, path: &str, message: impl Into<String>) -> MapError {
        self.err(MapErrorKind::Invalid, path, message)
    }

    /// The entries of a mapping of user-chosen names (modules, functions, vars); null is empty.
    fn entries<'v>(
        &self,
        v: &'v Value,
        path: &str,
        what: &str,
    ) -> Result<Vec<(String, &'v Value)>, MapError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| match key_name(k) {
                    Some(k) => Ok((k, v)),
                    None => Err(self.schema(
                        path,
                        format!(
                            "{what} must be named by plain strings, found {}",
                            describe(k)
                        ),
                    )),
                })
                .collect(),
            other => Err(self.schema(
                path,
                format!(
                    "expected {what} as a mapping (NAME: ...), found {}",
                    describe(other)
                ),
            )),
        }
    }

    /// A mapping with a fixed set of keys; any other key is an error naming the allowed ones.
    fn fields<'v>(
        &self,
        v: &'v Value,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Result<Fields<'v>, MapError> {
        let entries = match v {
            Value::Null => Vec::new(),
            Value::Mapping(_) => self.entries(v, path, what)?,
            other => {
                return Err(self.schema(
                    path,
                    format!(
                        "expected {what} as a mapping with keys {}, found {}",
                        allowed.join(", "),
                        describe(other)
                    ),
                ))
            }
        };
        for (k, _) in &entries {
            if !allowed.contains(&k.as_str()) {
                return Err(self.schema(
                    &join_key(path, k),
                    format!("unknown key `{k}`; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(Fields {
            path: path.to_owned(),
            entries,
        })
    }

    fn string(&self, v: &Value, path: &str) -> Result<String, MapError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.schema(
                path,
                format!("expected a string, found {}; quote it", describe(other)),
            )),
        }
    }

    /// A string where YAML may have typed the text as a number or boolean (`"3"` vs `3`).
    fn scalar_string(&self, v: &Value, path: &str) -> Result<String, MapError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Ok(String::new()),
            other => Err(self.schema(
                path,
                format!(
                    "expected a string, number or boolean, found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn strings(&self, v: &Value, path: &str, example: &str) -> Result<Vec<String>, MapError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.scalar_string(item, &join_index(path, i)))
                .collect(),
            other => Err(self.schema(
                path,
                format!(
                    "expected a list of strings such as {example}, found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn uint(&self, v: &Value, path: &str) -> Result<u64, MapError> {
        match v.as_u64() {
            Some(n) => Ok(n),
            None => Err(self.schema(
                path,
                format!("expected a non-negative integer, found {}", describe(v)),
            )),
        }
    }

    fn boolean(&self, v: &Value, path: &str) -> Result<bool, MapError> {
        v.as_bool().ok_or_else(|| {
            self.schema(
                path,
                format!("expected true or false, found {}", describe(v)),
            )
        })
    }

    /// One of a fixed set of words.
    fn word<'w>(&self, v: &Value, path: &str, words: &[&'w str]) -> Result<&'w str, MapError> {
        let found = v.as_str().and_then(|s| words.iter().find(|w| **w == s));
        found.copied().ok_or_else(|| {
            self.schema(
                path,
                format!(
                    "expected one of: {}; found {}",
                    words.join(", "),
                    describe(v)
                ),
            )
        })
    }

    /// Bytes or a count: an integer or a string with a binary unit (`1GiB`), or `unlimited`.
    fn size_value(&self, v: &Value, path: &str) -> Result<u64, MapError> {
        match v {
            Value::Number(_) => self.uint(v, path),
            Value::String(s) if s.trim() == "unlimited" => Ok(u64::MAX),
            Value::String(s) => parse_byte_count(s).map_err(|e| {
                self.schema(
                    path,
                    format!("{e}; expected a number such as 1GiB, 512MiB, 64KiB or unlimited"),
                )
            }),
            other => Err(self.schema(
                path,
                format!(
                    "expected a number such as 1GiB or 60, found {}",
                    describe(other)
                ),
            )),
        }
    }

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

    fn module(&self, name: &str, v: &Value, path: &str) -> Result<Module, MapError> {
        check_name(self, name, path, "module")?;
        let f = self.fields(v, path, "a module", MODULE_KEYS)?;
        let object = match f.get("object") {
            Some((v, p)) => {
                let o = self.string(v, &p)?;
                if o.trim().is_empty() {
                    return Err(self.schema(&p, "empty object; name a soname (libmagic.so.1), a file name or path, or `main`"));
                }
                o
            }
            None => {
                return Err(self.schema(
                    path,
                    format!("module `{name}` has no `object`; add `object: SONAME` (e.g. libmagic.so.1) or `object: main`"),
                ))
            }
        };
        let mut callbacks = Vec::new();
        if let Some((v, p)) = f.get("callbacks") {
            for (cname, cv) in self.entries(v, &p, "callbacks")? {
                callbacks.push(self.callback(&cname, cv, &join_key(&p, &cname))?);
            }
        }
        let names: Vec<&str> = callbacks.iter().map(|c| c.name.as_str()).collect();
        let mut functions = Vec::new();
        if let Some((v, p)) = f.get("functions") {
            for (fname, fv) in self.entries(v, &p, "functions")? {
                functions.push(self.function(&fname, fv, &join_key(&p, &fname), &names)?);
            }
        }
        let capabilities = match f.get("capabilities") {
            Some((v, p)) => self.strings(v, &p, "[restartable, replicable, samplable]")?,
            None => Vec::new(),
        };
        Ok(Module {
            name: name.to_owned(),
            object,
            functions,
            callbacks,
            capabilities,
            line: self.index.line_of(path).unwrap_or(0),
        })
    }

    /// One entry of a module's `callbacks`: `args` and `ret` as a function's, limited to what
    /// can be copied from the helper to the program (no `handle`, no `cb`).
    fn callback(&self, name: &str, v: &Value, path: &str) -> Result<Callback, MapError> {
        check_name(self, name, path, "callback")?;
        let f = self.fields(v, path, "a callback", CALLBACK_KEYS)?;
        let mut args = Vec::new();
        if let Some((v, p)) = f.get("args") {
            let Value::Sequence(items) = v else {
                return Err(self.schema(
                    &p,
                    format!("expected a list of argument specs such as [val, str, \"strv:arg1\"], found {}", describe(v)),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let ip = join_index(&p, i);
                let a = self.arg_spec(item, &ip, &[])?;
                match a {
                    ArgSpec::Handle => {
                        return Err(self.schema(&ip, "a callback's argument cannot be `handle`: the program receives the module's pointer as it is; write `val`"))
                    }
                    ArgSpec::Cb(_) => {
                        return Err(self.schema(&ip, "a callback's argument cannot be a callback (`cb`); write `val`"))
                    }
                    _ => args.push(a),
                }
            }
            self.check_sizes(&args, &p)?;
        }
        let ret = match f.get("ret") {
            Some((v, p)) => {
                let r = self.ret_spec(v, &p)?;
                if r == RetSpec::Handle {
                    return Err(self.schema(&p, "a callback cannot return `handle`; write `val`"));
                }
                r
            }
            None => RetSpec::Val,
        };
        Ok(Callback {
            name: name.to_owned(),
            args,
            ret,
            line: self.index.line_of(path).unwrap_or(0),
        })
    }

    fn ret_spec(&self, v: &Value, p: &str) -> Result<RetSpec, MapError> {
        match v {
            Value::String(s) => s
                .parse::<RetSpec>()
                .map_err(|e| self.schema(p, e.message())),
            other => Err(self.schema(
                p,
                format!(
                    "expected a return spec (val, handle, str, void), found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn function(
        &self,
        name: &str,
        v: &Value,
        path: &str,
        callbacks: &[&str],
    ) -> Result<Function, MapError> {
        check_name(self, name, path, "function")?;
        if name.starts_with('@') || name.ends_with('@') {
            return Err(self.schema(
                path,
                format!("bad function name `{name}`; write SYMBOL or SYMBOL@VERSION"),
            ));
        }
        let f = self.fields(v, path, "a function", FUNCTION_KEYS)?;
        let mut args = Vec::new();
        if let Some((v, p)) = f.get("args") {
            let Value::Sequence(items) = v else {
                return Err(self.schema(
                    &p,
                    format!("expected a list of argument specs such as [handle, str, \"in:arg2\"], found {}", describe(v)),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                args.push(self.arg_spec(item, &join_index(&p, i), callbacks)?);
            }
            self.check_sizes(&args, &p)?;
        }
        let ret = match f.get("ret") {
            Some((v, p)) => self.ret_spec(v, &p)?,
            None => RetSpec::Val,
        };
        let pure = match f.get("effect") {
            Some((v, p)) => self.word(v, &p, &["pure", "state"])? == "pure",
            None => false,
        };
        Ok(Function {
            name: name.to_owned(),
            args,
            ret,
            pure,
            line: self.index.line_of(path).unwrap_or(0),
        })
    }

    fn arg_spec(&self, v: &Value, path: &str, callbacks: &[&str]) -> Result<ArgSpec, MapError> {
        match v {
            Value::String(s) => ArgSpec::parse_in(s, callbacks)
                .map_err(|e: crate::SpecError| self.schema(path, e.message())),
            // `[in: 64]` is a one-entry mapping in YAML flow syntax: say how to write it.
            Value::Mapping(m) if m.len() == 1 => {
                let (k, val) = m.iter().next().map(|(k, v)| (describe_plain(k), describe_plain(v))).unwrap_or_default();
                Err(self.schema(
                    path,
                    format!("YAML read `{k}: {val}` as a mapping; write the spec as \"{k}:{val}\" (quoted, no space after `:`)"),
                ))
            }
            other => Err(self.schema(
                path,
                format!("expected an argument spec string such as val, handle, str or \"in:64\", found {}", describe(other)),
            )),
        }
    }

    /// A SIZE naming an argument must name another, listed argument that can hold a length.
    fn check_sizes(&self, args: &[ArgSpec], path: &str) -> Result<(), MapError> {
        for (i, a) in args.iter().enumerate() {
            let Some(size) = a.size() else { continue };
            let p = join_index(path, i);
            let (n, deref) = match size.base {
                SizeBase::Literal(_) => continue,
                SizeBase::Arg(n) => (n, false),
                SizeBase::Deref(n) => (n, true),
            };
            if n == i {
                return Err(self.schema(
                    &p,
                    format!("`{a}`: the size of arg{i} cannot come from arg{i} itself; name the argument that holds the length"),
                ));
            }
            let Some(target) = args.get(n) else {
                return Err(self.schema(
                    &p,
                    format!("`{a}` refers to arg{n}, but only {} arguments are listed; list the arguments up to arg{n} (e.g. `val` for a length)", args.len()),
                ));
            };
            if !deref && *target != ArgSpec::Val {
                return Err(self.schema(
                    &p,
                    format!("`{a}` uses the value of arg{n} as a length, so arg{n} must be `val`, not `{target}`"),
                ));
            }
            if deref {
                let ok = match target {
                    ArgSpec::Val => true,
                    ArgSpec::In(s) | ArgSpec::InOut(s) => s.literal().is_none_or(|b| b >= 8),
                    _ => false,
                };
                if !ok {
                    return Err(self.schema(
                        &p,
                        format!("`{a}` reads a 64-bit length through arg{n}, so arg{n} must be `val`, `in:8` or `inout:8`, not `{target}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn process(&self, name: &str, v: &Value, path: &str) -> Result<Process, MapError> {
        check_name(self, name, path, "process")?;
        let f = self.fields(v, path, "a process", PROCESS_KEYS)?;
        let modules = match f.get("modules") {
            Some((v, p)) => {
                let Value::Sequence(items) = v else {
                    return Err(self.schema(
                        &p,
                        format!(
                            "expected a list of module names such as [magic], found {}",
                            describe(v)
                        ),
                    ));
                };
                let mut names: Vec<String> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let ip = join_index(&p, i);
                    let m = self.scalar_string(item, &ip)?;
                    if names.contains(&m) {
                        return Err(
                            self.invalid(&ip, format!("module `{m}` is listed twice; remove one"))
                        );
                    }
                    names.push(m);
                }
                names
            }
            None => Vec::new(),
        };
        let env = match f.get("env") {
            Some((v, p)) => self.env(v, &p)?,
            None => Env::default(),
        };
        let timeout_ms = match f.get("timeout_ms") {
            Some((v, p)) => {
                let t = self.uint(v, &p)?;
                if t == 0 {
                    return Err(self.invalid(
                        &p,
                        "timeout_ms must be at least 1; remove it to let calls run as long as they need",
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let on_crash = match f.get("on_crash") {
            Some((v, p)) => self.on_crash(v, &p)?,
            None => OnCrash::default(),
        };
        let replicate = match f.get("replicate") {
            Some((v, p)) => Some(self.replicate(v, &p)?),
            None => None,
        };
        let sample = match f.get("sample") {
            Some((v, p)) => Some(self.sample(v, &p)?),
            None => None,
        };
        if replicate.is_some() && sample.is_some() {
            return Err(self.invalid(
                &join_key(path, "sample"),
                "a process either replicates or samples its calls, not both; remove `replicate` or `sample`",
            ));
        }
        let process = Process {
            name: name.to_owned(),
            modules,
            env,
            timeout_ms,
            on_crash,
            replicate,
            sample,
            line: self.index.line_of(path).unwrap_or(0),
        };
        self.check_sandbox_wrappers(&process)?;
        Ok(process)
    }

    /// valgrind runs the helper on a synthetic CPU and does not pass Landlock or seccomp
    /// (`landlock_create_ruleset`, `seccomp`) to the kernel: a sandbox under it could never be
    /// applied, so the map is refused instead of the helper failing at each start.
    fn check_sandbox_wrappers(&self, p: &Process) -> Result<(), MapError> {
        // Each combination of [`Process::helper_envs`], without building the merged
        // environments: replicas times retries can be tens of thousands of them.
        let base_key = format!("processes.{}", p.name);
        let (what, replica_envs) = match (&p.replicate, &p.sample) {
            (Some(r), _) => ("replicate", r.envs.as_slice()),
            (None, Some(s)) => ("sample", s.envs.as_slice()),
            (None, None) => ("", &[][..]),
        };
        let layers = std::iter::once((None, &p.env))
            .chain(replica_envs.iter().enumerate().map(|(i, e)| (Some(i), e)));
        for (replica, env) in layers {
            let retries =
                std::iter::once(None).chain(p.on_crash.retry_envs.iter().enumerate().map(Some));
            for retry in retries {
                let mut chain = vec![&p.env];
                if replica.is_some() {
                    chain.push(env);
                }
                if let Some((_, r)) = retry {
                    chain.push(r);
                }
                let Some(tool) = chain.iter().rev().find_map(|e| e.wrapper.first()) else {
                    continue;
                };
                let base = tool.rsplit('/').next().unwrap_or(tool);
                if chain.iter().any(|e| e.sandbox.is_some()) && base.starts_with("valgrind") {
                    let key = match (retry, replica) {
                        (Some((n, _)), _) => format!("{base_key}.on_crash.retry_envs[{n}]"),
                        (None, Some(i)) => format!("{base_key}.{what}.envs[{i}]"),
                        (None, None) => format!("{base_key}.env"),
                    };
                    return Err(self.invalid(
                        &key,
                        format!("this environment has both a sandbox and the wrapper `{tool}`, which cannot apply one (valgrind does not pass Landlock and seccomp to the kernel); remove the sandbox or the wrapper from it"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn env(&self, v: &Value, path: &str) -> Result<Env, MapError> {
        let f = self.fields(v, path, "an environment", ENV_KEYS)?;
        let mut env = Env::default();
        if let Some((v, p)) = f.get("vars") {
            for (k, val) in self.entries(v, &p, "vars")? {
                let kp = join_key(&p, &k);
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(self.schema(
                        &kp,
                        format!("`{k}` is not a valid environment variable name"),
                    ));
                }
                env.vars.insert(k, self.scalar_string(val, &kp)?);
            }
        }
        if let Some((v, p)) = f.get("rlimits") {
            for (k, val) in self.entries(v, &p, "rlimits")? {
                let kp = join_key(&p, &k);
                if !RLIMIT_NAMES.contains(&k.as_str()) {
                    return Err(self.schema(
                        &kp,
                        format!(
                            "unknown rlimit `{k}`; expected one of: {}",
                            RLIMIT_NAMES.join(", ")
                        ),
                    ));
                }
                env.rlimits.insert(k, self.size_value(val, &kp)?);
            }
        }
        if let Some((v, p)) = f.get("malloc") {
            env.malloc = self.malloc(v, &p)?;
        }
        if let Some((v, p)) = f.get("wrapper") {
            env.wrapper = self.strings(v, &p, "[valgrind, --leak-check=full]")?;
            if env.wrapper.first().is_some_and(|w| w.is_empty()) {
                return Err(self.schema(&join_index(&p, 0), "the wrapper command is empty"));
            }
        }
        if let Some((v, p)) = f.get("preload") {
            env.preload = self.strings(v, &p, "[/usr/lib/libefence.so]")?;
            for l in env.preload.iter_mut() {
                if l.contains('/') {
                    *l = self.beside_map(l);
                }
            }
        }
        if let Some((v, p)) = f.get("library_path") {
            let lp = self.string(v, &p)?;
            env.library_path = lp
                .split(':')
                .map(|d| self.beside_map(d))
                .collect::<Vec<_>>()
                .join(":");
        }
        if let Some((v, p)) = f.get("sandbox") {
            env.sandbox = Some(self.sandbox(v, &p)?);
        }
        Ok(env)
    }

    fn sandbox(&self, v: &Value, path: &str) -> Result<Sandbox, MapError> {
        let f = self.fields(v, path, "sandbox settings", SANDBOX_KEYS)?;
        let mut sb = Sandbox::default();
        if let Some((v, p)) = f.get("files") {
            let ff = self.fields(v, &p, "file rules", FILES_KEYS)?;
            let mut files = FileRules::default();
            if let Some((v, p)) = ff.get("read") {
                files.read = Some(self.sandbox_paths(v, &p)?);
            }
            if let Some((v, p)) = ff.get("write") {
                files.write = Some(self.sandbox_paths(v, &p)?);
            }
            sb.files = Some(files);
        }
        if let Some((v, p)) = f.get("network") {
            sb.network = Some(self.boolean(v, &p)?);
        }
        if let Some((v, p)) = f.get("exec") {
            sb.exec = Some(self.boolean(v, &p)?);
        }
        Ok(sb)
    }

    /// Paths of `files.read`/`files.write`: a relative one is beside the map, like `preload`;
    /// an empty one would silently allow nothing.
    fn sandbox_paths(&self, v: &Value, path: &str) -> Result<Vec<String>, MapError> {
        let mut paths = self.strings(v, path, "[/usr/share/misc, /usr/lib/file]")?;
        for (i, p) in paths.iter_mut().enumerate() {
            if p.trim().is_empty() || p.contains('\0') {
                return Err(self.schema(
                    &join_index(path, i),
                    "expected a path such as /usr/share/misc; an empty path allows nothing",
                ));
            }
            if p.starts_with('$') {
                return Err(self.schema(
                    &join_index(path, i),
                    format!("`{p}`: variables are not expanded here; write the path itself"),
                ));
            }
            *p = self.beside_map(p);
        }
        Ok(paths)
    }

    /// A relative path in the map (`library_path`, a `preload` entry with a `/`) is relative
    /// to the map's own directory, so a map can ship beside the libraries it names.
    fn beside_map(&self, p: &str) -> String {
        if p.is_empty() || p.starts_with('/') || p.starts_with('$') {
            return p.to_string();
        }
        match self.file.parent() {
            Some(dir) => std::path::absolute(dir.join(p))
                .unwrap_or_else(|_| dir.join(p))
                .display()
                .to_string(),
            None => p.to_string(),
        }
    }

    fn malloc(&self, v: &Value, path: &str) -> Result<Malloc, MapError> {
        let f = self.fields(v, path, "malloc settings", MALLOC_KEYS)?;
        let mut m = Malloc::default();
        if let Some((v, p)) = f.get("perturb") {
            let n = self.uint(v, &p)?;
            m.perturb = Some(u8::try_from(n).map_err(|_| {
                self.schema(&p, format!("perturb is a byte value, 0 to 255; found {n}"))
            })?);
        }
        if let Some((v, p)) = f.get("pad") {
            m.pad = Some(self.size_value(v, &p)?);
        }
        if let Some((v, p)) = f.get("zero_fill") {
            m.zero_fill = Some(self.boolean(v, &p)?);
        }
        if let Some((v, p)) = f.get("delay_free") {
            m.delay_free = Some(self.uint(v, &p)?);
        }
        Ok(m)
    }

    fn envs(&self, v: &Value, path: &str) -> Result<Vec<Env>, MapError> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, e)| self.env(e, &join_index(path, i)))
                .collect(),
            other => Err(self.schema(
                path,
                format!("expected a list of environments such as [{{vars: {{A: \"1\"}}}}, {{wrapper: [valgrind]}}], found {}", describe(other)),
            )),
        }
    }

    fn on_crash(&self, v: &Value, path: &str) -> Result<OnCrash, MapError> {
        let f = self.fields(v, path, "on_crash settings", ON_CRASH_KEYS)?;
        let mut c = OnCrash::default();
        if let Some((v, p)) = f.get("restart") {
            c.restart = self.boolean(v, &p)?;
        }
        if let Some((v, p)) = f.get("restore") {
            c.restore = match self.word(v, &p, &["none", "replay", "checkpoint"])? {
                "replay" => Restore::Replay,
                "checkpoint" => Restore::Checkpoint,
                _ => Restore::None,
            };
        }
        if let Some((v, p)) = f.get("max_retries") {
            let n = self.uint(v, &p)?;
            if n > MAX_RETRIES {
                return Err(self.invalid(
                    &p,
                    format!("max_retries is {n}; at most {MAX_RETRIES} are allowed, since a crash loop stalls the caller"),
                ));
            }
            c.max_retries = n as u32;
        }
        if let Some((v, p)) = f.get("retry_envs") {
            c.retry_envs = self.envs(v, &p)?;
            // Retry n runs in retry_envs[n-1] and there are at most MAX_RETRIES retries; more
            // entries are never used, and each multiplies the environments to check.
            if c.retry_envs.len() as u64 > MAX_RETRIES {
                return Err(self.invalid(
                    &p,
                    format!("{} retry environments; retry n runs in retry_envs[n-1] and at most {MAX_RETRIES} retries are allowed, so give at most {MAX_RETRIES}", c.retry_envs.len()),
                ));
            }
        }
        if let Some((v, p)) = f.get("give_up") {
            c.give_up = self.give_up(v, &p)?;
        }
        Ok(c)
    }

    fn give_up(&self, v: &Value, path: &str) -> Result<GiveUp, MapError> {
        const HOW: &str =
            "expected `crash` or {return: VALUE, errno: NAME} such as {return: 0, errno: EIO}";
        match v {
            Value::String(s) if s == "crash" => Ok(GiveUp::Crash),
            Value::Mapping(_) => {
                let f = self.fields(v, path, "give_up", GIVE_UP_KEYS)?;
                let value = match f.get("return") {
                    Some((v, p)) => v.as_i64().ok_or_else(|| {
                        self.schema(
                            &p,
                            format!("expected an integer return value, found {}", describe(v)),
                        )
                    })?,
                    None => return Err(self.schema(path, format!("missing `return`; {HOW}"))),
                };
                // Without `errno` the caller's errno is set to 0.
                let errno = match f.get("errno") {
                    Some((v, p)) => self.errno(v, &p)?,
                    None => 0,
                };
                Ok(GiveUp::Return { value, errno })
            }
            other => Err(self.schema(path, format!("{HOW}; found {}", describe(other)))),
        }
    }

    fn errno(&self, v: &Value, path: &str) -> Result<i32, MapError> {
        let n = match v {
            Value::Number(_) => v.as_u64(),
            Value::String(s) => errno_from_name(s.trim()).map(|n| n as u64),
            _ => None,
        };
        match n {
            Some(n) if n <= 4095 => Ok(n as i32),
            _ => Err(self.schema(
                path,
                format!("expected an errno name such as EIO, ENOMEM, EINVAL or a number 0..4095, found {}", describe(v)),
            )),
        }
    }

    fn count(&self, f: &Fields<'_>, path: &str, what: &str) -> Result<u32, MapError> {
        let Some((v, p)) = f.get("count") else {
            return Err(self.schema(
                path,
                format!("missing `count`: how many {what} to run, e.g. `count: 3`"),
            ));
        };
        let n = self.uint(v, &p)?;
        if n == 0 || n > MAX_COUNT {
            return Err(self.invalid(
                &p,
                format!("count must be between 1 and {MAX_COUNT}; found {n}"),
            ));
        }
        Ok(n as u32)
    }

    /// Each of the `count` helpers runs in its own entry of `envs`, so more envs than helpers
    /// would be silently unused.
    fn check_envs(&self, envs: &[Env], count: u32, path: &str) -> Result<(), MapError> {
        if envs.len() > count as usize {
            return Err(self.invalid(
                &join_key(path, "envs"),
                format!("{} environments for count {count}; the i-th helper runs in envs[i], so give at most {count} or raise count", envs.len()),
            ));
        }
        Ok(())
    }

    fn replicate(&self, v: &Value, path: &str) -> Result<Replicate, MapError> {
        let f = self.fields(v, path, "replicate settings", REPLICATE_KEYS)?;
        let count = self.count(&f, path, "replicas")?;
        let on_mismatch = match f.get("on_mismatch") {
            Some((v, p)) => match self.word(v, &p, &["majority", "first", "abort"])? {
                "first" => OnMismatch::First,
                "abort" => OnMismatch::Abort,
                _ => OnMismatch::Majority,
            },
            None => OnMismatch::Majority,
        };
        let envs = match f.get("envs") {
            Some((v, p)) => self.envs(v, &p)?,
            None => Vec::new(),
        };
        self.check_envs(&envs, count, path)?;
        Ok(Replicate {
            count,
            on_mismatch,
            envs,
        })
    }

    fn sample(&self, v: &Value, path: &str) -> Result<Sample, MapError> {
        let f = self.fields(v, path, "sample settings", SAMPLE_KEYS)?;
        let count = self.count(&f, path, "samplers")?;
        let envs = match f.get("envs") {
            Some((v, p)) => self.envs(v, &p)?,
            None => Vec::new(),
        };
        self.check_envs(&envs, count, path)?;
        let pick = match f.get("pick") {
            Some((v, p)) => match self.word(v, &p, &["round-robin", "random"])? {
                "random" => Pick::Random,
                _ => Pick::RoundRobin,
            },
            None => Pick::RoundRobin,
        };
        Ok(Sample { count, envs, pick })
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

/// True when `inner` is `outer` or below it (`a.b` is within `a`, `a[0]` too, `ab` is not).
fn is_within(outer: &str, inner: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

fn check_name(cx: &Cx<'_>, name: &str, path: &str, what: &str) -> Result<(), MapError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.schema(
            path,
            format!("`{name}` is not a valid {what} name; use a name without spaces"),
        ));
    }
    Ok(())
}

/// A mapping key as a name: YAML may type `1:` or `true:` as a number or boolean.
fn key_name(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short description of a YAML value for "found ..." in messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("`{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A scalar as the user probably wrote it, for rewriting hints.
fn describe_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "...".into(),
    }
}
