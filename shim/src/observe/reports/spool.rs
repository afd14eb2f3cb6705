//! Spool records: the records (events and the run summary), formatted into a [`Line`]
//! (`line.rs`), and the append to this process's spool file.
//!
//! # Safety
//! [`event`] may run in the fault handler: its record is formatted into a [`Line`] on the
//! stack, without allocating. The unsafe blocks are plain system calls: `clock_gettime` and
//! `getpid` write only locals (or have no preconditions); `mkdir` and `open` take C strings
//! prepared at start or NUL-terminated in a local [`Line`]; `flock` and `write` take the
//! spool file's descriptor (opened here, kept in `SPOOL_FD`) and a buffer owned by the
//! caller.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, Ordering::*};

use super::line::Line;
use super::{obj_of, Runtime, SETUP};

/// The spool file of this process (-1: not opened yet) and the pid that opened it.
static SPOOL_FD: AtomicI32 = AtomicI32::new(-1);
static SPOOL_PID: AtomicI32 = AtomicI32::new(0);
/// Bytes written to the current spool file.
static SPOOL_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    let (sec, nsec) = crate::platform::sys::realtime();
    l.num(sec);
    l.raw(b".");
    let ms = nsec / 1_000_000;
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
    l.key("deployment");
    l.string(s.deployment.as_bytes());
    l.key("pid");
    l.num(crate::platform::sys::getpid() as u64);
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
    let pid = crate::platform::sys::getpid();
    let mut fd = SPOOL_FD.load(Acquire);
    if fd >= 0
        && SPOOL_PID.load(Acquire) == pid
        && SPOOL_BYTES.load(Relaxed) + rec.len() as u64 > ROTATE_AT
    {
        // A long-lived process starts a new file past ROTATE_AT, so that no file it writes
        // grows past what ingesters read (64 MiB). The old descriptor stays open (another
        // thread may be writing through it; its lock keeps the file until we exit); one
        // thread wins the switch, the others finish on the old file.
        if SPOOL_FD.compare_exchange(fd, -1, AcqRel, Acquire).is_ok() {
            fd = -1;
        }
    }
    if fd < 0 || SPOOL_PID.load(Acquire) != pid {
        fd = open_spool_file(s, pid);
        if fd < 0 {
            return;
        }
        SPOOL_BYTES.store(0, Relaxed);
        SPOOL_FD.store(fd, Release);
        SPOOL_PID.store(pid, Release);
    }
    let n = crate::platform::fs::write(fd, rec);
    SPOOL_BYTES.fetch_add(n.max(0) as u64, Relaxed);
}

/// Where a process's spool file is replaced by a new one (32 MiB).
const ROTATE_AT: u64 = 32 << 20;

/// Creates, locks and names a new spool file of this process (async-signal-safe); -1 when
/// it cannot.
fn open_spool_file(s: &super::Setup, pid: i32) -> i32 {
    use crate::platform::fs;
    {
        // 0700 / 0600: records hold paths, arguments and addresses (existing directories
        // keep their mode).
        for d in &s.dirs {
            fs::mkdir(d, 0o700);
        }
        let (sec, nsec) = crate::platform::sys::realtime();
        let ns = sec * 1_000_000_000 + nsec;
        // Two threads of one process may start a file in the same nanosecond: the second
        // takes the next one.
        for bump in 0..8 {
            let mut name = Line::new();
            name.raw(&s.spool);
            name.num(pid as u64);
            name.raw(b"-");
            name.num(ns + bump);
            name.raw(b".jsonl");
            let stem = name.n;
            name.raw(b".new\0");
            if name.over {
                return -1;
            }
            let mut done = Line::new();
            done.raw(&name.b[..stem]);
            done.raw(b"\0");
            let (Ok(new), Ok(done)) = (
                std::ffi::CStr::from_bytes_until_nul(&name.b),
                std::ffi::CStr::from_bytes_until_nul(&done.b),
            ) else {
                return -1;
            };
            // A fresh file of our own: never one that exists (or a symlink planted there).
            let fd = fs::create_new_for_append(new, 0o600);
            if fd < 0 {
                if crate::platform::sys::errno() == libc::EEXIST {
                    continue;
                }
                return -1;
            }
            // Held for the life of the process: the ingester deletes the file only when it
            // can take the lock exclusively, i.e. when nobody writes to it any more. The
            // file gets its `.jsonl` name (the only one ingesters read) once locked, so a
            // spool file without a lock is one whose writer is gone. Where locks do not work
            // (some network file systems) ingesters cannot take one either, so they store
            // the file and never remove it.
            fs::lock_shared(fd);
            fs::rename(new, done);
            return fd;
        }
        -1
    }
}

/// The run summary at exit: per isolated function, calls and crashes.
pub fn run_summary(rt: &Runtime) {
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

#[cfg(test)]
mod tests {
    use super::super::line::LINE_MAX;
    use super::super::{ObjInfo, Setup, Table, MAX_FRAMES, TABLE};
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
                deployment: "host".into(),
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
