//! A fast hasher for the shim's own tables of names (imports matched against the map's
//! functions on every object load): std's SipHash was a tenth of python's start under
//! `--isolate`. Not for keys an attacker picks (no flooding resistance); the names hashed
//! here come from the loaded objects and the map.

use std::hash::{BuildHasherDefault, Hasher};

/// The rotate-multiply hash of rustc's `FxHasher`, word by word.
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `HashMap<K, V, BuildFx>`.
pub type BuildFx = BuildHasherDefault<Fx>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_hash_apart_and_lookups_work() {
        let mut m: std::collections::HashMap<&str, usize, BuildFx> = Default::default();
        for (i, n) in [
            "inflate",
            "inflateEnd",
            "deflate",
            "deflateEnd",
            "a",
            "ab",
            "",
        ]
        .iter()
        .enumerate()
        {
            m.insert(n, i);
        }
        assert_eq!(m.get("inflateEnd"), Some(&1));
        assert_eq!(m.get(""), Some(&6));
        assert_eq!(m.get("inflat"), None);
        let h = |s: &str| {
            let mut f = Fx::default();
            f.write(s.as_bytes());
            f.finish()
        };
        assert_ne!(h("deflate"), h("inflate"));
    }
}
