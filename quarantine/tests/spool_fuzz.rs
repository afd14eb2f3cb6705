//! Fuzzing the crash-report spool ingester (`Db::open` ingests `<db>.spool/*.jsonl`), as a
//! deterministic test: bytes from a fixed-seed PRNG feed `arbitrary::Unstructured`, so every
//! run writes the same spool files and a failure prints the seed that rebuilds them
//! (`FRACTURE_FUZZ_SEED=0x... cargo test --release -p quarantine --test spool_fuzz`).
//! `FRACTURE_FUZZ_ITERS=N` runs N cases (of 1 to 8 spool files each) instead of the default.
//!
//! cargo-fuzz (libFuzzer) needs nightly `-Z` flags; this runs on stable in `cargo test`.
//!
//! Properties: ingestion never panics and finishes before a watchdog fires; the database opens
//! and the `report` and `plan` queries run afterwards; every complete line is stored or
//! skipped, and a second ingestion stores nothing again.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use quarantine::reports::{count_events, module_history, summary, Db};

/// SplitMix64: the bytes of case `seed`.
fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn seeds(base: u64, default: usize) -> Vec<u64> {
    if let Some(s) = std::env::var("FRACTURE_FUZZ_SEED").ok().and_then(|s| {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    }) {
        return vec![s];
    }
    let n = std::env::var("FRACTURE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n as u64).map(|i| base ^ (i << 20) ^ i).collect()
}

/// Exits the test process when one case runs longer than [`LIMIT`], printing its seed.
fn watchdog(current: Arc<AtomicU64>, started: Arc<AtomicU64>, t0: Instant) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(200));
        let at = started.load(Ordering::Acquire);
        if at != 0 && t0.elapsed().as_millis() as u64 > at + LIMIT.as_millis() as u64 {
            let seed = current.load(Ordering::Acquire);
            eprintln!(
                "spool fuzz: case with seed {seed:#x} still running after {LIMIT:?}: hang or blow-up (rerun with FRACTURE_FUZZ_SEED={seed:#x})"
            );
            std::process::exit(101);
        }
    });
}

/// Far above what any case takes, so only a real hang fires it.
const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The model: spool lines.

/// Any JSON value, written by hand so numbers can be out of every range.
#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    /// `1e400`, 40-digit integers, `-0`, `1E-400`.
    Odd(u8),
    Str(String),
    Word(u8),
    Array(Vec<Json>),
    Object(Vec<(Key, Json)>),
    /// Arrays nested 100 to 355 deep (serde_json refuses beyond 128).
    Deep(u8),
}

#[derive(Debug, Arbitrary)]
enum Key {
    Field(u8),
    Any(String),
}

const FIELDS: &[&str] = &[
    "v",
    "kind",
    "time",
    "pid",
    "program",
    "build_id",
    "process",
    "module",
    "function",
    "signal",
    "fault_addr",
    "outcome",
    "env",
    "detail",
    "frames",
    "obj",
    "off",
    "symbol",
    "map",
    "isolated",
    "exit",
    "calls",
    "crashes",
];

const WORDS: &[&str] = &[
    "event",
    "run",
    "crash",
    "hang",
    "gave-up",
    "helper-exit",
    "program-crash",
    "mismatch",
    "main",
    "",
    "0x10",
    "0xffffffffffffffffff",
    "/dev/zero",
    "/nonexistent",
    "/proc/self/exe",
    "/etc/hostname",
    "libfx.so",
    "f+0x10",
    "+",
    "\u{0}",
    "é",
];

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => write!(out, "{b}").unwrap(),
            Json::Int(n) => write!(out, "{n}").unwrap(),
            Json::Uint(n) => write!(out, "{n}").unwrap(),
            Json::Float(f) if f.is_finite() => write!(out, "{f:?}").unwrap(),
            Json::Float(_) => out.push_str("1.5"),
            Json::Odd(i) => out.push_str(
                [
                    "1e400",
                    "-1e400",
                    "1E-400",
                    "-0",
                    "9223372036854775807",
                    "9223372036854775808",
                    "-9223372036854775808",
                    "-9223372036854775809",
                    "18446744073709551616",
                    "1234567890123456789012345678901234567890",
                    "0.0000000000000000000000000000000000000001",
                ][usize::from(*i) % 11],
            ),
            Json::Str(s) => write_str(out, s),
            Json::Word(i) => write_str(out, WORDS[usize::from(*i) % WORDS.len()]),
            Json::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Key::Field(f) => write_str(out, FIELDS[usize::from(*f) % FIELDS.len()]),
                        Key::Any(s) => write_str(out, s),
                    }
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
            Json::Deep(n) => {
                let d = 100 + usize::from(*n);
                out.push_str(&"[".repeat(d));
                out.push_str(&"]".repeat(d));
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

/// A field of a record: the right type mostly, any JSON value now and then.
#[derive(Debug)]
enum F<T> {
    Right(T),
    Wrong(Json),
    Missing,
}

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for F<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=15)? {
            0 => F::Missing,
            1 => F::Wrong(Json::arbitrary(u)?),
            _ => F::Right(T::arbitrary(u)?),
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Frame {
    module: F<u8>,
    obj: F<u8>,
    off: F<u64>,
    symbol: F<u8>,
}

#[derive(Debug, Arbitrary)]
struct Call {
    process: F<u8>,
    module: F<u8>,
    function: F<u8>,
    calls: F<Count>,
    crashes: F<Count>,
}

/// A count as the shim writes it, or one at the edges of i64.
#[derive(Debug)]
struct Count(i64);

impl<'a> Arbitrary<'a> for Count {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Count(match u.int_in_range(0u8..=7)? {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => -1,
            3 => i64::arbitrary(u)?,
            _ => i64::from(u16::arbitrary(u)?),
        }))
    }
}

