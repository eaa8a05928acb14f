//! Log replication (§3.5): the leader's appends and heartbeats, the
//! follower's consistency check, fast backtracking on rejection, and the
//! commit rule (§3.6.2: only entries of the current term commit by counting;
//! earlier ones commit with them).
//!
//! The leader sends its new entries to followers before its own write is
//! durable (§10.2.1) and counts itself in the majority only once it is.

use crate::types::{LogIndex, NodeId, Term};

use super::message::{Entry, EntryPayload, Message, MessageBody, Role};
use super::progress::ProgressState;
use super::quorum;
use super::{DeliberateBugKind, Node};

impl Node {
    pub(super) fn append_as_leader(&mut self, payloads: Vec<EntryPayload>) {
        let first = self.log.last_index().0 + 1;
        let term = self.term;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| Entry { term, index: LogIndex(first + i as u64), payload })
            .collect();
        let changes_membership =
            entries.iter().any(|e| matches!(e.payload, EntryPayload::Membership(_)));
        self.log.append(entries);
        if changes_membership {
            self.refresh_membership();
        }
        self.broadcast_append(false);
    }

    pub(super) fn broadcast_append(&mut self, send_if_empty: bool) {
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for id in followers {
            if send_if_empty {
                self.maybe_send_append(id, true);
            }
            self.send_pending(id);
        }
    }

    /// Streams what the follower lacks, as far as its window allows.
    pub(super) fn send_pending(&mut self, to: NodeId) {
        loop {
            let Some(progress) = self.progress.get(&to) else { return };
            if progress.next_index > self.log.last_index() {
                return;
            }
            let replicate = progress.state == ProgressState::Replicate;
            if !self.maybe_send_append(to, false) || !replicate {
                return;
            }
        }
    }

    /// Sends one append (or asks for a snapshot when the entries the
    /// follower needs are compacted). Returns whether a message went out.
    pub(super) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let inflight_max = self.config.inflight_max;
        let Some(progress) = self.progress.get_mut(&to) else { return false };
        if progress.is_paused(inflight_max) {
            return false;
        }
        let snapshot = self.log.snapshot();
        if progress.next_index <= snapshot.index {
            let meta = snapshot.clone();
            progress.become_snapshot(meta.index);
            self.send(to, MessageBody::Snapshot { meta });
            return true;
        }
        let prev_index = LogIndex(progress.next_index.0 - 1);
        let prev_term = self.log.term(prev_index).expect("prev entry of an append");
        let entries = if progress.next_index <= self.log.last_index() {
            self.log.slice(progress.next_index, self.config.append_bytes_max)
        } else {
            Vec::new()
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        progress.sent(LogIndex(prev_index.0 + entries.len() as u64));
        let commit = self.log.committed;
        self.send(to, MessageBody::Append { prev_index, prev_term, entries, commit });
        true
    }

    /// One heartbeat round: also the read round that confirms leadership for
    /// the reads queued before it (§6.4).
    pub(super) fn broadcast_heartbeat(&mut self) {
        let round = self.start_read_round();
        let committed = self.log.committed;
        let beats: Vec<(NodeId, LogIndex)> =
            self.progress.iter().map(|(&id, p)| (id, p.match_index.min(committed))).collect();
        for (id, commit) in beats {
            self.send(id, MessageBody::Heartbeat { commit, read_round: round });
        }
    }

    /// Follower side of Append and Heartbeat (the term already matches).
    pub(super) fn handle_from_leader(&mut self, m: Message) {
        assert!(self.role != Role::Leader, "two leaders in term {}", self.term.0);
        if self.role != Role::Follower {
            self.become_follower(m.term, Some(m.from));
        }
        self.leader = Some(m.from);
        self.election_elapsed = 0;
        self.leader_contact_elapsed = 0;
        match m.body {
            MessageBody::Append { prev_index, prev_term, entries, commit } => {
                self.handle_append(m.from, prev_index, prev_term, &entries, commit)
            }
            MessageBody::Heartbeat { commit, read_round } => {
                self.log.commit_to(commit.min(self.log.last_index()).max(self.log.committed));
                self.send(m.from, MessageBody::HeartbeatResponse { read_round });
            }
            _ => unreachable!(),
        }
    }

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
        commit: LogIndex,
    ) {
        let term = self.term;
        if prev_index < self.log.committed {
            let index = self.log.committed;
            let body = success(index);
            self.send_after_persist(leader, term, body);
            return;
        }
        let truncations = self.log.truncations;
        match self.log.try_append(prev_index, prev_term, entries) {
            Some(last_new) => {
                let changes_membership =
                    entries.iter().any(|e| matches!(e.payload, EntryPayload::Membership(_)));
                if changes_membership || truncations != self.log.truncations {
                    self.refresh_membership();
                }
                self.log.commit_to(commit.min(last_new).max(self.log.committed));
                self.send_after_persist(leader, term, success(last_new));
            }
            None => {
                let guess = prev_index.min(self.log.last_index());
                let (hint_index, hint_term) = self.find_conflict_by_term(guess, prev_term);
                let body = MessageBody::AppendResponse {
                    success: false,
                    index: prev_index,
                    hint_index,
                    hint_term,
                };
                self.send_after_persist(leader, term, body);
            }
        }
    }

    /// The largest index ≤ `index` whose term is ≤ `term` (or the compaction
    /// point): where the two logs may match. Skips a whole divergent term per
    /// round trip instead of one entry.
    pub(super) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut index = index;
        loop {
            match self.log.term(index) {
                Some(t) if t <= term => return (index, t),
                Some(_) => index = LogIndex(index.0 - 1),
                None => return (index, Term(0)),
            }
        }
    }

    /// Leader side of AppendResponse and HeartbeatResponse.
    pub(super) fn handle_from_follower(&mut self, m: Message) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&m.from) else { return };
        progress.recent_active = true;
        match m.body {
            MessageBody::AppendResponse { success: true, index, .. } => {
                if progress.acknowledged(index) {
                    self.maybe_commit();
                    if self.transfer.is_some_and(|t| t.to == m.from) {
                        self.maybe_send_timeout_now();
                    }
                }
                self.send_pending(m.from);
            }
            MessageBody::AppendResponse { success: false, index, hint_index, hint_term } => {
                let (matching, _) = self.find_conflict_by_term(hint_index, hint_term);
                let progress = self.progress.get_mut(&m.from).expect("progress");
                if progress.rejected(index, LogIndex(matching.0 + 1)) {
                    self.maybe_send_append(m.from, true);
                }
            }
            MessageBody::HeartbeatResponse { read_round } => {
                progress.probe_sent = false;
                // Appends may have been lost: free one slot so the window can
                // never stay full; a gap makes the follower reject, and the
                // rejection sends us back to probing.
                let window_full = progress.inflight.len() >= self.config.inflight_max;
                if progress.state == ProgressState::Replicate && window_full {
                    progress.inflight.pop_front();
                }
                // An idle leader must still repair a follower whose appends
                // were lost: an append at next - 1 either is acknowledged or
                // exposes the gap with a rejection (which probes).
                if progress.match_index < self.log.last_index() {
                    self.maybe_send_append(m.from, true);
                }
                self.send_pending(m.from);
                self.acknowledge_read_round(m.from, read_round);
            }
            _ => unreachable!(),
        }
    }

    /// Commits what a majority of voters hold, if it is of this term.
    pub(super) fn maybe_commit(&mut self) {
        let me = self.id();
        let persisted = self.log.persisted;
        let majority = quorum::committed_index(&self.membership.voters, |id| {
            if id == me {
                persisted
            } else {
                self.progress.get(&id).map_or(LogIndex(0), |p| p.match_index)
            }
        });
        if majority <= self.log.committed {
            return;
        }
        let current_term = self.log.term(majority) == Some(self.term);
        if !current_term && !self.bug(|b| b == DeliberateBugKind::CommitOldTermsByCounting) {
            return;
        }
        let first_in_term = self.log.committed < self.term_start_index;
        self.log.commit_to(majority);
        if first_in_term && self.log.committed >= self.term_start_index {
            self.start_pending_reads();
        }
        self.broadcast_append(true);
        // §4.2.2: a leader removed from the configuration steps down once
        // the change is committed, after telling the others it is, and hands
        // over to the most up-to-date voter (§3.10) rather than leaving the
        // cluster to wait out its lease.
        if !self.is_promotable() && self.log.committed >= self.membership_index {
            let successor = self
                .progress
                .iter()
                .filter(|(id, _)| self.membership.voters.contains(id))
                .max_by_key(|(_, p)| p.match_index)
                .map(|(&id, _)| id);
            if let Some(successor) = successor {
                self.send(successor, MessageBody::TimeoutNow);
            }
            self.become_follower(self.term, None);
        }
    }
}

fn success(index: LogIndex) -> MessageBody {
    MessageBody::AppendResponse {
        success: true,
        index,
        hint_index: LogIndex(0),
        hint_term: Term(0),
    }
}
