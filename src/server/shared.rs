//! What the cores share: identities, the published state (immutable, swapped
//! atomically after every applied batch), the proposal queue into the log
//! driver, and the metrics. Nothing here is locked on the data path.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::metrics::Metrics;
use crate::mvcc::Snapshot;
use crate::snapshot;
use crate::types::{Request, Response, ResponseHeader, StatusResponse};

/// A response for request `request_id` of some connection. Boxed: every
/// connection's reply channel holds room for 1,024 of them up front (a
/// Response is ~150 bytes, a box 8).
pub type Reply = (u64, Box<Response>);

/// A write on its way into the log.
pub struct Proposal {
    pub request: Request,
    /// The request as received: the log entry's payload.
    pub payload: Bytes,
    pub request_id: u64,
    pub reply: async_channel::Sender<Reply>,
    /// The core of the client connection that proposed it (None: the
    /// member's own, as a lease's expiry): the log driver follows a lone
    /// writer's core (`driver::Follow`).
    pub origin: Option<usize>,
}

/// The newest applied index held by the page store's last checkpoint and
/// by the newest snapshot file. A damaged page store is rebuilt from the
/// newest snapshot file plus the WAL after it (`server::recover`), so the
/// WAL is purged only below what both hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalCover {
    pub checkpoint: u64,
    pub snapshot_file: u64,
}

/// The state every read is served from. Published only after the entries it
/// reflects are durable, and before any of them is acknowledged: so a read
/// that starts after an acknowledgement sees that write (linearizable on a
/// single member; the cluster will add ReadIndex).
pub struct Published {
    pub snapshot: Snapshot,
    pub applied_index: u64,
    pub wal_bytes: u64,
}

pub struct Shared {
    pub cluster_id: u64,
    pub member_id: u64,
    pub raft_term: u64,
    pub published: ArcSwap<Published>,
    pub proposals: async_channel::Sender<Proposal>,
    pub metrics: Metrics,
    /// The oldest WAL segment left (segments below it were purged).
    pub wal_first_sequence: AtomicU64,
    /// What the WAL may be purged below (`driver::purge_wal`).
    pub wal_cover: std::sync::Mutex<WalCover>,
    /// Bytes of the page store file (DATA_DIR/db), as of the last checkpoint.
    pub db_bytes: AtomicU64,
    /// Recent changes for the cores' watchers.
    pub watch: super::watch::WatchLog,
    /// The leases' countdown (this member leads).
    pub lessor: super::lessor::Lessor,
    /// Which core serves each new connection.
    pub placement: super::placement::Placement,
    /// `--experimental-snapshot-stall-timeout`.
    pub snapshot_stall_timeout: std::time::Duration,
}

impl Shared {
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_term,
        }
    }

    pub fn publish(&self, published: Published) {
        self.published.store(Arc::new(published));
    }

    /// What a snapshot of `published` records about itself.
    pub fn snapshot_meta(&self, published: &Published) -> snapshot::Meta {
        snapshot::Meta {
            revision: published.snapshot.revision(),
            compact_revision: published.snapshot.compact_revision(),
            applied_index: published.applied_index,
            applied_term: self.raft_term,
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    pub fn status(&self, published: &Published) -> StatusResponse {
        StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            // etcd's DB SIZE is its backend file: here the page store's, plus
            // the WAL, which holds what the last checkpoint does not.
            db_size: (self.db_bytes.load(std::sync::atomic::Ordering::Relaxed)
                + published.wal_bytes) as i64,
            db_size_in_use: published.snapshot.size_bytes(),
            leader: self.member_id,
            raft_index: published.applied_index,
            raft_term: self.raft_term,
            raft_applied_index: published.applied_index,
            is_learner: false,
        }
    }
}