#[derive(Debug, Arbitrary)]
struct Record {
    event: bool,
    v: F<u8>,
    time: F<f64>,
    pid: F<i64>,
    program: F<u8>,
    module: F<u8>,
    function: F<u8>,
    signal: F<i64>,
    outcome: F<u8>,
    frames: F<Vec<Frame>>,
    calls: F<Vec<Call>>,
    exit: F<i64>,
    isolated: F<Vec<u8>>,
}

/// Names from a small set, so records of different files share modules and functions.
fn name(i: u8) -> &'static str {
    ["m0", "m1", "main", "f0", "f1", "", "libfx.so", "/bin/x"][usize::from(i) % 8]
}

fn field<T>(out: &mut String, key: &str, f: &F<T>, right: impl Fn(&T, &mut String)) {
    let mut v = String::new();
    match f {
        F::Missing => return,
        F::Wrong(j) => j.write(&mut v),
        F::Right(t) => right(t, &mut v),
    }
    if out.len() > 1 {
        out.push(',');
    }
    write_str(out, key);
    out.push(':');
    out.push_str(&v);
}

fn word(i: &u8, out: &mut String) {
    write_str(out, name(*i))
}

impl Record {
    /// The JSON line, and whether it is a record the ingester must store.
    fn line(&self) -> (String, bool) {
        let mut o = String::from("{");
        field(&mut o, "v", &self.v, |v, o| {
            o.push_str(if *v < 240 { "1" } else { "2" })
        });
        write_str_field(&mut o, "kind", if self.event { "event" } else { "run" });
        field(&mut o, "time", &self.time, |t, o| {
            let t = if t.is_finite() { t.abs() % 2e9 } else { 1.5 };
            write!(o, "{t:?}").unwrap()
        });
        field(&mut o, "pid", &self.pid, |p, o| write!(o, "{p}").unwrap());
        field(&mut o, "program", &self.program, word);
        field(&mut o, "module", &self.module, word);
        field(&mut o, "function", &self.function, word);
        if self.event {
            field(&mut o, "signal", &self.signal, |s, o| {
                write!(o, "{s}").unwrap()
            });
            field(&mut o, "outcome", &self.outcome, |i, o| {
                write_str(o, WORDS[1 + usize::from(*i) % 7])
            });
            field(&mut o, "frames", &self.frames, |fs, o| {
                o.push('[');
                for (i, fr) in fs.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let mut f = String::from("{");
                    field(&mut f, "module", &fr.module, word);
                    field(&mut f, "obj", &fr.obj, |i, o| {
                        write_str(o, WORDS[10 + usize::from(*i) % 7])
                    });
                    field(&mut f, "off", &fr.off, |n, o| {
                        write_str(o, &format!("{n:#x}"))
                    });
                    field(&mut f, "symbol", &fr.symbol, word);
                    f.push('}');
                    o.push_str(&f);
                }
                o.push(']');
            });
        } else {
            field(&mut o, "exit", &self.exit, |e, o| write!(o, "{e}").unwrap());
            field(&mut o, "isolated", &self.isolated, |l, o| {
                let names: Vec<String> = l.iter().map(|i| format!("{:?}", name(*i))).collect();
                write!(o, "[{}]", names.join(",")).unwrap()
            });
            field(&mut o, "calls", &self.calls, |cs, o| {
                o.push('[');
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let mut f = String::from("{");
                    field(&mut f, "process", &c.process, word);
                    field(&mut f, "module", &c.module, word);
                    field(&mut f, "function", &c.function, word);
                    field(&mut f, "calls", &c.calls, |n, o| {
                        write!(o, "{}", n.0).unwrap()
                    });
                    field(&mut f, "crashes", &c.crashes, |n, o| {
                        write!(o, "{}", n.0).unwrap()
                    });
                    f.push('}');
                    o.push_str(&f);
                }
                o.push(']');
            });
        }
        o.push('}');
        // Stored for sure: version 1, a finite time, for events a known outcome, and no field
        // of a wrong type (one may be a number out of range or nested too deep for JSON).
        let valid = matches!(&self.v, F::Right(v) if *v < 240)
            && self.well_typed()
            && matches!(self.time, F::Right(_))
            && (!self.event || matches!(self.outcome, F::Right(_)));
        (o, valid)
    }
}

