//! The helper -> program path, fuzzed: a hostile peer thread answers the program's calls on a
//! real region (one memfd, one process) with replies built by `arbitrary` from a seeded PRNG:
//! answers with any offsets and lengths, nested calls of any function with any buffer table,
//! stack count and data window, garbage kinds, and scribbling over the message slot and the
//! data area while the program reads them. The program's side is the real code
//! (`client_post`/`client_wait`, and `serve` for the nested calls, which runs real functions
//! of the program's on private copies).
//!
//! Checked after every call: no panic, the call returned (the peer cannot hold it past its
//! deadline), and nothing was written outside the caller's declared out-buffers (guard bytes
//! around each of them). `FRACTURE_FUZZ_ITERS` sets the number of hostile replies (default
//! 100 000; 1 000 000 and more for a longer run), `FRACTURE_FUZZ_SEED` the seed.
//!
//! Raw pointers here are the test's own buffers and the region's mapping.
//!
//! # Safety
//! A test: the hostile peer writes into a region the test created, through the same layout the
//! transport asserts.

#![allow(unsafe_code)]

use crate::call::dispatch::client_call;
use crate::call::flat::{self, Flat};
use crate::call::marshal::Walk;
use crate::plan::runtime::{self, Runtime};
use crate::platform::abi::Frame;
use crate::transport::region::{self, Region, DATA_SIZE, MSG_CALL, MSG_FAIL, MSG_RETURN, NULL_OFF};
use arbitrary::{Arbitrary, Unstructured};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

const MAP: &str = r#"
modules:
  m:
    object: libfuzz.so
    functions:
      f_str:    {args: ["out:16", str, "in:arg3", val], ret: str}
      f_handle: {args: [handle, "inout:*arg2", "inout:8"], ret: handle}
      f_cb:     {args: ["cb:visit"]}
      f_flat:   {args: [val, val], effect: pure}
    callbacks:
      visit:    {args: [val, "strv:arg0", strv, "out:arg0"]}
  host:
    object: main
    functions:
      host_fill: {args: ["out:arg1", val]}
      host_slen: {args: [str]}
      host_need: {args: ["out:*arg1", "inout:8"]}
      host_strv: {args: [str, "in:16", "out:arg3", val], ret: str}
processes:
  p: {modules: [m]}
"#;

extern "C" fn host_fill(buf: *mut u8, n: u64) -> u64 {
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the spec says buf holds n bytes; the program sized the copy from it.
    unsafe { std::ptr::write_bytes(buf, b'H', n as usize) };
    n
}

extern "C" fn host_slen(s: *const libc::c_char) -> i64 {
    if s.is_null() {
        return -1;
    }
    // SAFETY: a `str` argument reaches the function NUL-terminated.
    unsafe { libc::strlen(s) as i64 }
}

// The program's own functions check their pointers as any API called with untrusted values
// must: a helper's nested call may pass NULL for any buffer (and any value for a `val`).
extern "C" fn host_need(buf: *mut u8, len: *mut u64) -> u64 {
    if len.is_null() || buf.is_null() {
        return 0;
    }
    // SAFETY: `len` is the inout:8 copy; buf holds *len bytes (out:*arg1).
    unsafe {
        let n = *len;
        std::ptr::write_bytes(buf, b'N', n as usize);
        *len = 16 << 20;
        n
    }
}

extern "C" fn host_strv(s: *const libc::c_char, inb: *const u8, out: *mut u8, n: u64) -> u64 {
    // SAFETY: as the spec says: a string, 16 bytes in, n bytes out.
    unsafe {
        let l = if s.is_null() { 0 } else { libc::strlen(s) };
        let b = if inb.is_null() { 0 } else { *inb };
        if !out.is_null() {
            std::ptr::write_bytes(out, b, n as usize);
        }
        static S: &[u8] = b"served\0";
        if l % 2 == 0 {
            S.as_ptr() as u64
        } else {
            0
        }
    }
}

