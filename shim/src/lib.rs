//! libfracture.so: the preloaded library of fracture.
//!
//! At load it reads the map (`FRACTURE_CONFIG`); if the map applies to this executable and
//! isolates something, then just before `main` (through an interposed `__libc_start_main`) it
//! routes the GOT slots of mapped functions to per-function stubs, forks the zygote and starts
//! one helper per process of the map. A map that does not apply, or isolates nothing, leaves
//! the program untouched (no slot is written, no process started).
//!
//! Unsafe code lives in the platform layer (the `fracture-platform` crate, `shim/platform`:
//! libc wrappers, GOT slots, the loader, assembly stubs), the shared memory (the
//! `fracture-transport` crate, `shim/transport`), the fork and exec paths
//! (`supervise/zygote.rs`, `supervise/helper.rs`), the dispatcher's frame access
//! (`call/`), the loader entry points (`dl.rs`) and the entry points below; each
//! file says which invariants it keeps, and every block has a `// SAFETY:` comment (denied
//! otherwise by the workspace lints). No panic crosses into the host: every entry point
//! catches unwinding.

// Unit tests build without the interposed entry points (a test binary must not wrap its own
// __libc_start_main), which leaves the code behind them unused there.
#![cfg_attr(test, allow(dead_code))]
// Unsafe code only in the files that opt back in, each with a `# Safety` section.
#![deny(unsafe_code)]

// Layers, dependencies pointing down only (see README "Layout"): the root (entry.rs and
// dl.rs: the entry points, wiring the hooks) -> policy -> supervise -> call -> plan ->
// transport -> platform; observe (log, stats) is a leaf anyone may call.
// The bottom two layers are crates of their own (shim/platform, shim/transport): Cargo keeps
// their imports pointing down; the paths `crate::platform::..`/`crate::transport::..` stay.
#[macro_use]
extern crate fracture_platform;
pub(crate) use fracture_platform as platform;
pub(crate) use fracture_transport as transport;
#[macro_use]
mod observe;

mod call;
mod dl;
mod entry;
#[cfg(test)]
mod layers;
mod plan;
mod policy;
mod supervise;
