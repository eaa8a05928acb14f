//! Page store vs redb (issue 4): the same 1,000,000 keys (32 B, values 256 B)
//! in a real file each, both caches large enough (512 MiB) to hold the tree;
//! point gets and 100-key range scans at random keys, and batches of 1,000
//! inserts committed durably (page store checkpoint / redb commit, each with
//! fdatasync) into the loaded store.
//!
//! `cargo bench --bench pagestore_vs_redb` (KEYS=N to change the key count).

#![allow(non_upper_case_globals)] // STYLE: constants read as `cache_bytes`.

use std::ops::Bound;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use redb::{Database, TableDefinition};

use corekv::pagestore::{PageStore, StdPageFile};

/// The server's allocator, for both stores: where the decoded pages lie
/// decides much of a point read's cache misses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const cache_bytes: usize = 512 << 20;
const table: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

fn keys_count() -> u64 {
    std::env::var("KEYS").ok().and_then(|k| k.parse().ok()).unwrap_or(1_000_000)
}

/// The i-th key of a pseudo-random permutation of 0..n, 32 bytes.
fn key(i: u64, n: u64) -> [u8; 32] {
    let mut key = [b'k'; 32];
    key[..16].copy_from_slice(format!("{:016}", i.wrapping_mul(2_654_435_761) % n).as_bytes());
    key
}

fn compare(c: &mut Criterion) {
    let n = keys_count();
    let dir = std::env::temp_dir().join(format!("corekv-bench-vs-redb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let value = [7u8; 256];

    let pages_path = dir.join("store.pages");
    let mut pages = PageStore::create(StdPageFile::create(&pages_path).unwrap()).unwrap();
    pages.set_cache_bytes(cache_bytes);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        for i in chunk {
            pages.insert(&key(*i, n), &value).unwrap();
        }
        pages.checkpoint(chunk[0]).unwrap();
    }

    let redb_path = dir.join("store.redb");
    let redb = Database::builder().set_cache_size(cache_bytes).create(&redb_path).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let txn = redb.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            for i in chunk {
                t.insert(&key(*i, n)[..], &value[..]).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    let mut group = c.benchmark_group(format!("get_{n}"));
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("pagestore", |b| {
        b.iter(|| {
            i += 7919;
            pages.get(&key(i, n)).unwrap().expect("present")
        })
    });
    let read = redb.begin_read().unwrap();
    let read_table = read.open_table(table).unwrap();
    group.bench_function("redb", |b| {
        b.iter(|| {
            i += 7919;
            read_table.get(&key(i, n)[..]).unwrap().expect("present").value().to_vec()
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("range100_{n}"));
    group.throughput(Throughput::Elements(100));
    group.bench_function("pagestore", |b| {
        b.iter(|| {
            i += 7919;
            let start = key(i, n);
            pages.range(Bound::Included(&start[..]), Bound::Unbounded, 100).unwrap()
        })
    });
    group.bench_function("redb", |b| {
        b.iter(|| {
            i += 7919;
            let start = key(i, n);
            read_table
                .range(&start[..]..)
                .unwrap()
                .take(100)
                .map(|entry| {
                    let (k, v) = entry.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .collect::<Vec<_>>()
        })
    });
    group.finish();
    drop(read_table);
    drop(read);

    let mut group = c.benchmark_group(format!("insert1000_commit_{n}"));
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    let mut round = 0u64;
    group.bench_function("pagestore", |b| {
        b.iter_batched(
            || {
                round += 1;
                round
            },
            |round| {
                for j in 0..1000 {
                    pages.insert(&key(round * 1000 + j, n), &[9u8; 256]).unwrap();
                }
                pages.checkpoint(n + round).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("redb", |b| {
        b.iter_batched(
            || {
                round += 1;
                round
            },
            |round| {
                let txn = redb.begin_write().unwrap();
                {
                    let mut t = txn.open_table(table).unwrap();
                    for j in 0..1000 {
                        t.insert(&key(round * 1000 + j, n)[..], &[9u8; 256][..]).unwrap();
                    }
                }
                txn.commit().unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    eprintln!(
        "files: page store {} MiB, redb {} MiB",
        std::fs::metadata(&pages_path).unwrap().len() >> 20,
        std::fs::metadata(&redb_path).unwrap().len() >> 20
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, compare);
criterion_main!(benches);
