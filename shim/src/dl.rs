//! The dynamic loader's side: the real `dlopen`/`dlsym` (ours interpose them), looking up a
//! mapped function in the object that defines it, and the interposed entry points.
//!
//! `dlopen` must route objects loaded later (CPython extension modules, plugins) before it
//! returns; `dlsym` must answer with our stub for a function another process owns, or a
//! program that looks functions up by name would escape the map. Both are entered through
//! naked stubs that hand the caller's return address on: glibc resolves `dlopen` names
//! against the *caller's* RUNPATH and `dlsym(RTLD_NEXT)` relative to the caller, which our
//! wrapper would otherwise hide.
//!
//! `dlclose` is not interposed (glibc's `dlclose` resolves nothing relative to its caller, so
//! it would need no naked stub, but a wrapper would still miss glibc's internal unloads):
//! got.rs reads objects only under the loader's lock and notices unloads through glibc's
//! unload count, so a scan or a slot write never touches an unloaded object and an object
//! loaded later at a freed address is scanned again.
//!
//! # Safety
//! The naked stubs only move the return address into an argument register and tail-jump;
//! the stack is untouched, so the callee sees the original caller.

use crate::got::{self, Obj};
use crate::runtime::{self, FnDesc, Runtime};
use crate::trampoline;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering::*};

type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// Address of glibc's `dlsym`, read by the naked `dlsym` stub for RTLD_NEXT (not exported,
/// so the stub can address it rip-relative).
static FRACTURE_REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);
static REAL_DLOPEN: AtomicUsize = AtomicUsize::new(0);

fn next(name: &CStr, versions: &[&CStr]) -> usize {
    for v in versions {
        // SAFETY: dlvsym with NUL-terminated names; RTLD_NEXT from our object finds libc's.
        let p = unsafe { libc::dlvsym(libc::RTLD_NEXT, name.as_ptr(), v.as_ptr()) };
        if !p.is_null() {
            return p as usize;
        }
    }
    0
}

/// Resolves glibc's dlopen and dlsym once (idempotent, callable from any thread).
pub fn init_real() {
    if FRACTURE_REAL_DLSYM.load(Acquire) == 0 {
        FRACTURE_REAL_DLSYM.store(next(c"dlsym", &[c"GLIBC_2.34", c"GLIBC_2.2.5"]), Release);
    }
    if REAL_DLOPEN.load(Acquire) == 0 {
        REAL_DLOPEN.store(next(c"dlopen", &[c"GLIBC_2.34", c"GLIBC_2.2.5"]), Release);
    }
}

pub fn real_dlsym(h: *mut c_void, name: *const c_char) -> *mut c_void {
    init_real();
    let f = FRACTURE_REAL_DLSYM.load(Acquire);
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is glibc's dlsym.
    unsafe { std::mem::transmute::<usize, DlsymFn>(f)(h, name) }
}

pub fn real_dlopen(name: *const c_char, flags: c_int) -> *mut c_void {
    init_real();
    let f = REAL_DLOPEN.load(Acquire);
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is glibc's dlopen.
    unsafe { std::mem::transmute::<usize, DlopenFn>(f)(name, flags) }
}

fn base_of(addr: usize) -> usize {
    crate::sys::dladdr(addr).map_or(0, |o| o.base)
}

/// Address of `name` (with `version`) as defined by object `o` itself, or 0.
pub fn lookup_in(o: &Obj, is_main: bool, name: &CStr, version: Option<&CStr>) -> usize {
    let h = if is_main {
        real_dlopen(std::ptr::null(), libc::RTLD_LAZY | libc::RTLD_NOLOAD)
    } else {
        let Ok(p) = CString::new(o.path.as_str()) else {
            return 0;
        };
        real_dlopen(p.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD)
    };
    if h.is_null() {
        return 0;
    }
    let a = match version {
        // SAFETY: dlvsym on a handle we hold, with NUL-terminated names.
        Some(v) => unsafe { libc::dlvsym(h, name.as_ptr(), v.as_ptr()) },
        None => real_dlsym(h, name.as_ptr()),
    } as usize;
    // SAFETY: balancing the RTLD_NOLOAD open above (it took a reference).
    unsafe { libc::dlclose(h) };
    // The executable's lookup searches the global scope; a library's must be its own symbol.
    if a != 0 && (is_main || base_of(a) == o.base) {
        a
    } else {
        0
    }
}

