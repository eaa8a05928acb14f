//! The simulated world: an event queue ordered by (time, sequence), the
//! network between members and clients, and the fault schedule. One thread,
//! one seed: every choice comes from `Rng`, every collection iterates in key
//! order, so a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::{EntryPayload, Membership, Message, MessageBody, Role, SnapshotMeta};
use crate::types::{LogIndex, NodeId, Term};

use super::checker::Checker;
use super::client::{attempt_timeout_ms, give_up_ms, Client};
use super::disk::{Keep, SimDisk};
use super::kv::{Command, Kv};
use super::kv_model::{KvInput, KvOperation, KvOutput};
use super::member::{raft_config, Member};
use super::rng::Rng;
use super::{SimConfig, Stats};

pub const tick_ms: u64 = 10;
pub(super) const fault_interval_ms: u64 = 50;
const compact_after_entries: u64 = 48;

#[derive(Clone, Debug)]
pub enum Reply {
    Done(KvOutput),
    Redirect(Option<NodeId>),
}

pub enum Event {
    Tick,
    Deliver(Message, Option<Kv>),
    SnapshotDone { leader: NodeId, to: NodeId, index: LogIndex, success: bool },
    ClientRequest { to: NodeId, client: u64, seq: u64, key: u64, input: KvInput },
    ClientReply { client: u64, seq: u64, reply: Reply },
    ClientSend { client: u64, seq: u64, attempt: u32 },
    ClientTimer { client: u64, seq: u64, attempt: u32 },
    ClientIdle { client: u64 },
    DiskDone { member: NodeId, epoch: u64 },
    Restart(NodeId),
    Fault,
    Heal,
    Shutdown(NodeId),
}

#[derive(Default)]
pub struct Network {
    /// Directed links that drop everything.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    pub drop_per_million: u64,
    pub duplicate_per_million: u64,
    pub slow_per_million: u64,
}

pub struct World {
    pub config: SimConfig,
    pub rng: Rng,
    pub now: u64,
    sequence: u64,
    queue: BTreeMap<(u64, u64), Event>,
    pub members: BTreeMap<NodeId, Member>,
    pub clients: Vec<Client>,
    pub history: Vec<KvOperation>,
    pub checker: Checker,
    pub network: Network,
    pub stats: Stats,
    pub healing_since: Option<u64>,
    pub(super) next_member_id: u64,
    next_context: u64,
    membership_applied: LogIndex,
    ever_member: BTreeSet<NodeId>,
    /// SIM_TRACE=1 prints snapshot installs, applies and reads to stderr.
    trace: bool,
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let mut world = World {
            rng: Rng::new(config.seed),
            now: 0,
            sequence: 0,
            queue: BTreeMap::new(),
            members: BTreeMap::new(),
            clients: Vec::new(),
            history: Vec::new(),
            checker: Checker::default(),
            network: Network::default(),
            stats: Stats::default(),
            healing_since: None,
            next_member_id: config.members + 1,
            next_context: 1,
            membership_applied: LogIndex(0),
            ever_member: BTreeSet::new(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
            config,
        };
        let voters: Vec<NodeId> = (1..=world.config.members).map(NodeId).collect();
        let bootstrap = SnapshotMeta {
            index: LogIndex(0),
            term: Term(0),
            membership: Membership::with_voters(voters.iter().copied()),
        };
        world.ever_member.extend(voters.iter().copied());
        for &id in &voters {
            world.add_member(id, SimDisk::bootstrap(bootstrap.clone()));
        }
        for client in 0..world.config.clients {
            let target = world.rng.pick(&voters);
            world.clients.push(Client::new(client + 1, target));
            let start = world.rng.range(1, 20);
            world.schedule(start, Event::ClientIdle { client: client + 1 });
        }
        world.schedule(tick_ms, Event::Tick);
        if world.config.faults {
            world.schedule(fault_interval_ms, Event::Fault);
        }
        world
    }

    pub(super) fn add_member(&mut self, id: NodeId, disk: SimDisk) {
        let mut member = Member::new(id, disk);
        member.start(self.raft_config(id));
        self.members.insert(id, member);
    }

