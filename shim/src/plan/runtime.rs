//! The resolved plan of one process: which mapped functions exist, who owns each, where the
//! real code is, and the helper processes with their shared-memory regions.
//!
//! Built once, before `main`, from `FRACTURE_CONFIG` (stage two of configuration: the map
//! against the objects really loaded). Never panics: every failure is an error value.
//!
//! # Safety
//! The only unsafe operation is writing a routed GOT slot through `got::patch_slot`, under the
//! patch lock, for a slot found by the loader scan while its object is still loaded.

#![allow(unsafe_code)]

use crate::observe::stats::FnStats;
use crate::platform::abi::Layout;
use crate::platform::got::{self, Maps, Obj, Scanned, Wanted};
use crate::platform::stubs;
use crate::transport::region::Region;
use module_map::{ArgSpec, MapError, ModuleMap, RetSpec};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering::*};
use std::sync::{Mutex, OnceLock};

/// Who runs a function: the program, the map's process k, or nobody but the program while
/// profiling. The one place that says how process indices and owner ids map to each other
/// (`k + 1`); the raw `u32` exists only where an atomic holds it ([`Runtime::me`]). The
/// default is the program.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Owner(u32);

impl Owner {
    /// The program itself.
    pub const PROGRAM: Owner = Owner(0);
    /// Every function under `fracture profile`: routed, but run in the program.
    pub const PROFILED: Owner = Owner(u32::MAX);

    /// The owner that is the map's process `k` (0-based).
    pub const fn of_process(k: usize) -> Owner {
        Owner(k as u32 + 1)
    }

    /// The map's process (0-based) this owner is; None for the program and `PROFILED`.
    pub fn process(self) -> Option<usize> {
        (self != Owner::PROFILED)
            .then(|| self.0.checked_sub(1))
            .flatten()
            .map(|k| k as usize)
    }

    /// As an atomic holds it.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// From what an atomic held ([`Owner::raw`]).
    pub const fn from_raw(v: u32) -> Owner {
        Owner(v)
    }
}

/// Owner of every function under `fracture profile` ([`Owner::PROFILED`]).
pub const PROFILED: Owner = Owner::PROFILED;
/// The program itself ([`Owner::PROGRAM`]).
pub const PROGRAM: Owner = Owner::PROGRAM;

pub struct FnDesc {
    pub idx: usize,
    pub name: String,
    pub cname: CString,
    pub version: Option<CString>,
    pub module: String,
    pub object: String,
    pub owner: Owner,
    pub layout: Layout,
    pub ret: RetSpec,
    pub pure: bool,
    pub line: usize,
    /// Address of the real function in this process; 0 while its object is not loaded.
    /// For a callback slot: the program's function passed into it (0: free).
    pub real: AtomicUsize,
    pub stats: FnStats,
    /// Set when this entry is a callback slot rather than a mapped function.
    pub callback: Option<CbSlot>,
    /// Per `cb` argument of a mapped function: (argument index, index of the first of the
    /// [`CB_SLOTS`] slots of its callback type).
    pub cb_args: Vec<(usize, usize)>,
    /// Registers only: every argument `val` or `f64`, the result `val`, `f64` or `void`, no
    /// callback slot. Such a call may take the flat path (`call::flat`).
    pub flat: bool,
}

/// Distinct program functions one callback type can hold per process (SPEC.md, "Callbacks":
/// the bound). A program function passed again reuses its slot.
pub const CB_SLOTS: usize = 32;

/// One slot of a callback type: a stub index the helper calls, bound to one program function
/// the first time the program passes it (`FnDesc::real`, set once, never cleared).
pub struct CbSlot {
    /// The callback type's name (`row`), or `cb` for bare ones.
    pub ty: String,
    /// The process the module runs in: the only one that may call the slot.
    pub process: Owner,
}

