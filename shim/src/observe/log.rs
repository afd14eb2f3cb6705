//! `FRACTURE_LOG` levels and one-line messages to stderr.
//!
//! Messages are formatted into a stack buffer and written with one `write(2)`, so a line is
//! never interleaved with the program's output and no lock is taken (usable after fork).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

pub const ERROR: u8 = 1;
pub const WARN: u8 = 2;
pub const INFO: u8 = 3;
pub const DEBUG: u8 = 4;

static LEVEL: AtomicU8 = AtomicU8::new(WARN);

pub fn init_from_env() {
    let lvl = match std::env::var("FRACTURE_LOG").as_deref() {
        Ok("error") => ERROR,
        Ok("info") => INFO,
        Ok("debug") | Ok("trace") => DEBUG,
        Ok("off") | Ok("none") => 0,
        _ => WARN,
    };
    LEVEL.store(lvl, Relaxed);
}

/// Sets the level (tests that provoke thousands of refusals on purpose).
#[cfg(test)]
pub fn set_level(level: u8) {
    LEVEL.store(level, Relaxed);
}

pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Relaxed)
}

struct StackBuf {
    buf: [u8; 1024],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes `fracture[pid]: LEVEL: message\n` to stderr in one write.
pub fn emit(level: u8, args: std::fmt::Arguments<'_>) {
    let mut b = StackBuf {
        buf: [0; 1024],
        len: 0,
    };
    let name = match level {
        ERROR => "error",
        WARN => "warn",
        INFO => "info",
        _ => "debug",
    };
    let pid = crate::platform::sys::getpid();
    let _ = write!(b, "fracture[{pid}]: {name}: ");
    let _ = b.write_fmt(args);
    if b.len == b.buf.len() {
        b.len -= 1;
    }
    b.buf[b.len] = b'\n';
    b.len += 1;
    crate::platform::sys::write_stderr(&b.buf[..b.len]);
}

macro_rules! log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::observe::log::enabled($lvl) {
            $crate::observe::log::emit($lvl, format_args!($($arg)*))
        }
    };
}
macro_rules! error { ($($arg:tt)*) => { log!($crate::observe::log::ERROR, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { log!($crate::observe::log::WARN, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { log!($crate::observe::log::INFO, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { log!($crate::observe::log::DEBUG, $($arg)*) }; }
