//! The other direction of `memory: on-demand`: the program reading module memory (a string a
//! module function returned, a field of its handle, the module's own globals). Module memory is
//! inaccessible in the program (the reservation's slots, and the writable data of the module's
//! objects, made inaccessible once the zygote is forked); a fault there asks the helper for the
//! page (`MSG_PEEK`, on a channel of its own), maps it, and keeps it until the program's next
//! call into that process. Fetched pages are mapped writable, with a twin of what was fetched:
//! before the next call, the bytes of every page that differ from its twin (the program wrote
//! module memory: memory it got from the module's allocator, say) go back to the helper. (They
//! used to be mapped read-only, a write found by its fault: two `mprotect`s each time an answer
//! refreshed a page, ~7 us here, against ~0.2 us to compare a page.) Every other fault goes to
//! the handler that was installed before ours.
//!
//! # Safety
//! The handler runs on whatever stack the faulting thread has; it allocates nothing: a channel
//! is taken with the lock-free free-mask, the page is mapped at an address of module memory
//! (a slot or a module object's data, never anything else of the program's), the list of
//! fetched pages is an array of atomics made before the handler was installed.

#![allow(unsafe_code)]

use super::{in_ranges, layout, AREA_BASE, BACK};
use crate::plan::runtime::{self, Runtime};
use crate::platform::vm::{self, PAGE};
use crate::transport::region::{Msg, Region, MSG_PEEK, MSG_RETURN};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const P: u64 = PAGE as u64;
/// Pages of module memory one process may have fetched between two calls into it.
const MAX_PEEKED: usize = 4096;

struct Peeked {
    pages: Vec<AtomicU64>,
    /// Came with an answer (the page its value pointed into): kept over the next call, stale,
    /// and refreshed in place when the answer brings it again (no change of the address space).
    sent_back: Vec<AtomicBool>,
    /// Kept over a call that may have changed it: dropped unless its answer refreshes it.
    stale: Vec<AtomicBool>,
    /// The helper's number of the snapshot the page holds (its segments, counted: see
    /// `helper::snapshot`). Answers of concurrent calls come back in any order: a page is
    /// refreshed only by a newer snapshot than the one it holds (an older one won the race
    /// before: 110 stale reads in 16 000 calls of `fx_od_prog slots`).
    seq: Vec<AtomicU64>,
    /// The newest snapshot number of an answer the program took: pages of an older one are
    /// not taken (a page of its may have changed since, in a segment that newer answer ended).
    latest: AtomicU64,
    /// Written by the program since it was fetched (its bytes go back before the next call):
    /// set at a write fault that fetched it, and found by comparing with its twin before the
    /// next call.
    dirty: Vec<AtomicBool>,
    n: AtomicUsize,
    /// MAX_PEEKED twins: page i as fetched, at `twins + i * PAGE`.
    twins: usize,
    /// Held while the list changes (a spin lock: taken in the fault handler too, never across
    /// anything that could fault).
    lock: AtomicBool,
    /// Pages fetched by a fault since the last call into the process started (at most
    /// `BACK`): what the program reads after the answers, asked back with the next calls.
    faulted: super::PageList<BACK>,
    /// The one program thread that called into the process so far (a mark of its own), and
    /// whether a second one did: answers of concurrent calls could bring copies of one page
    /// taken at different moments, so pages are asked back only while one thread calls.
    caller: AtomicUsize,
    crowd: AtomicBool,
}

