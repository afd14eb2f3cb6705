//! `env.sandbox` (SPEC.md, "Sandbox"): confines a helper before it serves its first call.
//!
//! Two kernel mechanisms, both inherited by every thread and child the helper makes later:
//!
//! - **Landlock** (through the `landlock` crate): `files` becomes a ruleset that allows opening
//!   only beneath the listed paths (already-open descriptors and the shared queue keep working:
//!   Landlock checks opens, not reads and writes); `network: false` adds TCP bind/connect with
//!   no rule; and every sandbox is *scoped* (`LANDLOCK_SCOPE_SIGNAL`,
//!   `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET`, ABI 6), so the helper cannot signal or reach an
//!   abstract socket of any process outside its own domain. Being in a domain also makes the
//!   kernel's ptrace access check refuse every process outside it: `ptrace`,
//!   `process_vm_readv`/`writev`, `/proc/PID/mem`, `kcmp` and `pidfd_getfd` on the program or
//!   on another helper fail with EPERM or EACCES, root or not. Each helper makes its own
//!   domain after its fork, so two helpers' domains are siblings and neither reaches the other;
//!   a checkpoint copy of a helper inherits the domain (it is the same module state).
//! - **seccomp** (a small filter built here, see [`filter`]): syscalls a module never needs and
//!   that would reach past Landlock for a privileged user (ptrace itself, perf, bpf, module and
//!   mount syscalls) fail with EPERM; `exec: false` adds execve/execveat; `network: false`
//!   refuses socket()/socketpair() of any family but AF_UNIX with EACCES, and io_uring (whose
//!   socket operation no filter sees).
//!
//! The program checks at start that the kernel can do all of it ([`check`]); a helper that
//! still cannot apply its sandbox (a wrapper that swallows the syscalls) never serves: it
//! leaves with [`EXIT_SANDBOX`] and the program treats that like any helper that died.
//!
//! This module runs in a helper after its fork, where allocating is allowed (the zygote is
//! single-threaded), and never in a signal handler. Its syscalls are
//! `platform::confine`'s; it has no unsafe code of its own.

use module_map::{Env, MapError, Sandbox};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// Exit status of a helper that could not apply its sandbox (and so never served a call).
pub const EXIT_SANDBOX: i32 = 72;

/// The Landlock ABI every sandbox needs: 6 is the first with scopes (Linux 6.12).
const LANDLOCK_ABI: ABI = ABI::V6;
const LANDLOCK_ABI_NUM: i64 = 6;

use crate::platform::confine::{
    landlock_abi, seccomp_errno_available as seccomp_available, single_threaded,
};

/// What this kernel lacks to enforce a sandbox, as a sentence for the user; `None` when it
/// has everything.
pub fn kernel_lacks() -> Option<String> {
    let missing = match landlock_abi() {
        Ok(v) if v >= LANDLOCK_ABI_NUM => None,
        Ok(v) => Some(format!("Landlock ABI {LANDLOCK_ABI_NUM} (Linux 6.12 or later), for signal and abstract-socket scoping; this kernel has ABI {v}")),
        Err(libc::EOPNOTSUPP) => Some("Landlock, which this kernel has but was booted without (add `landlock` to the `lsm=` boot parameter)".to_string()),
        Err(e) => Some(format!("Landlock, which this kernel does not have (landlock_create_ruleset: {})", std::io::Error::from_raw_os_error(e))),
    };
    if missing.is_some() {
        return missing;
    }
    if !seccomp_available() {
        return Some(
            "seccomp filters (CONFIG_SECCOMP_FILTER), which this kernel does not have".to_string(),
        );
    }
    None
}

/// Before `main`: every environment a helper may run in can be sandboxed here, or the
/// program must not start. `Err` holds one line per problem, in the map's error format.
pub fn check(map: &module_map::ModuleMap) -> Result<(), String> {
    let Some((key, p)) = map.processes.iter().find_map(|p| {
        p.helper_envs()
            .into_iter()
            .find(|(_, e)| e.sandbox.is_some())
            .map(|(k, _)| (k, p))
    }) else {
        return Ok(());
    };
    match kernel_lacks() {
        None => Ok(()),
        Some(what) => Err(MapError::at(
            &map.file,
            Some(p.line),
            Some(format!("{key}.sandbox")),
            format!("a sandbox cannot be enforced on this kernel: it needs {what}; remove the sandbox or run on a kernel that has it"),
        )
        .to_string()),
    }
}

