//! Loaded objects and their GOT slots: finding JUMP_SLOT and GLOB_DAT relocations of mapped
//! functions in every loaded object and pointing them at our stubs (or back at the real
//! function in the process that owns it).
//!
//! # Safety
//! - Every read of a loaded object's memory (program headers, dynamic section, symbol,
//!   string, version and relocation tables, notes) happens inside a `dl_iterate_phdr`
//!   callback ([`walk`]). glibc holds `dl_load_write_lock` for the whole iteration, and
//!   `dlclose` unmaps and unlinks an object only while it holds that same lock
//!   (`_dl_close_worker` in elf/dl-close.c), so an object handed to the callback stays mapped
//!   until the iteration ends. Nothing read there is kept as an address to read later: an
//!   [`Obj`] holds copies (path, soname, run path, build id, text ranges), and
//!   [`Obj::for_each_import`] finds its object again in a new walk and reads the tables
//!   inside that walk (an object that is gone yields no import).
//! - Code that runs inside a walk (the closures given to [`Obj::for_each_import`] and
//!   [`while_loaded`]) must not call into the loader (`dlopen`, `dlsym`, `dladdr`,
//!   `dlclose`): those take `dl_load_lock`, which a thread in `dlopen`/`dlclose` holds while
//!   it waits for the lock the walk holds. Allocating is fine (ld.so itself calls malloc
//!   under that lock). A panic in a closure is caught in the callback and resumed after the
//!   walk, so none crosses the FFI boundary.
//! - `dlclose` is not interposed (dl.rs interposes `dlopen` and `dlsym` only). A wrapper
//!   would not see glibc's own unloads (iconv modules through `__libc_dlclose`), and holding
//!   the patch lock across the real `dlclose` would deadlock with destructors that load or
//!   look up symbols. Instead each listing records glibc's count of unloads (`dlpi_subs`,
//!   updated under the same lock): a scan that sees the count move forgets which bases it
//!   scanned, since another object may now live at a recorded address ([`Scanned`]), and a
//!   slot is written only while the count is the one of the listing the slot was found in
//!   ([`while_loaded`]), so a slot of an unloaded object is never written.
//! - Table addresses come from the object's own PT_DYNAMIC; ld.so relocates them in place,
//!   except for objects it does not relocate (the vDSO), where we add the base.
//! - A GOT slot is written only through [`patch_slot`] (an `unsafe fn`: the caller vouches
//!   that the address is a slot the scan found), with an atomic store after making its page
//!   writable; the page's protection is put back to what `/proc/self/maps` said it was. The
//!   [`Patch`] it returns restores the slot when dropped or on [`Patch::restore`]; routing
//!   keeps it for the process's lifetime ([`Patch::keep`]).
//!
//! Not covered: glibc lists an object another thread's `dlopen` has mapped but not yet
//! relocated; a scan that meets it then races with ld.so's own writes of its GOT.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
/// x86_64's page size (the only target: the stubs are x86_64 assembly).
const PAGE: usize = 4096;

