//! The platform: everything that names libc, the loader or the CPU. Nothing here knows what
//! a module map is, except `abi` (which turns a function's specs into a register layout).
//!
//! - `entry`: the `entry_point!` macro: extern "C" entries that never unwind into C.
//! - `sys`: safe wrappers of libc calls shared by the layers above.
//! - `clock`: a TSC clock for the call path, scaled against CLOCK_MONOTONIC.
//! - `confine`: Landlock's version, seccomp, no_new_privs (the sandbox's syscalls).
//! - `hash`: a fast hasher for the tables of names matched on every object load.
//! - `futex`: sleeping on and waking words of shared mappings.
//! - `fs`: the few file calls of the crash spool writer, async-signal-safe.
//! - `process`: fork, wait, pidfds, process groups, exec, limits, the zygote's socket.
//! - `signal`: handlers through glibc's real `sigaction`, default actions, alternate stacks.
//! - `loader`: glibc's real `dlopen`/`dlsym`, symbol lookup in one object.
//! - `got`: the loader's object list and GOT slots (reading, patching under a guard).
//! - `abi`: the x86_64 SysV call frame the stubs save and replay.
//! - `stubs`: per-function entry stubs and frame replay, in assembly.
//! - `vm`: the address space page by page (reservations, fetched pages, a new stack).

// Unsafe code only in the files that opt back in, each with a `# Safety` section.
#![deny(unsafe_code)]

pub mod abi;
pub mod clock;
pub mod confine;
pub mod fs;
pub mod futex;
#[macro_use]
pub mod entry;
pub mod got;
pub mod hash;
pub mod loader;
pub mod process;
pub mod signal;
pub mod stubs;
pub mod sys;
pub mod vm;
