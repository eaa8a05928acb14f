//! One simulated member: the real Raft core, its simulated disk, the KV state
//! machine, and the driver loop that follows the `Ready` contract
//! (docs/raft.md) step by step.

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::{Config, Node, ReadMode, Ready, SnapshotMeta};
use crate::types::{LogIndex, NodeId};

use super::disk::SimDisk;
use super::kv::Kv;
use super::SimConfig;

pub struct Member {
    pub id: NodeId,
    pub node: Option<Node>,
    /// Incremented at every crash so events meant for the old process die.
    pub epoch: u64,
    pub disk: SimDisk,
    /// The `Ready` being persisted, with the snapshot data it installs.
    pub writing: Option<(Ready, Option<Kv>)>,
    pub kv: Kv,
    /// The last index applied to `kv` (the core's applied index runs ahead
    /// of it while a snapshot or entries handed out are being applied).
    pub kv_applied: LogIndex,
    /// Snapshots that arrived, with their data, until the core installs one.
    pub incoming_snapshots: Vec<(SnapshotMeta, Kv)>,
    /// Client writes proposed here: (client, seq), answered when applied.
    pub waiting_writes: BTreeSet<(u64, u64)>,
    /// Read contexts → (client, seq, key).
    pub pending_reads: BTreeMap<u64, (u64, u64, u64)>,
    /// Reads whose index is known, waiting for the applied index.
    pub reads_ready: Vec<(LogIndex, u64)>,
    /// Removed from the cluster and shut down for good.
    pub removed: bool,
    /// (term, was leader) after the last step, to notice new leaderships.
    pub last_leadership: Option<u64>,
}

/// Every member runs the same configuration; the seed varies the message
/// size limit (down to one entry per append, which splits a new leader's
/// no-op from the entries before it) and the in-flight window.
pub fn raft_config(id: NodeId, config: &SimConfig) -> Config {
    let mut raft = Config::new(id, config.seed);
    (raft.inflight_max, raft.append_bytes_max) = match config.seed % 3 {
        0 => (8, 16 * 1024),
        1 => (2, 1),
        _ => (64, 256),
    };
    if config.lease_reads {
        raft.read_mode = ReadMode::Lease;
    }
    raft.bug = config.bug;
    raft
}

impl Member {
    pub fn new(id: NodeId, disk: SimDisk) -> Member {
        Member {
            id,
            node: None,
            epoch: 0,
            disk,
            writing: None,
            kv: Kv::default(),
            kv_applied: LogIndex(0),
            incoming_snapshots: Vec::new(),
            waiting_writes: BTreeSet::new(),
            pending_reads: BTreeMap::new(),
            reads_ready: Vec::new(),
            removed: false,
            last_leadership: None,
        }
    }

    /// Starts the process from what its disk holds.
    pub fn start(&mut self, config: Config) {
        assert!(self.node.is_none() && !self.removed);
        self.node = Some(Node::new(config, self.disk.restored()));
        self.kv = self.disk.snapshot_kv.clone();
        self.kv_applied = self.disk.snapshot.index;
        self.last_leadership = None;
    }

    /// Kills the process. Whatever it was writing is lost or torn by the
    /// caller; everything in memory is gone.
    pub fn crash(&mut self) -> Option<(Ready, Option<Kv>)> {
        self.node = None;
        self.epoch += 1;
        self.incoming_snapshots.clear();
        self.waiting_writes.clear();
        self.pending_reads.clear();
        self.reads_ready.clear();
        self.last_leadership = None;
        self.writing.take()
    }

    pub fn is_up(&self) -> bool {
        self.node.is_some()
    }
}
