//! `env.sandbox` (SPEC.md, "Sandbox") as users write it: the SPEC example, each mistake, and
//! how a sandbox merges with replica and retry environments.

use std::path::Path;

use module_map::{parse_map_str, FileRules, MapError, MapErrorKind, ModuleMap, Sandbox};

const MAP: &str = "\
modules:
  magic:
    object: libmagic.so.1
    functions:
      magic_open: {ret: handle}
processes:
  parser:
    modules: [magic]
    env:
      sandbox:
        files: {read: [/usr/share/misc, /usr/lib/file], write: []}
        network: false
        exec: false
";

fn parse(text: &str) -> Result<ModuleMap, MapError> {
    parse_map_str(text, Path::new("/maps/map.yaml"), &[])
}

fn parse_err(text: &str) -> MapError {
    match parse(text) {
        Ok(map) => panic!("expected an error, parsed {map:#?}"),
        Err(e) => e,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in text"))
        + 1
}

fn strings(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn spec_sandbox_parses() {
    let map = parse(MAP).unwrap();
    let sb = map.processes[0].env.sandbox.clone().unwrap();
    assert_eq!(
        sb,
        Sandbox {
            files: Some(FileRules {
                read: strings(&["/usr/share/misc", "/usr/lib/file"]),
                write: strings(&[]),
            }),
            network: Some(false),
            exec: Some(false),
        }
    );
    assert!(!sb.network_allowed());
    assert!(!sb.exec_allowed());
    // A sandbox changes nothing about how the helper starts.
    assert!(!map.processes[0].env.exec_mode());
}

#[test]
fn sandbox_fields_left_out_are_not_restricted() {
    let text = MAP.replace(
        "        files: {read: [/usr/share/misc, /usr/lib/file], write: []}\n        network: false\n        exec: false\n",
        "        {}\n",
    );
    let text = text.replace("sandbox:\n        {}", "sandbox: {}");
    let map = parse(&text).unwrap();
    let sb = map.processes[0].env.sandbox.clone().unwrap();
    assert_eq!(sb, Sandbox::default());
    assert!(sb.network_allowed() && sb.exec_allowed() && sb.files.is_none());
    // `sandbox:` with nothing after it is no sandbox, like every other null in the map.
    let text = MAP.replace(
        "      sandbox:\n        files: {read: [/usr/share/misc, /usr/lib/file], write: []}\n        network: false\n        exec: false\n",
        "      sandbox:\n",
    );
    assert_eq!(parse(&text).unwrap().processes[0].env.sandbox, None);
}

#[test]
fn relative_sandbox_paths_are_beside_the_map() {
    let text = MAP.replace("write: []", "write: [out, /tmp/x]");
    let map = parse(&text).unwrap();
    let files = map.processes[0].env.sandbox.clone().unwrap().files.unwrap();
    assert_eq!(files.write(), ["/maps/out", "/tmp/x"]);
}

#[test]
fn sandbox_errors_name_line_and_key() {
    for (from, to, key, why) in [
        (
            "network: false",
            "network: nope",
            "processes.parser.env.sandbox.network",
            "true or false",
        ),
        (
            "exec: false",
            "exec: 0",
            "processes.parser.env.sandbox.exec",
            "true or false",
        ),
        (
            "exec: false",
            "ptrace: true",
            "processes.parser.env.sandbox.ptrace",
            "unknown key `ptrace`; expected one of: files, network, exec",
        ),
        (
            "write: []}",
            "write: [], exec: [/bin]}",
            "processes.parser.env.sandbox.files.exec",
            "unknown key `exec`; expected one of: read, write",
        ),
        (
            "write: []}",
            "write: /tmp}",
            "processes.parser.env.sandbox.files.write",
            "expected a list of strings",
        ),
        (
            "write: []}",
            "write: [\"\"]}",
            "processes.parser.env.sandbox.files.write[0]",
            "empty path",
        ),
        (
            "write: []}",
            "write: [$HOME/out]}",
            "processes.parser.env.sandbox.files.write[0]",
            "not expanded",
        ),
        (
            "files: {read: [/usr/share/misc, /usr/lib/file], write: []}",
            "files: [/usr/share/misc]",
            "processes.parser.env.sandbox.files",
            "expected file rules as a mapping with keys read, write",
        ),
    ] {
        let text = MAP.replace(from, to);
        assert_ne!(text, MAP, "{from}");
        let e = parse_err(&text);
        assert_eq!(e.kind(), MapErrorKind::Schema, "{e}");
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.message().contains(why), "{e}");
        let needle = key.rsplit('.').next().unwrap();
        let needle = needle.split('[').next().unwrap();
        let expect = line_of(&text, &format!("{needle}:"));
        assert_eq!(e.line(), Some(expect), "{e}");
        assert!(e.to_string().starts_with("/maps/map.yaml:"), "{e}");
    }
    let e = parse_err(&MAP.replace("      sandbox:\n", "      sandbox: strict\n        x:\n"));
    assert_eq!(e.kind(), MapErrorKind::Syntax, "{e}");
    let e = parse_err(&MAP.replace(
        "      sandbox:\n        files: {read: [/usr/share/misc, /usr/lib/file], write: []}\n        network: false\n        exec: false\n",
        "      sandbox: strict\n",
    ));
    assert_eq!(e.key(), Some("processes.parser.env.sandbox"), "{e}");
    assert!(
        e.message()
            .contains("expected sandbox settings as a mapping"),
        "{e}"
    );
}

#[test]
fn sandbox_merges_with_retry_and_replica_envs() {
    let text = format!(
        "{MAP}    on_crash:\n      retry_envs:\n        - {{sandbox: {{network: true, files: {{write: [/tmp]}}}}}}\n        - {{vars: {{A: \"1\"}}}}\n    replicate:\n      count: 2\n      envs:\n        - {{}}\n        - {{sandbox: {{exec: true}}}}\n"
    );
    let map = parse(&text).unwrap();
    let p = &map.processes[0];
    let retry = p.env.merged(&p.on_crash.retry_envs[0]);
    let sb = retry.sandbox.unwrap();
    assert_eq!(sb.network, Some(true));
    assert_eq!(sb.exec, Some(false));
    let files = sb.files.unwrap();
    assert_eq!(files.read(), ["/usr/share/misc", "/usr/lib/file"]);
    assert_eq!(files.write(), ["/tmp"]);
    // An environment without `sandbox` keeps the process's.
    let plain = p.env.merged(&p.on_crash.retry_envs[1]);
    assert_eq!(plain.sandbox, p.env.sandbox);
    let replica = p.env.merged(&p.replicate.as_ref().unwrap().envs[1]);
    let sb = replica.sandbox.unwrap();
    assert_eq!(sb.exec, Some(true));
    assert_eq!(sb.network, Some(false));
    // A sandbox given only in a retry environment applies to that retry.
    let none = module_map::Env::default();
    let only = none.merged(&p.on_crash.retry_envs[0]).sandbox.unwrap();
    assert_eq!(only.files.unwrap().read, None);
}

#[test]
fn sandbox_can_be_set_from_the_command_line() {
    let sets = vec![(
        "processes.parser.env.sandbox.network".to_string(),
        "true".to_string(),
    )];
    let map = parse_map_str(MAP, Path::new("m.yaml"), &sets).unwrap();
    assert_eq!(
        map.processes[0].env.sandbox.as_ref().unwrap().network,
        Some(true)
    );
    let sets = vec![(
        "processes.parser.env.sandbox.netwrk".to_string(),
        "true".to_string(),
    )];
    let e = parse_map_str(MAP, Path::new("m.yaml"), &sets).unwrap_err();
    assert!(
        e.to_string()
            .contains("--set processes.parser.env.sandbox.netwrk"),
        "{e}"
    );
    assert!(e.message().contains("unknown key `netwrk`"), "{e}");
}

#[test]
fn sandbox_under_valgrind_is_refused() {
    let text = MAP.replace(
        "        exec: false\n",
        "        exec: false\n      wrapper: [valgrind, -q]\n",
    );
    let e = parse_err(&text);
    assert_eq!(e.kind(), MapErrorKind::Invalid, "{e}");
    assert_eq!(e.key(), Some("processes.parser.env"), "{e}");
    assert_eq!(e.line(), Some(line_of(&text, "    env:")), "{e}");
    assert!(
        e.message().contains("valgrind does not pass Landlock"),
        "{e}"
    );
    // The same through a retry environment: the key names the retry.
    let text = format!("{MAP}    on_crash:\n      retry_envs:\n        - {{vars: {{A: \"1\"}}}}\n        - {{wrapper: [/usr/bin/valgrind]}}\n");
    let e = parse_err(&text);
    assert_eq!(
        e.key(),
        Some("processes.parser.on_crash.retry_envs[1]"),
        "{e}"
    );
    // Another wrapper is left to the helper, which refuses to serve if it cannot apply it.
    let text = MAP.replace(
        "        exec: false\n",
        "        exec: false\n      wrapper: [nice]\n",
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn helper_envs_lists_every_combination() {
    let text = format!(
        "{MAP}    on_crash:\n      retry_envs: [{{vars: {{A: \"1\"}}}}]\n    sample:\n      count: 2\n      envs: [{{}}, {{sandbox: {{network: true}}}}]\n"
    );
    let map = parse(&text).unwrap();
    let envs = map.processes[0].helper_envs();
    let keys: Vec<&str> = envs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "processes.parser.on_crash.retry_envs[0]",
            "processes.parser.env",
            "processes.parser.on_crash.retry_envs[0]",
            "processes.parser.sample.envs[0]",
            "processes.parser.on_crash.retry_envs[0]",
            "processes.parser.sample.envs[1]",
        ]
    );
    assert_eq!(envs[5].1.sandbox.as_ref().unwrap().network, Some(true));
    assert_eq!(envs[4].1.vars.get("A").map(String::as_str), Some("1"));
}
