//! Rendering a model as YAML text, one structural case, and `--set` overrides.

use arbitrary::{Arbitrary, Unstructured};

use super::{EnvModel, Extra, Field, Junk, MapModel, Node, Scalar, ToNode, WORDS};
use crate::bytes_of;

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
pub(crate) fn structural_case(seed: u64) -> (String, Vec<(String, String)>) {
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
