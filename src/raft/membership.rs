//! Membership changes, one server at a time (§4.1–§4.3):
//!
//! 1. A change is an entry holding the complete new membership; every member
//!    uses the latest membership in its log, committed or not, from the
//!    moment it is appended (and falls back to the previous one if that
//!    entry is truncated away).
//! 2. A leader proposes a change only when the previous one is committed and
//!    it has committed an entry of its own term (the no-op), which closes the
//!    hole in single-server changes found after the thesis (raft-dev, 2015).
//! 3. Adding or removing one voter keeps every majority of the old voters
//!    overlapping every majority of the new ones, so two leaders cannot be
//!    elected in one term across the change.
//! 4. A leader that removes itself keeps leading (without counting itself)
//!    until the change commits, then steps down (§4.2.2).

use crate::types::{LogIndex, NodeId};

use super::message::{EntryPayload, Membership, MembershipChange, Role};
use super::progress::Progress;
use super::{Node, ProposeError};

impl Node {
    /// Proposes one membership change; returns the index of its entry.
    pub fn propose_membership_change(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        let previous_committed = self.membership_index <= self.log.committed;
        if !previous_committed || self.log.committed < self.term_start_index {
            return Err(ProposeError::MembershipChangePending);
        }
        let membership = changed(&self.membership, change)?;
        let index = LogIndex(self.log.last_index().0 + 1);
        self.append_as_leader(vec![EntryPayload::Membership(membership)]);
        Ok(index)
    }

    /// Recomputes the membership in force from the log, and the leader's
    /// followers from it.
    pub(super) fn refresh_membership(&mut self) {
        self.membership = self.log.membership_at(self.log.last_index());
        self.membership_index = self.log.membership_index();
        match self.role {
            Role::Leader => {
                let me = self.id();
                let next = LogIndex(self.log.last_index().0 + 1);
                self.progress.retain(|id, _| self.membership.contains(*id));
                for id in self.membership.members().filter(|&id| id != me) {
                    self.progress.entry(id).or_insert_with(|| Progress::new(next));
                }
                if self.transfer.is_some_and(|t| !self.membership.voters.contains(&t.to)) {
                    self.transfer = None;
                }
            }
            Role::Candidate | Role::PreCandidate if !self.is_promotable() => {
                self.become_follower(self.term, None)
            }
            _ => {}
        }
    }
}

fn changed(current: &Membership, change: MembershipChange) -> Result<Membership, ProposeError> {
    let mut next = current.clone();
    let valid = match change {
        MembershipChange::AddVoter(id) => !current.voters.contains(&id) && add_voter(&mut next, id),
        MembershipChange::AddLearner(id) => !current.contains(id) && next.learners.insert(id),
        MembershipChange::PromoteLearner(id) => {
            next.learners.remove(&id) && add_voter(&mut next, id)
        }
        MembershipChange::Remove(id) => {
            (next.voters.remove(&id) || next.learners.remove(&id)) && !next.voters.is_empty()
        }
    };
    if valid && id_valid(change) {
        Ok(next)
    } else {
        Err(ProposeError::InvalidMembershipChange)
    }
}

fn add_voter(membership: &mut Membership, id: NodeId) -> bool {
    membership.learners.remove(&id);
    membership.voters.insert(id)
}

fn id_valid(change: MembershipChange) -> bool {
    let (MembershipChange::AddVoter(id)
    | MembershipChange::AddLearner(id)
    | MembershipChange::PromoteLearner(id)
    | MembershipChange::Remove(id)) = change;
    id != NodeId(0)
}
