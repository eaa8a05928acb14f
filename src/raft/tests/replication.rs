//! Log replication (§3.5), the commit rule (§3.6.2), the leader's parallel
//! write (§10.2.1), flow control and fast backtracking.

use super::*;

#[test]
fn s3_5_append_rejected_on_prev_mismatch_with_conflict_hint() {
    let mut node = new_node(2, &[1, 2, 3], 5, &[1, 1, 4, 4, 4]);
    // The leader's entry 6 is of term 3; ours stop at 5, and every entry
    // after index 2 is of term 4 > 3: none of them can match.
    step(&mut node, msg(1, 2, 5, append(6, 3, vec![entry(7, 5)], 2)));
    let expected =
        Ready { messages_after_persist: vec![msg(2, 1, 5, reject(6, 2, 1))], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);
    // A mismatch inside our log gets the same hint.
    step(&mut node, msg(1, 2, 5, append(4, 3, vec![entry(5, 3)], 2)));
    let expected =
        Ready { messages_after_persist: vec![msg(2, 1, 5, reject(4, 2, 1))], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);
    assert_eq!((node.log().last_index(), node.log().committed), (ix(5), ix(0)));
}

#[test]
fn s3_5_conflicting_suffix_truncated() {
    let mut restored = restored(&[1, 2, 3], 3, &[1, 1, 2, 2]);
    restored.hard_state.commit = ix(1);
    let mut node = start(config(2), restored);
    assert_eq!(drive(&mut node).committed_entries, vec![entry(1, 1)]);
    step(&mut node, msg(1, 2, 3, append(2, 1, vec![entry(3, 3), entry(4, 3)], 2)));
    let expected = Ready {
        entries: vec![entry(3, 3), entry(4, 3)],
        hard_state: Some(hard_state(3, None, 2)),
        messages_after_persist: vec![msg(2, 1, 3, ok(4))],
        committed_entries: vec![entry(2, 1)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // A late duplicate of a shorter append must not truncate what matches.
    step(&mut node, msg(1, 2, 3, append(2, 1, vec![entry(3, 3)], 2)));
    let expected = Ready { messages_after_persist: vec![msg(2, 1, 3, ok(3))], ..Ready::default() };
    assert_eq!(drive(&mut node), expected);
    let terms: Vec<Term> = (1..=4).map(|i| node.log().term(ix(i)).unwrap()).collect();
    assert_eq!(terms, vec![t(1), t(1), t(3), t(3)]);
}

/// Figure 3.7: a leader of term 4 holds entry 2 of term 2, uncommitted, and
/// gets it onto a majority (itself and member 3). Returns the leader's
/// `Ready` after member 3's acknowledgement of entry 2.
fn figure_3_7(config: Config) -> (Node, Ready) {
    let mut config = config;
    config.append_bytes_max = 1;
    let mut restored = restored(&[1, 2, 3], 3, &[1, 2]);
    restored.hard_state.commit = ix(1);
    let mut node = start(config, restored);
    elect(&mut node);
    step(&mut node, msg(3, 1, 4, reject(2, 1, 1)));
    let expected = vec![msg(1, 3, 4, append(1, 1, vec![entry(2, 2)], 1))];
    assert_eq!(drive(&mut node).messages, expected);
    step(&mut node, msg(3, 1, 4, ok(2)));
    let ready = drive(&mut node);
    (node, ready)
}

#[test]
fn s3_6_2_old_term_entries_not_committed_by_counting() {
    let (mut node, ready) = figure_3_7(config(1));
    let expected = Ready {
        messages: vec![msg(1, 3, 4, append(2, 2, vec![noop(3, 4)], 1))],
        ..Ready::default()
    };
    assert_eq!(ready, expected, "entry 2 is on a majority but not of this term");
    assert_eq!(node.log().committed, ix(1));
    // The no-op on a majority commits both.
    step(&mut node, msg(3, 1, 4, ok(3)));
    let expected = Ready {
        messages: vec![msg(1, 3, 4, append(3, 4, vec![], 3))],
        hard_state: Some(hard_state(4, Some(1), 3)),
        committed_entries: vec![entry(2, 2), noop(3, 4)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);

    #[cfg(feature = "sim")]
    {
        let mut buggy = config(1);
        buggy.bug = Some(DeliberateBug::CommitOldTermsByCounting);
        let (node, ready) = figure_3_7(buggy);
        let expected = Ready {
            messages: vec![msg(1, 3, 4, append(2, 2, vec![noop(3, 4)], 2))],
            hard_state: Some(hard_state(4, Some(1), 2)),
            committed_entries: vec![entry(2, 2)],
            ..Ready::default()
        };
        assert_eq!(ready, expected, "the deliberate bug commits by counting");
        assert_eq!(node.log().committed, ix(2));
    }
}

#[test]
fn s10_2_1_leader_sends_before_persisting_and_counts_itself_after() {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    assert_eq!(node.propose(vec![cmd(3)]), Ok(ix(3)));
    let ready = node.ready();
    let expected = Ready {
        messages: to_each(1, &[2, 3], 2, append(2, 2, vec![entry(3, 2)], 2)),
        entries: vec![entry(3, 2)],
        ..Ready::default()
    };
    assert_eq!(ready, expected, "appends go out with the write, not after it");
    // One follower has it, the leader's own write is not yet durable.
    step(&mut node, msg(2, 1, 2, ok(3)));
    assert_eq!(node.log().committed, ix(2));
    node.advance(&ready);
    node.check_invariants();
    assert_eq!(node.log().committed, ix(3), "durable here: now a majority");
    let expected = Ready {
        messages: to_each(1, &[2, 3], 2, append(3, 2, vec![], 3)),
        hard_state: Some(hard_state(2, Some(1), 3)),
        committed_entries: vec![entry(3, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);

    // Alone, a leader commits exactly when its write is durable.
    let mut single = leader(&[1], 1, &[1]);
    assert_eq!(single.log().committed, ix(2));
    single.propose(vec![cmd(3)]).unwrap();
    let ready = single.ready();
    assert_eq!(single.log().committed, ix(2));
    single.advance(&ready);
    single.check_invariants();
    assert_eq!(single.log().committed, ix(3));
}

#[test]
fn replicate_window_bounded_by_inflight_max() {
    let mut config = config(1);
    (config.inflight_max, config.append_bytes_max) = (2, 1);
    let mut node = leader_with(config, &[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    node.propose((3..=6).map(cmd).collect()).unwrap();
    let window = |to| {
        vec![
            msg(1, to, 2, append(2, 2, vec![entry(3, 2)], 2)),
            msg(1, to, 2, append(3, 2, vec![entry(4, 2)], 2)),
        ]
    };
    let expected = Ready {
        messages: [window(2), window(3)].concat(),
        entries: (3..=6).map(|i| entry(i, 2)).collect(),
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // Each acknowledgement frees one slot for one more append.
    step(&mut node, msg(2, 1, 2, ok(3)));
    let expected = Ready {
        messages: vec![msg(1, 2, 2, append(4, 2, vec![entry(5, 2)], 3))],
        hard_state: Some(hard_state(2, Some(1), 3)),
        committed_entries: vec![entry(3, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    let progress = node.progress(n(3)).unwrap();
    assert_eq!(progress.inflight.len(), 2);
    assert!(progress.is_paused(2));
}

#[test]
fn append_respects_message_size_limit() {
    let mut config = config(1);
    config.append_bytes_max = 100;
    let mut node = leader_with(config, &[1, 2], 1, &[1]);
    ack_all(&mut node);
    // Each entry counts 24 + 16 bytes: two fit in 100, three do not.
    let small = |i: u64| {
        let payload = EntryPayload::Normal(Bytes::from(vec![b'a' + i as u8; 16]));
        Entry { term: t(2), index: ix(i), payload }
    };
    let payload = |e: Entry| match e.payload {
        EntryPayload::Normal(data) => data,
        _ => unreachable!(),
    };
    node.propose((3..=7).map(|i| payload(small(i))).collect()).unwrap();
    let expected = vec![
        msg(1, 2, 2, append(2, 2, vec![small(3), small(4)], 2)),
        msg(1, 2, 2, append(4, 2, vec![small(5), small(6)], 2)),
        msg(1, 2, 2, append(6, 2, vec![small(7)], 2)),
    ];
    assert_eq!(drive(&mut node).messages, expected);
    // An entry larger than the limit still goes, alone.
    let big = Bytes::from(vec![b'z'; 500]);
    node.propose(vec![big.clone(), cmd(9)]).unwrap();
    let big = Entry { term: t(2), index: ix(8), payload: EntryPayload::Normal(big) };
    let expected = vec![
        msg(1, 2, 2, append(7, 2, vec![big], 2)),
        msg(1, 2, 2, append(8, 2, vec![entry(9, 2)], 2)),
    ];
    assert_eq!(drive(&mut node).messages, expected);
}

/// Steps `m` into `to` and returns what `to` sends back (before and after
/// persisting, in that order).
fn exchange(to: &mut Node, m: Message) -> Vec<Message> {
    step(to, m);
    let ready = drive(to);
    [ready.messages, ready.messages_after_persist].concat()
}

#[test]
fn fast_backtracking_skips_a_term_per_round_trip() {
    let mut leader = leader(&[1, 2, 3], 6, &[1, 2, 2, 4, 4, 4]);
    let mut follower = new_node(2, &[1, 2, 3], 5, &[1, 3, 3, 3, 5, 5, 5]);
    let noop = noop(7, 7);
    let probe = msg(1, 2, 7, append(6, 4, vec![noop.clone()], 0));
    // Term 5 skipped: the hint names index 4, of term 3 ≤ 4.
    assert_eq!(exchange(&mut follower, probe), vec![msg(2, 1, 7, reject(6, 4, 3))]);
    // The leader skips its term 4 entries: its last of term ≤ 3 is index 3.
    let tail = |from: u64| (from..=6).map(|i| entry(i, [1, 2, 2, 4, 4, 4][i as usize - 1]));
    let retry = msg(1, 2, 7, append(3, 2, [tail(4).collect(), vec![noop.clone()]].concat(), 0));
    assert_eq!(exchange(&mut leader, msg(2, 1, 7, reject(6, 4, 3))), vec![retry.clone()]);
    // Term 3 skipped.
    assert_eq!(exchange(&mut follower, retry), vec![msg(2, 1, 7, reject(3, 1, 1))]);
    let retry = msg(1, 2, 7, append(1, 1, [tail(2).collect(), vec![noop.clone()]].concat(), 0));
    assert_eq!(exchange(&mut leader, msg(2, 1, 7, reject(3, 1, 1))), vec![retry.clone()]);
    // Three round trips where one entry per trip would take six.
    assert_eq!(exchange(&mut follower, retry), vec![msg(2, 1, 7, ok(7))]);
    let commit = vec![msg(1, 2, 7, append(7, 7, vec![], 7))];
    assert_eq!(exchange(&mut leader, msg(2, 1, 7, ok(7))), commit);
    assert_eq!(leader.progress(n(2)).unwrap().state, ProgressState::Replicate);
    for i in 1..=7 {
        assert_eq!(follower.log().entry(ix(i)), leader.log().entry(ix(i)));
    }
}

fn appends_to(messages: &[Message], to: u64) -> usize {
    let is_append = |m: &&Message| matches!(m.body, MessageBody::Append { .. });
    messages.iter().filter(|m| m.to == n(to)).filter(is_append).count()
}

/// The leader's append of entry 3 to member 2 is lost. Member 2 answers the
/// next heartbeat, so the leader knows it is reachable and behind (match 2 <
/// last 3): it should send it an append (the entry, or a probe that member 2
/// rejects), as etcd-raft does.
#[test]
fn lost_appends_resent_after_heartbeat_response() {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    node.propose(vec![cmd(3)]).unwrap();
    assert_eq!(appends_to(&drive(&mut node).messages, 2), 1, "this one is lost");
    step(&mut node, msg(3, 1, 2, ok(3)));
    drive(&mut node);
    tick(&mut node);
    let beats = drive(&mut node).messages;
    assert_eq!(beats, vec![msg(1, 2, 2, heartbeat(2, 1)), msg(1, 3, 2, heartbeat(3, 1))]);
    step(&mut node, msg(2, 1, 2, MessageBody::HeartbeatResponse { read_round: 1 }));
    let progress = node.progress(n(2)).unwrap();
    assert_eq!((progress.match_index, node.log().last_index()), (ix(2), ix(3)));
    let sent = drive(&mut node).messages;
    assert_eq!(appends_to(&sent, 2), 1, "nothing resent to member 2: {sent:?}");
}
