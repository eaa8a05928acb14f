//! A tiny in-memory cluster for scenario tests: every member runs the real
//! core behind a driver that follows the `Ready` contract (send `messages`,
//! persist, send `messages_after_persist`, apply, advance) instantly, one
//! FIFO queue of messages, blocked links for partitions, and crashes that
//! keep only what the member persisted.
//!
//! It checks, after every step, tick and advance: each node's invariants, at
//! most one leader per term, entries applied in order, and that every member
//! applies the same entry at each index (state machine safety).

use std::collections::{BTreeMap, VecDeque};

use super::*;

/// A member's stable storage, written as the Ready contract says.
#[derive(Clone, Debug, Default)]
pub(super) struct Stored {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
}

impl Stored {
    fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// Step 2: the snapshot, then the entries (truncating the stored log at
    /// the first one), then the hard state.
    fn write(&mut self, ready: &Ready) {
        if let Some(meta) = &ready.snapshot {
            let at = self.entries.iter().position(|e| e.index == meta.index && e.term == meta.term);
            match at {
                Some(at) => drop(self.entries.drain(..=at)),
                None => self.entries.clear(),
            }
            self.snapshot = meta.clone();
        }
        if let Some(first) = ready.entries.first() {
            let keep = (first.index.0 - self.snapshot.index.0 - 1) as usize;
            assert!(keep <= self.entries.len(), "gap in the stored log");
            self.entries.truncate(keep);
            self.entries.extend_from_slice(&ready.entries);
        }
        if let Some(hard_state) = ready.hard_state {
            self.hard_state = hard_state;
        }
    }
}

pub(super) struct Member {
    pub config: Config,
    /// None while crashed.
    pub node: Option<Node>,
    pub stored: Stored,
    /// The state machine: the last index applied, the entries applied and
    /// the snapshots installed since the last start.
    pub applied_index: LogIndex,
    pub applied: Vec<Entry>,
    pub installed: Vec<SnapshotMeta>,
    pub read_states: Vec<ReadState>,
}

pub(super) struct Cluster {
    pub members: BTreeMap<NodeId, Member>,
    queue: VecDeque<Message>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Every entry applied by any member, by index.
    applied_anywhere: BTreeMap<LogIndex, Entry>,
    leaders: BTreeMap<Term, NodeId>,
}

impl Cluster {
    /// Members 1..=size, bootstrapped with all of them as voters; `tweak`
    /// adjusts each member's configuration.
    pub fn with(size: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let voters: Vec<u64> = (1..=size).collect();
        let snapshot = SnapshotMeta { index: ix(0), term: t(0), membership: membership(&voters) };
        let mut members = BTreeMap::new();
        for id in 1..=size {
            let mut config = config(id);
            tweak(&mut config);
            let stored = Stored { snapshot: snapshot.clone(), ..Stored::default() };
            let member = Member {
                node: Some(start(config.clone(), stored.restored())),
                config,
                stored,
                applied_index: ix(0),
                applied: Vec::new(),
                installed: Vec::new(),
                read_states: Vec::new(),
            };
            members.insert(n(id), member);
        }
        let (queue, blocked) = (VecDeque::new(), BTreeSet::new());
        let (applied_anywhere, leaders) = (BTreeMap::new(), BTreeMap::new());
        Cluster { members, queue, blocked, applied_anywhere, leaders }
    }

    pub fn new(size: u64) -> Cluster {
        Cluster::with(size, |_| {})
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.members[&id].node.as_ref().expect("member is up")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.members.get_mut(&id).unwrap().node.as_mut().expect("member is up")
    }

