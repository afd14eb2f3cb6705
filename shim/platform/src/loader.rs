//! The dynamic loader's real entry points (ours interpose `dlopen` and `dlsym`, see dl.rs) and
//! looking a symbol up in the object that defines it.
//!
//! # Safety
//! glibc's `dlopen`/`dlsym` are found once with `dlvsym(RTLD_NEXT)` and called through
//! pointers of their C signatures; every name passed is NUL-terminated.

#![allow(unsafe_code)]

use crate::got::Obj;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering::*};

type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// Address of glibc's `dlsym`, read by the naked `dlsym` stub for RTLD_NEXT (not exported,
/// so the stub can address it rip-relative).
pub static FRACTURE_REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);
static REAL_DLOPEN: AtomicUsize = AtomicUsize::new(0);

/// The address of `name` in the objects loaded after ours (glibc's, for names we
/// interpose), at the first of `versions` that has it; 0 when none.
pub fn next_symbol(name: &CStr, versions: &[&CStr]) -> usize {
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
        FRACTURE_REAL_DLSYM.store(
            next_symbol(c"dlsym", &[c"GLIBC_2.34", c"GLIBC_2.2.5"]),
            Release,
        );
    }
    if REAL_DLOPEN.load(Acquire) == 0 {
        REAL_DLOPEN.store(
            next_symbol(c"dlopen", &[c"GLIBC_2.34", c"GLIBC_2.2.5"]),
            Release,
        );
    }
}

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);

fn resolved(slot: &AtomicUsize, name: &CStr) -> usize {
    let mut f = slot.load(Acquire);
    if f == 0 {
        f = next_symbol(name, &[c"GLIBC_2.2.5"]);
        slot.store(f, Release);
    }
    f
}

/// glibc's `sigaction` (the shim interposes `sigaction` while the program reads module
/// memory through faults: see `call::pages::peek`). Every sigaction of the shim's own goes
/// through this.
///
/// # Safety
/// As `sigaction(2)`: `act` and `old` are NULL or valid.
pub unsafe fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let f = resolved(&REAL_SIGACTION, c"sigaction");
    if f == 0 {
        return -1;
    }
    // SAFETY: f is glibc's sigaction; the arguments are as the caller guarantees.
    unsafe { std::mem::transmute::<usize, SigactionFn>(f)(sig, act, old) }
}

// The start routine as an address: a NULL one is passed on for glibc to refuse (a function
// pointer type would make it undefined behaviour here).
type PthreadCreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    *mut libc::c_void,
    *mut libc::c_void,
) -> c_int;
static REAL_PTHREAD_CREATE: AtomicUsize = AtomicUsize::new(0);

/// glibc's `pthread_create` (the shim interposes it to tell a module's threads from its own:
/// see `call::pages::helper`). EAGAIN when it cannot be found.
///
/// # Safety
/// As `pthread_create(3)`.
pub unsafe fn real_pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: *mut libc::c_void,
    arg: *mut libc::c_void,
) -> c_int {
    let mut f = REAL_PTHREAD_CREATE.load(Acquire);
    if f == 0 {
        f = next_symbol(c"pthread_create", &[c"GLIBC_2.34", c"GLIBC_2.2.5"]);
        REAL_PTHREAD_CREATE.store(f, Release);
    }
    if f == 0 {
        return libc::EAGAIN;
    }
    // SAFETY: f is glibc's pthread_create; the arguments are as the caller guarantees.
    unsafe { std::mem::transmute::<usize, PthreadCreateFn>(f)(thread, attr, start, arg) }
}

/// glibc's `signal`.
///
/// # Safety
/// As `signal(2)`.
pub unsafe fn real_signal(sig: c_int, h: libc::sighandler_t) -> libc::sighandler_t {
    let f = resolved(&REAL_SIGNAL, c"signal");
    if f == 0 {
        return libc::SIG_ERR;
    }
    // SAFETY: f is glibc's signal; the arguments are as the caller guarantees.
    unsafe { std::mem::transmute::<usize, SignalFn>(f)(sig, h) }
}

/// glibc's `dlsym`.
///
/// # Safety
/// `h` is a handle `dlopen` gave or a pseudo-handle (`RTLD_DEFAULT`, `RTLD_NEXT`); `name` is a
/// NUL-terminated string.
pub unsafe fn real_dlsym(h: *mut c_void, name: *const c_char) -> *mut c_void {
    init_real();
    let f = FRACTURE_REAL_DLSYM.load(Acquire);
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is glibc's dlsym; the arguments are as the caller guarantees.
    unsafe { std::mem::transmute::<usize, DlsymFn>(f)(h, name) }
}

/// glibc's `dlopen`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
pub unsafe fn real_dlopen(name: *const c_char, flags: c_int) -> *mut c_void {
    init_real();
    let f = REAL_DLOPEN.load(Acquire);
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is glibc's dlopen; `name` is as the caller guarantees.
    unsafe { std::mem::transmute::<usize, DlopenFn>(f)(name, flags) }
}

pub fn base_of(addr: usize) -> usize {
    crate::sys::dladdr(addr).map_or(0, |o| o.base)
}

/// Address of `name` (with `version`) as defined by object `o` itself, or 0.
pub fn lookup_in(o: &Obj, is_main: bool, name: &CStr, version: Option<&CStr>) -> usize {
    let h = if is_main {
        // SAFETY: NULL names the executable.
        unsafe { real_dlopen(std::ptr::null(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) }
    } else {
        let Ok(p) = CString::new(o.path.as_str()) else {
            return 0;
        };
        dlopen_name(&p, libc::RTLD_LAZY | libc::RTLD_NOLOAD)
    };
    if h.is_null() {
        return 0;
    }
    let a = match version {
        // SAFETY: dlvsym on a handle we hold, with NUL-terminated names.
        Some(v) => unsafe { libc::dlvsym(h, name.as_ptr(), v.as_ptr()) },
        // SAFETY: a handle we hold, a NUL-terminated name.
        None => unsafe { real_dlsym(h, name.as_ptr()) },
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

/// glibc's `dlopen` of a name we own.
pub fn dlopen_name(name: &std::ffi::CStr, flags: c_int) -> *mut c_void {
    // SAFETY: `name` is a NUL-terminated string (a CStr).
    unsafe { real_dlopen(name.as_ptr(), flags) }
}
