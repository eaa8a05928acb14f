//! Criterion benches of the hot paths: WAL append (with a real fdatasync) at
//! several batch sizes, MVCC put and range, protocol encode/decode.
//! Run: cargo bench --bench hot_paths

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use flatbuffers::FlatBufferBuilder;

use corekv::disk::{block_on_ready, StdDisk};
use corekv::mvcc::Store;
use corekv::protocol::codec;
use corekv::types::*;
use corekv::wal::{self, EntryRef, WalWriter};

fn key(i: u64) -> Bytes {
    Bytes::from(format!("{i:032}"))
}

fn put_request(i: u64) -> Request {
    Request::Put(PutRequest {
        key: key(i),
        value: Bytes::from(vec![b'v'; 256]),
        ..Default::default()
    })
}

fn wal_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append");
    group.sample_size(20);
    let dir = std::env::temp_dir().join(format!("corekv-bench-wal-{}", std::process::id()));
    let payload = {
        let mut fbb = FlatBufferBuilder::new();
        codec::encode_request(&mut fbb, &put_request(1)).to_vec()
    };
    for batch in [1usize, 16, 256] {
        let _ = std::fs::remove_dir_all(&dir);
        let segment = 256 * 1024 * 1024;
        let recovered = wal::recover(&dir, segment, |_, _, _| {}).unwrap();
        let mut writer =
            block_on_ready(WalWriter::open(StdDisk, &dir, segment, 0, recovered.tail)).unwrap();
        let mut next = 1u64;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let entries: Vec<_> = (0..batch as u64)
                    .map(|i| EntryRef { term: 1, index: next + i, payload: &payload })
                    .collect();
                block_on_ready(writer.append(&entries)).unwrap();
                next += batch as u64;
            })
        });
        block_on_ready(writer.close()).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

fn mvcc(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc");
    let mut store = Store::new();
    for i in 0..10_000 {
        store.apply(&put_request(i)).unwrap();
    }
    let mut i = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_10k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            store.apply(&put_request(i)).unwrap()
        })
    });
    group.bench_function("put_then_publish_every_32", |b| {
        b.iter_batched(
            || (),
            |_| {
                for _ in 0..32 {
                    i = (i + 7919) % 10_000;
                    store.apply(&put_request(i)).unwrap();
                }
                store.snapshot()
            },
            BatchSize::SmallInput,
        )
    });
    let snapshot = store.snapshot();
    group.bench_function("get_one_key", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            snapshot.range(&RangeRequest { key: key(i), ..Default::default() }).unwrap()
        })
    });
    group.bench_function("range_100_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % 9_000;
            let request = RangeRequest {
                key: key(i),
                range_end: Bytes::from_static(b"\0"),
                limit: 100,
                ..Default::default()
            };
            snapshot.range(&request).unwrap()
        })
    });
    group.finish();
}

fn protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    let mut fbb = FlatBufferBuilder::new();
    let request = put_request(42);
    group.bench_function("encode_put", |b| {
        b.iter(|| codec::encode_request(&mut fbb, &request).len())
    });
    let encoded = Bytes::copy_from_slice(codec::encode_request(&mut fbb, &request));
    group.bench_function("decode_put", |b| b.iter(|| codec::decode_request(&encoded).unwrap()));
    let kvs: Vec<KeyValue> = (0..100)
        .map(|i| KeyValue {
            key: key(i),
            create_revision: 2,
            mod_revision: 3,
            version: 1,
            value: Bytes::from(vec![b'v'; 256]),
            lease: 0,
        })
        .collect();
    let response = Response {
        header: ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 1 },
        result: Ok(ResponseBody::Range(RangeResponse {
            kvs,
            more: false,
            count: 100,
            header_revision: 3,
        })),
    };
    group.bench_function("encode_range_100", |b| {
        b.iter(|| codec::encode_response(&mut fbb, &response).len())
    });
    let encoded = Bytes::copy_from_slice(codec::encode_response(&mut fbb, &response));
    group.bench_function("decode_range_100", |b| {
        b.iter(|| codec::decode_response(&encoded).unwrap())
    });
    group.finish();
}

criterion_group!(benches, wal_append, mvcc, protocol);
criterion_main!(benches);
