//! The disk's own fdatasync latency, the floor under a 1-client put: 4 KiB
//! O_DIRECT writes + fdatasync into a pre-zeroed file, as the WAL does.
//! Usage: cargo run --release --example fsync_latency -- DIR [COUNT]
//! Prints one JSON line: p50/p90/p99 microseconds.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: fsync_latency DIR [COUNT]"));
    let count: usize = args.next().map_or(2000, |c| c.parse().expect("COUNT"));
    let path = dir.join("fsync-latency.probe");
    let size = (count * 4096) as u64;
    {
        let mut file = std::fs::File::create(&path).unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
        file.sync_all().unwrap();
    }
    let file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();
    let layout = Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: a 4096-aligned, 4096-byte zeroed allocation, freed below.
    let buffer = unsafe { std::slice::from_raw_parts_mut(alloc_zeroed(layout), 4096) };
    let mut micros = Vec::with_capacity(count);
    for i in 0..count {
        buffer[0] = i as u8;
        let start = Instant::now();
        file.write_all_at(buffer, (i * 4096) as u64).unwrap();
        file.sync_data().unwrap();
        micros.push(start.elapsed().as_micros() as u64);
    }
    // SAFETY: allocated above with the same layout.
    unsafe { dealloc(buffer.as_mut_ptr(), layout) };
    std::fs::remove_file(&path).unwrap();
    micros.sort_unstable();
    let q = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!(
        "{{\"fdatasync_4k_p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"count\":{count}}}",
        q(0.5),
        q(0.9),
        q(0.99)
    );
}
