//! The helper's side of `memory: on-demand`: fetching a page on a fault, the twin of every
//! fetched page, and the write table at the end of a segment.
//!
//! # Safety
//! The fault handler ([`on_fault`]) runs on the serving thread's alternate stack while the
//! module's code is stopped at the faulting instruction: it touches only this thread's
//! [`Pages`] (made before the thread served anything, reached through a const thread-local),
//! the call's channel, and pages it maps itself at program addresses ([`vm::fresh_page`] on
//! addresses no helper-owned range holds, checked against the ranges fixed at the helper's
//! start). It allocates nothing and cannot panic (no indexing that is not bounded first).

#![allow(unsafe_code)]

use super::{in_ranges, AREA, AREA_BASE, BACK, PER_REQUEST, SENT_BACK, WANT_AT};
use crate::platform::vm::{self, HIGH, LOW, PAGE};
use crate::transport::region::{self, Msg, Region, DATA_SIZE, MSG_PAGES, MSG_RETURN, MSG_WRITES};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::Duration;

/// Pages one thread may hold fetched at once; past it the segment's writes are sent ahead and
/// the pages dropped.
const MAX_PAGES: usize = 16384;
const SLOTS: usize = 2 * MAX_PAGES;
const P: u64 = PAGE as u64;

/// Ranges of this helper's own memory (sorted, merged), fixed at its start.
static OWNED: OnceLock<Vec<(u64, u64)>> = OnceLock::new();

/// Program pages kept mapped after a call's answer (at most `HOLD`), while no segment runs:
/// the next call refreshes those it sends ahead again with a copy, and drops the others before
/// the module runs. Saves an `mmap` to map, its page faults and an `mmap` to drop per page and
/// call (~12 us for `magic_file`'s two pages here). Only while nothing of the module can run
/// between calls: one serving thread, and no thread the module started (a module thread that
/// touches program memory outside a call must fault, and fail the helper). Read and written
/// under the segment lock.
const HOLD: usize = super::AHEAD;
static HELD: super::PageList<HOLD> = super::PageList::new();
/// Segments ended so far: the number of the snapshot an answer's sent-back pages are (see
/// `peek::adopt`). Counted under the segment lock.
static SNAP: AtomicU64 = AtomicU64::new(0);

/// The number of the last segment that ended (a page read now is at least that new).
pub fn snapshot() -> u64 {
    SNAP.load(SeqCst)
}

/// Serving threads started in this helper, and whether module code started a thread.
static SERVERS: AtomicUsize = AtomicUsize::new(0);
static MODULE_THREAD: AtomicBool = AtomicBool::new(false);

/// A thread is being started (the interposed `pthread_create`): on a serving thread of an
/// on-demand helper it is the module's.
pub fn thread_started() {
    if !MINE.with(|m| m.get()).is_null() {
        MODULE_THREAD.store(true, SeqCst);
    }
}

/// True when fetched pages may stay mapped until the next call (see `HELD`).
fn may_hold() -> bool {
    SERVERS.load(SeqCst) == 1 && !MODULE_THREAD.load(SeqCst)
}

/// Drops the pages held over that a call did not take again (the non-zero ones of `held`).
fn drop_held(held: &mut [u64; HOLD], n: usize) {
    let mut k = 0;
    for i in 0..n.min(HOLD) {
        if held[i] != 0 {
            held[k] = held[i];
            k += 1;
        }
    }
    vm::page_runs(&mut held[..k], |a, b| {
        // SAFETY: program pages we fetched and held over; no segment runs (the lock is ours).
        unsafe { vm::drop_to_reservation(a as usize, b as usize) };
    });
}

/// Called once, at the helper's start (see `supervise::address`).
pub fn set_owned(mut v: Vec<(u64, u64)>) {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(l) if a <= l.1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    let _ = OWNED.set(out);
}

/// This helper's own ranges (None: not on demand).
pub fn owned() -> Option<&'static [(u64, u64)]> {
    OWNED.get().map(|v| v.as_slice())
}

/// True in a helper of a `memory: on-demand` process.
pub fn active() -> bool {
    OWNED.get().is_some()
}

