//! What every e2e module uses: the paths of the built launcher, shim, C fixtures and maps; a
//! unique scratch directory; a command runner with a watchdog ([`run_with`]: no test hangs, a
//! hung child is killed after a bound and the test fails with what it printed); the comparison
//! of a run under fracture with a plain run ([`same_as_plain`], [`Twin`]); and the search for
//! processes a scenario left behind.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

pub fn fracture() -> PathBuf {
    let p = root().join("target/release/fracture");
    assert!(p.exists(), "{} missing: run `make` first", p.display());
    p
}

pub fn shim() -> PathBuf {
    root().join("target/release/libfracture.so")
}

pub fn fixture(name: &str) -> PathBuf {
    let p = root().join("target/fixtures").join(name);
    assert!(
        p.exists(),
        "{} missing: run `make fixtures` first",
        p.display()
    );
    p
}

pub fn config(name: &str) -> PathBuf {
    root().join("configs").join(name)
}

/// A unique scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("fracture-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` with `stdin` as input and returns what it printed once it has exited and its
/// stdout and stderr are closed. The watchdog (not a timing test): when that takes longer than
/// `limit` (a hung program, or a process left behind that still holds the output pipes), the
/// whole process group of `cmd` is killed and the test fails with what was printed so far.
pub fn run_with(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};
    // Its own process group, so that the watchdog reaches the program and helpers under
    // fracture too (they hold the pipes).
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn");
    // Input and output move on their own threads, so a program that writes more than a pipe
    // holds before it has read its input cannot deadlock with us.
    let mut si = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = si.write_all(&input);
    });
    // Read in chunks into a shared buffer: what was printed is there even if the pipe is
    // never closed.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let t = std::thread::spawn(move || {
            let Some(mut r) = r else { return };
            let mut chunk = [0u8; 8192];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        (t, buf)
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    let start = Instant::now();
    let mut status = None;
    loop {
        if status.is_none() {
            status = child.try_wait().unwrap();
        }
        if status.is_some() && out.0.is_finished() && err.0.is_finished() {
            break;
        }
        if start.elapsed() > limit {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.kill();
            let _ = child.wait();
            let what = match status {
                None => "still running".to_string(),
                Some(st) => format!("exited ({st:?}) but its output is still held open"),
            };
            panic!(
                "watchdog: {cmd:?} {what} after {limit:?}\nstdout: {}\nstderr: {}",
                text(&out.1),
                text(&err.1)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if writer.is_finished() {
        let _ = writer.join();
    }
    let _ = (out.0.join(), err.0.join());
    let take = |b: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *b.lock().unwrap());
    Output {
        // Already reaped by try_wait: wait() answers its status at once.
        status: child.wait().unwrap(),
        stdout: take(&out.1),
        stderr: take(&err.1),
    }
}

pub const WATCHDOG: Duration = Duration::from_secs(120);

/// `fracture run -c MAP [extra...] -- PROGRAM ARGS` (no `-c` when MAP is empty: `extra` has
/// `--isolate`).
pub fn under(map: &Path, extra: &[&str], program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(fracture());
    c.arg("run");
    if !map.as_os_str().is_empty() {
        c.arg("-c").arg(map);
    }
    c.args(extra).arg("--").arg(program).args(args);
    c.env_remove("LD_PRELOAD")
        .env_remove("FRACTURE_CONFIG")
        .env_remove("FRACTURE_STATS")
        // Crash reports only where a test asks for them (in its own database).
        .env("FRACTURE_REPORTS", "off");
    c
}

/// The program with the shim preloaded directly (no launcher).
pub fn preloaded(map: &Path, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .env("LD_PRELOAD", shim())
        .env("FRACTURE_CONFIG", map)
        .env_remove("FRACTURE_STATS")
        .env("FRACTURE_REPORTS", "off");
    c
}

pub fn plain(program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).env_remove("LD_PRELOAD");
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A unique marker for one scenario: put in the program's environment, inherited by the
/// zygote and helpers, so leftovers of this scenario alone can be found.
pub fn marker(tag: &str) -> (String, String) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (
        "FRACTURE_TEST_MARK".to_string(),
        format!("{tag}-{}-{n}", std::process::id()),
    )
}

