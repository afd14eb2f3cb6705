//! Crash reports for the quarantine database (`FRACTURE_REPORTS`).
//!
//! The program cannot run SQLite from a fatal-signal handler, so the shim appends one JSON
//! line per record to a local spool (`<db>.spool/<pid>-<ns>.jsonl` beside a SQLite database,
//! `FRACTURE_SPOOL` or `$XDG_STATE_HOME/fracture/fleet.spool` for a `postgresql://` store:
//! `module_map::vars::Reports`), holding a shared `flock` on its spool file for its lifetime;
//! the launcher moves the spool into the store (the `quarantine` crate); the shim never
//! touches a network. Records: every crash, hang, give-up
//! and mismatch of an isolated call, a crash of the program itself (also when nothing is
//! isolated: the optimistic strategy needs that first fault), and a run summary at exit.
//!
//! Everything that runs in a signal handler here is async-signal-safe: records are formatted
//! into a stack buffer, paths were prepared at start as C strings, the object table (with
//! the GOT slots of the mapped functions) is an immutable snapshot behind an atomic pointer,
//! and memory is read through `process_vm_readv`, which fails instead of faulting.
//!
//! A record is one line of at most [`LINE_MAX`] bytes, always valid JSON: long strings are
//! cut (ending in `...`), and a record that still does not fit loses its last fields and
//! says `"truncated":true`. The spool directory is created 0700 and its files 0600: records
//! hold paths, arguments and addresses of the user's programs.
//!
//! The program's fault handler runs on an alternate signal stack, so that a stack overflow is
//! recorded too. Only the thread that loads the shim (the main thread) gets one: threads the
//! program starts have none (glibc gives them none and the shim interposes nothing on
//! `pthread_create`), so a stack overflow in such a thread still kills the program unrecorded;
//! any other fault there is recorded on the thread's own stack, as before.
//!
//! The parts: the object table and what `init` prepared (here), the record writer and the
//! spool file (`spool`), and the stack scan and the program's fault handler (`crash`).
//!
//! # Safety
//! The crash handler runs in a signal handler: it uses only a preallocated buffer and
//! `write`/`open`/`rename` system calls; stacks are read with `process_vm_readv`, so a bad stack
//! pointer costs a failed call, not a fault.
//!
//! In this file: the object table is leaked, never freed, so a non-null table pointer stays
//! valid for the life of the process; `getpid` has no preconditions.

#![allow(unsafe_code)]

mod crash;
mod line;
mod spool;

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering::*};
use std::sync::OnceLock;

use crash::install_handler;
pub use crash::{altstack_for_this_thread, pc_sp, scan_stack};
pub use spool::{event, run_summary, Event};
// Public as before the split, though no other module names them today.
#[allow(unused_imports)]
pub use line::{Line, LINE_MAX};

pub use crate::transport::region::MAX_FRAMES;
// Every `crate::` path of this module is named in this file, which the layering test
// (layers.rs) reads; the submodules name them through `super`.
use crate::plan::runtime::Runtime;

/// A loaded object: its executable ranges and the map module it belongs to ("main": none).
struct ObjInfo {
    text: Vec<(usize, usize)>,
    base: usize,
    path: String,
    module: String,
    /// More than one module of the map names this object (then the symbol decides).
    shared: bool,
}

struct Table {
    objs: Vec<ObjInfo>,
    /// GOT slots of mapped functions in every loaded object, sorted by address: (slot address,
    /// index in `Setup::fns`). Lets the fault handler name the mapped function whose call is
    /// in progress from a return address alone (no symbols needed).
    slots: Vec<(usize, usize)>,
}

/// A mapped function, as the map names it.
struct MappedFn {
    module: String,
    symbol: String,
    version: Option<String>,
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());

struct Setup {
    /// Directories to create, outermost first, ending with the spool directory.
    dirs: Vec<CString>,
    /// The spool directory with a trailing '/'.
    spool: Vec<u8>,
    program: String,
    build_id: String,
    /// `FRACTURE_DEPLOYMENT`, else the host name (read once, at load).
    deployment: String,
    /// Module objects as the map names them: (module, object).
    modules: Vec<(String, String)>,
    fns: Vec<MappedFn>,
}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// The program's pid: the zygote and helpers inherit the fault handler, and must not report
/// their own deaths as the program's.
static PROGRAM_PID: AtomicI32 = AtomicI32::new(0);