/// What we need of one loaded object: copies only, never an address into its tables.
#[derive(Debug, Clone)]
pub struct Obj {
    pub base: usize,
    /// Path as ld.so recorded it ("" for the executable).
    pub path: String,
    pub soname: Option<String>,
    /// DT_RUNPATH (or DT_RPATH), unexpanded.
    runpath: Option<String>,
    /// Address of PT_DYNAMIC: with `base` and `path`, how a later walk finds this object.
    dynamic: usize,
    /// Executable PT_LOAD segments: [start, end) addresses.
    pub text: Vec<(usize, usize)>,
    /// NT_GNU_BUILD_ID, when the object has one.
    pub build_id: Vec<u8>,
    /// glibc's count of objects unloaded so far (`dlpi_subs`) when this object was listed.
    pub unloads: u64,
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

/// Bytes of `dl_phdr_info` we read (up to `dlpi_subs`); glibc passes the size it fills.
const INFO_NEEDED: usize =
    std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + std::mem::size_of::<u64>();

/// Calls `f` on each loaded object, in load order, while glibc holds its loader lock (see the
/// module's Safety section for what `f` must not do); stops when `f` returns false.
fn walk(mut f: impl FnMut(&libc::dl_phdr_info) -> bool) {
    struct State<'a> {
        f: &'a mut dyn FnMut(&libc::dl_phdr_info) -> bool,
        panic: Option<Box<dyn std::any::Any + Send>>,
    }
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `State` below, alive until dl_iterate_phdr returns and used by
        // this thread only (glibc calls back on the calling thread).
        let st = unsafe { &mut *(data as *mut State<'_>) };
        if size < INFO_NEEDED || info.is_null() {
            return 1;
        }
        // SAFETY: glibc hands a filled `dl_phdr_info` of `size` bytes (checked above) that
        // stays valid for the duration of the call.
        let info = unsafe { &*info };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (st.f)(info))) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(p) => {
                st.panic = Some(p);
                1
            }
        }
    }
    let mut st = State {
        f: &mut f,
        panic: None,
    };
    // SAFETY: the callback catches unwinding and only touches `st` and what glibc hands it.
    unsafe {
        libc::dl_iterate_phdr(Some(cb), &mut st as *mut State<'_> as *mut c_void);
    }
    if let Some(p) = st.panic {
        std::panic::resume_unwind(p);
    }
}

/// The path glibc recorded for the object of `info` ("" for the executable).
///
/// # Safety
/// `info` was handed to a [`walk`] callback that is still running.
unsafe fn path_of(info: &libc::dl_phdr_info) -> std::borrow::Cow<'_, str> {
    if info.dlpi_name.is_null() {
        return "".into();
    }
    // SAFETY: a non-null dlpi_name is the NUL-terminated l_name of a listed object, alive
    // while the walk holds the loader lock (the caller's contract).
    unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy()
}

/// The program headers of the object of `info`.
///
/// # Safety
/// `info` was handed to a [`walk`] callback that is still running.
unsafe fn phdrs(info: &libc::dl_phdr_info) -> &[libc::Elf64_Phdr] {
    if info.dlpi_phdr.is_null() {
        return &[];
    }
    // SAFETY: glibc's dlpi_phdr points at dlpi_phnum headers of an object that stays mapped
    // while the walk runs (the caller's contract).
    unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
}

/// One object's dynamic tables, as read from its PT_DYNAMIC. The addresses are valid only
/// inside the walk that read them: a `Tables` is never kept past it (module-private, only
/// built and used inside [`walk`] callbacks).
struct Tables {
    base: usize,
    dynamic: usize,
    symtab: usize,
    strtab: usize,
    strsz: usize,
    versym: usize,
    verneed: usize,
    verneednum: usize,
    soname: Option<usize>,
    /// DT_RUNPATH (or DT_RPATH) offset in the string table.
    runpath: Option<usize>,
    /// (address, byte size) of RELA tables: DT_JMPREL and DT_RELA (size 0: absent).
    rels: [(usize, usize); 2],
}

