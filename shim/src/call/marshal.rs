//! The one buffer walk of a call: which arguments are buffers, where they are and how many
//! bytes each holds, and the stack words the call carries.
//!
//! A [`Walk`] is computed once, on the caller's side, from the spec and the caller's own
//! memory, before the call is posted; every later step (marshalling, copy-back, replay log,
//! replicas' private copies, their vote) reuses it. Nothing is recomputed after the callee
//! ran: a size read through `*argN` after the call is the callee's choice, not the caller's
//! (an honest snprintf-style function that reports a needed length of 16 MiB through its
//! `inout:8` length made the program read 16 MiB of a 64-byte buffer).
//!
//! # Safety
//! [`Walk::of`] reads the caller's memory as the spec describes it: the strings of `str`
//! arguments (`strlen`), the 64-bit sizes behind `*argN`, and the stack words above the
//! caller's return address, bounded by the caller's stack mapping ([`stack_words`]).

#![allow(unsafe_code)]

use crate::plan::runtime::FnDesc;
use crate::platform::abi::{arg_value, Frame, MAX_ARGS, MAX_STACK};
use module_map::{ArgSpec, Size, SizeBase};
use std::cell::Cell;

/// Stack words passed with every call whatever the spec lists: a function declared with
/// fewer `args` than it takes still gets the stack arguments the ABI may have placed (up to
/// this many; the caller's stack mapping may allow fewer).
pub const ABI_STACK: usize = 6;

/// Which way a buffer moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `str` and `in:`: copied in only.
    In,
    /// `out:`: copied in (bytes the function does not write keep their values) and back.
    Out,
    /// `inout:`: both.
    InOut,
}

/// One non-NULL buffer argument of a call (small: a call's walk is made on the hot path).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Buf {
    /// The caller's pointer.
    pub ptr: u64,
    /// Bytes, from the spec and the caller's own memory (a string with its NUL).
    pub len: u64,
    /// Argument index in the function's spec.
    pub arg: u16,
    pub dir: Dir,
}

impl Buf {
    /// True for `out:` and `inout:` buffers (copied back after a successful call).
    pub fn copied_back(&self) -> bool {
        self.dir != Dir::In
    }

    /// A private copy of the caller's bytes (at most a data area's worth: a longer buffer
    /// cannot be posted anyway).
    pub fn bytes(&self) -> Vec<u8> {
        let len = self.len.min(crate::transport::region::DATA_SIZE as u64) as usize;
        // SAFETY: the caller's buffer holds `len` bytes or more (the walk measured it from
        // the spec and the caller's memory before the call).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, len) }.to_vec()
    }
}

/// The buffers and stack words of one call, as the caller's side computed them once.
#[derive(Clone, Copy)]
pub struct Walk {
    pub stack: [u64; MAX_STACK],
    pub nstack: usize,
    bufs: [Buf; MAX_ARGS],
    n: usize,
}

const NO_BUF: Buf = Buf {
    ptr: 0,
    len: 0,
    arg: 0,
    dir: Dir::In,
};

impl Walk {
    /// The walk of the call in `frame` of `f`, read from the caller's memory.
    pub fn of(f: &FnDesc, frame: &Frame) -> Walk {
        let (stack, nstack) = stack_words(frame, f.layout.nstack);
        let mut w = Walk {
            stack,
            nstack,
            bufs: [NO_BUF; MAX_ARGS],
            n: 0,
        };
        let arg = |i: usize| {
            f.layout
                .args
                .get(i)
                .map_or(0, |a| arg_value(frame, &stack, a.1))
        };
        let deref = |i: usize| {
            let p = arg(i);
            if p == 0 {
                return Some(0);
            }
            // SAFETY: the caller passed this pointer for the function to read a size from;
            // the spec says it points to a 64-bit size.
            Some(unsafe { std::ptr::read_unaligned(p as *const u64) })
        };
        for (i, (spec, _)) in f.layout.args.iter().enumerate() {
            if !spec.is_buffer() {
                continue;
            }
            let p = arg(i);
            if p == 0 {
                continue; // NULL passes NULL
            }
            let len = match spec {
                // SAFETY: a `str` argument is a NUL-terminated string of the caller's.
                ArgSpec::Str => unsafe { libc::strlen(p as *const libc::c_char) as u64 + 1 },
                ArgSpec::In(s) | ArgSpec::Out(s) | ArgSpec::InOut(s) => {
                    size_of(s, arg, deref).unwrap_or(0)
                }
                _ => 0,
            };
            w.bufs[w.n] = Buf {
                ptr: p,
                len,
                arg: i as u16,
                dir: match spec {
                    ArgSpec::Out(_) => Dir::Out,
                    ArgSpec::InOut(_) => Dir::InOut,
                    _ => Dir::In,
                },
            };
            w.n += 1;
        }
        w
    }