/// Calls of `host_visit` that got through the program's checks.
static VISITS: AtomicU64 = AtomicU64::new(0);

/// The program's callback bound to slot 0 of `visit` (as if it had passed it to `f_cb`): reads
/// both string arrays as C code would, writes its `n`-byte out-buffer.
extern "C" fn host_visit(
    n: u64,
    a: *const *const libc::c_char,
    b: *const *const libc::c_char,
    out: *mut u8,
) -> u64 {
    VISITS.fetch_add(1, SeqCst);
    let mut sum = 0u64;
    // SAFETY: as the spec says: `a` holds n string pointers (NULL entries allowed), `b` is
    // NULL-terminated, `out` has n bytes; the program's server built them from checked copies.
    unsafe {
        if !a.is_null() {
            for i in 0..n as usize {
                let e = *a.add(i);
                if !e.is_null() {
                    sum += libc::strlen(e) as u64;
                }
            }
        }
        if !b.is_null() {
            let mut i = 0;
            while !(*b.add(i)).is_null() {
                sum += libc::strlen(*b.add(i)) as u64;
                i += 1;
            }
        }
        if !out.is_null() {
            std::ptr::write_bytes(out, 0x5a, n as usize);
        }
    }
    sum
}

/// An offset or length a hostile peer might pick.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Zero,
    Small(u8),
    Page(u8),
    NearEnd(u16),
    End,
    Past(u16),
    Max,
    MaxMinus(u8),
    Top,
    Any(u64),
}