impl Peeked {
    fn lock(&self) -> PeekGuard<'_> {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, SeqCst, SeqCst)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // sched_yield: async-signal-safe, no lock.
                std::thread::yield_now();
            }
        }
        PeekGuard(self)
    }

    /// Maps a newly fetched page of module memory at `page` with the helper's bytes at `src`
    /// (snapshot `seq`) and its twin, as the list's next entry; false when the list is full or
    /// the page could not be mapped. `written`: fetched for a write; `sent_back`: it came with
    /// an answer. Under the list's lock.
    ///
    /// # Safety
    /// `page` is module memory (a slot or a module object's data, `owner_of`) not in the list;
    /// `src` is one readable page of a channel's data area.
    unsafe fn install(
        &self,
        page: u64,
        src: *const u8,
        seq: u64,
        written: bool,
        sent_back: bool,
    ) -> bool {
        let i = self.n.load(SeqCst);
        // SAFETY: `page` is module memory (contract), replaced by a page holding `src`'s bytes;
        // twin i of the pool (i < MAX_PEEKED) gets them too.
        unsafe {
            if i >= MAX_PEEKED || self.twins == 0 || !vm::put_page(page as usize, src) {
                return false;
            }
            std::ptr::copy_nonoverlapping(src, (self.twins + i * PAGE) as *mut u8, PAGE);
        }
        self.dirty[i].store(written, SeqCst);
        self.sent_back[i].store(sent_back, SeqCst);
        self.stale[i].store(false, SeqCst);
        self.seq[i].store(seq, SeqCst);
        self.pages[i].store(page, SeqCst);
        self.n.store(i + 1, SeqCst);
        true
    }

    fn find(&self, page: u64) -> Option<usize> {
        let n = self.n.load(SeqCst).min(MAX_PEEKED);
        self.pages[..n].iter().position(|s| s.load(SeqCst) == page)
    }
}

struct PeekGuard<'a>(&'a Peeked);

impl Drop for PeekGuard<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, SeqCst);
    }
}

/// Per process: (module data ranges [lo, hi) sorted, pages fetched since the last call).
struct State {
    data: Vec<(u64, u64, usize)>,
    peeked: Vec<Peeked>,
}

static STATE: OnceLock<State> = OnceLock::new();

/// Peeks in a row whose page came back older than the newest answer, before one is taken.
const MAX_PEEK_TRIES: u32 = 256;
/// Pages of module memory kept over a call, at most.
const MAX_KEPT: usize = 64;

thread_local! {
    /// Peeks of this thread in a row whose page came back older than the newest answer.
    static PEEK_TRIES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}
/// The program's own SIGSEGV action (installed before ours, or after it through the
/// interposed `sigaction`/`signal`): handler and flags, chained to for every other fault.
static PREV_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREV_FLAGS: AtomicI32 = AtomicI32::new(0);
/// Set once our handler is installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// In the program, once the zygote is forked: makes `data` (writable data of each on-demand
/// process's module objects: [lo, hi) and the process index) inaccessible and installs the
/// handler.
pub fn install(rt: &Runtime, mut data: Vec<(u64, u64, usize)>) {
    data.sort_unstable();
    let peeked = (0..rt.procs.len())
        .map(|_| Peeked {
            pages: (0..MAX_PEEKED).map(|_| AtomicU64::new(0)).collect(),
            dirty: (0..MAX_PEEKED).map(|_| AtomicBool::new(false)).collect(),
            sent_back: (0..MAX_PEEKED).map(|_| AtomicBool::new(false)).collect(),
            stale: (0..MAX_PEEKED).map(|_| AtomicBool::new(false)).collect(),
            seq: (0..MAX_PEEKED).map(|_| AtomicU64::new(0)).collect(),
            latest: AtomicU64::new(0),
            n: AtomicUsize::new(0),
            twins: vm::anonymous(MAX_PEEKED * PAGE).unwrap_or(0),
            lock: AtomicBool::new(false),
            faulted: super::PageList::new(),
            caller: AtomicUsize::new(0),
            crowd: AtomicBool::new(false),
        })
        .collect();
    for &(a, b, _) in &data {
        // SAFETY: the module's data: its functions all run in the helper now.
        unsafe { vm::protect_none(a as usize, b as usize) };
    }
    if STATE.set(State { data, peeked }).is_err() {
        return;
    }
    // Ours, the old one kept for chaining.
    let flags = libc::SA_NODEFER | libc::SA_ONSTACK;
    if let Some(old) = crate::platform::signal::set_handler(libc::SIGSEGV, on_segv, flags) {
        PREV_HANDLER.store(old.handler, SeqCst);
        PREV_FLAGS.store(old.flags, SeqCst);
        INSTALLED.store(true, SeqCst);
    }
}

