//! The program's side of `memory: on-demand`: serving the pages a helper asks for during a
//! call, holding and applying the module's writes, and sending pages ahead with a call.
//!
//! Everything the helper sends is untrusted: a page is served only when the program has it
//! mapped readable and it is neither one of the queues nor module memory; a write is applied
//! only inside a page served to that helper in the same segment, through `process_vm_writev`
//! (memory unmapped or made read-only since is skipped, never a fault), and only when the
//! segment ends with a good message.
//!
//! # Safety
//! The page area of a channel (`AREA_BASE..DATA_SIZE`) is read and written only inside its
//! bounds, while the helper waits for our answer; the helper's write table is copied out of
//! shared memory once before it is parsed.

#![allow(unsafe_code)]

use super::{layout, parse_writes, AHEAD, AREA, AREA_BASE, BACK, PER_REQUEST, SENT_BACK, WANT_AT};
use crate::platform::abi::Frame;
use crate::platform::vm::{self, HIGH, LOW, PAGE};
use crate::transport::region::{Msg, Region, DATA_SIZE, MSG_RETURN, REGION_SIZE};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

const P: u64 = PAGE as u64;

/// One segment of a call of this thread's into one helper.
#[derive(Default)]
struct Seg {
    /// Pages served in this segment (sorted when writes are checked).
    served: Vec<u64>,
    /// Of those, the ones the helper asked for (faults).
    asked: Vec<u64>,
    /// Writes held until the segment ends well.
    held: Vec<(u64, Vec<u8>)>,
}

/// Pages to send ahead (page -> how many more calls it is sent without the helper asking for
/// it again), and the pages the helper asked for in the last segment; pages of module memory
/// to ask back with answers (page -> how many more calls), and register values' pages that
/// could not be read (not tried again: a flag word or a length in a register).
#[derive(Default)]
struct Learned {
    ahead: HashMap<u64, u8>,
    asked: Vec<u64>,
    back: HashMap<u64, u8>,
    unreadable: Vec<u64>,
}

impl Learned {
    /// `page` is to be asked back for the next KEEP_BACK calls (while there is room for it).
    fn ask_back(&mut self, page: u64) {
        if self.back.len() < BACK || self.back.contains_key(&page) {
            self.back.insert(page, KEEP_BACK);
        }
    }
}

/// One call more for every learned page: those whose calls are used up are forgotten.
fn age(pages: &mut HashMap<u64, u8>) {
    pages.retain(|_, n| {
        *n -= 1;
        *n > 0
    });
}

/// Calls a learned page is sent ahead before it must be asked for again.
const KEEP: u8 = 8;
/// Calls a page of module memory is asked back after the program last faulted it in (a page
/// it reads after every answer then faults once in KEEP_BACK + 1 calls).
const KEEP_BACK: u8 = 16;
/// Register pages remembered as unreadable, per region.
const UNREADABLE: usize = 16;

thread_local! {
    /// Per region (its key): the segment in progress.
    static SEGS: RefCell<HashMap<usize, Seg>> = RefCell::new(HashMap::new());
    /// Per region: the pages its last segment fetched (which the helper keeps mapped), sent
    /// ahead with the next call.
    static LEARNED: RefCell<HashMap<usize, Learned>> = RefCell::new(HashMap::new());
}

/// Every queue region of the map, in process order (key, with bit 0 set when the process is
/// on demand), registered before the zygote is forked; read lock-free.
static REGIONS: [AtomicUsize; MAX_REGIONS] = [const { AtomicUsize::new(0) }; MAX_REGIONS];
const MAX_REGIONS: usize = 64;

/// Set when some registered region is on demand: every call of a map without one asks only
/// this word, not the table.
static ANY: AtomicBool = AtomicBool::new(false);