/// Program side, at load: prepares paths and the object table and installs the fatal-signal
/// handler that records a crash of the program itself. `map_modules`: the map's modules.
pub fn init(exe: &str, map_modules: &[module_map::Module]) {
    let modules = map_modules
        .iter()
        .map(|m| (m.name.clone(), m.object.clone()))
        .collect();
    let fns = map_modules
        .iter()
        .flat_map(|m| {
            m.functions.iter().map(|f| MappedFn {
                module: m.name.clone(),
                symbol: f.symbol().to_string(),
                version: f.version().map(str::to_string),
            })
        })
        .collect();
    // With reports off, the object table is still built (profiles need it); nothing is
    // written.
    let spool = module_map::vars::Reports::from_env().spool_dir();
    let mut dirs = Vec::new();
    let mut acc = std::path::PathBuf::new();
    for c in spool.iter().flat_map(|s| s.components()) {
        acc.push(c);
        if let Ok(c) = CString::new(acc.as_os_str().as_encoded_bytes()) {
            dirs.push(c);
        }
    }
    let objs = crate::platform::got::loaded_objects();
    let build_id = objs
        .first()
        .map(|o| o.build_id.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default();
    let sp = spool
        .map(|s| {
            let mut b = s.into_os_string().into_encoded_bytes();
            b.push(b'/');
            b
        })
        .unwrap_or_default();
    let _ = SETUP.set(Setup {
        dirs,
        spool: sp,
        program: exe.to_string(),
        build_id,
        deployment: module_map::vars::deployment(),
        modules,
        fns,
    });
    refresh_with(&objs, exe);
    PROGRAM_PID.store(crate::platform::sys::getpid(), Release);
    install_handler();
}

/// Rebuilds the object table (after a dlopen).
pub fn refresh() {
    if let Some(s) = SETUP.get() {
        refresh_with(&crate::platform::got::loaded_objects(), &s.program);
    }
}

fn refresh_with(objs: &[crate::platform::got::Obj], exe: &str) {
    let Some(s) = SETUP.get() else { return };
    let t = Table {
        objs: objs
            .iter()
            .enumerate()
            .map(|(i, o)| ObjInfo {
                text: o.text.clone(),
                base: o.base,
                path: if i == 0 {
                    exe.to_string()
                } else {
                    o.path.clone()
                },
                module: s
                    .modules
                    .iter()
                    .find(|(_, obj)| o.matches(obj, i == 0))
                    .map(|(m, _)| m.clone())
                    .unwrap_or_else(|| "main".to_string()),
                shared: s
                    .modules
                    .iter()
                    .filter(|(_, obj)| o.matches(obj, i == 0))
                    .count()
                    > 1,
            })
            .collect(),
        slots: mapped_slots(objs, &s.fns),
    };
    // The previous table is leaked: a signal handler may be reading it.
    TABLE.store(Box::into_raw(Box::new(t)), Release);
}

/// Every JUMP_SLOT / GLOB_DAT slot of a mapped function in `objs` (versions matched as the
/// router matches them), sorted by address.
///
/// An object's slots are found once: the table is rebuilt on every `dlopen` (python loads
/// dozens of extension modules at start, and libpython alone has thousands of imports), so
/// the slots of objects listed before (same base, no unload since) are taken from the last
/// build.
fn mapped_slots(objs: &[crate::platform::got::Obj], fns: &[MappedFn]) -> Vec<(usize, usize)> {
    /// (object base, unloads when listed, its slots).
    type Known = Vec<(usize, u64, Vec<(usize, usize)>)>;
    static KNOWN: std::sync::Mutex<Known> = std::sync::Mutex::new(Vec::new());
    // Never waited for (a child forked while another thread held it would wait for good):
    // when it is busy, this build scans every object, as it would without the cache.
    let mut guard = match KNOWN.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let mut none = Known::new();
    let known: &mut Known = guard.as_deref_mut().unwrap_or(&mut none);
    let mut by_name: std::collections::HashMap<&str, Vec<usize>, crate::platform::hash::BuildFx> =
        Default::default();
    for (i, f) in fns.iter().enumerate() {
        by_name.entry(f.symbol.as_str()).or_default().push(i);
    }
    let mut slots = Vec::new();
    let mut now: Known = Vec::with_capacity(objs.len());
    for o in objs {
        if let Some(k) = known
            .iter_mut()
            .find(|(b, u, _)| *b == o.base && *u == o.unloads)
        {
            slots.extend_from_slice(&k.2);
            now.push((o.base, o.unloads, std::mem::take(&mut k.2)));
            continue;
        }
        let mut mine = Vec::new();
        o.for_each_import(|slot, name, ver| {
            let Some(cands) = by_name.get(name) else {
                return;
            };
            let hit = cands
                .iter()
                .copied()
                .find(|&i| match (&fns[i].version, ver) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                });
            if let Some(i) = hit {
                mine.push((slot, i));
            }
        });
        slots.extend_from_slice(&mine);
        now.push((o.base, o.unloads, mine));
    }
    *known = now;
    slots.sort_unstable();
    slots.dedup_by_key(|s| s.0);
    slots
}

fn table() -> Option<&'static Table> {
    let p = TABLE.load(Acquire);
    // SAFETY: tables are leaked, never freed; a non-null pointer is a valid Table.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn obj_of(addr: usize) -> Option<&'static ObjInfo> {
    table()?
        .objs
        .iter()
        .find(|o| o.text.iter().any(|&(a, b)| addr >= a && addr < b))
}

/// The module owning code address `addr` ("main" when it is not a map module's).
pub fn module_of(addr: usize) -> &'static str {
    obj_of(addr).map_or("main", |o| o.module.as_str())
}

/// As [`module_of`], and where several modules share the object, the module of the mapped
/// function nearest below `addr` (object + symbol → module). Not for signal handlers.
pub fn module_of_fn(rt: &Runtime, addr: usize) -> &str {
    let Some(o) = obj_of(addr) else {
        return "main";
    };
    if o.shared {
        let inside = |a: usize| o.text.iter().any(|&(s, e)| a >= s && a < e);
        let best = rt
            .fns
            .iter()
            .map(|f| (f.real.load(Relaxed), f))
            .filter(|&(r, _)| r != 0 && r <= addr && inside(r))
            .max_by_key(|&(r, _)| r);
        if let Some((_, f)) = best {
            return &f.module;
        }
    }
    &o.module
}