/// The program is exiting: the module objects' data becomes the program's again, so that
/// their destructors, which the loader runs in the program too, find it (libexpat's, under
/// Debian's python3, crashed every `fracture run --isolate libexpat.so.1` at exit). What they
/// find is the program's own copy: the objects' state after their constructors, as no
/// mapped function ran here (pages fetched since and dropped read as zero).
pub fn give_back_module_data() {
    let Some(st) = STATE.get() else { return };
    for &(a, b, _) in &st.data {
        // SAFETY: the module's data, inaccessible only so that it is never read stale while
        // the helper owns it; the program's calls into it are over.
        unsafe { vm::protect_read_write(a as usize, b as usize) };
    }
}

/// The process whose module memory holds `addr`, and whether it is a module object's data.
fn owner_of(addr: u64) -> Option<(usize, bool)> {
    if let Some(k) = layout().and_then(|l| l.process_of(addr)) {
        return Some((k, false));
    }
    let st = STATE.get()?;
    let i = st.data.partition_point(|r| r.1 <= addr);
    st.data.get(i).filter(|r| r.0 <= addr).map(|r| (r.2, true))
}

/// Process `k`'s helper was replaced (a restart, a resumed checkpoint): the new one counts
/// its segments anew, and module memory fetched from the old one is not the new one's. Every
/// fetched page is dropped (what the program wrote there is lost with the helper) and the
/// numbers start over.
pub fn forget(k: usize) {
    let Some(p) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return;
    };
    let _g = p.lock();
    let n = p.n.load(SeqCst).min(MAX_PEEKED);
    for i in 0..n {
        p.dirty[i].store(false, SeqCst);
        p.stale[i].store(false, SeqCst);
        p.sent_back[i].store(false, SeqCst);
        p.seq[i].store(0, SeqCst);
        let page = p.pages[i].swap(0, SeqCst);
        if page != 0 {
            // SAFETY: a page of module memory we mapped; its helper is gone.
            unsafe { vm::drop_to_reservation(page as usize, page as usize + PAGE) };
        }
    }
    p.n.store(0, SeqCst);
    p.faulted.take();
    p.latest.store(0, SeqCst);
}

/// True when `addr` is module memory of some on-demand process (a slot of the reservation,
/// or a module object's data): only that process's helper may have it.
pub fn is_module_memory(addr: u64) -> bool {
    owner_of(addr).is_some()
}

/// A call into process `k` starts on this thread: true while it is the only program thread
/// that ever called into it (see `Peeked::caller`).
pub fn sole_caller(k: usize) -> bool {
    thread_local! { static MARK: u8 = const { 0 }; }
    let Some(p) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return false;
    };
    if p.crowd.load(SeqCst) {
        return false;
    }
    let me = MARK.with(|m| m as *const u8 as usize);
    match p.caller.compare_exchange(0, me, SeqCst, SeqCst) {
        Ok(_) => true,
        Err(c) if c == me => true,
        Err(_) => {
            p.crowd.store(true, SeqCst);
            false
        }
    }
}

/// The pages of process `k`'s module memory the program faulted in since its last call into
/// it started (at most `BACK`), and the list emptied.
pub fn take_faulted(k: usize) -> ([u64; BACK], usize) {
    let Some(p) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return ([0; BACK], 0);
    };
    let _g = p.lock();
    p.faulted.take()
}

