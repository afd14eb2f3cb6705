//! Valgrind client requests, for helpers that run under valgrind (exec-mode wrappers). Each
//! request is valgrind's "special instruction" sequence: rotations of rdi by 128 bits in all
//! (a no-op on the real CPU) followed by `xchg rbx, rbx`; natively nothing happens and the
//! default result is returned.
//!
//! # Safety
//! The one block is valgrind's client-request sequence: it leaves every register it touches as it
//! was when valgrind is absent, and valgrind reads only the local request array.

#![allow(unsafe_code)]

/// Memcheck's VG_USERREQ__MAKE_MEM_NOACCESS: (('M' << 24) | ('C' << 16)) + 0.
const MAKE_MEM_NOACCESS: u64 = 0x4d43_0000;

fn request(args: &[u64; 6]) -> u64 {
    let mut result: u64 = 0;
    // SAFETY: the sequence only rotates rdi by a multiple of 64 bits (unchanged) and exchanges
    // rbx with itself; valgrind, when present, reads the six words at rax (a live local array)
    // and writes its answer to rdx.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

/// Tells memcheck that `[addr, addr + len)` is not the program's memory any more: its leak
/// check then does not scan it (the helper's 256 MiB queue region would take seconds).
pub fn forget_range(addr: usize, len: usize) {
    request(&[MAKE_MEM_NOACCESS, addr as u64, len as u64, 0, 0, 0]);
}