/// Registers the region of process `k` (`supervise::address`, before the zygote exists).
pub fn register(k: usize, key: usize, on_demand: bool) {
    if let Some(r) = REGIONS.get(k) {
        r.store(key | usize::from(on_demand), SeqCst);
        if on_demand {
            ANY.store(true, SeqCst);
        }
    }
}

/// The process index of `region` when it is on demand.
pub fn on_demand_index(region: &Region) -> Option<usize> {
    if !ANY.load(Relaxed) {
        return None;
    }
    let key = region.key();
    REGIONS.iter().position(|r| r.load(Relaxed) == key | 1)
}

/// True when `region` serves a `memory: on-demand` process.
pub fn is_on_demand(region: &Region) -> bool {
    on_demand_index(region).is_some()
}

/// A page the program may hand to a helper: in the user address space, not a queue, not
/// module memory (which only its own helper has).
fn servable(page: u64) -> bool {
    if !page.is_multiple_of(P) || !(LOW as u64..HIGH as u64).contains(&page) {
        return false;
    }
    if let Some(l) = layout() {
        let (lo, hi) = l.range();
        if (lo..hi).contains(&page) {
            return false;
        }
    }
    // The writable data of module objects the program fetched from their helpers: another
    // helper must neither read nor write it (it would reach that helper through the program).
    if super::peek::is_module_memory(page) {
        return false;
    }
    !REGIONS.iter().any(|r| {
        let k = (r.load(Relaxed) & !1) as u64;
        k != 0 && (k..k + REGION_SIZE as u64).contains(&page)
    })
}

fn with_seg<R>(region: &Region, f: impl FnOnce(&mut Seg) -> R) -> R {
    SEGS.with(|s| f(s.borrow_mut().entry(region.key()).or_default()))
}

/// Copies the pages `pages` of ours into the area from `first` on (page i at `first + i`);
/// notes them served. Returns the mask of pages copied.
fn copy_out(region: &Region, c: usize, pages: &[u64], first: u64) -> u64 {
    let area = region
        .data(c)
        .wrapping_add((AREA_BASE + first * P) as usize);
    let n = pages.len().min(64);
    // SAFETY: `n` pages from `first` lie inside the page area (callers keep first + n within
    // AREA / PAGE), which is ours while the helper waits for the answer.
    let dst = unsafe { std::slice::from_raw_parts_mut(area, n * PAGE) };
    let mut ok = 0u64;
    let mut want = [0u64; 64];
    for (i, &p) in pages[..n].iter().enumerate() {
        want[i] = if servable(p) { p } else { 0 };
    }
    // Unservable pages are read at 0, which fails.
    let got = vm::read_pages(&want[..n], dst);
    with_seg(region, |s| {
        for (i, &p) in want[..n].iter().enumerate() {
            if p != 0 && got & (1 << i) != 0 {
                ok |= 1 << i;
                s.served.push(p);
            }
        }
    });
    ok
}

/// Answers a helper's `MSG_PAGES` on channel `c`.
pub fn serve_pages(region: &Region, c: usize, m: &Msg) -> Msg {
    let n = (m.nargs as usize).min(PER_REQUEST);
    let mask = copy_out(region, c, &m.gp[..n], 0);
    with_seg(region, |s| {
        for (i, &p) in m.gp[..n].iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            s.asked.push(p);
        }
    });
    if let Some(g) = on_demand_index(region).and_then(|k| crate::observe::stats::PAGES.get(k)) {
        g.fetched.fetch_add(u64::from(mask.count_ones()), Relaxed);
    }
    // SAFETY: Msg is plain data; all-zero is a valid value.
    let mut r: Msg = unsafe { std::mem::zeroed() };
    r.kind = MSG_RETURN;
    r.ret_rax = mask;
    r
}

