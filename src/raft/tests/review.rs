//! Regression tests for findings of the Raft core review (docs/raft.md):
//! each reproduces the event sequence that used to break a rule.

use super::*;

/// A follower that heard from the leader, then learns of a higher term from a
/// message that names no leader (here a rejected pre-vote answer), must keep
/// refusing votes until its lease promise to the leader has run out (§4.2.3,
/// §6.4.1); otherwise a lease-reading leader could overlap a new one.
#[test]
fn s4_2_3_lease_survives_a_higher_term_that_forgets_the_leader() {
    let mut node = new_node(2, &[1, 2, 3], 2, &[1]);
    skip_startup_lease(&mut node);
    step(&mut node, msg(1, 2, 2, heartbeat(1, 0)));
    drive(&mut node);
    step(&mut node, msg(3, 2, 3, vote_response(true, false)));
    assert_eq!((node.term(), node.leader()), (t(3), None));
    drive(&mut node);
    step(&mut node, msg(3, 2, 3, vote(false, 1, 1)));
    step(&mut node, msg(3, 2, 4, vote(true, 1, 1)));
    let ready = drive(&mut node);
    let granted = ready
        .messages_after_persist
        .iter()
        .chain(&ready.messages)
        .any(|m| matches!(m.body, MessageBody::VoteResponse { granted: true, .. }));
    assert!(!granted, "voted within the lease: {ready:?}");
    // Once an election timeout passes without the leader, it votes again.
    for _ in 0..node.config().election_ticks {
        node.tick();
    }
    drive(&mut node);
    step(&mut node, msg(3, 2, 4, vote(false, 1, 1)));
    let ready = drive(&mut node);
    let expected = msg(2, 3, 4, vote_response(false, true));
    assert!(ready.messages_after_persist.contains(&expected), "{ready:?}");
}

/// A candidate whose own vote is not yet durable when its election times out
/// must count itself in the next pre-vote once the write completes.
#[test]
fn s3_8_pre_candidate_counts_itself_after_a_slow_vote_write() {
    let mut node = new_node(1, &[1, 2, 3], 1, &[1]);
    skip_startup_lease(&mut node);
    while node.role() != Role::PreCandidate {
        tick(&mut node);
    }
    drive(&mut node);
    step(&mut node, msg(2, 1, 2, vote_response(true, true)));
    assert_eq!(node.role(), Role::Candidate);
    let slow_write = node.ready();
    step(&mut node, msg(2, 1, 2, vote_response(false, true)));
    assert_eq!(node.role(), Role::Candidate, "its own vote is not durable yet");
    while node.role() != Role::PreCandidate {
        tick(&mut node);
    }
    node.advance(&slow_write);
    node.check_invariants();
    drive(&mut node);
    step(&mut node, msg(2, 1, 3, vote_response(true, true)));
    assert_eq!((node.role(), node.term()), (Role::Candidate, t(3)));
}

/// A read forwarded to a leader that is no longer ours fails at once
/// instead of never completing.
#[test]
fn s6_4_forwarded_read_fails_when_the_leader_changes() {
    let mut node = new_node(2, &[1, 2, 3], 2, &[1]);
    step(&mut node, msg(1, 2, 2, heartbeat(1, 0)));
    drive(&mut node);
    node.read_index(9).unwrap();
    assert_eq!(
        drive(&mut node).messages,
        vec![msg(2, 1, 2, MessageBody::ReadIndex { context: 9 })]
    );
    step(&mut node, msg(3, 2, 3, heartbeat(1, 0)));
    let ready = drive(&mut node);
    assert_eq!(ready.read_states, vec![ReadState { context: 9, index: None }]);
    // A late answer from the old leader is dropped (stale term), and a
    // duplicate answer in the current term for an unknown read is ignored.
    step(
        &mut node,
        msg(3, 2, 3, MessageBody::ReadIndexResponse { context: 9, index: Some(ix(1)) }),
    );
    assert!(drive(&mut node).read_states.is_empty());
}
