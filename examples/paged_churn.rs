//! MVCC churn on the page store (issue 4): ROUNDS rounds of putting KEYS keys
//! (32 B keys, 256 B values), deleting them all and compacting, folded into
//! the page store as a member's checkpoints fold them (every 100,000
//! changes). Prints the file size at the peak of each round and after the
//! compaction, relative to the live data at the peak (KEYS × 288 bytes): a
//! store that reuses what compaction frees keeps its file flat, with no
//! defragmentation.
//!
//! Usage: cargo run --release --example paged_churn -- DIR [KEYS] [ROUNDS]

#![allow(non_upper_case_globals)]

use bytes::Bytes;

// The server's allocator, so that the fold costs here what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use corekv::mvcc::paged::PagedHistory;
use corekv::mvcc::HistoryChange;
use corekv::pagestore::{PageStore, StdPageFile};
use corekv::types::KeyValue;

const checkpoint_changes: usize = 100_000;

fn key(i: u64) -> Bytes {
    let mut key = [b'k'; 32];
    key[..16].copy_from_slice(format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).as_bytes());
    Bytes::copy_from_slice(&key)
}

struct Churn {
    history: PagedHistory<StdPageFile>,
    pending: Vec<HistoryChange>,
    revision: i64,
    index: u64,
}

impl Churn {
    fn push(&mut self, change: HistoryChange) {
        self.pending.push(change);
        if self.pending.len() == checkpoint_changes {
            self.checkpoint();
        }
    }

    fn checkpoint(&mut self) {
        self.index += self.pending.len() as u64;
        self.history.apply(&std::mem::take(&mut self.pending)).unwrap();
        // The totals are not what this measures: zero stands in for them.
        self.history.checkpoint(self.index, self.revision, 0, 0).unwrap();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir =
        std::path::PathBuf::from(args.next().expect("usage: paged_churn DIR [KEYS] [ROUNDS]"));
    let keys: u64 = args.next().map_or(1_000_000, |k| k.parse().expect("KEYS"));
    let rounds: u64 = args.next().map_or(10, |r| r.parse().expect("ROUNDS"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("churn.db");
    let _ = std::fs::remove_file(&path);
    let store = PageStore::create(StdPageFile::create(&path).unwrap()).unwrap();
    let history = PagedHistory::open(store).unwrap();
    let mut churn = Churn { history, pending: Vec::new(), revision: 1, index: 0 };
    let live_bytes = keys * (32 + 256);
    let size = |path: &std::path::Path| std::fs::metadata(path).unwrap().len();
    println!(
        "| round | file at the peak | × live | file after delete + compact | × live | seconds |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for round in 1..=rounds {
        let started = std::time::Instant::now();
        for i in 0..keys {
            churn.revision += 1;
            let kv = KeyValue {
                key: key(i + round * keys),
                create_revision: churn.revision,
                mod_revision: churn.revision,
                version: 1,
                value: Bytes::from(vec![round as u8; 256]),
                lease: 0,
            };
            let change = HistoryChange::Version {
                key: kv.key.clone(),
                revision: churn.revision,
                kv: Some(kv),
            };
            churn.push(change);
        }
        churn.checkpoint();
        let peak = size(&path);
        for i in 0..keys {
            churn.revision += 1;
            churn.push(HistoryChange::Version {
                key: key(i + round * keys),
                revision: churn.revision,
                kv: None,
            });
        }
        churn.push(HistoryChange::Compact(churn.revision));
        churn.checkpoint();
        churn.checkpoint();
        let after = size(&path);
        worst = worst.max(peak as f64 / live_bytes as f64).max(after as f64 / live_bytes as f64);
        println!(
            "| {round} | {} MiB | {:.3} | {} MiB | {:.3} | {:.1} |",
            peak >> 20,
            peak as f64 / live_bytes as f64,
            after >> 20,
            after as f64 / live_bytes as f64,
            started.elapsed().as_secs_f64()
        );
        assert!(churn.history.load().unwrap().snapshot().live_keys() == 0);
    }
    let store = churn.history.page_store();
    println!();
    println!(
        "{keys} keys × 288 B live at the peak = {} MiB; largest file / live = {worst:.4}; free pages at the end {} of {}",
        live_bytes >> 20,
        store.free_page_count(),
        store.page_count()
    );
    let _ = std::fs::remove_file(&path);
}