/// A page of the program: not ours, inside the user address space.
fn programs(owned: &[(u64, u64)], addr: u64) -> bool {
    (LOW as u64..HIGH as u64).contains(&addr) && !in_ranges(owned, addr)
}

/// One serving thread's fetched pages.
struct Pages {
    region: Region,
    c: usize,
    in_segment: bool,
    n: usize,
    addrs: Vec<u64>,
    /// Open addressing over page numbers (0: empty): index + 1 into `addrs`.
    slots: Vec<u32>,
    /// MAX_PAGES twins, page i's at `twins + i * PAGE`.
    twins: usize,
    /// Pages of our own memory the call asked to have sent back with its answer.
    want: [u64; BACK],
    nwant: usize,
}

thread_local! {
    static MINE: Cell<*mut Pages> = const { Cell::new(std::ptr::null_mut()) };
}

impl Pages {
    fn find(&self, page: u64) -> Option<usize> {
        let mut i = (page / P) as usize % SLOTS;
        loop {
            let s = *self.slots.get(i)?;
            if s == 0 {
                return None;
            }
            let k = s as usize - 1;
            if self.addrs.get(k) == Some(&page) {
                return Some(k);
            }
            i = (i + 1) % SLOTS;
        }
    }

    fn insert(&mut self, page: u64) -> Option<usize> {
        if self.n >= MAX_PAGES {
            return None;
        }
        let k = self.n;
        *self.addrs.get_mut(k)? = page;
        let mut i = (page / P) as usize % SLOTS;
        while *self.slots.get(i)? != 0 {
            i = (i + 1) % SLOTS;
        }
        self.slots[i] = k as u32 + 1;
        self.n += 1;
        Some(k)
    }

    fn twin(&self, k: usize) -> *mut u8 {
        (self.twins + k * PAGE) as *mut u8
    }

