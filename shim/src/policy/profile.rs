//! `fracture profile`: every mapped function is routed through its trampoline but runs in
//! place; per (calling module, function) the shim counts calls and the bytes that would cross
//! a process boundary under the function's specs. The calling module comes from the return
//! address (the object it lies in, mapped to the map's module; other code is `main`). A call
//! is also counted *cold* when its module had no call for longer than a helper spins before it
//! sleeps: isolated, that call would wake a sleeping helper. At exit the counters go to
//! `$FRACTURE_PROFILE` as JSON; the launcher adds the calibration.
//!
//! # Safety
//! Reads the return address the stub's frame sits above (`frame.stack - 1`, written by the call
//! instruction) and the length of a `str` the real function returned (NUL-terminated by the `ret:
//! str` contract).

#![allow(unsafe_code)]

use crate::call::dispatch::call_local;
use crate::plan::runtime::{FnDesc, Runtime};
use crate::platform::abi::Frame;
use module_map::RetSpec;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct Profile {
    nfns: usize,
    /// [caller module (the map's modules, then `main`)][function] × (calls, in, out, cold).
    cells: Vec<[AtomicU64; 4]>,
    /// Per module of the map: when its last call ended (ns since `start`, +1; 0: never).
    last: Vec<AtomicU64>,
    start: std::time::Instant,
}

static PROFILE: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();

/// The profile of this run (`fracture profile`), made at the first use.
pub fn the(rt: &Runtime) -> &'static Profile {
    PROFILE.get_or_init(|| Profile::new(rt.fns.len(), rt.map.modules.len()))
}

/// The call layer's profile upcall: count the call, run it here.
pub fn count_and_call(rt: &Runtime, f: &FnDesc, frame: &mut Frame) {
    the(rt).call(rt, f, frame)
}

impl Profile {
    pub fn new(nfns: usize, nmods: usize) -> Profile {
        Profile {
            nfns,
            cells: (0..(nmods + 1) * nfns)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            last: (0..nmods).map(|_| AtomicU64::new(0)).collect(),
            start: std::time::Instant::now(),
        }
    }

    /// Counts the call of `f` described by `frame`, then runs it here.
    pub fn call(&self, rt: &Runtime, f: &FnDesc, frame: &mut Frame) {
        // SAFETY: the trampoline's frame.stack is the caller's rsp + 8 at the call: the word
        // below it is the return address the call pushed.
        let ret = unsafe { *frame.stack.sub(1) } as usize;
        let caller = crate::observe::reports::module_of_fn(rt, ret);
        let nmods = rt.map.modules.len();
        let m = rt
            .map
            .modules
            .iter()
            .position(|x| x.name == caller)
            .unwrap_or(nmods);
        let walk = crate::call::marshal::Walk::of(f, frame);
        let (mut bin, mut bout) = (0u64, 0u64);
        for b in walk.bufs() {
            match b.dir {
                crate::call::marshal::Dir::Out => bout += b.len,
                crate::call::marshal::Dir::InOut => {
                    bin += b.len;
                    bout += b.len;
                }
                crate::call::marshal::Dir::In => bin += b.len,
            }
        }
        let callee = rt.map.modules.iter().position(|x| x.name == f.module);
        let now = self.start.elapsed().as_nanos() as u64 + 1;
        let prev = callee.map_or(0, |i| self.last[i].load(Relaxed));
        let cold = prev == 0
            || now.saturating_sub(prev) > crate::call::dispatch::SERVER_SPIN.as_nanos() as u64;
        call_local(rt, f, frame);
        if let Some(i) = callee {
            self.last[i].store(self.start.elapsed().as_nanos() as u64 + 1, Relaxed);
        }
        if f.ret == RetSpec::Str && frame.ret_rax != 0 {
            // SAFETY: the function returned a NUL-terminated string (its spec says so).
            bout += unsafe { crate::platform::vm::c_str_len(frame.ret_rax as *const libc::c_char) }
                as u64
                + 1;
        }
        if let Some(c) = self.cells.get(m * self.nfns + f.idx) {
            c[0].fetch_add(1, Relaxed);
            c[1].fetch_add(bin, Relaxed);
            c[2].fetch_add(bout, Relaxed);
            c[3].fetch_add(u64::from(cold), Relaxed);
        }
    }

    /// Writes the counters to `$FRACTURE_PROFILE`.
    pub fn write(&self, rt: &Runtime) {
        let Some(path) = std::env::var_os("FRACTURE_PROFILE") else {
            return;
        };
        let mut modules: Vec<&str> = vec!["main"];
        modules.extend(rt.map.modules.iter().map(|m| m.name.as_str()));
        let mut edges = Vec::new();
        let nmods = rt.map.modules.len();
        for m in 0..=nmods {
            let caller = if m == nmods {
                "main"
            } else {
                rt.map.modules[m].name.as_str()
            };
            for f in &rt.fns {
                let c = &self.cells[m * self.nfns + f.idx];
                let calls = c[0].load(Relaxed);
                if calls == 0 {
                    continue;
                }
                edges.push(serde_json::json!({
                    "caller": caller,
                    "module": f.module,
                    "function": f.name,
                    "calls": calls,
                    "bytes_in": c[1].load(Relaxed),
                    "bytes_out": c[2].load(Relaxed),
                    "cold_calls": c[3].load(Relaxed),
                }));
            }
        }
        let doc = serde_json::json!({
            "v": 1,
            "program": rt.exe,
            "duration_s": self.start.elapsed().as_secs_f64(),
            "modules": modules,
            "edges": edges,
        });
        if let Err(e) = std::fs::write(&path, doc.to_string() + "\n") {
            error!(
                "cannot write the profile {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}
