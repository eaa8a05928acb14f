//! Safety checkers that watch the cluster as it runs (the linearizability
//! check of client histories runs at the end, in `kv_model`):
//!
//! - election safety: at most one leader per term (§3.6.3, fig. 3.2);
//! - state machine safety: no two members apply different entries at one
//!   index, before or after crashes;
//! - leader completeness: a new leader's log holds every entry any member
//!   has applied (so committed entries are never lost across crashes);
//! - log matching: two logs that agree on an entry's term at an index agree
//!   on every entry up to it.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::raft::{Entry, Node};
use crate::types::{LogIndex, NodeId, Term};

#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    applied: BTreeMap<LogIndex, (Term, u64, NodeId)>,
    pub violations: Vec<String>,
}

pub fn entry_hash(entry: &Entry) -> u64 {
    let mut hasher = DefaultHasher::new();
    entry.hash(&mut hasher);
    hasher.finish()
}

impl Checker {
    fn violation(&mut self, text: String) {
        if self.violations.len() < 16 {
            self.violations.push(text);
        }
    }

    pub fn leader_elected(&mut self, node: &Node, now: u64) {
        let (term, id) = (node.term(), node.id());
        match self.leaders.get(&term) {
            Some(&other) if other != id => self.violation(format!(
                "election safety: members {} and {} both led term {} (t={now}ms)",
                other.0, id.0, term.0
            )),
            Some(_) => return,
            None => {
                self.leaders.insert(term, id);
            }
        }
        self.check_leader_completeness(node, now);
    }

    fn check_leader_completeness(&mut self, node: &Node, now: u64) {
        let log = node.log();
        let from = LogIndex(log.snapshot().index.0 + 1);
        let mut missing = None;
        for (&index, &(term, hash, by)) in self.applied.range(from..) {
            let held = log.entry(index).map(|e| (e.term, entry_hash(e)));
            if held != Some((term, hash)) {
                missing = Some((index, term, by));
                break;
            }
        }
        if let Some((index, term, by)) = missing {
            self.violation(format!(
                "leader completeness: leader {} of term {} lacks entry {} (term {}) applied by {} \
                 (t={now}ms)",
                node.id().0,
                node.term().0,
                index.0,
                term.0,
                by.0
            ));
        }
    }

    pub fn entry_applied(&mut self, by: NodeId, entry: &Entry, now: u64) {
        let record = (entry.term, entry_hash(entry), by);
        match self.applied.get(&entry.index) {
            Some(&(term, hash, other)) if (term, hash) != (record.0, record.1) => {
                self.violation(format!(
                    "state machine safety: index {} applied as term {} by {} but term {} by {} \
                     (t={now}ms)",
                    entry.index.0, term.0, other.0, entry.term.0, by.0
                ))
            }
            Some(_) => {}
            None => {
                self.applied.insert(entry.index, record);
            }
        }
    }

    /// Log matching over the uncompacted overlap of two members' logs.
    pub fn check_log_matching(&mut self, a: &Node, b: &Node, now: u64) {
        let (la, lb) = (a.log(), b.log());
        let low = la.first_index().max(lb.first_index());
        let high = la.last_index().min(lb.last_index());
        let mut agreed = false;
        let mut index = high;
        while index >= low && index.0 > 0 {
            let (ea, eb) = (la.entry(index).expect("entry"), lb.entry(index).expect("entry"));
            if ea.term == eb.term {
                agreed = true;
            }
            if agreed && ea != eb {
                self.violation(format!(
                    "log matching: members {} and {} agree on a later term but differ at index \
                     {} (t={now}ms)",
                    a.id().0,
                    b.id().0,
                    index.0
                ));
                return;
            }
            index = LogIndex(index.0 - 1);
        }
    }

    pub fn applied_entries(&self) -> usize {
        self.applied.len()
    }
}
