//! Roles and elections: randomized election timeouts (§3.4), pre-vote (§9.6),
//! check-quorum (§6.2), ignoring disruptive vote requests while a leader is
//! known (§4.2.3), and leadership transfer (§3.10).
//!
//! ```text
//!              timeout              pre-vote won            votes won
//!  Follower ───────────► PreCandidate ──────────► Candidate ─────────► Leader
//!     ▲  ▲                   │  lost                 │ lost / higher term  │
//!     │  └───────────────────┘                       │                     │
//!     └──────────────────────────────────────────────┴─────────────────────┘
//!                      higher term, or check-quorum fails
//! ```

use crate::types::{LogIndex, NodeId, Term};

use super::message::{EntryPayload, Message, MessageBody, Role};
use super::progress::Progress;
use super::quorum::{self, VoteResult};
use super::{DeliberateBugKind, Node, ProposeError, Transfer};

impl Node {
    /// Followers and candidates: campaign when no leader was heard from for
    /// a randomized election timeout.
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_ticks {
            self.election_elapsed = 0;
            if self.is_promotable() {
                self.start_election();
            } else {
                self.reset_election_timer();
            }
        }
    }

    /// Only voters campaign; a learner or a removed member never does.
    pub(super) fn is_promotable(&self) -> bool {
        self.membership.voters.contains(&self.id())
    }

    fn start_election(&mut self) {
        if self.config.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate(false);
        }
    }

    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let election = self.config.election_ticks;
        self.randomized_election_ticks = election + self.next_random() % election;
    }

    /// splitmix64: deterministic per (seed, id), no global state.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whether a leader was heard from (or, for a leader, whether it led)
    /// within the minimum election timeout. Counted apart from roles: a
    /// message from another term that makes us forget the leader must not
    /// shorten the time we promised it. A member that just started counts as
    /// having heard from one, so a restart cannot shorten a lease (§6.4.1).
    pub(super) fn heard_from_leader(&self) -> bool {
        self.leader_contact_elapsed < self.config.election_ticks
    }

    /// §4.2.3: with check-quorum, such a member ignores vote requests of
    /// higher terms (unless forced by a transfer).
    pub(super) fn in_lease(&self) -> bool {
        self.config.check_quorum && self.heard_from_leader()
    }

    /// Term rules common to every message (§3.3). Returns whether the
    /// message should be handled further.
    pub(super) fn step_term(&mut self, m: &Message) -> bool {
        if m.term > self.term {
            match m.body {
                MessageBody::Vote { force, .. } if !force && self.in_lease() => return false,
                // A pre-vote changes no term, and neither does its grant.
                MessageBody::Vote { pre: true, .. } => {}
                MessageBody::VoteResponse { pre: true, granted: true } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::Snapshot { .. } => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
            return true;
        }
        if m.term < self.term {
            match m.body {
                // Tell a stale leader about the newer term so it steps down
                // (with check-quorum it would otherwise never hear of it).
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => {
                    let body = MessageBody::AppendResponse {
                        success: false,
                        index: LogIndex(0),
                        hint_index: LogIndex(0),
                        hint_term: Term(0),
                    };
                    self.send(m.from, body);
                }
                MessageBody::Vote { pre: true, .. } => {
                    self.send(m.from, MessageBody::VoteResponse { pre: true, granted: false })
                }
                _ => {}
            }
            return false;
        }
        true
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term || leader != self.leader {
            self.fail_forwarded_reads();
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role == Role::Leader {
            self.fail_pending_reads();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.self_vote_pending = false;
        self.transfer = None;
        self.reset_election_timer();
    }

    fn become_pre_candidate(&mut self) {
        self.fail_forwarded_reads();
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.self_vote_pending = false;
        self.reset_election_timer();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let body = MessageBody::Vote { pre: true, force: false, last_index, last_term };
        for id in self.other_voters() {
            self.messages.push(Message {
                from: self.id(),
                to: id,
                term: Term(self.term.0 + 1),
                body: body.clone(),
            });
        }
        self.record_vote(self.id(), true);
    }

    /// Starts a real election. The vote for ourselves counts once the new
    /// term and vote are durable (see `advance`).
    pub(super) fn become_candidate(&mut self, force: bool) {
        self.fail_forwarded_reads();
        self.role = Role::Candidate;
        self.term = Term(self.term.0 + 1);
        self.vote = Some(self.id());
        self.leader = None;
        self.votes.clear();
        self.self_vote_pending = true;
        self.reset_election_timer();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for id in self.other_voters() {
            self.send(id, MessageBody::Vote { pre: false, force, last_index, last_term });
        }
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.membership.voters.iter().copied().filter(|&id| id != self.id()).collect()
    }

    pub(super) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        self.self_vote_pending = false;
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        let next = LogIndex(self.log.last_index().0 + 1);
        let me = self.id();
        self.progress = self
            .membership
            .members()
            .filter(|&id| id != me)
            .map(|id| (id, Progress::new(next)))
            .collect();
        self.reads.reset();
        self.term_start_index = next;
        // §6.4 / §5.4.2: a no-op lets the leader commit (and learn the commit
        // index) in its own term.
        self.append_as_leader(vec![EntryPayload::Empty]);
    }

    pub(super) fn handle_vote(&mut self, m: Message) {
        let MessageBody::Vote { pre, force, last_index, last_term } = m.body else {
            unreachable!()
        };
        // §4.2.3 / §9.6: while a leader is (recently) known, no vote or
        // pre-vote goes to anyone but a transfer's target.
        let disruptive = !force && self.heard_from_leader() && (self.config.check_quorum || pre);
        let can_vote = !disruptive
            && (self.vote == Some(m.from)
                || (self.vote.is_none() && self.leader.is_none())
                || (pre && m.term > self.term));
        let log_ok = self.log.is_up_to_date(last_index, last_term)
            || self.bug(|b| b == DeliberateBugKind::VoteWithoutLogCheck);
        let granted = can_vote && log_ok;
        if granted && !pre {
            self.vote = Some(m.from);
            self.election_elapsed = 0;
        }
        // A granted pre-vote answers in the term asked about (§9.6).
        let term = if granted { m.term } else { self.term };
        self.send_after_persist(m.from, term, MessageBody::VoteResponse { pre, granted });
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, pre: bool, granted: bool) {
        let expected = if pre { Role::PreCandidate } else { Role::Candidate };
        if self.role == expected {
            self.record_vote(from, granted);
        }
    }

    pub(super) fn record_vote(&mut self, from: NodeId, granted: bool) {
        self.votes.entry(from).or_insert(granted);
        let pending_self = self.self_vote_pending;
        let me = self.id();
        let result = quorum::vote_result(&self.membership.voters, |id| {
            if id == me && pending_self {
                None
            } else {
                self.votes.get(&id).copied()
            }
        });
        match (result, self.role) {
            (VoteResult::Won, Role::PreCandidate) => self.become_candidate(false),
            (VoteResult::Won, Role::Candidate) => self.become_leader(),
            (VoteResult::Lost, _) => self.become_follower(self.term, None),
            _ => {}
        }
    }

    pub(super) fn handle_timeout_now(&mut self) {
        if self.is_promotable() && self.role != Role::Leader {
            self.become_candidate(true);
        }
    }

    /// Leader: heartbeats, check-quorum and the transfer deadline.
    pub(super) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                self.become_follower(self.term, None);
                return;
            }
        }
        if let Some(transfer) = &mut self.transfer {
            transfer.elapsed_ticks += 1;
            if transfer.elapsed_ticks >= self.config.election_ticks {
                self.transfer = None;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// §6.2: a majority was heard from since the last check. Resets the marks.
    fn quorum_active(&mut self) -> bool {
        let me = self.id();
        let active = quorum::has_quorum(&self.membership.voters, |id| {
            id == me || self.progress.get(&id).is_some_and(|p| p.recent_active)
        });
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        active
    }

    /// §3.10: bring `to` up to date, then tell it to campaign at once.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        self.check_can_propose()?;
        if to == self.id() || !self.membership.voters.contains(&to) {
            return Err(ProposeError::InvalidMembershipChange);
        }
        self.transfer = Some(Transfer { to, elapsed_ticks: 0 });
        self.reads.revoke_lease();
        self.maybe_send_timeout_now();
        Ok(())
    }

    pub(super) fn maybe_send_timeout_now(&mut self) {
        let Some(transfer) = self.transfer else { return };
        let last = self.log.last_index();
        match self.progress.get(&transfer.to) {
            Some(p) if p.match_index == last => self.send(transfer.to, MessageBody::TimeoutNow),
            Some(_) => {
                self.maybe_send_append(transfer.to, true);
            }
            None => self.transfer = None,
        }
    }
}
