//! The kernel's confinement calls: Landlock's ABI version, seccomp filters, no_new_privs, and
//! whether the process is single-threaded (a thread-wide filter must be installed alone).
//! The policy (which rules, which syscalls) is `supervise::sandbox`'s.
//!
//! # Safety
//! Four raw syscalls whose arguments are constants or point to locals and to a caller's
//! slice whose length is checked before it is passed.

#![allow(unsafe_code)]

/// The running kernel's Landlock ABI version, or the errno that says why there is none
/// (EOPNOTSUPP: built in but disabled at boot; ENOSYS: not built in).
pub fn landlock_abi() -> Result<i64, i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: the version query takes no attribute (NULL, size 0) and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(crate::sys::errno())
    } else {
        Ok(v)
    }
}

/// True when seccomp filters returning an errno can be installed.
pub fn seccomp_errno_available() -> bool {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from a local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    r == 0
}

/// True when this process has one thread. `unshare(CLONE_THREAD)` changes nothing in a
/// process that is alone and fails with EINVAL in one that is not; unlike counting the
/// entries of /proc/self/task, it opens no file.
pub fn single_threaded() -> bool {
    // SAFETY: unshare with a flag only, no memory argument.
    unsafe { libc::unshare(libc::CLONE_THREAD) == 0 }
}

/// Sets `PR_SET_NO_NEW_PRIVS` (an unprivileged process needs it for seccomp; it also stops a
/// setuid exec from shedding the filter).
pub fn no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the classic-BPF seccomp program `prog` on every thread of this process (TSYNC).
pub fn install_seccomp(prog: &[libc::sock_filter]) -> std::io::Result<()> {
    let len =
        u16::try_from(prog.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points to `prog`, whose length was checked above; both outlive the
    // call, and the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
