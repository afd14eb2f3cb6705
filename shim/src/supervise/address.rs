//! Who owns an address under `memory: on-demand` (see `call::pages` for the rule): the
//! reservation for module memory and the heap's ballast in the program before the zygote is
//! forked, the reservations and the own stack of the zygote, and the reservations, the own
//! slot and the inaccessible program data of each helper.
//!
//! # Safety
//! Runs before `main` in the program (single-threaded) and in freshly forked children; every
//! range it replaces or unmaps is one it reserved itself or a program range the helper never
//! uses (it runs on a stack of its own, made here).

#![allow(unsafe_code)]

use crate::call::pages::{self, helper::set_owned, Layout, SLOT};
use crate::plan::runtime::Runtime;
use crate::platform::vm::{self, Mapping};
use module_map::Memory;

/// True when some process of the map fetches the program's memory on demand.
pub fn wanted(rt: &Runtime) -> bool {
    rt.procs.iter().any(|p| p.spec.memory == Memory::OnDemand)
}

/// In the program, before the zygote is forked: reserves module memory (inaccessible here
/// for good) and uses up the heap's free space, so the program's later allocations land in
/// ranges a helper sees as the program's.
pub fn prepare_program(rt: &Runtime) -> Result<(), String> {
    if !wanted(rt) {
        return Ok(());
    }
    for (k, p) in rt.procs.iter().enumerate() {
        pages::program::register(k, p.region.key(), p.spec.memory == Memory::OnDemand);
    }
    let slots = rt.procs.len() as u64 + 1;
    let base = vm::reserve((slots * SLOT) as usize)
        .ok_or("memory: on-demand: cannot reserve address space for module memory")?;
    pages::set_layout(Layout {
        base: base as u64,
        slot: SLOT,
        slots,
    });
    ballast();
    Ok(())
}

