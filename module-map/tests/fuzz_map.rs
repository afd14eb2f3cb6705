//! Fuzzing the module map parser (`parse_map_str`, `parse_map`, `--set` overrides), as
//! deterministic tests: bytes from a fixed-seed PRNG feed `arbitrary::Unstructured`, so every
//! run sees the same inputs and a failure prints the seed that rebuilds its input
//! (`FRACTURE_FUZZ_SEED=0x... cargo test --release -p module-map --test fuzz_map`).
//! `FRACTURE_FUZZ_ITERS=N` runs N cases per target instead of the default.
//!
//! cargo-fuzz (libFuzzer) needs nightly `-Z` flags; these run on stable in `cargo test`.
//!
//! Properties: the parser never panics (each case runs under `catch_unwind`), finishes before
//! a watchdog fires, and every error names the file, on one line.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use module_map::{parse_map, parse_map_str, MapError};

// ---------------------------------------------------------------------------------------------
// Harness: seeds, bytes, watchdog, catch_unwind.

/// SplitMix64: the bytes of case `seed`.
fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The seeds of a target: `FRACTURE_FUZZ_SEED` alone, or `FRACTURE_FUZZ_ITERS` (else
/// `default`) seeds derived from the target's `base`.
fn seeds(base: u64, default: usize) -> Vec<u64> {
    if let Some(s) = std::env::var("FRACTURE_FUZZ_SEED").ok().and_then(|s| {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    }) {
        return vec![s];
    }
    let n = std::env::var("FRACTURE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n as u64).map(|i| base ^ (i << 20) ^ i).collect()
}

/// Kills the test process when one case runs longer than [`Watchdog::LIMIT`] (a hang or a
/// blow-up), printing its seed and input: a hung case cannot be interrupted any other way.
struct Watchdog {
    /// Milliseconds since `t0` when the current case started, 0 between cases.
    started: Arc<AtomicU64>,
    current: Arc<Mutex<(u64, String)>>,
    t0: Instant,
}

impl Watchdog {
    /// Far above what any case takes, so only a real hang fires it.
    const LIMIT: Duration = Duration::from_secs(20);

    fn new(target: &'static str) -> Watchdog {
        let started = Arc::new(AtomicU64::new(0));
        let current = Arc::new(Mutex::new((0, String::new())));
        let t0 = Instant::now();
        let (s, c) = (started.clone(), current.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let at = s.load(Ordering::Acquire);
            if at != 0 && t0.elapsed().as_millis() as u64 > at + Self::LIMIT.as_millis() as u64 {
                let (seed, input) = c.lock().map(|g| g.clone()).unwrap_or_default();
                eprintln!(
                    "{target}: case with seed {seed:#x} still running after {:?}: hang or blow-up; input:\n{input}",
                    Self::LIMIT
                );
                std::process::exit(101);
            }
        });
        Watchdog {
            started,
            current,
            t0,
        }
    }

    /// Runs one case under the watchdog and `catch_unwind`; a panic fails the test with the
    /// seed and the input.
    fn run<R>(&self, seed: u64, input: &dyn Fn() -> String, f: impl FnOnce() -> R) -> R {
        if let Ok(mut g) = self.current.lock() {
            *g = (seed, input());
        }
        self.started
            .store(self.t0.elapsed().as_millis() as u64 + 1, Ordering::Release);
        let r = catch_unwind(AssertUnwindSafe(f));
        self.started.store(0, Ordering::Release);
        match r {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "panic `{msg}` for seed {seed:#x} (rerun with FRACTURE_FUZZ_SEED={seed:#x}); input:\n{}",
                    input()
                )
            }
        }
    }
}

/// Every error names the file it is about, and is one line.
fn check_error(seed: u64, e: &MapError, file: &Path, input: &dyn Fn() -> String) {
    let shown = e.to_string();
    assert!(
        e.file() == file && shown.starts_with(&file.display().to_string()),
        "seed {seed:#x}: error does not name {}: {shown}\ninput:\n{}",
        file.display(),
        input()
    );
    assert!(
        !shown.contains(['\n', '\r']),
        "seed {seed:#x}: error is not one line: {shown:?}\ninput:\n{}",
        input()
    );
}

// ---------------------------------------------------------------------------------------------
// The model: a map built structurally, with wrong types, random keys and odd scalars mixed in.

/// A generic YAML node, before rendering.
#[derive(Debug, Clone)]
enum Node {
    /// A scalar, already spelled as YAML.
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// `Right` most of the time, a value of the wrong shape otherwise.
#[derive(Debug)]
enum Field<T> {
    Right(T),
    Wrong(Junk),
}

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Field<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(if u.ratio(1u8, 20)? {
            Field::Wrong(Junk::arbitrary(u)?)
        } else {
            Field::Right(T::arbitrary(u)?)
        })
    }
}

trait ToNode {
    fn node(&self) -> Node;
}

impl<T: ToNode> ToNode for Field<T> {
    fn node(&self) -> Node {
        match self {
            Field::Right(t) => t.node(),
            Field::Wrong(j) => j.node(),
        }
    }
}

impl<T: ToNode> ToNode for Vec<T> {
    fn node(&self) -> Node {
        Node::Seq(self.iter().map(ToNode::node).collect())
    }
}

