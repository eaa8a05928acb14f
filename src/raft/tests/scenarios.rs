//! Scenarios on the in-memory cluster: partitions, stale leaders, quorum
//! loss, removed members, snapshots and crashes.

use super::cluster::Cluster;
use super::*;

fn others(cluster: &Cluster, but: &[NodeId]) -> Vec<NodeId> {
    cluster.members.keys().copied().filter(|id| !but.contains(id)).collect()
}

#[test]
fn election_under_partition_majority_side_elects() {
    let mut cluster = Cluster::new(5);
    let old = cluster.wait_for_leader(t(0));
    let old_term = cluster.node(old).term();
    let minority = vec![old, others(&cluster, &[old])[0]];
    let majority = others(&cluster, &minority);
    cluster.partition(&minority);
    for _ in 0..100 {
        cluster.tick();
        for &id in &minority {
            let node = cluster.node(id);
            assert_eq!(node.term(), old_term, "pre-vote keeps the minority's term");
            let stale_leader = node.role() == Role::Leader;
            assert!(!stale_leader || id == old, "the minority elected {id:?}");
        }
    }
    assert_ne!(cluster.node(old).role(), Role::Leader, "check-quorum retired the old leader");
    let new = cluster.leader().expect("the majority elected a leader");
    assert!(majority.contains(&new));
    let new_term = cluster.node(new).term();
    assert!(new_term > old_term);
    // Healed, everyone follows the new leader, whose term is undisturbed.
    cluster.heal();
    cluster.run(30);
    for id in others(&cluster, &[]) {
        let node = cluster.node(id);
        assert_eq!((node.leader(), node.term()), (Some(new), new_term), "member {id:?}");
    }
    let index = cluster.propose(new, "after heal");
    for id in others(&cluster, &[]) {
        assert!(cluster.node(id).log().committed >= index);
    }
}

#[test]
fn stale_leader_steps_down_on_rejoin() {
    // Without check-quorum the cut-off leader cannot tell it lost its quorum.
    let mut cluster = Cluster::with(3, |config| config.check_quorum = false);
    let old = cluster.wait_for_leader(t(0));
    let old_term = cluster.node(old).term();
    let kept = cluster.propose(old, "committed");
    cluster.partition(&[old]);
    cluster.propose(old, "lost 1");
    cluster.propose(old, "lost 2");
    let new = cluster.wait_for_leader(old_term);
    cluster.propose(new, "new 1");
    assert_eq!(cluster.node(old).role(), Role::Leader, "still leads its stale term");
    cluster.heal();
    cluster.run(10);
    let (stale, leader) = (cluster.node(old), cluster.node(new));
    assert_eq!(stale.role(), Role::Follower);
    assert_eq!((stale.term(), stale.leader()), (leader.term(), Some(new)));
    assert_eq!(stale.log().last_index(), leader.log().last_index());
    for i in 1..=leader.log().last_index().0 {
        assert_eq!(stale.log().entry(ix(i)), leader.log().entry(ix(i)), "entry {i}");
    }
    assert!(stale.log().committed > kept);
    for id in others(&cluster, &[]) {
        let applied = cluster.applied_commands(id);
        assert_eq!(applied, vec!["committed", "new 1"], "member {id:?}");
    }
}

#[test]
fn leader_losing_quorum_steps_down() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader(t(0));
    let term = cluster.node(leader).term();
    for id in others(&cluster, &[leader]) {
        cluster.crash(id);
    }
    cluster.node_mut(leader).read_index(77).unwrap();
    cluster.deliver_all();
    let mut ticks = 0;
    while cluster.node(leader).role() == Role::Leader {
        cluster.tick();
        ticks += 1;
        assert!(ticks <= 20, "still leader {ticks} ticks after losing its quorum");
    }
    let node = cluster.node(leader);
    assert_eq!((node.term(), node.leader()), (term, None));
    let failed = ReadState { context: 77, index: None };
    assert_eq!(cluster.members[&leader].read_states, vec![failed], "the queued read failed");
    let refused = cluster.node_mut(leader).propose(vec![cmd(1)]);
    assert_eq!(refused, Err(ProposeError::NotLeader { leader: None }));
}

/// A member removed while cut off from the leader never learns it and keeps
/// campaigning; the others ignore it while they hear from their leader.
fn removed_member_scenario(pre_vote: bool) {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = pre_vote);
    let leader = cluster.wait_for_leader(t(0));
    let term = cluster.node(leader).term();
    let removed = others(&cluster, &[leader])[0];
    for id in others(&cluster, &[removed]) {
        cluster.block(id, removed);
    }
    let change = MembershipChange::Remove(removed);
    let index = cluster.node_mut(leader).propose_membership_change(change).unwrap();
    cluster.deliver_all();
    assert!(cluster.node(leader).log().committed >= index);
    assert!(cluster.node(removed).membership().voters.contains(&removed), "never told");
    let removed_term = cluster.node(removed).term();
    for round in 0..2 {
        cluster.run(100);
        let node = cluster.node(removed);
        assert_ne!(node.role(), Role::Leader);
        if pre_vote {
            assert_eq!(node.term(), removed_term, "pre-vote never won");
        } else if round == 0 {
            assert!(node.term() > removed_term, "it did campaign");
        }
        for id in others(&cluster, &[removed]) {
            let node = cluster.node(id);
            assert_eq!((node.term(), node.leader()), (term, Some(leader)), "member {id:?}");
        }
        cluster.heal();
    }
}