/// Live (non-zombie) processes whose environment holds `mark`.
pub fn marked_processes(mark: &str) -> Vec<(i32, String)> {
    let needle = format!("FRACTURE_TEST_MARK={mark}");
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|x| x.1.trim_start().chars().next().unwrap_or('?'))
            .unwrap_or('?');
        if state == 'Z' {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        v.push((pid, comm.trim().to_string()));
    }
    v
}

/// Waits (bounded) until no process carries `mark`; returns what is left.
pub fn leftovers(mark: &str) -> Vec<(i32, String)> {
    let t = Instant::now();
    loop {
        let now = marked_processes(mark);
        if now.is_empty() || t.elapsed() > Duration::from_secs(10) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parsed `--stats` file.
pub fn stats(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("stats {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `stats.processes[proc].functions[func].calls`
pub fn calls(s: &serde_json::Value, proc_: &str, func: &str) -> u64 {
    fn_stat(s, proc_, func, "calls")
}

/// `stats.processes[proc].functions[func][key]` (0 when absent).
pub fn fn_stat(s: &serde_json::Value, proc_: &str, func: &str, key: &str) -> u64 {
    s["processes"][proc_]["functions"][func][key]
        .as_u64()
        .unwrap_or(0)
}

/// `status` as a shell reports it: the exit code, or 128 + the signal that killed it (what
/// `fracture run` exits with when its program is killed by a signal).
pub fn shell_status(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or(status.signal().map(|s| 128 + s))
}

/// Runs `program args` plain and under `fracture run -c map`, both with `stdin`, and asserts
/// that the run under fracture printed the same stdout and stderr and ended with the same
/// status, that the plain run succeeded, and that no process was left behind; a failure
/// prints a diff. Returns the output of the run under fracture. [`Twin`] says more (fracture
/// options, environment, lines that may differ).
pub fn same_as_plain(map: &Path, program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    Twin::new(map, program, args).stdin(stdin).same_as_plain()
}

/// One program run twice, plain and with fracture, for [`Twin::same_as_plain`].
pub struct Twin {
    map: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    stdin: Vec<u8>,
    fracture_args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    plain_env: Vec<(OsString, OsString)>,
    preloaded: bool,
    stderr_too: bool,
    ignore: Option<fn(&str) -> bool>,
    limit: Duration,
}

impl Twin {
    pub fn new(map: &Path, program: &Path, args: &[&str]) -> Twin {
        Twin {
            map: map.to_path_buf(),
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: Vec::new(),
            fracture_args: Vec::new(),
            env: Vec::new(),
            plain_env: Vec::new(),
            preloaded: false,
            stderr_too: true,
            ignore: None,
            limit: WATCHDOG,
        }
    }

    /// `fracture run --isolate OBJECTS -- PROGRAM ARGS`: no map.
    pub fn isolating(objects: &str, program: &Path, args: &[&str]) -> Twin {
        Twin::new(Path::new(""), program, args).fracture_args(&["--isolate", objects])
    }

    pub fn stdin(mut self, input: &[u8]) -> Twin {
        self.stdin = input.to_vec();
        self
    }

    /// Options of `fracture run` (before `--`).
    pub fn fracture_args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Twin {
        self.fracture_args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `--set KEY=VALUE`.
    pub fn set(self, kv: &str) -> Twin {
        self.fracture_args(&["--set", kv])
    }

    /// `--stats FILE`.
    pub fn stats(self, file: &Path) -> Twin {
        self.fracture_args(&[OsStr::new("--stats"), file.as_os_str()])
    }

    /// An environment variable of the run under fracture only.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Twin {
        self.env
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }

    /// An environment variable of the plain run only.
    pub fn plain_env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Twin {
        self.plain_env
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }

    /// With the shim preloaded directly (`LD_PRELOAD`, `FRACTURE_CONFIG`), not the launcher.
    pub fn preloaded(mut self) -> Twin {
        self.preloaded = true;
        self
    }

    /// Fracture is expected to speak on stderr (warnings, a recovery, valgrind's report):
    /// stderr is not compared, the caller checks it.
    pub fn fracture_speaks(mut self) -> Twin {
        self.stderr_too = false;
        self
    }

    /// Lines for which `ignore` is true are left out of both stdouts before comparing (a line
    /// that says where a function ran).
    pub fn ignoring_lines(mut self, ignore: fn(&str) -> bool) -> Twin {
        self.ignore = Some(ignore);
        self
    }

    /// The watchdog of each run, instead of [`WATCHDOG`].
    pub fn watchdog(mut self, limit: Duration) -> Twin {
        self.limit = limit;
        self
    }

    /// Runs both and compares them (see [`same_as_plain`]); returns the output of the run
    /// under fracture.
    pub fn same_as_plain(self) -> Output {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut p = plain(&self.program, &args);
        p.envs(self.plain_env.iter().map(|(k, v)| (k, v)));
        let want = run_with(p, &self.stdin, self.limit);
        let tag = self
            .program
            .file_name()
            .map_or("twin".into(), |n| n.to_string_lossy());
        let (k, mark) = marker(&tag);
        let mut f = if self.preloaded {
            assert!(
                self.fracture_args.is_empty(),
                "a preloaded run has no fracture options"
            );
            preloaded(&self.map, &self.program, &args)
        } else {
            let extra: Vec<&str> = self
                .fracture_args
                .iter()
                .map(|a| a.to_str().expect("UTF-8 fracture option"))
                .collect();
            under(&self.map, &extra, &self.program, &args)
        };
        f.envs(self.env.iter().map(|(k, v)| (k, v))).env(&k, &mark);
        let what = format!("{:?}", f);
        let got = run_with(f, &self.stdin, self.limit);
        let lines = |o: &[u8]| -> String {
            let text = String::from_utf8_lossy(o);
            match self.ignore {
                Some(ignore) => text
                    .split_inclusive('\n')
                    .filter(|l| !ignore(l.trim_end_matches('\n')))
                    .collect(),
                None => text.into_owned(),
            }
        };
        let mut wrong = Vec::new();
        if !want.status.success() {
            wrong.push(format!(
                "the plain run failed ({:?}), so the comparison says nothing",
                want.status
            ));
        }
        if shell_status(&got.status) != shell_status(&want.status) {
            wrong.push(format!(
                "status: plain {:?}, under fracture {:?}",
                want.status, got.status
            ));
        }
        let (w, g) = (lines(&want.stdout), lines(&got.stdout));
        if w != g {
            wrong.push(format!(
                "stdout (- plain, + under fracture):\n{}",
                diff(&w, &g)
            ));
        }
        if self.stderr_too && got.stderr != want.stderr {
            wrong.push(format!(
                "stderr (- plain, + under fracture):\n{}",
                diff(&stderr(&want), &stderr(&got))
            ));
        }
        assert!(
            wrong.is_empty(),
            "{what}\ndiffers from the plain run:\n{}\nstderr under fracture:\n{}",
            wrong.join("\n"),
            stderr(&got)
        );
        let left = leftovers(&mark);
        assert!(left.is_empty(), "{what}\nprocesses left behind: {left:?}");
        got
    }
}

/// A line diff of `a` and `b` (`-` only in a, `+` only in b), with three lines of context
/// around each change; unchanged stretches are elided.
pub fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (n, m) = (a.len(), b.len());
    let mut ops: Vec<(char, &str)> = Vec::new();
    if n.saturating_mul(m) <= 1 << 24 {
        // Longest common subsequence, suffix table: lcs[i][j] of a[i..] and b[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if a[i] == b[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                ops.push((' ', a[i]));
                (i, j) = (i + 1, j + 1);
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                ops.push(('-', a[i]));
                i += 1;
            } else {
                ops.push(('+', b[j]));
                j += 1;
            }
        }
    } else {
        // Too large for the table: the common prefix, then the rest of each.
        let k = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        ops.extend(a[..k].iter().map(|l| (' ', *l)));
        ops.extend(a[k..].iter().map(|l| ('-', *l)));
        ops.extend(b[k..].iter().map(|l| ('+', *l)));
    }
    if ops.iter().all(|o| o.0 == ' ') {
        return "  (the same lines: they differ in a final newline or in invalid UTF-8)\n".into();
    }
    let near = |i: usize| {
        ops[i.saturating_sub(3)..(i + 4).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ')
    };
    let mut out = String::new();
    let mut elided = false;
    for (i, (op, line)) in ops.iter().enumerate() {
        if near(i) {
            out.push_str(&format!("{op} {line}\n"));
            elided = false;
        } else if !elided {
            out.push_str("  ...\n");
            elided = true;
        }
    }
    out
}

#[test]
fn diff_shows_the_changed_lines_with_their_context() {
    let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
    let b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\nten\n";
    assert_eq!(
        diff(a, b),
        "  ...\n  2\n  3\n  4\n- 5\n+ five\n  6\n  7\n  8\n  9\n+ ten\n"
    );
    assert!(diff("a", "a\n").contains("final newline"));
}

// The watchdog killed only the direct child and then waited without bound for the output
// pipes, which the processes that child had started still held: the test hung.
#[test]
fn the_watchdog_kills_a_hung_program_and_what_it_started() {
    // A shell that starts a sleep (which holds the output pipes too) and hangs.
    let t = TempDir::new("watchdog");
    let pidfile = t.path("pid");
    let script = format!(
        "echo started; sleep 600 & echo $! > {}; sleep 600",
        pidfile.display()
    );
    let mut c = Command::new("/bin/sh");
    c.args(["-c", &script]);
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_with(c, b"", Duration::from_secs(1))
    }))
    .expect_err("the watchdog fired");
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("still running") && msg.contains("stdout: started"),
        "{msg}"
    );
    let sleep = std::fs::read_to_string(&pidfile).unwrap();
    let proc_ = PathBuf::from(format!("/proc/{}", sleep.trim()));
    let t0 = Instant::now();
    while proc_.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stat = std::fs::read_to_string(proc_.join("stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the background sleep survived: {stat}"
    );
}

