//! Linearizable reads without log writes: ReadIndex (§6.4) and lease reads
//! (§6.4.1).

use super::*;

fn read(context: u64, index: u64) -> ReadState {
    ReadState { context, index: Some(ix(index)) }
}

fn answer(from: u64, read_round: u64) -> Message {
    msg(from, 1, 2, MessageBody::HeartbeatResponse { read_round })
}

/// A leader of term 2 whose no-op (index 2) every follower has.
fn settled_leader(config: Config) -> Node {
    let mut node = leader_with(config, &[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    assert_eq!(node.log().committed, ix(2));
    node
}

#[test]
fn s6_4_read_index_waits_for_heartbeat_quorum() {
    let mut node = settled_leader(config(1));
    node.read_index(42).unwrap();
    let round = Ready { messages: to_each(1, &[2, 3], 2, heartbeat(2, 1)), ..Ready::default() };
    assert_eq!(drive(&mut node), round, "a round of heartbeats, no answer yet");
    // An answer to an earlier round proves nothing about this one.
    step(&mut node, answer(2, 0));
    assert!(!node.has_ready());
    // The leader and one follower are a majority: leadership confirmed.
    step(&mut node, answer(3, 1));
    let expected = Ready { read_states: vec![read(42, 2)], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);
}

#[test]
fn s6_4_follower_reads_go_through_the_leader() {
    let mut leader = settled_leader(config(1));
    let mut follower = new_node(2, &[1, 2, 3], 2, &[1]);
    step(&mut follower, msg(1, 2, 2, append(1, 1, vec![noop(2, 2)], 2)));
    drive(&mut follower);
    assert_eq!(drive(&mut follower).committed_entries, vec![noop(2, 2)], "once durable");
    follower.read_index(7).unwrap();
    let ask = msg(2, 1, 2, MessageBody::ReadIndex { context: 7 });
    assert_eq!(drive(&mut follower), Ready { messages: vec![ask.clone()], ..Ready::default() });
    step(&mut leader, ask);
    drive(&mut leader);
    step(&mut leader, answer(3, 1));
    let reply = msg(1, 2, 2, MessageBody::ReadIndexResponse { context: 7, index: Some(ix(2)) });
    assert_eq!(drive(&mut leader), Ready { messages: vec![reply.clone()], ..Ready::default() });
    step(&mut follower, reply);
    let expected = Ready { read_states: vec![read(7, 2)], ..Ready::default() };
    assert_eq!(drive(&mut follower), expected);
    // Without a known leader there is no one to ask.
    let mut lost = new_node(3, &[1, 2, 3], 2, &[1]);
    assert_eq!(lost.read_index(8), Err(ProposeError::NotLeader { leader: None }));
}

#[test]
fn s6_4_reads_batched_into_one_round() {
    let mut node = settled_leader(config(1));
    node.read_index(1).unwrap();
    node.read_index(2).unwrap();
    node.read_index(3).unwrap();
    let round_1 = Ready { messages: to_each(1, &[2, 3], 2, heartbeat(2, 1)), ..Ready::default() };
    assert_eq!(drive(&mut node), round_1, "one round in flight at a time");
    // Reads 2 and 3 arrived after round 1 started: they share round 2.
    step(&mut node, answer(2, 1));
    let expected = Ready {
        messages: to_each(1, &[2, 3], 2, heartbeat(2, 2)),
        read_states: vec![read(1, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    step(&mut node, answer(3, 2));
    let expected = Ready { read_states: vec![read(2, 2), read(3, 2)], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);
}

#[test]
fn s6_4_no_reads_before_commit_in_term() {
    let mut restored = restored(&[1, 2, 3], 1, &[1]);
    restored.hard_state.commit = ix(1);
    let mut node = start(config(1), restored);
    elect(&mut node);
    // Committed index 1 may be stale: the no-op (2) is not yet committed.
    node.read_index(5).unwrap();
    assert!(!node.has_ready(), "the read waits, no round yet");
    tick(&mut node);
    let round_1 = Ready { messages: to_each(1, &[2, 3], 2, heartbeat(0, 1)), ..Ready::default() };
    assert_eq!(drive(&mut node), round_1);
    // Round 1 is confirmed, but the read was not part of it.
    step(&mut node, answer(2, 1));
    let reprobe = vec![msg(1, 2, 2, append(1, 1, vec![noop(2, 2)], 1))];
    assert_eq!(drive(&mut node), Ready { messages: reprobe, ..Ready::default() });
    // The no-op commits: the read gets a round of its own.
    step(&mut node, msg(2, 1, 2, ok(2)));
    let expected = Ready {
        messages: vec![
            msg(1, 2, 2, heartbeat(2, 2)),
            msg(1, 3, 2, heartbeat(0, 2)),
            msg(1, 2, 2, append(2, 2, vec![], 2)),
        ],
        hard_state: Some(hard_state(2, Some(1), 2)),
        committed_entries: vec![noop(2, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    step(&mut node, answer(2, 2));
    assert_eq!(drive(&mut node), Ready { read_states: vec![read(5, 2)], ..Ready::default() });
}

#[test]
fn s6_4_1_lease_read_served_without_round() {
    let mut config = config(1);
    config.read_mode = ReadMode::Lease;
    let mut node = settled_leader(config);
    tick(&mut node);
    drive(&mut node);
    // Round 1, sent at tick 1, confirmed: a lease until tick 1 + 10 - 2.
    step(&mut node, answer(2, 1));
    node.read_index(9).unwrap();
    let expected = Ready { read_states: vec![read(9, 2)], ..Ready::default() };
    assert_eq!(drive(&mut node), expected, "served at once, no heartbeats");
    // Ticks 2..=9 send unanswered rounds 2..=9; the lease runs out.
    for _ in 2..=9 {
        tick(&mut node);
        drive(&mut node);
    }
    node.read_index(10).unwrap();
    let round = Ready { messages: to_each(1, &[2, 3], 2, heartbeat(2, 10)), ..Ready::default() };
    assert_eq!(drive(&mut node), round);
    step(&mut node, answer(3, 10));
    assert_eq!(drive(&mut node).read_states, vec![read(10, 2)]);
    // A leadership transfer revokes the fresh lease.
    node.transfer_leader(n(2)).unwrap();
    drive(&mut node);
    node.read_index(11).unwrap();
    let round = Ready { messages: to_each(1, &[2, 3], 2, heartbeat(2, 11)), ..Ready::default() };
    assert_eq!(drive(&mut node), round);
}