/// Values of the wrong shape: scalars where mappings go, deep lists, tags.
#[derive(Debug)]
enum Junk {
    Scalar(Scalar),
    List(Vec<Scalar>),
    Map(Vec<(Name, Scalar)>),
    /// Lists nested 60 to 145 deep (serde_yaml_ng refuses beyond 128).
    Deep(u8),
    Tagged(Tag, Scalar),
}

impl<'a> Arbitrary<'a> for Junk {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=15)? {
            0..=5 => Junk::Scalar(Scalar::arbitrary(u)?),
            6..=8 => Junk::List(Vec::arbitrary(u)?),
            9..=12 => Junk::Map(Vec::arbitrary(u)?),
            13 => Junk::Deep(u8::arbitrary(u)?),
            _ => Junk::Tagged(Tag::arbitrary(u)?, Scalar::arbitrary(u)?),
        })
    }
}

#[derive(Debug, Arbitrary)]
enum Tag {
    Str,
    Int,
    Binary,
    Custom(Name),
}

impl ToNode for Junk {
    fn node(&self) -> Node {
        match self {
            Junk::Scalar(s) => s.node(),
            Junk::List(l) => l.node(),
            Junk::Map(m) => Node::Map(m.iter().map(|(k, v)| (k.text(), v.node())).collect()),
            Junk::Deep(n) => {
                let depth = 60 + usize::from(*n) / 3;
                Node::Scalar(format!("{}x{}", "[".repeat(depth), "]".repeat(depth)))
            }
            Junk::Tagged(t, s) => {
                let tag = match t {
                    Tag::Str => "!!str".to_string(),
                    Tag::Int => "!!int".to_string(),
                    Tag::Binary => "!!binary".to_string(),
                    Tag::Custom(n) => format!("!{}", plainish(&n.text())),
                };
                match s.node() {
                    Node::Scalar(s) => Node::Scalar(format!("{tag} {s}")),
                    other => other,
                }
            }
        }
    }
}

/// Words the schema knows, so random keys and values often hit real paths.
const WORDS: &[&str] = &[
    "target",
    "modules",
    "processes",
    "object",
    "functions",
    "capabilities",
    "args",
    "ret",
    "effect",
    "env",
    "timeout_ms",
    "on_crash",
    "replicate",
    "sample",
    "vars",
    "rlimits",
    "malloc",
    "wrapper",
    "preload",
    "library_path",
    "sandbox",
    "files",
    "network",
    "exec",
    "read",
    "write",
    "perturb",
    "pad",
    "zero_fill",
    "delay_free",
    "restart",
    "restore",
    "max_retries",
    "retry_envs",
    "give_up",
    "return",
    "errno",
    "count",
    "on_mismatch",
    "envs",
    "pick",
    "main",
    "libmagic.so.1",
    "pure",
    "state",
    "none",
    "replay",
    "checkpoint",
    "crash",
    "majority",
    "first",
    "abort",
    "round-robin",
    "random",
    "as",
    "cpu",
    "nofile",
    "stack",
    "unlimited",
    "EIO",
    "ENOMEM",
    "EBOGUS",
    "valgrind",
    "valgrind-di-server",
    "/usr/lib",
    "rel/dir",
    "$HOME",
    "<<",
    "~",
    "null",
    "yes",
    "on",
    ".inf",
    ".nan",
    "0o17",
    "0x1F",
    "1_000",
    "-0",
    "1e400",
    "restartable",
    "magic",
    "f@V1",
    "@f",
    "f@",
    "a.b",
    "x[0]",
    "",
];

/// Spec strings from the SPEC table and near misses.
const SPECS: &[&str] = &[
    "val",
    "handle",
    "str",
    "cb",
    "f64",
    "double",
    "f32",
    "float",
    "void",
    "in:arg2",
    "out:*arg1",
    "inout:arg9*8",
    "strv:3",
    "strv",
    "cb:x",
    "in:",
    "out:*",
    "in:18446744073709551615*2",
    "in:64",
    "out:4KiB",
    "inout:*arg1*4",
    "in:arg01",
    "in:arg1*arg2",
    "in:arg1*0",
    "in:4KB",
    "in:16TiB*16777216",
    "in:0x",
    "in:0xffffffffffffffff",
    "out:*64",
    "in:argx",
    "in: arg0",
    "up:64",
    "in",
    "in:1MiB*1MiB",
    "out:arg18446744073709551616",
    "in:*arg99999999999999999999",
];

#[derive(Debug)]
enum Scalar {
    Word(u8),
    Spec(u8),
    Built(SpecModel),
    Int(u64),
    Neg(i64),
    Float(f64),
    /// A decimal number of 20..275 digits.
    Huge(u8),
    Bool(bool),
    Null,
    /// Double-quoted, every character escaped as YAML needs (NUL, newlines, controls).
    Quoted(String),
    /// Written as it is, YAML specials and all.
    Raw(String),
    Size(u16, u8),
}

impl<'a> Arbitrary<'a> for Scalar {
    /// Mostly words and specs the schema knows; numbers, quoted and raw text less often.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=63)? {
            0..=15 => Scalar::Word(u8::arbitrary(u)?),
            16..=27 => Scalar::Spec(u8::arbitrary(u)?),
            28..=33 => Scalar::Built(SpecModel::arbitrary(u)?),
            34..=38 => Scalar::Int(u64::arbitrary(u)? >> u.int_in_range(0u8..=63)?),
            39 => Scalar::Neg(i64::arbitrary(u)?),
            40 => Scalar::Float(f64::arbitrary(u)?),
            41 => Scalar::Huge(u8::arbitrary(u)?),
            42..=45 => Scalar::Bool(bool::arbitrary(u)?),
            46..=47 => Scalar::Null,
            48..=53 => Scalar::Quoted(String::arbitrary(u)?),
            54 => Scalar::Raw(String::arbitrary(u)?),
            _ => Scalar::Size(u16::arbitrary(u)?, u8::arbitrary(u)?),
        })
    }
}