    /// Maps the page fetched into the area at `off` at `page`, with its twin.
    ///
    /// # Safety
    /// `page` is a program page (no helper-owned range holds it) not fetched yet; `off` and a
    /// page after it lie in the channel's data area.
    unsafe fn install(&mut self, page: u64, off: u64, exec: bool, mapped: bool) -> bool {
        // SAFETY: a program page: a reservation, or inaccessible program data (contract).
        if !mapped && !unsafe { vm::fresh_page(page as usize, exec) } {
            return false;
        }
        let Some(k) = self.insert(page) else {
            return false;
        };
        let src = self.region.data(self.c).wrapping_add(off as usize);
        // SAFETY: src is a page of the data area (contract), the page was just mapped
        // writable, the twin is slot k of this thread's twin mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(src, page as *mut u8, PAGE);
            std::ptr::copy_nonoverlapping(src, self.twin(k), PAGE);
        }
        true
    }

    /// Ends the segment's hold on its pages: every fetched page is dropped (back to
    /// inaccessible reservations, a run of pages at a time: each change of the address space
    /// costs a TLB flush on the other CPUs), but with `hold` (a call's answer, see `HELD`) the
    /// first `HOLD` stay mapped until the next call.
    fn release_all(&mut self, hold: bool) {
        // The hash first (it is keyed by the addresses, which are sorted below).
        for k in 0..self.n {
            let mut i = (self.addrs[k] / P) as usize % SLOTS;
            while self.slots[i] != 0 {
                self.slots[i] = 0;
                i = (i + 1) % SLOTS;
            }
        }
        let n = self.n;
        let kept = if hold { n.min(HOLD) } else { 0 };
        if hold {
            HELD.set(&self.addrs[..kept]);
        }
        vm::page_runs(&mut self.addrs[kept..n], |a, b| {
            // SAFETY: pages this thread fetched; their writes were sent (or are to be lost).
            unsafe { vm::drop_to_reservation(a as usize, b as usize) };
        });
        self.n = 0;
    }

    /// The changed runs of fetched page k: calls `emit(offset, len)` per run.
    fn runs(&self, k: usize, mut emit: impl FnMut(usize, usize) -> bool) -> bool {
        let page = self.addrs[k] as *const u64;
        let twin = self.twin(k) as *const u64;
        let words = PAGE / 8;
        let mut w = 0;
        while w < words {
            // SAFETY: both are whole mapped pages (fetched, and its twin).
            let differs = |i: usize| unsafe { *page.add(i) != *twin.add(i) };
            if !differs(w) {
                w += 1;
                continue;
            }
            let start = w;
            let mut end = w + 1;
            // Runs closer than four equal words are one.
            let mut gap = 0;
            let mut i = end;
            while i < words && gap < 4 {
                if differs(i) {
                    end = i + 1;
                    gap = 0;
                } else {
                    gap += 1;
                }
                i += 1;
            }
            if !emit(start * 8, (end - start) * 8) {
                return false;
            }
            w = end;
        }
        true
    }

    /// Writes the changed bytes of pages `from..` into the area as a write table, as many as
    /// fit; returns (table length, the first page not written).
    fn table(&self, from: usize) -> (u64, usize) {
        let base = self.region.data(self.c).wrapping_add(AREA_BASE as usize);
        // Pass 1: how many runs and bytes fit, page by page.
        let (mut runs, mut bytes, mut upto) = (0usize, 0usize, from);
        for k in from..self.n {
            let (mut r, mut b) = (0, 0);
            self.runs(k, |_, len| {
                r += 1;
                b += len;
                true
            });
            if 8 + 16 * (runs + r) + bytes + b > AREA as usize {
                break;
            }
            runs += r;
            bytes += b;
            upto = k + 1;
        }
        // Pass 2: write them.
        let head = 8 + 16 * runs;
        let (mut i, mut at) = (0usize, head);
        // SAFETY: every write lies in [AREA_BASE, AREA_BASE + head + bytes), which pass 1
        // kept inside the data area; sources are the fetched pages.
        unsafe {
            std::ptr::write_unaligned(base as *mut u64, runs as u64);
            for k in from..upto {
                let a = self.addrs[k];
                self.runs(k, |off, len| {
                    let e = base.add(8 + 16 * i) as *mut u64;
                    std::ptr::write_unaligned(e, a + off as u64);
                    std::ptr::write_unaligned(e.add(1), len as u64);
                    std::ptr::copy_nonoverlapping((a as *const u8).add(off), base.add(at), len);
                    i += 1;
                    at += len;
                    true
                });
            }
        }
        (at as u64, upto)
    }

    /// Sends the writes of every fetched page but the last table, which goes into `last`;
    /// then drops the pages (or holds them over: `hold`, see `HELD`). False when the program
    /// did not take a table.
    fn flush(&mut self, last: Option<&mut Msg>, hold: bool) -> bool {
        let mut from = 0;
        let mut ok = true;
        loop {
            let (len, upto) = self.table(from);
            let done = upto >= self.n;
            if done {
                if let Some(m) = last {
                    m.pages_off = AREA_BASE;
                    m.pages_len = if len > 8 { len } else { 0 };
                    break;
                }
            }
            if len > 8 {
                // SAFETY: Msg is plain data; all-zero is a valid value.
                let mut m: Msg = unsafe { std::mem::zeroed() };
                m.kind = MSG_WRITES;
                m.pages_off = AREA_BASE;
                m.pages_len = len;
                ok &= self.ask(&m).is_some();
            }
            if done || upto == from {
                break;
            }
            from = upto;
        }
        self.release_all(hold);
        ok
    }

    /// Sends `m` to the program on the call's channel and waits for its answer (None: the
    /// program is gone or did not answer MSG_RETURN).
    fn ask(&self, m: &Msg) -> Option<Msg> {
        let ch = self.region.channel(self.c);
        let h = self.region.header();
        let recv = ch.to_helper();
        // SYNC POINT: the answer bumps `to_helper_seq` past this value (as in `client_post`).
        let seen = recv.seq.load(SeqCst);
        ch.write_msg(m);
        ch.to_prog().post();
        let s = recv.wait(
            seen,
            // Not while on the caller's CPU (co-located): the caller must run to answer.
            crate::call::colocate::server_spin(Duration::from_micros(50)),
            false,
            Duration::from_millis(50),
            || h.shutdown.load(SeqCst) != 0,
        )?;
        ch.consumed.store(s, SeqCst);
        let r = ch.read_msg();
        (r.kind == MSG_RETURN).then_some(r)
    }
}