impl Tables {
    /// Reads the dynamic section of the object of `info` (None: it has none, or no symbol or
    /// string table).
    ///
    /// # Safety
    /// `info` was handed to a [`walk`] callback that is still running, and the result is
    /// used only inside that callback.
    unsafe fn read(info: &libc::dl_phdr_info) -> Option<Tables> {
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

    fn name_at(&self, off: usize) -> Option<&str> {
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
    fn for_each_import(&self, f: &mut dyn FnMut(usize, &str, Option<&str>)) {
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

/// All objects currently loaded, in load order (the executable first).
pub fn loaded_objects() -> Vec<Obj> {
    let mut out: Vec<Obj> = Vec::new();
    walk(|info| {
        // SAFETY: inside the walk; `t` does not leave this callback.
        let Some(t) = (unsafe { Tables::read(info) }) else {
            return true;
        };
        let base = t.base;
        let mut text = Vec::new();
        let mut build_id = Vec::new();
        // SAFETY: inside the walk.
        for ph in unsafe { phdrs(info) } {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let start = base + ph.p_vaddr as usize;
                text.push((start, start + ph.p_memsz as usize));
            }
            if ph.p_type == libc::PT_NOTE && build_id.is_empty() {
                // SAFETY: a PT_NOTE segment of an object the walk keeps mapped.
                build_id =
                    unsafe { read_build_id(base + ph.p_vaddr as usize, ph.p_memsz as usize) };
            }
        }
        out.push(Obj {
            base,
            // SAFETY: inside the walk.
            path: unsafe { path_of(info) }.into_owned(),
            soname: t.soname.and_then(|o| t.name_at(o)).map(str::to_owned),
            runpath: t.runpath.and_then(|o| t.name_at(o)).map(str::to_owned),
            dynamic: t.dynamic,
            text,
            build_id,
            unloads: info.dlpi_subs,
        });
        true
    });
    out
}

/// Runs `f` while the loader's lock is held, if `addr..addr + 8` lies in a PT_LOAD segment of
/// a loaded object and no object was unloaded since the listing that counted `unloads` (so
/// the object there is the one that listing saw). None otherwise, without running `f`.
/// `f` must not call into the loader (see the module's Safety section).
pub fn while_loaded<R>(addr: usize, unloads: u64, f: impl FnOnce() -> R) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    walk(|info| {
        if info.dlpi_subs != unloads {
            return false;
        }
        let base = info.dlpi_addr as usize;
        // SAFETY: inside the walk.
        let inside = unsafe { phdrs(info) }.iter().any(|ph| {
            let start = base.wrapping_add(ph.p_vaddr as usize);
            ph.p_type == libc::PT_LOAD
                && addr >= start
                && addr.saturating_add(8) <= start.saturating_add(ph.p_memsz as usize)
        });
        if !inside {
            return true;
        }
        out = f.take().map(|f| f());
        false
    });
    out
}

/// The objects a scan has covered, by base address, valid while no object is unloaded.
#[derive(Debug, Default)]
pub struct Scanned {
    /// glibc's unload count of the listing the bases were recorded against.
    unloads: u64,
    bases: Vec<usize>,
}

impl Scanned {
    /// Brings the record up to a listing that counted `unloads`. False (and every base
    /// forgotten) when objects were unloaded since the last listing: an object now at a
    /// recorded base may be another one (a plugin closed and opened again usually comes back
    /// at the same address), and it must be scanned again.
    pub fn sync(&mut self, unloads: u64) -> bool {
        if self.unloads == unloads {
            return true;
        }
        self.unloads = unloads;
        self.bases.clear();
        false
    }

    pub fn contains(&self, base: usize) -> bool {
        self.bases.contains(&base)
    }

    pub fn insert(&mut self, base: usize) {
        if !self.contains(base) {
            self.bases.push(base);
        }
    }
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
        self.runpath.as_deref()
    }

    /// Every JUMP_SLOT / GLOB_DAT slot of this object: calls `f(slot address, symbol name,
    /// required version)`, inside a walk that holds the loader's lock (so `f` must not call
    /// into the loader; see the module's Safety section). Nothing when the object has been
    /// unloaded since it was listed.
    pub fn for_each_import(&self, mut f: impl FnMut(usize, &str, Option<&str>)) {
        walk(|info| {
            if info.dlpi_addr as usize != self.base {
                return true;
            }
            // SAFETY: inside the walk; `t` does not leave this callback.
            let Some(t) = (unsafe { Tables::read(info) }) else {
                return false;
            };
            // SAFETY: inside the walk.
            if t.dynamic == self.dynamic && unsafe { path_of(info) } == self.path.as_str() {
                t.for_each_import(&mut f);
            }
            false
        });
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

/// Protection of the page holding `slot` (None: not mapped).
pub fn prot_at(maps: &Maps, slot: usize) -> Option<i32> {
    maps.prot_of(slot)
}

/// Held (spinning: no allocation, no futex) across make-writable, store, protect-again, so
/// two writers on one page never protect it under each other's store.
static WRITING: AtomicBool = AtomicBool::new(false);

/// Stores `value` into the slot at `slot` (if it holds `expect`, when given), making its page
/// writable for the store when `prot` lacks PROT_WRITE and putting `prot` back afterwards.
/// Returns the value it found (Err: unreadable page, misaligned, not `expect`, or mprotect
/// refused).
///
/// # Safety
/// As [`patch_slot`].
unsafe fn store(slot: usize, prot: i32, expect: Option<usize>, value: usize) -> Result<usize, ()> {
    if prot & libc::PROT_READ == 0 || !slot.is_multiple_of(std::mem::align_of::<usize>()) {
        return Err(());
    }
    let page = slot & !(PAGE - 1);
    while WRITING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    let r = (|| {
        // SAFETY: `slot` is 8-aligned (checked above) and, by the caller's contract, a GOT
        // slot in a mapping /proc/self/maps reported readable: a valid AtomicUsize.
        let cell = unsafe { AtomicUsize::from_ptr(slot as *mut usize) };
        let old = cell.load(Ordering::Acquire);
        if expect.is_some_and(|e| e != old) {
            return Err(());
        }
        if old == value {
            return Ok(old);
        }
        let read_only = prot & libc::PROT_WRITE == 0;
        if read_only {
            // SAFETY: one page of a GOT (the caller's contract) made writable with the rest
            // of its protection kept; put back to exactly `prot` below.
            let r = unsafe { libc::mprotect(page as *mut c_void, PAGE, prot | libc::PROT_WRITE) };
            if r != 0 {
                return Err(());
            }
        }
        // SYNC POINT: pairs with the program's plain loads of the slot (each call through
        // the GOT): an aligned 8-byte store is seen whole, the old target or the new one.
        // With `expect`, only if the slot still holds it (ld.so's lazy binding writes
        // writable slots without our lock).
        let stored = match expect {
            Some(e) => cell
                .compare_exchange(e, value, Ordering::Release, Ordering::Relaxed)
                .is_ok(),
            None => {
                cell.store(value, Ordering::Release);
                true
            }
        };
        if read_only {
            // SAFETY: as above: back to the page's protection as /proc/self/maps reported
            // it. Should this fail, the page stays writable (as a partial-RELRO GOT always
            // is) and the store stands.
            unsafe { libc::mprotect(page as *mut c_void, PAGE, prot) };
        }
        if stored {
            Ok(old)
        } else {
            Err(())
        }
    })();
    WRITING.store(false, Ordering::Release);
    r
}

/// A GOT slot pointed elsewhere by [`patch_slot`]. Dropping it, or [`Patch::restore`], puts
/// the value it found back (only if the slot still holds ours), under the same page
/// protection; [`Patch::keep`] leaves the slot patched for the process's lifetime.
#[must_use = "dropping a Patch restores the slot at once; call keep() to leave it patched"]
#[derive(Debug)]
pub struct Patch {
    slot: usize,
    prot: i32,
    old: usize,
    new: usize,
}

impl Patch {
    /// The value the slot held before.
    // Routing keeps every patch; only the tests read and restore one.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn old(&self) -> usize {
        self.old
    }

    /// Puts the old value back. False when the slot no longer holds ours (someone else
    /// pointed it elsewhere: left alone) or the page could not be made writable.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn restore(self) -> bool {
        let this = std::mem::ManuallyDrop::new(self);
        this.undo()
    }

    /// Leaves the slot patched for good (a routed slot stays routed while the process lives).
    pub fn keep(self) {
        std::mem::forget(self);
    }

    fn undo(&self) -> bool {
        // SAFETY: `slot` and `prot` passed patch_slot's contract, which includes the slot
        // staying mapped for as long as this guard lives.
        unsafe { store(self.slot, self.prot, Some(self.new), self.old) }.is_ok()
    }
}

impl Drop for Patch {
    fn drop(&mut self) {
        self.undo();
    }
}

/// Points the GOT slot at `slot` to `value`, making its page writable for the store when
/// needed and restoring the page's original protection. None (and nothing written) when the
/// page is not readable, `slot` is misaligned or the page cannot be made writable.
///
/// # Safety
/// - `slot` is a JUMP_SLOT / GLOB_DAT slot a scan found ([`Obj::for_each_import`]), hence
///   8-aligned and owned by the loader's relocation of that object: nothing but ld.so and
///   us writes it, and the program only calls through it.
/// - `prot` is the protection `/proc/self/maps` reported for the page holding it (read
///   after the object was relocated, so RELRO is in it), never a guess.
/// - The object stays loaded while this runs and while the returned [`Patch`] lives
///   (e.g. inside [`while_loaded`] and then [`Patch::keep`]).
/// - `value` is something the program may call in place of the slot's function.
pub unsafe fn patch_slot(slot: usize, prot: i32, value: usize) -> Option<Patch> {
    // SAFETY: the caller's contract.
    let old = unsafe { store(slot, prot, None, value) }.ok()?;
    Some(Patch {
        slot,
        prot,
        old,
        new: value,
    })
}

/// Symbols to route: name → candidate function indexes (several when versions differ).
pub type Wanted<'a> = HashMap<&'a str, Vec<usize>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A test-owned "GOT": one anonymous page, its first word set to `first`, then given
    /// protection `prot`. Unmapped on drop.
    struct FakeGot(usize);