const UNITS: &[&str] = &[
    "", "B", "K", "KiB", "MiB", "GiB", "TiB", "KB", "parsecs", "k", "EiB",
];

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Word(i) => plainish(WORDS[usize::from(*i) % WORDS.len()]),
            Scalar::Spec(i) => quote(SPECS[usize::from(*i) % SPECS.len()]),
            Scalar::Built(s) => quote(&s.text()),
            Scalar::Int(n) => n.to_string(),
            Scalar::Neg(n) => n.to_string(),
            Scalar::Float(f) => format!("{f:?}"),
            Scalar::Huge(n) => "9".repeat(20 + usize::from(*n)),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Null => "null".into(),
            Scalar::Quoted(s) => quote(s),
            Scalar::Raw(s) => s.clone(),
            Scalar::Size(n, u) => format!("{n}{}", UNITS[usize::from(*u) % UNITS.len()]),
        }
    }
}

impl ToNode for Scalar {
    fn node(&self) -> Node {
        Node::Scalar(self.text())
    }
}

/// A spec string assembled from parts: `DIR:BASE*MUL*MUL`.
#[derive(Debug, Arbitrary)]
struct SpecModel {
    dir: u8,
    base: SizeBase,
    muls: Vec<u64>,
}

#[derive(Debug, Arbitrary)]
enum SizeBase {
    Arg(u8),
    Deref(u8),
    Literal(u64),
    Hex(u64),
    Unit(u16, u8),
    Big,
    Empty,
}

impl SpecModel {
    fn text(&self) -> String {
        let dir = ["in", "out", "inout", "", "strv", "cb", "up"][usize::from(self.dir) % 7];
        let base = match &self.base {
            SizeBase::Arg(n) => format!("arg{}", n % 12),
            SizeBase::Deref(n) => format!("*arg{}", n % 12),
            SizeBase::Literal(n) => n.to_string(),
            SizeBase::Hex(n) => format!("{n:#x}"),
            SizeBase::Unit(n, u) => format!("{n}{}", UNITS[usize::from(*u) % UNITS.len()]),
            SizeBase::Big => u64::MAX.to_string(),
            SizeBase::Empty => String::new(),
        };
        let mut s = format!("{dir}:{base}");
        for m in self.muls.iter().take(4) {
            s += &format!("*{}", m % 70_000);
        }
        s
    }
}

/// A name: mostly a plain one, sometimes one the schema uses, or anything.
#[derive(Debug)]
enum Name {
    Plain(u8),
    Word(u8),
    Any(String),
}

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=15)? {
            0..=10 => Name::Plain(u8::arbitrary(u)?),
            11..=13 => Name::Word(u8::arbitrary(u)?),
            _ => Name::Any(String::arbitrary(u)?),
        })
    }
}

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Plain(n) => format!("n{}", n % 8),
            Name::Word(i) => plainish(WORDS[usize::from(*i) % WORDS.len()]),
            Name::Any(s) => quote(s),
        }
    }
}

/// A word as a plain YAML scalar when it can be one, else quoted.
fn plainish(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./@$<~+".contains(c))
        && !w.starts_with(['-', '@']);
    if plain {
        w.to_string()
    } else {
        quote(w)
    }
}

/// A double-quoted YAML scalar holding exactly `s`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) >= 0xfff0 && (c as u32) <= 0xffff => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Present 15 times in 16.
#[derive(Debug)]
struct Mostly<T>(Option<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Mostly<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Mostly(if u.ratio(1u8, 16)? {
            None
        } else {
            Some(T::arbitrary(u)?)
        }))
    }
}

/// A random extra key, now and then.
#[derive(Debug)]
struct Extra(Option<(Name, Junk)>);

impl<'a> Arbitrary<'a> for Extra {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Extra(if u.ratio(1u8, 16)? {
            Some(<(Name, Junk)>::arbitrary(u)?)
        } else {
            None
        }))
    }
}

/// Optional fields plus random extra keys.
fn mapping(fields: Vec<(&str, Option<Node>)>, extra: &Extra) -> Node {
    let mut m: Vec<(String, Node)> = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect();
    if let Some((k, v)) = &extra.0 {
        m.push((k.text(), v.node()));
    }
    Node::Map(m)
}

#[derive(Debug, Arbitrary)]
struct MapModel {
    target: Option<Field<Scalar>>,
    modules: Field<Vec<ModuleModel>>,
    processes: Field<Vec<ProcessModel>>,
    extra: Extra,
}

#[derive(Debug, Arbitrary)]
struct ModuleModel {
    name: Name,
    object: Mostly<Field<Scalar>>,
    functions: Option<Field<Vec<FunctionModel>>>,
    capabilities: Option<Field<Vec<Scalar>>>,
    extra: Extra,
}

#[derive(Debug, Arbitrary)]
struct FunctionModel {
    name: Name,
    args: Option<Field<Vec<Scalar>>>,
    ret: Option<Field<Scalar>>,
    effect: Option<Field<Scalar>>,
    extra: Extra,
}

