//! Linearizable reads without log writes (§6.4). Every heartbeat broadcast is
//! a numbered read round; a round is confirmed when a majority of voters
//! answered it (or a later one) in this term, which proves no newer leader
//! existed when it was sent. Reads queued before a round start are served at
//! the commit index the leader had when the round started, so one round
//! serves every read that arrived meanwhile (batching).
//!
//! A leader serves reads only after committing an entry of its own term
//! (until then its commit index may be behind). In lease mode (§6.4.1) a
//! confirmed round also grants a lease of one election timeout from when it
//! was sent, shortened by a margin; voters ignore elections for that long
//! after hearing from the leader, so no other leader can exist meanwhile.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::types::{LogIndex, NodeId};

use super::message::{MessageBody, ReadState, Role};
use super::{DeliberateBugKind, Node, ProposeError, ReadMode};

/// Unconfirmed rounds kept; check-quorum retires a cut-off leader long
/// before this many heartbeats.
const read_rounds_max: usize = 256;
/// Ticks shaved off a lease for messages delivered within one tick.
const lease_margin_ticks: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReadRequest {
    from: NodeId,
    context: u64,
}

#[derive(Clone, Debug)]
struct Round {
    number: u64,
    sent_tick: u64,
    index: LogIndex,
    requests: Vec<ReadRequest>,
}

#[derive(Clone, Debug, Default)]
pub struct ReadQueue {
    last_round: u64,
    rounds: VecDeque<Round>,
    /// The highest round each follower answered in this term.
    acknowledged: BTreeMap<NodeId, u64>,
    /// Reads waiting for the next round.
    pending: Vec<ReadRequest>,
    lease_until_tick: u64,
    lease_revoked: bool,
    /// Follower: reads forwarded to the leader, failed if the leader changes
    /// (a lost request or answer needs the driver's own timeout).
    forwarded: BTreeSet<u64>,
}

impl ReadQueue {
    /// A new term: nothing acknowledged, no lease. Round numbers keep
    /// increasing across terms.
    pub fn reset(&mut self) {
        self.rounds.clear();
        self.acknowledged.clear();
        self.pending.clear();
        self.lease_until_tick = 0;
        self.lease_revoked = false;
    }

    /// After a leadership transfer starts, another member may be elected
    /// without waiting out our lease.
    pub fn revoke_lease(&mut self) {
        self.lease_revoked = true;
    }

    fn requests_in_flight(&self) -> bool {
        self.rounds.iter().any(|r| !r.requests.is_empty())
    }

    fn queued(&self) -> usize {
        self.pending.len() + self.rounds.iter().map(|r| r.requests.len()).sum::<usize>()
    }

    pub fn check_invariants(&self) {
        assert!(self.rounds.len() <= read_rounds_max, "read rounds unbounded");
        assert!(self.forwarded.len() <= 1 << 20, "forwarded reads unbounded");
        assert!(self
            .rounds
            .iter()
            .zip(self.rounds.iter().skip(1))
            .all(|(a, b)| a.number < b.number));
        assert!(self.rounds.back().is_none_or(|r| r.number <= self.last_round));
    }
}

impl Node {
    /// Asks for a read index; the answer arrives as a `ReadState` with this
    /// context (from this member's `Ready`, possibly via the leader).
    pub fn read_index(&mut self, context: u64) -> Result<(), ProposeError> {
        if self.bug(|b| b == DeliberateBugKind::ReadWithoutReadIndex) {
            let index = Some(self.log.committed);
            self.read_states.push(ReadState { context, index });
            return Ok(());
        }
        match (self.role, self.leader) {
            (Role::Leader, _) => self.queue_read(ReadRequest { from: self.id(), context }),
            (_, Some(leader)) => {
                if self.reads.forwarded.len() >= self.config.read_requests_max {
                    return Err(ProposeError::ReadQueueFull);
                }
                self.reads.forwarded.insert(context);
                self.send(leader, MessageBody::ReadIndex { context });
                Ok(())
            }
            (_, None) => Err(ProposeError::NotLeader { leader: None }),
        }
    }

    pub(super) fn handle_read_index(&mut self, from: NodeId, context: u64) {
        let result = if self.role == Role::Leader {
            self.queue_read(ReadRequest { from, context })
        } else {
            Err(ProposeError::NotLeader { leader: self.leader })
        };
        if result.is_err() {
            self.send(from, MessageBody::ReadIndexResponse { context, index: None });
        }
    }

