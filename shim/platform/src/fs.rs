//! Files, async-signal-safe: what the crash spool writer needs from inside a fatal-signal
//! handler (no allocation, no lock, no stdio).
//!
//! # Safety
//! Paths are `CStr`s (NUL-terminated by type) and buffers are slices whose lengths are passed
//! with them; the kernel reads nothing else.

#![allow(unsafe_code)]

use std::ffi::CStr;

/// mkdir(2) with `mode`; false when it failed (an existing directory included).
pub fn mkdir(path: &CStr, mode: u32) -> bool {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) == 0 }
}

/// Creates `path` for appending, with `mode`: only a file that did not exist (never one
/// planted there, nor a symlink), close-on-exec. The fd, or -1 (errno says why).
pub fn create_new_for_append(path: &CStr, mode: u32) -> i32 {
    // SAFETY: a NUL-terminated path; the mode is passed as the variadic third argument.
    unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY
                | libc::O_CREAT
                | libc::O_EXCL
                | libc::O_NOFOLLOW
                | libc::O_APPEND
                | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    }
}

/// Takes a shared `flock` on `fd` (waits for an exclusive holder); false when refused.
pub fn lock_shared(fd: i32) -> bool {
    // SAFETY: no memory arguments.
    unsafe { libc::flock(fd, libc::LOCK_SH) == 0 }
}

/// rename(2); false when it failed.
pub fn rename(from: &CStr, to: &CStr) -> bool {
    // SAFETY: two NUL-terminated paths.
    unsafe { libc::rename(from.as_ptr(), to.as_ptr()) == 0 }
}

/// write(2) of `bytes` to `fd`: the bytes written, or -1.
pub fn write(fd: i32, bytes: &[u8]) -> isize {
    // SAFETY: reading `bytes.len()` bytes of the caller's slice.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_created_once_written_locked_and_renamed() {
        let dir = std::env::temp_dir().join(format!("fracture-fs-{}", std::process::id()));
        let d = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        assert!(mkdir(&d, 0o700));
        assert!(!mkdir(&d, 0o700), "exists");
        let a = std::ffi::CString::new(format!("{}/a", dir.display())).unwrap();
        let b = std::ffi::CString::new(format!("{}/b", dir.display())).unwrap();
        let fd = create_new_for_append(&a, 0o600);
        assert!(fd >= 0);
        assert_eq!(
            create_new_for_append(&a, 0o600),
            -1,
            "never an existing file"
        );
        assert_eq!(crate::sys::errno(), libc::EEXIST);
        assert_eq!(write(fd, b"line\n"), 5);
        assert!(lock_shared(fd));
        assert!(rename(&a, &b));
        crate::sys::close(fd);
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"line\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
