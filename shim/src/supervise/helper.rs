//! A helper process: the main thread waits on the region's doorbell and starts one serving
//! thread per channel that gets a call; each serving thread answers the calls of its channel
//! (a calling thread of the program) in order, so a slow call holds up only its own caller.
//!
//! Runs in a child of the zygote. Everything the program sent is trusted here (the program
//! is the trusted side); the data area is used in place.
//!
//! # Safety
//! Runs in the forked helper: it maps and unmaps regions by the sizes the transport defines,
//! closes descriptors of other regions it inherited, installs signal handlers on an alternate
//! stack of its own, and ends with `_exit`; nothing here allocates after a fork before the
//! helper's own threads exist, and no panic leaves a child (`platform::sys::child_entry`).

#![allow(unsafe_code)]

use crate::call::dispatch;
use crate::plan::runtime::Runtime;
use crate::transport::region::{self, Dir, MSG_CALL, MSG_FAIL};
use module_map::Env;
use std::sync::atomic::Ordering::*;
use std::time::Duration;

pub fn main(rt: &'static Runtime, k: usize, env_idx: u32) -> ! {
    let t0 = std::time::Instant::now();
    leave_the_others(rt, k);
    crate::platform::sys::die_with_parent();
    let p = &rt.procs[k];
    let name = std::ffi::CString::new(format!("frac-{}", p.name)).unwrap_or_default();
    crate::platform::sys::set_name(&name);
    if !p.region.valid() {
        // Leaving the child.
        crate::platform::sys::exit_now(70);
    }
    rt.me.store(rt.procs[k].owner().raw(), SeqCst);
    rt.my_region.store(k, SeqCst);
    // `memory: on-demand`: the program's ranges, made inaccessible before the first call.
    let programs = crate::supervise::address::helper_side(k);
    install_fault_handlers(&p.region, programs.is_some());
    let env = env_for(p, env_idx);
    apply_env(&env);
    {
        let _g = rt.patch_lock.lock().unwrap_or_else(|e| e.into_inner());
        rt.route_inherited();
        if programs.is_some() {
            crate::supervise::touch::route(rt.self_base);
        }
    }
    crate::supervise::sandbox::enter(&env, &p.name);
    debug!(
        "helper '{}' ready (env #{env_idx}) in {:?}",
        p.name,
        t0.elapsed()
    );
    serve_loop(rt, k, programs)
}