/// Takes the write table that message `m` carries (if any) into the segment's held writes;
/// false when it does not hold together or writes outside the pages served in the segment.
pub fn hold(region: &Region, c: usize, m: &Msg) -> bool {
    if m.pages_len == 0 {
        return true;
    }
    let in_area = m.pages_off >= AREA_BASE
        && m.pages_off
            .checked_add(m.pages_len)
            .is_some_and(|e| e <= DATA_SIZE as u64);
    if !in_area {
        return false;
    }
    // One copy out of shared memory: the helper may change the area while we read it.
    let mut copy = vec![0u8; m.pages_len as usize];
    // SAFETY: [pages_off, pages_off + pages_len) lies inside the data area (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(
            region.data(c).add(m.pages_off as usize),
            copy.as_mut_ptr(),
            copy.len(),
        )
    };
    let Some(writes) = parse_writes(&copy) else {
        return false;
    };
    with_seg(region, |s| {
        s.served.sort_unstable();
        s.served.dedup();
        for (addr, bytes) in &writes {
            if s.served.binary_search(&(addr & !(P - 1))).is_err() {
                warn!(
                    "a helper wrote {} bytes at {addr:#x}, a page it was not given: the call fails",
                    bytes.len()
                );
                return false;
            }
        }
        s.held
            .extend(writes.into_iter().map(|(a, b)| (a, b.to_vec())));
        true
    })
}

/// The segment ended well: applies its writes, remembers its pages for the next call.
pub fn apply(region: &Region) {
    let seg = SEGS.with(|s| s.borrow_mut().remove(&region.key()));
    let Some(seg) = seg else { return };
    if let Some(g) = on_demand_index(region).and_then(|k| crate::observe::stats::PAGES.get(k)) {
        let n: usize = seg.held.iter().map(|(_, b)| b.len()).sum();
        g.written.fetch_add(n as u64, Relaxed);
    }
    for (addr, bytes) in &seg.held {
        if !vm::write_own(*addr, bytes) {
            debug!("on-demand write at {addr:#x} skipped: the page is gone or read-only now");
        }
    }
    // Sent ahead next time: the pages the helper asked for in this segment and the last one
    // (a call that streams through fresh buffers learns nothing, and pays nothing for it),
    // for KEEP calls after it last asked.
    let mut asked = seg.asked;
    asked.sort_unstable();
    asked.dedup();
    LEARNED.with(|l| {
        let mut l = l.borrow_mut();
        let e = l.entry(region.key()).or_default();
        e.unreadable.retain(|p| asked.binary_search(p).is_err());
        age(&mut e.ahead);
        for &p in &asked {
            if e.asked.binary_search(&p).is_ok() || e.ahead.contains_key(&p) {
                e.ahead.insert(p, KEEP);
            }
        }
        if e.ahead.len() > AHEAD - 8 {
            let mut v: Vec<(u64, u8)> = e.ahead.iter().map(|(&p, &n)| (p, n)).collect();
            v.sort_unstable_by_key(|e| std::cmp::Reverse(e.1));
            v.truncate(AHEAD - 8);
            e.ahead = v.into_iter().collect();
        }
        e.asked = asked;
    });
}

/// The answer `m` on channel `c` carries pages of module memory (`mirror_off`, see
/// `helper::send_back`: the page its value points into, those the call asked back) and the
/// number of the segment it ended: the program keeps the pages as if it had read them, unless
/// it took a newer answer already, and drops those it holds from older segments. The block is
/// the helper's: its count is bounded, its words read once, and `peek::adopt` takes only pages
/// of that helper's module memory. (A helper that lies about the numbers can make the program
/// read its module memory stale or afresh, nothing else.)
pub fn adopt_sent_back(region: &Region, c: usize, m: &Msg) {
    let Some(k) = on_demand_index(region) else {
        return;
    };
    let Some((addrs, seq, block)) = sent_back_block(region, c, m) else {
        super::peek::drop_stale(k);
        return;
    };
    if super::peek::take_snapshot(k, seq) {
        for (i, &a) in addrs.iter().enumerate() {
            if a != 0 && a.is_multiple_of(P) {
                // Page i + 1 of the block, inside the data area (n pages after the header).
                super::peek::adopt(k, a, block.wrapping_add(PAGE * (1 + i)), seq);
            }
        }
    }
    // The returned value's page is asked back with the next calls too: a result buffer the
    // module reallocates moves between a few pages (libmagic's does), and a page asked back
    // stays mapped and is refreshed, where one not asked for is dropped and the next answer
    // maps it afresh (two mmaps and a page fault, ~10 us here).
    let ret = m.ret_rax & !(P - 1);
    if ret != 0 && addrs.contains(&ret) {
        LEARNED.with(|l| {
            l.borrow_mut()
                .entry(region.key())
                .or_default()
                .ask_back(ret)
        });
    }
    // Pages older than this answer's segment may have changed in it: dropped.
    super::peek::answered(k, seq);
}

