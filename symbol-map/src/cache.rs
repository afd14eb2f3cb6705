//! `/etc/ld.so.cache` in glibc's "glibc-ld.so.cache1.1" format (alone, or after the old
//! "ld.so-1.7.0" table), read as untrusted input: every offset is bounds-checked, and a file
//! that is missing or malformed gives no entries, so the search falls back to the default
//! directories as ld.so itself does.

use std::path::Path;
use std::sync::OnceLock;

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
/// Size of the new-format header: magic and version (20), nlibs, len_strings, flags and
/// padding, extension offset, 3 unused words.
const HEADER_NEW: usize = 48;
/// `struct file_entry_new`: flags, key, value, osversion, hwcap (u64).
const ENTRY_NEW: usize = 24;
/// `FLAG_ELF_LIBC6` in the type byte and `FLAG_X8664_LIB64` in the required byte: the only
/// entries a 64-bit x86_64 ld.so accepts (a multiarch cache also lists i386 and x32 builds
/// under the same names).
const FLAG_TYPE_MASK: i32 = 0xff;
const FLAG_ELF_LIBC6: i32 = 0x0003;
const FLAG_REQUIRED_MASK: i32 = 0xff00;
const FLAG_X8664_LIB64: i32 = 0x0300;

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn cstr_at(d: &[u8], off: usize) -> Option<String> {
    let rest = d.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The x86_64 (library name, path) pairs of the cache at `path`, in the cache's order (which
/// is ld.so's preference order); empty when the file is missing or malformed.
pub fn ld_so_cache(path: &Path) -> Vec<(String, String)> {
    std::fs::read(path)
        .map(|d| parse_cache(&d))
        .unwrap_or_default()
}

/// `/etc/ld.so.cache`, read once per process: a load closure looks up dozens of names.
pub(crate) fn system_cache() -> &'static [(String, String)] {
    static CACHE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CACHE.get_or_init(|| ld_so_cache(Path::new("/etc/ld.so.cache")))
}

/// Parses the bytes of an ld.so.cache; see [`ld_so_cache`].
pub fn parse_cache(d: &[u8]) -> Vec<(String, String)> {
    let mut start = 0usize;
    if d.starts_with(MAGIC_OLD) {
        // Old table first: magic padded to 12 bytes, nlibs, 12-byte entries; the new table
        // follows, aligned to 8 (the alignment of its u64 hwcap field).
        let Some(n) = u32_at(d, 12) else {
            return Vec::new();
        };
        let Some(end) = (n as usize)
            .checked_mul(12)
            .and_then(|x| x.checked_add(16 + 7))
        else {
            return Vec::new();
        };
        start = end & !7;
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
    // A lying count cannot make us loop past the data or reserve more than it could hold.
    let fits = hdr.len().saturating_sub(HEADER_NEW) / ENTRY_NEW;
    let nlibs = (nlibs as usize).min(fits);
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let e = HEADER_NEW + i * ENTRY_NEW;
        let (Some(flags), Some(key), Some(value)) =
            (u32_at(hdr, e), u32_at(hdr, e + 4), u32_at(hdr, e + 8))
        else {
            break;
        };
        let flags = flags as i32;
        if flags & FLAG_TYPE_MASK != FLAG_ELF_LIBC6
            || flags & FLAG_REQUIRED_MASK != FLAG_X8664_LIB64
        {
            continue;
        }
        // String offsets count from the start of the new-format header.
        if let (Some(k), Some(v)) = (cstr_at(hdr, key as usize), cstr_at(hdr, value as usize)) {
            out.push((k, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format cache with the given (flags, name, path) entries.
    fn build(entries: &[(i32, &str, &str)]) -> Vec<u8> {
        let mut d = MAGIC_NEW.to_vec();
        d.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        d.resize(HEADER_NEW + entries.len() * ENTRY_NEW, 0);
        for (i, (flags, k, v)) in entries.iter().enumerate() {
            let e = HEADER_NEW + i * ENTRY_NEW;
            let ko = d.len() as u32;
            d.extend_from_slice(k.as_bytes());
            d.push(0);
            let vo = d.len() as u32;
            d.extend_from_slice(v.as_bytes());
            d.push(0);
            d[e..e + 4].copy_from_slice(&flags.to_le_bytes());
            d[e + 4..e + 8].copy_from_slice(&ko.to_le_bytes());
            d[e + 8..e + 12].copy_from_slice(&vo.to_le_bytes());
        }
        d
    }

    #[test]
    fn keeps_only_x86_64_entries_in_order() {
        let d = build(&[
            (0x0003, "libz.so.1", "/usr/lib/i386-linux-gnu/libz.so.1"),
            (0x0303, "libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"),
            (0x0803, "libz.so.1", "/libx32/libz.so.1"),
            (0x0303, "libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6"),
        ]);
        assert_eq!(
            parse_cache(&d),
            vec![
                (
                    "libz.so.1".to_string(),
                    "/lib/x86_64-linux-gnu/libz.so.1".to_string()
                ),
                (
                    "libm.so.6".to_string(),
                    "/lib/x86_64-linux-gnu/libm.so.6".to_string()
                ),
            ]
        );
    }

    #[test]
    fn new_table_after_the_old_one() {
        let mut d = MAGIC_OLD.to_vec();
        d.push(0);
        d.extend_from_slice(&1u32.to_le_bytes());
        d.extend_from_slice(&[0; 12]);
        d.resize(32, 0); // 16 + 12 = 28, aligned to 8
        d.extend_from_slice(&build(&[(0x0303, "libq.so", "/q/libq.so")]));
        assert_eq!(parse_cache(&d).len(), 1);
    }

    #[test]
    fn garbage_and_truncation_give_nothing_or_less() {
        assert!(parse_cache(b"").is_empty());
        assert!(parse_cache(b"glibc-ld.so.cache1.1\xff\xff\xff\xff").is_empty());
        assert!(parse_cache(b"ld.so-1.7.0\0\xff\xff\xff\xff").is_empty());
        let mut d = MAGIC_NEW.to_vec();
        d.extend_from_slice(&[0xff; 200]);
        assert!(parse_cache(&d).is_empty());
        let good = build(&[(0x0303, "liba.so", "/a"), (0x0303, "libb.so", "/b")]);
        for n in 0..good.len() {
            assert!(parse_cache(&good[..n]).len() < 2);
        }
        assert_eq!(parse_cache(&good).len(), 2);
    }

    #[test]
    fn the_system_cache_parses() {
        // Every Debian system has libc in its cache; a parse bug shows as an empty list.
        if Path::new("/etc/ld.so.cache").exists() {
            assert!(system_cache().iter().any(|(n, _)| n == "libc.so.6"));
        }
    }
}
