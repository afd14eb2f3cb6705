//! Rx allocator changes in a helper (`env.malloc`: pad, zero_fill, delay_free), applied by
//! routing the GOT slots of `malloc`, `calloc`, `realloc` and `free` of the helper's objects
//! (all but libc, the loader and ourselves) to the wrappers below. `perturb` is glibc's own
//! `mallopt(M_PERTURB)` too, but glibc skips it for blocks served by its per-thread cache
//! (most small blocks), so the wrappers apply it themselves: fresh blocks are filled with
//! `perturb ^ 0xff`, freed ones with `perturb`. Only helpers do this: the program's allocator
//! is untouched and pays nothing.
//!
//! # Safety
//! The wrappers are called by C code as the C allocator: they take no lock that allocates,
//! never panic, and forward to glibc's own functions. The delay queue is a fixed array guarded
//! by a spin flag (no allocation).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

static PAD: AtomicUsize = AtomicUsize::new(0);
static ZERO: AtomicBool = AtomicBool::new(false);
static DELAY: AtomicUsize = AtomicUsize::new(0);
/// Perturb byte + 1 (0: off).
static PERTURB: AtomicUsize = AtomicUsize::new(0);

const RING: usize = 4096;
static QUEUE: [AtomicUsize; RING] = [const { AtomicUsize::new(0) }; RING];
static HEAD: AtomicUsize = AtomicUsize::new(0);
static BUSY: AtomicBool = AtomicBool::new(false);

entry_point! {
fn rx_malloc(n: usize) -> *mut libc::c_void = std::ptr::null_mut(); {
    let pad = PAD.load(Relaxed);
    // SAFETY: glibc's malloc.
    let p = unsafe { libc::malloc(n.saturating_add(pad)) };
    if !p.is_null() && ZERO.load(Relaxed) {
        // SAFETY: p has n + pad bytes.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0, n.saturating_add(pad)) };
    } else if !p.is_null() && PERTURB.load(Relaxed) != 0 {
        let b = (PERTURB.load(Relaxed) - 1) as u8 ^ 0xff;
        // SAFETY: p has n + pad bytes.
        unsafe { std::ptr::write_bytes(p as *mut u8, b, n.saturating_add(pad)) };
    }
    p
}
}

entry_point! {
fn rx_calloc(n: usize, size: usize) -> *mut libc::c_void = std::ptr::null_mut(); {
    let Some(total) = n.checked_mul(size) else {
        return std::ptr::null_mut();
    };
    // SAFETY: glibc's calloc (zeroed already).
    unsafe { libc::calloc(1, total.saturating_add(PAD.load(Relaxed))) }
}
}

entry_point! {
fn rx_realloc(p: *mut libc::c_void, n: usize) -> *mut libc::c_void = std::ptr::null_mut(); {
    // SAFETY: glibc's realloc on a block of glibc's.
    unsafe { libc::realloc(p, n.saturating_add(PAD.load(Relaxed))) }
}
}

entry_point! {
fn rx_free(p: *mut libc::c_void) {
    let perturb = PERTURB.load(Relaxed);
    if !p.is_null() && perturb != 0 {
        // SAFETY: p is a live block of glibc's; malloc_usable_size bytes are ours to write.
        unsafe {
            std::ptr::write_bytes(
                p as *mut u8,
                (perturb - 1) as u8,
                libc::malloc_usable_size(p),
            )
        };
    }
    let delay = DELAY.load(Relaxed).min(RING);
    if p.is_null() || delay == 0 {
        // SAFETY: glibc's free.
        unsafe { libc::free(p) };
        return;
    }
    while BUSY.swap(true, Acquire) {
        std::hint::spin_loop();
    }
    let h = HEAD.load(Relaxed);
    let slot = h % delay;
    let old = QUEUE[slot].swap(p as usize, Relaxed);
    HEAD.store(h.wrapping_add(1), Relaxed);
    BUSY.store(false, Release);
    if old != 0 {
        // SAFETY: a block freed `delay` frees ago, now really freed.
        unsafe { libc::free(old as *mut libc::c_void) };
    }
}
}

/// Applies `m` in this helper: mallopt for perturb, GOT routing for the rest.
pub fn apply(m: &module_map::Malloc) {
    if let Some(p) = m.perturb {
        // SAFETY: mallopt is glibc's documented knob; M_PERTURB = -6.
        unsafe { libc::mallopt(-6, libc::c_int::from(p)) };
    }
    let pad = m.pad.unwrap_or(0) as usize;
    let zero = m.zero_fill.unwrap_or(false);
    let delay = m.delay_free.unwrap_or(0) as usize;
    if pad == 0 && !zero && delay == 0 && m.perturb.is_none() {
        return;
    }
    PERTURB.store(m.perturb.map_or(0, |p| p as usize + 1), Relaxed);
    PAD.store(pad, Relaxed);
    ZERO.store(zero, Relaxed);
    DELAY.store(delay, Relaxed);
    let maps = crate::platform::got::Maps::read();
    let me = crate::plan::runtime::get()
        .map(|r| r.self_base)
        .unwrap_or(0);
    for o in crate::platform::got::loaded_objects() {
        let file = o.path.rsplit('/').next().unwrap_or("");
        if o.base == me
            || file.starts_with("libc.so")
            || file.starts_with("ld-linux")
            || file.starts_with("libc-")
        {
            continue;
        }
        o.for_each_import(|slot, name, _| {
            let target = match name {
                "malloc" => rx_malloc as *const () as usize,
                "calloc" => rx_calloc as *const () as usize,
                "realloc" => rx_realloc as *const () as usize,
                "free" => rx_free as *const () as usize,
                _ => return,
            };
            let Some(prot) = crate::platform::got::prot_at(&maps, slot) else {
                return;
            };
            // SAFETY: `slot` is a JUMP_SLOT/GLOB_DAT slot of `o` handed out by
            // for_each_import, whose walk keeps `o` loaded while this runs; `prot` comes from
            // /proc/self/maps. The wrappers stand in for glibc's allocator for the helper's
            // lifetime, so the patch is kept.
            if let Some(p) = unsafe { crate::platform::got::patch_slot(slot, prot, target) } {
                p.keep();
            }
        });
    }
}
