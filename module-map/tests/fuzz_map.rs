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
//!
//! The model a structural case is built from is in `map_model/`, the watchdog in `common/`;
//! the bugs these targets found are pinned in `fuzz_map_pinned.rs`.

mod common;
mod map_model;

use std::path::{Path, PathBuf};
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use common::{Watchdog, FILE};
use map_model::structural_case;
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
// Targets.

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