// Once the child had exited, its output was read without a bound: a process it left behind
// holding the pipes hung the test.
#[test]
fn the_watchdog_fires_when_a_process_left_behind_holds_the_output() {
    // The shell exits at once; the sleep it started keeps stdout open.
    let mut c = Command::new("/bin/sh");
    c.args(["-c", "sleep 600 & echo bye"]);
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_with(c, b"", Duration::from_secs(1))
    }))
    .expect_err("the watchdog fired");
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("but its output is still held open") && msg.contains("stdout: bye"),
        "{msg}"
    );
}

/// A list of real files of many kinds (ELF, scripts, text, symlinks, compressed docs).
pub fn real_files(n: usize) -> Vec<String> {
    let mut v = Vec::new();
    for d in [
        "/usr/bin",
        "/usr/share/doc",
        "/usr/lib/x86_64-linux-gnu",
        "/etc",
    ] {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names.into_iter().take(n / 3 + 1) {
            v.push(p.to_string_lossy().into_owned());
        }
    }
    v.truncate(n);
    v
}

/// Headless Chromium's screenshot of `page` (a file), `w` x `h` pixels, as RGBA rows.
pub fn screenshot(page: &Path, w: u32, h: u32, dir: &TempDir) -> (u32, u32, Vec<u8>) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("headless Chromium (Debian's chromium package; .ci/run installs it)");
    let shot = dir.path("shot.png");
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.path("chromium").display()
    ))
    .arg(format!("--window-size={w},{h}"))
    .arg(format!("--screenshot={}", shot.display()))
    .arg(format!("file://{}", page.display()));
    let o = run_with(c, b"", WATCHDOG);
    assert!(shot.exists(), "no screenshot: {}", stderr(&o));
    let dec = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    let px = match info.color_type {
        png::ColorType::Rgba => buf[..info.buffer_size()].to_vec(),
        png::ColorType::Rgb => buf[..info.buffer_size()]
            .chunks(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        other => panic!("screenshot colour type {other:?}"),
    };
    (info.width, info.height, px)
}

/// Pixels of colour `#rrggbb` in an RGBA image.
pub fn pixels_of(px: &[u8], hex: &str) -> usize {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    let (r, g, b) = ((v >> 16) as u8, (v >> 8) as u8, v as u8);
    px.chunks(4)
        .filter(|c| c[0] == r && c[1] == g && c[2] == b)
        .count()
}

/// The first column of `sql` over the report database `db`, after moving whatever is still
/// in its spool into it (`fracture sync`): the records a run left, wherever they are now.
pub fn stored(db: &Path, sql: &str) -> Vec<String> {
    let mut c = Command::new(fracture());
    c.arg("sync").arg("--db").arg(db).env_remove("LD_PRELOAD");
    ok(run_with(c, b"", WATCHDOG));
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut q = conn.prepare(sql).unwrap();
    let rows = q
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    rows
}
