//! The floor under a 1-client put on this machine, without corekv: a client
//! sends 64 bytes over loopback, a server thread makes one 4 KiB page
//! durable in a pre-zeroed file and answers. Which way of making it durable
//! (and on which CPU) is fastest tells where corekv's WAL append can go.
//! Usage: cargo run --release --example put1_floor -- DIR MODE [SERVER_CPU] [CLIENT_CPU]
//! MODE:
//! - none: the loopback round trip alone (compare "1 0" with "0 0" for
//!   what waking a second CPU costs);
//! - sync: pwrite + fdatasync; dsync: an O_DSYNC pwrite;
//! - uring-dsync: an O_DSYNC write through io_uring
//!   (`corekv::uring::PolledWrite`), slept for;
//! - uring-dsync-spin: the same, polled for up to 1 ms (then slept for),
//!   as the log driver polls away from the disk's interrupt CPU.
//!
//! CLIENT_CPU "-" runs the disk step alone on SERVER_CPU, with no client,
//! and also prints the process's CPU time per step.
use std::alloc::{alloc_zeroed, Layout};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use corekv::runtime::pin_current_thread as pin;
use corekv::uring::{polling_ring, PolledWrite};
use io_uring::IoUring;

const COUNT: usize = 3000;

struct Disk {
    mode: String,
    file: std::fs::File,
    ring: Option<IoUring>,
    page: &'static mut [u8],
    at: u64,
}

impl Disk {
    fn open(dir: &std::path::Path, mode: &str) -> Disk {
        let path = dir.join("put1-floor.probe");
        std::fs::write(&path, vec![0u8; COUNT * 4096 + 4096]).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        let flags = libc::O_DIRECT | if mode.contains("dsync") { libc::O_DSYNC } else { 0 };
        let file = OpenOptions::new().write(true).custom_flags(flags).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let layout = Layout::from_size_align(4096, 4096).unwrap();
        // SAFETY: a 4096-aligned, 4096-byte zeroed allocation, never freed.
        let page = unsafe { std::slice::from_raw_parts_mut(alloc_zeroed(layout), 4096) };
        Disk { mode: mode.to_string(), file, ring: Some(polling_ring(2).unwrap()), page, at: 0 }
    }

    fn step(&mut self) {
        self.page[0] = self.page[0].wrapping_add(1);
        let at = self.at;
        self.at += 4096;
        match self.mode.as_str() {
            "none" => {}
            "sync" => {
                self.file.write_all_at(self.page, at).unwrap();
                self.file.sync_data().unwrap();
            }
            "dsync" => self.file.write_all_at(self.page, at).unwrap(),
            "uring-dsync" | "uring-dsync-spin" => {
                let spin = if self.mode.ends_with("spin") {
                    Duration::from_millis(1)
                } else {
                    Duration::ZERO
                };
                let ring = self.ring.take().expect("a ring");
                let fd = self.file.as_raw_fd();
                // SAFETY: the page outlives the write, reaped below.
                let mut write =
                    unsafe { PolledWrite::submit(ring, fd, self.page.as_ptr(), 4096, at) }.unwrap();
                let (result, ring) = match write.spin(spin) {
                    Some(done) => done,
                    None => write.wait(),
                };
                result.unwrap();
                self.ring = Some(ring);
            }
            other => panic!("unknown mode {other}"),
        }
    }
}

fn report(label: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    let q = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!("{label}: p50 {} p90 {} p99 {}", q(0.5), q(0.9), q(0.99));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("DIR"));
    let mode = args.next().expect("MODE");
    let scpu: usize = args.next().map_or(1, |c| c.parse().unwrap());
    let ccpu = args.next().unwrap_or_else(|| "0".into());
    let mut disk = Disk::open(&dir, &mode);
    if ccpu == "-" {
        pin(scpu);
        let v = (0..COUNT)
            .map(|_| {
                let t = Instant::now();
                disk.step();
                t.elapsed().as_micros() as u64
            })
            .collect();
        // SAFETY: getrusage fills the struct passed.
        let cpu = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
            t(usage.ru_utime) + t(usage.ru_stime)
        };
        return report(&format!("{mode} alone on cpu {scpu}, cpu/op {} µs", cpu / COUNT as u64), v);
    }
    let ccpu: usize = ccpu.parse().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        pin(scpu);
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).is_ok() {
            disk.step();
            s.write_all(&b).unwrap();
        }
    });
    pin(ccpu);
    let mut c = std::net::TcpStream::connect(a).unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [0u8; 64];
    let v = (0..COUNT)
        .map(|_| {
            let t = Instant::now();
            c.write_all(&b).unwrap();
            c.read_exact(&mut b).unwrap();
            t.elapsed().as_micros() as u64
        })
        .collect();
    report(&format!("{mode} server cpu {scpu} client cpu {ccpu}"), v);
}
