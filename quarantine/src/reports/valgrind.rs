//! Valgrind's findings: the XML files (`--xml=yes`) that a valgrind-slices plan makes the
//! sampled replica write into the spool, read as reports of kind `valgrind` against module
//! and function.
//!
//! The plan gives valgrind `--xml-user-comment=<fracture process="P"><module name="M"
//! object="O"/>...</fracture>`, which valgrind copies into the file: the file says which
//! modules the replica held, so a finding is charged to the module whose object holds the
//! innermost frame of one of them (a leak's `malloc` frame is valgrind's, its caller the
//! module's). Findings in none of the modules (the helper's own start-up, libc) are not the
//! modules' and are counted, not stored. The XML is parsed with `roxmltree` (a complete
//! document only; a file valgrind is still writing waits, one whose writer died long ago is
//! cut at its last complete finding).

use super::record::Event;

/// What one valgrind XML file holds.
#[derive(Debug, Default)]
pub struct Output {
    /// Valgrind finished writing it.
    pub complete: bool,
    pub pid: i64,
    /// The program valgrind ran (the helper is the program's executable).
    pub exe: String,
    pub process: String,
    /// (unique id, finding) of each finding in one of the modules.
    pub findings: Vec<(i64, Event)>,
    /// Findings outside the modules.
    pub elsewhere: usize,
}

/// The document, cut at its last complete `</error>` and closed when `stale` (its writer is
/// long gone); None when incomplete and not stale.
fn document(text: &str, stale: bool) -> Option<(String, bool)> {
    if text.trim_end().ends_with("</valgrindoutput>") {
        return Some((text.to_string(), true));
    }
    if !stale {
        return None;
    }
    let cut = text
        .rfind("</error>")
        .map(|i| i + "</error>".len())
        .or_else(|| text.find("</args>").map(|i| i + "</args>".len()))?;
    Some((format!("{}\n</valgrindoutput>\n", &text[..cut]), true))
}

fn child_text<'a>(n: roxmltree::Node<'a, '_>, tag: &str) -> &'a str {
    n.children()
        .find(|c| c.has_tag_name(tag))
        .and_then(|c| c.text())
        .unwrap_or("")
        .trim()
}

/// True when the valgrind that writes `data` is gone: the `<pid>` the file names has no
/// `/proc` entry (a file that names none is taken as gone).
pub fn writer_gone(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&data[..data.len().min(4096)]);
    let pid = text
        .split_once("<pid>")
        .and_then(|(_, r)| r.split_once("</pid>"))
        .and_then(|(p, _)| p.trim().parse::<u32>().ok());
    match pid {
        Some(p) if p > 0 => !std::path::Path::new(&format!("/proc/{p}")).exists(),
        _ => true,
    }
}

/// Most modules a file's comment may name, and most frames of one finding read (valgrind's
/// own limit is 500): a hostile file cannot make charging findings quadratic.
const MAX_MODULES: usize = 1024;
const MAX_FRAMES: usize = 500;

/// Modules by the objects they name: a frame's object is a module's when it is the same
/// path, or when its file name starts with the module object's file name at a `.`
/// (libmagic.so.1.0.0 is what libmagic.so.1 names); each such prefix is looked up once.
struct Owners {
    by_path: std::collections::HashMap<String, String>,
    by_name: std::collections::HashMap<String, String>,
}

impl Owners {
    fn new(modules: &[(String, String)]) -> Owners {
        let mut o = Owners {
            by_path: Default::default(),
            by_name: Default::default(),
        };
        for (m, obj) in modules.iter().filter(|(_, obj)| !obj.is_empty()) {
            o.by_path.entry(obj.clone()).or_insert_with(|| m.clone());
            let base = obj.rsplit('/').next().unwrap_or(obj);
            if !base.is_empty() {
                o.by_name
                    .entry(base.to_string())
                    .or_insert_with(|| m.clone());
            }
        }
        o
    }