/// The block of module pages and the segment number that message `m` (an answer, or a nested
/// call: no pages) carries: the pages' addresses, the number, and the block's start. None when
/// there is none, or it does not hold together.
fn sent_back_block(region: &Region, c: usize, m: &Msg) -> Option<([u64; SENT_BACK], u64, *mut u8)> {
    let n = (m.mirror_len / P).saturating_sub(1);
    let ok = m.mirror_len.is_multiple_of(P)
        && m.mirror_len >= P
        && n <= SENT_BACK as u64
        && m.mirror_off >= AREA_BASE
        && m.mirror_off.is_multiple_of(P)
        && m.mirror_off
            .checked_add(m.mirror_len)
            .is_some_and(|e| e <= DATA_SIZE as u64);
    if !ok {
        return None;
    }
    let block = region.data(c).wrapping_add(m.mirror_off as usize);
    let mut addrs = [0u64; SENT_BACK];
    // SAFETY: the block's first page lies in the data area (checked above); its count,
    // addresses and snapshot number are copied out once, the count bounded by SENT_BACK.
    let seq = unsafe {
        let words = block as *const u64;
        let count = (std::ptr::read_volatile(words) as usize).min(n as usize);
        for (i, a) in addrs.iter_mut().enumerate().take(count) {
            *a = std::ptr::read_volatile(words.add(1 + i));
        }
        std::ptr::read_volatile(words.add(1 + SENT_BACK))
    };
    Some((addrs, seq, block))
}

/// The helper's segment ended with a nested call (message `m` on channel `c`): the program
/// runs code of its own now, which may read module memory; pages older than that segment are
/// dropped (all kept ones when the call says no number).
pub fn nested_call(region: &Region, c: usize, m: &Msg) {
    let Some(k) = on_demand_index(region) else {
        return;
    };
    match sent_back_block(region, c, m) {
        Some((_, seq, _)) if super::peek::take_snapshot(k, seq) => super::peek::answered(k, seq),
        _ => super::peek::drop_stale(k),
    }
}

/// The segment ended without an answer to read (a failure, or a nested call that hands the
/// program control): module pages kept over the call are dropped.
pub fn end_without_answer(region: &Region) {
    if let Some(k) = on_demand_index(region) {
        super::peek::drop_stale(k);
    }
}

/// The segment ended badly (the call failed or the helper died): nothing is written.
pub fn discard(region: &Region) {
    SEGS.with(|s| s.borrow_mut().remove(&region.key()));
}

