//! Test utilities: locate the built launcher, shim and C fixtures, run a program plain and
//! under fracture, and look for processes left behind.
//!
//! Every scenario runs in a fresh child process (patching touches the whole process), with a
//! watchdog instead of timing assertions.
#![deny(unsafe_code)]

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

/// Runs `cmd` with `stdin` as input; kills it after `limit` (a watchdog, not a timing test).
pub fn run_with(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    // Input and output move on their own threads, so a program that writes more than a pipe
    // holds before it has read its input cannot deadlock with us.
    let mut si = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = si.write_all(&input);
    });
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "watchdog: {:?} still running after {:?}\nstdout: {}\nstderr: {}",
                cmd,
                limit,
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub const WATCHDOG: Duration = Duration::from_secs(120);

/// `fracture run -c MAP [extra...] -- PROGRAM ARGS`.
pub fn under(map: &Path, extra: &[&str], program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(fracture());
    c.arg("run")
        .arg("-c")
        .arg(map)
        .args(extra)
        .arg("--")
        .arg(program)
        .args(args);
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
    s["processes"][proc_]["functions"][func]["calls"]
        .as_u64()
        .unwrap_or(0)
}