#[derive(Debug, Arbitrary)]
struct ProcessModel {
    name: Name,
    modules: Option<Field<Vec<Name>>>,
    env: Option<Field<EnvModel>>,
    timeout_ms: Option<Field<Scalar>>,
    on_crash: Option<Field<OnCrashModel>>,
    replicate: Option<Field<ReplicaModel>>,
    sample: Option<Field<ReplicaModel>>,
    extra: Extra,
}

#[derive(Debug, Arbitrary)]
struct EnvModel {
    vars: Option<Vec<(Name, Scalar)>>,
    rlimits: Option<Vec<(Name, Scalar)>>,
    malloc: Option<Field<Vec<(Name, Scalar)>>>,
    wrapper: Option<Field<Vec<Scalar>>>,
    preload: Option<Field<Vec<Scalar>>>,
    library_path: Option<Field<Scalar>>,
    sandbox: Option<Field<SandboxModel>>,
    extra: Extra,
}

#[derive(Debug, Arbitrary)]
struct SandboxModel {
    read: Option<Field<Vec<Scalar>>>,
    write: Option<Field<Vec<Scalar>>>,
    network: Option<Field<Scalar>>,
    exec: Option<Field<Scalar>>,
}

#[derive(Debug, Arbitrary)]
struct OnCrashModel {
    restart: Option<Field<Scalar>>,
    restore: Option<Field<Scalar>>,
    max_retries: Option<Field<Scalar>>,
    retry_envs: Option<Field<Vec<EnvModel>>>,
    give_up: Option<Field<GiveUpModel>>,
}

#[derive(Debug, Arbitrary)]
enum GiveUpModel {
    Crash,
    Return(Scalar, Option<Scalar>),
}

#[derive(Debug, Arbitrary)]
struct ReplicaModel {
    count: Option<Field<Scalar>>,
    on_mismatch: Option<Field<Scalar>>,
    pick: Option<Field<Scalar>>,
    envs: Option<Field<Vec<EnvModel>>>,
}

impl ToNode for Name {
    fn node(&self) -> Node {
        Node::Scalar(self.text())
    }
}

/// A list of named entries as a mapping.
fn named<T>(items: &[T], name: impl Fn(&T) -> &Name, node: impl Fn(&T) -> Node) -> Node {
    Node::Map(items.iter().map(|i| (name(i).text(), node(i))).collect())
}

fn pairs(p: &[(Name, Scalar)]) -> Node {
    Node::Map(p.iter().map(|(k, v)| (k.text(), v.node())).collect())
}

fn opt<T: ToNode>(f: &Option<T>) -> Option<Node> {
    f.as_ref().map(ToNode::node)
}

impl ToNode for MapModel {
    fn node(&self) -> Node {
        let modules = match &self.modules {
            Field::Right(m) => named(m, |m| &m.name, ToNode::node),
            Field::Wrong(j) => j.node(),
        };
        let processes = match &self.processes {
            Field::Right(p) => named(p, |p| &p.name, ToNode::node),
            Field::Wrong(j) => j.node(),
        };
        mapping(
            vec![
                ("target", opt(&self.target)),
                ("modules", Some(modules)),
                ("processes", Some(processes)),
            ],
            &self.extra,
        )
    }
}

impl ToNode for ModuleModel {
    fn node(&self) -> Node {
        let functions = self.functions.as_ref().map(|f| match f {
            Field::Right(fs) => named(fs, |f| &f.name, ToNode::node),
            Field::Wrong(j) => j.node(),
        });
        mapping(
            vec![
                ("object", opt(&self.object.0)),
                ("functions", functions),
                ("capabilities", opt(&self.capabilities)),
            ],
            &self.extra,
        )
    }
}

impl ToNode for FunctionModel {
    fn node(&self) -> Node {
        mapping(
            vec![
                ("args", opt(&self.args)),
                ("ret", opt(&self.ret)),
                ("effect", opt(&self.effect)),
            ],
            &self.extra,
        )
    }
}

impl ToNode for ProcessModel {
    fn node(&self) -> Node {
        mapping(
            vec![
                ("modules", opt(&self.modules)),
                ("env", opt(&self.env)),
                ("timeout_ms", opt(&self.timeout_ms)),
                ("on_crash", opt(&self.on_crash)),
                ("replicate", opt(&self.replicate)),
                ("sample", opt(&self.sample)),
            ],
            &self.extra,
        )
    }
}

impl ToNode for EnvModel {
    fn node(&self) -> Node {
        let malloc = self.malloc.as_ref().map(|m| match m {
            Field::Right(p) => pairs(p),
            Field::Wrong(j) => j.node(),
        });
        mapping(
            vec![
                ("vars", self.vars.as_deref().map(pairs)),
                ("rlimits", self.rlimits.as_deref().map(pairs)),
                ("malloc", malloc),
                ("wrapper", opt(&self.wrapper)),
                ("preload", opt(&self.preload)),
                ("library_path", opt(&self.library_path)),
                ("sandbox", opt(&self.sandbox)),
            ],
            &self.extra,
        )
    }
}

impl ToNode for SandboxModel {
    fn node(&self) -> Node {
        let files = Node::Map(
            [("read", opt(&self.read)), ("write", opt(&self.write))]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
        );
        mapping(
            vec![
                ("files", Some(files)),
                ("network", opt(&self.network)),
                ("exec", opt(&self.exec)),
            ],
            &Extra(None),
        )
    }
}

