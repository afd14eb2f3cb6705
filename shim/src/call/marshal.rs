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
use crate::platform::abi::{arg_value, Frame, MAX_STACK};
use module_map::{ArgSpec, Size, SizeBase};
use std::cell::Cell;

pub use crate::platform::abi::ABI_STACK;

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
/// A `strv` argument is one `in` buffer: the packed form [`pack_strv`] made of the array.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Buf {
    /// The caller's pointer.
    pub ptr: u64,
    /// Bytes, from the spec and the caller's own memory (a string with its NUL).
    pub len: u64,
    /// Argument index in the function's spec.
    pub arg: u16,
    pub dir: Dir,
    /// `strv`: the bytes are the walk's own packed copy, at this offset of `Walk::packed`.
    pub packed_at: Option<u32>,
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
pub struct Walk {
    pub stack: [u64; MAX_STACK],
    pub nstack: usize,
    /// The non-NULL buffers (no allocation for a call without any: a fixed table for every
    /// possible argument was 1 KiB to fill and move on every call).
    bufs: Vec<Buf>,
    /// The packed copies of `strv` arguments (empty, no allocation, for other calls).
    packed: Vec<u8>,
}

impl Clone for Walk {
    /// A clone's `strv` buffers point into its own packed copies.
    fn clone(&self) -> Walk {
        let mut w = Walk {
            stack: self.stack,
            nstack: self.nstack,
            bufs: self.bufs.clone(),
            packed: self.packed.clone(),
        };
        w.repoint();
        w
    }
}

/// A walk kept for later (an entry of the replay log): only the stack words and buffers in
/// use, not the fixed-size tables of a [`Walk`] (1.3 KB an entry, for every logged call).
#[derive(Clone)]
pub struct KeptWalk {
    stack: Box<[u64]>,
    bufs: Box<[Buf]>,
    packed: Vec<u8>,
}

impl KeptWalk {
    /// The walk again, its `strv` buffers pointing into its own packed copies.
    pub fn walk(&self) -> Walk {
        let mut w = Walk {
            stack: [0; MAX_STACK],
            nstack: self.stack.len(),
            bufs: self.bufs.to_vec(),
            packed: self.packed.clone(),
        };
        w.stack[..self.stack.len()].copy_from_slice(&self.stack);
        w.repoint();
        w
    }
}

/// Most entries a `strv` array may have (a NULL-terminated one without its NULL within this
/// many is refused as too large).
pub const MAX_STRV: usize = 1 << 16;
const NULL_ENTRY: u64 = u64::MAX;

/// The packed form of a string array, as it travels: word 0 the entry count n, words 1..=n each
/// entry's offset from the start (`u64::MAX`: NULL), word n+1 zero (room for the terminating
/// NULL), then the strings with their NULs. [`unpack_strv`] turns it into a `char **` in place.
/// `entries` are the array's pointers.
///
/// # Safety
/// Every non-zero entry points to a NUL-terminated string, readable while this runs.
pub unsafe fn pack_strv(entries: &[u64], out: &mut Vec<u8>) {
    let n = entries.len();
    let head = 8 * (n + 2);
    let start = out.len();
    out.resize(start + head, 0);
    out[start..start + 8].copy_from_slice(&(n as u64).to_le_bytes());
    for (i, &p) in entries.iter().enumerate() {
        let at = start + 8 * (i + 1);
        let word = if p == 0 {
            NULL_ENTRY
        } else {
            let off = (out.len() - start) as u64;
            // SAFETY: `p` is a NUL-terminated string (the caller's contract).
            let bytes = unsafe { std::ffi::CStr::from_ptr(p as *const std::ffi::c_char) };
            out.extend_from_slice(bytes.to_bytes_with_nul());
            off
        };
        out[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    while !(out.len() - start).is_multiple_of(8) {
        out.push(0);
    }
}

/// Turns a packed string array (see [`pack_strv`]) that lies at its own address into the
/// `char **` the callee gets: returns (address of the array, entry count), or None when the
/// bytes are not a well-formed packed array (an entry outside the strings, a string without
/// its NUL). The array is NULL-terminated whatever the spec.
pub fn unpack_strv(buf: &mut [u8]) -> Option<(u64, usize)> {
    let word = |b: &[u8], i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            b.get(8 * i..8 * i + 8)?.try_into().ok()?,
        ))
    };
    let n = usize::try_from(word(buf, 0)?).ok()?;
    if n > MAX_STRV {
        return None;
    }
    let head = 8 * (n + 2);
    if buf.len() < head {
        return None;
    }
    let base = buf.as_ptr() as u64;
    for i in 1..=n {
        let w = word(buf, i)?;
        let p = if w == NULL_ENTRY {
            0
        } else {
            let off = usize::try_from(w).ok()?;
            if off < head || off >= buf.len() || !buf[off..].contains(&0) {
                return None;
            }
            base + off as u64
        };
        buf[8 * i..8 * i + 8].copy_from_slice(&p.to_le_bytes());
    }
    buf[8 * (n + 1)..8 * (n + 2)].copy_from_slice(&0u64.to_le_bytes());
    Some((base + 8, n))
}

