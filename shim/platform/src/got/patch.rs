//! Writing a GOT slot: [`patch_slot`] and the [`Patch`] guard that puts the slot back, and
//! [`while_loaded`], which runs a write only while the slot's object is the one a listing saw.
//!
//! # Safety
//! - A GOT slot is written only through [`patch_slot`] (an `unsafe fn`: the caller vouches
//!   that the address is a slot the scan found), with an atomic store after making its page
//!   writable; the page's protection is put back to what `/proc/self/maps` said it was. The
//!   [`Patch`] it returns restores the slot when dropped or on [`Patch::restore`] (only if
//!   the slot still holds our value); routing keeps it for the process's lifetime
//!   ([`Patch::keep`]).
//! - Stores are serialised by a spin lock ([`WRITING`]) held across make-writable, store,
//!   protect-again, so two writers on one page never protect it under each other's store.
//! - `dlclose` is not interposed: [`while_loaded`] runs its closure inside a walk (the
//!   loader's lock held) only when the address lies in a PT_LOAD segment of a listed object
//!   and glibc's unload count is still the one of the listing the slot was found in, so a
//!   slot of an unloaded object is never written. The closure must not call into the loader
//!   (see [`walk`] and the `got` module's Safety section).

#![allow(unsafe_code)]

use super::objects::{phdrs, walk};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// x86_64's page size (the only target: the stubs are x86_64 assembly).
const PAGE: usize = 4096;

/// Runs `f` while the loader's lock is held, if `addr..addr + 8` lies in a PT_LOAD segment of
/// a loaded object and no object was unloaded since the listing that counted `unloads` (so
/// the object there is the one that listing saw). None otherwise, without running `f`.
/// `f` must not call into the loader (see the `objects` module's Safety section).
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
/// - `slot` is a JUMP_SLOT / GLOB_DAT slot a scan found
///   ([`Obj::for_each_import`](super::Obj::for_each_import)), hence 8-aligned and owned by the
///   loader's relocation of that object: nothing but ld.so and us writes it, and the program
///   only calls through it.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::got::{loaded_objects, prot_at, Maps};

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
}
