//! /etc/ld.so.cache, glibc's "glibc-ld.so.cache1.1" format, read as untrusted input.

use std::path::Path;

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn cstr_at(d: &[u8], off: usize) -> Option<String> {
    let rest = d.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// (library name, path) pairs of the cache; empty when the file is missing or malformed.
pub fn ld_so_cache(path: &Path) -> Vec<(String, String)> {
    std::fs::read(path)
        .map(|d| parse_cache(&d))
        .unwrap_or_default()
}

pub fn parse_cache(d: &[u8]) -> Vec<(String, String)> {
    let mut start = 0usize;
    if d.starts_with(MAGIC_OLD) {
        // Old format first: 12-byte header + nlibs, 12-byte entries; the new one follows, aligned.
        let Some(n) = u32_at(d, 12) else {
            return Vec::new();
        };
        start = (16usize.saturating_add((n as usize).saturating_mul(12)) + 7) & !7;
    }
    let Some(hdr) = d.get(start..) else {
        return Vec::new();
    };
    if !hdr.starts_with(MAGIC_NEW) {
        return Vec::new();
    }
    let Some(nlibs) = u32_at(hdr, 20) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..nlibs as usize {
        let e = 48 + i * 24;
        let (Some(key), Some(value)) = (u32_at(hdr, e + 4), u32_at(hdr, e + 8)) else {
            break;
        };
        // Offsets are from the start of the new-format header.
        if let (Some(k), Some(v)) = (cstr_at(hdr, key as usize), cstr_at(hdr, value as usize)) {
            out.push((k, v));
        }
    }
    out
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
    }
}
