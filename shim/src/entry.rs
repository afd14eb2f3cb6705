//! The entry points the loader and glibc call: `.init_array`/`.fini_array`, the interposed
//! `__libc_start_main` with its wrapper of `main`, the exec-mode helper's `main`, the
//! post-fork handler; and the wiring of the layers at load.
//!
//! # Safety
//! Every entry point catches unwinding; `__libc_start_main` passes glibc's own arguments on
//! unchanged to glibc's function found with `dlvsym(RTLD_NEXT)`; a forked child that reaches
//! the `main` wrapper leaves with `_exit` instead of running the program's `main` again.

#![allow(unsafe_code)]

use crate::observe::{log, reports};
use crate::plan::runtime::{self, Inert, Runtime, PROGRAM};
use crate::platform::got;
use crate::policy::replicas;
use crate::supervise::{helper, sandbox, zygote};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::Ordering::*;

entry_point! {
/// Load-time setup: runs from `.init_array` when ld.so initialises us.
fn on_load() {
        log::init_from_env();
        crate::platform::loader::init_real();
        // The wiring of the layers: the stubs call the dispatcher; the call layer calls up
        // into policy and supervision through its upcalls.
        crate::platform::stubs::set_dispatcher(crate::call::dispatch::fracture_dispatch);
        crate::call::hooks::set(crate::call::hooks::Upcalls {
            call_helper: crate::policy::replicas::route,
            kill_helper: crate::supervise::recovery::kill_helper,
            profile: crate::policy::profile::count_and_call,
        });
        match runtime::load() {
            Ok(Ok(rt)) => {
                // The call path's clock (measured against CLOCK_MONOTONIC during the first
                // millisecond; only when something is isolated).
                crate::platform::clock::start(crate::platform::clock::tsc_is_invariant());
                if rt.exec_helper.is_none() {
                    reports::init(&rt.exe, &rt.map.modules);
                }
                runtime::install(rt);
            }
            Ok(Err(Inert::NothingIsolated(modules))) => {
                debug!("the map isolates nothing: nothing is routed");
                reports::init(&runtime::exe_path(), &modules);
            }
            Ok(Err(_)) => {}
            Err(e) => {
                emit_fatal(&e.to_string());
                // Leaving before main, as SPEC.md says: status 127.
                crate::platform::sys::exit_now(127);
            }
        }
}
}

