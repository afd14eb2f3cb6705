//! ELF objects as fracture needs them: which functions an object exports (with symbol
//! versions), which it imports and through which GOT slot (JUMP_SLOT or GLOB_DAT), its
//! soname, DT_NEEDED and run path; and where the dynamic loader would find a library.
//!
//! Pure and safe: every input is an untrusted file, read with the `object` crate; a malformed
//! file is an [`ElfError`], never a panic. It must never load, map or run what it reads.
//!
//! Limits: symbols and relocations are found through section headers (`.dynsym`, `.rela.*`),
//! as every linker-produced object has them; an object stripped of its section headers reads
//! as having no exports and no imports.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cache;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _, Rela as _, SectionHeader, Sym as _};
use object::Endianness;
use std::path::{Path, PathBuf};

pub use cache::{ld_so_cache, parse_cache};

/// An exported (defined, global or weak) dynamic symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The symbol name, without version.
    pub name: String,
    /// The GNU symbol version (`.gnu.version_d`), if the symbol has one.
    pub version: Option<String>,
    /// False for a hidden (non-default, `name@VER`) version: the static linker never binds
    /// new references to it, but old binaries and `dlvsym` still reach it.
    pub default_version: bool,
    /// `STT_FUNC` or `STT_GNU_IFUNC`: only functions can be routed through a trampoline.
    pub is_function: bool,
    /// `st_value`: the address relative to the object's load base (for PIE and libraries).
    pub address: u64,
    /// `st_size` in bytes (0 when the producer did not record it).
    pub size: u64,
}

/// Which relocation fills an import's GOT slot; both must be patched to route a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocKind {
    /// `R_X86_64_JUMP_SLOT` (`.rela.plt`): calls through the PLT.
    JumpSlot,
    /// `R_X86_64_GLOB_DAT` (`.rela.dyn`): `-fno-plt` calls and taken addresses.
    GlobDat,
}

/// An imported function and the GOT slot the loader fills for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The symbol name, without version.
    pub name: String,
    /// The version required through `.gnu.version_r`, if any.
    pub version: Option<String>,
    /// The relocation type.
    pub kind: RelocKind,
    /// `r_offset`: the GOT slot's address relative to the object's load base.
    pub got_offset: u64,
}

/// What fracture needs to know about one ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfObject {
    /// The path it was read from, as given.
    pub path: PathBuf,
    /// `DT_SONAME`, the name other objects' `DT_NEEDED` use.
    pub soname: Option<String>,
    /// `DT_NEEDED` entries, in order.
    pub needed: Vec<String>,
    /// DT_RUNPATH (or DT_RPATH when there is no DT_RUNPATH) entries, `$ORIGIN` expanded.
    pub runpath: Vec<String>,
    /// Defined global and weak dynamic symbols, functions and data.
    pub exports: Vec<Export>,
    /// JUMP_SLOT and GLOB_DAT relocations against undefined symbols that are not data.
    pub imports: Vec<Import>,
    /// Every relocation is resolved at start-up (`DT_BIND_NOW`, `DF_BIND_NOW` or `DF_1_NOW`),
    /// so the GOT may be read-only (full RELRO) by the time the shim patches it.
    pub bind_now: bool,
    /// A position-independent executable (`ET_DYN` with `DF_1_PIE` or an interpreter):
    /// its addresses are relative to a load base. False for shared libraries.
    pub pie: bool,
}

/// Why an object could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ElfError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// The file does not start with the ELF magic.
    NotElf(PathBuf),
    /// An ELF file of another class, byte order or machine.
    NotX86_64(PathBuf),
    /// The headers point past the end of the file.
    Truncated(PathBuf),
    /// Something else in the headers or tables is inconsistent.
    Malformed(PathBuf, String),
}

impl std::fmt::Display for ElfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElfError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            ElfError::NotElf(p) => write!(f, "{}: not an ELF file", p.display()),
            ElfError::NotX86_64(p) => write!(f, "{}: not a 64-bit x86_64 ELF object", p.display()),
            ElfError::Truncated(p) => write!(
                f,
                "{}: truncated ELF file (its headers point past the end)",
                p.display()
            ),
            ElfError::Malformed(p, m) => write!(f, "{}: malformed ELF ({m})", p.display()),
        }
    }
}

impl std::error::Error for ElfError {}

/// Reads and parses the object at `path`.
pub fn read(path: &Path) -> Result<ElfObject, ElfError> {
    let data = std::fs::read(path).map_err(|e| ElfError::Io(path.to_path_buf(), e))?;
    parse(path, &data)
}

type Hdr = elf::FileHeader64<Endianness>;