/// Set once the program's inherited ranges are inaccessible (`memory: on-demand`): serving
/// threads wait for it before their first call.
static PROTECTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Right after the fork: drops every other region (other helpers' and other replicas'
/// queues: a faulty replica could otherwise write the others' answers and defeat the vote),
/// their memfds, and the zygote's status table. Only this helper's own region stays.
fn leave_the_others(rt: &Runtime, k: usize) {
    for q in rt.procs.iter().filter(|q| q.index != k) {
        // SAFETY: this helper never touches another region (its calls and nested calls go
        // through its own; the fault handler wakes only its own); the fd is ours to close.
        unsafe { q.region.unmap() };
        // Its memfd, which this helper never uses either.
        crate::platform::sys::close(q.region_fd);
    }
    // SAFETY: only the program and the zygote read or write the watches.
    unsafe { rt.watches.unmap() };
}

/// The helper's main thread: start a serving thread for each channel that gets a call.
fn serve_loop(rt: &'static Runtime, k: usize, programs: Option<Vec<(u64, u64)>>) -> ! {
    let p = &rt.procs[k];
    let region = p.region;
    let h = region.header();
    let bell = Dir {
        seq: &h.doorbell,
        ev: &h.doorbell,
        sleeping: &h.doorbell_sleeping,
    };
    let mut started = [false; region::CHANNELS];
    // Channel 0 serves the first calling thread: its serving thread starts at once, so the
    // first call after a (re)start does not wait for a thread to be made.
    started[0] = spawn_server(rt, k, 0);
    // After the first thread is made (its start reads the environment, which lies in program
    // memory): from here on, the helper's own code never touches the program's ranges.
    if let Some(p) = programs {
        crate::supervise::address::protect(&p);
    }
    PROTECTED.store(true, SeqCst);
    loop {
        let seen = h.doorbell.load(SeqCst);
        if h.shutdown.load(SeqCst) != 0 {
            // Under valgrind, its leak check would scan the queue region (256 MiB).
            crate::supervise::valgrind::forget_range(region.key(), region::REGION_SIZE);
            finish();
        }
        for (c, st) in started.iter_mut().enumerate() {
            let ch = region.channel(c);
            if !*st && dispatch::pending(ch) {
                *st = true;
                ch.served.store(1, SeqCst);
                let spawned = std::thread::Builder::new()
                    .name(format!("frac-serve-{c}"))
                    .spawn(move || serve_channel(rt, k, c));
                if spawned.is_err() {
                    error!(
                        "helper '{}': cannot start a serving thread",
                        rt.procs[k].name
                    );
                    // Leaving the helper; the program sees it die and recovers.
                    crate::platform::sys::exit_now(71);
                }
            }
        }
        bell.wait(
            seen,
            Duration::ZERO,
            false,
            Duration::from_millis(200),
            || h.shutdown.load(SeqCst) != 0,
        );
    }
}

/// Starts the serving thread of channel `c` (or leaves the helper: the program recovers).
fn spawn_server(rt: &'static Runtime, k: usize, c: usize) -> bool {
    rt.procs[k].region.channel(c).served.store(1, SeqCst);
    let spawned = std::thread::Builder::new()
        .name(format!("frac-serve-{c}"))
        .spawn(move || serve_channel(rt, k, c));
    if spawned.is_err() {
        error!(
            "helper '{}': cannot start a serving thread",
            rt.procs[k].name
        );
        // Leaving the helper; the program sees it die and recovers.
        crate::platform::sys::exit_now(71);
    }
    true
}

thread_local! {
    /// The channel this serving thread answers (-1 on other threads), for the fault handler.
    static SERVING: std::cell::Cell<i32> = const { std::cell::Cell::new(-1) };
}

fn serve_channel(rt: &'static Runtime, k: usize, c: usize) {
    SERVING.with(|s| s.set(c as i32));
    // The fault handler runs on it, so a module that overflows its stack is reported like
    // any other crash (threads the module starts itself have none).
    crate::observe::reports::altstack_for_this_thread();
    let region = rt.procs[k].region;
    if !crate::call::pages::helper::thread_start(region, c) {
        error!(
            "helper '{}': no memory for on-demand pages",
            rt.procs[k].name
        );
        // Leaving the helper; the program sees it die and recovers.
        crate::platform::sys::exit_now(71);
    }
    while !PROTECTED.load(SeqCst) {
        std::thread::sleep(Duration::from_micros(50));
    }
    let h = region.header();
    let ch = region.channel(c);
    let dir = ch.to_helper();
    // One message for every read (see `read_msg_into`).
    let mut m = region::Msg::zeroed();
    loop {
        let seen = ch.consumed.load(SeqCst);
        let Some(s) = dir.wait(
            seen,
            crate::call::colocate::server_spin(dispatch::SERVER_SPIN),
            false,
            Duration::from_millis(200),
            || h.shutdown.load(SeqCst) != 0,
        ) else {
            if h.shutdown.load(SeqCst) != 0 {
                return;
            }
            continue;
        };
        // SYNC POINT: none: `consumed` is read only by the helper's own loop and, across a
        // restart, by the zygote rewinding it with the helper gone; a plain store (no locked
        // instruction on the line the answer goes out in).
        ch.consumed.store(s, Release);
        // A call of registers only: run and answered without building messages (see
        // `call::flat`); everything else the general way.
        if let Some(real) = ch
            .read_flat_call(&mut m)
            .then(|| dispatch::flat_target(rt, &m))
            .flatten()
        {
            crate::call::colocate::on_call(m.hint);
            let mut a = dispatch::serve_flat(c, &m, real);
            a.hint = crate::call::colocate::worked_ns();
            ch.write_flat_answer(&a);
            ch.to_prog().post();
            continue;
        }
        ch.read_msg_into(&mut m);
        let reply = if m.kind == MSG_CALL {
            crate::call::colocate::on_call(m.hint);
            crate::call::pages::helper::begin(Some(&m));
            let mut r = dispatch::serve(rt, &region, c, &m, true);
            crate::call::pages::helper::end(&mut r);
            r.hint = crate::call::colocate::worked_ns();
            r
        } else if m.kind == region::MSG_PEEK {
            crate::call::pages::peek::serve_peek(&region, c, &m)
        } else if m.kind == region::MSG_WRITES {
            crate::call::pages::peek::serve_writes(&region, c, &m)
        } else if m.kind == region::MSG_CHECKPOINT {
            checkpoint(rt, k)
        } else {
            // SAFETY: Msg is plain data.
            let mut f: region::Msg = unsafe { std::mem::zeroed() };
            f.kind = MSG_FAIL;
            f
        };
        ch.write_msg(&reply);
        ch.to_prog().post();
    }
}

/// The environment of a helper of region `p` on retry `n` (0: no retry): the process's
/// `env`, merged with the replica's entry of `replicate.envs`/`sample.envs`, merged with
/// `retry_envs[n-1]`.
pub fn env_for(p: &crate::plan::runtime::ProcRt, n: u32) -> Env {
    let spec = &p.spec;
    let replica_envs = spec
        .replicate
        .as_ref()
        .map(|r| &r.envs)
        .or(spec.sample.as_ref().map(|s| &s.envs));
    let base = match replica_envs.and_then(|e| e.get(p.replica)) {
        Some(e) => spec.env.merged(e),
        None => spec.env.clone(),
    };
    match n {
        0 => base,
        n => match spec.on_crash.retry_envs.get(n as usize - 1) {
            Some(e) => base.merged(e),
            None => base,
        },
    }
}

/// Applies a fork-mode environment in this helper only.
fn apply_env(env: &Env) {
    for (k, v) in &env.vars {
        std::env::set_var(k, v);
    }
    for (name, v) in &env.rlimits {
        let res = match name.as_str() {
            "as" => libc::RLIMIT_AS,
            "cpu" => libc::RLIMIT_CPU,
            "data" => libc::RLIMIT_DATA,
            "stack" => libc::RLIMIT_STACK,
            "core" => libc::RLIMIT_CORE,
            "nofile" => libc::RLIMIT_NOFILE,
            "fsize" => libc::RLIMIT_FSIZE,
            "nproc" => libc::RLIMIT_NPROC,
            "memlock" => libc::RLIMIT_MEMLOCK,
            _ => continue,
        };
        crate::platform::process::set_limit(res, *v);
    }
    crate::supervise::rxmalloc::apply(&env.malloc);
}

/// Orderly exit: flush what the module wrote through stdio, then leave without the
/// program's atexit handlers.
fn finish() -> ! {
    crate::platform::process::flush_and_exit(0)
}

/// Header of this helper's region, for the fatal-signal handler (0 until set).
static FAULT_HDR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

entry_point! {
/// Records the signal and faulting address in the region, wakes the program's waiters, and
/// lets the signal kill the helper with its default action. Async-signal-safe: atomics and
/// raw syscalls only (the entry guard allocates nothing unless the body panics, and then
/// only writes one line).
fn on_fatal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let h = FAULT_HDR.load(SeqCst);
    if h != 0 {
        // SAFETY: ctx is this handler's ucontext; FAULT_HDR is the live region header.
        unsafe {
            let (pc, sp) = crate::observe::reports::pc_sp(ctx);
            let mut fr = [0u64; crate::observe::reports::MAX_FRAMES];
            let n = crate::observe::reports::scan_stack(pc, sp, &mut fr);
            let h = &*(h as *const region::RegionHeader);
            for (slot, v) in h.fault_frames.iter().zip(fr.iter()) {
                slot.store(*v, SeqCst);
            }
            h.fault_nframes.store(n as u32, SeqCst);
        }
        // SAFETY: FAULT_HDR points to the live region header (set before the handler was
        // installed); `info` is the kernel's siginfo for this signal.
        unsafe {
            let h = &*(h as *const region::RegionHeader);
            let addr = if info.is_null() {
                0
            } else {
                (*info).si_addr() as u64
            };
            h.fault_addr.store(addr, SeqCst);
            // A const-initialised thread-local is a plain TLS load: async-signal-safe.
            h.fault_channel.store(SERVING.with(|s| s.get()), SeqCst);
            // SYNC POINT: fault_sig publishes the fault; the program reads the channel and
            // the address after seeing it (helper_gone, then death_status). Stored first, a
            // program thread could read the channel still -1 and take an innocent call for
            // the faulting one (it then used up a retry: a lost call under load).
            h.fault_sig.store(sig, SeqCst);
        }
        // Wake every program thread waiting on this helper: it is about to die (a helper
        // resumed from a checkpoint is not the zygote's child, so nobody else would).
        // This helper's own region: a replica's is not its primary's (which it does not
        // even have mapped).
        // SAFETY: h is the live header of this helper's region (FAULT_HDR).
        let region = unsafe { region::Region::from_header(&*(h as *const region::RegionHeader)) };
        for i in 0..region::CHANNELS {
            let ch = region.channel(i);
            ch.to_prog_ev.fetch_add(1, SeqCst);
            region::futex_wake(&ch.to_prog_ev);
        }
    }
    // SA_RESETHAND restored the default action; re-raise so that a raise()d signal kills too
    // (a fault re-faults on return anyway).
    crate::platform::process::raise_on_this_thread(sig);
}
}

