//! Snapshots (§5): the driver compacts the log behind a snapshot of its
//! state machine (`compact`); a leader whose follower needs compacted entries
//! sends a `Snapshot` message naming its compaction point, whose data the
//! driver ships (in chunks) and steps into the follower once complete; the
//! follower installs it and answers like an append; the leader's driver
//! reports a failed transfer with `report_snapshot`.

use crate::types::{LogIndex, NodeId, Term};

use super::message::{MessageBody, Role, SnapshotMeta};
use super::Node;

impl Node {
    /// The state machine has a durable snapshot at `index` (≤ applied):
    /// entries up to it may be forgotten.
    pub fn compact(&mut self, index: LogIndex) {
        self.log.compact(index);
    }

    /// Leader: the snapshot transfer to `to` ended. After a success the
    /// follower is probed just past the snapshot (its answer to the
    /// snapshot may be lost); after a failure, from its last known match (a
    /// fresh snapshot goes out if still needed).
    /// `index` is the index of the snapshot shipped; reports of transfers
    /// older than the one awaited are ignored.
    pub fn report_snapshot(&mut self, to: NodeId, index: LogIndex, success: bool) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&to) {
            if let super::ProgressState::Snapshot(at) = progress.state {
                if index < at {
                    return;
                }
                if success {
                    progress.next_index = progress.next_index.max(LogIndex(index.0 + 1));
                }
                progress.become_probe();
            }
        }
    }

    pub(super) fn handle_snapshot(&mut self, leader: NodeId, meta: SnapshotMeta) {
        assert!(self.role != Role::Leader, "two leaders in term {}", self.term.0);
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
        self.leader_contact_elapsed = 0;
        let term = self.term;
        let index = if meta.index <= self.log.committed {
            self.log.committed
        } else {
            let index = meta.index;
            self.log.install(meta.clone());
            self.pending_snapshot = Some(meta);
            self.refresh_membership();
            index
        };
        let body = MessageBody::AppendResponse {
            success: true,
            index,
            hint_index: LogIndex(0),
            hint_term: Term(0),
        };
        self.send_after_persist(leader, term, body);
    }
}
