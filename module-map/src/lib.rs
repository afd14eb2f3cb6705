//! The fracture module map (SPEC.md, "The module map"): first stage of configuration.
//!
//! Parses and validates the YAML into plain structs with no I/O beyond reading the file, and
//! no knowledge of ELF files (that is the second stage, done by the shim and the launcher).
//! Every error names the file, the line and the key.
#![deny(unsafe_code)]

mod budget;
mod errno;
mod glob;
mod locate;
mod overrides;
mod parse;
mod spec;
pub mod vars;

pub use budget::{MAX_MAP_BYTES, MAX_VALUES};
pub use glob::glob_match;
pub use parse::{
    parse_map, parse_map_str, read_map, MapError, MapErrorKind, MAX_COUNT, MAX_RETRIES,
    RLIMIT_NAMES,
};
pub use spec::{ArgSpec, RetSpec, Size, SizeBase, SpecError};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A parsed and validated module map.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleMap {
    /// File the map came from (for error messages), or `<string>`.
    pub file: PathBuf,
    /// Glob on the executable's real path; `None` matches every program.
    pub target: Option<String>,
    /// Modules in file order.
    pub modules: Vec<Module>,
    /// Helper processes in file order.
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub name: String,
    /// soname, file name or path, or `main`.
    pub object: String,
    pub functions: Vec<Function>,
    /// Function-pointer types the module calls back into the program (SPEC.md, "Callbacks");
    /// `cb:NAME` arguments refer to them by index.
    pub callbacks: Vec<Callback>,
    pub capabilities: Vec<String>,
    /// 1-based line of the module's key in the file (0 when a `--set` added the module).
    pub line: usize,
}

/// One callback type: the signature of a function pointer the program passes as `cb:NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub name: String,
    /// Arguments as the module passes them to the program's function: `val`, `f64`, `str`,
    /// `in:`/`out:`/`inout:` and `strv` (copied helper -> program, out-buffers back).
    pub args: Vec<ArgSpec>,
    pub ret: RetSpec,
    /// 1-based line of the callback's key in the file (0 when a `--set` added it).
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Symbol name, optionally with `@VERSION` (e.g. `inflateCopy@ZLIB_1.2.0`).
    pub name: String,
    pub args: Vec<ArgSpec>,
    pub ret: RetSpec,
    /// `effect: pure` (true) or `state` (false, default).
    pub pure: bool,
    /// 1-based line of the function's key in the file (0 when a `--set` added it).
    pub line: usize,
}

impl Function {
    /// The symbol name without a `@VERSION` suffix.
    pub fn symbol(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }
    /// The version after `@`, if any.
    pub fn version(&self) -> Option<&str> {
        self.name
            .split_once('@')
            .map(|(_, v)| v.trim_start_matches('@'))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub name: String,
    /// `memory`: how the helper sees the program's memory (SPEC.md, "Memory").
    pub memory: Memory,
    /// Names of modules of this map; each module is in at most one process.
    pub modules: Vec<String>,
    pub env: Env,
    pub timeout_ms: Option<u64>,
    pub on_crash: OnCrash,
    pub replicate: Option<Replicate>,
    pub sample: Option<Sample>,
    /// 1-based line of the process's key in the file (0 when a `--set` added it).
    pub line: usize,
}

/// `memory:` of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Memory {
    /// Only what the specs name is copied (the default).
    #[default]
    Copy,
    /// Program memory is fetched a page at a time when the module touches it, and the bytes
    /// it changed are written back when the call returns.
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Env {
    pub vars: BTreeMap<String, String>,
    /// rlimit name (see [`RLIMIT_NAMES`]) -> value (bytes or count); `unlimited` is `u64::MAX`.
    pub rlimits: BTreeMap<String, u64>,
    pub malloc: Malloc,
    pub wrapper: Vec<String>,
    pub preload: Vec<String>,
    pub library_path: String,
    /// `sandbox`: what the helper may still do (SPEC.md, "Sandbox"); `None` runs the helper
    /// with the user's rights, like the program.
    pub sandbox: Option<Sandbox>,
}

impl Env {
    /// True when the helper must be a fresh execution of the program (SPEC: wrapper, preload,
    /// library_path make the helper exec-mode).
    pub fn exec_mode(&self) -> bool {
        !self.wrapper.is_empty() || !self.preload.is_empty() || !self.library_path.is_empty()
    }
    /// `other` merged over `self`: maps merge key by key, lists and strings replace when set.
    pub fn merged(&self, other: &Env) -> Env {
        let mut e = self.clone();
        e.vars.extend(other.vars.clone());
        e.rlimits.extend(other.rlimits.clone());
        let m = &other.malloc;
        e.malloc.perturb = m.perturb.or(e.malloc.perturb);
        e.malloc.pad = m.pad.or(e.malloc.pad);
        e.malloc.zero_fill = m.zero_fill.or(e.malloc.zero_fill);
        e.malloc.delay_free = m.delay_free.or(e.malloc.delay_free);
        if !other.wrapper.is_empty() {
            e.wrapper = other.wrapper.clone();
        }
        if !other.preload.is_empty() {
            e.preload = other.preload.clone();
        }
        if !other.library_path.is_empty() {
            e.library_path = other.library_path.clone();
        }
        e.sandbox = match (&e.sandbox, &other.sandbox) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        e
    }
}

/// `env.sandbox`: the helper's rights once it serves calls. Each field left out is not
/// restricted; what a sandbox always takes away (ptrace, signals and memory access to the
/// program and the other helpers) does not depend on the fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sandbox {
    /// `files`: `None` leaves file access as it is; `Some` allows opening only beneath these
    /// paths.
    pub files: Option<FileRules>,
    /// `network: false`: no sockets but AF_UNIX.
    pub network: Option<bool>,
    /// `exec: false`: execve and execveat are refused.
    pub exec: Option<bool>,
}