/// In a helper: load the object of `f` (it was loaded by the program after the zygote was
/// made), then resolve and route as `dlopen` would.
pub fn load_for(rt: &Runtime, f: &FnDesc) {
    let mut tries: Vec<String> = vec![f.object.clone()];
    if !f.object.contains('/') {
        // The program has it mapped: find the path in its maps.
        let ppid = rt.program_pid();
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{ppid}/maps")) {
            for line in maps.lines() {
                if let Some(path) = line.split_whitespace().nth(5) {
                    if path.rsplit('/').next() == Some(f.object.as_str())
                        && !tries.iter().any(|t| t == path)
                    {
                        tries.push(path.to_string());
                    }
                }
            }
        }
    }
    for t in tries {
        let Ok(c) = CString::new(t) else { continue };
        let h = real_dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !h.is_null() {
            after_load(rt);
            if f.real.load(Acquire) != 0 {
                return;
            }
        }
    }
}

/// Resolves and routes whatever was loaded since the last walk.
pub fn after_load(rt: &Runtime) {
    let _g = rt.patch_lock.lock().unwrap_or_else(|e| e.into_inner());
    let objs = got::loaded_objects();
    for e in rt.resolve(&objs) {
        error!("{e}");
    }
    rt.patch(&objs, true);
}

/// Expands the caller's DT_RUNPATH/DT_RPATH for a bare library name, as glibc would for the
/// object that called `dlopen`.
fn caller_relative(name: &CStr, caller: usize) -> Option<CString> {
    let n = name.to_str().ok()?;
    if n.contains('/') || n.is_empty() {
        return None;
    }
    let base = base_of(caller);
    let objs = got::loaded_objects();
    let (i, o) = objs.iter().enumerate().find(|(_, o)| o.base == base)?;
    let path = if i == 0 {
        runtime::exe_path()
    } else {
        o.path.clone()
    };
    let origin = std::path::Path::new(&path)
        .parent()?
        .to_string_lossy()
        .into_owned();
    for dir in o.search_path()?.split(':') {
        let dir = dir
            .replace("$ORIGIN", &origin)
            .replace("${ORIGIN}", &origin);
        let cand = format!("{dir}/{n}");
        if std::path::Path::new(&cand).exists() {
            return CString::new(cand).ok();
        }
    }
    None
}

fn dlopen_impl(name: *const c_char, flags: c_int, caller: usize) -> *mut c_void {
    let r = std::panic::catch_unwind(|| {
        let resolved = if name.is_null() {
            None
        } else {
            // SAFETY: the caller passes a NUL-terminated name.
            caller_relative(unsafe { CStr::from_ptr(name) }, caller)
        };
        let h = real_dlopen(resolved.as_ref().map_or(name, |c| c.as_ptr()), flags);
        if !h.is_null() {
            crate::reports::refresh();
            if let Some(rt) = runtime::get() {
                if rt.started() {
                    after_load(rt);
                }
            }
        }
        h
    });
    r.unwrap_or(std::ptr::null_mut())
}

fn dlsym_impl(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    let r = std::panic::catch_unwind(|| {
        let a = real_dlsym(handle, name);
        let Some(rt) = runtime::get() else { return a };
        if a.is_null() || !rt.started() || rt.detached.load(Relaxed) {
            return a;
        }
        let mut f = rt.fn_by_real(a as usize);
        if f.is_none() && !name.is_null() {
            // SAFETY: the caller passes a NUL-terminated name.
            let n = unsafe { CStr::from_ptr(name) }.to_bytes();
            if rt.fns.iter().any(|f| f.cname.to_bytes() == n) {
                after_load(rt);
                f = rt.fn_by_real(a as usize);
            }
        }
        match f {
            Some(f) if f.owner != rt.me() => trampoline::stub_addr(f.idx) as *mut c_void,
            _ => a,
        }
    });
    r.unwrap_or(std::ptr::null_mut())
}

extern "C" fn dlopen_entry(name: *const c_char, flags: c_int, caller: usize) -> *mut c_void {
    dlopen_impl(name, flags, caller)
}

extern "C" fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    dlsym_impl(handle, name)
}

/// Interposed `dlopen`: passes the caller's return address on as a third argument.
#[cfg(not(test))]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlopen(_name: *const c_char, _flags: c_int) -> *mut c_void {
    core::arch::naked_asm!("movq (%rsp), %rdx", "jmp {f}", f = sym dlopen_entry, options(att_syntax))
}

/// Interposed `dlsym`: RTLD_NEXT goes straight to glibc (which must see the real caller);
/// everything else through [`dlsym_impl`].
#[cfg(not(test))]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "cmpq $-1, %rdi",
        "jne 2f",
        "movq {real}(%rip), %rax",
        "testq %rax, %rax",
        "jz 2f",
        "jmp *%rax",
        "2:",
        "jmp {f}",
        real = sym FRACTURE_REAL_DLSYM,
        f = sym dlsym_entry,
        options(att_syntax)
    )
}
