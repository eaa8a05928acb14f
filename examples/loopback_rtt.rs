//! The machine's loopback round trip, the floor under any 1-client latency:
//! 64-byte ping-pongs over blocking TCP sockets, with the echoing thread
//! and the client pinned to the CPUs given (default: 1 and 0). Comparing
//! "1 0" with "0 0" shows what waking a second CPU costs.
//! Usage: cargo run --release --example loopback_rtt -- [SERVER_CPU] [CLIENT_CPU]
use std::io::{Read, Write};
use std::time::Instant;

use corekv::runtime::pin_current_thread as pin;

fn main() {
    let scpu: usize = std::env::args().nth(1).map_or(1, |c| c.parse().unwrap());
    let ccpu: usize = std::env::args().nth(2).map_or(0, |c| c.parse().unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        pin(scpu);
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b).unwrap();
        }
    });
    pin(ccpu);
    let mut c = std::net::TcpStream::connect(a).unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [0u8; 64];
    let mut v: Vec<u64> = (0..20000)
        .map(|_| {
            let t = Instant::now();
            c.write_all(&b).unwrap();
            c.read_exact(&mut b).unwrap();
            t.elapsed().as_micros() as u64
        })
        .collect();
    v.sort_unstable();
    println!(
        "server cpu {scpu} client cpu {ccpu}: p50 {} p90 {} p99 {}",
        v[v.len() / 2],
        v[v.len() * 9 / 10],
        v[v.len() * 99 / 100]
    );
}