/// Makes this serving thread's page state (before it serves anything). False when memory for
/// it cannot be had (the thread then fails the helper's calls as crashes would).
pub fn thread_start(region: Region, c: usize) -> bool {
    if !active() {
        return true;
    }
    let Some(twins) = vm::anonymous(MAX_PAGES * PAGE) else {
        return false;
    };
    SERVERS.fetch_add(1, SeqCst);
    let p = Box::new(Pages {
        region,
        c,
        in_segment: false,
        n: 0,
        addrs: vec![0; MAX_PAGES],
        slots: vec![0; SLOTS],
        twins,
        want: [0; BACK],
        nwant: 0,
    });
    MINE.with(|m| m.set(Box::into_raw(p)));
    true
}

fn mine() -> Option<&'static mut Pages> {
    let p = MINE.with(|m| m.get());
    // SAFETY: made by `thread_start` for this thread and never freed (the thread serves until
    // the helper exits); only this thread uses it, and the fault handler only while the
    // thread runs module code, never inside these functions (`in_segment` is false here).
    unsafe { p.as_mut() }
}

/// One segment at a time per helper (a futex lock: 0 free, 1 held, 2 held with waiters).
static SEG: AtomicU32 = AtomicU32::new(0);

fn lock() {
    let mut c = match SEG.compare_exchange(0, 1, SeqCst, SeqCst) {
        Ok(_) => return,
        Err(c) => c,
    };
    if c != 2 {
        c = SEG.swap(2, SeqCst);
    }
    while c != 0 {
        region::futex_wait(&SEG, 2, Duration::from_millis(50));
        c = SEG.swap(2, SeqCst);
    }
}

fn unlock() {
    if SEG.swap(0, SeqCst) == 2 {
        region::futex_wake(&SEG);
    }
}

/// A segment starts: the call in `m` (or the answer to our nested call) arrived. Installs the
/// pages the program sent ahead with a call.
pub fn begin(m: Option<&Msg>) {
    let Some(p) = mine() else { return };
    lock();
    // Pages held over since the last answer: taken again below when this call sends them,
    // dropped before the module runs otherwise.
    let (mut held, nheld) = HELD.take();
    if let (Some(m), Some(owned)) = (m, OWNED.get()) {
        p.nwant = 0;
        if m.pages_len > 0 && m.pages_off == AREA_BASE {
            // SAFETY: the table's first word lies in the data area (AREA_BASE is inside).
            let words = p.region.data(p.c).wrapping_add(AREA_BASE as usize) as *const u64;
            // The pages to send back: ours only, each once.
            // SAFETY: the wanted list lies in the table's page (WANT_AT + 1 + BACK words).
            let nw = (unsafe { std::ptr::read_volatile(words.add(WANT_AT)) } as usize).min(BACK);
            for i in 0..nw {
                // SAFETY: as above, i < BACK.
                let page = unsafe { std::ptr::read_volatile(words.add(WANT_AT + 1 + i)) };
                if page.is_multiple_of(P)
                    && in_ranges(owned, page)
                    && !p.want[..p.nwant].contains(&page)
                {
                    p.want[p.nwant] = page;
                    p.nwant += 1;
                }
            }
            // SAFETY: as above; the count is bounded before any page is read.
            let n = unsafe { std::ptr::read_volatile(words) } as usize;
            let n = n.min(super::AHEAD);
            // Which pages to take, and the runs of those not mapped yet, mapped at once.
            let mut take = [0u64; super::AHEAD];
            let mut fresh = [0u64; super::AHEAD];
            let mut nfresh = 0;
            for i in 0..n {
                // SAFETY: word i + 1 of the table, inside the first page of the area.
                let page = unsafe { std::ptr::read_volatile(words.add(1 + i)) };
                let dup = take[..i].contains(&page);
                if !page.is_multiple_of(P) || !programs(owned, page) || p.find(page).is_some() {
                    continue;
                }
                if dup {
                    continue;
                }
                take[i] = page;
                if let Some(h) = held[..nheld].iter_mut().find(|h| **h == page) {
                    *h = 0; // mapped already: only its bytes are new
                    continue;
                }
                fresh[nfresh] = page;
                nfresh += 1;
            }
            vm::page_runs(&mut fresh[..nfresh], |a, b| {
                // SAFETY: program pages (checked above), not mapped by us.
                unsafe { vm::fresh_pages(a as usize, ((b - a) / P) as usize, false) };
            });
            for (i, &page) in take.iter().enumerate().take(n) {
                if page != 0 {
                    // SAFETY: a program page, mapped now (or held over); its bytes are page
                    // i + 1 of the area.
                    unsafe { p.install(page, AREA_BASE + P * (1 + i as u64), false, true) };
                }
            }
        }
    }
    drop_held(&mut held, nheld);
    p.in_segment = true;
}