    fn raft_config(&self, id: NodeId) -> crate::raft::Config {
        raft_config(id, &self.config)
    }

    pub fn schedule(&mut self, delay: u64, event: Event) {
        self.sequence += 1;
        self.queue.insert((self.now + delay, self.sequence), event);
    }

    /// Runs the next event; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(((time, _), event)) = self.queue.pop_first() else { return false };
        self.now = time;
        self.handle(event);
        true
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => self.tick(),
            Event::Deliver(message, data) => self.deliver(message, data),
            Event::SnapshotDone { leader, to, index, success } => {
                if let Some(node) = self.members.get_mut(&leader).and_then(|m| m.node.as_mut()) {
                    node.report_snapshot(to, index, success);
                    self.after_step(leader);
                }
            }
            Event::ClientRequest { to, client, seq, key, input } => {
                self.client_request(to, client, seq, key, input)
            }
            Event::ClientReply { client, seq, reply } => self.client_reply(client, seq, reply),
            Event::ClientSend { client, seq, attempt } => self.client_send(client, seq, attempt),
            Event::ClientTimer { client, seq, attempt } => self.client_timer(client, seq, attempt),
            Event::ClientIdle { client } => self.client_idle(client),
            Event::DiskDone { member, epoch } => self.disk_done(member, epoch),
            Event::Restart(id) => self.restart(id),
            Event::Fault => self.fault(),
            Event::Heal => self.network.blocked.clear(),
            Event::Shutdown(id) => {
                if let Some(member) = self.members.get_mut(&id) {
                    member.crash();
                    member.removed = true;
                }
            }
        }
    }

    fn tick(&mut self) {
        self.stats.ticks += 1;
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            if let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) {
                node.tick();
                self.after_step(id);
            }
        }
        if self.stats.ticks.is_multiple_of(20) {
            self.check_logs();
        }
        self.schedule(tick_ms, Event::Tick);
    }

    pub fn check_logs(&mut self) {
        let up: Vec<&Member> = self.members.values().filter(|m| m.is_up()).collect();
        for (i, a) in up.iter().enumerate() {
            for b in &up[i + 1..] {
                let (a, b) = (a.node.as_ref().unwrap(), b.node.as_ref().unwrap());
                self.checker.check_log_matching(a, b, self.now);
            }
        }
    }

    // ---- the network ----

    pub(super) fn delay(&mut self) -> u64 {
        if self.rng.chance(self.network.slow_per_million) {
            self.rng.range(5, 60)
        } else {
            self.rng.range(1, 5)
        }
    }

    fn lost(&mut self, from: NodeId, to: NodeId) -> bool {
        self.network.blocked.contains(&(from, to)) || self.rng.chance(self.network.drop_per_million)
    }

    fn send_raft(&mut self, message: Message) {
        self.stats.messages += 1;
        let (from, to) = (message.from, message.to);
        // The driver ships its latest snapshot, which may be newer than the
        // one the core named when it queued the message; the message that
        // reaches the follower names the one shipped.
        let mut message = message;
        let data = match &mut message.body {
            MessageBody::Snapshot { meta } => {
                let disk = &self.members[&from].disk;
                assert!(disk.snapshot.index >= meta.index, "snapshot older than named");
                *meta = disk.snapshot.clone();
                Some(disk.snapshot_kv.clone())
            }
            _ => None,
        };
        let delay = self.delay();
        if self.lost(from, to) {
            if let MessageBody::Snapshot { meta } = &message.body {
                let (leader, index, success) = (from, meta.index, false);
                self.schedule(delay, Event::SnapshotDone { leader, to, index, success });
            }
            return;
        }
        if self.rng.chance(self.network.duplicate_per_million) {
            let again = self.delay();
            self.schedule(again, Event::Deliver(message.clone(), data.clone()));
        }
        self.schedule(delay, Event::Deliver(message, data));
    }

    fn deliver(&mut self, message: Message, data: Option<Kv>) {
        let (leader, to) = (message.from, message.to);
        let snapshot = match &message.body {
            MessageBody::Snapshot { meta } => Some(meta.clone()),
            _ => None,
        };
        let Some(member) = self.members.get_mut(&to).filter(|m| m.is_up()) else {
            if let Some(meta) = snapshot {
                let (index, success) = (meta.index, false);
                self.schedule(0, Event::SnapshotDone { leader, to, index, success });
            }
            return;
        };
        if let (Some(meta), Some(kv)) = (&snapshot, data) {
            // Kept until the core installs it (or a newer one): the core may
            // also ignore it, while one it installed earlier is still pending.
            member.incoming_snapshots.push((meta.clone(), kv));
            if member.incoming_snapshots.len() > 4 {
                member.incoming_snapshots.remove(0);
            }
        }
        member.node.as_mut().unwrap().step(message);
        if let Some(meta) = snapshot {
            // The stream completed; the sender learns it as TCP would tell it.
            let (index, success) = (meta.index, true);
            self.schedule(1, Event::SnapshotDone { leader, to, index, success });
        }
        self.after_step(to);
    }

    // ---- the driver: the Ready contract ----

    pub fn after_step(&mut self, id: NodeId) {
        let member = self.members.get_mut(&id).expect("member");
        let Some(node) = member.node.as_ref() else { return };
        node.check_invariants();
        let leadership = (node.role() == Role::Leader).then_some(node.term().0);
        if leadership.is_some() && leadership != member.last_leadership {
            self.checker.leader_elected(node, self.now);
        }
        member.last_leadership = leadership;
        self.drive(id);
    }

    /// Step 1 of the contract, and the start of the write for step 2.
    fn drive(&mut self, id: NodeId) {
        let member = self.members.get_mut(&id).expect("member");
        let Some(node) = member.node.as_mut() else { return };
        if member.writing.is_some() || !node.has_ready() {
            return;
        }
        let ready = node.ready();
        let snapshot_kv = ready.snapshot.as_ref().map(|meta| {
            let position = member.incoming_snapshots.iter().rposition(|(m, _)| m == meta);
            let (_, kv) = member.incoming_snapshots.remove(position.expect("snapshot data"));
            member.incoming_snapshots.clear();
            kv
        });
        let messages = ready.messages.clone();
        let latency = if ready.must_persist() { self.rng.range(1, 3) } else { 0 };
        let epoch = member.epoch;
        member.writing = Some((ready, snapshot_kv));
        for message in messages {
            self.send_raft(message);
        }
        self.schedule(latency, Event::DiskDone { member: id, epoch });
    }

    /// Steps 2–6: the write is durable; send, apply, serve reads, advance.
    fn disk_done(&mut self, id: NodeId, epoch: u64) {
        let member = self.members.get_mut(&id).expect("member");
        if member.epoch != epoch || member.node.is_none() {
            return;
        }
        let (ready, snapshot_kv) = member.writing.take().expect("a write in flight");
        member.disk.write(&ready, snapshot_kv.as_ref(), Keep::All);
        if let Some(kv) = snapshot_kv {
            if self.trace {
                eprintln!(
                    "t={} member {} installs snapshot {:?} kv {:?}",
                    self.now,
                    id.0,
                    ready.snapshot.as_ref().map(|m| m.index.0),
                    kv
                );
            }
            member.kv = kv;
            member.kv_applied = ready.snapshot.as_ref().unwrap().index;
        }
        if self.trace && !ready.committed_entries.is_empty() {
            eprintln!(
                "t={} member {} applies {}..={}",
                self.now,
                id.0,
                ready.committed_entries[0].index.0,
                ready.committed_entries.last().unwrap().index.0
            );
        }
        for message in ready.messages_after_persist.clone() {
            self.send_raft(message);
        }
        for entry in &ready.committed_entries {
            self.apply(id, entry);
        }
        let member = self.members.get_mut(&id).expect("member");
        let mut failed = Vec::new();
        for state in &ready.read_states {
            match state.index {
                Some(index) => member.reads_ready.push((index, state.context)),
                None => failed.extend(member.pending_reads.remove(&state.context)),
            }
        }
        for (client, seq, _) in failed {
            self.reply(id, client, seq, Reply::Redirect(None));
        }
        let member = self.members.get_mut(&id).expect("member");
        member.node.as_mut().unwrap().advance(&ready);
        self.serve_reads(id);
        self.maybe_compact(id);
        self.after_step(id);
    }

    fn apply(&mut self, id: NodeId, entry: &crate::raft::Entry) {
        self.checker.entry_applied(id, entry, self.now);
        match &entry.payload {
            EntryPayload::Normal(data) => {
                let command = Command::decode(data);
                let member = self.members.get_mut(&id).expect("member");
                let output = member.kv.apply(&command);
                member.kv_applied = entry.index;
                let waiting = member.waiting_writes.remove(&(command.client, command.seq));
                if let (Some(output), true) = (output, waiting) {
                    self.reply(id, command.client, command.seq, Reply::Done(output));
                }
            }
            EntryPayload::Membership(membership) => {
                self.membership_applied(entry.index, membership)
            }
            EntryPayload::Empty => {}
        }
        self.members.get_mut(&id).expect("member").kv_applied = entry.index;
    }

    /// Members removed by a newly applied membership shut down a little later
    /// (so they linger and may disrupt, as real ones do).
    fn membership_applied(&mut self, index: LogIndex, membership: &Membership) {
        if index <= self.membership_applied {
            return;
        }
        self.membership_applied = index;
        let gone: Vec<NodeId> =
            self.ever_member.iter().copied().filter(|&id| !membership.contains(id)).collect();
        self.ever_member.extend(membership.members());
        for id in gone {
            self.ever_member.remove(&id);
            let delay = self.rng.range(20, 200);
            self.schedule(delay, Event::Shutdown(id));
        }
    }

    fn serve_reads(&mut self, id: NodeId) {
        let member = self.members.get_mut(&id).expect("member");
        let applied = member.kv_applied;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            member.reads_ready.drain(..).partition(|&(index, _)| index <= applied);
        member.reads_ready = waiting;
        let mut replies = Vec::new();
        for (index, context) in ready {
            if let Some((client, seq, key)) = member.pending_reads.remove(&context) {
                if self.trace {
                    eprintln!(
                        "t={} member {} serves read c{} s{} key {} at index {} applied {} -> {:?}",
                        self.now,
                        id.0,
                        client,
                        seq,
                        key,
                        index.0,
                        applied.0,
                        member.kv.get(key)
                    );
                }
                replies.push((client, seq, member.kv.get(key)));
            }
        }
        for (client, seq, output) in replies {
            self.reply(id, client, seq, Reply::Done(output));
        }
    }

    fn maybe_compact(&mut self, id: NodeId) {
        let member = self.members.get_mut(&id).expect("member");
        let node = member.node.as_mut().unwrap();
        let log = node.log();
        if member.writing.is_some()
            || log.applied.0 < log.snapshot().index.0 + compact_after_entries
        {
            return;
        }
        let index = member.kv_applied;
        assert_eq!(index, log.applied, "compacting at the state machine's index");
        node.compact(index);
        let meta = node.log().snapshot().clone();
        member.disk.compact(meta, member.kv.clone());
    }

    // ---- crashes and restarts ----

    pub fn crash(&mut self, id: NodeId) {
        let torn = self.rng.range(0, 2);
        let member = self.members.get_mut(&id).expect("member");
        let Some((ready, kv)) = member.crash() else { return };
        let keep = match torn {
            0 => return,
            1 => Keep::Prefix(self.rng.range(0, ready.entries.len() as u64) as usize),
            _ => Keep::All,
        };
        let member = self.members.get_mut(&id).expect("member");
        member.disk.write(&ready, kv.as_ref(), keep);
    }

    pub fn restart(&mut self, id: NodeId) {
        let config = self.raft_config(id);
        let member = self.members.get_mut(&id).expect("member");
        if member.removed || member.is_up() {
            return;
        }
        member.start(config);
        self.after_step(id);
    }

    // ---- clients ----

    fn client(&mut self, id: u64) -> &mut Client {
        &mut self.clients[id as usize - 1]
    }

    fn client_idle(&mut self, id: u64) {
        let (now, mut rng) = (self.now, std::mem::replace(&mut self.rng, Rng::new(0)));
        let mut history = std::mem::take(&mut self.history);
        self.client(id).invoke(&mut rng, now, &mut history);
        self.history = history;
        self.rng = rng;
        let seq = self.client(id).outstanding.as_ref().unwrap().seq;
        self.client_send(id, seq, 0);
    }

    fn client_send(&mut self, id: u64, seq: u64, attempt: u32) {
        let client = self.client(id);
        let Some(op) = client.outstanding.as_ref().filter(|o| o.seq == seq && o.attempt == attempt)
        else {
            return;
        };
        let (to, key, input) = (client.target, op.key, op.input.clone());
        let delay = self.delay();
        if !self.rng.chance(self.network.drop_per_million) {
            self.schedule(delay, Event::ClientRequest { to, client: id, seq, key, input });
        }
        self.schedule(attempt_timeout_ms, Event::ClientTimer { client: id, seq, attempt });
    }

    fn client_timer(&mut self, id: u64, seq: u64, attempt: u32) {
        let (now, healing) = (self.now, self.healing_since.is_some());
        let client = self.client(id);
        let Some(op) = client.outstanding.as_mut().filter(|o| o.seq == seq && o.attempt == attempt)
        else {
            return;
        };
        if !healing && now - op.call >= give_up_ms {
            client.give_up();
            self.schedule(1, Event::ClientIdle { client: id });
            return;
        }
        op.attempt += 1;
        let attempt = op.attempt;
        let target = self.random_member();
        self.client(id).target = target;
        self.client_send(id, seq, attempt);
    }

    fn random_member(&mut self) -> NodeId {
        let candidates: Vec<NodeId> =
            self.members.iter().filter(|(_, m)| !m.removed).map(|(&id, _)| id).collect();
        self.rng.pick(&candidates)
    }

    fn client_reply(&mut self, id: u64, seq: u64, reply: Reply) {
        let now = self.now;
        let client = self.client(id);
        let Some(op) = client.outstanding.as_mut().filter(|o| o.seq == seq) else { return };
        match reply {
            Reply::Done(output) => {
                let mut history = std::mem::take(&mut self.history);
                self.client(id).complete(output, now, &mut history);
                self.history = history;
                let think = self.rng.range(0, 5);
                self.schedule(think, Event::ClientIdle { client: id });
            }
            Reply::Redirect(hint) => {
                op.attempt += 1;
                let attempt = op.attempt;
                let target = match hint {
                    Some(leader) => leader,
                    None => self.random_member(),
                };
                self.client(id).target = target;
                let backoff = self.rng.range(1, 5);
                self.schedule(backoff, Event::ClientSend { client: id, seq, attempt });
            }
        }
    }

    fn reply(&mut self, _from: NodeId, client: u64, seq: u64, reply: Reply) {
        let delay = self.delay();
        if !self.rng.chance(self.network.drop_per_million) {
            self.schedule(delay, Event::ClientReply { client, seq, reply });
        }
    }

    fn client_request(&mut self, to: NodeId, client: u64, seq: u64, key: u64, input: KvInput) {
        let context = self.next_context;
        self.next_context += 1;
        let Some(member) = self.members.get_mut(&to).filter(|m| m.is_up()) else { return };
        let node = member.node.as_mut().unwrap();
        let result = match input {
            KvInput::Get => {
                member.pending_reads.insert(context, (client, seq, key));
                node.read_index(context)
            }
            input => {
                let command = Command { client, seq, key, input };
                node.propose(vec![command.encode()]).map(|_| {
                    member.waiting_writes.insert((client, seq));
                })
            }
        };
        if let Err(error) = result {
            member.pending_reads.remove(&context);
            let hint = match error {
                crate::raft::ProposeError::NotLeader { leader } => leader,
                _ => None,
            };
            self.reply(to, client, seq, Reply::Redirect(hint));
        }
        self.after_step(to);
    }
}
