//! The module map as users write it: the SPEC.md example, each error a user can make, and the
//! `--set` overrides. Errors are checked for file, line, key and a message that says what to do.

use std::path::Path;

use module_map::{
    parse_map, parse_map_str, ArgSpec, GiveUp, MapError, MapErrorKind, ModuleMap, OnMismatch,
    Restore, RetSpec, Size, SizeBase,
};

const SPEC_EXAMPLE: &str = include_str!("data/spec_example.yaml");

fn parse(text: &str) -> Result<ModuleMap, MapError> {
    parse_map_str(text, Path::new("map.yaml"), &[])
}

fn parse_err(text: &str) -> MapError {
    match parse(text) {
        Ok(map) => panic!("expected an error, parsed {map:#?}"),
        Err(e) => e,
    }
}

fn with_sets(text: &str, sets: &[(&str, &str)]) -> Result<ModuleMap, MapError> {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_map_str(text, Path::new("map.yaml"), &sets)
}

/// Line (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in text"))
        + 1
}

#[test]
fn spec_example_parses_with_expected_values() {
    let map = parse(SPEC_EXAMPLE).unwrap();
    assert_eq!(map.file, Path::new("map.yaml"));
    assert_eq!(map.target.as_deref(), Some("/usr/bin/file"));
    assert!(map.matches_target("/usr/bin/file"));
    assert!(!map.matches_target("/usr/bin/python3"));

    assert_eq!(map.modules.len(), 1);
    let m = &map.modules[0];
    assert_eq!(m.name, "magic");
    assert_eq!(m.object, "libmagic.so.1");
    assert_eq!(m.line, line_of(SPEC_EXAMPLE, "  magic:"));
    assert_eq!(m.capabilities, ["restartable", "replicable", "samplable"]);
    let names: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "magic_open",
            "magic_load",
            "magic_file",
            "magic_buffer",
            "magic_error",
            "magic_close"
        ]
    );
    let f = |name: &str| m.functions.iter().find(|f| f.name == name).unwrap();
    assert_eq!(f("magic_open").args, []);
    assert_eq!(f("magic_open").ret, RetSpec::Handle);
    assert_eq!(f("magic_load").args, [ArgSpec::Handle, ArgSpec::Str]);
    assert_eq!(f("magic_load").ret, RetSpec::Val);
    assert_eq!(f("magic_file").ret, RetSpec::Str);
    assert_eq!(
        f("magic_buffer").args,
        [
            ArgSpec::Handle,
            ArgSpec::In(Size {
                base: SizeBase::Arg(2),
                mul: 1
            }),
            ArgSpec::Val
        ]
    );
    assert!(!f("magic_buffer").pure);
    assert_eq!(
        f("magic_buffer").line,
        line_of(SPEC_EXAMPLE, "magic_buffer:")
    );
    assert_eq!(f("magic_close").line, line_of(SPEC_EXAMPLE, "magic_close:"));

    assert_eq!(map.processes.len(), 1);
    let p = &map.processes[0];
    assert_eq!(p.name, "parser");
    assert_eq!(p.line, line_of(SPEC_EXAMPLE, "parser:"));
    assert_eq!(p.modules, ["magic"]);
    assert_eq!(
        map.process_of("magic").map(|p| p.name.as_str()),
        Some("parser")
    );
    assert!(map.isolates_anything());
    assert_eq!(
        p.env.vars.get("MALLOC_CHECK_").map(String::as_str),
        Some("3")
    );
    assert_eq!(p.env.rlimits.get("as"), Some(&(1 << 30)));
    assert_eq!(p.env.rlimits.get("cpu"), Some(&60));
    assert_eq!(p.env.malloc.perturb, Some(165));
    assert_eq!(p.env.malloc.pad, Some(64));
    assert_eq!(p.env.malloc.zero_fill, Some(true));
    assert_eq!(p.env.malloc.delay_free, Some(256));
    assert!(p.env.wrapper.is_empty() && p.env.preload.is_empty());
    assert_eq!(p.env.library_path, "");
    assert!(!p.env.exec_mode());
    assert_eq!(p.timeout_ms, Some(10000));
    assert!(p.on_crash.restart);
    assert_eq!(p.on_crash.restore, Restore::Replay);
    assert_eq!(p.on_crash.max_retries, 3);
    assert_eq!(p.on_crash.retry_envs.len(), 2);
    assert_eq!(
        p.on_crash.retry_envs[0]
            .vars
            .get("MALLOC_PERTURB_")
            .map(String::as_str),
        Some("165")
    );
    assert_eq!(p.on_crash.retry_envs[1].wrapper, ["valgrind", "-q"]);
    assert!(p.on_crash.retry_envs[1].exec_mode());
    assert_eq!(p.on_crash.give_up, GiveUp::Crash);
    let r = p.replicate.as_ref().unwrap();
    assert_eq!(r.count, 3);
    assert_eq!(r.on_mismatch, OnMismatch::Majority);
    assert!(r.envs.is_empty());
    assert!(p.sample.is_none());
}

