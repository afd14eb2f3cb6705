//! `memory: on-demand` (SPEC.md, "Memory"): the program's memory, a page at a time, in the
//! helper while a call runs.
//!
//! Who owns an address (decided once, at the helper's start, see `supervise::address`):
//! - **the helper's own** ([`HelperOwned`]): the slot of the module-memory reservation the
//!   program made before the zygote was forked (`Layout`: the zygote's slot and this
//!   process's; the program keeps the whole reservation inaccessible, so it never puts anything
//!   there), and every mapping inherited from before the fork except the ones below: the text
//!   and read-only data of every object (the same in both), the writable data of every
//!   library, ld.so and libc (the module's state, and the runtime's), the pre-fork heap and
//!   anonymous mappings (ld.so's and libc's allocations before `main`);
//! - **the program's**: everything else. The executable's writable data and the main thread's
//!   stack (made inaccessible in the helper, whose threads run on stacks of their own), and every
//!   address the helper had free at its start (reserved there, so its own growth goes to its
//!   slot): everything the program mapped after the zygote was forked, heap growth included.
//!   Before forking the zygote the program uses up its heap's free space (`ballast`), so its
//!   later allocations land above the fork-time break.
//!
//! During a call ("a segment": from the call's start, or the answer to a nested call, to the
//! answer or the next nested call), a fault on a program address asks the waiting program
//! thread for that page (`MSG_PAGES`) on the call's own channel; the helper maps it in place
//! and keeps a pristine twin. When the segment ends, the bytes that differ from the twin go to
//! the program with the message that ends it (`Msg::pages_off`; larger sets ahead in
//! `MSG_WRITES` messages, which the program holds until the segment's last one), the pages are
//! dropped, and the next segment fetches afresh. The program serves only pages it has
//! mapped readable, never its queues or module memory, and applies a write only inside a page
//! it served in that segment, with `process_vm_writev` (a write to memory unmapped since fails
//! instead of faulting); a call that fails or crashes writes nothing. Segments of one helper
//! run one at a time (a lock released at every transition), so no two calls share a fetched
//! page.
//!
//! The program sends ahead, with each call, the pages its argument registers point to and the
//! pages the function's last call fetched (`program::send_ahead`); the answer brings back the
//! module pages the program read after the last answers (`helper::send_back`, `peek::adopt`).

#[cfg(test)]
mod fuzz;
pub mod helper;
pub mod peek;
pub mod program;

use crate::platform::vm::PAGE;
use crate::transport::region::DATA_SIZE;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;

/// Bytes at the top of each channel's data area for pages and write tables (arguments stay
/// below).
pub const AREA: u64 = 4 << 20;
pub const AREA_BASE: u64 = DATA_SIZE as u64 - AREA;
/// Pages of one `MSG_PAGES` request (its addresses ride in `gp`).
pub const PER_REQUEST: usize = 6;
/// Pages sent ahead with a call, at most.
pub const AHEAD: usize = 64;
const _: () = assert!((AHEAD * PAGE + PAGE) as u64 <= AREA);
/// Pages of module memory a call asks to have sent back with its answer, at most (the pages
/// the program read after the last answers: see `program::send_ahead`), and where their
/// count and addresses sit in the call's page table (after the sent-ahead addresses).
pub const BACK: usize = 8;
pub const WANT_AT: usize = 1 + AHEAD;
const _: () = assert!((WANT_AT + 1 + BACK) * 8 <= PAGE);
/// An answer's block of module pages (`Msg::mirror_off`): a page of `[count][addr x count]`
/// (0: not sent) and, at word `1 + SENT_BACK`, the helper's snapshot number, then the pages in
/// that order; the returned value's page and the wanted ones.
pub const SENT_BACK: usize = 1 + BACK;
const _: () = assert!((2 + SENT_BACK) * 8 <= PAGE);

/// A short list of page addresses in atomics (usable from a signal handler: no allocation);
/// its users change it under a lock of their own (the fetched-page list's or the segment
/// lock), the atomics only make it shareable.
pub struct PageList<const N: usize> {
    pages: [AtomicU64; N],
    n: AtomicUsize,
}

impl<const N: usize> PageList<N> {
    pub const fn new() -> Self {
        PageList {
            pages: [const { AtomicU64::new(0) }; N],
            n: AtomicUsize::new(0),
        }
    }

    /// Appends `page`; false when the list is full.
    pub fn push(&self, page: u64) -> bool {
        let n = self.n.load(SeqCst);
        let Some(slot) = self.pages.get(n) else {
            return false;
        };
        slot.store(page, SeqCst);
        self.n.store(n + 1, SeqCst);
        true
    }