    fn up(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, m)| m.node.is_some()).map(|(&id, _)| id).collect()
    }

    /// One tick on every member that is up, then everything that follows.
    pub fn tick(&mut self) {
        for id in self.up() {
            self.node_mut(id).tick();
            self.observe(id);
        }
        self.deliver_all();
    }

    pub fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    /// Processes every Ready and delivers every message until quiet.
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            let ready: Vec<NodeId> =
                self.up().into_iter().filter(|&id| self.node(id).has_ready()).collect();
            if ready.is_empty() && self.queue.is_empty() {
                return;
            }
            for id in ready {
                self.drive(id);
            }
            while let Some(message) = self.queue.pop_front() {
                self.deliver(message);
            }
        }
        panic!("the cluster never goes quiet");
    }

    /// The driver, instantly and perfectly: steps 1 to 6 of the contract.
    fn drive(&mut self, id: NodeId) {
        let member = self.members.get_mut(&id).unwrap();
        let node = member.node.as_mut().unwrap();
        let ready = node.ready();
        node.check_invariants();
        member.stored.write(&ready);
        if let Some(meta) = &ready.snapshot {
            member.applied_index = meta.index;
            member.installed.push(meta.clone());
        }
        for entry in &ready.committed_entries {
            assert_eq!(entry.index.0, member.applied_index.0 + 1, "member {id:?} applies a gap");
            member.applied_index = entry.index;
            member.applied.push(entry.clone());
            let first = self.applied_anywhere.entry(entry.index).or_insert_with(|| entry.clone());
            assert_eq!(first, entry, "members applied different entries");
        }
        member.read_states.extend_from_slice(&ready.read_states);
        node.advance(&ready);
        self.observe(id);
        self.queue.extend(ready.messages);
        self.queue.extend(ready.messages_after_persist);
    }

    fn deliver(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        let snapshot = match &message.body {
            MessageBody::Snapshot { meta } => Some(meta.index),
            _ => None,
        };
        let up = self.members.get(&to).is_some_and(|m| m.node.is_some());
        if !up || self.blocked.contains(&(from, to)) {
            if let Some(index) = snapshot {
                self.report_snapshot(from, to, index, false);
            }
            return;
        }
        // The state machine's data is out of scope: the transfer is complete.
        self.node_mut(to).step(message);
        self.observe(to);
        if let Some(index) = snapshot {
            self.report_snapshot(from, to, index, true);
        }
    }

    fn report_snapshot(&mut self, leader: NodeId, to: NodeId, index: LogIndex, success: bool) {
        if self.members[&leader].node.is_some() {
            self.node_mut(leader).report_snapshot(to, index, success);
            self.observe(leader);
        }
    }

    fn observe(&mut self, id: NodeId) {
        let node = self.node(id);
        node.check_invariants();
        if node.role() == Role::Leader {
            let term = node.term();
            let first = *self.leaders.entry(term).or_insert(id);
            assert_eq!(first, id, "two leaders in term {term:?}");
        }
    }

    /// The process dies: whatever it had not persisted is gone.
    pub fn crash(&mut self, id: NodeId) {
        self.members.get_mut(&id).unwrap().node = None;
    }

    /// Starts again from storage, with a state machine restored from the
    /// stored snapshot.
    pub fn restart(&mut self, id: NodeId) {
        let member = self.members.get_mut(&id).unwrap();
        assert!(member.node.is_none());
        member.node = Some(start(member.config.clone(), member.stored.restored()));
        member.applied_index = member.stored.snapshot.index;
        member.applied.clear();
        member.installed.clear();
        self.observe(id);
    }

    /// Cuts `side` off from the rest, both ways.
    pub fn partition(&mut self, side: &[NodeId]) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for &a in side {
            for &b in ids.iter().filter(|b| !side.contains(b)) {
                self.blocked.insert((a, b));
                self.blocked.insert((b, a));
            }
        }
    }

    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// The member that is up and leads the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        let leaders = self.up().into_iter().filter(|&id| self.node(id).role() == Role::Leader);
        leaders.max_by_key(|&id| self.node(id).term())
    }

    /// Ticks until a leader of a term after `after` is known to every member
    /// it can reach.
    pub fn wait_for_leader(&mut self, after: Term) -> NodeId {
        for _ in 0..500 {
            self.tick();
            let Some(leader) = self.leader().filter(|&l| self.node(l).term() > after) else {
                continue;
            };
            let mut reached =
                self.up().into_iter().filter(|&id| !self.blocked.contains(&(leader, id)));
            if reached.all(|id| self.node(id).leader() == Some(leader)) {
                return leader;
            }
        }
        panic!("no leader after 500 ticks");
    }

    pub fn propose(&mut self, id: NodeId, command: &str) -> LogIndex {
        let index = self.node_mut(id).propose(vec![Bytes::from(command.to_string())]);
        self.observe(id);
        self.deliver_all();
        index.expect("proposal accepted")
    }

    /// The state machine snapshots at its applied index; the log is compacted.
    pub fn compact(&mut self, id: NodeId) {
        let index = self.members[&id].applied_index;
        self.node_mut(id).compact(index);
        self.observe(id);
        let meta = self.node(id).log().snapshot().clone();
        let stored = &mut self.members.get_mut(&id).unwrap().stored;
        stored.entries.drain(..(meta.index.0 - stored.snapshot.index.0) as usize);
        stored.snapshot = meta;
    }

    /// The commands of the entries a member has applied since it started.
    pub fn applied_commands(&self, id: NodeId) -> Vec<String> {
        let commands = self.members[&id].applied.iter().filter_map(|e| match &e.payload {
            EntryPayload::Normal(data) => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        });
        commands.collect()
    }
}