/// `sandbox.files`: absolute paths (a path names a file or everything beneath a directory).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileRules {
    /// `read`: opened for reading (files and directory listings), and executed unless
    /// `exec: false`.
    pub read: Option<Vec<String>>,
    /// `write`: everything `read` allows, plus writing, creating, removing and renaming.
    pub write: Option<Vec<String>>,
}

impl FileRules {
    pub fn read(&self) -> &[String] {
        self.read.as_deref().unwrap_or_default()
    }
    pub fn write(&self) -> &[String] {
        self.write.as_deref().unwrap_or_default()
    }
}

impl Sandbox {
    /// True unless `network: false`.
    pub fn network_allowed(&self) -> bool {
        self.network.unwrap_or(true)
    }
    /// True unless `exec: false`.
    pub fn exec_allowed(&self) -> bool {
        self.exec.unwrap_or(true)
    }
    /// `other` merged over `self`, key by key like [`Env::merged`]: `files.read` and
    /// `files.write` replace when set.
    pub fn merged(&self, other: &Sandbox) -> Sandbox {
        let files = match (&self.files, &other.files) {
            (Some(a), Some(b)) => Some(FileRules {
                read: b.read.clone().or_else(|| a.read.clone()),
                write: b.write.clone().or_else(|| a.write.clone()),
            }),
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        Sandbox {
            files,
            network: other.network.or(self.network),
            exec: other.exec.or(self.exec),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Malloc {
    pub perturb: Option<u8>,
    pub pad: Option<u64>,
    pub zero_fill: Option<bool>,
    pub delay_free: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Restore {
    None,
    Replay,
    Checkpoint,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GiveUp {
    /// Re-raise the helper's signal (or exit status) in the program.
    Crash,
    /// Return this value with errno set.
    Return { value: i64, errno: i32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnCrash {
    pub restart: bool,
    pub restore: Restore,
    pub max_retries: u32,
    pub retry_envs: Vec<Env>,
    pub give_up: GiveUp,
}

impl Default for OnCrash {
    fn default() -> Self {
        OnCrash {
            restart: true,
            restore: Restore::None,
            max_retries: 0,
            retry_envs: Vec::new(),
            give_up: GiveUp::Crash,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OnMismatch {
    Majority,
    First,
    Abort,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Replicate {
    pub count: u32,
    pub on_mismatch: OnMismatch,
    pub envs: Vec<Env>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    RoundRobin,
    Random,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub count: u32,
    pub envs: Vec<Env>,
    pub pick: Pick,
}

impl Process {
    /// Every environment a helper of this process can run in, each with the key of the
    /// entry merged last (`processes.P.env`, `...replicate.envs[i]`, `...on_crash.retry_envs[n]`):
    /// the process's `env`, merged with each replica's entry of `replicate.envs`/`sample.envs`,
    /// each merged with each of `retry_envs`.
    pub fn helper_envs(&self) -> Vec<(String, Env)> {
        let base_key = format!("processes.{}", self.name);
        let (what, replica_envs) = match (&self.replicate, &self.sample) {
            (Some(r), _) => ("replicate", r.envs.as_slice()),
            (None, Some(s)) => ("sample", s.envs.as_slice()),
            (None, None) => ("", &[][..]),
        };
        let mut bases = vec![(format!("{base_key}.env"), self.env.clone())];
        for (i, e) in replica_envs.iter().enumerate() {
            bases.push((format!("{base_key}.{what}.envs[{i}]"), self.env.merged(e)));
        }
        let mut out = Vec::new();
        for (key, env) in bases {
            for (n, r) in self.on_crash.retry_envs.iter().enumerate() {
                out.push((
                    format!("{base_key}.on_crash.retry_envs[{n}]"),
                    env.merged(r),
                ));
            }
            out.push((key, env));
        }
        out
    }
}

impl ModuleMap {
    /// The process a module is isolated in, or `None` when it stays in the program.
    pub fn process_of(&self, module: &str) -> Option<&Process> {
        self.processes
            .iter()
            .find(|p| p.modules.iter().any(|m| m == module))
    }
    /// True when at least one module is isolated in a helper process.
    pub fn isolates_anything(&self) -> bool {
        self.processes.iter().any(|p| !p.modules.is_empty())
    }
    /// True when the map applies to the executable at `exe` (its real path).
    pub fn matches_target(&self, exe: &str) -> bool {
        match &self.target {
            None => true,
            Some(t) => glob_match(t, exe),
        }
    }
}
