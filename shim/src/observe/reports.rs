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
//! # Safety
//! The crash handler runs in a signal handler: it uses only a preallocated buffer and
//! `write`/`open`/`rename` system calls; stacks are read with `process_vm_readv`, so a bad stack
//! pointer costs a failed call, not a fault.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering::*};
use std::sync::OnceLock;

pub use crate::transport::region::MAX_FRAMES;

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
    /// Module objects as the map names them: (module, object).
    modules: Vec<(String, String)>,
    fns: Vec<MappedFn>,
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
        modules,
        fns,
    });
    refresh_with(&objs, exe);
    // SAFETY: getpid has no preconditions.
    PROGRAM_PID.store(unsafe { libc::getpid() }, Release);
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
fn mapped_slots(objs: &[crate::platform::got::Obj], fns: &[MappedFn]) -> Vec<(usize, usize)> {
    let mut by_name: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, f) in fns.iter().enumerate() {
        by_name.entry(f.symbol.as_str()).or_default().push(i);
    }
    let mut slots = Vec::new();
    for o in objs {
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
                slots.push((slot, i));
            }
        });
    }
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
pub fn module_of_fn(rt: &crate::plan::runtime::Runtime, addr: usize) -> &str {
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

/// Longest record, newline included: what one spool line may take.
pub const LINE_MAX: usize = 8192;
/// Longest string value written whole (escaped bytes); a longer one is cut and ends in
/// `...`, so that a long detail or path cannot crowd out the rest of the record.
const STRING_MAX: usize = 2048;
/// Room kept free for closing a cut record: `]`, `,"truncated":true`, `}` and the newline.
const CLOSE_ROOM: usize = 24;

/// A fixed buffer a record is formatted into without allocating. Whatever is written, the
/// finished line is one valid JSON object of at most [`LINE_MAX`] bytes: strings are cut to
/// fit, and a write that does not fit cuts the record back to its last complete top-level
/// field or array element (a `commit`), closes it and marks it `"truncated":true`.
pub struct Line {
    b: [u8; LINE_MAX],
    n: usize,
    /// A write did not fit: everything after `mark` is dropped by `finish`.
    over: bool,
    /// An array is open at the current position.
    in_array: bool,
    /// Length, and whether an array was open, at the last complete field or element.
    mark: usize,
    mark_in_array: bool,
}

impl Line {
    pub fn new() -> Line {
        Line {
            b: [0; LINE_MAX],
            n: 0,
            over: false,
            in_array: false,
            mark: 0,
            mark_in_array: false,
        }
    }
    /// Room left for content.
    fn room(&self) -> usize {
        (LINE_MAX - CLOSE_ROOM).saturating_sub(self.n)
    }
    /// Appends `s` whole, or nothing (and the record is cut at the last commit).
    fn raw(&mut self, s: &[u8]) {
        if self.over || s.len() > self.room() {
            self.over = true;
            return;
        }
        self.b[self.n..self.n + s.len()].copy_from_slice(s);
        self.n += s.len();
    }
    /// The record so far is complete up to here: a cut keeps it.
    fn commit(&mut self) {
        if !self.over {
            self.mark = self.n;
            self.mark_in_array = self.in_array;
        }
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
    /// `"0x…"`, written whole.
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
        let k = d.len() - i;
        let mut out = [0u8; 20];
        out[..3].copy_from_slice(b"\"0x");
        out[3..3 + k].copy_from_slice(&d[i..]);
        out[3 + k] = b'"';
        self.raw(&out[..4 + k]);
    }
    /// A JSON string of `s`, cut (ending in `...`) past [`STRING_MAX`] escaped bytes or where
    /// the record has no more room.
    fn string(&mut self, s: &[u8]) {
        self.string_max(s, STRING_MAX);
    }
    /// As [`Line::string`], cut past `max` escaped bytes.
    fn string_max(&mut self, s: &[u8], max: usize) {
        // Both quotes and the ellipsis must fit, or nothing is written.
        if self.over || self.room() < 5 {
            self.over = true;
            return;
        }
        let limit = max.min(self.room() - 5);
        self.raw(b"\"");
        let start = self.n;
        for &c in s {
            let mut e = [0u8; 6];
            let k = escape(c, &mut e);
            if self.n - start + k > limit {
                self.raw(b"...");
                break;
            }
            self.raw(&e[..k]);
        }
        self.raw(b"\"");
    }
    /// Starts a top-level field (the previous one is complete).
    fn key(&mut self, k: &str) {
        self.commit();
        if self.n > 1 {
            self.raw(b",");
        }
        self.string(k.as_bytes());
        self.raw(b":");
    }
    fn open_array(&mut self) {
        self.raw(b"[");
        if !self.over {
            self.in_array = true;
        }
        self.commit();
    }
    /// Starts an array element (the previous one is complete).
    fn element(&mut self, first: &mut bool) {
        self.commit();
        if !*first {
            self.raw(b",");
        }
        *first = false;
    }
    fn close_array(&mut self) {
        self.raw(b"]");
        if !self.over {
            self.in_array = false;
        }
    }
    /// The record as one line: cut back to its last complete part when something did not fit.
    fn finish(&mut self) -> &[u8] {
        let close = |l: &mut Line, s: &[u8]| {
            // CLOSE_ROOM was kept free for exactly this.
            l.b[l.n..l.n + s.len()].copy_from_slice(s);
            l.n += s.len();
        };
        if self.over {
            self.n = self.mark;
            if self.mark_in_array {
                close(self, b"]");
            }
            close(self, b",\"truncated\":true");
        }
        close(self, b"}\n");
        &self.b[..self.n]
    }
}

/// `c` escaped for a JSON string into `out`; returns its length. Control and non-ASCII bytes
/// become \u00XX (the JSON text stays valid UTF-8).
fn escape(c: u8, out: &mut [u8; 6]) -> usize {
    const H: &[u8; 16] = b"0123456789abcdef";
    match c {
        b'"' | b'\\' => {
            out[0] = b'\\';
            out[1] = c;
            2
        }
        b'\n' => {
            out[..2].copy_from_slice(b"\\n");
            2
        }
        0..=0x1f | 0x7f..=0xff => {
            *out = [
                b'\\',
                b'u',
                b'0',
                b'0',
                H[(c >> 4) as usize],
                H[(c & 15) as usize],
            ];
            6
        }
        _ => {
            out[0] = c;
            1
        }
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
    // Plans match programs by path: a path is kept whole up to PATH_MAX.
    l.string_max(s.program.as_bytes(), libc::PATH_MAX as usize);
    l.key("build_id");
    l.string(s.build_id.as_bytes());
    l.key("pid");
    // SAFETY: getpid has no preconditions.
    l.num(unsafe { libc::getpid() } as u64);
}

fn frames(l: &mut Line, frames: &[u64]) {
    l.key("frames");
    l.open_array();
    let mut first = true;
    for &a in frames {
        let Some(o) = obj_of(a as usize) else {
            continue;
        };
        l.element(&mut first);
        l.raw(b"{\"obj\":");
        // Whole or useless (the ingester reads the object for symbols).
        l.string_max(o.path.as_bytes(), libc::PATH_MAX as usize);
        l.raw(b",\"off\":");
        l.hex(a - o.base as u64);
        l.raw(b",\"module\":");
        l.string(o.module.as_bytes());
        l.raw(b"}");
    }
    l.close_array();
}

/// Formats an event record (async-signal-safe).
fn format_event(l: &mut Line, e: &Event) {
    head(l, "event");
    for (k, v) in [
        ("outcome", e.outcome),
        ("process", e.process),
        ("module", e.module),
        ("function", e.function),
    ] {
        l.key(k);
        l.string(v.as_bytes());
    }
    l.key("signal");
    l.int(e.signal as i64);
    l.key("fault_addr");
    l.hex(e.fault_addr);
    frames(l, e.frames);
    // Last: the free-form fields are the ones cut when the record is long.
    l.key("env");
    l.string(e.env.as_bytes());
    l.key("detail");
    l.string(e.detail.as_bytes());
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
            // 0700 / 0600: records hold paths, arguments and addresses (existing directories
            // keep their mode).
            for d in &s.dirs {
                libc::mkdir(d.as_ptr(), 0o700);
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
            if name.over {
                return;
            }
            // A fresh file of our own: never one that exists (or a symlink planted there).
            fd = libc::open(
                name.b.as_ptr().cast(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW
                    | libc::O_APPEND
                    | libc::O_CLOEXEC,
                0o600,
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
pub fn run_summary(rt: &crate::plan::runtime::Runtime) {
    if SETUP.get().is_none() {
        return;
    }
    let mut l = Line::new();
    head(&mut l, "run");
    l.key("map");
    let map = std::path::absolute(rt.file()).unwrap_or_else(|_| rt.file().to_path_buf());
    l.string(map.as_os_str().as_encoded_bytes());
    l.key("isolated");
    l.open_array();
    let mut first = true;
    for p in &rt.map.processes {
        for m in &p.modules {
            l.element(&mut first);
            l.string(m.as_bytes());
        }
    }
    l.close_array();
    l.key("calls");
    l.open_array();
    let mut first = true;
    for f in &rt.fns {
        let calls = f.stats.calls.load(Relaxed);
        let crashes = f.stats.crashes.load(Relaxed);
        if calls == 0 && crashes == 0 {
            continue;
        }
        let process = rt.proc_of(f.owner).map_or("main", |p| p.spec.name.as_str());
        l.element(&mut first);
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
    l.close_array();
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
    for_stack_words(sp as usize, 8192, |w| {
        if n >= MAX_FRAMES {
            return false;
        }
        if w >= 8 && obj_of(w as usize).is_some() && after_call(w as usize) {
            out[n] = w;
            n += 1;
        }
        true
    });
    n
}

/// How far up the stack [`entered_through`] looks for the program's call into a module (the
/// scan ends earlier, at the top of the stack mapping).
const STACK_SCAN_MAX: usize = 64 << 20;

/// Calls `f` on each 8-byte word from `sp` upwards, `max` bytes at most, until `f` returns
/// false or a page cannot be read. Reads a page at a time through process_vm_readv (no
/// fault). Unreadable pages before the first readable one are skipped (up to 64 KiB): after a
/// stack overflow the stack pointer may lie in the guard gap below the stack.
/// Async-signal-safe.
fn for_stack_words(sp: usize, max: usize, mut f: impl FnMut(u64) -> bool) {
    let mut at = sp & !7;
    let end = at.saturating_add(max);
    let mut page = [0u64; 512];
    let mut skip = 16;
    while at < end {
        let next = ((at | 4095) + 1).min(end);
        let len = next - at;
        let got = read_self(at, page.as_mut_ptr().cast(), len);
        if got == 0 && skip > 0 {
            skip -= 1;
            at = next;
            continue;
        }
        skip = 0;
        for &w in &page[..got / 8] {
            if !f(w) {
                return;
            }
        }
        if got < len {
            return;
        }
        at = next;
    }
}

/// The GOT slot that the call instruction just before return address `ret` went through:
/// `call *disp32(%rip)` (ff 15, `-fno-plt` code), or `call rel32` (e8) to a PLT stub whose
/// first instruction is `jmp *disp32(%rip)` (ff 25), possibly after `endbr64` and/or with a
/// `bnd` prefix (`.plt.sec` stubs). Reads code through process_vm_readv (no fault).
fn called_slot(ret: usize) -> Option<usize> {
    let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as isize;
    let mut b = [0u8; 6];
    if read_self(ret.checked_sub(6)?, b.as_mut_ptr(), 6) != 6 {
        return None;
    }
    if b[0] == 0xff && b[1] == 0x15 {
        return Some(ret.wrapping_add_signed(le(&b[2..])));
    }
    if b[1] != 0xe8 {
        return None;
    }
    let stub = ret.wrapping_add_signed(le(&b[2..]));
    let mut p = [0u8; 11];
    if read_self(stub, p.as_mut_ptr(), p.len()) != p.len() {
        return None;
    }
    let mut i = 0;
    if p[..4] == [0xf3, 0x0f, 0x1e, 0xfa] {
        i = 4;
    }
    if p[i] == 0xf2 {
        i += 1;
    }
    if p[i] != 0xff || p[i + 1] != 0x25 {
        return None;
    }
    Some(
        stub.wrapping_add(i + 6)
            .wrapping_add_signed(le(&p[i + 2..])),
    )
}

/// The mapped function of `module` whose call was in progress when the program faulted: the
/// outermost return address on the stack, in an object outside the module, that follows a
/// call through the GOT slot of one of the module's mapped functions. Needs no symbols (works
/// for stripped programs). Async-signal-safe: reads the leaked table and the stack only.
fn entered_through(sp: u64, module: &str) -> Option<&'static str> {
    let t = table()?;
    let setup = SETUP.get()?;
    if t.slots.is_empty() {
        return None;
    }
    let mut found = None;
    for_stack_words(sp as usize, STACK_SCAN_MAX, |w| {
        let w = w as usize;
        let caller_outside = w >= 8 && obj_of(w).is_some_and(|o| o.module != module || o.shared);
        if caller_outside {
            let f = called_slot(w)
                .and_then(|slot| t.slots.binary_search_by_key(&slot, |x| x.0).ok())
                .and_then(|i| setup.fns.get(t.slots[i].1));
            if let Some(f) = f.filter(|f| f.module == module) {
                found = Some(f.symbol.as_str());
            }
        }
        true
    });
    found
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

/// Size of an alternate signal stack: the fault handler formats records into stack buffers
/// (some 40 KiB); the rest is headroom. Mapped with MAP_NORESERVE: untouched, it costs no
/// memory.
const ALTSTACK_SIZE: usize = 256 << 10;

/// Gives the calling thread an alternate signal stack (a fresh mapping above a guard page),
/// unless it already has one, so that a handler installed with SA_ONSTACK runs even when the
/// thread's own stack overflowed. Returns false when none could be installed. For a helper's
/// serving threads too: call it at the start of each thread whose faults are handled.
pub fn altstack_for_this_thread() -> bool {
    // SAFETY: stack_t is plain data (all-zero is valid); sigaltstack with a null new stack
    // only writes the current setting into `cur`.
    let have = unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut cur) == 0 && cur.ss_flags & libc::SS_DISABLE == 0
    };
    if have {
        return true;
    }
    // SAFETY: a new private anonymous mapping, owned by nobody else.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ALTSTACK_SIZE + 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: the lowest page of the mapping just made becomes the guard page; the stack is
    // the rest of it, handed to the kernel and never unmapped (leaked for the thread's life).
    unsafe {
        libc::mprotect(p, 4096, libc::PROT_NONE);
        let st = libc::stack_t {
            ss_sp: p.cast::<u8>().add(4096).cast(),
            ss_flags: 0,
            ss_size: ALTSTACK_SIZE,
        };
        libc::sigaltstack(&st, std::ptr::null_mut()) == 0
    }
}

fn install_handler() {
    // The main thread's: a stack overflow of the program is then recorded (see the module
    // documentation for other threads).
    let onstack = if altstack_for_this_thread() {
        libc::SA_ONSTACK
    } else {
        0
    };
    for sig in FATAL {
        // SAFETY: installing a handler with a zeroed, then filled, sigaction.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_program_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER | onstack;
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
    // The mapped function the program called into the module: the crash may be deep inside
    // the module, in code no symbol names (a stripped library's internals).
    let function = if module == "main" {
        ""
    } else {
        entered_through(sp, module).unwrap_or("")
    };
    event(&Event {
        outcome: "program-crash",
        process: "main",
        module,
        function,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A code range [0x10000, 0x20000) in an object with a long path, and a program with a
    /// long path: records start large.
    fn setup() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = SETUP.set(Setup {
                dirs: Vec::new(),
                spool: Vec::new(),
                program: format!("/opt/{}/prog", "p".repeat(3000)),
                build_id: "ab".repeat(20),
                modules: Vec::new(),
                fns: Vec::new(),
            });
            let t = Table {
                objs: vec![ObjInfo {
                    text: vec![(0x10000, 0x20000)],
                    base: 0x10000,
                    path: format!("/usr/lib/{}/libm\"od\\.so", "l".repeat(200)),
                    module: "m".into(),
                    shared: false,
                }],
                slots: Vec::new(),
            };
            TABLE.store(Box::into_raw(Box::new(t)), Release);
        });
    }

    fn record(function: &str, detail: &str, frames: &[u64]) -> Vec<u8> {
        setup();
        let mut l = Line::new();
        format_event(
            &mut l,
            &Event {
                outcome: "mismatch",
                process: "parser",
                module: "m",
                function,
                signal: 11,
                fault_addr: 0xdead,
                env: "",
                detail,
                frames,
            },
        );
        l.finish().to_vec()
    }

    fn parse(line: &[u8]) -> serde_json::Value {
        assert!(line.len() <= LINE_MAX, "{} bytes", line.len());
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
        assert!(v.is_object());
        v
    }

    // A record over 8 KiB (a mismatch's detail holds the call's arguments) was cut at the
    // buffer's end, mid-string: the line was not JSON and the ingester dropped it.
    #[test]
    fn a_record_over_8_kib_stays_valid_json() {
        let detail: String = (0..20_000)
            .map(|i| ['a', '"', '\\', '\n', '\u{1}', 'é', 'z'][i % 7])
            .collect();
        let frames: Vec<u64> = (0..MAX_FRAMES as u64).map(|i| 0x10000 + i * 16).collect();
        let v = parse(&record("fx_greet", &detail, &frames));
        assert_eq!(v["function"], "fx_greet");
        assert_eq!(v["frames"].as_array().unwrap().len(), MAX_FRAMES, "{v}");
        assert_eq!(v["frames"][3]["off"], "0x30");
        let d = v["detail"].as_str().unwrap();
        assert!(d.ends_with("...") && d.len() < detail.len(), "{d}");
        // Each byte is one character (\u00XX for the non-ASCII ones).
        let as_chars: String = detail.bytes().map(char::from).collect();
        assert!(as_chars.starts_with(&d[..d.len() - 3]));
        assert!(v["program"].as_str().unwrap().ends_with("/prog"));
    }

    #[test]
    fn records_of_every_size_are_valid_json_and_cut_ones_say_so() {
        let frames: Vec<u64> = (0..MAX_FRAMES as u64).map(|i| 0x10000 + i).collect();
        for n in (0..12_000).step_by(733) {
            let long = "\u{7f}f".repeat(n / 2);
            for (f, d) in [(long.as_str(), ""), ("f", long.as_str()), (&long, &long)] {
                for fr in [&frames[..], &[]] {
                    let v = parse(&record(f, d, fr));
                    assert_eq!(v["v"], 1);
                    // Cut short: the fields that are there are whole, and it says so.
                    if v.get("truncated").is_some() {
                        assert_eq!(v["truncated"], true);
                    } else {
                        assert!(v.get("detail").is_some(), "{v}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_line_cut_inside_an_array_closes_it() {
        let mut l = Line::new();
        l.raw(b"{\"v\":1");
        l.key("list");
        l.open_array();
        let mut first = true;
        for _ in 0..10_000 {
            l.element(&mut first);
            l.num(123_456_789);
        }
        l.close_array();
        l.key("after");
        l.num(1);
        let v = parse(l.finish());
        assert_eq!(v["truncated"], true);
        assert!(v["list"].as_array().unwrap().len() > 100);
        assert!(v.get("after").is_none());
    }
}