    /// Replaces the list with the first `N` of `pages`.
    pub fn set(&self, pages: &[u64]) {
        let n = pages.len().min(N);
        for (slot, &p) in self.pages.iter().zip(&pages[..n]) {
            slot.store(p, SeqCst);
        }
        self.n.store(n, SeqCst);
    }

    /// The pages and their count, and the list emptied.
    pub fn take(&self) -> ([u64; N], usize) {
        let mut out = [0u64; N];
        let n = self.n.swap(0, SeqCst).min(N);
        for (o, slot) in out.iter_mut().zip(&self.pages).take(n) {
            *o = slot.load(SeqCst);
        }
        (out, n)
    }
}

/// Where module memory lives: a reservation the program made before the zygote was forked,
/// one slot per process (slot 0: the zygote's own), inaccessible in the program.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub base: u64,
    pub slot: u64,
    pub slots: u64,
}

static LAYOUT: OnceLock<Layout> = OnceLock::new();

/// Bytes of module memory per process.
pub const SLOT: u64 = 32 << 30;

impl Layout {
    /// Slot `i` (0: the zygote, k + 1: process k).
    pub fn slot_range(&self, i: u64) -> (u64, u64) {
        let a = self.base + i * self.slot;
        (a, a + self.slot)
    }

    /// The whole reservation.
    pub fn range(&self) -> (u64, u64) {
        (self.base, self.base + self.slots * self.slot)
    }

    /// The process whose module memory holds `addr`.
    pub fn process_of(&self, addr: u64) -> Option<usize> {
        let (lo, hi) = self.range();
        if addr < lo || addr >= hi {
            return None;
        }
        ((addr - lo) / self.slot).checked_sub(1).map(|k| k as usize)
    }
}

/// Set once in the program before the zygote is forked (inherited by every helper).
pub fn set_layout(l: Layout) {
    let _ = LAYOUT.set(l);
}

pub fn layout() -> Option<&'static Layout> {
    LAYOUT.get()
}

/// Ranges [lo, hi) sorted by `lo`: true when `addr` lies in one.
pub fn in_ranges(ranges: &[(u64, u64)], addr: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= addr);
    ranges.get(i).is_some_and(|r| r.0 <= addr)
}

/// A write table in the data area: `[count][(addr, len) x count][bytes]`, each range inside
/// one page. Checked against `limit` bytes; None when the peer's table does not hold together.
pub fn parse_writes(table: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(table.get(i..i + 8)?.try_into().ok()?))
    };
    let n = usize::try_from(word(0)?).ok()?;
    let head = n.checked_mul(16)?.checked_add(8)?;
    if head > table.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut at = head;
    for i in 0..n {
        let addr = word(8 + 16 * i)?;
        let len = usize::try_from(word(16 + 16 * i)?).ok()?;
        let page = addr & !(PAGE as u64 - 1);
        if len == 0 || (addr - page) as usize + len > PAGE {
            return None;
        }
        let end = at.checked_add(len)?;
        out.push((addr, table.get(at..end)?));
        at = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u64, &[u8])]) -> Vec<u8> {
        let mut t = (entries.len() as u64).to_le_bytes().to_vec();
        for (a, b) in entries {
            t.extend_from_slice(&a.to_le_bytes());
            t.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        for (_, b) in entries {
            t.extend_from_slice(b);
        }
        t
    }

    #[test]
    fn a_write_table_is_read_back_and_lies_are_refused() {
        let t = table(&[(0x1000, b"ab"), (0x2ffe, b"cd")]);
        let w = parse_writes(&t).unwrap();
        assert_eq!(w, vec![(0x1000, &b"ab"[..]), (0x2ffe, &b"cd"[..])]);
        // A range across a page boundary, a count beyond the table, bytes missing, empty.
        assert!(parse_writes(&table(&[(0x1fff, b"ab")])).is_none());
        let mut big = t.clone();
        big[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_writes(&big).is_none());
        assert!(parse_writes(&t[..t.len() - 1]).is_none());
        assert!(parse_writes(&table(&[(0x1000, b"")])).is_none());
        assert!(parse_writes(&[]).is_none());
    }

    #[test]
    fn module_memory_belongs_to_the_process_of_its_slot() {
        let l = Layout {
            base: 1 << 40,
            slot: SLOT,
            slots: 3,
        };
        assert_eq!(l.process_of((1 << 40) + 5), None, "the zygote's slot");
        assert_eq!(l.process_of((1 << 40) + SLOT), Some(0));
        assert_eq!(l.process_of((1 << 40) + 3 * SLOT - 1), Some(1));
        assert_eq!(l.process_of((1 << 40) + 3 * SLOT), None);
        let r = [(10, 20), (30, 40)];
        assert!(in_ranges(&r, 10) && in_ranges(&r, 39));
        assert!(!in_ranges(&r, 20) && !in_ranges(&r, 5) && !in_ranges(&r, 40));
    }
}
