//! Loaded objects and their GOT slots: finding JUMP_SLOT and GLOB_DAT relocations of mapped
//! functions in every loaded object and pointing them at our stubs (or back at the real
//! function in the process that owns it).
//!
//! # Safety
//! - Objects are enumerated with `dl_iterate_phdr`, which hands out program headers and a
//!   load base of objects that stay mapped while the callback runs; we copy what we need
//!   (addresses of the dynamic tables) out of the callback, and read those tables only while
//!   the global patch lock is held (no `dlclose` of a mapped object runs in between, because
//!   our `dlopen`/`dlclose` wrappers and the patch walk take the same lock).
//! - Table addresses come from the object's own PT_DYNAMIC; ld.so relocates them in place,
//!   except for objects it does not relocate (the vDSO), where we add the base.
//! - A GOT slot is written with an atomic store after making its page writable; the page's
//!   protection is restored to what `/proc/self/maps` said it was.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

const R_X86_64_GLOB_DAT: u32 = 6;
const DT_NULL: i64 = 0;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_STRSZ: i64 = 10;
const DT_SONAME: i64 = 14;
const DT_RPATH: i64 = 15;
const DT_JMPREL: i64 = 23;
const DT_PLTRELSZ: i64 = 2;
const DT_RUNPATH: i64 = 29;
const DT_VERSYM: i64 = 0x6fff_fff0;
const DT_VERNEED: i64 = 0x6fff_fffe;
const DT_VERNEEDNUM: i64 = 0x6fff_ffff;
const R_X86_64_JUMP_SLOT: u32 = 7;

/// What we need of one loaded object.
#[derive(Debug, Clone)]
pub struct Obj {
    pub base: usize,
    /// Path as ld.so recorded it ("" for the executable).
    pub path: String,
    pub soname: Option<String>,
    symtab: usize,
    strtab: usize,
    strsz: usize,
    versym: usize,
    verneed: usize,
    verneednum: usize,
    /// DT_RUNPATH (or DT_RPATH) offset in the string table.
    runpath: Option<usize>,
    rels: Vec<(usize, usize)>, // (address, byte size) of RELA tables: DT_JMPREL and DT_RELA
    /// Executable PT_LOAD segments: [start, end) addresses.
    pub text: Vec<(usize, usize)>,
    /// NT_GNU_BUILD_ID, when the object has one.
    pub build_id: Vec<u8>,
}

#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

#[repr(C)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

/// All objects currently loaded, in load order (the executable first).
pub fn loaded_objects() -> Vec<Obj> {
    let mut out: Vec<Obj> = Vec::new();
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: called by dl_iterate_phdr with a valid info for the duration of the call;
        // `data` is the &mut Vec<Obj> we passed.
        unsafe {
            let out = &mut *(data as *mut Vec<Obj>);
            let info = &*info;
            let base = info.dlpi_addr as usize;
            let path = if info.dlpi_name.is_null() {
                String::new()
            } else {
                CStr::from_ptr(info.dlpi_name)
                    .to_string_lossy()
                    .into_owned()
            };
            let mut dynamic = 0usize;
            let mut text = Vec::new();
            let mut build_id = Vec::new();
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_DYNAMIC {
                    dynamic = base + ph.p_vaddr as usize;
                }
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    let start = base + ph.p_vaddr as usize;
                    text.push((start, start + ph.p_memsz as usize));
                }
                if ph.p_type == libc::PT_NOTE && build_id.is_empty() {
                    build_id = read_build_id(base + ph.p_vaddr as usize, ph.p_memsz as usize);
                }
            }
            if dynamic == 0 {
                return 0;
            }
            let fix = |v: u64| -> usize {
                let v = v as usize;
                if v != 0 && v < base {
                    v + base
                } else {
                    v
                }
            };
            let mut o = Obj {
                base,
                path,
                soname: None,
                symtab: 0,
                strtab: 0,
                strsz: 0,
                versym: 0,
                verneed: 0,
                verneednum: 0,
                runpath: None,
                rels: Vec::new(),
                text,
                build_id,
            };
            let (mut jmprel, mut pltrelsz, mut rela, mut relasz, mut soname_off) =
                (0, 0, 0, 0, None);
            let mut d = dynamic as *const Dyn;
            while (*d).tag != DT_NULL {
                let v = (*d).val;
                match (*d).tag {
                    DT_SYMTAB => o.symtab = fix(v),
                    DT_STRTAB => o.strtab = fix(v),
                    DT_STRSZ => o.strsz = v as usize,
                    DT_JMPREL => jmprel = fix(v),
                    DT_PLTRELSZ => pltrelsz = v as usize,
                    DT_RELA => rela = fix(v),
                    DT_RELASZ => relasz = v as usize,
                    DT_SONAME => soname_off = Some(v as usize),
                    DT_RUNPATH => o.runpath = Some(v as usize),
                    DT_RPATH if o.runpath.is_none() => o.runpath = Some(v as usize),
                    DT_VERSYM => o.versym = fix(v),
                    DT_VERNEED => o.verneed = fix(v),
                    DT_VERNEEDNUM => o.verneednum = v as usize,
                    _ => {}
                }
                d = d.add(1);
            }
            if o.symtab == 0 || o.strtab == 0 {
                return 0;
            }
            if let Some(off) = soname_off {
                if off < o.strsz {
                    o.soname = Some(
                        CStr::from_ptr((o.strtab + off) as *const libc::c_char)
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
            if jmprel != 0 {
                o.rels.push((jmprel, pltrelsz));
            }
            if rela != 0 {
                o.rels.push((rela, relasz));
            }
            out.push(o);
            0
        }
    }
    // SAFETY: the callback only reads what dl_iterate_phdr hands it and pushes into `out`.
    unsafe {
        libc::dl_iterate_phdr(Some(cb), &mut out as *mut Vec<Obj> as *mut libc::c_void);
    }
    out
}