#[test]
fn parse_map_reads_the_file() {
    let dir = std::env::temp_dir().join(format!("module-map-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spec.yaml");
    std::fs::write(&path, SPEC_EXAMPLE).unwrap();
    let map = parse_map(&path).unwrap();
    assert_eq!(map.file, path);
    assert_eq!(map.modules[0].functions.len(), 6);

    let missing = dir.join("missing.yaml");
    let e = parse_map(&missing).unwrap_err();
    assert_eq!(e.kind(), MapErrorKind::Io);
    assert_eq!(e.file(), missing);
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defaults_and_empty_sections() {
    let map = parse("").unwrap();
    assert_eq!(map.target, None);
    assert!(map.modules.is_empty() && map.processes.is_empty());
    assert!(!map.isolates_anything());
    assert!(map.matches_target("/anything"));

    let map = parse("modules: {}\nprocesses:\n").unwrap();
    assert!(map.modules.is_empty());

    let text = "\
modules:
  z:
    object: libz.so.1
    functions:
      inflate:
      deflate: {}
      inflateCopy@ZLIB_1.2.0: {effect: pure, ret: void}
processes:
  p:
    modules: [z]
";
    let map = parse(text).unwrap();
    let m = &map.modules[0];
    assert!(m.capabilities.is_empty());
    for f in &m.functions[..2] {
        assert!(f.args.is_empty());
        assert_eq!(f.ret, RetSpec::Val);
        assert!(!f.pure);
    }
    let copy = &m.functions[2];
    assert_eq!(copy.symbol(), "inflateCopy");
    assert_eq!(copy.version(), Some("ZLIB_1.2.0"));
    assert!(copy.pure);
    assert_eq!(copy.ret, RetSpec::Void);
    let p = &map.processes[0];
    assert_eq!(p.timeout_ms, None);
    assert_eq!(p.on_crash, Default::default());
    assert!(p.replicate.is_none() && p.sample.is_none());
}

#[test]
fn each_size_form_in_a_map() {
    let text = r#"
modules:
  m:
    object: main
    functions:
      lit:   {args: ["in:64", "out:4KiB", "inout:1MiB"]}
      arg:   {args: [val, "out:arg0", "in:arg0*8"]}
      deref: {args: ["inout:*arg1*4", "inout:8", "in:*arg3", val, f64]}
      cb:    {args: [cb, handle]}
"#;
    let map = parse(text).unwrap();
    let f = &map.modules[0].functions;
    let s = |base, mul| Size { base, mul };
    assert_eq!(
        f[0].args,
        [
            ArgSpec::In(s(SizeBase::Literal(64), 1)),
            ArgSpec::Out(s(SizeBase::Literal(4096), 1)),
            ArgSpec::InOut(s(SizeBase::Literal(1 << 20), 1)),
        ]
    );
    assert_eq!(
        f[1].args,
        [
            ArgSpec::Val,
            ArgSpec::Out(s(SizeBase::Arg(0), 1)),
            ArgSpec::In(s(SizeBase::Arg(0), 8)),
        ]
    );
    assert_eq!(
        f[2].args,
        [
            ArgSpec::InOut(s(SizeBase::Deref(1), 4)),
            ArgSpec::InOut(s(SizeBase::Literal(8), 1)),
            ArgSpec::In(s(SizeBase::Deref(3), 1)),
            ArgSpec::Val,
            ArgSpec::Float,
        ]
    );
    assert_eq!(f[3].args, [ArgSpec::Cb(None), ArgSpec::Handle]);
}

#[test]
fn bad_yaml_reports_the_line() {
    let text = "modules:\n  m:\n    object: libm.so\n    functions: {f: [}\n";
    let e = parse_err(text);
    assert_eq!(e.kind(), MapErrorKind::Syntax);
    assert_eq!(e.line(), Some(4));
    assert!(
        e.to_string().starts_with("map.yaml:4: invalid YAML: "),
        "{e}"
    );
    assert!(!e.message().contains("column"), "{e}");

    let e = parse_err("modules:\n  m:\n    object: a\n   bad indent: 1\n");
    assert_eq!(e.kind(), MapErrorKind::Syntax);
    assert_eq!(e.line(), Some(4), "{e}");

    let e = parse_err("a: 1\na: 2\n");
    assert_eq!(e.kind(), MapErrorKind::Syntax);
    assert!(e.message().contains("duplicate"), "{e}");
    // A function listed twice: the second copy's line, not the mapping's.
    let text = "modules:\n  m:\n    object: a\n    functions:\n      f: {}\n      g: {}\n      f: {ret: str}\n";
    let e = parse_err(text);
    assert_eq!(e.line(), Some(7), "{e}");
    assert_eq!(
        e.to_string(),
        "map.yaml:7: modules.m.functions.f: duplicate key `f`; remove or rename one of the two"
    );
}

#[test]
fn unknown_key_names_line_key_and_choices() {
    let text = "\
modules:
  magic:
    object: libmagic.so.1
    functions:
      magic_file:
        argz: [handle, str]
";
    let e = parse_err(text);
    assert_eq!(e.kind(), MapErrorKind::Schema);
    assert_eq!(e.line(), Some(6));
    assert_eq!(e.key(), Some("modules.magic.functions.magic_file.argz"));
    assert_eq!(
        e.to_string(),
        "map.yaml:6: modules.magic.functions.magic_file.argz: unknown key `argz`; expected one of: args, ret, effect"
    );

    let mut spec = SPEC_EXAMPLE.replace("timeout_ms:", "timeout:");
    let e = parse_err(&spec);
    assert_eq!(e.line(), Some(line_of(&spec, "timeout:")));
    assert_eq!(e.key(), Some("processes.parser.timeout"));
    assert!(
        e.message()
            .contains("expected one of: modules, env, timeout_ms"),
        "{e}"
    );

    spec = SPEC_EXAMPLE.replace("zero_fill", "zerofill");
    let e = parse_err(&spec);
    assert_eq!(e.line(), Some(line_of(&spec, "zerofill")));
    assert_eq!(e.key(), Some("processes.parser.env.malloc.zerofill"));

    let e = parse_err("modulez: {}\n");
    assert_eq!(
        e.to_string(),
        "map.yaml:1: modulez: unknown key `modulez`; expected one of: target, modules, processes"
    );

    let e = parse_err(&SPEC_EXAMPLE.replace("as: 1GiB", "heap: 1GiB"));
    assert_eq!(e.key(), Some("processes.parser.env.rlimits.heap"));
    assert!(
        e.message()
            .starts_with("unknown rlimit `heap`; expected one of: as, cpu"),
        "{e}"
    );
}

#[test]
fn bad_spec_string_names_line_and_index() {
    let text = "\
modules:
  m:
    object: libm.so
    functions:
      f: {args: [handle, strr]}
";
    let e = parse_err(text);
    assert_eq!(e.kind(), MapErrorKind::Schema);
    assert_eq!(e.line(), Some(5));
    assert_eq!(e.key(), Some("modules.m.functions.f.args[1]"));
    assert_eq!(
        e.to_string(),
        "map.yaml:5: modules.m.functions.f.args[1]: unknown argument spec `strr`; expected one of: val, handle, str, f64, in:SIZE, out:SIZE, inout:SIZE, strv, strv:SIZE, cb, cb:NAME"
    );

    // Block-style list: the item's own line.
    let text = "\
modules:
  m:
    object: libm.so
    functions:
      f:
        args:
          - handle
          - in:arg9x
        ret: strr
";
    let e = parse_err(text);
    assert_eq!(e.line(), Some(8));
    assert_eq!(e.key(), Some("modules.m.functions.f.args[1]"));

    let e = parse_err(&text.replace("in:arg9x", "str"));
    assert_eq!(e.line(), Some(9));
    assert_eq!(e.key(), Some("modules.m.functions.f.ret"));

    // `in: 64` inside a flow list is a YAML mapping; the hint says how to quote it.
    let e = parse_err("modules:\n  m:\n    object: a\n    functions:\n      f: {args: [in: 64]}\n");
    assert!(e.message().contains("\"in:64\""), "{e}");
}

#[test]
fn size_references_are_checked() {
    let func = |args: &str| {
        format!("modules:\n  m:\n    object: a\n    functions:\n      f: {{args: {args}}}\n")
    };
    for (args, index, why) in [
        (r#"[handle, "in:arg2"]"#, 1, "only 2 arguments are listed"),
        (r#"["in:arg0"]"#, 0, "cannot come from arg0 itself"),
        (r#"[str, "in:arg0"]"#, 1, "arg0 must be `val`, not `str`"),
        (
            r#"[handle, "out:*arg0"]"#,
            1,
            "must be `val`, `in:8` or `inout:8`, not `handle`",
        ),
        (r#"["out:8", "out:*arg0"]"#, 1, "not `out:8`"),
        (r#"["in:4", "out:*arg0"]"#, 1, "not `in:4`"),
    ] {
        let e = parse_err(&func(args));
        let key = format!("modules.m.functions.f.args[{index}]");
        assert_eq!(e.key(), Some(key.as_str()), "{args}: {e}");
        assert_eq!(e.line(), Some(5), "{args}: {e}");
        assert!(e.message().contains(why), "{args}: {e}");
    }
    // A `val` holding a pointer to the length is fine, as is an in/inout of 8 bytes or more.
    parse(&func(r#"[val, "out:*arg0"]"#)).unwrap();
    parse(&func(r#"["inout:16", "out:*arg0*2"]"#)).unwrap();
    parse(&func(r#"["in:arg1", "val"]"#)).unwrap();
}

#[test]
fn process_names_unknown_module() {
    let text = SPEC_EXAMPLE.replace("modules: [magic]", "modules: [magic, magik]");
    let e = parse_err(&text);
    assert_eq!(e.kind(), MapErrorKind::Invalid);
    assert_eq!(e.key(), Some("processes.parser.modules[1]"));
    assert_eq!(e.line(), Some(line_of(&text, "modules: [magic, magik]")));
    assert!(
        e.message()
            .starts_with("unknown module `magik`; define it under `modules` (defined: magic)"),
        "{e}"
    );
}

#[test]
fn module_in_two_processes() {
    let text = "\
modules:
  m: {object: libm.so}
processes:
  a:
    modules: [m]
  b:
    modules:
      - m
";
    let e = parse_err(text);
    assert_eq!(e.kind(), MapErrorKind::Invalid);
    assert_eq!(e.key(), Some("processes.b.modules[0]"));
    assert_eq!(e.line(), Some(8));
    assert_eq!(
        e.to_string(),
        "map.yaml:8: processes.b.modules[0]: module `m` is already in process `a`; a module runs in one process only"
    );
    let e = parse_err(&text.replace("[m]", "[m, m]"));
    assert!(e.message().contains("listed twice"), "{e}");
}

#[test]
fn function_in_two_modules() {
    let text = "\
modules:
  a:
    object: liba.so
    functions: {init: {}}
  b:
    object: libb.so
    functions:
      init: {}
";
    let e = parse_err(text);
    assert_eq!(e.key(), Some("modules.b.functions.init"));
    assert_eq!(e.line(), Some(8));
    assert!(e.message().contains("already in module `a`"), "{e}");
}

#[test]
fn replicate_and_sample_exclude_each_other() {
    let text = SPEC_EXAMPLE.replace(
        "replicate: {count: 3, on_mismatch: majority}",
        "replicate: {count: 3, on_mismatch: majority}\n    sample: {count: 2, envs: [{}, {wrapper: [valgrind]}], pick: random}",
    );
    let e = parse_err(&text);
    assert_eq!(e.kind(), MapErrorKind::Invalid);
    assert_eq!(e.key(), Some("processes.parser.sample"));
    assert_eq!(e.line(), Some(line_of(&text, "sample:")));
    assert!(e.message().contains("not both"), "{e}");

    let text = text.replace("    replicate: {count: 3, on_mismatch: majority}\n", "");
    let map = parse(&text).unwrap();
    let s = map.processes[0].sample.as_ref().unwrap();
    assert_eq!(s.count, 2);
    assert_eq!(s.envs[1].wrapper, ["valgrind"]);
    assert_eq!(s.pick, module_map::Pick::Random);
}

#[test]
fn limits_and_values() {
    let edit = |from: &str, to: &str| {
        let t = SPEC_EXAMPLE.replace(from, to);
        assert_ne!(t, SPEC_EXAMPLE, "{from}");
        t
    };
    for (from, to, key, why) in [
        (
            "count: 3",
            "count: 0",
            "processes.parser.replicate.count",
            "between 1 and",
        ),
        (
            "timeout_ms: 10000",
            "timeout_ms: 0",
            "processes.parser.timeout_ms",
            "at least 1",
        ),
        (
            "timeout_ms: 10000",
            "timeout_ms: soon",
            "processes.parser.timeout_ms",
            "non-negative integer",
        ),
        (
            "max_retries: 3",
            "max_retries: 101",
            "processes.parser.on_crash.max_retries",
            "at most 100",
        ),
        (
            "perturb: 165",
            "perturb: 256",
            "processes.parser.env.malloc.perturb",
            "0 to 255",
        ),
        (
            "object: libmagic.so.1",
            "object: \"\"",
            "modules.magic.object",
            "empty object",
        ),
        (
            "restore: replay",
            "restore: rewind",
            "processes.parser.on_crash.restore",
            "expected one of: none, replay, checkpoint",
        ),
        (
            "give_up: crash",
            "give_up: {return: -1, errno: EWHAT}",
            "processes.parser.on_crash.give_up.errno",
            "errno name",
        ),
        (
            "give_up: crash",
            "give_up: explode",
            "processes.parser.on_crash.give_up",
            "expected `crash`",
        ),
        (
            "as: 1GiB",
            "as: 1GB",
            "processes.parser.env.rlimits.as",
            "KiB, MiB, GiB",
        ),
        (
            "on_mismatch: majority",
            "on_mismatch: vote",
            "processes.parser.replicate.on_mismatch",
            "majority, first, abort",
        ),
        (
            "{ret: handle}",
            "{ret: handle, effect: pur}",
            "modules.magic.functions.magic_open.effect",
            "pure, state",
        ),
    ] {
        let text = edit(from, to);
        let e = parse_err(&text);
        assert_eq!(e.key(), Some(key), "{to}: {e}");
        assert!(e.message().contains(why), "{to}: {e}");
        assert_eq!(e.line(), Some(line_of(&text, to)), "{to}: {e}");
    }

    let map = parse(&edit(
        "give_up: crash",
        "give_up: {return: -1, errno: ENOMEM}",
    ))
    .unwrap();
    assert_eq!(
        map.processes[0].on_crash.give_up,
        GiveUp::Return {
            value: -1,
            errno: 12
        }
    );
    let map = parse(&edit(
        "as: 1GiB, cpu: 60",
        "as: unlimited, stack: 512MiB, nofile: \"64\", core: 0",
    ))
    .unwrap();
    let r = &map.processes[0].env.rlimits;
    assert_eq!(r["as"], u64::MAX);
    assert_eq!(r["stack"], 512 << 20);
    assert_eq!(r["nofile"], 64);
    assert_eq!(r["core"], 0);
    let map = parse(&edit(
        "MALLOC_CHECK_: \"3\"",
        "MALLOC_CHECK_: 3, DEBUG: true",
    ))
    .unwrap();
    assert_eq!(map.processes[0].env.vars["MALLOC_CHECK_"], "3");
    assert_eq!(map.processes[0].env.vars["DEBUG"], "true");
}

#[test]
fn set_overrides_apply_before_validation() {
    let map = with_sets(
        SPEC_EXAMPLE,
        &[
            ("processes.parser.timeout_ms", "500"),
            ("processes.parser.on_crash.max_retries", "2"),
            (
                "processes.parser.on_crash.give_up",
                "{return: 0, errno: EIO}",
            ),
            ("processes.parser.env.wrapper", "[valgrind, -q]"),
            ("processes.parser.env.vars.NEW", "x"),
            ("modules.magic.functions.magic_load.args[1]", "\"in:64\""),
            ("modules.magic.functions.magic_close.ret", "void"),
            ("target", "*/file"),
        ],
    )
    .unwrap();
    let p = &map.processes[0];
    assert_eq!(p.timeout_ms, Some(500));
    assert_eq!(p.on_crash.max_retries, 2);
    assert_eq!(p.on_crash.give_up, GiveUp::Return { value: 0, errno: 5 });
    assert_eq!(p.env.wrapper, ["valgrind", "-q"]);
    assert_eq!(p.env.vars["NEW"], "x");
    assert_eq!(p.env.vars["MALLOC_CHECK_"], "3");
    let m = &map.modules[0];
    assert_eq!(
        m.functions[1].args[1],
        ArgSpec::In(Size {
            base: SizeBase::Literal(64),
            mul: 1
        })
    );
    assert_eq!(m.functions[5].ret, RetSpec::Void);
    assert_eq!(map.target.as_deref(), Some("*/file"));
    // Sections that the file leaves out can be added, and a later --set wins.
    let map = with_sets(
        "modules:\n  m: {object: a}\nprocesses:\n  p: {modules: [m]}\n",
        &[
            ("processes.p.on_crash.max_retries", "7"),
            ("processes.p.on_crash.max_retries", "9"),
            ("processes.p.sample", "{count: 2}"),
        ],
    )
    .unwrap();
    assert_eq!(map.processes[0].on_crash.max_retries, 9);
    assert_eq!(map.processes[0].sample.as_ref().unwrap().count, 2);
    // An empty value resets to the default.
    let map = with_sets(SPEC_EXAMPLE, &[("processes.parser.timeout_ms", "")]).unwrap();
    assert_eq!(map.processes[0].timeout_ms, None);
}

#[test]
fn set_on_a_key_that_is_not_allowed() {
    let e = with_sets(SPEC_EXAMPLE, &[("processes.parser.timeout", "500")]).unwrap_err();
    assert_eq!(e.key(), Some("--set processes.parser.timeout"));
    assert_eq!(e.line(), None);
    assert_eq!(
        e.to_string(),
        "map.yaml: --set processes.parser.timeout: unknown key `timeout`; expected one of: modules, env, timeout_ms, on_crash, replicate, sample, memory"
    );
    let e = with_sets(
        SPEC_EXAMPLE,
        &[("processes.parser.on_crash.max_retries", "1000")],
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("--set processes.parser.on_crash.max_retries"));
    assert!(e.message().contains("at most 100"), "{e}");
    let e = with_sets(SPEC_EXAMPLE, &[("processes.parsr.timeout_ms", "5")]).unwrap_err();
    assert_eq!(e.key(), Some("--set processes.parsr.timeout_ms"));
    assert!(e.message().contains("no process `parsr`"), "{e}");
    let e = with_sets(SPEC_EXAMPLE, &[("target.x", "5")]).unwrap_err();
    assert!(e.message().contains("not a mapping"), "{e}");
    let e = with_sets(
        SPEC_EXAMPLE,
        &[("modules.magic.functions.magic_load.args[5]", "val")],
    )
    .unwrap_err();
    assert!(e.message().contains("append at [2]"), "{e}");
    let e = with_sets(
        SPEC_EXAMPLE,
        &[
            ("processes.parser.replicate", "{count: 3}"),
            ("processes.parser.sample", "{count: 2}"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("--set processes.parser.sample"));
    let e = with_sets(SPEC_EXAMPLE, &[("", "1")]).unwrap_err();
    assert_eq!(e.key(), Some("--set "));
    // The file's own errors still point into the file.
    let e = with_sets(
        &SPEC_EXAMPLE.replace("cpu: 60", "cpu: x"),
        &[("processes.parser.timeout_ms", "5")],
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("processes.parser.env.rlimits.cpu"));
    assert!(e.line().is_some());
}

#[test]
fn set_finds_names_with_dots() {
    let text =
        "modules:\n  z:\n    object: libz.so.1\n    functions:\n      inflateCopy@ZLIB_1.2.0: {}\n";
    let map = with_sets(
        text,
        &[("modules.z.functions.inflateCopy@ZLIB_1.2.0.ret", "void")],
    )
    .unwrap();
    assert_eq!(map.modules[0].functions[0].ret, RetSpec::Void);
}

#[test]
fn error_for_later_stages_uses_the_same_format() {
    let map = parse(SPEC_EXAMPLE).unwrap();
    let f = &map.modules[0].functions[0];
    let e = MapError::at(
        &map.file,
        Some(f.line),
        Some(format!("modules.magic.functions.{}", f.name)),
        "function not exported by libmagic.so.1".to_string(),
    );
    assert_eq!(e.kind(), MapErrorKind::Resolve);
    assert_eq!(
        e.to_string(),
        format!(
            "map.yaml:{}: modules.magic.functions.magic_open: function not exported by libmagic.so.1",
            f.line
        )
    );
    let e = MapError::at("m.yaml", None, None, "no such file");
    assert_eq!(e.to_string(), "m.yaml: no such file");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert_eq!(boxed.to_string(), "m.yaml: no such file");
}

#[test]
fn merge_keys_and_anchors() {
    let text = "\
base: &base {count: 2}
";
    // Anchors only work in keys the schema knows; an unknown top-level key is still an error.
    assert!(parse(text).is_err());
    let text = "\
modules:
  m:
    object: a
    functions:
      f: &spec {args: [handle, str], ret: str}
      g: *spec
";
    let map = parse(text).unwrap();
    assert_eq!(
        map.modules[0].functions[1].args,
        [ArgSpec::Handle, ArgSpec::Str]
    );
    assert_eq!(map.modules[0].functions[1].line, 6);
}
