//! The transport's floor: a scalar call and its answer crossing one channel between two
//! threads that spin, with the shim's message functions and nothing else (`cargo run
//! --release -p fracture-transport --example floor`). Prints the median round trip in ns,
//! with whole messages (`floor_ns`: `write_msg`/`read_msg_into`, the general path) and with
//! the flat path's calls and answers (`flat_floor_ns`).
use fracture_transport::region::*;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

const N: u32 = 200_000;
const SPIN: Duration = Duration::from_millis(100);

/// Median ns of 100-call rounds of `call(i)` (which posts) and `answer()` (which reads what
/// came back: i + 1), served by `serve` on another thread.
fn rounds(
    serve: impl Fn(&Channel) + Send + 'static,
    call: impl Fn(&Channel, u64),
    answer: impl Fn(&Channel) -> u64,
) -> f64 {
    let (r, _fd) = Region::create("floor").expect("memfd");
    let server = std::thread::spawn(move || {
        let ch = r.channel(0);
        let mut seen = 0;
        for _ in 0..N {
            seen = ch
                .to_helper()
                .wait(seen, SPIN, false, SPIN, || false)
                .unwrap();
            serve(ch);
            ch.to_prog().post();
        }
    });
    let ch = r.channel(0);
    let mut samples = Vec::new();
    let mut i = 0;
    while i < N {
        let t = Instant::now();
        for _ in 0..100 {
            let seen = ch.to_prog_seq.load(SeqCst);
            call(ch, u64::from(i));
            ch.to_prog()
                .wait(seen, SPIN, false, SPIN, || false)
                .unwrap();
            assert_eq!(answer(ch), u64::from(i) + 1);
            i += 1;
        }
        samples.push(t.elapsed().as_nanos() as f64 / 100.0);
    }
    server.join().unwrap();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    // Whole messages: built on the stack, written, read back into a reused one.
    let reused = std::cell::RefCell::new(Msg::zeroed());
    let served = std::cell::RefCell::new(Msg::zeroed());
    let general = rounds(
        move |ch| {
            let m = &mut *served.borrow_mut();
            ch.read_msg_into(m);
            let mut a = Msg::zeroed();
            a.kind = MSG_RETURN;
            a.ret_rax = m.gp[0] + m.gp[1];
            ch.write_msg(&a);
        },
        |ch, i| {
            let mut m = Msg::zeroed();
            m.kind = MSG_CALL;
            m.gp[0] = i;
            m.gp[1] = 1;
            ch.write_msg(&m);
            ch.to_helper().post();
        },
        |ch| {
            let a = &mut *reused.borrow_mut();
            ch.read_msg_into(a);
            a.ret_rax
        },
    );
    let served = std::cell::RefCell::new(Msg::zeroed());
    let flat = rounds(
        move |ch| {
            let m = &mut *served.borrow_mut();
            assert!(ch.read_flat_call(m));
            ch.write_flat_answer(&FlatAnswer {
                kind: MSG_RETURN,
                ret_rax: m.gp[0] + m.gp[1],
                ..FlatAnswer::default()
            });
        },
        |ch, i| {
            let gp = [i, 1, 0, 0, 0, 0];
            let xmm = [[0; 2]; 8];
            let stack = [0u64; 6];
            ch.write_flat_call(&FlatCall {
                func: 0,
                errno: 0,
                hint: 0,
                gp: &gp,
                rax: 0,
                xmm: &xmm,
                stack: &stack,
            });
            ch.to_helper().post();
        },
        |ch| ch.read_flat_answer().ret_rax,
    );
    println!("{{\"floor_ns\":{general:.1},\"flat_floor_ns\":{flat:.1}}}");
}
