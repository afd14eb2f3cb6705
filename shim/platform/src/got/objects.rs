//! The loaded-object walk (`dl_iterate_phdr`) and what we keep of each object: an [`Obj`]
//! holds copies only, and finds its object again in a later walk to read its imports.
//!
//! # Safety
//! - [`walk`] hands its closure each object glibc lists while glibc holds
//!   `dl_load_write_lock`, under which alone `dlclose` unmaps an object, so the object's
//!   program headers, name and tables may be read inside the closure. [`path_of`], [`phdrs`]
//!   and `Tables::read` are `unsafe fn`s whose caller vouches that it runs inside such a
//!   callback. Nothing read there is kept as an address: an [`Obj`] holds copies, and
//!   [`Obj::for_each_import`] finds its object again (same base, PT_DYNAMIC and path) in a
//!   new walk and reads the tables inside that walk (an object that is gone yields no import).
//! - The callback's `data` is the walk's own state, used by the calling thread only (glibc
//!   calls back on it), and `info` is read only when glibc filled at least the bytes we read
//!   ([`INFO_NEEDED`], up to `dlpi_subs`).
//! - Code that runs inside a walk (the closures given to [`walk`], [`Obj::for_each_import`]
//!   and `while_loaded`) must not call into the loader (`dlopen`, `dlsym`, `dladdr`,
//!   `dlclose`): those take `dl_load_lock`, which a thread in `dlopen`/`dlclose` holds while
//!   it waits for the lock the walk holds. Allocating is fine (ld.so itself calls malloc
//!   under that lock). A panic in a closure is caught in the callback and resumed after the
//!   walk, so none crosses the FFI boundary.
//! - Each listing records glibc's count of unloads (`dlpi_subs`), and a [`Scanned`] forgets
//!   its bases when the count moves (`dlclose` is not interposed: see the `got` module's
//!   Safety section).

#![allow(unsafe_code)]

use super::elf::{read_build_id, Tables};
use std::ffi::{c_int, c_void, CStr};

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

/// Bytes of `dl_phdr_info` we read (up to `dlpi_subs`); glibc passes the size it fills.
const INFO_NEEDED: usize =
    std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + std::mem::size_of::<u64>();

/// Calls `f` on each loaded object, in load order, while glibc holds its loader lock (see the
/// module's Safety section for what `f` must not do); stops when `f` returns false.
pub(super) fn walk(mut f: impl FnMut(&libc::dl_phdr_info) -> bool) {
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
pub(super) unsafe fn phdrs(info: &libc::dl_phdr_info) -> &[libc::Elf64_Phdr] {
    if info.dlpi_phdr.is_null() {
        return &[];
    }
    // SAFETY: glibc's dlpi_phdr points at dlpi_phnum headers of an object that stays mapped
    // while the walk runs (the caller's contract).
    unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::got::while_loaded;

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