/// In a helper, after its libraries are loaded and before its first call: applies the
/// sandbox of `env`, if any. A helper that cannot be confined as asked must not serve, so
/// on failure this logs why and leaves the helper with [`EXIT_SANDBOX`].
pub fn enter(env: &Env, helper: &str) {
    let Some(sb) = &env.sandbox else { return };
    match apply(sb) {
        Ok(()) => debug!("helper '{helper}': sandbox applied"),
        Err(e) => {
            error!("helper '{helper}': cannot apply its sandbox, so it serves no call: {e}");
            // Leaving the helper before it served anything; the program sees it die.
            crate::platform::sys::exit_now(EXIT_SANDBOX);
        }
    }
}

/// Confines the calling process as `sb` says (irreversibly).
fn apply(sb: &Sandbox) -> Result<(), String> {
    // Landlock (without ABI 8's TSYNC) confines only the calling thread; a thread started
    // before would stay free.
    if !single_threaded() {
        return Err(
            "the helper already runs several threads; a sandbox is applied before any is started"
                .to_string(),
        );
    }
    landlock(sb)?;
    let prog = filter(!sb.exec_allowed(), !sb.network_allowed());
    install_filter(&prog)
}

/// errno of the last failed call of this thread.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn landlock(sb: &Sandbox) -> Result<(), String> {
    let e =
        |what: &'static str| move |err: landlock::RulesetError| format!("Landlock {what}: {err}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::from_all(LANDLOCK_ABI))
        .map_err(e("scopes"))?;
    if sb.files.is_some() {
        ruleset = ruleset
            .handle_access(AccessFs::from_all(LANDLOCK_ABI))
            .map_err(e("file rights"))?;
    }
    if !sb.network_allowed() {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(LANDLOCK_ABI))
            .map_err(e("network rights"))?;
    }
    let mut created = ruleset.create().map_err(e("ruleset"))?;
    if let Some(files) = &sb.files {
        let mut read = AccessFs::from_read(LANDLOCK_ABI);
        if !sb.exec_allowed() {
            read.remove(AccessFs::Execute);
        }
        let write = read | AccessFs::from_write(LANDLOCK_ABI);
        let rules = files
            .read()
            .iter()
            .map(|p| (p, read))
            .chain(files.write().iter().map(|p| (p, write)));
        for (path, access) in rules {
            let fd = match PathFd::new(path) {
                Ok(fd) => fd,
                Err(err) => {
                    // Nothing can be opened beneath a path that does not exist.
                    warn!("sandbox: `{path}` is not allowed: {err}");
                    continue;
                }
            };
            // A rule on a file may only carry the rights that make sense for a file.
            let access = match std::fs::metadata(path) {
                Ok(m) if !m.is_dir() => access & AccessFs::from_file(LANDLOCK_ABI),
                _ => access,
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|err| format!("Landlock rule for `{path}`: {err}"))?;
        }
    }
    let status = created.restrict_self().map_err(e("restrict_self"))?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(format!("Landlock is only partly enforced ({status:?})"));
    }
    Ok(())
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// Syscall numbers of the x32 ABI carry this bit; none is allowed.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARG0_LO: u32 = 16;

/// Syscalls a sandboxed helper never makes. Those that reach another process's memory or
/// signals are also refused by Landlock; these go further for a helper that runs as root
/// (loading BPF or kernel modules, mounting over the allowed paths, opening by file handle).
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_perf_event_open,
    libc::SYS_bpf,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
];

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn ret_errno(errno: i32) -> libc::sock_filter {
    stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    )
}

