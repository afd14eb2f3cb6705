//! The shim's layering, checked: every `crate::LAYER::MODULE` path in a file names a module of
//! its own layer or of a layer below, and modules form no import circle. (A test, reading the
//! sources; the README's "The shim's layers" draws the same picture.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Rank of each layer: a module may name modules of its own rank or lower.
/// The platform (0) and the transport (1) are crates of their own (shim/platform,
/// shim/transport): Cargo keeps them from naming anything above, so they are not read here.
const LAYERS: &[(&str, u32)] = &[
    ("observe", 2),
    ("plan", 3),
    ("call", 4),
    ("supervise", 5),
    ("policy", 6),
];

/// Known exception: the crash reporter names functions through the plan (README "Left").
const EXCEPTIONS: &[(&str, &str)] = &[("observe::reports", "plan::runtime")];

fn rank(layer: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(l, _)| *l == layer)
        .map_or(u32::MAX, |(_, r)| *r)
}

fn strip_comments(s: &str) -> String {
    s.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of every `.rs` file under `dir`, at any depth.
fn texts_under(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            texts_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&strip_comments(&std::fs::read_to_string(&p).unwrap()));
            out.push('\n');
        }
    }
}

/// (module path, text) of every layered module: a file `LAYER/NAME.rs`, plus everything in a
/// folder `LAYER/NAME/` (a module split in files is one module here).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (layer, _) in LAYERS {
        let dir = src.join(layer);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                texts_under(&p, out.entry(format!("{layer}::{name}")).or_default());
            } else if p.extension().is_some_and(|x| x == "rs") && name != "mod" {
                let text = std::fs::read_to_string(&p).unwrap();
                out.entry(format!("{layer}::{name}"))
                    .or_default()
                    .push_str(&strip_comments(&text));
            }
        }
    }
    out
}

/// Module-to-module edges from `crate::a::b` paths.
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in mods {
        let set = e.entry(m.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts = path.split("::");
            if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
                let t = format!("{a}::{b}");
                if mods.contains_key(&t) && &t != m {
                    set.insert(t);
                }
            }
        }
    }
    e
}

fn has_cycle(e: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        e: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> bool {
        match state.get(n) {
            Some(1) => {
                stack.push(n.to_string());
                return true;
            }
            Some(2) => return false,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in e.get(n).into_iter().flatten() {
            if visit(m, e, state, stack) {
                return true;
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        false
    }
    let mut state = BTreeMap::new();
    for n in e.keys() {
        let mut stack = Vec::new();
        if visit(n, e, &mut state, &mut stack) {
            return Some(stack);
        }
    }
    None
}

#[test]
fn shim_layers_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(
        mods.len() > 15,
        "layer folders not found under {}",
        src.display()
    );
    // A module split into a folder is seen whole (observe/reports/ holds the crash handler).
    assert!(
        mods.get("observe::reports")
            .is_some_and(|t| t.contains("fn on_program_fault")),
        "observe/reports/ not read"
    );
    let e = edges(&mods);
    let mut upward = Vec::new();
    for (m, targets) in &e {
        let from = rank(m.split("::").next().unwrap());
        for t in targets {
            let to = rank(t.split("::").next().unwrap());
            if to > from && !EXCEPTIONS.contains(&(m.as_str(), t.as_str())) {
                upward.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports: {upward:#?}");
    assert_eq!(has_cycle(&e), None, "an import circle");
}

#[test]
fn the_layer_check_sees_an_upward_edge_and_a_circle() {
    let mut mods = BTreeMap::new();
    mods.insert("call::a".to_string(), "use crate::policy::b;".to_string());
    mods.insert("policy::b".to_string(), "crate::call::a::f()".to_string());
    let e = edges(&mods);
    assert!(e["call::a"].contains("policy::b"));
    assert!(has_cycle(&e).is_some());
}

/// Files above the platform that may still call libc themselves: the Rx allocator's
/// wrappers and the probe of the allocator's heap (they are the allocator's own calls,
/// `malloc`/`free`/`mallopt`/`sbrk`, not system calls to wrap), and a fuzz test's harness.
const LIBC_CALLERS: &[&str] = &[
    "supervise/rxmalloc.rs",
    "supervise/address.rs",
    "call/fuzz_reply.rs",
    // This check's own examples.
    "layers.rs",
];

/// The `.rs` files under `dir`, at any depth, as paths relative to `root`.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, strip_comments(&std::fs::read_to_string(&p).unwrap())));
        }
    }
}

/// The first `libc::name(` call in `text`, if any (types and constants are not calls).
fn libc_call(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(i) = rest.find("libc::") {
        let after = &rest[i + 6..];
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..n];
        if after[n..].starts_with('(') && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Some(name);
        }
        rest = &after[n..];
    }
    None
}

#[test]
fn libc_is_called_in_the_platform_layer_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    files_under(&root.join("src"), &root.join("src"), &mut files);
    files_under(
        &root.join("transport/src"),
        &root.join("transport/src"),
        &mut files,
    );
    assert!(files.len() > 30, "sources not found");
    let calls: Vec<String> = files
        .iter()
        .filter(|(f, _)| !LIBC_CALLERS.contains(&f.as_str()))
        .filter_map(|(f, t)| libc_call(t).map(|c| format!("{f}: libc::{c}")))
        .collect();
    assert!(
        calls.is_empty(),
        "libc called outside shim/platform (wrap it there): {calls:#?}"
    );
    assert_eq!(libc_call("let x: libc::c_int = libc::SIGSEGV;"), None);
    assert_eq!(libc_call("unsafe { libc::fork() }"), Some("fork"));
}