impl Walk {
    /// The walk of the call in `frame` of `f`, read from the caller's memory.
    pub fn of(f: &FnDesc, frame: &Frame) -> Walk {
        let (stack, nstack) = stack_words(frame, f.layout.nstack);
        let mut w = Walk {
            stack,
            nstack,
            bufs: Vec::new(),
            packed: Vec::new(),
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
            if let ArgSpec::Strv(count) = spec {
                let at = w.packed.len();
                let len = match strv_entries(p, count.as_ref().map(|s| size_of(s, arg, deref))) {
                    Some(entries) => {
                        // SAFETY: a non-NULL entry of a `strv` array is a string of the
                        // caller's (its spec).
                        unsafe { pack_strv(&entries, &mut w.packed) };
                        (w.packed.len() - at) as u64
                    }
                    // Too many entries (or an unreadable count): too large to post.
                    None => u64::MAX,
                };
                w.bufs.push(Buf {
                    ptr: 0,
                    len,
                    arg: i as u16,
                    dir: Dir::In,
                    packed_at: Some(at as u32),
                });
                continue;
            }
            let len = match spec {
                // SAFETY: a `str` argument is a NUL-terminated string of the caller's.
                ArgSpec::Str => unsafe {
                    std::ffi::CStr::from_ptr(p as *const std::ffi::c_char).count_bytes() as u64 + 1
                },
                ArgSpec::In(s) | ArgSpec::Out(s) | ArgSpec::InOut(s) => {
                    size_of(s, arg, deref).unwrap_or(0)
                }
                _ => 0,
            };
            w.bufs.push(Buf {
                ptr: p,
                len,
                arg: i as u16,
                dir: match spec {
                    ArgSpec::Out(_) => Dir::Out,
                    ArgSpec::InOut(_) => Dir::InOut,
                    _ => Dir::In,
                },
                packed_at: None,
            });
        }
        // The packed copies are final: point their buffers at them.
        w.repoint();
        w
    }

    /// Points the `strv` buffers at this walk's own packed copies.
    fn repoint(&mut self) {
        let base = self.packed.as_ptr() as u64;
        for b in &mut self.bufs {
            if let Some(at) = b.packed_at {
                b.ptr = base + at as u64;
            }
        }
    }

    /// What the replay log keeps of this walk.
    pub fn keep(&self) -> KeptWalk {
        KeptWalk {
            stack: self.stack[..self.nstack.min(MAX_STACK)].into(),
            bufs: self.bufs.as_slice().into(),
            packed: self.packed.clone(),
        }
    }

    /// The non-NULL buffers, in argument order.
    pub fn bufs(&self) -> &[Buf] {
        &self.bufs
    }