/// One GOT slot of a mapped function, and its page's protection when it was found.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub addr: usize,
    pub func: usize,
    pub prot: i32,
    /// glibc's unload count of the listing the slot was found in: the slot is written only
    /// while it is unchanged (see [`got::while_loaded`]).
    pub unloads: u64,
}

pub struct ProcRt {
    /// Index in `Runtime::procs`.
    pub index: usize,
    /// The map's process this region serves (owner id - 1), and which replica (0: primary).
    pub primary: usize,
    pub replica: usize,
    /// Per replica: calls answered, answers outvoted or different, crashes.
    pub calls: std::sync::atomic::AtomicU64,
    pub mismatches: std::sync::atomic::AtomicU64,
    pub crashes: std::sync::atomic::AtomicU64,
    pub name: String,
    pub region: Region,
    pub pid: AtomicI32,
    pub pidfd: AtomicI32,
    /// Bit i set: channel i is free (program side only).
    pub free: AtomicU32,
    /// Bit i set: channel i is some program thread's own (see `call::channels::acquire`).
    pub claimed: AtomicU32,
    pub spec: module_map::Process,
    /// Calls hold it shared; a restart holds it exclusively while it starts the new helper
    /// and replays, so no call reaches a helper whose state is not rebuilt yet.
    pub gate: std::sync::RwLock<()>,
    /// Log length at the helper's last checkpoint (usize::MAX: no checkpoint).
    pub ckpt_len: std::sync::atomic::AtomicUsize,
    /// Pid of the frozen copy, verified when it was made (0: none).
    pub ckpt: AtomicI32,
    /// False while the helper is one resumed from a checkpoint (not the zygote's child).
    pub zygote_child: AtomicBool,
    /// The region's memfd (close-on-exec; an exec-mode helper gets a copy without it).
    pub region_fd: i32,
    /// The zygote's word on this region's helper (never mapped in a helper).
    pub watch: &'static crate::transport::region::Watch,
    /// A sampled replica under a `wrapper` (a tool such as valgrind), beside replicas without
    /// one: it observes in the background and never makes the program wait (see replicas.rs).
    pub observer: bool,
}

impl ProcRt {
    /// The owner id of the map's process this region serves (replicas share it).
    pub fn owner(&self) -> Owner {
        Owner::of_process(self.primary)
    }

    fn new(
        p: &module_map::Process,
        region: Region,
        region_fd: i32,
        index: usize,
        primary: usize,
        replica: usize,
        watch: &'static crate::transport::region::Watch,
    ) -> ProcRt {
        ProcRt {
            watch,
            index,
            primary,
            replica,
            calls: std::sync::atomic::AtomicU64::new(0),
            mismatches: std::sync::atomic::AtomicU64::new(0),
            crashes: std::sync::atomic::AtomicU64::new(0),
            name: if replica == 0 {
                p.name.clone()
            } else {
                format!("{}#{replica}", p.name)
            },
            region,
            pid: AtomicI32::new(0),
            pidfd: AtomicI32::new(-1),
            free: AtomicU32::new(((1u64 << crate::transport::region::CHANNELS) - 1) as u32),
            claimed: AtomicU32::new(0),
            spec: p.clone(),
            gate: std::sync::RwLock::new(()),
            ckpt_len: std::sync::atomic::AtomicUsize::new(usize::MAX),
            ckpt: AtomicI32::new(0),
            zygote_child: AtomicBool::new(true),
            region_fd,
            observer: p.sample.as_ref().is_some_and(|s| {
                let env = match s.envs.get(replica) {
                    Some(e) => p.env.merged(e),
                    None => p.env.clone(),
                };
                !env.wrapper.is_empty()
            }),
        }
    }
}