    impl FakeGot {
        fn new(first: usize, prot: i32) -> FakeGot {
            // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            // SAFETY: the page is ours, writable and page-aligned (so usize-aligned).
            unsafe {
                *(p as *mut usize) = first;
                assert_eq!(libc::mprotect(p, PAGE, prot), 0);
            }
            FakeGot(p as usize)
        }

        fn value(&self) -> usize {
            // SAFETY: the page is mapped readable until drop.
            unsafe { AtomicUsize::from_ptr(self.0 as *mut usize) }.load(Ordering::Acquire)
        }

        /// The protection /proc/self/maps reports now.
        fn prot(&self) -> Option<i32> {
            prot_at(&Maps::read(), self.0)
        }
    }

    impl Drop for FakeGot {
        fn drop(&mut self) {
            // SAFETY: unmapping the page `new` mapped.
            unsafe { libc::munmap(self.0 as *mut c_void, PAGE) };
        }
    }

    #[test]
    fn patch_of_a_read_only_slot_restores_value_and_protection() {
        let got = FakeGot::new(0x1111, libc::PROT_READ);
        let prot = got.prot().expect("the page is mapped");
        assert_eq!(prot, libc::PROT_READ);
        // SAFETY: the slot is our page's first word, 8-aligned, `prot` read from the maps;
        // the page outlives the guard.
        let p = unsafe { patch_slot(got.0, prot, 0x2222) }.expect("patched");
        assert_eq!(p.old(), 0x1111);
        assert_eq!(got.value(), 0x2222);
        assert_eq!(
            got.prot(),
            Some(libc::PROT_READ),
            "page made read-only again"
        );
        assert!(p.restore());
        assert_eq!(got.value(), 0x1111);
        assert_eq!(
            got.prot(),
            Some(libc::PROT_READ),
            "page read-only after restore"
        );
    }