// (It was a plain Rust function installed by its address: called by the kernel with the C
// ABI it did not declare, and unguarded against unwinding.)
entry_point! {
/// SIGSEGV of an on-demand helper: a touch of the program's memory during a call fetches the
/// page (the instruction then runs again); anything else is a crash, as with [`on_fatal`].
fn on_segv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo and ucontext of this SIGSEGV.
    if unsafe { crate::call::pages::helper::on_fault(info, ctx) } {
        return;
    }
    crate::platform::signal::set_default(libc::SIGSEGV);
    on_fatal(sig, info, ctx)
}
}

fn install_fault_handlers(region: &crate::transport::region::Region, on_demand: bool) {
    FAULT_HDR.store(
        region.header() as *const region::RegionHeader as usize,
        SeqCst,
    );
    region.header().fault_sig.store(0, SeqCst);
    region.header().fault_addr.store(0, SeqCst);
    region.header().fault_channel.store(-1, SeqCst);
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGABRT,
        libc::SIGTRAP,
        libc::SIGSYS,
    ] {
        // Handlers that only do async-signal-safe work, on the thread's alternate stack
        // where it has one (serving threads do), so a stack overflow in the module is
        // recorded too.
        if on_demand && sig == libc::SIGSEGV {
            // Kept after a fetch: `on_segv` restores the default itself for a crash.
            crate::platform::signal::set_handler(sig, on_segv, libc::SA_ONSTACK);
        } else {
            crate::platform::signal::set_handler(
                sig,
                on_fatal,
                libc::SA_RESETHAND | libc::SA_ONSTACK,
            );
        }
    }
}

