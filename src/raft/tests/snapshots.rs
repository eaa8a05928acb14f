//! Snapshots: sending one to a follower that needs compacted entries,
//! installing it, and the driver's reports of the transfer.

use super::*;

/// A leader of term 2 with entries 1..=5 (term 1) applied and compacted up
/// to 4, and its no-op at 6; member 3, whose log is empty, rejected the
/// no-op's append, so it needs a snapshot. Returns the snapshot's metadata.
fn leader_sending_snapshot() -> (Node, SnapshotMeta) {
    let mut restored = restored(&[1, 2, 3], 1, &[1, 1, 1, 1, 1]);
    restored.hard_state.commit = ix(5);
    let mut node = start(config(1), restored);
    elect(&mut node);
    assert_eq!(node.log().applied, ix(5));
    node.compact(ix(4));
    node.check_invariants();
    let meta = SnapshotMeta { index: ix(4), term: t(1), membership: membership(&[1, 2, 3]) };
    assert_eq!(node.log().snapshot(), &meta);
    step(&mut node, msg(3, 1, 2, reject(5, 0, 0)));
    let snapshot = msg(1, 3, 2, MessageBody::Snapshot { meta: meta.clone() });
    assert_eq!(drive(&mut node), Ready { messages: vec![snapshot], ..Ready::default() });
    assert_eq!(node.progress(n(3)).unwrap().state, ProgressState::Snapshot(ix(4)));
    (node, meta)
}

#[test]
fn snapshot_sent_when_follower_needs_compacted_entries() {
    let (mut leader, meta) = leader_sending_snapshot();
    // No appends to member 3 while its snapshot is on the way.
    step(&mut leader, msg(2, 1, 2, ok(6)));
    drive(&mut leader);
    leader.propose(vec![cmd(7)]).unwrap();
    let expected = vec![msg(1, 2, 2, append(6, 2, vec![entry(7, 2)], 6))];
    assert_eq!(drive(&mut leader).messages, expected);

    // The follower installs it and answers like an append, once durable.
    let mut follower = new_node(3, &[1, 2, 3], 2, &[]);
    step(&mut follower, msg(1, 3, 2, MessageBody::Snapshot { meta: meta.clone() }));
    let expected = Ready {
        snapshot: Some(meta),
        hard_state: Some(hard_state(2, None, 4)),
        messages_after_persist: vec![msg(3, 1, 2, ok(4))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut follower), expected);
    assert_eq!((follower.log().last_index(), follower.log().applied), (ix(4), ix(4)));
    // Its answer puts it back to Replicate, from just past the snapshot.
    step(&mut leader, msg(3, 1, 2, ok(4)));
    let rest = vec![entry(5, 1), noop(6, 2), entry(7, 2)];
    let expected = vec![msg(1, 3, 2, append(4, 1, rest, 6))];
    assert_eq!(drive(&mut leader).messages, expected);
    assert_eq!(leader.progress(n(3)).unwrap().state, ProgressState::Replicate);
}

/// The leader's answer to a heartbeat response from member 3.
fn after_heartbeat_from_3(node: &mut Node) -> Vec<Message> {
    tick(node);
    let round = drive(node).messages.iter().find_map(|m| match m.body {
        MessageBody::Heartbeat { read_round, .. } if m.to == n(3) => Some(read_round),
        _ => None,
    });
    let read_round = round.expect("a heartbeat to 3");
    step(node, msg(3, 1, 2, MessageBody::HeartbeatResponse { read_round }));
    drive(node).messages
}

#[test]
fn report_snapshot_failure_returns_to_probe() {
    let (mut node, meta) = leader_sending_snapshot();
    node.report_snapshot(n(3), meta.index, false);
    node.check_invariants();
    let progress = node.progress(n(3)).unwrap();
    assert_eq!((progress.state, progress.probe_sent), (ProgressState::Probe, false));
    assert!(!node.has_ready());
    // Probing finds the entries still compacted: a fresh snapshot.
    let snapshot = msg(1, 3, 2, MessageBody::Snapshot { meta: meta.clone() });
    assert_eq!(after_heartbeat_from_3(&mut node), vec![snapshot]);
    // After a success, it probes just past the snapshot.
    node.report_snapshot(n(3), meta.index, true);
    node.check_invariants();
    assert_eq!(node.progress(n(3)).unwrap().state, ProgressState::Probe);
    let probe = msg(1, 3, 2, append(4, 1, vec![entry(5, 1), noop(6, 2)], 5));
    assert_eq!(after_heartbeat_from_3(&mut node), vec![probe]);
}

/// Review finding: a report about an older snapshot transfer says nothing
/// about the one the leader awaits now.
#[test]
fn report_for_an_older_snapshot_is_ignored() {
    let (mut node, meta) = leader_sending_snapshot();
    node.report_snapshot(n(3), ix(meta.index.0 - 1), false);
    node.report_snapshot(n(3), ix(meta.index.0 - 1), true);
    assert_eq!(node.progress(n(3)).unwrap().state, ProgressState::Snapshot(meta.index));
    node.report_snapshot(n(3), meta.index, true);
    assert_eq!(node.progress(n(3)).unwrap().state, ProgressState::Probe);
}
