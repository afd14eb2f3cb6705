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
//! platform/got/ reads objects only under the loader's lock and notices unloads through glibc's
//! unload count, so a scan or a slot write never touches an unloaded object and an object
//! loaded later at a freed address is scanned again.
//!
//! # Safety
//! The naked stubs only move the return address into an argument register and tail-jump;
//! the stack is untouched, so the callee sees the original caller.

#![allow(unsafe_code)]

use crate::plan::load::after_load;
use crate::plan::runtime;
use crate::platform::got;
use crate::platform::loader::{base_of, real_dlopen, real_dlsym};
use crate::platform::stubs;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::Ordering::*;

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

entry_point! {
fn dlopen_entry(name: *const c_char, flags: c_int, caller: usize) -> *mut c_void = std::ptr::null_mut(); {
        let resolved = if name.is_null() {
            None
        } else {
            // SAFETY: the caller passes a NUL-terminated name.
            caller_relative(unsafe { CStr::from_ptr(name) }, caller)
        };
        // SAFETY: the caller's NUL-terminated name (or NULL), or our own resolved copy.
        let h = unsafe { real_dlopen(resolved.as_ref().map_or(name, |c| c.as_ptr()), flags) };
        if !h.is_null() {
            crate::observe::reports::refresh();
            if let Some(rt) = runtime::get() {
                if rt.started() {
                    after_load(rt);
                }
            }
        }
        h
}
}

entry_point! {
fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void = std::ptr::null_mut(); {
        // SAFETY: the caller's handle and NUL-terminated name, passed on as they came.
        let a = unsafe { real_dlsym(handle, name) };
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
            Some(f) if f.owner != rt.me() => stubs::stub_addr(f.idx) as *mut c_void,
            _ => a,
        }
}
}

/// Interposed `dlopen`: passes the caller's return address on as a third argument.
#[cfg(not(test))]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlopen(_name: *const c_char, _flags: c_int) -> *mut c_void {
    core::arch::naked_asm!("movq (%rsp), %rdx", "jmp {f}", f = sym dlopen_entry, options(att_syntax))
}

/// Interposed `dlsym`: RTLD_NEXT goes straight to glibc (which must see the real caller);
/// everything else through [`dlsym_entry`].
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
        real = sym crate::platform::loader::FRACTURE_REAL_DLSYM,
        f = sym dlsym_entry,
        options(att_syntax)
    )
}
