//! Committed entries per second through a 3-member cluster of the pure Raft
//! core (no I/O): proposals at the leader, messages over the simulator's
//! in-memory network with no faults, instant persistence. Batch sizes 1, 16
//! and 256 entries of 64 bytes. Target (issue 3): ≥ 1,000,000 entries/s at
//! batch 256 on one core.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use corekv::sim::pipeline::Pipeline;

fn committed_entries(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_3_members_commit");
    for batch_size in [1usize, 16, 256] {
        let payload = Bytes::from(vec![7u8; 64]);
        let batch: Vec<Bytes> = (0..batch_size).map(|_| payload.clone()).collect();
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch_size), &batch, |b, batch| {
            let mut pipeline = Pipeline::new(3);
            b.iter(|| {
                let applied = pipeline.commit_batch(batch);
                assert_eq!(applied, batch.len() as u64);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, committed_entries);
criterion_main!(benches);