/// Process `k`'s next call starts on channel `c`: the module pages the program wrote go back
/// to the helper first (the bytes that differ from the fetched copy), then every fetched page
/// is dropped (the module may change them during the call), except those its answer is to
/// bring (the returned value's last time, and `wanted`): kept, stale, refreshed in place.
pub fn before_call(k: usize, region: &Region, c: usize, wanted: &[u64]) {
    let Some(p) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return;
    };
    if p.n.load(SeqCst) == 0 {
        return;
    }
    let _g = p.lock();
    let n = p.n.load(SeqCst).min(MAX_PEEKED);
    for i in 0..n {
        if !p.dirty[i].load(SeqCst) && written(p, i) {
            p.dirty[i].store(true, SeqCst);
        }
    }
    if p.dirty[..n].iter().any(|d| d.load(SeqCst)) {
        send_writes(p, n, region, c);
    }
    // Pages that came with an answer (and were not written) stay, stale; the rest go.
    let mut j = 0;
    for i in 0..n {
        let page = p.pages[i].swap(0, SeqCst);
        // At most MAX_KEPT (a helper that says its snapshots are newer than any to come
        // could otherwise have the program keep pages until the list is full, and then fail
        // its reads of module memory).
        let keep = page != 0
            && j < MAX_KEPT
            && (p.sent_back[i].load(SeqCst) || wanted.contains(&page))
            && !p.dirty[i].load(SeqCst);
        p.dirty[i].store(false, SeqCst);
        p.sent_back[i].store(false, SeqCst);
        p.stale[i].store(false, SeqCst);
        if keep {
            if j != i {
                // SAFETY: twins i and j of the pool, distinct pages.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (p.twins + i * PAGE) as *const u8,
                        (p.twins + j * PAGE) as *mut u8,
                        PAGE,
                    )
                };
            }
            p.pages[j].store(page, SeqCst);
            // (An answer that does not bring it again drops it: it is older than the answer.
            // Dropping it here instead, while other threads read it, showed 1-19 stale reads
            // in 16 000 calls of `fx_od_prog slots`, for a cause not found yet: past MAX_KEPT
            // that path is still taken.)
            p.sent_back[j].store(true, SeqCst);
            p.stale[j].store(true, SeqCst);
            p.seq[j].store(p.seq[i].load(SeqCst), SeqCst);
            j += 1;
        } else if page != 0 {
            // SAFETY: a page of module memory we mapped in `peek`; nothing of the program's.
            unsafe { vm::drop_to_reservation(page as usize, page as usize + PAGE) };
        }
    }
    p.n.store(j, SeqCst);
}

/// The call into process `k` ended (or handed control to the program with a nested call)
/// without an answer to read: kept pages no answer refreshed are dropped.
pub fn drop_stale(k: usize) {
    drop_suspect(k, |p, i| p.stale[i].swap(false, SeqCst));
}

/// An answer of process `k` that ended its segment number `seq` was read: every page held from
/// an older snapshot may have changed in that segment and is dropped; newer ones stay.
pub fn answered(k: usize, seq: u64) {
    drop_suspect(k, |p, i| {
        p.stale[i].store(false, SeqCst);
        p.seq[i].load(SeqCst) < seq
    });
}

/// Drops the fetched pages of process `k` that `suspect` names (asked once per page, under the
/// list's lock), except those the program wrote: kept, their bytes go back before the next
/// call (another thread's call may have been in flight).
fn drop_suspect(k: usize, mut suspect: impl FnMut(&Peeked, usize) -> bool) {
    let Some(p) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return;
    };
    if p.n.load(SeqCst) == 0 {
        return;
    }
    let _g = p.lock();
    let n = p.n.load(SeqCst).min(MAX_PEEKED);
    for i in 0..n {
        if p.pages[i].load(SeqCst) == 0 || !suspect(p, i) {
            continue;
        }
        if written(p, i) {
            p.dirty[i].store(true, SeqCst);
            continue;
        }
        p.sent_back[i].store(false, SeqCst);
        let page = p.pages[i].swap(0, SeqCst);
        // SAFETY: a page of module memory we mapped; it may be stale now.
        unsafe { vm::drop_to_reservation(page as usize, page as usize + PAGE) };
    }
}

/// The answer with snapshot `seq` is about to be taken: false when a newer one was taken
/// already (its pages are then left out).
pub fn take_snapshot(k: usize, seq: u64) -> bool {
    STATE
        .get()
        .and_then(|s| s.peeked.get(k))
        .is_some_and(|p| p.latest.fetch_max(seq, SeqCst) <= seq)
}

/// True when fetched page `i` differs from its twin (the program wrote it).
fn written(p: &Peeked, i: usize) -> bool {
    let page = p.pages[i].load(SeqCst);
    if page == 0 {
        return false;
    }
    // SAFETY: page i is mapped (fetched; readable and writable) and its twin is page i of the
    // pool.
    unsafe {
        std::slice::from_raw_parts(page as *const u8, PAGE)
            != std::slice::from_raw_parts((p.twins + i * PAGE) as *const u8, PAGE)
    }
}

