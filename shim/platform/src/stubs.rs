//! Per-function entry stubs and frame replay, in assembly.
//!
//! # Safety
//! - A stub is entered only through a patched GOT slot or a pointer `dlsym` handed out, i.e.
//!   as an ordinary SysV call: rsp ≡ 8 (mod 16), arguments in rdi…r9, xmm0–7, al and the
//!   caller's stack. The common entry saves all of them into a [`Frame`] on its own stack,
//!   calls the dispatcher (through [`set_dispatcher`]'s word, set before any slot is routed) with a 16-byte aligned stack, and returns rax, rdx, xmm0, xmm1 from
//!   the frame. Callee-saved registers are preserved by the dispatcher (a Rust `extern "C"`
//!   function) and by the stub itself (rbp only).
//! - [`replay`] calls `target` with the registers of a frame and `nstack` stack words copied
//!   from `frame.stack`; the caller guarantees `frame.stack` points to `nstack` readable words
//!   and `target` is a function with a SysV signature matching the frame.

#![allow(unsafe_code)]

use crate::abi::Frame;
use std::sync::atomic::{AtomicUsize, Ordering::Release};

/// The function every stub calls with (function index, frame): the call layer's dispatcher,
/// set by the root before any slot points to a stub. Read by the stubs' common entry with one
/// rip-relative load (no export, no relocation).
pub type Dispatcher = unsafe extern "C" fn(u32, *mut Frame);

static FRACTURE_DISPATCH: AtomicUsize = AtomicUsize::new(0);

/// Sets the dispatcher the stubs call. Must happen before a stub address is handed out.
pub fn set_dispatcher(d: Dispatcher) {
    // SYNC POINT: pairs with the stubs' load, which runs only after a routed slot (written
    // later, under the patch lock, with a release store) or a `dlsym` answer led there.
    FRACTURE_DISPATCH.store(d as usize, Release);
}

/// Number of stubs, i.e. of mapped functions (and callback slots) a map may list: 16 bytes of
/// text each. `--isolate` of a script maps every function the object exports (libm: 1031).
pub const MAX_FNS: usize = 2048;
/// Bytes per stub: the stub of function `i` is at `stubs_base() + i * STUB_SIZE`.
pub const STUB_SIZE: usize = 16;

std::arch::global_asm!(
    ".pushsection .text.fracture_stubs,\"ax\",@progbits",
    ".balign 16",
    ".globl fracture_stubs",
    ".hidden fracture_stubs",
    "fracture_stubs:",
    ".set fracture_i, 0",
    ".rept {max}",
    ".balign 16",
    "movl $fracture_i, %r11d",
    "jmp fracture_tramp_common",
    ".set fracture_i, fracture_i + 1",
    ".endr",
    ".balign 16",
    "fracture_tramp_common:",
    "pushq %rbp",
    "movq %rsp, %rbp",
    "subq $256, %rsp",
    "movq %rdi, 0(%rsp)",
    "movq %rsi, 8(%rsp)",
    "movq %rdx, 16(%rsp)",
    "movq %rcx, 24(%rsp)",
    "movq %r8, 32(%rsp)",
    "movq %r9, 40(%rsp)",
    "movq %rax, 48(%rsp)",
    "leaq 16(%rbp), %r10",
    "movq %r10, 56(%rsp)",
    "movdqu %xmm0, 64(%rsp)",
    "movdqu %xmm1, 80(%rsp)",
    "movdqu %xmm2, 96(%rsp)",
    "movdqu %xmm3, 112(%rsp)",
    "movdqu %xmm4, 128(%rsp)",
    "movdqu %xmm5, 144(%rsp)",
    "movdqu %xmm6, 160(%rsp)",
    "movdqu %xmm7, 176(%rsp)",
    "movq 8(%rbp), %r10",
    "movq %r10, 240(%rsp)",
    "movl %r11d, %edi",
    "movq %rsp, %rsi",
    "call *{dispatch}(%rip)",
    "movq 192(%rsp), %rax",
    "movq 200(%rsp), %rdx",
    "movdqu 208(%rsp), %xmm0",
    "movdqu 224(%rsp), %xmm1",
    "leave",
    "ret",
    ".balign 16",
    ".globl fracture_replay",
    ".hidden fracture_replay",
    "fracture_replay:",
    "pushq %rbp",
    "movq %rsp, %rbp",
    "pushq %rbx",
    "pushq %r12",
    "movq %rsi, %rbx",
    "movq %rdi, %r12",
    "leaq 15(,%rdx,8), %rax",
    "andq $-16, %rax",
    "subq %rax, %rsp",
    "movq 56(%rbx), %rsi",
    "xorl %ecx, %ecx",
    "2:",
    "cmpq %rdx, %rcx",
    "jae 3f",
    "movq (%rsi,%rcx,8), %rax",
    "movq %rax, (%rsp,%rcx,8)",
    "incq %rcx",
    "jmp 2b",
    "3:",
    "movdqu 64(%rbx), %xmm0",
    "movdqu 80(%rbx), %xmm1",
    "movdqu 96(%rbx), %xmm2",
    "movdqu 112(%rbx), %xmm3",
    "movdqu 128(%rbx), %xmm4",
    "movdqu 144(%rbx), %xmm5",
    "movdqu 160(%rbx), %xmm6",
    "movdqu 176(%rbx), %xmm7",
    "movq 0(%rbx), %rdi",
    "movq 8(%rbx), %rsi",
    "movq 16(%rbx), %rdx",
    "movq 24(%rbx), %rcx",
    "movq 32(%rbx), %r8",
    "movq 40(%rbx), %r9",
    "movq 48(%rbx), %rax",
    "call *%r12",
    "movq %rax, 192(%rbx)",
    "movq %rdx, 200(%rbx)",
    "movdqu %xmm0, 208(%rbx)",
    "movdqu %xmm1, 224(%rbx)",
    "leaq -16(%rbp), %rsp",
    "popq %r12",
    "popq %rbx",
    "popq %rbp",
    "ret",
    ".popsection",
    max = const MAX_FNS,
    dispatch = sym FRACTURE_DISPATCH,
    options(att_syntax)
);

extern "C" {
    static fracture_stubs: u8;
    fn fracture_replay(target: usize, frame: *mut Frame, nstack: usize);
}

/// Address of the stub of mapped function `idx`.
pub fn stub_addr(idx: usize) -> usize {
    debug_assert!(idx < MAX_FNS);
    // Only the label's address is taken (no read of the extern static).
    let base = std::ptr::addr_of!(fracture_stubs) as usize;
    base + idx * STUB_SIZE
}

/// Calls `target` with the argument registers of `frame` and `nstack` words from
/// `frame.stack`; stores rax, rdx, xmm0, xmm1 into the frame's return fields.
///
/// # Safety
/// `target` must be a function whose SysV signature matches the frame's arguments, and
/// `frame.stack` must point to at least `nstack` readable words.
pub unsafe fn replay(target: usize, frame: &mut Frame, nstack: usize) {
    // SAFETY: the caller upholds the contract above; the assembly keeps the stack aligned and
    // preserves rbx, r12 and rbp.
    unsafe { fracture_replay(target, frame, nstack) }
}
