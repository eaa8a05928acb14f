//! Elections: timeouts (§3.4), voting (§3.6.1), the no-op (§5.4.2),
//! pre-vote (§9.6), leases against disruption (§4.2.3), check-quorum (§6.2)
//! and learners.

use super::*;

#[test]
fn s3_4_follower_campaigns_after_randomized_timeout() {
    let mut timeouts = BTreeSet::new();
    for seed in 0..20 {
        let mut config = Config::new(n(1), seed);
        config.pre_vote = false;
        let mut node = node_with(config, &[1, 2, 3], 1, &[1, 1]);
        let mut ticks = 0;
        while node.role() == Role::Follower {
            assert!(!node.has_ready(), "a follower is silent until its timeout");
            tick(&mut node);
            ticks += 1;
            assert!(ticks < 20, "timeout beyond 2 × election_ticks");
        }
        assert!(ticks >= 10, "timeout {ticks} below election_ticks");
        timeouts.insert(ticks);
        let expected = Ready {
            messages: to_each(1, &[2, 3], 2, vote(false, 2, 1)),
            hard_state: Some(hard_state(2, Some(1), 0)),
            ..Ready::default()
        };
        assert_eq!(drive(&mut node), expected);
        assert_eq!(node.role(), Role::Candidate);
    }
    assert!(timeouts.len() > 1, "timeouts are randomized: {timeouts:?}");
}