/// The program's writes to fetched module pages, as a write table to the helper.
fn send_writes(p: &Peeked, n: usize, region: &Region, c: usize) {
    let mut table: Vec<u8> = vec![0; 8];
    let mut entries: Vec<(u64, usize, usize)> = Vec::new();
    for i in 0..n {
        let page = p.pages[i].load(SeqCst);
        if page == 0 || !p.dirty[i].load(SeqCst) {
            continue;
        }
        // SAFETY: the page is mapped (fetched, made writable on the program's first write) and
        // its twin is page i of the twin pool.
        let (now, was) = unsafe {
            (
                std::slice::from_raw_parts(page as *const u8, PAGE),
                std::slice::from_raw_parts((p.twins + i * PAGE) as *const u8, PAGE),
            )
        };
        let mut w = 0;
        while w < PAGE {
            if now[w..w + 8] == was[w..w + 8] {
                w += 8;
                continue;
            }
            let start = w;
            while w < PAGE && now[w..w + 8] != was[w..w + 8] {
                w += 8;
            }
            entries.push((page, start, w - start));
        }
    }
    table[..8].copy_from_slice(&(entries.len() as u64).to_le_bytes());
    for &(page, off, len) in &entries {
        table.extend_from_slice(&(page + off as u64).to_le_bytes());
        table.extend_from_slice(&(len as u64).to_le_bytes());
    }
    for &(page, off, len) in &entries {
        // SAFETY: as above.
        let b = unsafe { std::slice::from_raw_parts((page as usize + off) as *const u8, len) };
        table.extend_from_slice(b);
    }
    if entries.is_empty() || table.len() as u64 > super::AREA {
        if !entries.is_empty() {
            warn!("module memory the program wrote does not fit one message: its writes are lost");
        }
        return;
    }
    // SAFETY: the table fits the page area (checked above); the channel is ours.
    unsafe {
        std::ptr::copy_nonoverlapping(
            table.as_ptr(),
            region.data(c).add(AREA_BASE as usize),
            table.len(),
        )
    };
    let mut m: Msg = Msg::zeroed();
    m.kind = crate::transport::region::MSG_WRITES;
    m.pages_off = AREA_BASE;
    m.pages_len = table.len() as u64;
    round_trip(region, c, &m, || false);
}

/// Fetches the page of module memory at `addr` from its helper (or makes a fetched one
/// writable: `write`). False: not module memory, or the helper does not have it.
fn peek(addr: u64, write: bool) -> bool {
    let Some((k, _)) = owner_of(addr) else {
        return false;
    };
    let Some(rt) = runtime::get() else {
        return false;
    };
    let Some(p) = rt.procs.get(k) else {
        return false;
    };
    let Some(peeked) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return false;
    };
    let page = addr & !(P - 1);
    {
        let _g = peeked.lock();
        if peeked.find(page).is_some() {
            // A page another thread just mapped (fetched pages are readable and writable):
            // run again.
            return true;
        }
        if p.pid.load(SeqCst) <= 0 || peeked.n.load(SeqCst) >= MAX_PEEKED || peeked.twins == 0 {
            return false;
        }
    }
    let c = super::super::channels::acquire(p);
    let mut m = Msg::zeroed();
    m.kind = MSG_PEEK;
    m.gp[0] = page;
    let answer = round_trip(&p.region, c, &m, || {
        super::super::channels::known_dead(p).is_some()
    })
    .filter(|r| r.ret_rax == 1);
    let ok = answer.is_some();
    let snapshot = answer.map_or(0, |r| r.ret_rdx);
    // A page read before the newest answer the program took may be older than that answer's
    // segment: asked anew (the access faults again), up to MAX_PEEK_TRIES times in a row; then
    // taken as it is, so that a helper that lies about its numbers cannot keep the program
    // asking for ever.
    // (Checked under the lock `answered` takes: an answer taken after the check drops pages
    // older than it after this one is in.)
    let _g = peeked.lock();
    let too_old = snapshot < peeked.latest.load(SeqCst);
    let fresh_enough = !too_old
        || PEEK_TRIES.with(|t| {
            let n = t.get() + 1;
            t.set(if n >= MAX_PEEK_TRIES { 0 } else { n });
            n >= MAX_PEEK_TRIES
        });
    if !too_old {
        PEEK_TRIES.with(|t| t.set(0));
    }
    let src = p.region.data(c).wrapping_add(AREA_BASE as usize);
    let take = ok && fresh_enough && peeked.find(page).is_none();
    // SAFETY: module memory (`owner_of` above), not in the list (checked under this lock);
    // the answer's page lies at AREA_BASE of the channel, ours until released below.
    if take && unsafe { peeked.install(page, src, snapshot, write, false) } {
        peeked.faulted.push(page);
        if let Some(g) = crate::observe::stats::PAGES.get(k) {
            g.peeked.fetch_add(1, SeqCst);
            g.faulted.fetch_add(1, SeqCst);
        }
    }
    super::super::channels::release(p, c);
    ok
}