/// Forks a frozen copy of this helper (the program sends the request only while no call is in
/// flight, so no other thread holds a lock the copy would need). The copy waits until the
/// program asks it to resume; the previous copy is killed. Answers with the copy's pid.
fn checkpoint(rt: &'static Runtime, k: usize) -> region::Msg {
    let h = rt.procs[k].region.header();
    // SAFETY: Msg is plain data.
    let mut r: region::Msg = unsafe { std::mem::zeroed() };
    r.kind = MSG_FAIL;
    // SAFETY: fork of a quiescent helper (no call in flight, so no other thread holds a
    // lock the copy needs); the child only waits, then becomes a helper.
    let pid = match unsafe { crate::platform::process::fork() } {
        Ok(crate::platform::process::Forked::Parent(pid)) => pid,
        Ok(crate::platform::process::Forked::Child) => {
            crate::platform::sys::child_entry(|| checkpoint_wait(rt, k))
        }
        Err(_) => return r,
    };
    let old = h.ckpt_pid.swap(pid, SeqCst);
    if old > 0 {
        // The previous frozen copy: killed, and reaped if it is our child (else its parent
        // or the subreaper does).
        crate::platform::sys::kill_and_reap(old, libc::__WALL);
    }
    r.kind = region::MSG_RETURN;
    r.ret_rax = pid as u64;
    r
}

