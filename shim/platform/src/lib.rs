//! The platform: everything that names libc, the loader or the CPU. Nothing here knows what
//! a module map is, except `abi` (which turns a function's specs into a register layout).
//!
//! - `entry`: the `entry_point!` macro: extern "C" entries that never unwind into C.
//! - `sys`: safe wrappers of libc calls shared by the layers above.
//! - `loader`: glibc's real `dlopen`/`dlsym`, symbol lookup in one object.
//! - `got`: the loader's object list and GOT slots (reading, patching under a guard).
//! - `abi`: the x86_64 SysV call frame the stubs save and replay.
//! - `stubs`: per-function entry stubs and frame replay, in assembly.
//! - `vm`: the address space page by page (reservations, fetched pages, a new stack).

// Unsafe code only in the files that opt back in, each with a `# Safety` section.
#![deny(unsafe_code)]

pub mod abi;
#[macro_use]
pub mod entry;
pub mod got;
pub mod loader;
pub mod stubs;
pub mod sys;
pub mod vm;