impl<T> F<T> {
    fn wrong(&self) -> bool {
        matches!(self, F::Wrong(_))
    }
}

impl Record {
    fn well_typed(&self) -> bool {
        let top = [
            self.pid.wrong(),
            self.program.wrong(),
            self.module.wrong(),
            self.function.wrong(),
            self.signal.wrong(),
            self.outcome.wrong(),
            self.frames.wrong(),
            self.calls.wrong(),
            self.exit.wrong(),
            self.isolated.wrong(),
        ];
        let frames = match &self.frames {
            F::Right(fs) => fs
                .iter()
                .any(|f| f.module.wrong() || f.obj.wrong() || f.off.wrong() || f.symbol.wrong()),
            _ => false,
        };
        let calls = match &self.calls {
            F::Right(cs) => cs.iter().any(|c| {
                c.process.wrong()
                    || c.module.wrong()
                    || c.function.wrong()
                    || c.calls.wrong()
                    || c.crashes.wrong()
            }),
            _ => false,
        };
        !top.contains(&true) && !frames && !calls
    }
}

fn write_str_field(o: &mut String, key: &str, value: &str) {
    if o.len() > 1 {
        o.push(',');
    }
    write_str(o, key);
    o.push(':');
    write_str(o, value);
}

#[derive(Debug)]
enum Line {
    Record(Record),
    Json(Json),
    Bytes(Vec<u8>),
    /// A record cut short at a random byte, then the rest of the file.
    Cut(Record, u16),
    /// A line of more than 1 MiB.
    Long(Record),
    Empty,
}

impl<'a> Arbitrary<'a> for Line {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u16..=999)? {
            0..=599 => Line::Record(Record::arbitrary(u)?),
            600..=799 => Line::Json(Json::arbitrary(u)?),
            800..=899 => Line::Bytes(Vec::arbitrary(u)?),
            900..=969 => Line::Cut(Record::arbitrary(u)?, u16::arbitrary(u)?),
            970..=971 => Line::Long(Record::arbitrary(u)?),
            _ => Line::Empty,
        })
    }
}

#[derive(Debug, Arbitrary)]
struct SpoolFile {
    lines: Vec<Line>,
    /// The last line without its newline (still being written).
    partial: Option<Record>,
    /// Repeat the lines this many times (thousands of lines), when large.
    repeat: u8,
}

impl SpoolFile {
    /// The bytes, the complete lines, and how many of them are surely valid records.
    fn bytes(&self) -> (Vec<u8>, usize, usize) {
        let mut body = Vec::new();
        let (mut lines, mut valid) = (0, 0);
        for l in &self.lines {
            match l {
                Line::Record(r) => {
                    let (text, ok) = r.line();
                    body.extend_from_slice(text.as_bytes());
                    // A line longer than the shim ever writes (8 KiB) is no record.
                    valid += usize::from(ok && text.len() <= 8192);
                }
                Line::Json(j) => {
                    let mut s = String::new();
                    j.write(&mut s);
                    body.extend_from_slice(s.as_bytes());
                }
                Line::Bytes(b) => body.extend(b.iter().map(|&c| if c == b'\n' { b' ' } else { c })),
                Line::Cut(r, at) => {
                    let text = r.line().0;
                    let at = usize::from(*at) % text.len().max(1);
                    body.extend_from_slice(&text.as_bytes()[..at]);
                }
                Line::Long(r) => {
                    let (text, ok) = r.line();
                    // Valid JSON still: the padding is a field of the record.
                    let pad = format!(",\"pad\":\"{}\"}}", "x".repeat(1 << 20));
                    body.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
                    body.extend_from_slice(pad.as_bytes());
                    // Skipped: longer than any line the shim writes (a hostile line of any
                    // length must not cost memory in proportion).
                    let _ = ok;
                }
                Line::Empty => {}
            }
            body.push(b'\n');
            lines += 1;
        }
        let times = if self.repeat > 250 && body.len() < 4096 {
            3000 / lines.max(1)
        } else {
            1
        };
        let mut data = body.repeat(times.max(1));
        if let Some(r) = &self.partial {
            let text = r.line().0;
            data.extend_from_slice(&text.as_bytes()[..text.len() / 2]);
        }
        (data, lines * times.max(1), valid * times.max(1))
    }
}