    /// The non-NULL buffers, in argument order.
    pub fn bufs(&self) -> &[Buf] {
        &self.bufs[..self.n]
    }

    /// The same walk over other buffers of the same lengths (private copies): `ptrs[j]` for
    /// the j-th buffer.
    pub fn rebased(&self, ptrs: &[u64]) -> Walk {
        let mut w = *self;
        for (b, p) in w.bufs[..w.n].iter_mut().zip(ptrs) {
            b.ptr = *p;
        }
        w
    }

    /// Bytes the call moves in (every buffer but `out:` ones).
    pub fn bytes_in(&self) -> u64 {
        self.bufs()
            .iter()
            .filter(|b| b.dir != Dir::Out)
            .map(|b| b.len)
            .sum()
    }
}

/// Evaluates a size spec: `arg(i)` is argument i's value, `deref(i)` the 64-bit size it
/// points to (None: cannot be read, and the size is unknown).
pub fn size_of(
    s: &Size,
    arg: impl Fn(usize) -> u64,
    deref: impl Fn(usize) -> Option<u64>,
) -> Option<u64> {
    let base = match s.base {
        SizeBase::Literal(n) => n,
        SizeBase::Arg(i) => arg(i),
        SizeBase::Deref(i) => deref(i)?,
    };
    Some(base.saturating_mul(s.mul))
}

thread_local! {
    /// This thread's stack mapping [lo, hi), found on first use (0, 0: unknown).
    static STACK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The bounds of this thread's stack (pthread_getattr_np: for the main thread glibc reads
/// /proc/self/maps once).
fn my_stack() -> (u64, u64) {
    STACK.with(|s| {
        let v = s.get();
        if v.1 != 0 {
            return v;
        }
        // SAFETY: pthread_attr_t is plain data, filled by pthread_getattr_np for this
        // thread and destroyed after use; the out-pointers are locals.
        let v = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                (0, u64::MAX)
            } else {
                let mut addr: *mut libc::c_void = std::ptr::null_mut();
                let mut size: libc::size_t = 0;
                let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
                libc::pthread_attr_destroy(&mut attr);
                if r != 0 {
                    (0, u64::MAX)
                } else {
                    (addr as u64, addr as u64 + size as u64)
                }
            }
        };
        s.set(v);
        v
    })
}

/// How many stack words a call carries: at least `want` (the spec's), and up to
/// [`ABI_STACK`] whatever the spec lists, as far as the caller's stack mapping reaches (a
/// function declared with fewer `args` than it takes gets its stack arguments too).
pub fn stack_reach(frame: &Frame, want: usize) -> usize {
    let want = want.min(MAX_STACK);
    let sp = frame.stack as u64;
    if sp == 0 {
        return want;
    }
    let (lo, hi) = my_stack();
    // Outside this thread's stack (an alternate signal stack, a coroutine's): as far as the
    // page holding the return address goes, which is mapped.
    let end = if sp >= lo && sp < hi {
        hi
    } else {
        ((sp - 8) | 4095) + 1
    };
    let avail = (end.saturating_sub(sp) / 8) as usize;
    avail.min(ABI_STACK.max(want)).max(want)
}

/// Copies the [`stack_reach`] stack words of a call.
pub fn stack_words(frame: &Frame, want: usize) -> ([u64; MAX_STACK], usize) {
    let mut stack = [0u64; MAX_STACK];
    let n = stack_reach(frame, want);
    if !frame.stack.is_null() {
        // SAFETY: frame.stack points at the caller's stack arguments; the first `want` words
        // are the spec's (the caller placed them), the rest lie below the end of the mapping
        // (stack_reach).
        unsafe { std::ptr::copy_nonoverlapping(frame.stack, stack.as_mut_ptr(), n) };
    }
    (stack, n)
}
