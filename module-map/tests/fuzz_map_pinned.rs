//! Bugs the fuzz targets of `fuzz_map.rs` found, pinned: each test rebuilds the input that
//! showed one.

mod common;

use std::path::Path;

use common::{Watchdog, FILE};
use module_map::{parse_map, parse_map_str, MapError};

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