/// The segment ends with message `m` (an answer, or a nested call to the program): the
/// module's writes go with it, the pages are dropped.
pub fn end(m: &mut Msg) {
    let Some(p) = mine() else { return };
    if !p.in_segment {
        return;
    }
    p.in_segment = false;
    let hold = m.kind == MSG_RETURN && may_hold();
    p.flush(Some(m), hold);
    // Every segment counts (one that ends in a nested call changed memory too, and the
    // program runs code of its own then: its message says the number as well).
    let seq = SNAP.fetch_add(1, SeqCst) + 1;
    send_back(p, m, seq);
    unlock();
}

/// An answer whose value points into module memory (a returned string, a handle the program
/// reads through) brings that page, and the pages of ours the call asked back (what the
/// program read after the last answers), after the write table: a block at `mirror_off` of
/// `[count][addr x count]` (0: not readable) and the snapshot's number `seq` (at word
/// `1 + SENT_BACK`) in its first page, then the pages, so the program reads them without
/// asking.
fn send_back(p: &Pages, m: &mut Msg, seq: u64) {
    let Some(owned) = OWNED.get() else { return };
    let mut pages = [0u64; SENT_BACK];
    let mut n = 0;
    let v = m.ret_rax;
    let answer = m.kind == MSG_RETURN;
    if answer && (LOW as u64..HIGH as u64).contains(&v) && in_ranges(owned, v) {
        pages[0] = v & !(P - 1);
        n = 1;
    }
    for &w in &p.want[..if answer { p.nwant.min(BACK) } else { 0 }] {
        if !pages[..n].contains(&w) {
            pages[n] = w;
            n += 1;
        }
    }
    // The block goes with every answer (with no page, it still says the segment's number).
    let off = (AREA_BASE + m.pages_len).div_ceil(P) * P;
    let fit = (DATA_SIZE as u64).saturating_sub(off) / P;
    if fit == 0 {
        return;
    }
    let n = n.min(fit as usize - 1);
    // SAFETY: 1 + n pages at `off` lie inside the channel's data area (`fit` above).
    let block = unsafe {
        std::slice::from_raw_parts_mut(p.region.data(p.c).add(off as usize), PAGE * (1 + n))
    };
    let got = if n == 0 {
        0
    } else {
        vm::read_pages(&pages[..n], &mut block[PAGE..])
    };
    let (head, _) = block.split_at_mut(PAGE);
    head[..8].copy_from_slice(&(n as u64).to_le_bytes());
    head[8 * (1 + SENT_BACK)..8 * (2 + SENT_BACK)].copy_from_slice(&seq.to_le_bytes());
    for (i, &a) in pages[..n].iter().enumerate() {
        let a = if got & (1 << i) != 0 { a } else { 0 };
        head[8 * (1 + i)..8 * (2 + i)].copy_from_slice(&a.to_le_bytes());
    }
    m.mirror_off = off;
    m.mirror_len = P * (1 + n as u64);
}