/// NT_GNU_BUILD_ID in a mapped PT_NOTE segment.
///
/// # Safety
/// `[at, at + len)` is a PT_NOTE segment of a loaded object (mapped and readable).
unsafe fn read_build_id(at: usize, len: usize) -> Vec<u8> {
    let mut off = 0usize;
    while off + 12 <= len {
        // SAFETY: inside the note segment (checked against len).
        let (namesz, descsz, kind) = unsafe {
            (
                *((at + off) as *const u32) as usize,
                *((at + off + 4) as *const u32) as usize,
                *((at + off + 8) as *const u32),
            )
        };
        let name_at = off + 12;
        let desc_at = name_at + namesz.next_multiple_of(4);
        let next = desc_at + descsz.next_multiple_of(4);
        if next > len {
            break;
        }
        if kind == 3 && namesz == 4 {
            // SAFETY: [desc_at, desc_at + descsz) is inside the segment (next <= len).
            return unsafe { std::slice::from_raw_parts((at + desc_at) as *const u8, descsz) }
                .to_vec();
        }
        off = next;
    }
    Vec::new()
}

impl Obj {
    /// True when the map's `object:` string names this object: `main` for the executable, a
    /// path, a file name or a soname.
    pub fn matches(&self, object: &str, is_first: bool) -> bool {
        if object == "main" {
            return is_first;
        }
        if object.contains('/') {
            return self.path == object
                || std::fs::canonicalize(&self.path)
                    .ok()
                    .zip(std::fs::canonicalize(object).ok())
                    .is_some_and(|(a, b)| a == b);
        }
        let file = self.path.rsplit('/').next().unwrap_or("");
        file == object || self.soname.as_deref() == Some(object)
    }

    /// The object's DT_RUNPATH (or DT_RPATH), unexpanded.
    pub fn search_path(&self) -> Option<&str> {
        self.name_at(self.runpath?)
    }

    fn name_at(&self, off: usize) -> Option<&str> {
        if off >= self.strsz {
            return None;
        }
        // SAFETY: off < DT_STRSZ, so the NUL-terminated string lies in the string table.
        unsafe { CStr::from_ptr((self.strtab + off) as *const libc::c_char) }
            .to_str()
            .ok()
    }

    /// Version name required for dynamic symbol `sym` (from DT_VERSYM and DT_VERNEED).
    fn needed_version(&self, sym: usize) -> Option<&str> {
        if self.versym == 0 || self.verneed == 0 {
            return None;
        }
        // SAFETY: DT_VERSYM has one u16 per dynamic symbol; `sym` came from a relocation of
        // this object, so it indexes the table.
        let idx = unsafe { *((self.versym + 2 * sym) as *const u16) } & 0x7fff;
        if idx < 2 {
            return None;
        }
        let mut vn = self.verneed;
        for _ in 0..self.verneednum {
            // SAFETY: walking the DT_VERNEED chain of DT_VERNEEDNUM entries, each with its
            // vn_cnt aux entries, as the ELF gABI lays them out.
            unsafe {
                let cnt = *((vn + 2) as *const u16);
                let aux = *((vn + 8) as *const u32) as usize;
                let next = *((vn + 12) as *const u32) as usize;
                let mut a = vn + aux;
                for _ in 0..cnt {
                    let other = *((a + 6) as *const u16);
                    let name = *((a + 8) as *const u32) as usize;
                    let anext = *((a + 12) as *const u32) as usize;
                    if other == idx {
                        return self.name_at(name);
                    }
                    if anext == 0 {
                        break;
                    }
                    a += anext;
                }
                if next == 0 {
                    break;
                }
                vn += next;
            }
        }
        None
    }