#[test]
fn s3_6_1_vote_rejected_for_stale_log() {
    let mut node = new_node(1, &[1, 2, 3], 2, &[1, 1, 2]);
    skip_startup_lease(&mut node);
    // A longer log with an older last term is behind.
    step(&mut node, msg(2, 1, 3, vote(false, 5, 1)));
    let expected = Ready {
        hard_state: Some(hard_state(3, None, 0)),
        messages_after_persist: vec![msg(1, 2, 3, vote_response(false, false))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // The same last term and a shorter log is behind too.
    step(&mut node, msg(3, 1, 3, vote(false, 2, 2)));
    let expected = Ready {
        messages_after_persist: vec![msg(1, 3, 3, vote_response(false, false))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // An equal log is up to date: the vote is still free, and granted.
    step(&mut node, msg(3, 1, 3, vote(false, 3, 2)));
    let expected = Ready {
        hard_state: Some(hard_state(3, Some(3), 0)),
        messages_after_persist: vec![msg(1, 3, 3, vote_response(false, true))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
}

/// The deliberately broken variant really skips the log check.
#[cfg(feature = "sim")]
#[test]
fn s3_6_1_vote_without_log_check_bug_is_real() {
    let mut config = config(1);
    config.bug = Some(DeliberateBug::VoteWithoutLogCheck);
    let mut node = node_with(config, &[1, 2, 3], 2, &[1, 1, 2]);
    skip_startup_lease(&mut node);
    step(&mut node, msg(2, 1, 3, vote(false, 5, 1)));
    let expected = Ready {
        hard_state: Some(hard_state(3, Some(2), 0)),
        messages_after_persist: vec![msg(1, 2, 3, vote_response(false, true))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
}

#[test]
fn s3_6_1_vote_granted_once_per_term() {
    let mut node = new_node(1, &[1, 2, 3], 1, &[1]);
    skip_startup_lease(&mut node);
    step(&mut node, msg(2, 1, 2, vote(false, 1, 1)));
    let granted = Ready {
        hard_state: Some(hard_state(2, Some(2), 0)),
        messages_after_persist: vec![msg(1, 2, 2, vote_response(false, true))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), granted);
    // Another candidate of the same term, with a longer log: refused.
    step(&mut node, msg(3, 1, 2, vote(false, 4, 2)));
    let refused = Ready {
        messages_after_persist: vec![msg(1, 3, 2, vote_response(false, false))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), refused);
    // The same candidate asking again (its response was lost): granted again.
    step(&mut node, msg(2, 1, 2, vote(false, 1, 1)));
    let again = Ready {
        messages_after_persist: vec![msg(1, 2, 2, vote_response(false, true))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), again);
    assert_eq!(node.vote, Some(n(2)));
}

#[test]
fn s5_4_2_leader_appends_noop_on_election() {
    let mut node = new_node(1, &[1, 2, 3], 1, &[1, 1]);
    step(&mut node, msg(2, 1, 1, MessageBody::TimeoutNow));
    let force = MessageBody::Vote { pre: false, force: true, last_index: ix(2), last_term: t(1) };
    let campaign = Ready {
        messages: to_each(1, &[2, 3], 2, force),
        hard_state: Some(hard_state(2, Some(1), 0)),
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), campaign);
    step(&mut node, msg(2, 1, 2, vote_response(false, true)));
    assert_eq!(node.role(), Role::Leader);
    let elected = Ready {
        messages: to_each(1, &[2, 3], 2, append(2, 1, vec![noop(3, 2)], 0)),
        entries: vec![noop(3, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), elected);
    // Committing the no-op commits the earlier terms' entries with it.
    step(&mut node, msg(2, 1, 2, ok(3)));
    let committed = Ready {
        messages: vec![msg(1, 2, 2, append(3, 2, vec![], 3))],
        hard_state: Some(hard_state(2, Some(1), 3)),
        committed_entries: vec![entry(1, 1), entry(2, 1), noop(3, 2)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), committed);
}

#[test]
fn s9_6_prevote_does_not_change_term() {
    let mut node = new_node(1, &[1, 2, 3], 1, &[1]);
    while node.role() == Role::Follower {
        tick(&mut node);
    }
    assert_eq!(node.role(), Role::PreCandidate);
    let pre_vote = Ready { messages: to_each(1, &[2, 3], 2, vote(true, 1, 1)), ..Ready::default() };
    assert_eq!(drive(&mut node), pre_vote, "no hard state: the term is unchanged");
    assert_eq!(node.term(), t(1));

    // A voter grants it in the term asked about, without adopting that term.
    let mut voter = new_node(2, &[1, 2, 3], 1, &[1]);
    skip_startup_lease(&mut voter);
    step(&mut voter, pre_vote.messages[0].clone());
    let grant = msg(2, 1, 2, vote_response(true, true));
    let expected = Ready { messages_after_persist: vec![grant.clone()], ..Ready::default() };
    assert_eq!(drive(&mut voter), expected);
    assert_eq!((voter.term(), voter.vote), (t(1), None));

    // A voter with a longer log refuses, in its own term.
    let mut ahead = new_node(3, &[1, 2, 3], 1, &[1, 1]);
    skip_startup_lease(&mut ahead);
    step(&mut ahead, pre_vote.messages[1].clone());
    let refusal = msg(3, 1, 1, vote_response(true, false));
    let expected = Ready { messages_after_persist: vec![refusal.clone()], ..Ready::default() };
    assert_eq!(drive(&mut ahead), expected);

    step(&mut node, refusal);
    assert_eq!((node.role(), node.term()), (Role::PreCandidate, t(1)));
    // Only a won pre-vote starts the real election in the next term.
    step(&mut node, grant);
    let campaign = Ready {
        messages: to_each(1, &[2, 3], 2, vote(false, 1, 1)),
        hard_state: Some(hard_state(2, Some(1), 0)),
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), campaign);
}

/// A follower that hears from a leader, a moment later.
fn follower_of_1() -> Node {
    let mut node = new_node(2, &[1, 2, 3], 2, &[1, 2]);
    skip_startup_lease(&mut node);
    step(&mut node, msg(1, 2, 2, heartbeat(0, 1)));
    let answer = msg(2, 1, 2, MessageBody::HeartbeatResponse { read_round: 1 });
    assert_eq!(drive(&mut node), Ready { messages: vec![answer], ..Ready::default() });
    for _ in 0..5 {
        tick(&mut node);
    }
    node
}

#[test]
fn s9_6_prevote_rejected_while_leader_known() {
    // Member 3, cut off from the leader, asks with an even longer log.
    let mut node = follower_of_1();
    step(&mut node, msg(3, 2, 3, vote(true, 5, 2)));
    assert!(!node.has_ready(), "no grant while the leader is heard from");
    assert_eq!((node.term(), node.leader()), (t(2), Some(n(1))));
    // The same request to a member that knows no leader is granted.
    let mut free = new_node(2, &[1, 2, 3], 2, &[1, 2]);
    skip_startup_lease(&mut free);
    step(&mut free, msg(3, 2, 3, vote(true, 5, 2)));
    let grant = msg(2, 3, 3, vote_response(true, true));
    assert_eq!(drive(&mut free), Ready { messages_after_persist: vec![grant], ..Ready::default() });
}

#[test]
fn s4_2_3_vote_ignored_within_lease() {
    let mut node = follower_of_1();
    step(&mut node, msg(3, 2, 3, vote(false, 5, 2)));
    assert!(!node.has_ready(), "ignored: no answer, no new term");
    assert_eq!((node.term(), node.vote, node.leader()), (t(2), None, Some(n(1))));
    // A leadership transfer forces the vote through the lease (§3.10).
    let forced = MessageBody::Vote { pre: false, force: true, last_index: ix(2), last_term: t(2) };
    step(&mut node, msg(3, 2, 3, forced));
    let expected = Ready {
        hard_state: Some(hard_state(3, Some(3), 0)),
        messages_after_persist: vec![msg(2, 3, 3, vote_response(false, true))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), expected);
    // A member that just started waits out a lease a leader may hold.
    let mut fresh = new_node(2, &[1, 2, 3], 2, &[1, 2]);
    step(&mut fresh, msg(3, 2, 3, vote(false, 5, 2)));
    assert!(!fresh.has_ready());
    assert_eq!(fresh.term(), t(2));
}

#[test]
fn s6_2_leader_steps_down_without_quorum() {
    let mut node = leader(&[1, 2, 3], 1, &[1]);
    ack_all(&mut node);
    // Member 2 answers every heartbeat: the leader keeps its quorum.
    for _ in 0..30 {
        tick(&mut node);
        for m in drive(&mut node).messages.into_iter().filter(|m| m.to == n(2)) {
            if let MessageBody::Heartbeat { read_round, .. } = m.body {
                let body = MessageBody::HeartbeatResponse { read_round };
                step(&mut node, msg(2, 1, 2, body));
            }
        }
        assert_eq!(node.role(), Role::Leader);
    }
    // Silence: it steps down within two check-quorum periods, not before one.
    let mut ticks = 0;
    while node.role() == Role::Leader {
        drive(&mut node);
        tick(&mut node);
        ticks += 1;
        assert!(ticks <= 20, "still leader after {ticks} silent ticks");
    }
    assert!(ticks >= 10, "stepped down after only {ticks} ticks");
    assert_eq!((node.term(), node.leader()), (t(2), None));
    assert_eq!(drive(&mut node), Ready::default(), "no heartbeats after stepping down");
    let refused = node.propose(vec![cmd(4)]);
    assert_eq!(refused, Err(ProposeError::NotLeader { leader: None }));
}

#[test]
fn learner_does_not_vote_or_campaign() {
    let mut with_learner = membership(&[1, 2, 3]);
    with_learner.learners.insert(n(4));
    let mut learner = start(config(4), restored_with(with_learner.clone(), 1, &[1]));
    for _ in 0..100 {
        tick(&mut learner);
        assert!(!learner.has_ready(), "a learner never campaigns");
    }
    step(&mut learner, msg(1, 4, 1, MessageBody::TimeoutNow));
    assert!(!learner.has_ready(), "nor when told to");
    assert_eq!(learner.role(), Role::Follower);

    // A candidate asks only voters, and a learner's grant does not count.
    let mut config = config(1);
    config.pre_vote = false;
    let mut candidate = start(config, restored_with(with_learner, 1, &[1]));
    while candidate.role() == Role::Follower {
        tick(&mut candidate);
    }
    let asked: Vec<NodeId> = drive(&mut candidate).messages.iter().map(|m| m.to).collect();
    assert_eq!(asked, vec![n(2), n(3)]);
    step(&mut candidate, msg(4, 1, 2, vote_response(false, true)));
    assert_eq!(candidate.role(), Role::Candidate);
    step(&mut candidate, msg(2, 1, 2, vote_response(false, true)));
    assert_eq!(candidate.role(), Role::Leader);
    // The learner gets the log, but its acknowledgement commits nothing.
    let sent_to: Vec<NodeId> = drive(&mut candidate).messages.iter().map(|m| m.to).collect();
    assert_eq!(sent_to, vec![n(2), n(3), n(4)]);
    step(&mut candidate, msg(4, 1, 2, ok(2)));
    assert_eq!(candidate.log().committed, ix(0));
    step(&mut candidate, msg(3, 1, 2, ok(2)));
    assert_eq!(candidate.log().committed, ix(2));
}

#[test]
fn votes_and_append_acks_only_after_persist() {
    let mut node = new_node(2, &[1, 2, 3], 1, &[1]);
    skip_startup_lease(&mut node);
    step(&mut node, msg(3, 2, 2, vote(false, 1, 1)));
    let vote_ready = Ready {
        hard_state: Some(hard_state(2, Some(3), 0)),
        messages_after_persist: vec![msg(2, 3, 2, vote_response(false, true))],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), vote_ready, "the grant waits for the vote to be durable");
    step(&mut node, msg(3, 2, 2, append(1, 1, vec![entry(2, 2)], 1)));
    let append_ready = Ready {
        entries: vec![entry(2, 2)],
        hard_state: Some(hard_state(2, Some(3), 1)),
        messages_after_persist: vec![msg(2, 3, 2, ok(2))],
        committed_entries: vec![entry(1, 1)],
        ..Ready::default()
    };
    assert_eq!(drive(&mut node), append_ready, "the ack waits for the entries to be durable");

    // A candidate counts its own vote only once it is durable.
    let mut config = config(1);
    config.pre_vote = false;
    let mut candidate = node_with(config, &[1, 2, 3], 1, &[1]);
    while candidate.role() == Role::Follower {
        tick(&mut candidate);
    }
    let ready = candidate.ready();
    step(&mut candidate, msg(2, 1, 2, vote_response(false, true)));
    assert_eq!(candidate.role(), Role::Candidate, "one durable vote of three");
    candidate.advance(&ready);
    candidate.check_invariants();
    assert_eq!(candidate.role(), Role::Leader);
}
