//! System calls of an on-demand module on program memory it has not touched yet: the kernel
//! does not fault for us (it fails with EFAULT), so the module objects' GOT slots of the usual
//! I/O functions go to wrappers that touch the buffers and names first (each page once, which
//! fetches it through the fault path of `call::pages`), then call glibc's own function.
//! Only helpers of on-demand processes do this; only objects other than libc, the loader and
//! ourselves are routed.
//!
//! # Safety
//! The wrappers are called by C code with the C signatures of the functions they stand for;
//! they read one byte per page of each buffer the call names (the range the caller gives, as
//! the real function would), never write, never allocate, never panic.

#![allow(unsafe_code)]

use libc::{c_char, c_int, c_void, size_t, ssize_t};

/// Makes every page of `[p, p + n)` that is the program's present (fetched), so that the
/// kernel can read or write it.
///
/// # Safety
/// None beyond the call's own: nothing is read here (`ensure` fetches without touching).
unsafe fn touch(p: *const c_void, n: size_t) {
    if p.is_null() || n == 0 {
        return;
    }
    let start = p as u64;
    crate::call::pages::helper::ensure_range(start, start.saturating_add(n as u64));
}

/// As [`touch`] for a NUL-terminated string: page by page until its NUL.
///
/// # Safety
/// `s` is NULL or what the caller hands to a function that reads a string there.
unsafe fn touch_str(s: *const c_char) {
    if s.is_null() {
        return;
    }
    let mut a = s as u64;
    loop {
        if !crate::call::pages::helper::ensure(a) {
            return;
        }
        let page_end = (a & !4095) + 4096;
        // SAFETY: the page is present now (ours, or fetched); scanning stops at its end.
        let len = unsafe {
            crate::platform::vm::c_str_len_within(a as *const c_char, (page_end - a) as usize)
        };
        if (a + len as u64) < page_end {
            return;
        }
        a = page_end;
    }
}

macro_rules! wrap {
    ($name:ident ($($a:ident: $t:ty),*) -> $r:ty = $err:expr; |$($b:ident),*| $pre:block => $real:path) => {
        entry_point! {
        fn $name($($a: $t),*) -> $r = $err; {
            let ($($b,)*) = ($($a,)*);
            // SAFETY: the arguments are those of the C function (module contract).
            unsafe { $pre };
            // SAFETY: glibc's own function with the caller's arguments.
            unsafe { $real($($a),*) }
        }
        }
    };
}

wrap!(t_read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t = -1; |_fd, buf, n| { touch(buf, n) } => libc::read);
wrap!(t_write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t = -1; |_fd, buf, n| { touch(buf, n) } => libc::write);
wrap!(t_pread(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off_t) -> ssize_t = -1; |_fd, buf, n, _off| { touch(buf, n) } => libc::pread);
wrap!(t_pwrite(fd: c_int, buf: *const c_void, n: size_t, off: libc::off_t) -> ssize_t = -1; |_fd, buf, n, _off| { touch(buf, n) } => libc::pwrite);
wrap!(t_open(path: *const c_char, flags: c_int, mode: libc::c_uint) -> c_int = -1; |path, _f, _m| { touch_str(path) } => libc::open);
wrap!(t_openat(dir: c_int, path: *const c_char, flags: c_int, mode: libc::c_uint) -> c_int = -1; |_d, path, _f, _m| { touch_str(path) } => libc::openat);
wrap!(t_stat(path: *const c_char, st: *mut libc::stat) -> c_int = -1; |path, st| { touch_str(path); touch(st.cast(), std::mem::size_of::<libc::stat>()) } => libc::stat);
wrap!(t_lstat(path: *const c_char, st: *mut libc::stat) -> c_int = -1; |path, st| { touch_str(path); touch(st.cast(), std::mem::size_of::<libc::stat>()) } => libc::lstat);
wrap!(t_fstat(fd: c_int, st: *mut libc::stat) -> c_int = -1; |_fd, st| { touch(st.cast(), std::mem::size_of::<libc::stat>()) } => libc::fstat);
wrap!(t_access(path: *const c_char, mode: c_int) -> c_int = -1; |path, _m| { touch_str(path) } => libc::access);
wrap!(t_readlink(path: *const c_char, buf: *mut c_char, n: size_t) -> ssize_t = -1; |path, buf, n| { touch_str(path); touch(buf.cast(), n) } => libc::readlink);
wrap!(t_fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE = std::ptr::null_mut(); |path, mode| { touch_str(path); touch_str(mode) } => libc::fopen);
wrap!(t_fread(buf: *mut c_void, size: size_t, n: size_t, f: *mut libc::FILE) -> size_t = 0; |buf, size, n, _f| { touch(buf, size.saturating_mul(n)) } => libc::fread);
wrap!(t_fwrite(buf: *const c_void, size: size_t, n: size_t, f: *mut libc::FILE) -> size_t = 0; |buf, size, n, _f| { touch(buf, size.saturating_mul(n)) } => libc::fwrite);

/// The wrapper for an imported name, if there is one.
fn wrapper(name: &str) -> Option<usize> {
    Some(match name {
        "read" => t_read as *const () as usize,
        "write" => t_write as *const () as usize,
        "pread" | "pread64" => t_pread as *const () as usize,
        "pwrite" | "pwrite64" => t_pwrite as *const () as usize,
        "open" | "open64" => t_open as *const () as usize,
        "openat" | "openat64" => t_openat as *const () as usize,
        "stat" | "stat64" => t_stat as *const () as usize,
        "lstat" | "lstat64" => t_lstat as *const () as usize,
        "fstat" | "fstat64" => t_fstat as *const () as usize,
        "access" => t_access as *const () as usize,
        "readlink" => t_readlink as *const () as usize,
        "fopen" | "fopen64" => t_fopen as *const () as usize,
        "fread" => t_fread as *const () as usize,
        "fwrite" => t_fwrite as *const () as usize,
        _ => return None,
    })
}

/// Routes the I/O imports of every loaded object but libc, the loader and ourselves to the
/// wrappers (idempotent: a slot routed already points at a wrapper and is left).
pub fn route(self_base: usize) {
    let maps = crate::platform::got::Maps::read();
    for o in crate::platform::got::loaded_objects() {
        let file = o.path.rsplit('/').next().unwrap_or("");
        if o.base == self_base
            || file.starts_with("libc.so")
            || file.starts_with("ld-linux")
            || file.starts_with("libc-")
        {
            continue;
        }
        o.for_each_import(|slot, name, _| {
            let Some(target) = wrapper(name) else { return };
            let Some(prot) = crate::platform::got::prot_at(&maps, slot) else {
                return;
            };
            // SAFETY: `slot` is a JUMP_SLOT/GLOB_DAT slot of `o` handed out by
            // for_each_import, whose walk keeps `o` loaded while this runs; `prot` comes from
            // /proc/self/maps. The wrappers stand in for glibc's functions for the helper's
            // lifetime, so the patch is kept.
            if let Some(p) = unsafe { crate::platform::got::patch_slot(slot, prot, target) } {
                p.keep();
            }
        });
    }
}
