//! Files, async-signal-safe: what the crash spool writer needs from inside a fatal-signal
//! handler (no allocation, no lock, no stdio); and [`read_proc`], which is not (it allocates),
//! for the /proc files the shim reads at start.
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

/// The text of a file of /proc (maps, cpuinfo, stat): read in 64 KiB reads. (`read_to_string`
/// sizes its buffer from the file's length, 0 for /proc files, and reads 32 bytes, 32, 64 ...:
/// ten `read`s for a maps file of 10 KB, each of which has the kernel walk the mappings anew,
/// ~0.4 ms a read of the maps here.) Empty when it cannot be read.
pub fn read_proc(path: &str) -> String {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(64 << 10);
        }
        let at = buf.len();
        let room = buf.capacity() - at;
        buf.resize(at + room, 0);
        match f.read(&mut buf[at..]) {
            Ok(0) | Err(_) => {
                buf.truncate(at);
                break;
            }
            Ok(n) => buf.truncate(at + n),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod proc_tests {
    #[test]
    fn a_proc_file_reads_whole_as_read_to_string_has_it() {
        let a = super::read_proc("/proc/self/cmdline");
        let b = std::fs::read_to_string("/proc/self/cmdline").unwrap();
        assert_eq!(a, b);
        let maps = super::read_proc("/proc/self/maps");
        assert!(maps.lines().count() > 5 && maps.ends_with('\n'), "{maps}");
        assert_eq!(super::read_proc("/proc/self/no-such-file"), "");
    }
}
