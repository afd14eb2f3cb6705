//! Loaded objects and their GOT slots: finding JUMP_SLOT and GLOB_DAT relocations of mapped
//! functions in every loaded object and pointing them at our stubs (or back at the real
//! function in the process that owns it).
//!
//! - `objects`: the loaded-object walk (`dl_iterate_phdr`): [`Obj`], [`loaded_objects`],
//!   [`Scanned`].
//! - `elf`: one object's dynamic tables: relocations, symbol names and versions, build id.
//! - `maps`: page protections from `/proc/self/maps` ([`Maps`], [`prot_at`]).
//! - `patch`: writing a GOT slot ([`patch_slot`], [`Patch`]) under its guard
//!   ([`while_loaded`]).
//!
//! Each file that holds unsafe code says in its own Safety section which part of the
//! argument below it relies on.
//!
//! # Safety
//! - Every read of a loaded object's memory (program headers, dynamic section, symbol,
//!   string, version and relocation tables, notes) happens inside a `dl_iterate_phdr`
//!   callback (`objects::walk`). glibc holds `dl_load_write_lock` for the whole
//!   iteration, and `dlclose` unmaps and unlinks an object only while it holds that same lock
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

mod elf;
mod maps;
mod objects;
mod patch;

pub use maps::{prot_at, Maps};
pub use objects::{loaded_objects, Obj, Scanned};
pub use patch::{patch_slot, while_loaded};
// What `patch_slot` returns: callers keep it without naming the type.
#[allow(unused_imports)]
pub use patch::Patch;

use std::collections::HashMap;

/// Symbols to route: name → candidate function indexes (several when versions differ).
pub type Wanted<'a> = HashMap<&'a str, Vec<usize>, crate::hash::BuildFx>;
