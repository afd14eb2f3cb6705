//! The stack scan and the program's fault handler: return addresses on a stack
//! ([`scan_stack`]), the mapped function whose call was in progress, the alternate signal
//! stack, and the fatal-signal handler that records a crash of the program itself.
//!
//! # Safety
//! The fault handler runs in a signal handler: it formats its record into a stack buffer and
//! makes only async-signal-safe system calls (`getpid`, `raise`, `process_vm_readv`, and the
//! spool's `open`/`write`). Memory (stack words, the code before a return address) is read
//! only through `process_vm_readv` ([`read_self`]), so a bad address costs a failed call, not
//! a fault. [`pc_sp`] is an `unsafe fn`: its caller passes the kernel's ucontext. The
//! alternate signal stack is a fresh private mapping, handed to the kernel and never
//! unmapped; handlers are installed from a zeroed, then filled, `sigaction`.

#![allow(unsafe_code)]

use std::sync::atomic::Ordering::*;

use super::{event, module_of, obj_of, table, Event, MAX_FRAMES, PROGRAM_PID, SETUP};

/// Return addresses found on a stack: words that point just after a call instruction in a
/// loaded object's code. `pc` comes first. Reads memory with process_vm_readv, so a bad
/// stack pointer costs a failed syscall, not a fault (async-signal-safe).
pub fn scan_stack(pc: u64, sp: u64, out: &mut [u64; MAX_FRAMES]) -> usize {
    let mut n = 0;
    if pc != 0 {
        out[0] = pc;
        n = 1;
    }
    for_stack_words(sp as usize, 8192, |w| {
        if n >= MAX_FRAMES {
            return false;
        }
        if w >= 8 && obj_of(w as usize).is_some() && after_call(w as usize) {
            out[n] = w;
            n += 1;
        }
        true
    });
    n
}

/// How far up the stack [`entered_through`] looks for the program's call into a module (the
/// scan ends earlier, at the top of the stack mapping).
const STACK_SCAN_MAX: usize = 64 << 20;

/// Calls `f` on each 8-byte word from `sp` upwards, `max` bytes at most, until `f` returns
/// false or a page cannot be read. Reads a page at a time through process_vm_readv (no
/// fault). Unreadable pages before the first readable one are skipped (up to 64 KiB): after a
/// stack overflow the stack pointer may lie in the guard gap below the stack.
/// Async-signal-safe.
fn for_stack_words(sp: usize, max: usize, mut f: impl FnMut(u64) -> bool) {
    let mut at = sp & !7;
    let end = at.saturating_add(max);
    let mut page = [0u8; 4096];
    let mut skip = 16;
    while at < end {
        let next = ((at | 4095) + 1).min(end);
        let len = next - at;
        let got = read_self(at, &mut page[..len]);
        if got == 0 && skip > 0 {
            skip -= 1;
            at = next;
            continue;
        }
        skip = 0;
        for w in page[..got / 8 * 8].chunks_exact(8) {
            let w = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if !f(w) {
                return;
            }
        }
        if got < len {
            return;
        }
        at = next;
    }
}

/// The GOT slot that the call instruction just before return address `ret` went through:
/// `call *disp32(%rip)` (ff 15, `-fno-plt` code), or `call rel32` (e8) to a PLT stub whose
/// first instruction is `jmp *disp32(%rip)` (ff 25), possibly after `endbr64` and/or with a
/// `bnd` prefix (`.plt.sec` stubs). Reads code through process_vm_readv (no fault).
fn called_slot(ret: usize) -> Option<usize> {
    let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as isize;
    let mut b = [0u8; 6];
    if read_self(ret.checked_sub(6)?, &mut b) != 6 {
        return None;
    }
    if b[0] == 0xff && b[1] == 0x15 {
        return Some(ret.wrapping_add_signed(le(&b[2..])));
    }
    if b[1] != 0xe8 {
        return None;
    }
    let stub = ret.wrapping_add_signed(le(&b[2..]));
    let mut p = [0u8; 11];
    if read_self(stub, &mut p) != p.len() {
        return None;
    }
    let mut i = 0;
    if p[..4] == [0xf3, 0x0f, 0x1e, 0xfa] {
        i = 4;
    }
    if p[i] == 0xf2 {
        i += 1;
    }
    if p[i] != 0xff || p[i + 1] != 0x25 {
        return None;
    }
    Some(
        stub.wrapping_add(i + 6)
            .wrapping_add_signed(le(&p[i + 2..])),
    )
}

