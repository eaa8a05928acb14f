//! Page store churn (issue 4): ROUNDS rounds of writing KEYS keys (32 B keys,
//! 256 B values, checkpointed every 10,000 writes as a member would), then
//! deleting them all (also checkpointed). A store that reuses freed pages
//! keeps its file near the size one round's data needs; one that does not
//! grows every round. Prints the file size after each phase, relative to the
//! live data at its peak (KEYS × (32 + 256) bytes).
//!
//! Usage: cargo run --release --example pagestore_churn -- DIR [KEYS] [ROUNDS]

use corekv::pagestore::{PageStore, StdPageFile};

fn key(i: u64) -> [u8; 32] {
    let mut key = [b'k'; 32];
    key[..16].copy_from_slice(format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).as_bytes());
    key
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir =
        std::path::PathBuf::from(args.next().expect("usage: pagestore_churn DIR [KEYS] [ROUNDS]"));
    let keys: u64 = args.next().map_or(1_000_000, |k| k.parse().expect("KEYS"));
    let rounds: u64 = args.next().map_or(10, |r| r.parse().expect("ROUNDS"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("churn.pages");
    let _ = std::fs::remove_file(&path);
    let mut store = PageStore::create(StdPageFile::create(&path).unwrap()).unwrap();
    let live_bytes = keys * (32 + 256);
    let mut applied = 0u64;
    let size = |path: &std::path::Path| std::fs::metadata(path).unwrap().len();
    println!("| round | file after writes | × live | file after deletes | × live | seconds |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for round in 1..=rounds {
        let started = std::time::Instant::now();
        let value = [round as u8; 256];
        for i in 0..keys {
            store.insert(&key(i + round * keys), &value).unwrap();
            applied += 1;
            if applied.is_multiple_of(10_000) {
                store.checkpoint(applied).unwrap();
            }
        }
        store.checkpoint(applied).unwrap();
        let after_writes = size(&path);
        for i in 0..keys {
            store.remove(&key(i + round * keys)).unwrap();
            applied += 1;
            if applied.is_multiple_of(10_000) {
                store.checkpoint(applied).unwrap();
            }
        }
        store.checkpoint(applied).unwrap();
        store.checkpoint(applied).unwrap();
        let after_deletes = size(&path);
        let ratio = after_writes as f64 / live_bytes as f64;
        worst = worst.max(ratio).max(after_deletes as f64 / live_bytes as f64);
        println!(
            "| {round} | {} MiB | {:.2} | {} MiB | {:.2} | {:.1} |",
            after_writes >> 20,
            ratio,
            after_deletes >> 20,
            after_deletes as f64 / live_bytes as f64,
            started.elapsed().as_secs_f64()
        );
        assert!(store.is_empty());
    }
    println!();
    println!(
        "{keys} keys × 288 B live at the peak = {} MiB; largest file / live = {worst:.2}; free pages at the end {} of {}",
        live_bytes >> 20,
        store.free_page_count(),
        store.page_count()
    );
    let _ = std::fs::remove_file(&path);
}
