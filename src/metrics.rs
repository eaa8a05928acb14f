//! Counters kept from day one, per core (each core writes only its own, on its
//! own cache line) and merged when read. /metrics will serve them with etcd's
//! names; `snapshot()` is the merge.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What one core counts.
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct CoreCounters {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub requests_read: AtomicU64,
    pub requests_write: AtomicU64,
    pub requests_failed: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Watch responses queued to clients.
    pub watch_responses: AtomicU64,
    /// Times a watcher fell behind the event log and read history instead.
    pub watch_catch_ups: AtomicU64,
    /// Times a connection's watches found its queue full (a slow client).
    pub watch_slow_connections: AtomicU64,
    /// Reads that needed a page from the disk, handed to a blocking thread.
    pub reads_from_disk: AtomicU64,
}

/// What the log driver counts (one writer: the core the driver is on).
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct LogCounters {
    pub batches: AtomicU64,
    pub entries: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
}

/// The member's own snapshots.
#[derive(Default, Debug)]
pub struct SnapshotCounters {
    /// Page store checkpoints completed.
    pub checkpoints: AtomicU64,
    /// Times the log driver stopped taking writes for a checkpoint to catch up.
    pub write_stalls: AtomicU64,
    pub taken: AtomicU64,
    pub bytes: AtomicU64,
    pub wal_segments_purged: AtomicU64,
}

#[derive(Debug)]
pub struct Metrics {
    pub cores: Vec<CoreCounters>,
    pub log: LogCounters,
    pub snapshots: SnapshotCounters,
}

/// Merged totals.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub requests_read: u64,
    pub requests_write: u64,
    pub requests_failed: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub batches: u64,
    pub entries: u64,
    pub wal_bytes: u64,
    pub wal_syncs: u64,
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Metrics {
    pub fn new(cores: usize) -> Metrics {
        Metrics {
            cores: (0..cores).map(|_| CoreCounters::default()).collect(),
            log: LogCounters::default(),
            snapshots: SnapshotCounters::default(),
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for c in &self.cores {
            t.connections_accepted += c.connections_accepted.load(Relaxed);
            t.connections_open += c.connections_open.load(Relaxed);
            t.requests_read += c.requests_read.load(Relaxed);
            t.requests_write += c.requests_write.load(Relaxed);
            t.requests_failed += c.requests_failed.load(Relaxed);
            t.bytes_received += c.bytes_received.load(Relaxed);
            t.bytes_sent += c.bytes_sent.load(Relaxed);
        }
        t.batches = self.log.batches.load(Relaxed);
        t.entries = self.log.entries.load(Relaxed);
        t.wal_bytes = self.log.wal_bytes.load(Relaxed);
        t.wal_syncs = self.log.wal_syncs.load(Relaxed);
        t
    }
}
