//! Futexes on words of shared mappings: the sleeping half of every wait between processes.
//!
//! # Safety
//! The words are `AtomicU32`s the caller borrows, so they are live, aligned and 4 bytes; the
//! kernel reads them (wait) or only uses their address (wake).

#![allow(unsafe_code)]

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `word` holds `expected`, for up to `timeout` (a wake, a signal or a changed
/// value end it early; the caller re-checks). Shared (not private) futexes: the waker may be
/// another process.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a live, aligned u32; the timeout is a local.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every waiter on `word`. Async-signal-safe.
pub fn wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}
