//! /etc/ld.so.cache, glibc's "glibc-ld.so.cache1.1" format, read as untrusted input.

use std::path::Path;
use std::sync::OnceLock;

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn bytes_at(d: &[u8], off: usize) -> Option<&[u8]> {
    let rest = d.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
}

/// The (library name, path) entries of a cache file's contents, as bytes, in the cache's
/// order; nothing when it is malformed (entries past a damaged one are left out).
fn entries(d: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    let mut start = 0usize;
    if d.starts_with(MAGIC_OLD) {
        // Old format first: 12-byte header + nlibs, 12-byte entries; the new one follows, aligned.
        start = u32_at(d, 12).map_or(usize::MAX, |n| {
            (16usize.saturating_add((n as usize).saturating_mul(12)) + 7) & !7
        });
    }
    let hdr = d.get(start..).filter(|h| h.starts_with(MAGIC_NEW));
    let nlibs = hdr.and_then(|h| u32_at(h, 20)).unwrap_or(0) as usize;
    let hdr = hdr.unwrap_or_default();
    (0..nlibs)
        .map_while(move |i| {
            let e = 48 + i * 24;
            Some((u32_at(hdr, e + 4)?, u32_at(hdr, e + 8)?))
        })
        // Offsets are from the start of the new-format header.
        .filter_map(move |(k, v)| Some((bytes_at(hdr, k as usize)?, bytes_at(hdr, v as usize)?)))
}

/// (library name, path) pairs of the cache; empty when the file is missing or malformed.
pub fn ld_so_cache(path: &Path) -> Vec<(String, String)> {
    std::fs::read(path)
        .map(|d| parse_cache(&d))
        .unwrap_or_default()
}

pub fn parse_cache(d: &[u8]) -> Vec<(String, String)> {
    entries(d)
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// The path the cache file's contents `d` give for library `name` (its first entry, as ld.so
/// takes it), without building the whole table.
pub fn lookup(d: &[u8], name: &str) -> Option<String> {
    entries(d)
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The system's /etc/ld.so.cache, read once per process (a program's load closure looks up
/// every library it needs: the launcher read and parsed the whole file for each).
pub fn system_lookup(name: &str) -> Option<String> {
    static CACHE: OnceLock<Vec<u8>> = OnceLock::new();
    lookup(
        CACHE.get_or_init(|| std::fs::read("/etc/ld.so.cache").unwrap_or_default()),
        name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_gives_nothing() {
        assert!(parse_cache(b"").is_empty());
        assert!(parse_cache(b"glibc-ld.so.cache1.1\xff\xff\xff\xff").is_empty());
        let mut d = MAGIC_NEW.to_vec();
        d.extend_from_slice(&[0xff; 200]);
        let _ = parse_cache(&d);
        assert_eq!(lookup(&d, "libc.so.6"), None);
        let mut old = MAGIC_OLD.to_vec();
        old.extend_from_slice(&[0xff; 64]);
        assert!(parse_cache(&old).is_empty());
    }

    #[test]
    fn a_lookup_finds_what_the_whole_table_has() {
        let Ok(d) = std::fs::read("/etc/ld.so.cache") else {
            return;
        };
        let all = parse_cache(&d);
        assert!(!all.is_empty());
        for (name, path) in all.iter().take(50) {
            let first = all.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
            assert_eq!(lookup(&d, name), first, "{name} -> {path}");
        }
        assert_eq!(lookup(&d, "libno-such-library.so.9"), None);
    }
}
