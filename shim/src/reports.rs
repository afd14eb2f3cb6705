//! Crash reports for the quarantine database (`FRACTURE_REPORTS`).
//!
//! The program cannot run SQLite from a fatal-signal handler, so the shim appends one JSON
//! line per record to a spool beside the database (`<db>.spool/<pid>-<ns>.jsonl`), holding a
//! shared `flock` on its spool file for its lifetime; `fracture report` and `fracture plan`
//! ingest the spool into SQLite (the `quarantine` crate). Records: every crash, hang, give-up
//! and mismatch of an isolated call, a crash of the program itself (also when nothing is
//! isolated: the optimistic strategy needs that first fault), and a run summary at exit.
//!
//! Everything that runs in a signal handler here is async-signal-safe: records are formatted
//! into a stack buffer, paths were prepared at start as C strings, the object table is an
//! immutable snapshot behind an atomic pointer, and memory is read through
//! `process_vm_readv`, which fails instead of faulting.

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering::*};
use std::sync::OnceLock;

/// Frames kept per record (the faulting pc first, then return addresses).
pub const MAX_FRAMES: usize = 16;

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
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());

struct Setup {
    /// Directories to create, outermost first, ending with the spool directory.
    dirs: Vec<CString>,
    /// The spool directory with a trailing '/'.
    spool: Vec<u8>,
    program: String,
    build_id: String,
    /// Module objects as the map names them: (module, object).
    modules: Vec<(String, String)>,
}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// The spool file of this process (-1: not opened yet) and the pid that opened it.
static SPOOL_FD: AtomicI32 = AtomicI32::new(-1);
static SPOOL_PID: AtomicI32 = AtomicI32::new(0);
/// The program's pid: the zygote and helpers inherit the fault handler, and must not report
/// their own deaths as the program's.
static PROGRAM_PID: AtomicI32 = AtomicI32::new(0);

/// The database path the user chose, or None when reports are off (`FRACTURE_REPORTS` set to
/// `off` or `none`).
pub fn db_path() -> Option<std::path::PathBuf> {
    match std::env::var_os("FRACTURE_REPORTS") {
        Some(v) if v == "off" || v == "none" => None,
        Some(v) if !v.is_empty() => Some(v.into()),
        _ => {
            let state = std::env::var_os("XDG_STATE_HOME")
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state"))
                })?;
            Some(state.join("fracture/reports.db"))
        }
    }
}

/// Program side, at load: prepares paths and the object table and installs the fatal-signal
/// handler that records a crash of the program itself. `modules` are (module, object).
pub fn init(exe: &str, modules: Vec<(String, String)>) {
    // With reports off, the object table is still built (profiles need it); nothing is
    // written.
    let spool = db_path().map(|db| {
        let mut spool = db.into_os_string();
        spool.push(".spool");
        std::path::PathBuf::from(spool)
    });
    let mut dirs = Vec::new();
    let mut acc = std::path::PathBuf::new();
    for c in spool.iter().flat_map(|s| s.components()) {
        acc.push(c);
        if let Ok(c) = CString::new(acc.as_os_str().as_encoded_bytes()) {
            dirs.push(c);
        }
    }
    let objs = crate::got::loaded_objects();
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
        modules,
    });
    refresh_with(&objs, exe);
    // SAFETY: getpid has no preconditions.
    PROGRAM_PID.store(unsafe { libc::getpid() }, Release);
    install_handler();
}

/// Rebuilds the object table (after a dlopen).
pub fn refresh() {
    if let Some(s) = SETUP.get() {
        refresh_with(&crate::got::loaded_objects(), &s.program);
    }
}

fn refresh_with(objs: &[crate::got::Obj], exe: &str) {
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
    };
    // The previous table is leaked: a signal handler may be reading it.
    TABLE.store(Box::into_raw(Box::new(t)), Release);
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
pub fn module_of_fn(rt: &crate::runtime::Runtime, addr: usize) -> &str {
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

/// A fixed buffer a record is formatted into without allocating.
pub struct Line {
    b: [u8; 8192],
    n: usize,
}

impl Line {
    pub fn new() -> Line {
        Line { b: [0; 8192], n: 0 }
    }
    fn raw(&mut self, s: &[u8]) {
        let k = s.len().min(self.b.len() - 2 - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s[..k]);
        self.n += k;
    }
    fn num(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&d[i..]);
    }
    fn int(&mut self, v: i64) {
        if v < 0 {
            self.raw(b"-");
        }
        self.num(v.unsigned_abs());
    }
    fn hex(&mut self, v: u64) {
        const H: &[u8; 16] = b"0123456789abcdef";
        let mut d = [0u8; 16];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = H[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.raw(b"\"0x");
        self.raw(&d[i..]);
        self.raw(b"\"");
    }
    fn string(&mut self, s: &[u8]) {
        self.raw(b"\"");
        for &c in s {
            match c {
                b'"' => self.raw(b"\\\""),
                b'\\' => self.raw(b"\\\\"),
                b'\n' => self.raw(b"\\n"),
                0..=0x1f | 0x7f..=0xff => {
                    // Control and non-ASCII bytes as \u00XX (JSON text stays valid UTF-8).
                    const H: &[u8; 16] = b"0123456789abcdef";
                    self.raw(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        H[(c >> 4) as usize],
                        H[(c & 15) as usize],
                    ]);
                }
                _ => self.raw(&[c]),
            }
        }
        self.raw(b"\"");
    }
    fn key(&mut self, k: &str) {
        if self.n > 1 {
            self.raw(b",");
        }
        self.string(k.as_bytes());
        self.raw(b":");
    }
    fn finish(&mut self) -> &[u8] {
        self.b[self.n] = b'}';
        self.b[self.n + 1] = b'\n';
        &self.b[..self.n + 2]
    }
}