    #[test]
    fn dropped_patch_restores_a_writable_slot_and_keeps_it_writable() {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let got = FakeGot::new(7, rw);
        {
            // SAFETY: as above.
            let _p = unsafe { patch_slot(got.0, rw, 9) }.expect("patched");
            assert_eq!(got.value(), 9);
            assert_eq!(got.prot(), Some(rw));
        }
        assert_eq!(got.value(), 7);
        assert_eq!(got.prot(), Some(rw));
    }

    #[test]
    fn kept_patch_stays() {
        let got = FakeGot::new(1, libc::PROT_READ);
        // SAFETY: as above.
        unsafe { patch_slot(got.0, libc::PROT_READ, 2) }
            .expect("patched")
            .keep();
        assert_eq!(got.value(), 2);
        assert_eq!(got.prot(), Some(libc::PROT_READ));
    }

    #[test]
    fn restore_leaves_a_slot_someone_else_pointed_elsewhere() {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let got = FakeGot::new(1, rw);
        // SAFETY: as above.
        let p = unsafe { patch_slot(got.0, rw, 2) }.expect("patched");
        // SAFETY: our writable page.
        unsafe { AtomicUsize::from_ptr(got.0 as *mut usize) }.store(3, Ordering::Release);
        assert!(!p.restore());
        assert_eq!(got.value(), 3);
    }

