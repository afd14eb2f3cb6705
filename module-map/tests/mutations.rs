//! Fuzz-style robustness: deterministic byte mutations of the SPEC.md example never make the
//! parser panic (the shim parses the map before `main`, where a panic would kill the program).

use std::path::Path;

const SPEC_EXAMPLE: &str = include_str!("data/spec_example.yaml");

/// xorshift64*: deterministic, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to YAML and to the spec syntax, so mutations hit interesting paths.
const INTERESTING: &[u8] = b" \n\t:-[]{},#&*!|>'\"?%@`0123456789*ainoutvalstrargKiB\xc3\xa9";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < out.len() => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            3 if at < out.len() => out[at] = rng.next() as u8,
            4 => {
                // Duplicate a chunk elsewhere (repeats keys and nesting).
                let from = rng.below(out.len());
                let len = rng.below(40).min(out.len() - from);
                let chunk = out[from..from + len].to_vec();
                out.splice(at..at, chunk);
            }
            _ => {
                let end = (at + rng.below(20)).min(out.len());
                out.drain(at.min(end)..end);
            }
        }
    }
    out
}

#[test]
fn mutated_maps_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for _ in 0..600 {
        let bytes = mutate(&mut rng, SPEC_EXAMPLE.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        match module_map::parse_map_str(&text, Path::new("fuzz.yaml"), &[]) {
            Ok(_) => parsed += 1,
            Err(e) => {
                // Every error is one line and names the file.
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.yaml"), "{shown}");
                assert!(!shown.contains('\n'), "{shown:?}");
            }
        }
    }
    // Some mutations are harmless (inside comments); the corpus is not all rejects.
    assert!(parsed > 0);
}

#[test]
fn mutated_sets_never_panic() {
    let mut rng = Rng(42);
    let keys = [
        "processes.parser.timeout_ms",
        "modules.magic.functions.magic_load.args[1]",
        "processes.parser.on_crash.retry_envs[0].vars.X",
    ];
    for i in 0..300 {
        let key = mutate(&mut rng, keys[i % keys.len()].as_bytes());
        let value = mutate(&mut rng, b"{return: 0, errno: EIO}");
        let set = (
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        );
        let _ = module_map::parse_map_str(SPEC_EXAMPLE, Path::new("fuzz.yaml"), &[set]);
    }
}
