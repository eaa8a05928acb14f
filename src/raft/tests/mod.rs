//! Tests of the Raft core, each named after the rule it checks (the section
//! of Ongaro's thesis, "Consensus: Bridging Theory and Practice", where the
//! rule has one).
//!
//! Rule tests put one node in a known state, step one message (or tick, or
//! call one method) and compare the whole `Ready` it produces. Scenario tests
//! (`scenarios`) run a small in-memory cluster (`cluster`). Every helper
//! checks the node's invariants after every step, tick and advance.

mod cluster;
mod election;
mod membership;
mod reads;
mod replication;
mod review;
mod scenarios;
mod snapshots;
mod transfer;

use std::collections::BTreeSet;

use bytes::Bytes;

use super::*;
use crate::types::{LogIndex, NodeId, Term};

const SEED: u64 = 7;

fn n(id: u64) -> NodeId {
    NodeId(id)
}

fn ix(index: u64) -> LogIndex {
    LogIndex(index)
}

fn t(term: u64) -> Term {
    Term(term)
}

fn config(id: u64) -> Config {
    Config::new(NodeId(id), SEED)
}

fn membership(voters: &[u64]) -> Membership {
    Membership::with_voters(voters.iter().copied().map(NodeId))
}

/// The command `propose` turns into the entry at `index` (see `entry`).
fn cmd(index: u64) -> Bytes {
    Bytes::from(format!("cmd{index}"))
}

/// A command entry whose payload names its index.
fn entry(index: u64, term: u64) -> Entry {
    Entry { term: Term(term), index: LogIndex(index), payload: EntryPayload::Normal(cmd(index)) }
}

/// The no-op a leader appends when elected.
fn noop(index: u64, term: u64) -> Entry {
    Entry { term: Term(term), index: LogIndex(index), payload: EntryPayload::Empty }
}

fn membership_entry(index: u64, term: u64, membership: Membership) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Membership(membership),
    }
}

/// Entries 1, 2, … with these terms.
fn entries(terms: &[u64]) -> Vec<Entry> {
    terms.iter().enumerate().map(|(i, &term)| entry(i as u64 + 1, term)).collect()
}

fn hard_state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState { term: Term(term), vote: vote.map(NodeId), commit: LogIndex(commit) }
}

/// Storage of a member of a cluster bootstrapped with `membership`, at
/// `term`, holding entries with these terms, nothing committed.
fn restored_with(membership: Membership, term: u64, terms: &[u64]) -> Restored {
    Restored {
        hard_state: hard_state(term, None, 0),
        snapshot: SnapshotMeta { index: LogIndex(0), term: Term(0), membership },
        entries: entries(terms),
    }
}

fn restored(voters: &[u64], term: u64, terms: &[u64]) -> Restored {
    restored_with(membership(voters), term, terms)
}

fn start(config: Config, restored: Restored) -> Node {
    let node = Node::new(config, restored);
    node.check_invariants();
    node
}

fn node_with(config: Config, voters: &[u64], term: u64, terms: &[u64]) -> Node {
    start(config, restored(voters, term, terms))
}

/// A node with the default configuration.
fn new_node(id: u64, voters: &[u64], term: u64, terms: &[u64]) -> Node {
    node_with(config(id), voters, term, terms)
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message { from: NodeId(from), to: NodeId(to), term: Term(term), body }
}

fn step(node: &mut Node, message: Message) {
    node.step(message);
    node.check_invariants();
}

fn tick(node: &mut Node) {
    node.tick();
    node.check_invariants();
}

/// An instant, perfect driver: persisting is a no-op, sending is the
/// caller's business. Returns what it was asked to do.
fn drive(node: &mut Node) -> Ready {
    let ready = node.ready();
    node.check_invariants();
    node.advance(&ready);
    node.check_invariants();
    ready
}

/// As if the node had been up for an election timeout without hearing from a
/// leader: its start-up lease (§6.4.1) no longer makes it ignore votes.
fn skip_startup_lease(node: &mut Node) {
    node.leader_contact_elapsed = node.config.election_ticks;
}

fn ok(index: u64) -> MessageBody {
    MessageBody::AppendResponse {
        success: true,
        index: ix(index),
        hint_index: ix(0),
        hint_term: t(0),
    }
}

fn reject(index: u64, hint_index: u64, hint_term: u64) -> MessageBody {
    MessageBody::AppendResponse {
        success: false,
        index: ix(index),
        hint_index: ix(hint_index),
        hint_term: t(hint_term),
    }
}

fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) -> MessageBody {
    let (prev_index, prev_term, commit) = (ix(prev_index), t(prev_term), ix(commit));
    MessageBody::Append { prev_index, prev_term, entries, commit }
}

fn heartbeat(commit: u64, read_round: u64) -> MessageBody {
    MessageBody::Heartbeat { commit: ix(commit), read_round }
}

fn vote(pre: bool, last_index: u64, last_term: u64) -> MessageBody {
    let (last_index, last_term) = (ix(last_index), t(last_term));
    MessageBody::Vote { pre, force: false, last_index, last_term }
}

fn vote_response(pre: bool, granted: bool) -> MessageBody {
    MessageBody::VoteResponse { pre, granted }
}

/// The same message to each of `to`.
fn to_each(from: u64, to: &[u64], term: u64, body: MessageBody) -> Vec<Message> {
    to.iter().map(|&id| msg(from, id, term, body.clone())).collect()
}

fn other_voters(node: &Node) -> Vec<u64> {
    node.membership().voters.iter().map(|id| id.0).filter(|&id| id != node.id().0).collect()
}

fn followers(node: &Node) -> Vec<u64> {
    node.membership().members().map(|id| id.0).filter(|&id| id != node.id().0).collect()
}

/// Makes `node` leader of the next term: a TimeoutNow starts its campaign,
/// its own vote becomes durable, the other voters grant theirs. Returns the
/// `Ready` of its first round as leader (the no-op's appends).
fn elect(node: &mut Node) -> Ready {
    let (me, term) = (node.id().0, node.term().0);
    let others = other_voters(node);
    step(node, msg(others.first().copied().unwrap_or(me), me, term, MessageBody::TimeoutNow));
    drive(node);
    for id in others {
        if node.role() == Role::Leader {
            break;
        }
        step(node, msg(id, me, term + 1, vote_response(false, true)));
    }
    assert_eq!(node.role(), Role::Leader);
    drive(node)
}

/// A leader (the first of `voters`) of term `term + 1` with entries of these
/// terms and then its no-op, which no follower has acknowledged yet.
fn leader_with(config: Config, voters: &[u64], term: u64, terms: &[u64]) -> Node {
    let mut node = node_with(config, voters, term, terms);
    elect(&mut node);
    node
}

fn leader(voters: &[u64], term: u64, terms: &[u64]) -> Node {
    leader_with(config(voters[0]), voters, term, terms)
}

/// Every follower acknowledges the leader's log: all are in Replicate, and
/// the no-op is committed and applied.
fn ack_all(node: &mut Node) {
    let (me, term, last) = (node.id().0, node.term().0, node.log().last_index().0);
    for id in followers(node) {
        step(node, msg(id, me, term, ok(last)));
    }
    drive(node);
}
