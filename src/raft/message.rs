//! What the Raft core exchanges with the outside: log entries, messages
//! between members, the hard state that must survive a crash, snapshot
//! metadata, and the `Ready` batch that tells the driver what to do next.
//!
//! Entries carry the full membership (not a delta) when they change it, so the
//! configuration in force is always "the latest membership entry in the log,
//! else the snapshot's" and never needs replaying deltas.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::types::{LogIndex, NodeId, Term};

/// The voting and non-voting members of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), learners: BTreeSet::new() }
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member that receives the log, voters first, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    pub fn check_invariants(&self) {
        assert!(self.voters.is_disjoint(&self.learners), "a member is both voter and learner");
    }
}

/// One membership change, applied one at a time (docs/raft.md, "Membership").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MembershipChange {
    AddVoter(NodeId),
    AddLearner(NodeId),
    PromoteLearner(NodeId),
    Remove(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryPayload {
    /// The no-op a new leader appends at the start of its term (§5.4.2 / §6.4).
    Empty,
    /// A state machine command, opaque to Raft.
    Normal(Bytes),
    /// The complete membership after one change; in force once appended.
    Membership(Membership),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: EntryPayload,
}

impl Entry {
    /// Bytes counted against message size limits.
    pub fn size_bytes(&self) -> usize {
        24 + match &self.payload {
            EntryPayload::Empty => 0,
            EntryPayload::Normal(data) => data.len(),
            EntryPayload::Membership(m) => 8 * (m.voters.len() + m.learners.len()),
        }
    }
}

/// What must be on stable storage before certain messages may be sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
}

/// The point a log was compacted to: the state machine's snapshot stands in
/// for every entry up to and including `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub membership: Membership,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote (or a pre-vote, §9.6, which changes no state). `force`
    /// marks a leadership transfer, which voters honour even in a leader's
    /// lease (§3.10).
    Vote {
        pre: bool,
        force: bool,
        last_index: LogIndex,
        last_term: Term,
    },
    VoteResponse {
        pre: bool,
        granted: bool,
    },
    /// AppendEntries. `commit` is the leader's commit index.
    Append {
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
    },
    /// Success: `index` is the follower's last index matching the leader.
    /// Rejection: `index` is the rejected prev_index and the hint says where
    /// the follower's log can match (fast backtracking, §5.3 / etcd-raft).
    AppendResponse {
        success: bool,
        index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    },
    /// Heartbeats carry a commit index the follower can safely use and the
    /// number of the read round they confirm (§6.4).
    Heartbeat {
        commit: LogIndex,
        read_round: u64,
    },
    HeartbeatResponse {
        read_round: u64,
    },
    /// Leadership transfer: campaign now (§3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of its client.
    ReadIndex {
        context: u64,
    },
    /// `index` is None when the leader could not serve the read.
    ReadIndexResponse {
        context: u64,
        index: Option<LogIndex>,
    },
    /// InstallSnapshot. The core only names the snapshot; the driver ships
    /// the state machine's data (in chunks) and steps this message into the
    /// receiver once all of it has arrived.
    Snapshot {
        meta: SnapshotMeta,
    },
}

impl MessageBody {
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::Vote { pre: true, .. } => "PreVote",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { pre: true, .. } => "PreVoteResponse",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::Snapshot { .. } => "Snapshot",
        }
    }
}

/// A linearizable read may be served once the state machine has applied
/// `index` (§6.4). `index` is None when the read failed (leadership lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub context: u64,
    pub index: Option<LogIndex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Everything the driver must do, in this order (docs/raft.md, "The Ready
/// contract"):
/// 1. send `messages` now (the leader's appends, in parallel with its write);
/// 2. persist `snapshot`, then `entries` (truncating the stored log at the
///    first entry's index), then `hard_state`, and make them durable;
/// 3. send `messages_after_persist`;
/// 4. apply `committed_entries` in order (after restoring `snapshot` if any);
/// 5. serve `read_states` once the applied index reaches theirs;
/// 6. call `advance(ready)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub messages: Vec<Message>,
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub messages_after_persist: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// Whether anything needs persisting before `messages_after_persist`.
    pub fn must_persist(&self) -> bool {
        self.snapshot.is_some() || !self.entries.is_empty() || self.hard_state.is_some()
    }
}
