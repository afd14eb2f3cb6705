//! The transport's floor: a scalar call and its answer crossing one channel between two
//! threads that spin, with the shim's message functions and nothing else (`cargo run
//! --release -p fracture-transport --example floor`). Prints the median round trip in ns.
use fracture_transport::region::*;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

fn main() {
    let (r, _fd) = Region::create("floor").expect("memfd");
    let n = 200_000u32;
    let spin = Duration::from_millis(100);
    let server = std::thread::spawn(move || {
        let ch = r.channel(0);
        let mut m = Msg::zeroed();
        let mut seen = 0;
        for _ in 0..n {
            seen = ch
                .to_helper()
                .wait(seen, spin, false, spin, || false)
                .unwrap();
            ch.read_msg_into(&mut m);
            let mut a = Msg::zeroed();
            a.kind = MSG_RETURN;
            a.ret_rax = m.gp[0] + m.gp[1];
            ch.write_msg(&a);
            ch.to_prog().post();
        }
    });
    let ch = r.channel(0);
    let mut samples = Vec::new();
    let mut ans = Msg::zeroed();
    let mut i = 0;
    while i < n {
        let t = Instant::now();
        for _ in 0..100 {
            let mut m = Msg::zeroed();
            m.kind = MSG_CALL;
            m.gp[0] = i as u64;
            m.gp[1] = 1;
            let seen = ch.to_prog_seq.load(SeqCst);
            ch.write_msg(&m);
            ch.to_helper().post();
            ch.to_prog()
                .wait(seen, spin, false, spin, || false)
                .unwrap();
            ch.read_msg_into(&mut ans);
            assert_eq!(ans.ret_rax, i as u64 + 1);
            i += 1;
        }
        samples.push(t.elapsed().as_nanos() as f64 / 100.0);
    }
    server.join().unwrap();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{{\"floor_ns\":{:.1}}}", samples[samples.len() / 2]);
}
