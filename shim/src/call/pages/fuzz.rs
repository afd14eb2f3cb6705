//! The fetch protocol of `memory: on-demand`, fuzzed: a hostile peer thread plays the helper of
//! an on-demand process on a real region and answers each of the program's calls with a random
//! sequence of page requests (pages the call sent ahead, pages it may ask for, a page of the
//! queue itself, unmapped, unaligned and kernel addresses), write tables (well formed or not,
//! aimed at pages it was given and at one it never asked for), and a random end (an answer
//! with or without a write table, a failure, garbage, silence).
//!
//! Checked after every call: no panic, the call returned by its deadline, the queue's page and
//! unmapped pages were never served, a page the peer never asked for was never written, and a
//! page it was given changed only when the call ended well. `FRACTURE_FUZZ_ITERS` sets the
//! number of calls (default 4 000).
//!
//! # Safety
//! A test: the peer writes the region the test created, through the transport's layout; the
//! three pages under test are the test's own mappings.

#![allow(unsafe_code)]

use super::{AREA_BASE, PER_REQUEST};
use crate::call::dispatch::client_call;
use crate::call::marshal::Walk;
use crate::plan::runtime::{self, Runtime};
use crate::platform::abi::Frame;
use crate::platform::vm::{self, PAGE};
use crate::transport::region::{
    Msg, Region, DATA_SIZE, MSG_FAIL, MSG_PAGES, MSG_RETURN, MSG_WRITES,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

const MAP: &str = "modules:\n  m:\n    object: libfuzz.so\n    functions:\n      f: {}\nprocesses:\n  p:\n    modules: [m]\n    memory: on-demand\n";

fn rng(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// What the test and the peer share.
struct Shared {
    region: Region,
    /// Sent ahead (gp[0]), may be requested, never requested.
    a: u64,
    b: u64,
    c: u64,
    unmapped: u64,
    round: AtomicU64,
    finished: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    /// This round: B was served to the peer; a forbidden page was served.
    b_served: AtomicBool,
    leak: AtomicBool,
}

fn write_area(region: &Region, at: u64, bytes: &[u8]) {
    let n = bytes.len().min(DATA_SIZE - at as usize);
    // SAFETY: [at, at + n) lies inside channel 0's data area.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.data(0).add(at as usize), n) };
}

/// A write table; `lie` damages it.
fn table(entries: &[(u64, Vec<u8>)], lie: u64) -> Vec<u8> {
    let mut t = (entries.len() as u64).to_le_bytes().to_vec();
    for (a, b) in entries {
        t.extend_from_slice(&a.to_le_bytes());
        t.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    for (_, b) in entries {
        t.extend_from_slice(b);
    }
    match lie % 6 {
        1 => t[..8].copy_from_slice(&(lie >> 8).to_le_bytes()),
        2 => t.truncate(t.len() / 2),
        3 if t.len() > 24 => t[16..24].copy_from_slice(&(lie >> 4).to_le_bytes()),
        _ => {}
    }
    t
}

/// Sends `m` as the helper and waits for the program's answer (None: the round moved on).
fn ask(sh: &Shared, m: &Msg, round: u64) -> Option<Msg> {
    let ch = sh.region.channel(0);
    let seen = ch.to_helper_seq.load(SeqCst);
    ch.write_msg(m);
    ch.to_prog().post();
    loop {
        if ch.to_helper_seq.load(SeqCst) != seen {
            return Some(ch.read_msg());
        }
        if sh.finished.load(SeqCst) >= round || sh.stop.load(SeqCst) {
            return None;
        }
        std::hint::spin_loop();
    }
}

fn peer(sh: &Shared) {
    let ch = sh.region.channel(0);
    let mut seen = ch.to_helper_seq.load(SeqCst);
    loop {
        let round = loop {
            if sh.stop.load(SeqCst) {
                return;
            }
            let r = sh.round.load(SeqCst);
            if r > sh.done.load(SeqCst) {
                break r;
            }
            std::hint::spin_loop();
        };
        // The program's call.
        loop {
            if ch.to_helper_seq.load(SeqCst) != seen || sh.finished.load(SeqCst) >= round {
                break;
            }
            std::hint::spin_loop();
        }
        let got = ch.to_helper_seq.load(SeqCst) != seen;
        // Pages the call sent ahead (its registers', and those the last call fetched: B when
        // the peer asked for it before) are served too.
        let call = ch.read_msg();
        if got && call.kind == crate::transport::region::MSG_CALL && call.pages_len > 0 {
            let words = sh.region.data(0).wrapping_add(AREA_BASE as usize) as *const u64;
            // SAFETY: the table's words lie in the area's first page.
            let n = unsafe { std::ptr::read_volatile(words) }.min(super::AHEAD as u64);
            for i in 0..n as usize {
                // SAFETY: as above.
                let a = unsafe { std::ptr::read_volatile(words.add(1 + i)) };
                if a == sh.b {
                    sh.b_served.store(true, SeqCst);
                } else if a != 0 && a != sh.a {
                    sh.leak.store(true, SeqCst);
                }
            }
        }
        let mut st = round.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let kernel = 0xffff_8000_0000_0000u64;
        let queue = sh.region.key() as u64 + 4096;
        'act: for _ in 0..(rng(&mut st) % 5) {
            let mut m = Msg::zeroed();
            if rng(&mut st).is_multiple_of(2) {
                let pool = [sh.a, sh.b, queue, sh.unmapped, kernel, sh.a + 5, 0];
                let n = 1 + (rng(&mut st) as usize % PER_REQUEST);
                m.kind = MSG_PAGES;
                m.nargs = if rng(&mut st).is_multiple_of(8) {
                    u32::MAX
                } else {
                    n as u32
                };
                for g in m.gp.iter_mut().take(n) {
                    *g = pool[rng(&mut st) as usize % pool.len()];
                }
                let Some(r) = ask(sh, &m, round) else {
                    break 'act;
                };
                for (i, &g) in m.gp.iter().take(n).enumerate() {
                    if r.ret_rax & (1 << i) != 0 {
                        if g == sh.b {
                            sh.b_served.store(true, SeqCst);
                        } else if g != sh.a {
                            sh.leak.store(true, SeqCst);
                        }
                    }
                }
            } else {
                let targets = [sh.a, sh.b, sh.c, sh.a + 4090, sh.unmapped];
                let k = 1 + rng(&mut st) % 3;
                let entries: Vec<(u64, Vec<u8>)> = (0..k)
                    .map(|_| {
                        let t = targets[rng(&mut st) as usize % targets.len()];
                        (
                            t + rng(&mut st) % 64,
                            vec![b'W'; 1 + (rng(&mut st) % 32) as usize],
                        )
                    })
                    .collect();
                let t = table(&entries, rng(&mut st));
                write_area(&sh.region, AREA_BASE, &t);
                m.kind = MSG_WRITES;
                m.pages_off = if rng(&mut st).is_multiple_of(9) {
                    rng(&mut st)
                } else {
                    AREA_BASE
                };
                m.pages_len = t.len() as u64;
                if ask(sh, &m, round).is_none() {
                    break 'act;
                }
            }
        }
        // The end of the call.
        let mut m = Msg::zeroed();
        match rng(&mut st) % 12 {
            0 => m.kind = MSG_FAIL,
            1 => m.kind = 99,
            2 => {
                // Silence: the program's deadline ends the call.
                seen = ch.to_helper_seq.load(SeqCst);
                sh.done.store(round, SeqCst);
                continue;
            }
            _ => {
                m.kind = MSG_RETURN;
                if rng(&mut st).is_multiple_of(2) {
                    let t = [sh.a, sh.b, sh.c][rng(&mut st) as usize % 3];
                    let tb = table(&[(t + 8, vec![b'R'; 16])], rng(&mut st));
                    write_area(&sh.region, AREA_BASE, &tb);
                    m.pages_off = AREA_BASE;
                    m.pages_len = tb.len() as u64;
                }
                if rng(&mut st).is_multiple_of(3) {
                    // A block of "module pages" sent back: the program's own pages, the
                    // queue, a kernel address, a count past the block, lengths that do not fit.
                    let off = AREA_BASE + PAGE as u64 * (rng(&mut st) % 1100);
                    let pool = [sh.a, sh.b, sh.c, queue, kernel, sh.unmapped, 0];
                    let mut head = vec![rng(&mut st) % 12];
                    head.extend((0..10).map(|_| pool[rng(&mut st) as usize % pool.len()]));
                    let bytes: Vec<u8> = head.iter().flat_map(|w| w.to_le_bytes()).collect();
                    if off + PAGE as u64 <= crate::transport::region::DATA_SIZE as u64 {
                        write_area(&sh.region, off, &bytes);
                    }
                    m.mirror_off = if rng(&mut st).is_multiple_of(7) {
                        rng(&mut st)
                    } else {
                        off
                    };
                    m.mirror_len = PAGE as u64 * (rng(&mut st) % 12) + rng(&mut st) % 2;
                }
            }
        }
        if sh.finished.load(SeqCst) < round {
            ch.write_msg(&m);
            ch.to_prog().post();
        }
        // The program's answers moved the sequence; its next call comes after `done`.
        seen = ch.to_helper_seq.load(SeqCst);
        sh.done.store(round, SeqCst);
    }
}

#[test]
fn hostile_page_traffic_never_leaks_a_forbidden_page_or_writes_outside_what_was_served() {
    crate::observe::log::set_level(0);
    let iters: u64 = std::env::var("FRACTURE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000);
    let map = module_map::parse_map_str(MAP, std::path::Path::new("od-fuzz.yaml"), &[]).unwrap();
    let rt: &'static Runtime = Box::leak(Box::new(
        runtime::build(map, "od-fuzz.yaml".into(), "fuzz".into(), false).unwrap(),
    ));
    super::program::register(0, rt.procs[0].region.key(), true);
    let pages = vm::anonymous(4 * PAGE).unwrap() as u64;
    let sh: &'static Shared = Box::leak(Box::new(Shared {
        region: rt.procs[0].region,
        a: pages,
        b: pages + PAGE as u64,
        c: pages + 2 * PAGE as u64,
        unmapped: pages + 3 * PAGE as u64,
        round: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        b_served: AtomicBool::new(false),
        leak: AtomicBool::new(false),
    }));
    // SAFETY: the fourth page of our own mapping becomes unmapped.
    unsafe { vm::unmap(sh.unmapped as usize, sh.unmapped as usize + PAGE) };
    let page = |a: u64| {
        // SAFETY: one of the three pages of our mapping.
        unsafe { std::slice::from_raw_parts_mut(a as *mut u8, PAGE) }
    };
    let t = std::thread::spawn(|| peer(sh));
    let f = &rt.fns[0];
    let (mut ok, mut failed, mut changed) = (0u64, 0u64, 0u64);
    for round in 1..=iters {
        for (a, fill) in [(sh.a, b'a'), (sh.b, b'b'), (sh.c, b'c')] {
            page(a).fill(fill);
        }
        sh.b_served.store(false, SeqCst);
        let mut frame = Frame::default();
        frame.gp[0] = sh.a + 100;
        let walk = Walk::of(f, &frame);
        let deadline = Instant::now() + Duration::from_millis(2);
        let stop = || Instant::now() >= deadline;
        sh.round.store(round, SeqCst);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            client_call(rt, f, &sh.region, 0, 0, &mut frame, &walk, true, &stop)
        }));
        sh.finished.store(round, SeqCst);
        while sh.done.load(SeqCst) < round {
            std::hint::spin_loop();
        }
        let good = match r {
            Err(_) => panic!("round {round}: the program panicked"),
            Ok(Ok(_)) => {
                ok += 1;
                true
            }
            Ok(Err(_)) => {
                failed += 1;
                false
            }
        };
        assert!(
            !sh.leak.load(SeqCst),
            "round {round}: a forbidden page was served"
        );
        assert!(
            page(sh.c).iter().all(|&x| x == b'c'),
            "round {round}: a page never asked for was written"
        );
        let a_same = page(sh.a).iter().all(|&x| x == b'a');
        let b_same = page(sh.b).iter().all(|&x| x == b'b');
        assert!(good || a_same, "round {round}: a failed call wrote back");
        assert!(
            b_same || (good && sh.b_served.load(SeqCst)),
            "round {round}: a page written without being served in this call"
        );
        changed += u64::from(!a_same || !b_same);
        assert!(
            deadline.elapsed() < Duration::from_secs(5),
            "round {round}: hung"
        );
    }
    sh.stop.store(true, SeqCst);
    t.join().unwrap();
    eprintln!("page fuzzer: {iters} calls: {ok} answered ({changed} wrote back), {failed} failed");
    assert!(
        ok > 0 && failed > 0 && changed > 0,
        "both outcomes and real write-backs exercised"
    );
}
