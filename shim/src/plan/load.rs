//! Objects loaded after start-up: resolving and routing them (the program's `dlopen`, or a
//! helper loading the object of a function the program loaded after the zygote was made).

use crate::plan::runtime::{FnDesc, Runtime};
use crate::platform::{got, loader::dlopen_name};
use std::ffi::CString;
use std::sync::atomic::Ordering::Acquire;

/// In a helper: load the object of `f` (it was loaded by the program after the zygote was
/// made), then resolve and route as `dlopen` would.
pub fn load_for(rt: &Runtime, f: &FnDesc) {
    let mut tries: Vec<String> = vec![f.object.clone()];
    if !f.object.contains('/') {
        // The program has it mapped: find the path in its maps.
        let ppid = rt.program_pid();
        let maps = crate::platform::fs::read_proc(&format!("/proc/{ppid}/maps"));
        for line in maps.lines() {
            if let Some(path) = line.split_whitespace().nth(5) {
                if path.rsplit('/').next() == Some(f.object.as_str())
                    && !tries.iter().any(|t| t == path)
                {
                    tries.push(path.to_string());
                }
            }
        }
    }
    for t in tries {
        let Ok(c) = CString::new(t) else { continue };
        let h = dlopen_name(&c, libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !h.is_null() {
            after_load(rt);
            if f.real.load(Acquire) != 0 {
                return;
            }
        }
    }
}

/// Resolves and routes whatever was loaded since the last walk.
pub fn after_load(rt: &Runtime) {
    let _g = rt.patch_lock.lock().unwrap_or_else(|e| e.into_inner());
    let objs = got::loaded_objects();
    for e in rt.resolve(&objs) {
        error!("{e}");
    }
    rt.patch(&objs, true);
}