/// In the program, when start-up is done and before `main`: the memory fracture's own
/// start-up freed after the fork lies in the heap a helper sees as its own; it is used up too.
pub fn after_start(rt: &Runtime) {
    if !wanted(rt) || pages::layout().is_none() {
        return;
    }
    ballast();
    // The writable data of the on-demand processes' module objects (loaded before the fork):
    // the helper's now; the program reads it from there.
    let maps = Mapping::read_all();
    let mut data: Vec<(u64, u64, usize)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for f in &rt.fns {
        let Some(k) = f.owner.process() else {
            continue;
        };
        let real = f.real.load(std::sync::atomic::Ordering::Acquire);
        if rt
            .procs
            .get(k)
            .is_none_or(|p| p.spec.memory != Memory::OnDemand)
            || real == 0
        {
            continue;
        }
        let Some(path) = crate::platform::sys::dladdr(real)
            .and_then(|o| o.path)
            .map(|p| p.to_string_lossy().into_owned())
        else {
            continue;
        };
        let path = std::fs::canonicalize(&path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or(path);
        if seen.contains(&path) {
            continue;
        }
        seen.push(path.clone());
        let mut data_end = 0;
        for m in &maps {
            let own = m.write && !m.shared && m.path == path;
            let bss = m.write && m.path.is_empty() && m.start == data_end;
            if own {
                data_end = m.end;
            }
            if own || bss {
                data.push((m.start as u64, m.end as u64, k));
            }
        }
    }
    debug!(
        "on-demand: {} ranges of module data are the helpers' now",
        data.len()
    );
    pages::peek::install(rt, data);
}

/// Allocates, and never frees, the free chunks of the heap and its top, so that no later
/// allocation of the program's reuses memory a helper inherited as its own.
fn ballast() {
    // SAFETY: plain malloc calls in the program before main (single-threaded); the blocks are
    // leaked on purpose; mallinfo2 and sbrk(0) only read the allocator's state.
    unsafe {
        // A large request merges the fast bins into the others (malloc_consolidate).
        keep(libc::malloc(2000));
        // This thread's cache: seven chunks per small size class.
        for size in (24..=1032).step_by(16) {
            for _ in 0..7 {
                keep(libc::malloc(size));
            }
        }
        // Every free chunk below the top, cut into small pieces: a piece that comes from the
        // top says the bins are empty.
        let top_start = |mi: &libc::mallinfo2| (libc::sbrk(0) as usize).saturating_sub(mi.keepcost);
        let limit = top_start(&libc::mallinfo2());
        for _ in 0..200_000 {
            let p = keep(libc::malloc(16)) as usize;
            if p == 0 || p >= limit {
                break;
            }
        }
        // The top itself.
        for _ in 0..64 {
            let mi = libc::mallinfo2();
            if mi.keepcost < 4096 {
                break;
            }
            keep(libc::malloc((mi.keepcost - 64).min(64 << 10)));
        }
        let mi = libc::mallinfo2();
        debug!(
            "on-demand: heap ballast done: {} bytes free in bins, {} at the top",
            mi.fordblks.saturating_sub(mi.keepcost),
            mi.keepcost
        );
    }
}

/// A block kept for good (the compiler must not elide an allocation nobody reads).
fn keep(p: *mut libc::c_void) -> *mut libc::c_void {
    std::hint::black_box(p)
}

/// Reserves every free range but `keep` (inaccessible, no memory behind it), a few rounds
/// since reading the maps allocates.
fn fill_gaps(keep: (u64, u64)) {
    for _ in 0..4 {
        let maps = Mapping::read_all();
        let mut filled = 0;
        for (a, b) in vm::gaps(&maps) {
            let (a, b) = (a as u64, b as u64);
            // The part of the gap outside `keep`.
            for (x, y) in [(a, b.min(keep.0)), (a.max(keep.1), b)] {
                if x < y && vm::reserve_free(x as usize, y as usize) {
                    filled += 1;
                }
            }
        }
        if filled == 0 {
            break;
        }
    }
}

/// In the zygote, first thing: its own growth goes to slot 0, every other free range is
/// reserved (the program's to come). Returns the top of a new stack for the zygote (None: not
/// on demand).
pub fn zygote_side() -> Option<usize> {
    let l = pages::layout()?;
    let (a, b) = l.slot_range(0);
    // SAFETY: our own reservation, unused so far.
    unsafe { vm::unmap(a as usize, b as usize) };
    fill_gaps((a, b));
    const STACK: usize = 8 << 20;
    let s = vm::anonymous(STACK)?;
    Some(s + STACK)
}

/// In a helper of process `k`, right after it left the other regions: its growth goes to its
/// own slot; every free range is reserved (the program's); returns the inherited ranges that
/// are the program's, to be made inaccessible before the first call ([`protect`]).
pub fn helper_side(k: usize) -> Option<Vec<(u64, u64)>> {
    let l = pages::layout()?;
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let maps = Mapping::read_all();
    let (lo, hi) = l.range();
    let mut owned = vec![(lo, hi)];
    let mut programs = Vec::new();
    let mut exe_data_end = 0;
    for m in &maps {
        let (a, b) = (m.start as u64, m.end as u64);
        if a >= lo && b <= hi {
            continue;
        }
        let exe_data = m.write && !m.shared && m.path == exe;
        // The executable's .bss beyond its file: the anonymous mapping right after its data.
        let exe_bss = m.write && m.path.is_empty() && m.start == exe_data_end;
        if exe_data {
            exe_data_end = m.end;
        }
        // The zygote's reservations: the program's, not inherited data.
        let window = !m.read && !m.write && !m.exec && m.path.is_empty();
        if window {
            continue;
        }
        if exe_data || exe_bss || m.path == "[stack]" {
            programs.push((a, b));
        } else {
            owned.push((a, b));
        }
    }
    // A non-PIE executable's GOT lies in its writable data (no full RELRO): every call
    // through its PLT, and every function whose address it took (glibc's `free`, resolved to
    // the executable's PLT stub as the canonical address, called by this very shim), reads a
    // slot there. Those pages stay the helper's inherited copy (the same libraries are loaded
    // on both sides); Debian's python3 helper died on its first `free` otherwise.
    let programs = without_pages(programs, &executable_got_pages());
    if let Some(h) = maps.iter().find(|m| m.path == "[heap]") {
        debug!(
            "on-demand: heap before the fork {:#x}-{:#x} (the helper's); {} program ranges inherited",
            h.start,
            h.end,
            programs.len()
        );
    }
    // The program's code that the module calls (a function pointer it was given) runs here,
    // and may print: unbuffered, so its output keeps its place among the program's.
    crate::platform::sys::stdout_unbuffered();
    let (a, b) = l.slot_range(k as u64 + 1);
    // SAFETY: our own reservation, unused in this helper so far.
    unsafe { vm::unmap(a as usize, b as usize) };
    fill_gaps((a, b));
    set_owned(owned);
    Some(programs)
}

/// The pages holding the executable's GOT slots (its imports' JUMP_SLOT and GLOB_DAT words),
/// sorted.
fn executable_got_pages() -> Vec<u64> {
    let objs = crate::platform::got::loaded_objects();
    let mut pages = Vec::new();
    if let Some(exe) = objs.first() {
        exe.for_each_import(|slot, _, _| pages.push(slot as u64 & !(vm::PAGE as u64 - 1)));
    }
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// `ranges` less the pages `pages` (sorted), each range split around them.
fn without_pages(ranges: Vec<(u64, u64)>, pages: &[u64]) -> Vec<(u64, u64)> {
    let p = vm::PAGE as u64;
    let mut out = Vec::new();
    for (a, b) in ranges {
        let mut at = a;
        for &pg in pages.iter().filter(|&&pg| pg + p > a && pg < b) {
            if pg > at {
                out.push((at, pg));
            }
            at = at.max(pg + p);
        }
        if at < b {
            out.push((at, b));
        }
    }
    out
}

/// Makes the program's inherited ranges inaccessible in the helper: from now on a touch
/// fetches the program's page.
pub fn protect(ranges: &[(u64, u64)]) {
    for &(a, b) in ranges {
        // SAFETY: program data the helper's own code never uses (its threads run on stacks
        // of their own; the main thread on the zygote's).
        unsafe { vm::protect_none(a as usize, b as usize) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_are_split_around_the_pages_taken_out() {
        let r = super::without_pages(
            vec![(0x1000, 0x6000), (0x9000, 0xa000)],
            &[0x2000, 0x3000, 0x9000],
        );
        assert_eq!(r, vec![(0x1000, 0x2000), (0x4000, 0x6000)]);
        assert_eq!(
            super::without_pages(vec![(0x1000, 0x3000)], &[]),
            vec![(0x1000, 0x3000)]
        );
    }
}