impl Num {
    fn get(self) -> u64 {
        let d = DATA_SIZE as u64;
        match self {
            Num::Zero => 0,
            Num::Small(n) => n as u64,
            Num::Page(n) => 4096 * n as u64,
            Num::NearEnd(n) => d - 1 - n as u64 % d,
            Num::End => d,
            Num::Past(n) => d + n as u64,
            Num::Max => u64::MAX,
            Num::MaxMinus(n) => u64::MAX - n as u64,
            Num::Top => 1 << 63,
            Num::Any(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Nested {
    func: u8,
    nargs: u8,
    nstack: u8,
    base: Num,
    end: Num,
    gp: [Num; 6],
    off: [Num; 5],
    len: [Num; 5],
    /// Bytes written into the data area at `at` before posting.
    at: Num,
    bytes: Vec<u8>,
    /// Instead of the fields above: a well-formed call of the bound callback (packed string
    /// arrays as the helper's side sends them), then bytes of it changed.
    visit: Option<Visit>,
}

#[derive(Arbitrary, Debug)]
struct Visit {
    counted: Vec<Option<Vec<u8>>>,
    terminated: Vec<Vec<u8>>,
    /// The count the call claims (the first strv's `strv:arg0`), else its true count.
    claim: Option<u8>,
    /// (offset into the request, new byte) changes after packing.
    flips: Vec<(u16, u8)>,
}

/// The bytes of a packed string array of `entries` (see `marshal::pack_strv`).
fn packed(entries: &[Option<Vec<u8>>]) -> Vec<u8> {
    let owned: Vec<Option<std::ffi::CString>> = entries
        .iter()
        .map(|e| {
            e.as_ref().map(|b| {
                std::ffi::CString::new(b.iter().map(|&c| c.max(1)).collect::<Vec<u8>>())
                    .expect("no NUL")
            })
        })
        .collect();
    let ptrs: Vec<u64> = owned
        .iter()
        .map(|c| c.as_ref().map_or(0, |c| c.as_ptr() as u64))
        .collect();
    let mut out = Vec::new();
    // SAFETY: every non-zero entry is one of the CStrings in `owned`, alive here.
    unsafe { crate::call::marshal::pack_strv(&ptrs, &mut out) };
    out
}

#[derive(Arbitrary, Debug)]
struct Answer {
    kind: u8,
    rax: u64,
    ret_off: Num,
    ret_len: Num,
    mirror_off: Num,
    mirror_len: Num,
    at: Num,
    bytes: Vec<u8>,
    /// Rounds of scribbling over the message slot after posting (racing the reader).
    scribble: u8,
}

#[derive(Arbitrary, Debug)]
struct Reply {
    nested: Vec<Nested>,
    answer: Answer,
    /// Never answer at all (the program's deadline must end the call) when 0.
    silent: u8,
}

/// The handshake of the test's two threads (not the protocol under test): the program
/// starts round r, calls, marks it finished; the peer answers round r and marks it done.
struct Peer {
    region: Region,
    /// Function indices a nested call may name: every mapped function, a bound callback slot
    /// and an unbound one.
    funcs: Vec<u32>,
    /// The bound callback slot (`visit` #0).
    visit: u32,
    round: AtomicU64,
    finished: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    seed: AtomicU64,
}

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn write_data(region: &Region, at: u64, bytes: &[u8]) {
    let at = at as usize;
    if at >= DATA_SIZE {
        return;
    }
    let n = bytes.len().min(DATA_SIZE - at);
    // SAFETY: [at, at+n) lies inside channel 0's data area.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.data(0).add(at), n) };
}

/// Waits for the program's next message on channel 0 (after `seen`), or gives up when the
/// round moved on.
fn wait_prog(peer: &Peer, seen: u32, round: u64) -> Option<u32> {
    let ch = peer.region.channel(0);
    loop {
        let s = ch.to_helper_seq.load(SeqCst);
        if s != seen {
            return Some(s);
        }
        if peer.finished.load(SeqCst) >= round || peer.stop.load(SeqCst) {
            return None;
        }
        std::hint::spin_loop();
    }
}

fn peer_main(peer: &Peer) {
    let ch = peer.region.channel(0);
    let mut seen = ch.to_helper_seq.load(SeqCst);
    let mut buf = vec![0u8; 4096];
    loop {
        let round = loop {
            if peer.stop.load(SeqCst) {
                return;
            }
            let r = peer.round.load(SeqCst);
            if r > peer.done.load(SeqCst) {
                break r;
            }
            std::hint::spin_loop();
        };
        // The program's call of this round.
        let Some(s) = wait_prog(peer, seen, round) else {
            seen = ch.to_helper_seq.load(SeqCst);
            peer.done.store(round, SeqCst);
            continue;
        };
        seen = s;
        let mut st = peer.seed.load(SeqCst) ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in buf.iter_mut() {
            *b = rng(&mut st) as u8;
        }
        let mut u = Unstructured::new(&buf);
        let Ok(reply) = Reply::arbitrary(&mut u) else {
            seen = ch.to_helper_seq.load(SeqCst);
            peer.done.store(round, SeqCst);
            continue;
        };
        'act: {
            let silent = reply.silent == 0;
            for n in reply.nested.iter().take(4) {
                if let Some(v) = &n.visit {
                    // A callback call as an honest helper would send it, then damaged.
                    let a = packed(&v.counted[..v.counted.len().min(8)]);
                    let t: Vec<Option<Vec<u8>>> =
                        v.terminated.iter().take(8).cloned().map(Some).collect();
                    let b = packed(&t);
                    let true_n = v.counted.len().min(8) as u64;
                    let count = v.claim.map_or(true_n, u64::from);
                    let mut req = a.clone();
                    let b_at = req.len();
                    req.extend_from_slice(&b);
                    let out_at = req.len();
                    req.extend(std::iter::repeat_n(0u8, count as usize));
                    for &(at, byte) in v.flips.iter().take(4) {
                        if !req.is_empty() {
                            let i = at as usize % req.len();
                            req[i] = byte;
                        }
                    }
                    let base = 4096u64;
                    write_data(&peer.region, base, &req);
                    // SAFETY: Msg is plain data; all-zero is a valid value.
                    let mut m: region::Msg = unsafe { std::mem::zeroed() };
                    m.kind = MSG_CALL;
                    m.func = peer.visit;
                    m.nargs = 4;
                    m.data_base = base;
                    m.data_end = base + req.len() as u64;
                    m.gp[0] = count;
                    m.arg_off = [NULL_OFF; crate::platform::abi::MAX_ARGS];
                    m.arg_off[1] = base;
                    m.arg_len[1] = a.len() as u64;
                    m.arg_off[2] = base + b_at as u64;
                    m.arg_len[2] = b.len() as u64;
                    m.arg_off[3] = base + out_at as u64;
                    m.arg_len[3] = count;
                    ch.write_msg(&m);
                    ch.to_prog().post();
                    match wait_prog(peer, seen, round) {
                        Some(s) => seen = s,
                        None => break 'act,
                    }
                    continue;
                }
                write_data(&peer.region, n.at.get(), &n.bytes);
                // SAFETY: Msg is plain data; all-zero is a valid value.
                let mut m: region::Msg = unsafe { std::mem::zeroed() };
                m.kind = MSG_CALL;
                m.func = peer.funcs[n.func as usize % peer.funcs.len()];
                m.nargs = n.nargs as u32;
                m.nstack = n.nstack as u32;
                m.data_base = n.base.get();
                m.data_end = n.end.get();
                for (g, v) in m.gp.iter_mut().zip(&n.gp) {
                    *g = v.get();
                }
                m.arg_off = [NULL_OFF; crate::platform::abi::MAX_ARGS];
                for i in 0..5 {
                    m.arg_off[i] = n.off[i].get();
                    m.arg_len[i] = n.len[i].get();
                }
                ch.write_msg(&m);
                ch.to_prog().post();
                match wait_prog(peer, seen, round) {
                    Some(s) => seen = s,
                    None => break 'act,
                }
            }
            if silent {
                break 'act;
            }
            let a = &reply.answer;
            write_data(&peer.region, a.at.get(), &a.bytes);
            // SAFETY: Msg is plain data; all-zero is a valid value.
            let mut m: region::Msg = unsafe { std::mem::zeroed() };
            m.kind = match a.kind % 8 {
                0..=4 => MSG_RETURN,
                5 => MSG_FAIL,
                6 => MSG_CALL,
                _ => a.kind as u32,
            };
            m.func = a.rax as u32 % 8;
            m.ret_rax = a.rax;
            m.ret_off = a.ret_off.get();
            m.ret_len = a.ret_len.get();
            m.mirror_off = a.mirror_off.get();
            m.mirror_len = a.mirror_len.get();
            if a.kind % 8 == 4 {
                // The answer of a call of registers only, in the lead line.
                ch.write_flat_answer(&region::FlatAnswer {
                    kind: MSG_RETURN,
                    errno: a.rax as i32,
                    // Short service times (any hint is only policy; long ones would turn
                    // the program's waits to sleeping, and the flat path off).
                    hint: (a.rax >> 32) as u32 % 16_000,
                    ret_rax: a.rax,
                    ret_rdx: a.ret_off.get(),
                    ret_xmm0: [a.ret_len.get(), a.mirror_off.get()],
                    ret_xmm1: [a.mirror_len.get(), a.rax],
                });
            } else {
                ch.write_msg(&m);
            }
            ch.to_prog().post();
            for _ in 0..a.scribble % 16 {
                // A word of the slot, or of the lead line after the sequence words (its kind
                // word and its six registers).
                let slot_words = std::mem::size_of::<region::Msg>() as u64 / 8;
                let w = (rng(&mut st) % (slot_words + 7)) as usize;
                let v = rng(&mut st);
                if w < slot_words as usize {
                    let msg = ch.msg_ptr() as *mut u64;
                    // SAFETY: w < size_of::<Msg>() / 8: a word of the slot (volatile: racing).
                    unsafe { std::ptr::write_volatile(msg.add(w), v) };
                } else if w == slot_words as usize {
                    // A lead kind (none, a call with a function index, an answer).
                    let lead = match v % 3 {
                        0 => region::LEAD_NONE,
                        1 => region::LEAD_CALL | ((v >> 32) as u32 & !region::LEAD_KIND),
                        _ => region::LEAD_RETURN,
                    };
                    ch.lead.store(lead, SeqCst);
                } else {
                    ch.lead_words[w - slot_words as usize - 1].store(v, SeqCst);
                }
            }
        }
        // Wait for the program to finish the round (its reads race our scribbling, and it
        // may still answer a nested call read from the scribbled slot).
        // A program asleep in its wait only asks its deadline when woken (as the zygote
        // wakes it when a helper dies): wake it now and then.
        let mut spins = 0u32;
        while peer.finished.load(SeqCst) < round && !peer.stop.load(SeqCst) {
            spins += 1;
            if spins.is_multiple_of(2048) {
                ch.to_prog_ev.fetch_add(1, SeqCst);
                region::futex_wake(&ch.to_prog_ev);
            }
            std::hint::spin_loop();
        }
        seen = ch.to_helper_seq.load(SeqCst);
        peer.done.store(round, SeqCst);
    }
}

/// Bytes of guard around each of the caller's out-buffers.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xA5;

struct Guarded {
    v: Vec<u8>,
    n: usize,
}

impl Guarded {
    fn new(n: usize, fill: u8) -> Guarded {
        let mut v = vec![GUARD_BYTE; GUARD + n + GUARD];
        v[GUARD..GUARD + n].fill(fill);
        Guarded { v, n }
    }
    fn ptr(&mut self) -> u64 {
        self.v[GUARD..].as_mut_ptr() as u64
    }
    fn intact(&self) -> bool {
        self.v[..GUARD].iter().all(|&b| b == GUARD_BYTE)
            && self.v[GUARD + self.n..].iter().all(|&b| b == GUARD_BYTE)
    }
}

fn fuzz_runtime() -> Runtime {
    let map = module_map::parse_map_str(MAP, std::path::Path::new("fuzz.yaml"), &[])
        .expect("the fuzz map parses");
    let rt = runtime::build(map, "fuzz.yaml".into(), "fuzz".into(), false)
        .expect("the fuzz runtime builds");
    let reals: [(&str, usize); 4] = [
        ("host_fill", host_fill as *const () as usize),
        ("host_slen", host_slen as *const () as usize),
        ("host_need", host_need as *const () as usize),
        ("host_strv", host_strv as *const () as usize),
    ];
    for f in &rt.fns {
        if let Some((_, a)) = reals.iter().find(|(n, _)| *n == f.name) {
            f.real.store(*a, SeqCst);
        }
    }
    // The program passed `host_visit` as `visit`: slot 0 is bound to it.
    let first = rt
        .fns
        .iter()
        .position(|f| f.callback.is_some())
        .expect("visit slots");
    assert_eq!(
        rt.cb_slot(first, host_visit as *const () as usize),
        Some(first)
    );
    rt
}

#[test]
fn hostile_replies_never_crash_hang_or_write_outside_the_out_buffers() {
    crate::observe::log::set_level(0);
    let iters: u64 = std::env::var("FRACTURE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("FRACTURE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f4ac_7e5e_ed01);
    let rt: &'static Runtime = Box::leak(Box::new(fuzz_runtime()));
    let p = &rt.procs[0];
    let first_slot = rt
        .fns
        .iter()
        .position(|f| f.callback.is_some())
        .unwrap_or(0) as u32;
    let mut funcs: Vec<u32> = rt
        .fns
        .iter()
        .filter(|f| f.callback.is_none())
        .map(|f| f.idx as u32)
        .collect();
    funcs.extend([first_slot, first_slot + 1, first_slot, first_slot]);
    let peer: &'static Peer = Box::leak(Box::new(Peer {
        funcs,
        visit: first_slot,
        region: p.region,
        round: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        seed: AtomicU64::new(seed),
    }));
    let t = std::thread::spawn(|| peer_main(peer));
    let f_str = &rt.fns[0];
    let f_handle = &rt.fns[1];
    let f_flat = &rt.fns[3];
    assert!(f_flat.flat, "{} takes the flat path", f_flat.name);
    // A helper "runs" (the peer thread): the flat path posts only to a live one. (Nothing
    // here kills it: a handed-over call waits with the round's deadline, not the timeout.)
    p.pid.store(crate::platform::sys::getpid(), SeqCst);
    let mut flat_rounds = 0u64;
    let mut not_taken = 0u64;
    let t0 = Instant::now();
    let (mut ok, mut refused) = (0u64, 0u64);
    for round in 1..=iters {
        let mut out = Guarded::new(16, b'.');
        let mut inout = Guarded::new(24, b'i');
        let mut len = Guarded::new(8, 0);
        len.v[GUARD..GUARD + 8].copy_from_slice(&24u64.to_le_bytes());
        let input = [7u8; 32];
        let mut frame = Frame::default();
        let f = match round % 3 {
            0 => f_str,
            1 => f_handle,
            _ => f_flat,
        };
        if f.idx == f_flat.idx {
            frame.gp = [round, 7, 0, 0, 0, 0];
        } else if f.idx == f_str.idx {
            frame.gp = [
                out.ptr(),
                c"hello".as_ptr() as u64,
                input.as_ptr() as u64,
                32,
                0,
                0,
            ];
        } else {
            frame.gp = [0x1234_5678, inout.ptr(), len.ptr(), 0, 0, 0];
        }
        let walk = Walk::of(f, &frame);
        let deadline = Instant::now() + Duration::from_millis(2);
        let stop = || Instant::now() >= deadline;
        peer.round.store(round, SeqCst);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if f.idx != f_flat.idx {
                return client_call(rt, f, &p.region, 0, 0, &mut frame, &walk, true, &stop);
            }
            // The flat path, and where it hands over, the general wait (with this round's
            // deadline, where `call_finish` waits with the process's liveness and timeout:
            // its timeout would kill the "helper", whose pid is this test's own).
            flat_rounds += 1;
            match flat::call(f, p, &mut frame) {
                Flat::Done => Ok(Default::default()),
                Flat::NotTaken => {
                    not_taken += 1;
                    client_call(rt, f, &p.region, 0, 0, &mut frame, &walk, true, &stop)
                }
                Flat::Pending(pending) => {
                    let r = pending.begun.wait_with(rt, f, p, &mut frame, &stop);
                    drop(pending.gate);
                    r
                }
            }
        }));
        // The round ends here: a peer still acting gives up at once.
        peer.finished.store(round, SeqCst);
        while peer.done.load(SeqCst) < round {
            std::hint::spin_loop();
        }
        match r {
            Err(_) => panic!("round {round} (seed {seed:#x}): the program panicked"),
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => refused += 1,
        }
        assert!(
            out.intact() && inout.intact() && len.intact(),
            "round {round} (seed {seed:#x}): a write outside the declared out-buffers"
        );
        assert!(
            deadline.elapsed() < Duration::from_secs(5),
            "round {round} (seed {seed:#x}): the call outlived its deadline"
        );
    }
    peer.stop.store(true, SeqCst);
    t.join().unwrap();
    eprintln!(
        "reply fuzzer: {iters} hostile replies in {:?} ({ok} answered, {refused} failed calls), seed {seed:#x}",
        t0.elapsed()
    );
    assert!(
        ok > 0 && refused > 0,
        "the fuzzer must exercise both outcomes"
    );
    // The flat path answered hostile replies itself, and handed others over.
    let flat_done = f_flat.stats.flat.load(SeqCst);
    eprintln!("reply fuzzer: {flat_rounds} flat calls, {flat_done} answered by the flat path, {not_taken} not taken");
    assert!(
        flat_done > 0 && flat_done < flat_rounds,
        "the flat path must answer some calls and hand others over"
    );
    // Callback calls with string arrays got through the checks (and the damaged ones did not
    // break anything): the path is exercised, not only its refusals.
    let visits = VISITS.load(SeqCst);
    eprintln!("reply fuzzer: the bound callback ran {visits} times");
    assert!(visits > 0, "no well-formed callback call got through");
}
