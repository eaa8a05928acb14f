//! A fault-free, zero-latency cluster for measuring the Raft core alone:
//! messages go through an in-memory FIFO queue (the simulator's network with
//! no delay, loss or partitions) and every `Ready` is persisted instantly.
//! Used by benches/raft.rs.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::raft::{Config, Membership, Message, Node, Restored, Role, SnapshotMeta};
use crate::types::NodeId;

pub struct Pipeline {
    nodes: Vec<Node>,
    network: VecDeque<Message>,
    pub applied: u64,
}

impl Pipeline {
    /// A cluster of `members` voters with a leader elected.
    pub fn new(members: u64) -> Pipeline {
        let voters = Membership::with_voters((1..=members).map(NodeId));
        let nodes = (1..=members)
            .map(|id| {
                let mut config = Config::new(NodeId(id), 7);
                config.inflight_max = 256;
                let snapshot =
                    SnapshotMeta { membership: voters.clone(), ..SnapshotMeta::default() };
                Node::new(config, Restored { snapshot, ..Restored::default() })
            })
            .collect();
        let mut pipeline = Pipeline { nodes, network: VecDeque::new(), applied: 0 };
        for _ in 0..1000 {
            if pipeline.leader().is_some() {
                break;
            }
            for node in &mut pipeline.nodes {
                node.tick();
            }
            pipeline.run_until_quiet();
        }
        pipeline.leader().expect("a leader within 1000 ticks");
        pipeline.applied = 0;
        pipeline
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.role() == Role::Leader)
    }

    fn index(id: NodeId) -> usize {
        id.0 as usize - 1
    }

    /// Processes readies and messages until nothing is left to do.
    pub fn run_until_quiet(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].has_ready() {
                    continue;
                }
                busy = true;
                let ready = self.nodes[i].ready();
                self.network.extend(ready.messages.iter().cloned());
                self.network.extend(ready.messages_after_persist.iter().cloned());
                if self.nodes[i].role() == Role::Leader {
                    self.applied += ready.committed_entries.len() as u64;
                }
                self.nodes[i].advance(&ready);
            }
            while let Some(message) = self.network.pop_front() {
                busy = true;
                let to = Pipeline::index(message.to);
                self.nodes[to].step(message);
            }
            if !busy {
                return;
            }
        }
    }

    /// Proposes `batch` commands at the leader and runs until they apply
    /// there. Returns how many entries the leader applied.
    pub fn commit_batch(&mut self, batch: &[Bytes]) -> u64 {
        let before = self.applied;
        let leader = self.leader().expect("a leader");
        self.nodes[leader].propose(batch.to_vec()).expect("the leader accepts");
        self.run_until_quiet();
        // A driver compacts behind its state machine's snapshots; without
        // it the log would grow for the whole benchmark.
        for node in &mut self.nodes {
            let log = node.log();
            if log.applied.0 >= log.snapshot().index.0 + 4096 {
                node.compact(log.applied);
            }
        }
        self.applied - before
    }
}