    fn committed_in_term(&self) -> bool {
        self.log.committed >= self.term_start_index
    }

    fn queue_read(&mut self, request: ReadRequest) -> Result<(), ProposeError> {
        if self.reads.queued() >= self.config.read_requests_max {
            return Err(ProposeError::ReadQueueFull);
        }
        let lease = self.config.read_mode == ReadMode::Lease
            && !self.reads.lease_revoked
            && self.ticks < self.reads.lease_until_tick;
        if self.committed_in_term() && lease {
            let index = self.log.committed;
            self.answer_read(request, Some(index));
            return Ok(());
        }
        self.reads.pending.push(request);
        if self.committed_in_term() && !self.reads.requests_in_flight() {
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    /// Called when this term's first entry commits: queued reads may go.
    pub(super) fn start_pending_reads(&mut self) {
        if !self.reads.pending.is_empty() {
            self.broadcast_heartbeat();
        }
    }

    /// Opens a round (the caller sends the heartbeats that carry it).
    pub(super) fn start_read_round(&mut self) -> u64 {
        self.reads.last_round += 1;
        let requests = if self.committed_in_term() {
            std::mem::take(&mut self.reads.pending)
        } else {
            Vec::new()
        };
        let round = Round {
            number: self.reads.last_round,
            sent_tick: self.ticks,
            index: self.log.committed,
            requests,
        };
        self.reads.rounds.push_back(round);
        if self.reads.rounds.len() > read_rounds_max {
            let oldest = self.reads.rounds.pop_front().expect("a round");
            for request in oldest.requests {
                self.answer_read(request, None);
            }
        }
        let number = self.reads.last_round;
        let me = self.id();
        self.acknowledge_read_round(me, number);
        number
    }

    pub(super) fn acknowledge_read_round(&mut self, from: NodeId, round: u64) {
        let acknowledged = self.reads.acknowledged.entry(from).or_insert(0);
        *acknowledged = (*acknowledged).max(round);
        let me = self.id();
        let last_round = self.reads.last_round;
        let confirmed = super::quorum::committed_index(&self.membership.voters, |id| {
            let round = if id == me { last_round } else { 0 };
            LogIndex(self.reads.acknowledged.get(&id).copied().unwrap_or(round))
        })
        .0;
        let mut more_pending = false;
        while self.reads.rounds.front().is_some_and(|r| r.number <= confirmed) {
            let round = self.reads.rounds.pop_front().expect("a round");
            let until = round.sent_tick + self.config.election_ticks - lease_margin_ticks;
            self.reads.lease_until_tick = self.reads.lease_until_tick.max(until);
            for request in round.requests {
                self.answer_read(request, Some(round.index));
            }
            more_pending = true;
        }
        let start_next = more_pending && !self.reads.pending.is_empty();
        if start_next && self.committed_in_term() && !self.reads.requests_in_flight() {
            self.broadcast_heartbeat();
        }
    }

    fn answer_read(&mut self, request: ReadRequest, index: Option<LogIndex>) {
        if request.from == self.id() {
            self.read_states.push(ReadState { context: request.context, index });
        } else {
            let body = MessageBody::ReadIndexResponse { context: request.context, index };
            self.send(request.from, body);
        }
    }

    /// The leader's answer to a forwarded read (duplicates are dropped).
    pub(super) fn handle_read_index_response(&mut self, context: u64, index: Option<LogIndex>) {
        if self.reads.forwarded.remove(&context) {
            self.read_states.push(ReadState { context, index });
        }
    }

    /// The leader we forwarded reads to is no longer ours: they fail.
    pub(super) fn fail_forwarded_reads(&mut self) {
        for context in std::mem::take(&mut self.reads.forwarded) {
            self.read_states.push(ReadState { context, index: None });
        }
    }

    /// Leadership is lost: every queued read fails.
    pub(super) fn fail_pending_reads(&mut self) {
        let mut requests = std::mem::take(&mut self.reads.pending);
        for round in std::mem::take(&mut self.reads.rounds) {
            requests.extend(round.requests);
        }
        for request in requests {
            self.answer_read(request, None);
        }
        self.reads.reset();
    }
}