/// The seccomp program: a foreign architecture (i386 through `int 0x80`) or an x32 number
/// gets EPERM; each of [`DENIED`] (and execve/execveat when `no_exec`) gets EPERM; with
/// `no_network`, socket()/socketpair() of a family other than AF_UNIX get EACCES and
/// io_uring_setup EPERM; everything else is allowed.
pub fn filter(no_exec: bool, no_network: bool) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let load = |off| stmt(BPF_LD | BPF_W | BPF_ABS, off);
    let allow = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW);
    let mut p = vec![
        load(DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        ret_errno(libc::EPERM),
        load(DATA_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        ret_errno(libc::EPERM),
    ];
    let mut denied: Vec<i64> = DENIED.to_vec();
    if no_exec {
        denied.extend([libc::SYS_execve, libc::SYS_execveat]);
    }
    if no_network {
        denied.push(libc::SYS_io_uring_setup);
    }
    for nr in denied {
        // Not this syscall: skip the return.
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 1));
        p.push(ret_errno(libc::EPERM));
    }
    if no_network {
        for nr in [libc::SYS_socket, libc::SYS_socketpair] {
            // Not this syscall: skip the four instructions that look at its family (they
            // overwrite the accumulator, but both of their ways end in a return).
            p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 4));
            // The family is an `int`: the kernel reads the low 32 bits only.
            p.push(load(DATA_ARG0_LO));
            p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, libc::AF_UNIX as u32, 0, 1));
            p.push(allow);
            p.push(ret_errno(libc::EACCES));
        }
    }
    p.push(allow);
    p
}

/// Installs `prog` on every thread of this process, after `PR_SET_NO_NEW_PRIVS` (which an
/// unprivileged process needs for seccomp, and which stops a setuid exec from shedding it).
fn install_filter(prog: &[libc::sock_filter]) -> Result<(), String> {
    crate::platform::confine::no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    crate::platform::confine::install_seccomp(prog).map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` as the kernel would on (arch, nr, arg0): the action it returns.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let code = i.code as u32;
            match code & 0x07 {
                0x00 => {
                    acc = match i.k {
                        DATA_NR => nr,
                        DATA_ARCH => arch,
                        DATA_ARG0_LO => arg0,
                        k => panic!("load of offset {k}"),
                    };
                    pc += 1;
                }
                0x05 => {
                    let taken = match code & 0xf0 {
                        0x10 => acc == i.k,
                        0x30 => acc >= i.k,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += 1 + if taken { i.jt } else { i.jf } as usize;
                }
                0x06 => return i.k,
                class => panic!("class {class:#x}"),
            }
        }
    }

    const ERR: u32 = libc::SECCOMP_RET_ERRNO;

    #[test]
    fn filter_refuses_what_it_should_and_nothing_else() {
        let a = AUDIT_ARCH_X86_64;
        let nr = |n: i64| n as u32;
        let all = filter(true, true);
        let none = filter(false, false);
        for p in [&all, &none] {
            assert_eq!(run(p, a, nr(libc::SYS_ptrace), 0), ERR | libc::EPERM as u32);
            assert_eq!(
                run(p, a, nr(libc::SYS_perf_event_open), 0),
                ERR | libc::EPERM as u32
            );
            assert_eq!(run(p, a, nr(libc::SYS_read), 0), libc::SECCOMP_RET_ALLOW);
            assert_eq!(
                run(p, a, nr(libc::SYS_process_vm_readv), 0),
                libc::SECCOMP_RET_ALLOW
            );
            assert_eq!(run(p, a, X32_SYSCALL_BIT | 39, 0), ERR | libc::EPERM as u32);
            assert_eq!(run(p, 0x4000_0003, 20, 0), ERR | libc::EPERM as u32);
        }
        assert_eq!(
            run(&all, a, nr(libc::SYS_execve), 0),
            ERR | libc::EPERM as u32
        );
        assert_eq!(
            run(&all, a, nr(libc::SYS_execveat), 0),
            ERR | libc::EPERM as u32
        );
        assert_eq!(
            run(&none, a, nr(libc::SYS_execve), 0),
            libc::SECCOMP_RET_ALLOW
        );
        let inet = libc::AF_INET as u32;
        let unix = libc::AF_UNIX as u32;
        for s in [libc::SYS_socket, libc::SYS_socketpair] {
            assert_eq!(run(&all, a, nr(s), inet), ERR | libc::EACCES as u32);
            assert_eq!(
                run(&all, a, nr(s), libc::AF_NETLINK as u32),
                ERR | libc::EACCES as u32
            );
            assert_eq!(run(&all, a, nr(s), unix), libc::SECCOMP_RET_ALLOW);
            assert_eq!(run(&none, a, nr(s), inet), libc::SECCOMP_RET_ALLOW);
        }
        assert_eq!(
            run(&all, a, nr(libc::SYS_io_uring_setup), 0),
            ERR | libc::EPERM as u32
        );
        assert_eq!(
            run(&all, a, nr(libc::SYS_connect), inet),
            libc::SECCOMP_RET_ALLOW
        );
    }
}