    /// The same walk over other buffers of the same lengths (private copies): `ptrs[j]` for
    /// the j-th buffer.
    pub fn rebased(&self, ptrs: &[u64]) -> Walk {
        let mut w = self.clone();
        for (b, p) in w.bufs.iter_mut().zip(ptrs) {
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

/// The entries of the string array at `p`: `count` of them (`strv:SIZE`, evaluated), or up
/// to its NULL (`strv`). None when there are more than [`MAX_STRV`].
fn strv_entries(p: u64, count: Option<Option<u64>>) -> Option<Vec<u64>> {
    let read = |i: usize| {
        // SAFETY: the caller passed an array of string pointers of this many entries (its
        // spec), or NULL-terminated: entry i is read only while no NULL came before.
        unsafe { std::ptr::read_unaligned((p as *const u64).add(i)) }
    };
    match count {
        Some(n) => {
            let n = usize::try_from(n?).ok().filter(|n| *n <= MAX_STRV)?;
            Some((0..n).map(read).collect())
        }
        None => {
            let mut v = Vec::new();
            loop {
                let e = read(v.len());
                if e == 0 {
                    return Some(v);
                }
                if v.len() == MAX_STRV {
                    return None;
                }
                v.push(e);
            }
        }
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
        let v = crate::platform::sys::thread_stack().unwrap_or((0, u64::MAX));
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

/// The [`stack_reach`] stack words of a call, in place on the caller's stack (the flat path
/// sends them from there without a copy).
pub fn stack_in_place(frame: &Frame, want: usize) -> &[u64] {
    if frame.stack.is_null() {
        return &[];
    }
    let n = stack_reach(frame, want);
    // SAFETY: as in `stack_words`: frame.stack points at the caller's stack arguments, and
    // `n` words from it lie inside the mapping; the caller's frame outlives the borrow.
    unsafe { std::slice::from_raw_parts(frame.stack, n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(strs: &[Option<&str>]) -> Vec<u8> {
        let owned: Vec<Option<std::ffi::CString>> = strs
            .iter()
            .map(|s| s.map(|s| std::ffi::CString::new(s).unwrap()))
            .collect();
        let ptrs: Vec<u64> = owned
            .iter()
            .map(|s| s.as_ref().map_or(0, |c| c.as_ptr() as u64))
            .collect();
        let mut out = Vec::new();
        // SAFETY: test strings are CStrings alive in `owned`.
        unsafe { pack_strv(&ptrs, &mut out) };
        out
    }

    #[test]
    fn a_packed_string_array_unpacks_to_the_same_strings_and_nulls() {
        let mut b = pack(&[Some("id"), None, Some(""), Some("name")]);
        let (arr, n) = unpack_strv(&mut b).expect("well formed");
        assert_eq!(n, 4);
        let got: Vec<Option<String>> = (0..=n)
            .map(|i| {
                // SAFETY: unpack_strv made n + 1 pointers at `arr`, inside `b`.
                let p = unsafe { *(arr as *const u64).add(i) };
                (p != 0).then(|| {
                    // SAFETY: each non-NULL entry points at a NUL-terminated string in `b`.
                    unsafe { std::ffi::CStr::from_ptr(p as *const libc::c_char) }
                        .to_string_lossy()
                        .into_owned()
                })
            })
            .collect();
        assert_eq!(
            got,
            vec![
                Some("id".into()),
                None,
                Some("".into()),
                Some("name".into()),
                None
            ]
        );
    }

    #[test]
    fn a_kept_walk_gives_back_the_same_stack_words_and_buffers() {
        let mut w = Walk {
            stack: [0; MAX_STACK],
            nstack: 3,
            bufs: Vec::new(),
            packed: Vec::new(),
        };
        w.stack[..3].copy_from_slice(&[7, 8, 9]);
        w.packed = pack(&[Some("a"), None]);
        w.bufs.push(Buf {
            ptr: 0x1000,
            len: 5,
            arg: 0,
            dir: Dir::Out,
            packed_at: None,
        });
        w.bufs.push(Buf {
            ptr: 0,
            len: w.packed.len() as u64,
            arg: 2,
            dir: Dir::In,
            packed_at: Some(0),
        });
        w.repoint();
        let back = w.keep().walk();
        assert_eq!(back.nstack, 3);
        assert_eq!(back.stack[..3], [7, 8, 9]);
        assert_eq!(back.bufs()[0], w.bufs()[0]);
        assert_eq!(back.bufs()[1].len, w.bufs()[1].len);
        // The strv copy is its own, at the same bytes.
        assert_eq!(back.bufs()[1].ptr, back.packed.as_ptr() as u64);
        assert_eq!(back.packed, w.packed);
        assert_ne!(back.bufs()[1].ptr, w.bufs()[1].ptr);
    }

    #[test]
    fn a_forged_packed_array_is_refused_not_followed() {
        let good = pack(&[Some("abc")]);
        // An entry pointing into the header, past the end, or at a string without its NUL.
        for (word, value) in [(1usize, 0u64), (1, 4096), (1, u64::MAX - 1), (0, 1 << 40)] {
            let mut b = good.clone();
            b[8 * word..8 * word + 8].copy_from_slice(&value.to_le_bytes());
            assert!(unpack_strv(&mut b).is_none(), "word {word} = {value}");
        }
        let mut cut = good.clone();
        let last = cut.len() - 1;
        cut.truncate(last - 4); // the string's NUL and padding gone
        for byte in cut.iter_mut().skip(24) {
            *byte = b'x';
        }
        assert!(unpack_strv(&mut cut).is_none());
        assert!(unpack_strv(&mut [0u8; 4]).is_none());
    }
}
