//! Membership changes, one server at a time (§4.1–§4.3).

use super::*;

use MembershipChange::{AddLearner, AddVoter, PromoteLearner, Remove};

#[test]
fn s4_1_membership_in_force_on_append() {
    let mut node = new_node(2, &[1, 2, 3], 2, &[1, 2]);
    let four = membership(&[1, 2, 3, 4]);
    let change = membership_entry(3, 2, four.clone());
    step(&mut node, msg(1, 2, 2, append(2, 2, vec![change.clone()], 2)));
    assert_eq!(node.membership(), &four, "in force once appended, before it commits");
    let expected = Ready {
        entries: vec![change],
        hard_state: Some(hard_state(2, None, 2)),
        messages_after_persist: vec![msg(2, 1, 2, ok(3))],
        committed_entries: vec![entry(1, 1), entry(2, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // A new leader replaces the uncommitted change: the old one is back.
    step(&mut node, msg(3, 2, 3, append(2, 2, vec![entry(3, 3)], 2)));
    assert_eq!(node.membership(), &membership(&[1, 2, 3]));
    assert_eq!(drive(&mut node).entries, vec![entry(3, 3)]);
}

#[test]
fn s4_1_leader_counts_the_new_majority_at_once() {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    assert_eq!(node.propose_membership_change(AddVoter(n(4))), Ok(ix(3)));
    let four = membership(&[1, 2, 3, 4]);
    assert_eq!(node.membership(), &four);
    assert!(node.progress(n(4)).is_some(), "the new member gets a progress at once");
    let change = membership_entry(3, 2, four);
    let expected = Ready {
        messages: to_each(1, &[2, 3], 2, append(2, 2, vec![change.clone()], 2)),
        entries: vec![change],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // Two of four is no longer a majority, even for the change itself.
    step(&mut node, msg(2, 1, 2, ok(3)));
    assert_eq!(node.log().committed, ix(2));
    step(&mut node, msg(3, 1, 2, ok(3)));
    assert_eq!(node.log().committed, ix(3));
}

#[test]
fn s4_1_membership_change_refused_while_one_pending() {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    let pending = Err(ProposeError::MembershipChangePending);
    assert_eq!(node.propose_membership_change(AddVoter(n(4))), pending, "no-op not committed");
    ack_all(&mut node);
    assert_eq!(node.propose_membership_change(AddVoter(n(4))), Ok(ix(3)));
    assert_eq!(node.propose_membership_change(AddLearner(n(5))), pending);
    drive(&mut node);
    step(&mut node, msg(2, 1, 2, ok(3)));
    step(&mut node, msg(3, 1, 2, ok(3)));
    assert_eq!(node.log().committed, ix(3));
    let invalid = Err(ProposeError::InvalidMembershipChange);
    for change in [AddVoter(n(2)), Remove(n(9)), PromoteLearner(n(2)), AddLearner(n(0))] {
        assert_eq!(node.propose_membership_change(change), invalid, "{change:?}");
    }
    assert_eq!(node.propose_membership_change(AddLearner(n(5))), Ok(ix(4)));
}

#[test]
fn s4_2_2_removed_leader_steps_down_after_commit() {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    assert_eq!(node.propose_membership_change(Remove(n(1))), Ok(ix(3)));
    let change = membership_entry(3, 2, membership(&[2, 3]));
    let expected = Ready {
        messages: to_each(1, &[2, 3], 2, append(2, 2, vec![change.clone()], 2)),
        entries: vec![change.clone()],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // It still leads, but no longer counts itself: {2, 3} must both agree.
    step(&mut node, msg(2, 1, 2, ok(3)));
    assert_eq!((node.role(), node.log().committed), (Role::Leader, ix(2)));
    step(&mut node, msg(3, 1, 2, ok(3)));
    assert_eq!((node.role(), node.leader()), (Role::Follower, None));
    // It tells the others the change committed, and hands over to the most
    // up-to-date voter (§3.10) instead of leaving them to wait out its lease.
    let mut messages = to_each(1, &[2, 3], 2, append(3, 2, vec![], 3));
    messages.push(msg(1, 3, 2, MessageBody::TimeoutNow));
    let expected = Ready {
        messages,
        hard_state: Some(hard_state(2, Some(1), 3)),
        committed_entries: vec![change],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    for _ in 0..50 {
        tick(&mut node);
        assert!(!node.has_ready(), "a removed member never campaigns");
    }
}

/// A single voter adds a second: the change needs the new member's
/// acknowledgement to commit. Once the new member answers a heartbeat, the
/// leader should start sending it the log, without waiting for new proposals.
#[test]
fn s4_1_new_voter_caught_up_without_new_proposals() {
    let mut node = leader(&[1], 1, &[1]);
    assert_eq!(node.log().committed, ix(2));
    assert_eq!(node.propose_membership_change(AddVoter(n(2))), Ok(ix(3)));
    drive(&mut node);
    tick(&mut node);
    assert_eq!(drive(&mut node).messages, vec![msg(1, 2, 2, heartbeat(0, 1))]);
    step(&mut node, msg(2, 1, 2, MessageBody::HeartbeatResponse { read_round: 1 }));
    let sent = drive(&mut node).messages;
    let append = sent.iter().any(|m| matches!(m.body, MessageBody::Append { .. }));
    assert!(append, "member 2 is reachable and has nothing, yet is sent nothing: {sent:?}");
}
