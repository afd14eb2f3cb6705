//! Object + offset → `function+0xNN`, from the object's symbol table (`.symtab` when the
//! object has one, else its dynamic symbols). The offset is the address minus the object's
//! load base, i.e. an ELF virtual address.
//!
//! Object paths come from spool records, i.e. from anyone who can write the spool: an object
//! is read only when it is a regular file of at most [`MAX_OBJECT`] bytes, opened without
//! blocking (a FIFO or `/dev/zero` named as an object gives no symbols, not a hang).

use object::{Object, ObjectSymbol, SymbolKind};
use std::collections::HashMap;

#[derive(Default)]
pub struct Symbolizer {
    /// Per object, by its canonical path: function symbols sorted by address (address, size,
    /// name).
    objects: HashMap<std::path::PathBuf, Vec<(u64, u64, String)>>,
    /// Path as a record spells it -> canonical path (None: not a file).
    spelled: HashMap<String, Option<std::path::PathBuf>>,
}

/// Most objects read in one ingestion, and most spellings of paths remembered: a hostile
/// spool naming one large library in a million ways (`/usr//lib/x`, `/usr/./lib/x`) reads it
/// once, and a spool naming a million files reads at most this many.
const MAX_OBJECTS: usize = 256;
const MAX_SPELLINGS: usize = 65536;

impl Symbolizer {
    pub fn symbol(&mut self, obj: &str, off: u64) -> Option<String> {
        if obj.is_empty() {
            return None;
        }
        if !self.spelled.contains_key(obj) {
            if self.spelled.len() >= MAX_SPELLINGS {
                return None;
            }
            let canon = std::fs::canonicalize(obj).ok();
            self.spelled.insert(obj.to_string(), canon);
        }
        let canon = self.spelled.get(obj)?.clone()?;
        if !self.objects.contains_key(&canon) && self.objects.len() >= MAX_OBJECTS {
            return None;
        }
        let syms = self
            .objects
            .entry(canon.clone())
            .or_insert_with(|| canon.to_str().map(load).unwrap_or_default());
        let i = syms.partition_point(|s| s.0 <= off);
        let (addr, size, name) = syms.get(i.checked_sub(1)?)?;
        // Past the symbol's end (when its size is known): an anonymous stretch of code.
        if *size > 0 && off >= addr.saturating_add(*size).saturating_add(4096) {
            return None;
        }
        Some(format!("{name}+{:#x}", off - addr))
    }
}

/// Largest object read for symbols (1 GiB).
pub const MAX_OBJECT: u64 = 1 << 30;

/// The bytes of a regular file of at most [`MAX_OBJECT`] bytes (symlinks to one are fine:
/// sonames are symlinks).
fn read_object(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_OBJECT {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    (&file).take(MAX_OBJECT).read_to_end(&mut data).ok()?;
    Some(data)
}

/// The GNU build-id of an ELF file, in lower-case hex as the shim records it (None when the
/// file is not an ELF object or has none).
pub fn build_id(path: &std::path::Path) -> Option<String> {
    let data = read_object(path.to_str()?)?;
    let file = object::File::parse(&*data).ok()?;
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

fn load(path: &str) -> Vec<(u64, u64, String)> {
    let Some(data) = read_object(path) else {
        return Vec::new();
    };
    let Ok(file) = object::File::parse(&*data) else {
        return Vec::new();
    };
    let mut v: Vec<(u64, u64, String)> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
        .collect();
    v.sort();
    v.dedup_by_key(|s| s.0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_an_address_inside_a_function_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let mut s = Symbolizer::default();
        // The test binary is not loaded at its link address (PIE): look a symbol up by name
        // in the table and ask for an address inside it.
        let syms = load(exe.to_str().unwrap());
        let (addr, size, name) = syms.iter().find(|s| s.1 > 16).unwrap().clone();
        assert_eq!(
            s.symbol(exe.to_str().unwrap(), addr + 8),
            Some(format!("{name}+0x8"))
        );
        assert!(size > 0);
        assert_eq!(s.symbol("/nonexistent", 10), None);
    }

    #[test]
    fn objects_that_are_not_regular_files_give_no_symbols() {
        let d = std::env::temp_dir().join(format!("quarantine-sym-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let fifo = d.join("fifo.so");
        let _ = std::fs::remove_file(&fifo);
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        // On another thread with a bound: opening a FIFO for reading without O_NONBLOCK
        // would wait for a writer forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.to_string_lossy().into_owned();
        std::thread::spawn(move || {
            let mut s = Symbolizer::default();
            let _ = tx.send((
                s.symbol(&f, 16),
                s.symbol("/dev/zero", 16),
                s.symbol("/", 16),
            ));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("watchdog: still reading after a minute");
        assert_eq!(got, (None, None, None));
        let _ = std::fs::remove_dir_all(d);
    }
}