/// Parses `data`, an object read from `path` (used only to name it in errors and to expand
/// `$ORIGIN`).
pub fn parse(path: &Path, data: &[u8]) -> Result<ElfObject, ElfError> {
    let bad = |m: &str| ElfError::Malformed(path.to_path_buf(), m.to_string());
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf(path.to_path_buf()));
    }
    if data.len() < 20 {
        return Err(ElfError::Truncated(path.to_path_buf()));
    }
    if data[4] != elf::ELFCLASS64
        || data[5] != elf::ELFDATA2LSB
        || u16::from_le_bytes([data[18], data[19]]) != elf::EM_X86_64
    {
        return Err(ElfError::NotX86_64(path.to_path_buf()));
    }
    let truncated = || ElfError::Truncated(path.to_path_buf());
    let hdr = Hdr::parse(data).map_err(|_| truncated())?;
    let e = hdr.endian().map_err(|e| bad(&e.to_string()))?;
    // Tell a cut-off file from a corrupt one: both tables must lie inside the data.
    let table_end = |off: u64, n: u16, size: u16| off.checked_add(u64::from(n) * u64::from(size));
    let shoff = hdr.e_shoff(e);
    let phoff = hdr.e_phoff(e);
    for end in [
        table_end(shoff, hdr.e_shnum(e), hdr.e_shentsize(e)),
        table_end(phoff, hdr.e_phnum(e), hdr.e_phentsize(e)),
    ] {
        if end.is_none_or(|end| end > data.len() as u64) {
            return Err(truncated());
        }
    }
    let sections = hdr.sections(e, data).map_err(|e| bad(&e.to_string()))?;
    let has_interp = hdr
        .program_headers(e, data)
        .map(|phs| phs.iter().any(|ph| ph.p_type(e) == elf::PT_INTERP))
        .unwrap_or(false);
    let is_dyn = hdr.e_type(e) == elf::ET_DYN;
    let mut o = ElfObject {
        path: path.to_path_buf(),
        soname: None,
        needed: Vec::new(),
        runpath: Vec::new(),
        exports: Vec::new(),
        imports: Vec::new(),
        bind_now: false,
        pie: false,
    };
    let mut pie_flag = false;
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
    // Imports: JUMP_SLOT and GLOB_DAT relocations against undefined dynamic symbols. Only
    // tables whose symbols are the dynamic ones: others index another symbol table.
    let dynsym_index = dynsyms.section().0 as u32;
    for section in sections.iter() {
        if section.sh_type(e) != elf::SHT_RELA || section.sh_link(e) != dynsym_index {
            continue;
        }
        let Ok(Some((relas, _))) = section.rela(e, data) else {
            continue;
        };
        for r in relas {
            let kind = match r.r_type(e, false) {
                elf::R_X86_64_JUMP_SLOT => RelocKind::JumpSlot,
                elf::R_X86_64_GLOB_DAT => RelocKind::GlobDat,
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
                elf::DT_FLAGS_1 => {
                    o.bind_now |= v & u64::from(elf::DF_1_NOW) != 0;
                    pie_flag |= v & u64::from(elf::DF_1_PIE) != 0;
                }
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
    // Old linkers set no DF_1_PIE; an ET_DYN with an interpreter is then a PIE (libc.so.6
    // has an interpreter too, but it is not what a map names as "main").
    o.pie = is_dyn && (pie_flag || has_interp);
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
///
/// Approximations: a DT_RPATH is searched where a DT_RUNPATH would be (after LD_LIBRARY_PATH,
/// where ld.so puts it before), and a candidate file is not checked for the right class, so
/// an i386 library in a listed directory would be taken; for checking a map against a program
/// neither has mattered.
pub fn find_library(name: &str, requester_runpath: &[String]) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    if name.is_empty() {
        return None;
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
    if let Some(p) = cache::system_cache()
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, p)| PathBuf::from(p))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    DEFAULT_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The executable and its DT_NEEDED closure in breadth-first load order (like ldd), without
/// the dynamic loader; the names of libraries that cannot be found or read are returned in
/// the second list (ld.so would refuse to start the program; a checker reports and goes on).
/// Only the executable's own failure to read is an error.
pub fn load_closure(exe: &Path) -> Result<(Vec<ElfObject>, Vec<String>), ElfError> {
    let first = read(exe)?;
    let exe_runpath = first.runpath.clone();
    let mut real_paths: Vec<PathBuf> = vec![std::fs::canonicalize(exe).unwrap_or_default()];
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
            let Some(p) = find_library(&n, &rp) else {
                missing.push(n);
                continue;
            };
            // Two names (a symlink and its target) for one file load it once.
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if real_paths.contains(&real) {
                continue;
            }
            match read(&p) {
                Ok(o) => {
                    real_paths.push(real);
                    out.push(o);
                }
                Err(_) => missing.push(n),
            }
        }
        i += 1;
    }
    Ok((out, missing))
}

/// The object of `closure` a map's `object:` names: `main` (the executable, first), a path, a
/// file name or a soname.
pub fn find_object<'a>(closure: &'a [ElfObject], object: &str) -> Option<&'a ElfObject> {
    if object == "main" {
        return closure.first();
    }
    closure.iter().find(|o| {
        if object.contains('/') {
            return o.path == Path::new(object)
                || std::fs::canonicalize(&o.path).ok() == std::fs::canonicalize(object).ok();
        }
        o.soname.as_deref() == Some(object) || o.path.file_name().is_some_and(|f| f == object)
    })
}

impl ElfObject {
    /// True when the object exports function `name` (`name@VERSION` names a version).
    pub fn exports_function(&self, name: &str) -> bool {
        let (n, v) = match name.split_once('@') {
            Some((n, v)) => (n, Some(v.trim_start_matches('@'))),
            None => (name, None),
        };
        self.exports
            .iter()
            .any(|x| x.is_function && x.name == n && (v.is_none() || x.version.as_deref() == v))
    }

    /// True when the object imports `name` (any version; a `@VERSION` suffix is ignored,
    /// because the version a caller binds to is the exporter's business).
    pub fn imports_function(&self, name: &str) -> bool {
        let n = name.split('@').next().unwrap_or(name);
        self.imports.iter().any(|i| i.name == n)
    }
}
