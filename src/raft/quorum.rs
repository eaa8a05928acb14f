//! Majority arithmetic over the voters of one configuration (§3.4, §3.6).
//! With one-server-at-a-time membership changes there is never more than one
//! configuration to count in (docs/raft.md, "Membership").

use std::collections::BTreeSet;

use crate::types::{LogIndex, NodeId};

/// Votes needed to win among `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index that a majority of voters have: the median-ish match
/// index. Zero when there are no voters (nothing can be committed).
pub fn committed_index(
    voters: &BTreeSet<NodeId>,
    match_of: impl Fn(NodeId) -> LogIndex,
) -> LogIndex {
    if voters.is_empty() {
        return LogIndex(0);
    }
    let mut matches: Vec<LogIndex> = voters.iter().map(|&id| match_of(id)).collect();
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[majority(voters.len()) - 1]
}

/// Whether a majority of voters satisfy `yes`.
pub fn has_quorum(voters: &BTreeSet<NodeId>, yes: impl Fn(NodeId) -> bool) -> bool {
    !voters.is_empty() && voters.iter().filter(|&&id| yes(id)).count() >= majority(voters.len())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Tally of `granted` (Some(true)), `rejected` (Some(false)) and missing votes.
pub fn vote_result(
    voters: &BTreeSet<NodeId>,
    vote_of: impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    let (mut granted, mut missing) = (0, 0);
    for &id in voters {
        match vote_of(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let needed = majority(voters.len());
    if voters.is_empty() || granted + missing < needed {
        VoteResult::Lost
    } else if granted >= needed {
        VoteResult::Won
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> BTreeSet<NodeId> {
        (1..=n).map(NodeId).collect()
    }

    #[test]
    fn committed_index_is_the_majority_match() {
        let m = [5, 3, 9, 1, 7];
        assert_eq!(committed_index(&ids(5), |id| LogIndex(m[id.0 as usize - 1])), LogIndex(5));
        assert_eq!(committed_index(&ids(3), |id| LogIndex(m[id.0 as usize - 1])), LogIndex(5));
        assert_eq!(committed_index(&ids(4), |id| LogIndex(m[id.0 as usize - 1])), LogIndex(3));
        assert_eq!(committed_index(&ids(1), |_| LogIndex(4)), LogIndex(4));
        assert_eq!(committed_index(&BTreeSet::new(), |_| LogIndex(4)), LogIndex(0));
    }

    #[test]
    fn votes_are_tallied_against_the_majority() {
        let v = |votes: [Option<bool>; 3]| vote_result(&ids(3), |id| votes[id.0 as usize - 1]);
        assert_eq!(v([Some(true), Some(true), None]), VoteResult::Won);
        assert_eq!(v([Some(true), None, None]), VoteResult::Pending);
        assert_eq!(v([Some(true), Some(false), Some(false)]), VoteResult::Lost);
        assert_eq!(v([Some(true), Some(false), None]), VoteResult::Pending);
        assert!(has_quorum(&ids(4), |id| id.0 <= 3));
        assert!(!has_quorum(&ids(4), |id| id.0 <= 2));
    }
}