    fn of(&self, obj: &str) -> Option<&String> {
        if let Some(m) = self.by_path.get(obj) {
            return Some(m);
        }
        let base = obj.rsplit('/').next().unwrap_or(obj);
        let mut end = base.len();
        loop {
            if let Some(m) = self.by_name.get(&base[..end]) {
                return Some(m);
            }
            end = base[..end].rfind('.')?;
        }
    }
}

/// Parses one file. `time`: when it was written (its mtime); `deployment`: this host's.
pub fn parse(text: &str, stale: bool, time: f64, deployment: &str) -> Option<Output> {
    let (doc, complete) = document(text, stale)?;
    let xml = roxmltree::Document::parse(&doc).ok()?;
    let root = xml.root_element();
    if !root.has_tag_name("valgrindoutput") {
        return None;
    }
    let mut out = Output {
        complete,
        pid: child_text(root, "pid").parse().unwrap_or(0),
        ..Output::default()
    };
    let mut modules: Vec<(String, String)> = Vec::new();
    for n in root.children() {
        if n.has_tag_name("usercomment") {
            for f in n.children().filter(|c| c.has_tag_name("fracture")) {
                out.process = f.attribute("process").unwrap_or("").to_string();
                for m in f
                    .children()
                    .filter(|c| c.has_tag_name("module"))
                    .take(MAX_MODULES)
                {
                    if let (Some(name), Some(obj)) = (m.attribute("name"), m.attribute("object")) {
                        modules.push((name.to_string(), obj.to_string()));
                    }
                }
            }
        }
        if n.has_tag_name("args") {
            if let Some(a) = n.children().find(|c| c.has_tag_name("argv")) {
                out.exe = child_text(a, "exe").to_string();
            }
        }
    }
    let owners_map = Owners::new(&modules);
    let build_id = crate::symbolize::build_id(std::path::Path::new(&out.exe)).unwrap_or_default();
    for e in root.children().filter(|c| c.has_tag_name("error")) {
        let unique =
            i64::from_str_radix(child_text(e, "unique").trim_start_matches("0x"), 16).unwrap_or(-1);
        let kind = child_text(e, "kind");
        let what = match child_text(e, "what") {
            "" => e
                .children()
                .find(|c| c.has_tag_name("xwhat"))
                .map(|x| child_text(x, "text"))
                .unwrap_or(""),
            w => w,
        };
        let Some(stack) = e.children().find(|c| c.has_tag_name("stack")) else {
            out.elsewhere += 1;
            continue;
        };
        let frames: Vec<roxmltree::Node> = stack
            .children()
            .filter(|c| c.has_tag_name("frame"))
            .take(MAX_FRAMES)
            .collect();
        // Each frame's module, looked up once ("main": none of the comment's modules).
        let owners: Vec<Option<&String>> = frames
            .iter()
            .map(|f| owners_map.of(child_text(*f, "obj")))
            .collect();
        let Some((module, function)) = frames
            .iter()
            .zip(&owners)
            .find_map(|(f, o)| o.map(|m| (m.clone(), child_text(*f, "fn").to_string())))
        else {
            out.elsewhere += 1;
            continue;
        };
        let name = |o: &Option<&String>| o.map_or("main", |m| m.as_str()).to_string();
        let json: Vec<serde_json::Value> = frames
            .iter()
            .zip(&owners)
            .map(|(f, o)| {
                serde_json::json!({
                    "obj": child_text(*f, "obj"),
                    "symbol": child_text(*f, "fn"),
                    "file": child_text(*f, "file"),
                    "line": child_text(*f, "line"),
                    "module": name(o),
                })
            })
            .collect();
        let backtrace: Vec<String> = frames
            .iter()
            .zip(&owners)
            .map(|(f, o)| {
                let (file, line) = (child_text(*f, "file"), child_text(*f, "line"));
                let at = if file.is_empty() {
                    String::new()
                } else {
                    format!(" ({file}:{line})")
                };
                format!("{}:{}{at}", name(o), child_text(*f, "fn"))
            })
            .collect();
        out.findings.push((
            unique,
            Event {
                time,
                program: super::record::clean(&out.exe),
                build_id: build_id.clone(),
                deployment: deployment.to_string(),
                pid: out.pid,
                process: super::record::clean(&out.process),
                module: super::record::clean(&module),
                function: super::record::clean(&function),
                signal: 0,
                fault_addr: String::new(),
                outcome: "valgrind".into(),
                env: "valgrind".into(),
                detail: super::record::clean(&format!("{kind}: {what}")),
                frames: serde_json::Value::Array(json).to_string(),
                backtrace: super::record::clean(&backtrace.join(" <- ")),
            },
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<valgrindoutput>
<pid>77</pid>
<usercomment><fracture process="vg_1"><module name="p05" object="libchat_p05.so"/></fracture></usercomment>
<args><vargv><exe>/usr/bin/valgrind.bin</exe></vargv><argv><exe>/bin/true</exe></argv></args>
<error><unique>0x0</unique><kind>UninitCondition</kind>
<what>Conditional jump or move depends on uninitialised value(s)</what>
<stack><frame><obj>/lib/x86_64-linux-gnu/libc.so.6</obj><fn>strlen</fn></frame></stack></error>
<error><unique>0x1a</unique><kind>Leak_DefinitelyLost</kind>
<xwhat><text>256 bytes in 1 blocks are definitely lost</text></xwhat>
<stack><frame><obj>/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so</obj><fn>malloc</fn></frame>
<frame><obj>/opt/x/libchat_p05.so</obj><fn>p05_parse</fn><file>plugin.c</file><line>28</line></frame></stack></error>
</valgrindoutput>
"#;

    #[test]
    fn findings_are_charged_to_the_module_whose_object_holds_a_frame() {
        let o = parse(XML, false, 5.0, "h").unwrap();
        assert!(o.complete);
        assert_eq!(
            (o.pid, o.exe.as_str(), o.process.as_str()),
            (77, "/bin/true", "vg_1")
        );
        assert_eq!(o.elsewhere, 1, "the libc finding is no module's");
        assert_eq!(o.findings.len(), 1);
        let (id, e) = &o.findings[0];
        assert_eq!(*id, 0x1a);
        assert_eq!(
            (e.module.as_str(), e.function.as_str()),
            ("p05", "p05_parse")
        );
        assert_eq!(e.outcome, "valgrind");
        assert_eq!(
            e.detail,
            "Leak_DefinitelyLost: 256 bytes in 1 blocks are definitely lost"
        );
        assert!(
            e.backtrace.contains("p05:p05_parse (plugin.c:28)"),
            "{}",
            e.backtrace
        );
    }

    #[test]
    fn a_file_still_being_written_waits_and_a_stale_one_is_cut_at_its_last_finding() {
        let cut = &XML[..XML.find("<error><unique>0x1a").unwrap() + 30];
        assert!(parse(cut, false, 0.0, "h").is_none());
        let o = parse(cut, true, 0.0, "h").unwrap();
        assert_eq!((o.findings.len(), o.elsewhere), (0, 1));
        for bad in [
            "",
            "<valgrindoutput>",
            "not xml </valgrindoutput>",
            "<a></a></valgrindoutput>",
        ] {
            assert!(
                parse(bad, true, 0.0, "h").is_none_or(|o| o.findings.is_empty()),
                "{bad}"
            );
        }
        let o = Owners::new(&[
            ("magic".into(), "libmagic.so.1".into()),
            ("empty".into(), "".into()),
            ("path".into(), "/opt/x/libp.so".into()),
        ]);
        let of = |x: &str| o.of(x).map(String::as_str);
        assert_eq!(of("/usr/lib/libmagic.so.1.0.0"), Some("magic"));
        assert_eq!(of("/usr/lib/libmagic.so"), None);
        assert_eq!(of("/usr/lib/libfoo.so"), None);
        assert_eq!(of("/opt/x/libp.so"), Some("path"));
        assert_eq!(of(""), None);
    }
}
