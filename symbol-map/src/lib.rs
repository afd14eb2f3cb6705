//! ELF objects as fracture needs them: which functions an object exports (with symbol
//! versions), which it imports and through which GOT slot (JUMP_SLOT or GLOB_DAT), its
//! soname, DT_NEEDED and run path; and where the dynamic loader would find a library.
//!
//! Pure and safe: every input is an untrusted file, read with the `object` crate; a malformed
//! file is an [`ElfError`], never a panic.
#![deny(unsafe_code)]

mod cache;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, Rela as _, SectionHeader, Sym as _};
use object::{Endianness, LittleEndian};
use std::path::{Path, PathBuf};

pub use cache::ld_so_cache;

/// An exported (defined, global or weak) dynamic symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub version: Option<String>,
    /// False for a hidden (non-default, `name@VER`) version.
    pub default_version: bool,
    pub is_function: bool,
    pub address: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocKind {
    JumpSlot,
    GlobDat,
    /// An R_X86_64_64 data word with addend 0 holding the function's address (a table of
    /// function pointers, such as pyexpat's handler setters); the shim routes these too.
    Abs64,
}

/// An imported function and the GOT slot the loader fills for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub name: String,
    pub version: Option<String>,
    pub kind: RelocKind,
    pub got_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfObject {
    pub path: PathBuf,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// DT_RUNPATH (or DT_RPATH) entries, `$ORIGIN` expanded.
    pub runpath: Vec<String>,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    pub bind_now: bool,
    pub pie: bool,
}

/// Why an object could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ElfError {
    Io(PathBuf, std::io::Error),
    NotElf(PathBuf),
    NotX86_64(PathBuf),
    Malformed(PathBuf, String),
}

impl std::fmt::Display for ElfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElfError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            ElfError::NotElf(p) => write!(f, "{}: not an ELF file", p.display()),
            ElfError::NotX86_64(p) => write!(f, "{}: not a 64-bit x86_64 ELF object", p.display()),
            ElfError::Malformed(p, m) => write!(f, "{}: malformed ELF ({m})", p.display()),
        }
    }
}

impl std::error::Error for ElfError {}

pub fn read(path: &Path) -> Result<ElfObject, ElfError> {
    let io = |e| ElfError::Io(path.to_path_buf(), e);
    let file = std::fs::File::open(path).map_err(io)?;
    let reader = file.try_clone().map_err(io)?;
    // Only the headers and the dynamic tables are read, not the whole file (libpython is
    // 23 MB, of which the symbols, versions and relocations are a few hundred KB: reading it
    // whole took 30 ms of every `fracture run --isolate` of python). The tables the parse
    // walks are read whole, one read each; anything else is read as it is asked for.
    let cache = object::ReadCache::new(file);
    // The headers read to find the tables stay in `cache` for the parse.
    let blocks = dynamic_tables(&cache, &reader);
    let sparse = Sparse { blocks, cache };
    parse_from(path, &sparse)
}

/// The section types `parse` reads entries of, whose string tables it reads too.
const TABLES: &[u32] = &[
    elf::SHT_DYNSYM,
    elf::SHT_DYNAMIC,
    elf::SHT_RELA,
    elf::SHT_GNU_VERSYM,
    elf::SHT_GNU_VERDEF,
    elf::SHT_GNU_VERNEED,
];

