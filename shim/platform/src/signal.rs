//! Signals: handlers installed through glibc's real `sigaction` (the program's own calls are
//! interposed, see `call::pages::peek`), default actions, and alternate signal stacks.
//!
//! # Safety
//! Handlers are typed `extern "C"` functions of the kernel's three-argument form, so a Rust
//! function can no longer be installed by its address with the wrong ABI (one was). The
//! `sigaction` structs passed are zeroed locals, filled here.

#![allow(unsafe_code)]

/// A `SA_SIGINFO` handler: signal number, the kernel's siginfo and ucontext.
pub type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// A disposition as `sigaction` reports it: the handler's address (or `SIG_DFL`/`SIG_IGN`)
/// and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disposition {
    pub handler: usize,
    pub flags: i32,
}

/// Installs `h` for `sig` with `SA_SIGINFO | flags` and an empty mask; the previous
/// disposition, or None when the kernel refused.
pub fn set_handler(sig: i32, h: Handler, flags: i32) -> Option<Disposition> {
    // SAFETY: sigaction structs are plain data; all-zero is valid (an empty mask).
    let (mut sa, mut old): (libc::sigaction, libc::sigaction) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    sa.sa_sigaction = h as usize;
    sa.sa_flags = libc::SA_SIGINFO | flags;
    // SAFETY: both pointers are live locals.
    let r = unsafe { crate::loader::real_sigaction(sig, &sa, &mut old) };
    (r == 0).then_some(Disposition {
        handler: old.sa_sigaction,
        flags: old.sa_flags,
    })
}

/// Restores the default action of `sig`. Async-signal-safe.
pub fn set_default(sig: i32) {
    // SAFETY: sigaction is plain data; all-zero with SIG_DFL (0) is the default action.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = libc::SIG_DFL;
    // SAFETY: a live local; no old action asked for.
    unsafe { crate::loader::real_sigaction(sig, &sa, std::ptr::null_mut()) };
}

/// Gives the calling thread an alternate signal stack of `size` bytes (a fresh mapping above
/// a guard page), unless it already has one, so that a handler installed with `SA_ONSTACK`
/// runs even when the thread's own stack overflowed. False when none could be installed.
/// The mapping is never unmapped (it lives as long as the thread may take a signal).
pub fn altstack_for_this_thread(size: usize) -> bool {
    // SAFETY: stack_t is plain data (all-zero is valid); a null new stack only asks.
    let have = unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut cur) == 0 && cur.ss_flags & libc::SS_DISABLE == 0
    };
    if have {
        return true;
    }
    // SAFETY: a new private anonymous mapping, owned by nobody else.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size + 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: the lowest page of the mapping just made becomes the guard page; the stack is
    // the rest of it, handed to the kernel.
    unsafe {
        libc::mprotect(p, 4096, libc::PROT_NONE);
        let st = libc::stack_t {
            ss_sp: p.cast::<u8>().add(4096).cast(),
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&st, std::ptr::null_mut()) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

    static GOT: AtomicI32 = AtomicI32::new(0);

    extern "C" fn note(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        GOT.store(sig, SeqCst);
    }

    #[test]
    fn a_handler_is_installed_reports_the_previous_one_and_runs_on_its_own_stack() {
        std::thread::spawn(|| {
            assert!(altstack_for_this_thread(64 << 10));
            assert!(altstack_for_this_thread(64 << 10), "kept, not replaced");
            let before = set_handler(libc::SIGUSR2, note, libc::SA_ONSTACK).expect("installed");
            assert_eq!(before.handler, libc::SIG_DFL);
            let again = set_handler(libc::SIGUSR2, note, 0).expect("installed");
            assert_eq!(again.handler, note as Handler as usize);
            assert_ne!(again.flags & libc::SA_ONSTACK, 0);
            crate::process::raise_on_this_thread(libc::SIGUSR2);
            assert_eq!(GOT.load(SeqCst), libc::SIGUSR2);
            set_handler(libc::SIGUSR2, note, 0);
            set_default(libc::SIGUSR2);
            let now = set_handler(libc::SIGUSR2, note, 0).expect("installed");
            assert_eq!(now.handler, libc::SIG_DFL);
            set_default(libc::SIGUSR2);
        })
        .join()
        .unwrap();
    }
}
