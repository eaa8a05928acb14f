//! The Raft consensus core: a pure, deterministic state machine in the style
//! of etcd-raft's RawNode. No I/O, clocks, threads or global randomness: time
//! is `tick()`, randomness comes from `Config::seed`, and everything the
//! outside world must do is handed out as a `Ready` (docs/raft.md states the
//! contract as numbered steps).
//!
//! Split by concern: `log` (entries and positions), `progress` (the leader's
//! view of followers), `quorum` (majority arithmetic), `election` (roles,
//! votes, pre-vote, check-quorum, leadership transfer), `replication`
//! (appends, heartbeats, commit), `read_index` (linearizable reads),
//! `membership` (one change at a time) and `snapshot` (install, compact).

mod election;
mod log;
mod membership;
mod message;
mod progress;
pub mod quorum;
mod read_index;
mod replication;
mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::{LogIndex, NodeId, Term};

pub use log::RaftLog;
pub use message::{
    Entry, EntryPayload, HardState, Membership, MembershipChange, Message, MessageBody, ReadState,
    Ready, Role, SnapshotMeta,
};
pub use progress::{Progress, ProgressState};
use read_index::ReadQueue;

/// How the leader confirms it is still the leader before serving a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: one heartbeat round acknowledged by a majority (§6.4).
    Safe,
    /// Lease read: no round trip while a majority acknowledged a heartbeat
    /// sent less than an election timeout ago (§6.4.1). Needs check-quorum and
    /// clocks that tick at the same rate.
    Lease,
}

/// Deliberately broken rules, for proving that the simulator's checkers
/// catch real bugs (tests/sim_catches_bugs.rs). Never set outside tests.
#[cfg(feature = "sim")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliberateBug {
    /// Commit entries of earlier terms by counting replicas (breaks §3.6.2).
    CommitOldTermsByCounting,
    /// Grant votes without checking the candidate's log (breaks §3.6.1).
    VoteWithoutLogCheck,
    /// Answer reads at once with the local commit index, on any member,
    /// without confirming leadership (§6.4).
    ReadWithoutReadIndex,
    /// Leave the vote out of the persisted hard state (breaks §3.8).
    SkipPersistingVote,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Followers wait a random number of ticks in [election, 2 × election).
    pub election_ticks: u64,
    pub heartbeat_ticks: u64,
    /// Appends in flight per follower in Replicate state.
    pub inflight_max: usize,
    /// Entry bytes per append message (at least one entry is always sent).
    pub append_bytes_max: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub read_mode: ReadMode,
    /// Read requests queued at a leader before new ones are refused.
    pub read_requests_max: usize,
    pub seed: u64,
    #[cfg(feature = "sim")]
    pub bug: Option<DeliberateBug>,
}

impl Config {
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            inflight_max: 64,
            append_bytes_max: 1 << 20,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            read_requests_max: 4096,
            seed,
            #[cfg(feature = "sim")]
            bug: None,
        }
    }

    fn validate(&self) {
        assert!(self.id != NodeId(0), "node id 0 is reserved");
        assert!(self.heartbeat_ticks >= 1 && self.election_ticks > self.heartbeat_ticks);
        assert!(self.inflight_max >= 1 && self.append_bytes_max >= 1);
        assert!(
            self.read_mode == ReadMode::Safe || self.check_quorum,
            "lease reads need check-quorum"
        );
    }
}

/// What a member's storage held at start.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The compaction point; for a new cluster, index 0 with the initial
    /// voters; for a member about to be added, index 0 and no members.
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    TransferInProgress,
    /// A membership change is not yet committed, or this leader has not yet
    /// committed an entry of its term (docs/raft.md, "Membership").
    MembershipChangePending,
    InvalidMembershipChange,
    ReadQueueFull,
}

#[derive(Clone, Copy, Debug)]
struct Transfer {
    to: NodeId,
    elapsed_ticks: u64,
}

pub struct Node {
    config: Config,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The configuration in force: the latest in the log (§4.1).
    membership: Membership,
    membership_index: LogIndex,
    /// Leader only: every other member's log.
    progress: BTreeMap<NodeId, Progress>,
    /// Candidate/pre-candidate: the answers so far.
    votes: BTreeMap<NodeId, bool>,
    /// Candidate: our own vote counts only once it is durable.
    self_vote_pending: bool,
    /// Leader: the index of this term's no-op.
    term_start_index: LogIndex,
    ticks: u64,
    election_elapsed: u64,
    /// Ticks since a leader's Append/Heartbeat/Snapshot (0 while leading).
    leader_contact_elapsed: u64,
    heartbeat_elapsed: u64,
    randomized_election_ticks: u64,
    rng: u64,
    transfer: Option<Transfer>,
    reads: ReadQueue,
    messages: Vec<Message>,
    messages_after_persist: Vec<Message>,
    read_states: Vec<ReadState>,
    pending_snapshot: Option<SnapshotMeta>,
    persisted_hard_state: HardState,
    awaiting_advance: bool,
}