/// What happened, for a record.
pub struct Event<'a> {
    pub outcome: &'a str,
    pub process: &'a str,
    pub module: &'a str,
    pub function: &'a str,
    pub signal: i32,
    pub fault_addr: u64,
    pub env: &'a str,
    pub detail: &'a str,
    pub frames: &'a [u64],
}

fn now(l: &mut Line) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the local timespec; async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    l.num(ts.tv_sec as u64);
    l.raw(b".");
    let ms = (ts.tv_nsec / 1_000_000) as u64;
    l.raw(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

fn head(l: &mut Line, kind: &str) {
    let Some(s) = SETUP.get() else { return };
    l.raw(b"{\"v\":1");
    l.key("kind");
    l.string(kind.as_bytes());
    l.key("time");
    now(l);
    l.key("program");
    l.string(s.program.as_bytes());
    l.key("build_id");
    l.string(s.build_id.as_bytes());
    l.key("pid");
    // SAFETY: getpid has no preconditions.
    l.num(unsafe { libc::getpid() } as u64);
}

fn frames(l: &mut Line, frames: &[u64]) {
    l.key("frames");
    l.raw(b"[");
    let mut first = true;
    for &a in frames {
        let Some(o) = obj_of(a as usize) else {
            continue;
        };
        if !first {
            l.raw(b",");
        }
        first = false;
        l.raw(b"{\"obj\":");
        l.string(o.path.as_bytes());
        l.raw(b",\"off\":");
        l.hex(a - o.base as u64);
        l.raw(b",\"module\":");
        l.string(o.module.as_bytes());
        l.raw(b"}");
    }
    l.raw(b"]");
}

/// Formats an event record (async-signal-safe).
fn format_event(l: &mut Line, e: &Event) {
    head(l, "event");
    for (k, v) in [
        ("outcome", e.outcome),
        ("process", e.process),
        ("module", e.module),
        ("function", e.function),
        ("env", e.env),
        ("detail", e.detail),
    ] {
        l.key(k);
        l.string(v.as_bytes());
    }
    l.key("signal");
    l.int(e.signal as i64);
    l.key("fault_addr");
    l.hex(e.fault_addr);
    frames(l, e.frames);
}

/// Records an event (normal context or signal handler).
pub fn event(e: &Event) {
    if SETUP.get().is_none() {
        return;
    }
    let mut l = Line::new();
    format_event(&mut l, e);
    append(l.finish());
}

/// Appends one record to this process's spool file (async-signal-safe).
fn append(rec: &[u8]) {
    let Some(s) = SETUP.get().filter(|s| !s.spool.is_empty()) else {
        return;
    };
    // SAFETY: plain syscalls on prepared C strings and a local buffer.
    unsafe {
        let pid = libc::getpid();
        let mut fd = SPOOL_FD.load(Acquire);
        if fd < 0 || SPOOL_PID.load(Acquire) != pid {
            for d in &s.dirs {
                libc::mkdir(d.as_ptr(), 0o755);
            }
            let mut name = Line::new();
            name.raw(&s.spool);
            name.num(pid as u64);
            name.raw(b"-");
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
            name.num(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            name.raw(b".jsonl\0");
            fd = libc::open(
                name.b.as_ptr().cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return;
            }
            // Held for the life of the process: the ingester deletes the file only when it
            // can take the lock exclusively, i.e. when nobody writes to it any more.
            libc::flock(fd, libc::LOCK_SH);
            SPOOL_FD.store(fd, Release);
            SPOOL_PID.store(pid, Release);
        }
        libc::write(fd, rec.as_ptr().cast(), rec.len());
    }
}

/// The run summary at exit: per isolated function, calls and crashes.
pub fn run_summary(rt: &crate::runtime::Runtime) {
    if SETUP.get().is_none() {
        return;
    }
    let mut l = Line::new();
    head(&mut l, "run");
    l.key("map");
    let map = std::path::absolute(rt.file()).unwrap_or_else(|_| rt.file().to_path_buf());
    l.string(map.as_os_str().as_encoded_bytes());
    l.key("isolated");
    l.raw(b"[");
    let mut first = true;
    for p in &rt.map.processes {
        for m in &p.modules {
            if !first {
                l.raw(b",");
            }
            first = false;
            l.string(m.as_bytes());
        }
    }
    l.raw(b"]");
    l.key("calls");
    l.raw(b"[");
    let mut first = true;
    for f in &rt.fns {
        let calls = f.stats.calls.load(Relaxed);
        let crashes = f.stats.crashes.load(Relaxed);
        if calls == 0 && crashes == 0 {
            continue;
        }
        let process = rt.proc_of(f.owner).map_or("main", |p| p.spec.name.as_str());
        if !first {
            l.raw(b",");
        }
        first = false;
        l.raw(b"{\"process\":");
        l.string(process.as_bytes());
        l.raw(b",\"module\":");
        l.string(f.module.as_bytes());
        l.raw(b",\"function\":");
        l.string(f.name.as_bytes());
        l.raw(b",\"calls\":");
        l.num(calls);
        l.raw(b",\"crashes\":");
        l.num(crashes);
        l.raw(b"}");
    }
    l.raw(b"]");
    append(l.finish());
}

/// Return addresses found on a stack: words that point just after a call instruction in a
/// loaded object's code. `pc` comes first. Reads memory with process_vm_readv, so a bad
/// stack pointer costs a failed syscall, not a fault (async-signal-safe).
pub fn scan_stack(pc: u64, sp: u64, out: &mut [u64; MAX_FRAMES]) -> usize {
    let mut n = 0;
    if pc != 0 {
        out[0] = pc;
        n = 1;
    }
    let mut words = [0u64; 1024];
    let got = read_self(
        sp as usize,
        words.as_mut_ptr().cast(),
        std::mem::size_of_val(&words),
    );
    for &w in &words[..got / 8] {
        if n >= MAX_FRAMES {
            break;
        }
        if w < 8 || obj_of(w as usize).is_none() || !after_call(w as usize) {
            continue;
        }
        out[n] = w;
        n += 1;
    }
    n
}

/// True when the bytes before `ret` end with a call instruction (e8 rel32, ff /2).
fn after_call(ret: usize) -> bool {
    let mut b = [0u8; 8];
    if read_self(ret - 8, b.as_mut_ptr(), 8) != 8 {
        return false;
    }
    b[3] == 0xe8
        || (b[6] == 0xff && (b[7] >> 3) & 7 == 2)
        || (b[5] == 0xff && (b[6] >> 3) & 7 == 2)
        || (b[2] == 0xff && (b[3] >> 3) & 7 == 2)
        || (b[1] == 0xff && (b[2] >> 3) & 7 == 2)
}

fn read_self(addr: usize, dst: *mut u8, len: usize) -> usize {
    let local = libc::iovec {
        iov_base: dst.cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: reads our own memory into `dst` (len bytes, owned by the caller); a bad
    // address makes the syscall fail instead of faulting.
    let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if r < 0 {
        0
    } else {
        r as usize
    }
}

/// The faulting pc and stack pointer from a signal's ucontext.
///
/// # Safety
/// `ctx` is the third argument of an SA_SIGINFO handler (or null).
pub unsafe fn pc_sp(ctx: *mut libc::c_void) -> (u64, u64) {
    if ctx.is_null() {
        return (0, 0);
    }
    // SAFETY: per the contract, ctx is the kernel's ucontext_t for this signal.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    (
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64,
        uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
    )
}

const FATAL: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

fn install_handler() {
    for sig in FATAL {
        // SAFETY: installing a handler with a zeroed, then filled, sigaction.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_program_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The program itself got a fatal signal: record it, then let it die exactly as it would
/// have (SA_RESETHAND restored the default action; returning re-executes the faulting
/// instruction, and abort() raises again).
extern "C" fn on_program_fault(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != PROGRAM_PID.load(Acquire) {
        // The zygote or a helper (forked from the program): not the program's death.
        // SAFETY: as below, default action restored by SA_RESETHAND.
        unsafe { libc::raise(sig) };
        return;
    }
    // SAFETY: ctx/info come from the kernel for this signal.
    let (pc, sp) = unsafe { pc_sp(ctx) };
    let addr = if info.is_null() {
        0
    } else {
        // SAFETY: info is the kernel's siginfo.
        unsafe { (*info).si_addr() as u64 }
    };
    let mut fr = [0u64; MAX_FRAMES];
    let n = scan_stack(pc, sp, &mut fr);
    let module = fr[..n]
        .iter()
        .map(|&a| module_of(a as usize))
        .find(|m| *m != "main")
        .unwrap_or("main");
    event(&Event {
        outcome: "program-crash",
        process: "main",
        module,
        function: "",
        signal: sig,
        fault_addr: addr,
        env: "",
        detail: "",
        frames: &fr[..n],
    });
    // SAFETY: info is the kernel's siginfo (or null).
    let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
    if sent || sig == libc::SIGABRT {
        // Sent (kill, raise, abort): nothing re-executes; raise it again with the default
        // action restored.
        // SAFETY: re-raising with the default action restored.
        unsafe { libc::raise(sig) };
    }
}