impl ToNode for OnCrashModel {
    fn node(&self) -> Node {
        mapping(
            vec![
                ("restart", opt(&self.restart)),
                ("restore", opt(&self.restore)),
                ("max_retries", opt(&self.max_retries)),
                ("retry_envs", opt(&self.retry_envs)),
                ("give_up", opt(&self.give_up)),
            ],
            &Extra(None),
        )
    }
}

impl ToNode for GiveUpModel {
    fn node(&self) -> Node {
        match self {
            GiveUpModel::Crash => Node::Scalar("crash".into()),
            GiveUpModel::Return(v, e) => mapping(
                vec![("return", Some(v.node())), ("errno", opt(e))],
                &Extra(None),
            ),
        }
    }
}

impl ToNode for ReplicaModel {
    fn node(&self) -> Node {
        mapping(
            vec![
                ("count", opt(&self.count)),
                ("on_mismatch", opt(&self.on_mismatch)),
                ("pick", opt(&self.pick)),
                ("envs", opt(&self.envs)),
            ],
            &Extra(None),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering: block or flow style, with anchors, aliases and merge keys drawn from the bytes.

struct Render<'u, 'a> {
    u: &'u mut Unstructured<'a>,
    out: String,
    /// Per anchor `&aN` so far: whether its node is complete.
    closed: Vec<bool>,
    /// Whether aliases may name an anchor still open (one document in 20).
    cycles: bool,
}

impl Render<'_, '_> {
    fn pick(&mut self, one_in: u8) -> bool {
        self.u.ratio(1u8, one_in).unwrap_or(false)
    }

    /// `&aN ` on some nodes, or `*aN` instead of the node: mostly of an anchor whose node is
    /// complete, now and then of one still open (a cycle, which YAML refuses).
    fn anchor_or_alias(&mut self) -> Result<Option<usize>, String> {
        if !self.closed.is_empty() && self.pick(10) {
            let n = self.u.choose_index(self.closed.len()).unwrap_or(0);
            if self.closed[n] || self.cycles {
                return Err(format!("*a{n}"));
            }
        }
        if self.pick(8) {
            self.closed.push(false);
            return Ok(Some(self.closed.len() - 1));
        }
        Ok(None)
    }

    fn anchor_text(a: Option<usize>) -> String {
        a.map(|n| format!("&a{n} ")).unwrap_or_default()
    }

    fn flow(&mut self, node: &Node) -> String {
        let anchor = match self.anchor_or_alias() {
            Ok(a) => a,
            Err(alias) => return alias,
        };
        let body = self.flow_body(node);
        if let Some(n) = anchor {
            self.closed[n] = true;
        }
        format!("{}{body}", Self::anchor_text(anchor))
    }

    fn flow_body(&mut self, node: &Node) -> String {
        match node {
            Node::Scalar(s) => s.clone(),
            Node::Seq(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.flow(i)).collect();
                format!("[{}]", parts.join(", "))
            }
            Node::Map(entries) => {
                let mut parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", self.flow(v)))
                    .collect();
                if !self.closed.is_empty() && self.pick(16) {
                    let n = self.u.choose_index(self.closed.len()).unwrap_or(0);
                    if self.closed[n] || self.cycles {
                        parts.push(format!("<<: *a{n}"));
                    }
                }
                format!("{{{}}}", parts.join(", "))
            }
        }
    }

    /// `node` as the value after `prefix` (a `key:` or `-`) at `indent`.
    fn block(&mut self, prefix: &str, node: &Node, indent: usize) {
        let pad = " ".repeat(indent);
        let flow_here = matches!(node, Node::Scalar(_)) || self.pick(4);
        if flow_here {
            let v = self.flow(node);
            self.out += &format!("{pad}{prefix} {v}\n");
            return;
        }
        let anchor = match self.anchor_or_alias() {
            Ok(a) => a,
            Err(alias) => {
                self.out += &format!("{pad}{prefix} {alias}\n");
                return;
            }
        };
        self.out += &format!("{pad}{prefix} {}\n", Self::anchor_text(anchor).trim_end());
        match node {
            Node::Scalar(_) => unreachable!(),
            Node::Seq(items) if items.is_empty() => {
                self.out.truncate(self.out.len() - 1);
                self.out += " []\n";
            }
            Node::Map(entries) if entries.is_empty() => {
                self.out.truncate(self.out.len() - 1);
                self.out += " {}\n";
            }
            Node::Seq(items) => {
                for i in items {
                    self.block("-", i, indent + 2);
                }
            }
            Node::Map(entries) => {
                for (k, v) in entries {
                    self.block(&format!("{k}:"), v, indent + 2);
                }
            }
        }
        if let Some(n) = anchor {
            self.closed[n] = true;
        }
    }

    fn document(&mut self, root: &Node) {
        match root {
            Node::Map(entries) if !self.pick(10) => {
                for (k, v) in entries {
                    self.block(&format!("{k}:"), v, 0);
                }
            }
            other => {
                let v = self.flow(other);
                self.out += &v;
                self.out.push('\n');
            }
        }
    }
}

/// Text-level damage after rendering: what a structural model cannot write.
fn garble(u: &mut Unstructured<'_>, text: &mut String) {
    let Ok(n) = u.int_in_range(0u8..=3) else {
        return;
    };
    for _ in 0..n {
        let at = u.choose_index(text.len() + 1).unwrap_or(0);
        let at = (0..=at)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let what = [
            "\0",
            "\t",
            "\u{feff}",
            "---\n",
            "...\n",
            "\n  ",
            ": ",
            "- ",
            "*a0",
            "&a0 ",
            "<<: *a0\n",
            "!!binary ",
            "%YAML 1.1\n",
            "? ",
            "|\n",
            "#",
            "\r\n",
            "\u{85}",
            "\\",
        ];
        let s = what[u.choose_index(what.len()).unwrap_or(0)];
        text.insert_str(at, s);
    }
}

/// One structural case: a map text and `--set` overrides.
fn structural_case(seed: u64) -> (String, Vec<(String, String)>) {
    let bytes = bytes_of(seed, 2048 + (seed as usize % 4) * 1024);
    let mut u = Unstructured::new(&bytes);
    let model = MapModel::arbitrary(&mut u).unwrap_or(MapModel {
        target: None,
        modules: Field::Right(Vec::new()),
        processes: Field::Right(Vec::new()),
        extra: Extra(None),
    });
    let sets: Vec<SetModel> = if u.ratio(1u8, 3).unwrap_or(false) {
        Vec::arbitrary(&mut u).unwrap_or_default()
    } else {
        Vec::new()
    };
    let root = model.node();
    let mut r = Render {
        u: &mut u,
        out: String::new(),
        closed: Vec::new(),
        cycles: false,
    };
    r.cycles = r.pick(20);
    r.document(&root);
    let mut text = r.out;
    if u.ratio(1u8, 6).unwrap_or(false) {
        garble(&mut u, &mut text);
    }
    let sets = sets.iter().take(4).map(|s| s.pair(&root)).collect();
    (text, sets)
}

// ---------------------------------------------------------------------------------------------
// `--set` overrides.

#[derive(Debug, Arbitrary)]
struct SetModel {
    segments: Vec<Segment>,
    value: SetValue,
}

#[derive(Debug, Arbitrary)]
enum Segment {
    Word(u8),
    /// A key of the document at this depth, by position.
    Existing(u8),
    Index(u8),
    BadIndex(String),
    Any(String),
}

#[derive(Debug, Arbitrary)]
enum SetValue {
    Scalar(Scalar),
    Junk(Junk),
    Env(Box<EnvModel>),
    Text(String),
    Empty,
}

impl SetModel {
    /// KEY=VALUE, walking `root` where `Existing` segments name its keys.
    fn pair(&self, root: &Node) -> (String, String) {
        let mut key = String::new();
        let mut at = Some(root);
        let first = [Segment::Existing(0)];
        let segments = if self.segments.is_empty() {
            &first[..]
        } else {
            &self.segments[..]
        };
        for seg in segments.iter().take(7) {
            let mut next = None;
            let part = match seg {
                Segment::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_string(),
                Segment::Existing(i) => match at {
                    Some(Node::Map(m)) if !m.is_empty() => {
                        let (k, v) = &m[usize::from(*i) % m.len()];
                        next = Some(v);
                        k.trim_matches('"').to_string()
                    }
                    Some(Node::Seq(s)) if !s.is_empty() => {
                        let n = usize::from(*i) % s.len();
                        next = Some(&s[n]);
                        key += &format!("[{n}]");
                        at = next;
                        continue;
                    }
                    _ => "modules".to_string(),
                },
                Segment::Index(n) => {
                    key += &format!("[{}]", n % 5);
                    at = None;
                    continue;
                }
                Segment::BadIndex(s) => {
                    key += &format!("[{s}");
                    continue;
                }
                Segment::Any(s) => s.clone(),
            };
            if !key.is_empty() {
                key.push('.');
            }
            key += &part;
            at = next;
        }
        let value = match &self.value {
            SetValue::Scalar(s) => s.text(),
            SetValue::Junk(j) => Render {
                u: &mut Unstructured::new(&[]),
                out: String::new(),
                closed: Vec::new(),
                cycles: false,
            }
            .flow(&j.node()),
            SetValue::Env(e) => Render {
                u: &mut Unstructured::new(&[]),
                out: String::new(),
                closed: Vec::new(),
                cycles: false,
            }
            .flow(&e.node()),
            SetValue::Text(t) => t.clone(),
            SetValue::Empty => String::new(),
        };
        (key, value)
    }
}

// ---------------------------------------------------------------------------------------------
// Targets.

const FILE: &str = "fuzz dir/map.yaml";

#[test]
fn structured_maps_and_sets_never_panic_or_hang() {
    let dog = Watchdog::new("structured_maps");
    let file = Path::new(FILE);
    let (mut parsed, mut refused, mut with_sets) = (0usize, 0usize, 0usize);
    let t0 = Instant::now();
    let seeds = seeds(0x6d61_7073, 50_000);
    for &seed in &seeds {
        let (text, sets) = structural_case(seed);
        let show = || format!("{text}\n--- sets: {sets:?}");
        with_sets += usize::from(!sets.is_empty());
        let r = dog.run(seed, &show, || parse_map_str(&text, file, &sets));
        match r {
            Ok(map) => {
                parsed += 1;
                assert_eq!(map.file, file);
                // What later stages call on every parsed map must not panic either.
                dog.run(seed, &show, || {
                    for p in &map.processes {
                        let _ = p.helper_envs();
                        let _ = map.process_of(&p.name);
                    }
                    let _ = map.isolates_anything();
                    let _ = map.matches_target("/usr/bin/file");
                });
            }
            Err(e) => {
                refused += 1;
                check_error(seed, &e, file, &show);
            }
        }
    }
    eprintln!(
        "structured maps: {} cases ({with_sets} with --set) in {:?}: {parsed} parsed, {refused} refused",
        seeds.len(),
        t0.elapsed()
    );
    // The model must reach past the first schema check, or it tests nothing.
    if seeds.len() >= 1000 {
        assert!(parsed * 50 > seeds.len(), "only {parsed} maps parsed");
    }
}

/// The maps of `configs/` (and the SPEC example), each a seed corpus.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("../configs"))
        .expect("configs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.push(root.join("tests/data/spec_example.yaml"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect()
}

/// Byte-level damage: flips, truncations, line duplications, deletions and swaps.
fn mutate(u: &mut Unstructured<'_>, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + u.int_in_range(0u8..=5).unwrap_or(0);
    for _ in 0..rounds {
        let at = u.choose_index(out.len() + 1).unwrap_or(0);
        let lines: Vec<(usize, usize)> = line_spans(&out);
        match u.int_in_range(0u8..=8).unwrap_or(0) {
            0 if at < out.len() => out[at] ^= 1 << u.int_in_range(0u8..=7).unwrap_or(0),
            1 if at < out.len() => out[at] = u8::arbitrary(u).unwrap_or(0),
            2 => out.truncate(at),
            3 | 4 if !lines.is_empty() => {
                // Duplicate a line (repeats keys), maybe many times.
                let (s, e) = lines[u.choose_index(lines.len()).unwrap_or(0)];
                let times = if u.ratio(1u8, 8).unwrap_or(false) {
                    200
                } else {
                    1
                };
                let line = out[s..e].to_vec();
                for _ in 0..times {
                    out.splice(e..e, line.iter().copied());
                }
            }
            5 if !lines.is_empty() => {
                let (s, e) = lines[u.choose_index(lines.len()).unwrap_or(0)];
                out.drain(s..e);
            }
            6 if lines.len() > 1 => {
                let a = lines[u.choose_index(lines.len()).unwrap_or(0)];
                let line = out[a.0..a.1].to_vec();
                out.drain(a.0..a.1);
                let to = u.choose_index(out.len() + 1).unwrap_or(0);
                out.splice(to..to, line);
            }
            7 => {
                let what: &[&[u8]] = &[
                    b"\xff",
                    b"\xc3",
                    b"\0",
                    b"&a ",
                    b"*a",
                    b"<<: *a\n",
                    b"99999999999999999999999",
                    b"\t",
                    b"[",
                    b"{",
                    b"\"",
                    b"- ",
                    b": ",
                    b"!!int ",
                    b"\xef\xbb\xbf",
                ];
                let s = what[u.choose_index(what.len()).unwrap_or(0)];
                out.splice(at..at, s.iter().copied());
            }
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

/// Byte ranges of the lines of `b`, each with its newline.
fn line_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut s = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            spans.push((s, i + 1));
            s = i + 1;
        }
    }
    if s < b.len() {
        spans.push((s, b.len()));
    }
    spans
}

#[test]
fn mutated_config_maps_never_panic_or_hang() {
    let dog = Watchdog::new("mutated_configs");
    let corpus = corpus();
    let dir = std::env::temp_dir().join(format!("fracture-fuzz-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut parsed, mut refused, mut not_utf8) = (0usize, 0usize, 0usize);
    let t0 = Instant::now();
    let seeds = seeds(0x636f_6e66, 50_000);
    for &seed in &seeds {
        let bytes = bytes_of(seed, 256);
        let mut u = Unstructured::new(&bytes);
        let (name, original) = &corpus[seed as usize % corpus.len()];
        let data = mutate(&mut u, original);
        let show = || format!("(mutated {name})\n{}", String::from_utf8_lossy(&data));
        let r = match std::str::from_utf8(&data) {
            Ok(text) => {
                let file = Path::new(FILE);
                let r = dog.run(seed, &show, || parse_map_str(text, file, &[]));
                r.map_err(|e| (e, file.to_path_buf()))
            }
            // Not UTF-8: read from a file, as the shim and the launcher do.
            Err(_) => {
                not_utf8 += 1;
                let file = dir.join(name);
                std::fs::write(&file, &data).unwrap();
                let r = dog.run(seed, &show, || parse_map(&file));
                r.map_err(|e| (e, file))
            }
        };
        match r {
            Ok(_) => parsed += 1,
            Err((e, file)) => {
                refused += 1;
                check_error(seed, &e, &file, &show);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "mutated configs: {} cases over {} maps ({not_utf8} not UTF-8) in {:?}: {parsed} parsed, {refused} refused",
        seeds.len(),
        corpus.len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Bugs these targets found, pinned.

fn must_refuse(r: Result<module_map::ModuleMap, MapError>) -> MapError {
    match r {
        Ok(map) => panic!("expected an error, parsed {map:#?}"),
        Err(e) => e,
    }
}

/// `NAME: &a [K values]` then K aliases `*a`, as one text.
fn alias_square(k: usize) -> String {
    let mut t = String::from("{a: &a [");
    t += &vec!["xxxxxxxx"; k].join(", ");
    t += "], b: [";
    t += &vec!["*a"; k].join(", ");
    t += "]}";
    t
}

// An anchor of K values aliased K times built K² values before anything was checked: a 60 KB
// map took 2 s and about 1 GB, a few hundred KB exhausted memory (serde_yaml_ng only caps
// alias jumps, at 100 per event).
#[test]
fn aliases_of_a_large_anchor_are_refused_not_expanded_quadratically() {
    let dog = Watchdog::new("alias_square");
    let text = format!("target: x\nmodules:\n  m: {}\n", alias_square(3000));
    let e = must_refuse(dog.run(1, &|| "alias square".into(), || {
        parse_map_str(&text, Path::new(FILE), &[])
    }));
    assert_eq!(e.kind(), module_map::MapErrorKind::Invalid, "{e}");
    assert!(e.message().contains("expands to more than"), "{e}");
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.to_string().starts_with(FILE), "{e}");
    // The classic billion laughs was already stopped by serde_yaml_ng; it still names the file.
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        laughs += &format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        );
    }
    let e = must_refuse(dog.run(2, &|| laughs.clone(), || {
        parse_map_str(&laughs, Path::new(FILE), &[])
    }));
    assert!(e.to_string().starts_with(FILE), "{e}");
}

// A `--set` VALUE is YAML too, and went through the unbounded loader.
#[test]
fn alias_bomb_in_a_set_value_is_refused() {
    let dog = Watchdog::new("alias_set");
    let map = "modules: {m: {object: a}}\nprocesses: {p: {modules: [m]}}\n";
    let sets = vec![("processes.p.env".to_string(), alias_square(3000))];
    let e = must_refuse(dog.run(1, &|| "alias square in --set".into(), || {
        parse_map_str(map, Path::new(FILE), &sets)
    }));
    assert_eq!(e.key(), Some("--set processes.p.env"), "{e}");
    assert!(e.message().contains("expands to more than"), "{e}");
}

// A quoted key holding a newline (`"\n": x`) was quoted back into the message, so the
// one-line error became two lines.
#[test]
fn newline_in_a_key_keeps_the_error_on_one_line() {
    let e = must_refuse(parse_map_str("\"a\\nb\": []\n", Path::new(FILE), &[]));
    let shown = e.to_string();
    assert!(!shown.contains('\n'), "{shown:?}");
    assert!(shown.contains("a\\nb"), "{shown:?}");
}

// The sandbox/valgrind check built every merged environment (replicas x retry_envs): 256
// replicas and 20,000 aliased retry environments (a 260 KB map) took 20 s and 5.6 GB.
#[test]
fn retry_envs_times_replicas_do_not_blow_up_the_parser() {
    let dog = Watchdog::new("retry_envs");
    let head = "modules: {m: {object: a}}\nprocesses:\n  p:\n    modules: [m]\n    env: {vars: {A: \"1\"}}\n    replicate:\n      count: 256\n      envs:\n        - &e {}\n";
    let replicas = "        - *e\n".repeat(255);
    let retries = |n: usize, last: &str| {
        format!(
            "    on_crash:\n      retry_envs:\n{}        - {last}\n",
            "        - *e\n".repeat(n - 1)
        )
    };
    let text = format!("{head}{replicas}{}", retries(150, "*e"));
    let e = must_refuse(dog.run(1, &|| text.clone(), || {
        parse_map_str(&text, Path::new(FILE), &[])
    }));
    assert_eq!(e.key(), Some("processes.p.on_crash.retry_envs"), "{e}");
    assert!(e.message().contains("at most 100"), "{e}");
    // At the bound, every combination is still checked: the last retry env's valgrind
    // under the first replica's sandbox is found.
    let text = format!(
        "{}{replicas}{}",
        head.replace("- &e {}", "- &e {sandbox: {network: false}}"),
        retries(100, "{wrapper: [valgrind]}")
    );
    let e = must_refuse(dog.run(2, &|| text.clone(), || {
        parse_map_str(&text, Path::new(FILE), &[])
    }));
    assert_eq!(e.key(), Some("processes.p.on_crash.retry_envs[99]"), "{e}");
}

// Nothing bounded the text: a map of any size was handed to libyaml, which holds every event
// of a document in memory.
#[test]
fn map_larger_than_the_bound_is_refused() {
    let text = "# padding\n".repeat(module_map::MAX_MAP_BYTES / 10 + 1);
    let e = must_refuse(parse_map_str(&text, Path::new(FILE), &[]));
    assert!(e.message().contains("at most 4 MiB"), "{e}");
    assert!(e.to_string().starts_with(FILE), "{e}");
}

// `parse_map` read the whole file whatever it was: `/dev/zero` as the map was read until
// memory ran out.
#[test]
fn dev_zero_as_the_map_is_refused_not_read_forever() {
    let dog = Watchdog::new("dev_zero");
    let e = must_refuse(dog.run(1, &|| "/dev/zero".into(), || {
        parse_map(Path::new("/dev/zero"))
    }));
    assert_eq!(e.file(), Path::new("/dev/zero"));
    assert!(e.message().contains("larger than 4 MiB"), "{e}");
}

// A map that is not UTF-8 was refused as "stream did not contain valid UTF-8", with no line
// and a hint to check the path.
#[test]
fn map_file_that_is_not_utf8_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("fracture-fuzz-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("latin1.yaml");
    std::fs::write(&file, b"modules:\n  caf\xe9: {object: a}\n").unwrap();
    let e = must_refuse(parse_map(&file));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(e.file(), file);
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(e.message().contains("not UTF-8"), "{e}");
}
