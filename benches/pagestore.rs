//! Page store baseline (issue 4): point gets, range scans and batched inserts
//! on a 100,000-key tree in a real file (StdPageFile, page cache large enough
//! to hold it), 32-byte keys and 256-byte values. The redb comparison of issue
//! 4 comes with MVCC on the store.

#![allow(non_upper_case_globals)] // STYLE: constants read as `keys_count`, units last.

use std::ops::Bound;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use corekv::pagestore::{PageStore, StdPageFile};

const keys_count: u64 = 100_000;

fn key(i: u64) -> [u8; 32] {
    let mut key = [b'k'; 32];
    key[..16]
        .copy_from_slice(format!("{:016}", i.wrapping_mul(2_654_435_761) % keys_count).as_bytes());
    key
}

fn store(path: &std::path::Path) -> PageStore<StdPageFile> {
    let _ = std::fs::remove_file(path);
    let mut store = PageStore::create(StdPageFile::create(path).unwrap()).unwrap();
    let value = [7u8; 256];
    for i in 0..keys_count {
        store.insert(&key(i), &value).unwrap();
    }
    store.checkpoint(1).unwrap();
    store
}

fn pagestore(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("corekv-bench-pagestore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut loaded = store(&dir.join("loaded.pages"));
    let mut group = c.benchmark_group("pagestore_100k");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("get", |b| {
        b.iter(|| {
            i += 1;
            loaded.get(&key(i)).unwrap().expect("present")
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("range_100", |b| {
        b.iter(|| {
            i += 1;
            let start = key(i);
            let rows = loaded.range(Bound::Included(&start[..]), Bound::Unbounded, 100).unwrap();
            assert_eq!(rows.len().min(1), 1);
            rows
        })
    });
    group.throughput(Throughput::Elements(1000));
    let fresh = dir.join("fresh.pages");
    group.bench_function("insert_1000_then_checkpoint", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&fresh);
                PageStore::create(StdPageFile::create(&fresh).unwrap()).unwrap()
            },
            |mut store| {
                let value = [9u8; 256];
                for n in 0..1000 {
                    store.insert(&key(n * 97), &value).unwrap();
                }
                store.checkpoint(1).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, pagestore);
criterion_main!(benches);