fn runs(db: &Db) -> i64 {
    db.conn()
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

/// Opens the database, runs every query `report` and `plan` make, and returns
/// (records stored now, lines skipped, events, runs).
fn open_and_query(db_path: &Path) -> Result<(usize, usize, u64, i64), String> {
    let db = Db::open(db_path).map_err(|e| format!("Db::open: {e:#}"))?;
    let ingested = db.ingested.clone();
    let events = count_events(&db).map_err(|e| format!("count_events: {e:#}"))?;
    let runs = runs(&db);
    let dbs = [db];
    summary(&dbs).map_err(|e| format!("summary (fracture report): {e:#}"))?;
    module_history(&dbs, &|_, _| true)
        .map_err(|e| format!("module_history (fracture plan): {e:#}"))?;
    Ok((ingested.records, ingested.skipped, events, runs))
}

#[test]
fn random_spool_files_are_ingested_once_never_a_panic() {
    let t0 = Instant::now();
    let (current, started) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    watchdog(current.clone(), started.clone(), t0);
    let root = std::env::temp_dir().join(format!("fracture-fuzz-spool-{}", std::process::id()));
    let seeds = seeds(0x7370_6f6f, 500);
    let last_input = Mutex::new(PathBuf::new());
    let (mut files, mut lines_total, mut stored_total) = (0usize, 0usize, 0usize);
    for &seed in &seeds {
        let dir = root.join(format!("{seed:x}"));
        let spool = dir.join("r.db.spool");
        std::fs::create_dir_all(&spool).unwrap();
        let bytes = bytes_of(seed, 8192);
        let mut u = Unstructured::new(&bytes);
        let n = 1 + u.int_in_range(0u8..=7).unwrap_or(0);
        let (mut lines, mut valid) = (0, 0);
        for i in 0..n {
            let f = SpoolFile::arbitrary(&mut u).unwrap_or(SpoolFile {
                lines: Vec::new(),
                partial: None,
                repeat: 0,
            });
            let (data, l, v) = f.bytes();
            std::fs::write(spool.join(format!("{}-{i}.jsonl", 100 + i)), data).unwrap();
            lines += l;
            valid += v;
        }
        files += usize::from(n);
        *last_input.lock().unwrap() = dir.clone();
        current.store(seed, Ordering::Release);
        started.store(t0.elapsed().as_millis() as u64 + 1, Ordering::Release);
        let db = dir.join("r.db");
        let r = catch_unwind(AssertUnwindSafe(|| {
            (open_and_query(&db), open_and_query(&db))
        }));
        started.store(0, Ordering::Release);
        let fail = |what: String| -> ! {
            panic!(
                "seed {seed:#x} (rerun with FRACTURE_FUZZ_SEED={seed:#x}; the spool is kept in {}): {what}",
                spool.display()
            )
        };
        let (first, second) = match r {
            Ok((Ok(a), Ok(b))) => (a, b),
            Ok((Err(e), _)) | Ok((_, Err(e))) => fail(e),
            Err(p) => fail(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        let (records, skipped, events, runs) = first;
        if records + skipped != lines {
            fail(format!(
                "{lines} complete lines, but {records} stored and {skipped} skipped"
            ));
        }
        if records < valid {
            fail(format!("{valid} valid records, but only {records} stored"));
        }
        if events + runs as u64 != records as u64 {
            fail(format!(
                "{records} stored, but {events} events and {runs} runs in the database"
            ));
        }
        if second.0 != 0 || second.2 != events || second.3 != runs {
            fail(format!(
                "a second ingestion stored again: {second:?} after {first:?}"
            ));
        }
        lines_total += lines;
        stored_total += records;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
    eprintln!(
        "spool fuzz: {} cases, {files} spool files, {lines_total} lines ({stored_total} records stored) in {:?}",
        seeds.len(),
        t0.elapsed()
    );
}
