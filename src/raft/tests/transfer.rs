//! Leadership transfer (§3.10).

use super::*;

/// A leader of term 2 whose log ends at 3: member 2 has all of it, member
/// 3 only up to 2 (its append of entry 3 is in flight).
fn leader_with_lagging_3() -> Node {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    node.propose(vec![cmd(3)]).unwrap();
    drive(&mut node);
    step(&mut node, msg(2, 1, 2, ok(3)));
    drive(&mut node);
    assert_eq!(node.log().committed, ix(3));
    node
}

#[test]
fn s3_10_transfer_sends_timeout_now_when_caught_up() {
    let mut node = leader_with_lagging_3();
    node.transfer_leader(n(2)).unwrap();
    let expected =
        Ready { messages: vec![msg(1, 2, 2, MessageBody::TimeoutNow)], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);

    // A lagging target is brought up to date first.
    let mut node = leader_with_lagging_3();
    node.transfer_leader(n(3)).unwrap();
    let expected =
        Ready { messages: vec![msg(1, 3, 2, append(3, 2, vec![], 3))], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);
    step(&mut node, msg(3, 1, 2, ok(3)));
    let expected =
        Ready { messages: vec![msg(1, 3, 2, MessageBody::TimeoutNow)], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);

    // The target campaigns at once, forcing its way through leases.
    let mut target = new_node(3, &[1, 2, 3], 2, &[1, 2, 2]);
    step(&mut target, msg(1, 3, 2, MessageBody::TimeoutNow));
    let forced = MessageBody::Vote { pre: false, force: true, last_index: ix(3), last_term: t(2) };
    let expected = Ready {
        messages: to_each(3, &[1, 2], 3, forced),
        hard_state: Some(hard_state(3, Some(3), 0)),
        ..Ready::default()
    };
    assert_eq!(drive(&mut target), expected);
}

#[test]
fn s3_10_proposals_refused_during_transfer() {
    let mut node = leader_with_lagging_3();
    node.transfer_leader(n(3)).unwrap();
    drive(&mut node);
    let refused = Err(ProposeError::TransferInProgress);
    assert_eq!(node.propose(vec![cmd(4)]), refused);
    assert_eq!(node.propose_membership_change(MembershipChange::AddLearner(n(4))), refused);
    assert_eq!(node.transfer_leader(n(2)), Err(ProposeError::TransferInProgress));
    assert!(!node.has_ready(), "nothing was appended");
    // The transfer gives up after an election timeout; proposals resume.
    for _ in 0..9 {
        tick(&mut node);
        drive(&mut node);
    }
    assert_eq!(node.propose(vec![cmd(4)]), refused);
    tick(&mut node);
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(node.propose(vec![cmd(4)]), Ok(ix(4)));
}