pub struct Runtime {
    /// Set in an exec-mode helper: (region index, environment index).
    pub exec_helper: Option<(usize, u32)>,
    /// In a helper: the index of its region in `procs`.
    pub my_region: std::sync::atomic::AtomicUsize,
    pub map: ModuleMap,
    pub fns: Vec<FnDesc>,
    pub procs: Vec<ProcRt>,
    /// Who this process is: PROGRAM, or k + 1 in helper k.
    pub me: AtomicU32,
    /// Set in a child the program forked: it has no helpers of its own.
    pub detached: AtomicBool,
    pub exe: String,
    /// Serialises the scans and routing of startup, helpers, `dlopen` and `dlsym` (dlclose is
    /// not interposed: see platform/got/).
    pub patch_lock: Mutex<()>,
    /// Base address of libfracture.so itself (never patched).
    pub self_base: usize,
    /// Objects already scanned, by base address (forgotten when an object is unloaded).
    pub patched: Mutex<Scanned>,
    /// GOT slots of mapped functions found so far.
    pub slots: Mutex<Vec<Slot>>,
    /// Set once routing is in place (just before `main`).
    pub started: AtomicBool,
    /// Pid of the program (the process that read the map).
    pub program_pid: AtomicI32,
    /// `fracture profile`: every call is counted (policy/profile.rs) and run in place.
    pub profiling: bool,
    /// The zygote's word on each region's helper (see [`crate::transport::region::Watch`]).
    pub watches: &'static crate::transport::region::Watches,
}

static RT: OnceLock<Runtime> = OnceLock::new();

pub fn get() -> Option<&'static Runtime> {
    RT.get()
}

pub fn install(rt: Runtime) -> &'static Runtime {
    let _ = RT.set(rt);
    RT.get().expect("runtime just installed")
}

/// Why the shim stays inert.
pub enum Inert {
    NoConfig,
    OtherTarget,
    /// The map's modules, for crash reports of the program itself.
    NothingIsolated(Vec<module_map::Module>),
}