#[test]
fn removed_member_does_not_disrupt() {
    removed_member_scenario(true);
}

#[test]
fn removed_member_without_prevote_does_not_disrupt() {
    removed_member_scenario(false);
}

/// Member 3 misses `before` commands, cut off; the leader compacts its log
/// past them and takes `after` more. Returns the leader, the lagging member
/// and the leader's snapshot.
fn lagging_member(
    cluster: &mut Cluster,
    before: u64,
    after: u64,
) -> (NodeId, NodeId, SnapshotMeta) {
    let leader = cluster.wait_for_leader(t(0));
    let lagging = others(cluster, &[leader])[0];
    cluster.partition(&[lagging]);
    for i in 0..before {
        cluster.propose(leader, &format!("before {i}"));
    }
    cluster.compact(leader);
    let snapshot = cluster.node(leader).log().snapshot().clone();
    assert!(snapshot.index > cluster.node(lagging).log().last_index());
    for i in 0..after {
        cluster.propose(leader, &format!("after {i}"));
    }
    (leader, lagging, snapshot)
}

/// The lagging member installed exactly `snapshot`, caught up with the
/// leader, and applied every entry after the snapshot.
fn assert_caught_up_by(
    cluster: &Cluster,
    leader: NodeId,
    lagging: NodeId,
    snapshot: &SnapshotMeta,
) {
    let member = &cluster.members[&lagging];
    assert_eq!(member.installed, vec![snapshot.clone()]);
    let (node, leader) = (cluster.node(lagging), cluster.node(leader));
    assert_eq!(node.log().snapshot(), snapshot);
    assert_eq!(node.log().last_index(), leader.log().last_index());
    assert_eq!(node.log().committed, leader.log().committed);
    assert_eq!(member.applied_index, leader.log().committed);
    let applied_after: Vec<LogIndex> =
        member.applied.iter().map(|e| e.index).filter(|&i| i > snapshot.index).collect();
    let expected: Vec<LogIndex> = (snapshot.index.0 + 1..=member.applied_index.0).map(ix).collect();
    assert_eq!(applied_after, expected);
}

#[test]
fn lagging_follower_caught_up_by_snapshot() {
    let mut cluster = Cluster::new(3);
    let (leader, lagging, snapshot) = lagging_member(&mut cluster, 10, 3);
    cluster.heal();
    cluster.run(20);
    assert_caught_up_by(&cluster, leader, lagging, &snapshot);
}

/// The same, with one more command after healing: the new append exposes
/// the gap, and the snapshot follows.
#[test]
fn lagging_follower_caught_up_by_snapshot_once_traffic_resumes() {
    let mut cluster = Cluster::new(3);
    let (leader, lagging, snapshot) = lagging_member(&mut cluster, 10, 3);
    cluster.heal();
    cluster.run(2);
    cluster.propose(leader, "after heal");
    cluster.run(5);
    assert_caught_up_by(&cluster, leader, lagging, &snapshot);
    assert!(cluster.applied_commands(lagging).ends_with(&["after 2".into(), "after heal".into()]));
}

#[test]
fn crash_restart_keeps_committed_entries() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader(t(0));
    for i in 0..5 {
        cluster.propose(leader, &format!("command {i}"));
    }
    let committed = cluster.node(leader).log().committed;
    let log: Vec<Entry> = (1..=committed.0)
        .map(|i| cluster.node(leader).log().entry(ix(i)).unwrap().clone())
        .collect();
    // Proposed but never handed to the driver: lost with the process.
    cluster.node_mut(leader).propose(vec![Bytes::from("unsaved")]).unwrap();
    let ids = others(&cluster, &[]);
    for &id in &ids {
        cluster.crash(id);
    }
    for &id in &ids {
        cluster.restart(id);
        assert!(cluster.node(id).log().committed <= committed);
    }
    let term = cluster.node(leader).term();
    let new = cluster.wait_for_leader(term);
    cluster.propose(new, "after restart");
    for &id in &ids {
        let node = cluster.node(id);
        for entry in &log {
            assert_eq!(node.log().entry(entry.index), Some(entry), "member {id:?}");
        }
        let applied = &cluster.members[&id].applied;
        assert_eq!(applied[..log.len()], log[..], "member {id:?} re-applies the same prefix");
        let commands = cluster.applied_commands(id);
        assert_eq!(commands.last().map(String::as_str), Some("after restart"));
        assert!(!commands.iter().any(|c| c == "unsaved"));
    }
}