/// (file offset, bytes) of the sections in [`TABLES`] and the string tables they link to.
/// Empty when the headers cannot be read (the parse then reads as it goes, and says what is
/// wrong).
fn dynamic_tables(
    cache: &object::ReadCache<std::fs::File>,
    file: &std::fs::File,
) -> Vec<(u64, Box<[u8]>)> {
    use std::os::unix::fs::FileExt;
    let Ok(hdr) = Hdr::parse(cache) else {
        return Vec::new();
    };
    let Ok(e) = hdr.endian() else {
        return Vec::new();
    };
    let Ok(sections) = hdr.sections(e, cache) else {
        return Vec::new();
    };
    let mut want: Vec<usize> = Vec::new();
    for (i, sec) in sections.iter().enumerate() {
        if TABLES.contains(&sec.sh_type(e)) {
            want.push(i);
            want.push(sec.sh_link(e) as usize);
        }
    }
    want.sort_unstable();
    want.dedup();
    let len = file.metadata().map_or(0, |m| m.len());
    let mut blocks = Vec::new();
    for i in want {
        let Ok(sec) = sections.section(object::SectionIndex(i)) else {
            continue;
        };
        let (off, size): (u64, u64) = (sec.sh_offset(e), sec.sh_size(e));
        if sec.sh_type(e) == elf::SHT_NOBITS || size == 0 || off + size > len || size > 64 << 20 {
            continue;
        }
        let mut b = vec![0u8; size as usize].into_boxed_slice();
        if file.read_exact_at(&mut b, off).is_ok() {
            blocks.push((off, b));
        }
    }
    blocks
}

/// An ELF file for `object`: some ranges held in memory, the rest read on demand.
struct Sparse {
    blocks: Vec<(u64, Box<[u8]>)>,
    cache: object::ReadCache<std::fs::File>,
}

impl Sparse {
    /// The block holding `offset`, and where in it.
    fn block_at(&self, offset: u64) -> Option<(&[u8], usize)> {
        self.blocks.iter().find_map(|(start, b)| {
            let rel = offset.checked_sub(*start)?;
            (rel < b.len() as u64).then_some((&b[..], rel as usize))
        })
    }
}

impl<'a> object::ReadRef<'a> for &'a Sparse {
    fn len(self) -> Result<u64, ()> {
        (&self.cache).len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        if let Some((b, rel)) = self.block_at(offset) {
            if let Some(end) = usize::try_from(size).ok().and_then(|n| rel.checked_add(n)) {
                if end <= b.len() {
                    return Ok(&b[rel..end]);
                }
            }
        }
        (&self.cache).read_bytes_at(offset, size)
    }

    fn read_bytes_at_until(
        self,
        range: std::ops::Range<u64>,
        delimiter: u8,
    ) -> Result<&'a [u8], ()> {
        if let Some((b, rel)) = self.block_at(range.start) {
            let limit = usize::try_from(range.end.saturating_sub(range.start))
                .map_or(b.len(), |n| rel.saturating_add(n).min(b.len()));
            if let Some(i) = b[rel..limit].iter().position(|&c| c == delimiter) {
                return Ok(&b[rel..rel + i]);
            }
        }
        (&self.cache).read_bytes_at_until(range, delimiter)
    }
}

type Hdr = elf::FileHeader64<Endianness>;

pub fn parse(path: &Path, data: &[u8]) -> Result<ElfObject, ElfError> {
    parse_from(path, data)
}