/// The frozen copy: sleeps until the program resumes it (then a child of it becomes the new
/// helper and it stays frozen for the next time), the program shuts down, or the program is
/// gone. Never returns.
fn checkpoint_wait(rt: &'static Runtime, k: usize) -> ! {
    let p = &rt.procs[k];
    let h = p.region.header();
    let name = std::ffi::CString::new(format!("frac-ckpt-{}", p.name)).unwrap_or_default();
    crate::platform::sys::set_name(&name);
    // The checkpoint must outlive its parent: no parent-death signal.
    crate::platform::sys::set_parent_death_signal(0);
    let program = rt.program_pid();
    loop {
        if h.shutdown.load(SeqCst) != 0 {
            // Leaving the frozen copy.
            crate::platform::sys::exit_now(0);
        }
        // Kill with signal 0 only checks that the program exists. A sandboxed copy
        // may not signal the program (EPERM): only ESRCH says it is gone.
        if !crate::platform::sys::kill(program, 0)
            && crate::supervise::sandbox::last_errno() == libc::ESRCH
        {
            // The program is gone.
            crate::platform::sys::exit_now(0);
        }
        if h.ckpt_cmd.load(SeqCst) == region::CKPT_RESUME && h.ckpt_pid.load(SeqCst) == my_pid() {
            h.ckpt_cmd.store(region::CKPT_IDLE, SeqCst);
            // SAFETY: the frozen copy is single-threaded.
            let forked = unsafe { crate::platform::process::fork() };
            if let Ok(crate::platform::process::Forked::Child) = forked {
                crate::platform::sys::child_entry(|| resume(rt, k));
            }
            continue;
        }
        region::futex_wait(&h.ckpt_cmd, region::CKPT_IDLE, Duration::from_millis(200));
    }
}

fn my_pid() -> i32 {
    crate::platform::sys::getpid()
}

/// A child of the checkpoint becomes the helper: same module state as at the checkpoint.
fn resume(rt: &'static Runtime, k: usize) -> ! {
    let p = &rt.procs[k];
    let h = p.region.header();
    let name = std::ffi::CString::new(format!("frac-{}", p.name)).unwrap_or_default();
    crate::platform::sys::set_name(&name);
    // Checkpoints are refused with `memory: on-demand` (module-map): copy memory only.
    install_fault_handlers(&p.region, false);
    apply_env(&env_for(p, h.ckpt_env.load(SeqCst)));
    crate::supervise::sandbox::enter(&env_for(p, h.ckpt_env.load(SeqCst)), &p.name);
    h.pid.store(my_pid(), SeqCst);
    h.state.store(region::STATE_ALIVE, SeqCst);
    serve_loop(rt, k, None)
}

/// What an exec-mode helper runs: argv and environment, built in the zygote before the fork.
pub struct ExecPlan {
    argv: Vec<std::ffi::CString>,
    envp: Vec<std::ffi::CString>,
}