impl Node {
    pub fn new(config: Config, restored: Restored) -> Node {
        config.validate();
        let log = RaftLog::restore(restored.snapshot, restored.entries, restored.hard_state.commit);
        let mut node = Node {
            term: restored.hard_state.term,
            vote: restored.hard_state.vote,
            role: Role::Follower,
            leader: None,
            membership: Membership::default(),
            membership_index: LogIndex(0),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            self_vote_pending: false,
            term_start_index: LogIndex(0),
            ticks: 0,
            election_elapsed: 0,
            leader_contact_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: 0,
            rng: config.seed ^ config.id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            transfer: None,
            reads: ReadQueue::default(),
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            read_states: Vec::new(),
            pending_snapshot: None,
            persisted_hard_state: restored.hard_state,
            awaiting_advance: false,
            log,
            config,
        };
        node.persisted_hard_state = node.hard_state_to_persist();
        node.refresh_membership();
        node.reset_election_timer();
        node.check_invariants();
        node
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.leader_contact_elapsed += 1;
        if self.role == Role::Leader {
            self.leader_contact_elapsed = 0;
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Appends commands to the leader's log. Returns the index of the first.
    pub fn propose(&mut self, commands: Vec<Bytes>) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        let first = LogIndex(self.log.last_index().0 + 1);
        let payloads = commands.into_iter().map(EntryPayload::Normal).collect();
        self.append_as_leader(payloads);
        Ok(first)
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        Ok(())
    }

    /// The hard state as it will be written (a deliberate bug may drop the vote).
    fn hard_state_to_persist(&self) -> HardState {
        let vote =
            if self.bug(|b| b == DeliberateBugKind::SkipPersistingVote) { None } else { self.vote };
        HardState { term: self.term, vote, commit: self.log.committed }
    }

    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || !self.messages_after_persist.is_empty()
            || !self.read_states.is_empty()
            || self.pending_snapshot.is_some()
            || !self.log.unstable().is_empty()
            || !self.log.to_apply().is_empty()
            || self.hard_state_to_persist() != self.persisted_hard_state
    }

    /// What the driver must do now; call `advance` when it is done.
    pub fn ready(&mut self) -> Ready {
        assert!(!self.awaiting_advance, "ready() called twice without advance()");
        self.awaiting_advance = true;
        let hard_state = self.hard_state_to_persist();
        Ready {
            messages: std::mem::take(&mut self.messages),
            snapshot: self.pending_snapshot.take(),
            entries: self.log.unstable().to_vec(),
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            messages_after_persist: std::mem::take(&mut self.messages_after_persist),
            committed_entries: self.log.to_apply().to_vec(),
            read_states: std::mem::take(&mut self.read_states),
        }
    }

    /// The driver has done everything `ready` asked.
    pub fn advance(&mut self, ready: &Ready) {
        assert!(self.awaiting_advance, "advance() without ready()");
        self.awaiting_advance = false;
        if let Some(last) = ready.entries.last() {
            self.log.persisted_to(last.index, last.term);
        }
        if let Some(hard_state) = ready.hard_state {
            self.persisted_hard_state = hard_state;
        }
        if let Some(last) = ready.committed_entries.last() {
            self.log.applied = self.log.applied.max(last.index);
        }
        if self.self_vote_pending && self.persisted_hard_state.term == self.term {
            self.self_vote_pending = false;
            if self.role == Role::Candidate {
                self.record_vote(self.id(), true);
            }
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// The outside world's messages (and a completed snapshot transfer).
    pub fn step(&mut self, message: Message) {
        assert_eq!(message.to, self.id(), "message for another member");
        if !self.step_term(&message) {
            return;
        }
        match message.body {
            MessageBody::Vote { .. } => self.handle_vote(message),
            MessageBody::VoteResponse { pre, granted } => {
                self.handle_vote_response(message.from, pre, granted)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(),
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => {
                self.handle_from_leader(message)
            }
            MessageBody::AppendResponse { .. } | MessageBody::HeartbeatResponse { .. } => {
                self.handle_from_follower(message)
            }
            MessageBody::ReadIndex { context } => self.handle_read_index(message.from, context),
            MessageBody::ReadIndexResponse { context, index } => {
                self.handle_read_index_response(context, index)
            }
            MessageBody::Snapshot { meta } => self.handle_snapshot(message.from, meta),
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.messages.push(Message { from: self.id(), to, term: self.term, body });
    }

    fn send_after_persist(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.messages_after_persist.push(Message { from: self.id(), to, term, body });
    }

    #[cfg(feature = "sim")]
    fn bug(&self, is: impl Fn(DeliberateBugKind) -> bool) -> bool {
        self.config.bug.is_some_and(is)
    }

    #[cfg(not(feature = "sim"))]
    fn bug(&self, _is: impl Fn(DeliberateBugKind) -> bool) -> bool {
        false
    }

    /// Runs every stateful type's invariants; tests and the simulator call
    /// this after every step.
    pub fn check_invariants(&self) {
        self.log.check_invariants();
        self.membership.check_invariants();
        assert_eq!(self.membership, self.log.membership_at(self.log.last_index()));
        assert!(self.persisted_hard_state.term <= self.term, "persisted term ahead of memory");
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.id()));
                assert_eq!(self.vote, Some(self.id()), "a leader voted for itself");
                let start = self.term_start_index;
                assert!(
                    start <= self.log.snapshot().index || self.log.term(start) == Some(self.term),
                    "this term's no-op is in the log"
                );
                for (id, progress) in &self.progress {
                    assert!(self.membership.contains(*id), "progress for a non-member");
                    progress.check_invariants(self.config.inflight_max);
                    assert!(progress.match_index <= self.log.last_index());
                }
            }
            _ => {
                assert!(self.progress.is_empty(), "progress kept by a non-leader");
                assert!(self.transfer.is_none());
            }
        }
        if self.role == Role::Candidate {
            assert_eq!(self.vote, Some(self.id()), "a candidate voted for itself");
        }
        self.reads.check_invariants();
    }
}

#[cfg(feature = "sim")]
type DeliberateBugKind = DeliberateBug;

/// Without the simulator there are no bugs to select; this stands in.
#[cfg(not(feature = "sim"))]
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeliberateBugKind {
    CommitOldTermsByCounting,
    VoteWithoutLogCheck,
    ReadWithoutReadIndex,
    SkipPersistingVote,
}