/// The helper sent the page of module memory `page` (of process `k`) with an answer, its
/// bytes at `src`, taken as its snapshot `seq`: mapped as a fetched page, or the page the
/// program has refreshed when the snapshot is newer than the one it holds (and the program did
/// not write it meanwhile).
pub fn adopt(k: usize, page: u64, src: *const u8, seq: u64) {
    if owner_of(page).map(|o| o.0) != Some(k) {
        return;
    }
    let Some(peeked) = STATE.get().and_then(|s| s.peeked.get(k)) else {
        return;
    };
    let _g = peeked.lock();
    // A newer answer was taken meanwhile (by another thread): this one's pages may be older
    // than its segment (checked under the lock `answered` takes too).
    if seq < peeked.latest.load(SeqCst) {
        return;
    }
    if let Some(i) = peeked.find(page) {
        if seq > peeked.seq[i].load(SeqCst) {
            if written(peeked, i) {
                peeked.dirty[i].store(true, SeqCst);
                return;
            }
            // SAFETY: our page of module memory (mapped writable), refreshed with the helper's
            // bytes (`src`, one page of the data area); its twin is slot i of the pool.
            unsafe {
                std::ptr::copy_nonoverlapping(src, page as *mut u8, PAGE);
                std::ptr::copy_nonoverlapping(src, (peeked.twins + i * PAGE) as *mut u8, PAGE);
            }
            peeked.seq[i].store(seq, SeqCst);
            peeked.stale[i].store(false, SeqCst);
            peeked.sent_back[i].store(true, SeqCst);
        }
        return;
    }
    // SAFETY: module memory (`owner_of` above), not in the list (`find` under this lock);
    // `src` is one page of the channel's data area (the caller checked).
    if unsafe { peeked.install(page, src, seq, false, true) } {
        if let Some(g) = crate::observe::stats::PAGES.get(k) {
            g.peeked.fetch_add(1, SeqCst);
        }
    }
}

/// One round trip of `m` from the program on channel `c`: the answer (None: no MSG_RETURN).
fn round_trip(region: &Region, c: usize, m: &Msg, dead: impl Fn() -> bool) -> Option<Msg> {
    let ch = region.channel(c);
    let recv = ch.to_prog();
    // SYNC POINT: the answer bumps `to_prog_seq` past this value.
    let seen = recv.seq.load(SeqCst);
    ch.write_msg(m);
    ch.to_helper().post();
    if ch.served.load(SeqCst) == 0 {
        crate::transport::region::ring(&region.header().doorbell);
    }
    let t0 = Instant::now();
    // A serving thread the last call on this channel brought to our CPU needs the CPU to
    // answer: no spinning then.
    let spin = if ch.last_hint.load(SeqCst) != 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(50)
    };
    recv.wait(seen, spin, false, Duration::from_millis(20), || {
        dead() || t0.elapsed() > Duration::from_secs(10)
    })?;
    let r = ch.read_reply();
    (r.kind == MSG_RETURN).then_some(r)
}

/// The program's SIGSEGV handler while some process is on demand.
extern "C" fn on_segv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if !info.is_null() {
        // SAFETY: the kernel's siginfo of a SIGSEGV.
        let addr = unsafe { (*info).si_addr() } as u64;
        // Bit 1 of the page-fault error code: a write.
        let write = !ctx.is_null()
            // SAFETY: the kernel's ucontext of this signal.
            && unsafe { (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize] }
                & 2
                != 0;
        if peek(addr, write) {
            return;
        }
    }
    chain(sig, info, ctx);
}