    /// Every JUMP_SLOT / GLOB_DAT slot of this object whose symbol `want` accepts:
    /// calls `f(slot address, symbol name, required version)`.
    pub fn for_each_import(&self, mut f: impl FnMut(usize, &str, Option<&str>)) {
        for &(addr, size) in &self.rels {
            let n = size / std::mem::size_of::<Rela>();
            for i in 0..n {
                // SAFETY: the RELA table has `size` bytes per its dynamic entry.
                let r = unsafe { &*((addr + i * std::mem::size_of::<Rela>()) as *const Rela) };
                let ty = (r.info & 0xffff_ffff) as u32;
                if ty != R_X86_64_JUMP_SLOT && ty != R_X86_64_GLOB_DAT {
                    continue;
                }
                let sym = (r.info >> 32) as usize;
                if sym == 0 {
                    continue;
                }
                // SAFETY: `sym` is a symbol index from this object's own relocation.
                let s =
                    unsafe { &*((self.symtab + sym * std::mem::size_of::<Sym>()) as *const Sym) };
                // A slot for a symbol defined in this very object (an interposable call of
                // the object to its own export) is routed too: two modules may share one
                // object, and a mapped function runs where its module lives, whoever calls.
                let _ = s.shndx;
                if let Some(name) = self.name_at(s.name as usize) {
                    f(
                        self.base + r.offset as usize,
                        name,
                        self.needed_version(sym),
                    );
                }
            }
        }
    }
}

/// Protection of the pages of the current mappings, from /proc/self/maps.
pub struct Maps(Vec<(usize, usize, i32)>);

impl Maps {
    pub fn read() -> Maps {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut v = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(range), Some(perms)) = (it.next(), it.next()) else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let p = perms.as_bytes();
            let mut prot = 0;
            if p.first() == Some(&b'r') {
                prot |= libc::PROT_READ;
            }
            if p.get(1) == Some(&b'w') {
                prot |= libc::PROT_WRITE;
            }
            if p.get(2) == Some(&b'x') {
                prot |= libc::PROT_EXEC;
            }
            v.push((a, b, prot));
        }
        Maps(v)
    }

    fn prot_of(&self, addr: usize) -> Option<i32> {
        self.0
            .iter()
            .find(|(a, b, _)| addr >= *a && addr < *b)
            .map(|x| x.2)
    }
}

/// Stores `value` into the GOT slot at `slot`, making its page writable for the store when
/// needed and restoring the page's original protection. Returns the previous value.
pub fn write_slot(maps: &Maps, slot: usize, value: usize) -> Option<usize> {
    write_slot_prot(slot, maps.prot_of(slot)?, value)
}

/// Protection of the page holding `slot` (None: not mapped).
pub fn prot_at(maps: &Maps, slot: usize) -> Option<i32> {
    maps.prot_of(slot)
}

/// As [`write_slot`], with the page's protection already known (read from /proc/self/maps
/// once, before the zygote was forked: a helper has the same mappings).
pub fn write_slot_prot(slot: usize, prot: i32, value: usize) -> Option<usize> {
    let page = slot & !4095;
    if prot & libc::PROT_READ == 0 {
        return None;
    }
    // SAFETY: `slot` is an 8-byte aligned GOT entry inside a mapping found readable.
    let cell = unsafe { AtomicUsize::from_ptr(slot as *mut usize) };
    let old = cell.load(Ordering::Relaxed);
    if old == value {
        return Some(old);
    }
    if prot & libc::PROT_WRITE == 0 {
        // SAFETY: changing the protection of one page of a GOT we own the routing of; it is
        // restored below to exactly what /proc/self/maps reported.
        unsafe {
            if libc::mprotect(page as *mut libc::c_void, 4096, prot | libc::PROT_WRITE) != 0 {
                return None;
            }
        }
    }
    cell.store(value, Ordering::Release);
    if prot & libc::PROT_WRITE == 0 {
        // SAFETY: as above: restore the original protection.
        unsafe {
            libc::mprotect(page as *mut libc::c_void, 4096, prot);
        }
    }
    Some(old)
}

/// Symbols to route: name → candidate function indexes (several when versions differ).
pub type Wanted<'a> = HashMap<&'a str, Vec<usize>>;