/// The mapped function of `module` whose call was in progress when the program faulted: the
/// outermost return address on the stack, in an object outside the module, that follows a
/// call through the GOT slot of one of the module's mapped functions. Needs no symbols (works
/// for stripped programs). Async-signal-safe: reads the leaked table and the stack only.
fn entered_through(sp: u64, module: &str) -> Option<&'static str> {
    let t = table()?;
    let setup = SETUP.get()?;
    if t.slots.is_empty() {
        return None;
    }
    let mut found = None;
    for_stack_words(sp as usize, STACK_SCAN_MAX, |w| {
        let w = w as usize;
        let caller_outside = w >= 8 && obj_of(w).is_some_and(|o| o.module != module || o.shared);
        if caller_outside {
            let f = called_slot(w)
                .and_then(|slot| t.slots.binary_search_by_key(&slot, |x| x.0).ok())
                .and_then(|i| setup.fns.get(t.slots[i].1));
            if let Some(f) = f.filter(|f| f.module == module) {
                found = Some(f.symbol.as_str());
            }
        }
        true
    });
    found
}

/// True when the bytes before `ret` end with a call instruction (e8 rel32, ff /2).
fn after_call(ret: usize) -> bool {
    let mut b = [0u8; 8];
    if read_self(ret - 8, &mut b) != 8 {
        return false;
    }
    b[3] == 0xe8
        || (b[6] == 0xff && (b[7] >> 3) & 7 == 2)
        || (b[5] == 0xff && (b[6] >> 3) & 7 == 2)
        || (b[2] == 0xff && (b[3] >> 3) & 7 == 2)
        || (b[1] == 0xff && (b[2] >> 3) & 7 == 2)
}

fn read_self(addr: usize, dst: &mut [u8]) -> usize {
    let r = crate::platform::sys::read_own_memory(crate::platform::sys::getpid(), addr as u64, dst);
    usize::try_from(r).unwrap_or(0)
}

/// The faulting pc and stack pointer from a signal's ucontext.
///
/// # Safety
/// `ctx` is the third argument of an SA_SIGINFO handler (or null).
pub unsafe fn pc_sp(ctx: *mut libc::c_void) -> (u64, u64) {
    if ctx.is_null() {
        return (0, 0);
    }
    // SAFETY: per the contract, ctx is the kernel's ucontext_t for this signal.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    (
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64,
        uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
    )
}

const FATAL: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Size of an alternate signal stack: the fault handler formats records into stack buffers
/// (some 40 KiB); the rest is headroom. Mapped with MAP_NORESERVE: untouched, it costs no
/// memory.
const ALTSTACK_SIZE: usize = 256 << 10;

/// Gives the calling thread an alternate signal stack (a fresh mapping above a guard page),
/// unless it already has one, so that a handler installed with SA_ONSTACK runs even when the
/// thread's own stack overflowed. Returns false when none could be installed. For a helper's
/// serving threads too: call it at the start of each thread whose faults are handled.
pub fn altstack_for_this_thread() -> bool {
    crate::platform::signal::altstack_for_this_thread(ALTSTACK_SIZE)
}

pub(super) fn install_handler() {
    // The main thread's: a stack overflow of the program is then recorded (see the
    // documentation of `reports` for other threads).
    let onstack = if altstack_for_this_thread() {
        libc::SA_ONSTACK
    } else {
        0
    };
    for sig in FATAL {
        crate::platform::signal::set_handler(
            sig,
            on_program_fault,
            libc::SA_RESETHAND | libc::SA_NODEFER | onstack,
        );
    }
}

entry_point! {
/// The program itself got a fatal signal: record it, then let it die exactly as it would
/// have (SA_RESETHAND restored the default action; returning re-executes the faulting
/// instruction, and abort() raises again).
fn on_program_fault(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    if crate::platform::sys::getpid() != PROGRAM_PID.load(Acquire) {
        // The zygote or a helper (forked from the program): not the program's death.
        // As below, default action restored by SA_RESETHAND.
        crate::platform::sys::raise(sig);
        return;
    }
    // SAFETY: ctx/info come from the kernel for this signal.
    let (pc, sp) = unsafe { pc_sp(ctx) };
    let addr = if info.is_null() {
        0
    } else {
        // SAFETY: info is the kernel's siginfo.
        unsafe { (*info).si_addr() as u64 }
    };
    let mut fr = [0u64; MAX_FRAMES];
    let n = scan_stack(pc, sp, &mut fr);
    let module = fr[..n]
        .iter()
        .map(|&a| module_of(a as usize))
        .find(|m| *m != "main")
        .unwrap_or("main");
    // The mapped function the program called into the module: the crash may be deep inside
    // the module, in code no symbol names (a stripped library's internals).
    let function = if module == "main" {
        ""
    } else {
        entered_through(sp, module).unwrap_or("")
    };
    event(&Event {
        outcome: "program-crash",
        process: "main",
        module,
        function,
        signal: sig,
        fault_addr: addr,
        env: "",
        detail: "",
        frames: &fr[..n],
    });
    // SAFETY: info is the kernel's siginfo (or null).
    let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
    if sent || sig == libc::SIGABRT {
        // Sent (kill, raise, abort): nothing re-executes; raise it again with the default
        // action restored.
        // Re-raising with the default action restored.
        crate::platform::sys::raise(sig);
    }
}
}
