//! Fault injection for the simulated world: crashes (with restarts), network
//! partitions (symmetric and asymmetric), lossy/duplicating/slow links,
//! membership changes and leadership transfers, and the healing that starts
//! the liveness phase.

use std::collections::BTreeSet;

use crate::raft::{MembershipChange, Role, SnapshotMeta};
use crate::types::NodeId;

use super::disk::SimDisk;
use super::world::{fault_interval_ms, Event, Network, World};

impl World {
    pub(super) fn fault(&mut self) {
        if self.healing_since.is_some() {
            return;
        }
        self.schedule(fault_interval_ms, Event::Fault);
        let roll = self.rng.range(0, 99);
        let injected = match roll {
            0..=11 => self.fault_crash(),
            12..=23 => self.fault_partition(),
            24..=31 => self.fault_network(),
            32..=39 => self.fault_membership(),
            40..=44 => self.fault_transfer(),
            _ => false,
        };
        if injected {
            self.stats.faults += 1;
        }
    }

    fn up_members(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, m)| m.is_up()).map(|(&id, _)| id).collect()
    }

    fn fault_crash(&mut self) -> bool {
        let up = self.up_members();
        if up.is_empty() {
            return false;
        }
        let id = self.rng.pick(&up);
        self.crash(id);
        let downtime = self.rng.range(20, 800);
        self.schedule(downtime, Event::Restart(id));
        true
    }

    fn fault_partition(&mut self) -> bool {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        let side: BTreeSet<NodeId> =
            ids.iter().copied().filter(|_| self.rng.chance(400_000)).collect();
        if side.is_empty() || side.len() == ids.len() {
            return false;
        }
        let asymmetric = self.rng.chance(300_000);
        for &a in &side {
            for &b in ids.iter().filter(|b| !side.contains(b)) {
                self.network.blocked.insert((a, b));
                if !asymmetric {
                    self.network.blocked.insert((b, a));
                }
            }
        }
        let duration = self.rng.range(50, 1000);
        self.schedule(duration, Event::Heal);
        true
    }

    fn fault_network(&mut self) -> bool {
        self.network.drop_per_million = self.rng.range(0, 100_000);
        self.network.duplicate_per_million = self.rng.range(0, 30_000);
        self.network.slow_per_million = self.rng.range(0, 100_000);
        true
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.members
            .values()
            .filter_map(|m| m.node.as_ref())
            .filter(|n| n.role() == Role::Leader)
            .max_by_key(|n| n.term())
            .map(|n| n.id())
    }

    fn fault_membership(&mut self) -> bool {
        let Some(leader) = self.leader() else { return false };
        let membership = self.members[&leader].node.as_ref().unwrap().membership().clone();
        let learner = membership.learners.iter().next().copied();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        let spare_ids = self.next_member_id <= self.config.members + 6;
        let change = if let Some(learner) = learner {
            MembershipChange::PromoteLearner(learner)
        } else if voters.len() < 5 && spare_ids && (voters.len() <= 3 || self.rng.chance(500_000)) {
            let id = NodeId(self.next_member_id);
            self.next_member_id += 1;
            self.add_member(id, SimDisk::bootstrap(SnapshotMeta::default()));
            MembershipChange::AddLearner(id)
        } else if voters.len() > 3 {
            MembershipChange::Remove(self.rng.pick(&voters))
        } else {
            return false;
        };
        let node = self.members.get_mut(&leader).unwrap().node.as_mut().unwrap();
        let accepted = node.propose_membership_change(change).is_ok();
        self.after_step(leader);
        accepted
    }

    fn fault_transfer(&mut self) -> bool {
        let Some(leader) = self.leader() else { return false };
        let node = self.members[&leader].node.as_ref().unwrap();
        let others: Vec<NodeId> =
            node.membership().voters.iter().copied().filter(|&id| id != leader).collect();
        if others.is_empty() {
            return false;
        }
        let to = self.rng.pick(&others);
        let node = self.members.get_mut(&leader).unwrap().node.as_mut().unwrap();
        let accepted = node.transfer_leader(to).is_ok();
        self.after_step(leader);
        accepted
    }

    /// A one-line-per-member picture, for liveness failures.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (id, member) in &self.members {
            let Some(node) = member.node.as_ref() else {
                out.push_str(&format!("\n    member {}: down (removed {})", id.0, member.removed));
                continue;
            };
            let log = node.log();
            out.push_str(&format!(
                "\n    member {}: {:?} term {} leader {:?} commit {} applied {} last {} snap {} \
                 voters {:?} learners {:?} writing {}",
                id.0,
                node.role(),
                node.term().0,
                node.leader().map(|l| l.0),
                log.committed.0,
                log.applied.0,
                log.last_index().0,
                log.snapshot().index.0,
                node.membership().voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                node.membership().learners.iter().map(|v| v.0).collect::<Vec<_>>(),
                member.writing.is_some()
            ));
            for other in node.membership().members() {
                if let Some(p) = node.progress(other) {
                    out.push_str(&format!(
                        "\n      progress {}: match {} next {} {:?} paused-probe {} inflight {}",
                        other.0,
                        p.match_index.0,
                        p.next_index.0,
                        p.state,
                        p.probe_sent,
                        p.inflight.len()
                    ));
                }
            }
        }
        for client in &self.clients {
            if let Some(op) = &client.outstanding {
                out.push_str(&format!(
                    "\n    client {}: seq {} {:?} since {} attempt {} target {}",
                    client.id, op.seq, op.input, op.call, op.attempt, client.target.0
                ));
            }
        }
        out
    }

    /// The fault phase ends: restart everyone, heal the network.
    pub fn heal(&mut self) {
        self.healing_since = Some(self.now);
        self.network = Network::default();
        let down: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| !m.is_up() && !m.removed)
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            self.restart(id);
        }
    }
}
