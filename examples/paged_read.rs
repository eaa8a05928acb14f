//! Read speed of a checkpoint in place (`PagedView`): point reads and
//! 100-key ranges at random keys of a member's page store, as
//! `--experimental-reads-from-disk` serves them.
//!
//! Usage: cargo run --release --example paged_read -- DB [READS] [CACHE_MIB]

use std::time::Instant;

use corekv::mvcc::paged::PagedHistory;
use corekv::pagestore::{PageStore, StdPageFile};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(args.get(1).expect("usage: paged_read DB [READS] [CACHE_MIB]"));
    let reads: usize = args.get(2).map_or(100_000, |a| a.parse().expect("READS"));
    let cache_mib: usize = args.get(3).map_or(512, |a| a.parse().expect("CACHE_MIB"));
    let file = StdPageFile::open(path).expect("opens");
    let store = PageStore::open(file, cache_mib << 20).expect("page store opens");
    let mut history = PagedHistory::open(store).expect("history opens");
    let view = history.view();
    let revision = view.revision();
    // The keys, in key order, from one pass over the whole checkpoint.
    let started = Instant::now();
    let mut keys = Vec::new();
    view.range_at(b"", None, revision, |kv| {
        keys.push(kv.key);
        true
    })
    .expect("reads");
    let pass = started.elapsed();
    println!(
        "{} keys, full range {:.0} ms ({:.2} µs/key)",
        keys.len(),
        pass.as_secs_f64() * 1e3,
        pass.as_secs_f64() * 1e6 / keys.len().max(1) as f64
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize % keys.len()
    };
    for pass in 0..2 {
        let started = Instant::now();
        let mut found = 0;
        for _ in 0..reads {
            found += view.get_at(&keys[next()], revision).expect("reads").is_some() as usize;
        }
        let get = started.elapsed().as_secs_f64() * 1e6 / reads as f64;
        let started = Instant::now();
        let ranges = reads / 100;
        let mut listed = 0;
        for _ in 0..ranges {
            let i = next().min(keys.len().saturating_sub(101));
            view.range_at(&keys[i], Some(&keys[i + 100]), revision, |_| {
                listed += 1;
                true
            })
            .expect("reads");
        }
        let range = started.elapsed().as_secs_f64() * 1e6 / ranges as f64;
        println!("pass {pass}: get {get:.2} µs ({found} found), 100-key range {range:.1} µs ({listed} listed)");
    }
}