    #[test]
    fn patch_refuses_misaligned_or_unreadable_slots() {
        let got = FakeGot::new(5, libc::PROT_READ);
        // SAFETY: refused before any access (misaligned; page reported unreadable).
        unsafe {
            assert!(patch_slot(got.0 + 4, libc::PROT_READ, 6).is_none());
            assert!(patch_slot(got.0, libc::PROT_NONE, 6).is_none());
        }
        assert_eq!(got.value(), 5);
    }

    #[test]
    fn while_loaded_runs_only_inside_a_loaded_object_of_the_same_listing() {
        static IN_OUR_DATA: AtomicUsize = AtomicUsize::new(0);
        let unloads = loaded_objects()[0].unloads;
        let here = &IN_OUR_DATA as *const AtomicUsize as usize;
        assert_eq!(while_loaded(here, unloads, || 1), Some(1));
        let got = FakeGot::new(0, libc::PROT_READ);
        assert_eq!(while_loaded(got.0, unloads, || 1), None, "not an object");
        assert_eq!(while_loaded(here, unloads + 1, || 1), None, "other listing");
    }

    // The walk kept the addresses of an object's tables and read them after a dlclose had
    // unmapped it (a fault), and a reloaded object at a scanned base was skipped.
    #[test]
    fn import_walk_of_an_unloaded_object_reads_nothing() {
        let listed = |objs: &[Obj]| objs.iter().find(|o| o.path.contains("libz.so")).cloned();
        // SAFETY: dlopen with a NUL-terminated name (glibc's: tests do not interpose it).
        let h = unsafe { libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null(), "libz.so.1 is installed");
        let z = listed(&loaded_objects()).expect("libz listed");
        let mut imports = Vec::new();
        z.for_each_import(|slot, name, _| imports.push((slot, name.to_string())));
        let (slot, _) = imports
            .iter()
            .find(|(_, n)| n == "free")
            .cloned()
            .expect("libz imports free");
        let mut scanned = Scanned::default();
        scanned.sync(z.unloads);
        scanned.insert(z.base);
        assert!(while_loaded(slot, z.unloads, || ()).is_some());
        // SAFETY: closing the handle opened above; nothing of libz is used afterwards but
        // through `z`, which holds copies only.
        assert_eq!(unsafe { libc::dlclose(h) }, 0);
        let objs = loaded_objects();
        assert!(listed(&objs).is_none(), "libz unloaded");
        let mut n = 0;
        z.for_each_import(|_, _, _| n += 1);
        assert_eq!(n, 0, "nothing read from an unloaded object");
        assert!(while_loaded(slot, z.unloads, || ()).is_none());
        assert!(!scanned.sync(objs[0].unloads), "the unload is noticed");
        assert!(!scanned.contains(z.base), "its base is scanned again");
    }
}