/// A call starts a segment: sends ahead the pages its argument registers point to (every
/// register: a pointer the module hands to a system call unread never faults, so none can be
/// learned useless) and the pages the helper asked for in its last calls, in the page area of
/// channel `c`, described in `m`.
///
/// It also asks the helper to send back with the answer the pages of module memory the
/// program read after the last answers (a field of a handle, a buffer the module keeps):
/// learned from the program's own faults, asked for KEEP_BACK calls after the last one, and
/// only while one program thread calls into the process (`peek::sole_caller`).
pub fn send_ahead(region: &Region, c: usize, frame: &Frame, m: &mut Msg) {
    discard(region);
    // What the program printed so far goes before anything the call prints.
    crate::platform::sys::flush_stdout_if_pending();
    let k = on_demand_index(region);
    let sole = k.is_some_and(super::peek::sole_caller);
    let (faulted, nfaulted) = k.map_or(([0; BACK], 0), super::peek::take_faulted);
    let mut pages: Vec<u64> = Vec::with_capacity(AHEAD);
    let mut wanted = [0u64; BACK];
    let mut nwanted = 0;
    LEARNED.with(|l| {
        let mut l = l.borrow_mut();
        let e = l.entry(region.key()).or_default();
        for &v in &frame.gp {
            let p = v & !(P - 1);
            if servable(p) && !pages.contains(&p) && !e.unreadable.contains(&p) {
                pages.push(p);
                // A string or small struct that runs into the next page: a system call the
                // module makes on it cannot fault the rest in (it fails with EFAULT instead).
                if v - p >= P - 1024 && servable(p + P) && !e.unreadable.contains(&(p + P)) {
                    pages.push(p + P);
                }
            }
        }
        for &p in e.ahead.keys() {
            if pages.len() < AHEAD && !pages.contains(&p) {
                pages.push(p);
            }
        }
        if sole {
            age(&mut e.back);
            for &p in &faulted[..nfaulted] {
                e.ask_back(p);
            }
            for &p in e.back.keys() {
                wanted[nwanted] = p;
                nwanted += 1;
            }
        } else {
            e.back.clear();
        }
    });
    // Module memory the program read since its last call into this process is stale now.
    if let Some(k) = k {
        super::peek::before_call(k, region, c, &wanted[..nwanted]);
    }
    if pages.is_empty() && nwanted == 0 {
        return;
    }
    let ok = copy_out(region, c, &pages, 1);
    if let Some(g) = k.and_then(|k| crate::observe::stats::PAGES.get(k)) {
        g.sent_ahead.fetch_add(u64::from(ok.count_ones()), Relaxed);
    }
    // Registers' pages that could not be read are not tried again.
    let regs: Vec<u64> = pages
        .iter()
        .enumerate()
        .filter(|&(i, _)| ok & (1 << i) == 0)
        .map(|(_, &p)| p)
        .filter(|p| frame.gp.iter().any(|&v| v & !(P - 1) == *p))
        .collect();
    if !regs.is_empty() {
        LEARNED.with(|l| {
            let mut l = l.borrow_mut();
            let e = l.entry(region.key()).or_default();
            for p in regs {
                if e.unreadable.len() >= UNREADABLE {
                    e.unreadable.remove(0);
                }
                e.unreadable.push(p);
            }
        });
    }
    // The table: [count][addr...] in the area's first page; page i at page i + 1. Pages that
    // could not be read are left out (the helper skips a 0 address: never a program page).
    // Then, at word WANT_AT, [count][addr...] of the module pages to send back.
    let table = region.data(c).wrapping_add(AREA_BASE as usize) as *mut u64;
    // SAFETY: AHEAD + 1 words and the wanted list fit the area's first page (asserted with
    // WANT_AT); the channel is ours.
    unsafe {
        std::ptr::write_volatile(table, pages.len() as u64);
        for (i, &p) in pages.iter().enumerate() {
            let v = if ok & (1 << i) != 0 { p } else { 0 };
            std::ptr::write_volatile(table.add(1 + i), v);
        }
        std::ptr::write_volatile(table.add(WANT_AT), nwanted as u64);
        for (i, &p) in wanted[..nwanted].iter().enumerate() {
            std::ptr::write_volatile(table.add(WANT_AT + 1 + i), p);
        }
    }
    m.pages_off = AREA_BASE;
    m.pages_len = P * (1 + pages.len() as u64);
    debug_assert!(m.pages_len <= AREA);
}