/// The exec of an exec-mode helper of process `k`: the program itself (under `wrapper`, with
/// `preload` and `library_path`), with the shim preloaded and told to serve process `k`.
pub fn exec_plan(rt: &Runtime, k: usize, env_idx: u32, env: &Env) -> ExecPlan {
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let mut argv: Vec<std::ffi::CString> = env.wrapper.iter().map(|w| c(w)).collect();
    argv.push(c(&rt.exe));
    let shim = shim_path();
    let mut preload: Vec<String> = vec![shim];
    preload.extend(env.preload.iter().cloned());
    // The environment as bytes: a variable that is not UTF-8 passes through unchanged (it
    // once made this plan panic, in the zygote).
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut vars: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::env::vars_os()
        .map(|(a, b)| (a.into_vec(), b.into_vec()))
        .collect();
    let text = |v: Option<&Vec<u8>>| v.map(|v| String::from_utf8_lossy(v).into_owned());
    if let Some(old) = text(vars.get(b"LD_PRELOAD".as_slice())) {
        let rest: Vec<String> = old
            .split([':', ' '])
            .filter(|x| !x.is_empty() && !preload.iter().any(|p| p == x))
            .map(String::from)
            .collect();
        preload.extend(rest);
    }
    let mut set = |k: &str, v: Vec<u8>| {
        vars.insert(k.as_bytes().to_vec(), v);
    };
    set("LD_PRELOAD", preload.join(":").into_bytes());
    if !env.library_path.is_empty() {
        let mut lp = env.library_path.clone().into_bytes();
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
            lp.push(b':');
            lp.extend_from_slice(old.as_bytes());
        }
        set("LD_LIBRARY_PATH", lp);
    }
    for (k2, v) in &env.vars {
        set(k2, v.clone().into_bytes());
    }
    set("FRACTURE_HELPER", format!("{k}:{env_idx}").into_bytes());
    // Unique per exec (pids repeat, in containers at every start): a wrapper can name its
    // output files with it (a valgrind-slices plan writes `%q{FRACTURE_EXEC_ID}`).
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    set(
        "FRACTURE_EXEC_ID",
        format!("{ns}-{k}-{env_idx}").into_bytes(),
    );
    set("FRACTURE_HELPER_EXE", rt.exe.clone().into_bytes());
    set(
        "FRACTURE_REGION_FD",
        rt.procs[k].region_fd.to_string().into_bytes(),
    );
    set(
        "FRACTURE_PROGRAM_PID",
        rt.program_pid().to_string().into_bytes(),
    );
    vars.remove(b"FRACTURE_STATS".as_slice());
    let envp = vars
        .into_iter()
        .filter_map(|(mut a, b)| {
            a.push(b'=');
            a.extend_from_slice(&b);
            std::ffi::CString::new(a).ok()
        })
        .collect();
    ExecPlan { argv, envp }
}

/// Path of libfracture.so itself.
fn shim_path() -> String {
    crate::platform::sys::dladdr(shim_path as fn() -> String as usize)
        .and_then(|o| o.path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// In the forked child: keep the region's memfd across exec, then exec the plan.
pub fn exec(rt: &Runtime, k: usize, plan: &ExecPlan) -> ! {
    // In the single-threaded child of the zygote (allocating is safe): die with the
    // zygote, keep our memfd across the exec, exec.
    crate::platform::sys::set_parent_death_signal(libc::SIGKILL);
    crate::platform::process::keep_across_exec(rt.procs[k].region_fd);
    crate::platform::process::exec(&plan.argv, &plan.envp);
    crate::platform::sys::exit_now(127)
}

/// An exec-mode helper, in place of `main`: route, set up, serve.
pub fn exec_main(rt: &'static Runtime, k: usize, env_idx: u32) -> ! {
    // The regions this process made for the other processes while it loaded the map are its
    // own, unused: dropped (under valgrind, its leak check would scan 256 MiB each; a
    // valgrind helper's exit once took 1.6 s longer for it).
    leave_the_others(rt, k);
    let p = &rt.procs[k];
    let name = std::ffi::CString::new(format!("frac-{}", p.name)).unwrap_or_default();
    crate::platform::sys::set_name(&name);
    rt.me.store(rt.procs[k].owner().raw(), SeqCst);
    rt.my_region.store(k, SeqCst);
    rt.program_pid.store(
        std::env::var("FRACTURE_PROGRAM_PID")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        SeqCst,
    );
    {
        let _g = rt.patch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let objs = crate::platform::got::loaded_objects();
        for e in rt.resolve(&objs) {
            error!("{e}");
        }
        rt.patch(&objs, false);
    }
    rt.started.store(true, SeqCst);
    // Exec-mode helpers are refused with `memory: on-demand` (module-map): copy memory only.
    install_fault_handlers(&p.region, false);
    // vars were in the environment from the start; the rest applies as in fork mode.
    let env = env_for(p, env_idx);
    apply_env(&Env {
        vars: Default::default(),
        ..env
    });
    crate::supervise::sandbox::enter(&env_for(p, env_idx), &p.name);
    debug!("exec-mode helper '{}' ready", p.name);
    serve_loop(rt, k, None)
}