/// [`parse`] over any of `object`'s readers (a byte slice, or a file read on demand).
fn parse_from<'d, R: object::ReadRef<'d>>(path: &Path, data: R) -> Result<ElfObject, ElfError> {
    let bad = |m: &str| ElfError::Malformed(path.to_path_buf(), m.to_string());
    let head = data.read_bytes_at(0, 20).ok();
    if head.is_none_or(|h| &h[..4] != b"\x7fELF") {
        // Shorter than an ELF header, but with the magic: still not ELF to us.
        if data.read_bytes_at(0, 4).ok() != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf(path.to_path_buf()));
        }
    }
    match head {
        Some(h)
            if h[4] == elf::ELFCLASS64
                && h[5] == elf::ELFDATA2LSB
                && u16::from_le_bytes([h[18], h[19]]) == elf::EM_X86_64 => {}
        _ => return Err(ElfError::NotX86_64(path.to_path_buf())),
    }
    let hdr = Hdr::parse(data).map_err(|e| bad(&e.to_string()))?;
    let e = hdr.endian().map_err(|e| bad(&e.to_string()))?;
    let sections = hdr.sections(e, data).map_err(|e| bad(&e.to_string()))?;
    let pie = hdr.e_type(e) == elf::ET_DYN;
    let mut o = ElfObject {
        path: path.to_path_buf(),
        soname: None,
        needed: Vec::new(),
        runpath: Vec::new(),
        exports: Vec::new(),
        imports: Vec::new(),
        bind_now: false,
        pie,
    };
    let dynsyms = sections
        .symbols(e, data, elf::SHT_DYNSYM)
        .map_err(|e| bad(&e.to_string()))?;
    let versions = sections
        .versions(e, data)
        .map_err(|e| bad(&e.to_string()))?;
    let ver_of = |i: usize| -> (Option<String>, bool) {
        let Some(vt) = versions.as_ref() else {
            return (None, true);
        };
        let idx = vt.version_index(e, object::SymbolIndex(i));
        match vt.version(idx) {
            Ok(Some(v)) => (
                Some(String::from_utf8_lossy(v.name()).into_owned()),
                !idx.is_hidden(),
            ),
            _ => (None, !idx.is_hidden()),
        }
    };
    for (i, s) in dynsyms.iter().enumerate() {
        if i == 0 || s.is_undefined(e) {
            continue;
        }
        let bind = s.st_bind();
        if bind != elf::STB_GLOBAL && bind != elf::STB_WEAK && bind != elf::STB_GNU_UNIQUE {
            continue;
        }
        let Ok(name) = s.name(e, dynsyms.strings()) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let (version, default_version) = ver_of(i);
        let ty = s.st_type();
        o.exports.push(Export {
            name: String::from_utf8_lossy(name).into_owned(),
            version,
            default_version,
            is_function: ty == elf::STT_FUNC || ty == elf::STT_GNU_IFUNC,
            address: s.st_value(e),
            size: s.st_size(e),
        });
    }
    // Imports: JUMP_SLOT and GLOB_DAT relocations against undefined dynamic symbols, and
    // R_X86_64_64 words with addend 0 (what the shim's GOT layer routes, platform/got/elf.rs).
    for section in sections.iter() {
        if section.sh_type(e) != elf::SHT_RELA {
            continue;
        }
        let Ok(Some((relas, _))) = section.rela(e, data) else {
            continue;
        };
        for r in relas {
            let kind = match r.r_type(e, false) {
                elf::R_X86_64_JUMP_SLOT => RelocKind::JumpSlot,
                elf::R_X86_64_GLOB_DAT => RelocKind::GlobDat,
                elf::R_X86_64_64 if r.r_addend(e) == 0 => RelocKind::Abs64,
                _ => continue,
            };
            let si = r.r_sym(e, false) as usize;
            let Ok(s) = dynsyms.symbol(object::SymbolIndex(si)) else {
                continue;
            };
            if !s.is_undefined(e) || s.st_type() == elf::STT_OBJECT || s.st_type() == elf::STT_TLS {
                continue;
            }
            let Ok(name) = s.name(e, dynsyms.strings()) else {
                continue;
            };
            o.imports.push(Import {
                name: String::from_utf8_lossy(name).into_owned(),
                version: ver_of(si).0,
                kind,
                got_offset: r.r_offset(e),
            });
        }
    }
    // Dynamic section: soname, needed, run path, bind-now.
    if let Ok(Some((dyns, link))) = sections.dynamic(e, data) {
        let strings = sections.strings(e, data, link).unwrap_or_default();
        let s = |v: u64| {
            strings
                .get(v as u32)
                .ok()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let mut rpath = None;
        let mut runpath = None;
        for d in dyns {
            let v = d.d_val(e);
            match d.d_tag(e) as u32 {
                elf::DT_SONAME => o.soname = s(v),
                elf::DT_NEEDED => o.needed.extend(s(v)),
                elf::DT_RUNPATH => runpath = s(v),
                elf::DT_RPATH => rpath = s(v),
                elf::DT_BIND_NOW => o.bind_now = true,
                elf::DT_FLAGS if v & u64::from(elf::DF_BIND_NOW) != 0 => o.bind_now = true,
                elf::DT_FLAGS_1 if v & u64::from(elf::DF_1_NOW) != 0 => o.bind_now = true,
                _ => {}
            }
        }
        let origin = path
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(rp) = runpath.or(rpath) {
            o.runpath = rp
                .split(':')
                .filter(|x| !x.is_empty())
                .map(|x| x.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
                .collect();
        }
    }
    let _ = LittleEndian;
    Ok(o)
}

/// Default library directories of the x86_64 Debian loader, after the cache.
const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Finds a library as ld.so would: a name with '/' is a path; else LD_LIBRARY_PATH, the
/// requester's run path, /etc/ld.so.cache, then the default directories.
pub fn find_library(name: &str, requester_runpath: &[String]) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let env: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect();
    for d in env.iter().chain(requester_runpath.iter()) {
        let p = Path::new(d).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    if let Some(p) = cache::system_lookup(name).map(PathBuf::from) {
        if p.exists() {
            return Some(p);
        }
    }
    DEFAULT_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The executable and its DT_NEEDED closure in breadth-first load order (like ldd), without
/// the dynamic loader; libraries that cannot be found are returned in the second list.
pub fn load_closure(exe: &Path) -> Result<(Vec<ElfObject>, Vec<String>), ElfError> {
    let first = read(exe)?;
    let exe_runpath = first.runpath.clone();
    let mut out = vec![first];
    let mut missing = Vec::new();
    let mut i = 0;
    while i < out.len() {
        let needed = out[i].needed.clone();
        let mut rp = out[i].runpath.clone();
        rp.extend(exe_runpath.iter().cloned());
        for n in needed {
            if n.starts_with("ld-linux")
                || out.iter().any(|o| {
                    o.soname.as_deref() == Some(n.as_str())
                        || o.path.file_name().is_some_and(|f| f == n.as_str())
                })
                || missing.contains(&n)
            {
                continue;
            }
            match find_library(&n, &rp).map(|p| read(&p)) {
                Some(Ok(o)) => out.push(o),
                _ => missing.push(n),
            }
        }
        i += 1;
    }
    Ok((out, missing))
}

/// The object of `closure` a map's `object:` names: `main` (the executable, first), a path, a
/// soname or, failing that, a file name.
pub fn find_object<'a>(closure: &'a [ElfObject], object: &str) -> Option<&'a ElfObject> {
    if object == "main" {
        return closure.first();
    }
    if object.contains('/') {
        // A path names a file, whatever link led to it.
        let want = std::fs::canonicalize(object).ok();
        return closure.iter().find(|o| {
            o.path == Path::new(object)
                || (want.is_some() && std::fs::canonicalize(&o.path).ok() == want)
        });
    }
    closure
        .iter()
        .find(|o| o.soname.as_deref() == Some(object))
        .or_else(|| {
            closure
                .iter()
                .find(|o| o.path.file_name().is_some_and(|f| f == object))
        })
}

impl ElfObject {
    /// True when the object exports function `name`: a plain name matches any version (the
    /// loader binds an unversioned reference to one of them), `name@VER` that version, and
    /// `name@@VER` that version only when it is the default.
    pub fn exports_function(&self, name: &str) -> bool {
        let (n, v, default_only) = match name.split_once('@') {
            Some((n, v)) => match v.strip_prefix('@') {
                Some(v) => (n, Some(v), true),
                None => (n, Some(v), false),
            },
            None => (name, None, false),
        };
        self.exports.iter().any(|x| {
            x.is_function
                && x.name == n
                && (v.is_none() || x.version.as_deref() == v)
                && (!default_only || x.default_version)
        })
    }

    pub fn imports_function(&self, name: &str) -> bool {
        let n = name.split('@').next().unwrap_or(name);
        self.imports.iter().any(|i| i.name == n)
    }
}