/// A fault at `info`'s address while this thread runs a segment: fetches the page from the
/// program (and the next few, read ahead). False when it is no page of the program's, or the
/// program does not have it: a real fault.
///
/// # Safety
/// Called from the SIGSEGV handler with the kernel's `info` and `ctx`.
pub unsafe fn on_fault(info: *mut libc::siginfo_t, ctx: *mut libc::c_void) -> bool {
    let Some(p) = mine() else { return false };
    let Some(owned) = OWNED.get() else {
        return false;
    };
    if !p.in_segment || info.is_null() {
        return false;
    }
    // SAFETY: the kernel's siginfo of a SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as u64;
    // Bit 4 of the page-fault error code: an instruction fetch.
    let exec = !ctx.is_null()
        // SAFETY: the kernel's ucontext of this signal.
        && unsafe { (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize] }
            & 0x10
            != 0;
    if !programs(owned, addr) {
        return false;
    }
    let page = addr & !(P - 1);
    if p.find(page).is_some() {
        // Fetched as data, now run: the program's code (a function pointer it stored).
        // SAFETY: a page this thread fetched.
        return exec && unsafe { vm::make_executable(page as usize, page as usize + PAGE) };
    }
    fetch(p, owned, page, exec)
}

/// Before a system call on `addr` (see `supervise::touch`): makes sure the page is here when it
/// is a page of the program's; false when it is the program's and the program does not have
/// it (the call then fails as it would have).
pub fn ensure(addr: u64) -> bool {
    let (Some(p), Some(owned)) = (mine(), OWNED.get()) else {
        return true;
    };
    if !p.in_segment || !programs(owned, addr) {
        return true;
    }
    let page = addr & !(P - 1);
    p.find(page).is_some() || fetch(p, owned, page, false)
}

/// [`ensure`] for every page of `[a, b)`, with the thread's state looked up once: a buffer
/// of the module's own memory (the usual case: `pread` into its heap) costs one range check.
pub fn ensure_range(a: u64, b: u64) -> bool {
    let (Some(p), Some(owned)) = (mine(), OWNED.get()) else {
        return true;
    };
    if !p.in_segment || b <= a {
        return true;
    }
    let last = b - 1;
    let i = owned.partition_point(|r| r.1 <= a);
    if owned.get(i).is_some_and(|r| r.0 <= a && last < r.1) {
        return true;
    }
    let mut page = a & !(P - 1);
    while page <= last {
        if programs(owned, page) && p.find(page).is_none() && !fetch(p, owned, page, false) {
            return false;
        }
        page += P;
    }
    true
}

/// Fetches the program's page `page` (not fetched yet) and the next few, read ahead.
fn fetch(p: &mut Pages, owned: &[(u64, u64)], page: u64, exec: bool) -> bool {
    if p.n + PER_REQUEST > MAX_PAGES {
        // SAFETY of the flush: no segment message is in flight (the module is running).
        if !p.flush(None, false) {
            return false;
        }
    }
    let mut want = [0u64; PER_REQUEST];
    want[0] = page;
    let mut n = 1;
    while n < PER_REQUEST {
        let q = page + n as u64 * P;
        if !programs(owned, q) || p.find(q).is_some() {
            break;
        }
        want[n] = q;
        n += 1;
    }
    // SAFETY: Msg is plain data; all-zero is a valid value.
    let mut m: Msg = unsafe { std::mem::zeroed() };
    m.kind = MSG_PAGES;
    m.nargs = n as u32;
    m.gp[..n].copy_from_slice(&want[..n]);
    m.data_base = AREA_BASE;
    m.data_end = DATA_SIZE as u64;
    let Some(r) = p.ask(&m) else { return false };
    if r.ret_rax & 1 == 0 {
        return false;
    }
    // The run served from the faulting page on: one mapping.
    let run = (r.ret_rax.trailing_ones() as usize).min(n);
    // SAFETY: program pages not fetched yet (checked above).
    if !unsafe { vm::fresh_pages(page as usize, run, exec) } {
        return false;
    }
    for (i, &q) in want[..n].iter().enumerate() {
        if r.ret_rax & (1 << i) != 0 {
            // SAFETY: a program page not fetched yet (checked above), mapped when in the run;
            // its bytes are page i of the area.
            if !unsafe { p.install(q, AREA_BASE + P * i as u64, exec, i < run) } && i == 0 {
                return false;
            }
        }
    }
    true
}
