//! One loaded object's dynamic tables, read from its PT_DYNAMIC: relocations (JUMP_SLOT,
//! GLOB_DAT, R_X86_64_64 words), symbol names and required versions, and the build id in its
//! notes.
//!
//! # Safety
//! - Every read here is of a loaded object's memory and happens inside a
//!   [`walk`](super::objects::walk) callback, which keeps the object mapped until the
//!   iteration ends (see the `got` module's Safety section). A [`Tables`] holds addresses into
//!   the object and is never kept past the callback that read it.
//! - Table addresses come from the object's own PT_DYNAMIC; ld.so relocates them in place,
//!   except for objects it does not relocate (the vDSO), where we add the base.
//! - Each read stays inside its table: the dynamic section up to DT_NULL, strings at offsets
//!   below DT_STRSZ, RELA entries within DT_PLTRELSZ / DT_RELASZ, symbol and version entries
//!   at indexes taken from the object's own relocations, the version chain as the ELF gABI
//!   lays it out, notes within their PT_NOTE segment.

#![allow(unsafe_code)]

use super::objects::phdrs;
use std::ffi::CStr;

/// A data word holding a symbol's address (`S + A`): a table of function pointers such as
/// pyexpat's handler setters. Routed only with addend 0 (the function itself).
const R_X86_64_64: u32 = 1;
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

/// One object's dynamic tables, as read from its PT_DYNAMIC. The addresses are valid only
/// inside the walk that read them: a `Tables` is never kept past it (private to `got`, only
/// built and used inside [`walk`](super::objects::walk) callbacks).
pub(super) struct Tables {
    pub(super) base: usize,
    pub(super) dynamic: usize,
    symtab: usize,
    strtab: usize,
    strsz: usize,
    versym: usize,
    verneed: usize,
    verneednum: usize,
    pub(super) soname: Option<usize>,
    /// DT_RUNPATH (or DT_RPATH) offset in the string table.
    pub(super) runpath: Option<usize>,
    /// (address, byte size) of RELA tables: DT_JMPREL and DT_RELA (size 0: absent).
    rels: [(usize, usize); 2],
}

impl Tables {
    /// Reads the dynamic section of the object of `info` (None: it has none, or no symbol or
    /// string table).
    ///
    /// # Safety
    /// `info` was handed to a [`walk`](super::objects::walk) callback that is still running,
    /// and the result is used only inside that callback.
    pub(super) unsafe fn read(info: &libc::dl_phdr_info) -> Option<Tables> {
        let base = info.dlpi_addr as usize;
        // SAFETY: the caller's contract.
        let dynamic = unsafe { phdrs(info) }
            .iter()
            .find(|ph| ph.p_type == libc::PT_DYNAMIC)
            .map(|ph| base + ph.p_vaddr as usize)?;
        let fix = |v: u64| -> usize {
            let v = v as usize;
            if v != 0 && v < base {
                v + base
            } else {
                v
            }
        };
        let mut t = Tables {
            base,
            dynamic,
            symtab: 0,
            strtab: 0,
            strsz: 0,
            versym: 0,
            verneed: 0,
            verneednum: 0,
            soname: None,
            runpath: None,
            rels: [(0, 0); 2],
        };
        let mut d = dynamic as *const Dyn;
        loop {
            // SAFETY: PT_DYNAMIC of a mapped object (the walk holds the loader lock) is an
            // array of Dyn ended by DT_NULL; we stop at DT_NULL.
            let (tag, v) = unsafe { ((*d).tag, (*d).val) };
            match tag {
                DT_NULL => break,
                DT_SYMTAB => t.symtab = fix(v),
                DT_STRTAB => t.strtab = fix(v),
                DT_STRSZ => t.strsz = v as usize,
                DT_JMPREL => t.rels[0].0 = fix(v),
                DT_PLTRELSZ => t.rels[0].1 = v as usize,
                DT_RELA => t.rels[1].0 = fix(v),
                DT_RELASZ => t.rels[1].1 = v as usize,
                DT_SONAME => t.soname = Some(v as usize),
                DT_RUNPATH => t.runpath = Some(v as usize),
                DT_RPATH if t.runpath.is_none() => t.runpath = Some(v as usize),
                DT_VERSYM => t.versym = fix(v),
                DT_VERNEED => t.verneed = fix(v),
                DT_VERNEEDNUM => t.verneednum = v as usize,
                _ => {}
            }
            // SAFETY: not at DT_NULL yet, so the next entry is still inside the array.
            d = unsafe { d.add(1) };
        }
        if t.symtab == 0 || t.strtab == 0 {
            return None;
        }
        for r in &mut t.rels {
            if r.0 == 0 {
                *r = (0, 0);
            }
        }
        Some(t)
    }

    pub(super) fn name_at(&self, off: usize) -> Option<&str> {
        if off >= self.strsz {
            return None;
        }
        // SAFETY: off < DT_STRSZ, so the NUL-terminated string lies in the string table,
        // mapped while the walk that built `self` runs (Tables never outlive it).
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
        // this object, so it indexes the table (mapped while the walk runs).
        let idx = unsafe { *((self.versym + 2 * sym) as *const u16) } & 0x7fff;
        if idx < 2 {
            return None;
        }
        let mut vn = self.verneed;
        for _ in 0..self.verneednum {
            // SAFETY: walking the DT_VERNEED chain of DT_VERNEEDNUM entries, each with its
            // vn_cnt aux entries, as the ELF gABI lays them out, in an object the walk keeps
            // mapped.
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

    /// Every JUMP_SLOT / GLOB_DAT slot, and every R_X86_64_64 word with addend 0:
    /// `f(slot address, symbol name, required version)`.
    pub(super) fn for_each_import(&self, f: &mut dyn FnMut(usize, &str, Option<&str>)) {
        for &(addr, size) in &self.rels {
            let n = size / std::mem::size_of::<Rela>();
            for i in 0..n {
                // SAFETY: the RELA table has `size` bytes per its dynamic entry, mapped while
                // the walk runs.
                let r = unsafe { &*((addr + i * std::mem::size_of::<Rela>()) as *const Rela) };
                let ty = (r.info & 0xffff_ffff) as u32;
                let word = ty == R_X86_64_64 && r.addend == 0;
                if ty != R_X86_64_JUMP_SLOT && ty != R_X86_64_GLOB_DAT && !word {
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

/// NT_GNU_BUILD_ID in a mapped PT_NOTE segment.
///
/// # Safety
/// `[at, at + len)` is a PT_NOTE segment of a loaded object (mapped and readable).
pub(super) unsafe fn read_build_id(at: usize, len: usize) -> Vec<u8> {
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
