//! The model of `fuzz_map.rs`'s structured target: a map built structurally, with wrong
//! types, random keys and odd scalars mixed in; `render.rs` turns it into YAML text and `--set`
//! overrides.

mod render;

use arbitrary::{Arbitrary, Unstructured};

pub(crate) use render::structural_case;

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