/// Hands the fault to the program's own handler (as the kernel would have).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let h = PREV_HANDLER.load(SeqCst);
    let flags = PREV_FLAGS.load(SeqCst);
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        return default(sig);
    }
    if flags & libc::SA_RESETHAND != 0 {
        // As the kernel does before running a one-shot handler.
        PREV_HANDLER.store(libc::SIG_DFL, SeqCst);
    }
    // SAFETY: the program's handler, called as the kernel would call it.
    unsafe {
        if flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
}

/// The interposed `sigaction`: while our handler serves module pages, the program's SIGSEGV
/// action becomes the one ours chains to (reported back as the current one), and ours stays
/// installed. Everything else goes to glibc.
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe fn sigaction_hook(
    sig: libc::c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> libc::c_int {
    if sig != libc::SIGSEGV || !INSTALLED.load(SeqCst) {
        // SAFETY: forwarded contract.
        return unsafe { crate::platform::loader::real_sigaction(sig, act, old) };
    }
    // SAFETY: `old` and `act` are NULL or valid (contract).
    unsafe {
        if !old.is_null() {
            let mut cur: libc::sigaction = std::mem::zeroed();
            cur.sa_sigaction = PREV_HANDLER.load(SeqCst);
            cur.sa_flags = PREV_FLAGS.load(SeqCst);
            *old = cur;
        }
        if let Some(a) = act.as_ref() {
            PREV_FLAGS.store(a.sa_flags, SeqCst);
            PREV_HANDLER.store(a.sa_sigaction, SeqCst);
        }
    }
    0
}

/// The interposed `signal`, as [`sigaction_hook`].
///
/// # Safety
/// As `signal(2)`.
pub unsafe fn signal_hook(sig: libc::c_int, h: libc::sighandler_t) -> libc::sighandler_t {
    if sig != libc::SIGSEGV || !INSTALLED.load(SeqCst) {
        // SAFETY: forwarded contract.
        return unsafe { crate::platform::loader::real_signal(sig, h) };
    }
    PREV_FLAGS.store(libc::SA_RESTART, SeqCst);
    PREV_HANDLER.swap(h, SeqCst)
}

/// Restores the default action: returning re-runs the faulting instruction, which kills.
fn default(sig: libc::c_int) {
    crate::platform::signal::set_default(sig);
}

/// The helper's side: answers MSG_PEEK on channel `c` with its own page (only memory it
/// owns; an unmapped page is an error, not a fault).
pub fn serve_peek(region: &Region, c: usize, m: &Msg) -> Msg {
    let mut r = Msg::zeroed();
    r.kind = MSG_RETURN;
    let page = m.gp[0];
    let owned = super::helper::owned();
    if !page.is_multiple_of(P) || !owned.is_some_and(|o| in_ranges(o, page)) {
        return r;
    }
    // SAFETY: one page at AREA_BASE lies inside the channel's data area, ours while the
    // program waits.
    let dst =
        unsafe { std::slice::from_raw_parts_mut(region.data(c).add(AREA_BASE as usize), PAGE) };
    // The segments finished before the read: what a later answer must be newer than.
    r.ret_rdx = super::helper::snapshot();
    r.ret_rax = vm::read_pages(&[page], dst) & 1;
    r
}

/// The helper's side: applies the program's writes to module memory it had fetched
/// (`MSG_WRITES` from the program, before its next call), only inside memory the helper owns.
pub fn serve_writes(region: &Region, c: usize, m: &Msg) -> Msg {
    let mut r = Msg::zeroed();
    r.kind = MSG_RETURN;
    let Some(owned) = super::helper::owned() else {
        return r;
    };
    let ok = m.pages_off == AREA_BASE && m.pages_len <= super::AREA;
    if !ok {
        return r;
    }
    // SAFETY: the table lies in the page area (checked above); the program wrote it and waits.
    let table = unsafe {
        std::slice::from_raw_parts(region.data(c).add(AREA_BASE as usize), m.pages_len as usize)
    };
    if let Some(writes) = super::parse_writes(table) {
        for (addr, bytes) in writes {
            if in_ranges(owned, addr) && vm::write_own(addr, bytes) {
                r.ret_rax += 1;
            }
        }
    }
    r
}