/// Real path of the running executable.
pub fn exe_path() -> String {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads and validates the map. `Ok(Err(Inert))` when the shim has nothing to do here.
pub fn load() -> Result<Result<Runtime, Inert>, MapError> {
    let Some(path) = std::env::var_os("FRACTURE_CONFIG").filter(|p| !p.is_empty()) else {
        return Ok(Err(Inert::NoConfig));
    };
    let path = std::path::PathBuf::from(path);
    let text = module_map::read_map(&path)?;
    let map = module_map::parse_map_str(&text, &path, &module_map::vars::sets_from_env())?;
    let exe = exe_path();
    if !map.matches_target(&exe) {
        return Ok(Err(Inert::OtherTarget));
    }
    // An exec-mode helper is the program's executable, re-executed: a wrapper it runs under
    // (valgrind's launcher) sees the same variables and must stay inert, or it becomes the
    // helper itself and the tool never runs (with a map that has no `target`).
    if std::env::var_os("FRACTURE_HELPER_EXE").is_some_and(|want| want != exe.as_str()) {
        return Ok(Err(Inert::OtherTarget));
    }
    // `fracture profile`: every mapped function is routed, counted and run in place.
    let profiling = std::env::var_os("FRACTURE_PROFILE").is_some_and(|p| !p.is_empty())
        && std::env::var_os("FRACTURE_HELPER").is_none();
    let mut map = map;
    if profiling {
        map.processes.clear();
    }
    if !map.isolates_anything() && !profiling {
        return Ok(Err(Inert::NothingIsolated(map.modules)));
    }
    build(map, path, exe, profiling).map(Ok)
}

/// Stage two of configuration: the plan of this process from a parsed map (functions,
/// owners, layouts, regions). No GOT is touched and no process started here.
pub(crate) fn build(
    map: ModuleMap,
    path: std::path::PathBuf,
    exe: String,
    profiling: bool,
) -> Result<Runtime, MapError> {
    let mut fns = Vec::new();
    for m in &map.modules {
        let owner = match map
            .processes
            .iter()
            .position(|p| p.modules.iter().any(|x| x == &m.name))
        {
            Some(k) => Owner::of_process(k),
            None if profiling => PROFILED,
            None => PROGRAM,
        };
        let first_fn = fns.len();
        for f in &m.functions {
            let key = format!("modules.{}.functions.{}", m.name, f.name);
            let layout = Layout::of(f)
                .map_err(|e| MapError::at(&path, Some(f.line), Some(key.clone()), e))?;
            if fns.len() >= stubs::MAX_FNS {
                return Err(MapError::at(
                    &path,
                    Some(f.line),
                    Some(key),
                    format!("more than {} functions", stubs::MAX_FNS),
                ));
            }
            let cname = CString::new(f.symbol()).map_err(|_| {
                MapError::at(
                    &path,
                    Some(f.line),
                    Some(key.clone()),
                    "NUL in name".to_string(),
                )
            })?;
            let flat = layout
                .args
                .iter()
                .all(|(a, _)| matches!(a, ArgSpec::Val | ArgSpec::Float))
                && matches!(f.ret, RetSpec::Val | RetSpec::Float | RetSpec::Void);
            fns.push(FnDesc {
                idx: fns.len(),
                name: f.symbol().to_string(),
                cname,
                version: f.version().and_then(|v| CString::new(v).ok()),
                module: m.name.clone(),
                object: m.object.clone(),
                owner,
                layout,
                flat,
                ret: f.ret,
                pure: f.pure,
                line: f.line,
                real: AtomicUsize::new(0),
                stats: FnStats::default(),
                callback: None,
                cb_args: Vec::new(),
            });
        }
        // Callback slots: only where the module runs in a helper (elsewhere the program's
        // pointer is passed as it is). Types in declaration order, then bare `cb` if used.
        if owner == PROGRAM || owner == PROFILED {
            continue;
        }
        let bare_used = m
            .functions
            .iter()
            .any(|f| f.args.contains(&ArgSpec::Cb(None)));
        // Each type as the signature `Layout::of` reads (a function's).
        let mut types: Vec<module_map::Function> = m
            .callbacks
            .iter()
            .map(|c| module_map::Function {
                name: c.name.clone(),
                args: c.args.clone(),
                ret: c.ret,
                pure: false,
                line: c.line,
            })
            .collect();
        if bare_used {
            types.push(module_map::Function {
                name: "cb".to_string(),
                args: vec![ArgSpec::Val; 6],
                ret: RetSpec::Val,
                pure: false,
                line: m.line,
            });
        }
        let mut firsts = Vec::new();
        for (t, sig) in types.iter().enumerate() {
            let name = &sig.name;
            // The bare type is the last one (a declared type may be named `cb` too).
            let bare = bare_used && t + 1 == types.len();
            let key = format!("modules.{}.callbacks.{name}", m.name);
            let mut layout = Layout::of(sig)
                .map_err(|e| MapError::at(&path, Some(sig.line), Some(key.clone()), e))?;
            if bare {
                // Bare: every stack word the ABI may have placed.
                layout.nstack = layout.nstack.max(crate::platform::abi::ABI_STACK);
            }
            if fns.len() + CB_SLOTS > stubs::MAX_FNS {
                return Err(MapError::at(
                    &path,
                    Some(sig.line),
                    Some(key),
                    format!(
                        "more than {} functions and callback slots ({CB_SLOTS} per callback type)",
                        stubs::MAX_FNS
                    ),
                ));
            }
            firsts.push(fns.len());
            for k in 0..CB_SLOTS {
                let label = format!("callback {}.{name}#{k}", m.name);
                fns.push(FnDesc {
                    idx: fns.len(),
                    cname: CString::new(label.clone()).unwrap_or_default(),
                    name: label,
                    version: None,
                    module: m.name.clone(),
                    object: String::new(),
                    owner: PROGRAM,
                    layout: layout.clone(),
                    ret: sig.ret,
                    pure: false,
                    line: sig.line,
                    real: AtomicUsize::new(0),
                    stats: FnStats::default(),
                    callback: Some(CbSlot {
                        ty: name.clone(),
                        process: owner,
                    }),
                    cb_args: Vec::new(),
                    flat: false,
                });
            }
        }
        let bare_first = bare_used.then(|| firsts[firsts.len() - 1]);
        for (j, f) in m.functions.iter().enumerate() {
            let d = &mut fns[first_fn + j];
            for (i, a) in f.args.iter().enumerate() {
                let first = match a {
                    ArgSpec::Cb(Some(t)) => firsts.get(*t as usize).copied(),
                    ArgSpec::Cb(None) => bare_first,
                    _ => None,
                };
                if let Some(first) = first {
                    d.cb_args.push((i, first));
                }
            }
        }
    }
    // An exec-mode helper (FRACTURE_HELPER=k:env, FRACTURE_REGION_FD=fd) attaches to the
    // program's region of process k instead of making its own.
    let exec_helper = std::env::var("FRACTURE_HELPER").ok().and_then(|v| {
        let (k, e) = v.split_once(':')?;
        Some((k.parse::<usize>().ok()?, e.parse::<u32>().ok()?))
    });
    let region_fd = std::env::var("FRACTURE_REGION_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    // Regions: one per process (index k = owner id - 1), then one per extra replica of
    // `replicate`/`sample` (count - 1 of them, in process order).
    let mut layout: Vec<(usize, usize)> = (0..map.processes.len()).map(|k| (k, 0)).collect();
    for (k, p) in map.processes.iter().enumerate() {
        let n = p
            .replicate
            .as_ref()
            .map(|r| r.count)
            .or(p.sample.as_ref().map(|s| s.count))
            .unwrap_or(1);
        layout.extend((1..n as usize).map(|r| (k, r)));
    }
    // A process started as an exec-mode helper must never act as the program (it would start
    // helpers of its own, recursively).
    if std::env::var_os("FRACTURE_HELPER").is_some()
        && (exec_helper.is_none_or(|(k, _)| k >= layout.len()) || region_fd.is_none())
    {
        return Err(MapError::at(
            &path,
            None,
            None,
            "FRACTURE_HELPER is set but malformed: not an exec-mode helper of this map".to_string(),
        ));
    }
    // Mapped once for the process's lifetime (helpers unmap it after their fork).
    let watches: &'static crate::transport::region::Watches = Box::leak(Box::new(
        crate::transport::region::Watches::create(layout.len()).map_err(|e| {
            MapError::at(
                &path,
                None,
                None,
                format!("cannot map the helpers' status table: {e}"),
            )
        })?,
    ));
    let mut procs = Vec::new();
    for (ri, &(k, replica)) in layout.iter().enumerate() {
        let p = &map.processes[k];
        if let (Some((hk, _)), Some(fd)) = (exec_helper, region_fd) {
            if hk == ri {
                let region = Region::attach(fd).map_err(|e| {
                    MapError::at(
                        &path,
                        Some(p.line),
                        Some(format!("processes.{}", p.name)),
                        format!("exec-mode helper cannot map its queue: {e}"),
                    )
                })?;
                procs.push(ProcRt::new(p, region, fd, ri, k, replica, watches.get(ri)));
                continue;
            }
        }
        let (region, fd) = Region::create(&format!("fracture-{}", p.name)).map_err(|e| {
            MapError::at(
                &path,
                Some(p.line),
                Some(format!("processes.{}", p.name)),
                format!("cannot create the shared queue: {e}"),
            )
        })?;
        procs.push(ProcRt::new(p, region, fd, ri, k, replica, watches.get(ri)));
    }
    // Observers need someone to answer: when every replica of a process has a wrapper, they
    // all answer.
    for k in 0..map.processes.len() {
        if procs.iter().filter(|p| p.primary == k).all(|p| p.observer) {
            for p in procs.iter_mut().filter(|p| p.primary == k) {
                p.observer = false;
            }
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if procs.len() > map.processes.len() && procs.len() + 1 > cpus {
        crate::transport::region::CROWDED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Runtime {
        exec_helper,
        my_region: std::sync::atomic::AtomicUsize::new(0),
        map,
        fns,
        procs,
        me: AtomicU32::new(PROGRAM.raw()),
        detached: AtomicBool::new(false),
        exe,
        patch_lock: Mutex::new(()),
        self_base: self_base(),
        patched: Mutex::new(Scanned::default()),
        slots: Mutex::new(Vec::new()),
        started: AtomicBool::new(false),
        program_pid: AtomicI32::new(crate::platform::sys::getpid()),
        profiling,
        watches,
    })
}

fn self_base() -> usize {
    crate::platform::sys::dladdr(self_base as fn() -> usize as usize).map_or(0, |o| o.base)
}

impl Runtime {
    pub fn started(&self) -> bool {
        self.started.load(Acquire)
    }

    pub fn program_pid(&self) -> i32 {
        self.program_pid.load(Relaxed)
    }

    pub fn me(&self) -> Owner {
        Owner::from_raw(self.me.load(Relaxed))
    }

    /// In a helper: the index of its own region in `procs` (replicas share an owner id).
    pub fn my_region(&self) -> usize {
        self.my_region.load(Relaxed)
    }

    /// The regions of process `k` (0-based): the primary first, then its replicas.
    pub fn replicas_of(&self, k: usize) -> impl Iterator<Item = &ProcRt> {
        self.procs.iter().filter(move |p| p.primary == k)
    }

    /// The map path, for error messages.
    pub fn file(&self) -> &std::path::Path {
        &self.map.file
    }

    pub fn proc_of(&self, owner: Owner) -> Option<&ProcRt> {
        owner.process().and_then(|k| self.procs.get(k))
    }

    /// Resolves the real address of every mapped function whose object is loaded now.
    /// Returns the errors for functions an object loaded now does not export.
    pub fn resolve(&self, objs: &[Obj]) -> Vec<MapError> {
        let mut errors = Vec::new();
        for f in &self.fns {
            if f.real.load(Relaxed) != 0 || f.callback.is_some() {
                continue;
            }
            let Some((i, o)) = objs
                .iter()
                .enumerate()
                .find(|(i, o)| o.matches(&f.object, *i == 0))
            else {
                continue;
            };
            let addr =
                crate::platform::loader::lookup_in(o, i == 0, &f.cname, f.version.as_deref());
            if addr == 0 {
                errors.push(MapError::at(
                    self.file(),
                    Some(f.line),
                    Some(format!("modules.{}.functions.{}", f.module, f.name)),
                    format!(
                        "function `{}` is not exported by {} ({})",
                        f.name,
                        f.object,
                        if o.path.is_empty() {
                            &self.exe
                        } else {
                            &o.path
                        }
                    ),
                ));
                continue;
            }
            f.real.store(addr, Release);
        }
        errors
    }

    /// The name → function table used to match imports.
    fn wanted(&self) -> Wanted<'_> {
        let mut w: Wanted<'_> = Wanted::default();
        for f in self.fns.iter().filter(|f| f.callback.is_none()) {
            w.entry(f.name.as_str()).or_default().push(f.idx);
        }
        w
    }

    /// What a GOT slot of function `f` should hold in this process: our stub where another
    /// process owns it, the real function where we do (0: leave the slot alone).
    pub fn slot_target(&self, f: &FnDesc) -> usize {
        if f.owner != self.me() {
            stubs::stub_addr(f.idx)
        } else {
            f.real.load(Acquire)
        }
    }

    /// Finds every import of a mapped function in the loaded objects but ours (with
    /// `only_new`, in objects not scanned before), records the slots, and returns them.
    /// `objs` is one whole listing ([`got::loaded_objects`]). When objects were unloaded since
    /// the last scan, every object counts as new (one may now sit at a base scanned before)
    /// and the recorded slots are rebuilt from this scan.
    pub fn scan(&self, objs: &[Obj], only_new: bool) -> Vec<Slot> {
        let wanted = self.wanted();
        let maps = Maps::read();
        let unloads = objs.iter().map(|o| o.unloads).max().unwrap_or(0);
        let mut scanned = self.patched.lock().unwrap_or_else(|e| e.into_inner());
        let rebuild = !scanned.sync(unloads) || !only_new;
        let mut found = Vec::new();
        for o in objs {
            if o.base == self.self_base && self.self_base != 0 {
                continue;
            }
            if only_new && scanned.contains(o.base) {
                continue;
            }
            o.for_each_import(|slot, name, ver| {
                let Some(cands) = wanted.get(name) else {
                    return;
                };
                let f = cands
                    .iter()
                    .map(|&i| &self.fns[i])
                    .find(|f| match (&f.version, ver) {
                        (Some(want), Some(have)) => want.to_bytes() == have.as_bytes(),
                        (Some(_), None) => false,
                        (None, _) => true,
                    });
                let (Some(f), Some(prot)) = (f, got::prot_at(&maps, slot)) else {
                    return;
                };
                found.push(Slot {
                    addr: slot,
                    func: f.idx,
                    prot,
                    unloads: o.unloads,
                });
            });
            scanned.insert(o.base);
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if rebuild {
            slots.clear();
        }
        slots.extend(found.iter().copied());
        found
    }

    /// Points each slot where `slot_target` says for this process. Returns the slots written.
    /// A slot is written only while its object is still the one scanned (no unload since),
    /// under the loader's lock; one skipped that way is found again by the next scan.
    pub fn route(&self, slots: &[Slot]) -> usize {
        let mut n = 0;
        for s in slots {
            let target = self.slot_target(&self.fns[s.func]);
            if target == 0 {
                continue;
            }
            let patch = got::while_loaded(s.addr, s.unloads, || {
                // SAFETY: `s.addr` is a JUMP_SLOT/GLOB_DAT slot found by `scan` (8-aligned),
                // in an object while_loaded keeps loaded and found unchanged since that scan;
                // `s.prot` was read from /proc/self/maps by the scan; `target` is our stub or
                // the real function.
                unsafe { got::patch_slot(s.addr, s.prot, target) }
            })
            .flatten();
            if let Some(p) = patch {
                // A routed slot stays routed for the process's lifetime.
                p.keep();
                n += 1;
            }
        }
        n
    }

    /// Scans and routes the objects (only those not seen before, with `only_new`).
    pub fn patch(&self, objs: &[Obj], only_new: bool) -> usize {
        let slots = self.scan(objs, only_new);
        self.route(&slots)
    }

    /// In a helper: routes the slots the program found before the zygote was forked (a
    /// helper has the same objects at the same addresses), without scanning again. Slots of
    /// functions the helper owns keep their original binding; only the others change.
    pub fn route_inherited(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let me = self.me();
        let others: Vec<Slot> = slots
            .into_iter()
            .filter(|s| self.fns[s.func].owner != me)
            .collect();
        self.route(&others)
    }

    /// The mapped function whose real address is `addr`, if any.
    pub fn fn_by_real(&self, addr: usize) -> Option<&FnDesc> {
        if addr == 0 {
            return None;
        }
        self.fns
            .iter()
            .find(|f| f.callback.is_none() && f.real.load(Relaxed) == addr)
    }

    /// Program side: the callback slot of type `first` (see [`FnDesc::cb_args`]) that holds
    /// program function `addr`, binding a free one to it the first time. None when all
    /// [`CB_SLOTS`] are bound to other functions.
    pub fn cb_slot(&self, first: usize, addr: usize) -> Option<usize> {
        let slots = self.fns.get(first..first + CB_SLOTS)?;
        for s in slots {
            match s.real.compare_exchange(0, addr, AcqRel, Acquire) {
                Ok(_) => return Some(s.idx),
                Err(held) if held == addr => return Some(s.idx),
                Err(_) => continue,
            }
        }
        None
    }
}