fn emit_fatal(msg: &str) {
    let line = format!("fracture: error: {msg}\n");
    crate::platform::sys::write_stderr(line.as_bytes());
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = on_load;

entry_point! {
fn on_unload() {
        if let Some(rt) = runtime::get() {
            if rt.me() == PROGRAM && !rt.detached.load(Relaxed) {
                replicas::drain(std::time::Duration::from_secs(120));
                crate::plan::stats_file::write(rt);
                if rt.profiling {
                    crate::policy::profile::the(rt).write(rt);
                } else {
                    reports::run_summary(rt);
                }
            }
        }
}
}

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = on_unload;

entry_point! {
/// `exit` in the program, before the objects' destructors run.
fn before_exit() {
    crate::call::pages::peek::give_back_module_data();
}
}

type MainFn = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;
type StartMainFn = unsafe extern "C" fn(
    MainFn,
    c_int,
    *mut *mut c_char,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

static REAL_MAIN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// (process << 32 | env) of an exec-mode helper.
static EXEC_HELPER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

entry_point! {
/// In an exec-mode helper the shim serves requests in place of the program's `main`.
///
/// # Safety
/// Called by glibc's `__libc_start_main` as `main`; the arguments are not read.
unsafe fn exec_helper_main(
    _argc: c_int,
    _argv: *mut *mut c_char,
    _envp: *mut *mut c_char,
) -> c_int = 70; {
    let v = EXEC_HELPER.load(Acquire);
    match runtime::get() {
        Some(rt) => helper::exec_main(rt, v >> 32, (v & 0xffff_ffff) as u32),
        None => 70,
    }
}
}

/// Routes the GOT, forks the zygote and the helpers: everything that must happen after the
/// constructors and before the program's first thread.
fn start(rt: &'static Runtime) -> Result<(), String> {
    let objs = got::loaded_objects();
    let errors = rt.resolve(&objs);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\nfracture: error: "));
    }
    sandbox::check(&rt.map)?;
    // Scan once, before the zygote exists: helpers inherit the slot list and only re-point
    // the slots of functions they do not own (their GOT is still the original one).
    let slots = {
        let _g = rt.patch_lock.lock().unwrap_or_else(|e| e.into_inner());
        rt.scan(&objs, false)
    };
    if !rt.procs.is_empty() {
        zygote::start(rt).map_err(|e| format!("cannot start the zygote: {e}"))?;
    }
    for k in 0..rt.procs.len() {
        zygote::spawn(rt, k, 0)
            .map_err(|e| format!("cannot start helper '{}': {e}", rt.procs[k].name))?;
    }
    {
        let _g = rt.patch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let n = rt.route(&slots);
        debug!("routed {n} GOT slots in {} objects", objs.len());
    }
    rt.started.store(true, Release);
    crate::platform::process::at_fork_child(after_fork_child);
    Ok(())
}

entry_point! {
fn after_fork_child() {
    if let Some(rt) = runtime::get() {
        if rt.me() == PROGRAM {
            // A child of the program has no helpers of its own: mapped calls run in place.
            rt.detached.store(true, Relaxed);
            zygote::forget_in_child();
        }
    }
}
}

entry_point! {
/// The program's `main`, wrapped: fracture starts (routing, zygote, helpers), then `main` runs.
/// A panic in fracture's part has been reported and the program runs without it; this guard
/// only keeps anything else from unwinding into glibc.
///
/// # Safety
/// Called by glibc's `__libc_start_main` as `main`, with `main`'s arguments, passed on.
unsafe fn main_wrapper(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int = 70; {
    let me = crate::platform::sys::getpid();
    let r = std::panic::catch_unwind(|| {
        if let Some(rt) = runtime::get() {
            if let Err(e) = start(rt) {
                emit_fatal(&e);
                // A map naming what this program lacks stops it before main (SPEC.md).
                crate::platform::sys::exit_now(127);
            }
            // Everything start-up allocated is freed now: use that up too (on-demand only).
            crate::supervise::address::after_start(rt);
            // Registered now, after glibc registered the loader's destructor pass: runs
            // before it.
            crate::platform::process::at_exit(before_exit);
        }
    });
    if crate::platform::sys::getpid() != me {
        // A forked child of ours got here: it must never run the program's main.
        // Leaving the child.
        crate::platform::sys::exit_now(70);
    }
    if r.is_err() {
        emit_fatal("internal error while starting; running the program without fracture");
    }
    let main = REAL_MAIN.load(Acquire);
    // SAFETY: REAL_MAIN holds the program's main, stored by __libc_start_main below.
    unsafe { std::mem::transmute::<usize, MainFn>(main)(argc, argv, envp) }
}
}

entry_point! {
/// Interposed: wraps `main` so that routing and the zygote happen after every constructor.
///
/// # Safety
/// Called by the program's `_start` with glibc's own arguments, which are passed on.
#[cfg(not(test))]
#[no_mangle]
pub unsafe fn __libc_start_main(
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    init: *mut c_void,
    fini: *mut c_void,
    rtld_fini: *mut c_void,
    stack_end: *mut c_void,
) -> c_int = {
    // Nothing can start the program after a failure this early.
    crate::platform::sys::exit_now(127)
}; {
    let real = crate::platform::loader::next_symbol(
        c"__libc_start_main",
        &[c"GLIBC_2.34", c"GLIBC_2.2.5"],
    );
    if real == 0 {
        emit_fatal("cannot find glibc's __libc_start_main");
        // Nothing else can start the program.
        crate::platform::sys::exit_now(127);
    }
    // SAFETY: `real` is glibc's __libc_start_main with this signature.
    let real: StartMainFn = unsafe { std::mem::transmute(real) };
    if let Some((k, env)) = runtime::get().and_then(|rt| rt.exec_helper) {
        EXEC_HELPER.store((k << 32) | env as usize, Release);
        // SAFETY: same arguments; our helper entry in place of main (glibc is fully set up).
        return unsafe {
            real(
                exec_helper_main,
                argc,
                argv,
                init,
                fini,
                rtld_fini,
                stack_end,
            )
        };
    }
    let wrap = runtime::get().is_some();
    if wrap {
        REAL_MAIN.store(main as usize, Release);
        // SAFETY: same arguments, our wrapper in place of main.
        unsafe { real(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end) }
    } else {
        // SAFETY: passing glibc's arguments through unchanged.
        unsafe { real(main, argc, argv, init, fini, rtld_fini, stack_end) }
    }
}
}

entry_point! {
/// Interposed: a SIGSEGV handler the program installs while module memory is read through
/// faults is chained to, not installed over ours (`call::pages::peek`); all else is glibc's.
///
/// # Safety
/// As `sigaction(2)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int = -1; {
    // SAFETY: forwarded contract.
    unsafe { crate::call::pages::peek::sigaction_hook(sig, act, old) }
}
}

entry_point! {
/// Interposed: as `sigaction`.
///
/// # Safety
/// As `signal(2)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe fn signal(sig: c_int, h: libc::sighandler_t) -> libc::sighandler_t = libc::SIG_ERR; {
    // SAFETY: forwarded contract.
    unsafe { crate::call::pages::peek::signal_hook(sig, h) }
}
}

entry_point! {
/// Interposed: a thread started by module code in a helper is noted (`call::pages::helper`
/// keeps the program's pages mapped between calls only while the module has no thread of its
/// own); all else is glibc's.
///
/// # Safety
/// As `pthread_create(3)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: *mut c_void,
    arg: *mut c_void,
) -> c_int = libc::EAGAIN; {
    crate::call::pages::helper::thread_started();
    // SAFETY: forwarded contract.
    unsafe { crate::platform::loader::real_pthread_create(thread, attr, start, arg) }
}
}
