//! The Raft log as the core sees it: a compaction point (the snapshot's
//! index, term and membership) followed by the entries after it, plus three
//! positions that only move forward except where noted:
//!
//! ```text
//!  snapshot.index   applied <= committed          persisted     last_index
//!  ──────┤─────────────┤────────────┤─────────────────┤──────────────┤
//!   compacted   handed to apply   committed       durable here   appended
//! ```
//!
//! `persisted` moves back only when a follower truncates a conflicting,
//! uncommitted suffix (§5.3). Entries after `persisted` are the "unstable"
//! ones the next `Ready` hands to the driver to write.

use crate::types::{LogIndex, Term};

use super::message::{Entry, EntryPayload, Membership, SnapshotMeta};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    entries: Vec<Entry>,
    pub(crate) persisted: LogIndex,
    pub(crate) committed: LogIndex,
    pub(crate) applied: LogIndex,
    /// Counts truncations and snapshot installs, so the node knows when the
    /// membership in force must be looked up again.
    pub(crate) truncations: u64,
}

impl RaftLog {
    /// A log restored from storage: the snapshot it was compacted to and the
    /// entries after it. `committed` comes from the hard state; it is capped
    /// at the last index because a torn write may have lost a suffix that the
    /// hard state already counted.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, committed: LogIndex) -> RaftLog {
        let mut log = RaftLog { snapshot, entries, ..RaftLog::default() };
        log.persisted = log.last_index();
        log.committed = LogIndex(committed.0.min(log.last_index().0).max(log.snapshot.index.0));
        log.applied = log.snapshot.index;
        log.check_invariants();
        log
    }

    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    pub fn first_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + 1)
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term of the entry at `index`; None when compacted away or absent.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index.0 <= self.snapshot.index.0 {
            return None;
        }
        self.entries.get((index.0 - self.snapshot.index.0 - 1) as usize)
    }

    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The leader appends new entries at the end of its log.
    pub fn append(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            assert_eq!(entry.index.0, self.last_index().0 + 1, "leader append not contiguous");
            assert!(entry.term >= self.last_term(), "entry term goes backwards");
            self.entries.push(entry);
        }
    }

    /// A follower's AppendEntries consistency check and append (§5.3).
    /// Returns the index of the last entry known to match the leader, or None
    /// when `prev_index`/`prev_term` do not match. Entries that already match
    /// are kept (a late, duplicated append must not truncate newer entries).
    pub fn try_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<LogIndex> {
        if prev_index < self.snapshot.index {
            // The prefix up to our snapshot is committed: skip what it covers.
            let skip = (self.snapshot.index.0 - prev_index.0) as usize;
            if entries.len() <= skip {
                return Some(self.snapshot.index);
            }
            let rest = &entries[skip..];
            assert!(rest[0].index.0 == self.snapshot.index.0 + 1);
            let (index, term) = (entries[skip - 1].index, entries[skip - 1].term);
            assert_eq!(term, self.snapshot.term, "committed prefix differs from the leader's");
            return self.try_append(index, term, rest);
        }
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        for (offset, entry) in entries.iter().enumerate() {
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    self.truncate_from(entry.index);
                    self.append(entries[offset..].to_vec());
                }
                None => self.append(entries[offset..].to_vec()),
            }
            break;
        }
        Some(last_new)
    }

    /// Drops the uncommitted suffix starting at `index` (§5.3).
    fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.committed, "truncating committed entry {}", index.0);
        self.entries.truncate((index.0 - self.snapshot.index.0 - 1) as usize);
        self.truncations += 1;
        self.persisted = self.persisted.min(LogIndex(index.0 - 1));
    }

    /// Entries from `from` on, at least one (if any) and at most `bytes_max`.
    pub fn slice(&self, from: LogIndex, bytes_max: usize) -> Vec<Entry> {
        assert!(from > self.snapshot.index, "slice of compacted entries");
        let start = (from.0 - self.snapshot.index.0 - 1) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for entry in self.entries.iter().skip(start) {
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// Entries not yet handed to the driver as durable.
    pub fn unstable(&self) -> &[Entry] {
        let start = (self.persisted.0.max(self.snapshot.index.0) - self.snapshot.index.0) as usize;
        &self.entries[start..]
    }

    /// The driver made everything up to (`index`, `term`) durable. Ignored if
    /// that entry was replaced meanwhile (a truncation moved `persisted` back).
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) {
        if index > self.persisted && self.matches(index, term) {
            self.persisted = index;
        }
    }

    /// Committed, durable entries not yet handed out for applying.
    pub fn to_apply(&self) -> &[Entry] {
        let end = self.committed.min(self.persisted);
        if end <= self.applied {
            return &[];
        }
        let base = self.snapshot.index.0;
        &self.entries[(self.applied.0 - base) as usize..(end.0 - base) as usize]
    }

    pub fn commit_to(&mut self, index: LogIndex) {
        assert!(index <= self.last_index(), "commit beyond the log");
        self.committed = self.committed.max(index);
    }

    /// A snapshot from the leader replaces our log up to its index. Entries
    /// after it are kept when ours agree at its index (§5.7 / fig. 5.13).
    pub fn install(&mut self, meta: SnapshotMeta) {
        assert!(meta.index > self.committed, "installing a snapshot we already cover");
        if self.matches(meta.index, meta.term) {
            let keep_from = (meta.index.0 - self.snapshot.index.0) as usize;
            self.entries.drain(..keep_from);
            self.persisted = self.persisted.max(meta.index);
        } else {
            self.entries.clear();
            self.persisted = meta.index;
        }
        self.truncations += 1;
        self.committed = meta.index;
        self.applied = meta.index;
        self.snapshot = meta;
    }

    /// The driver has a snapshot of the state machine at `index` (≤ applied):
    /// forget the entries it covers.
    pub fn compact(&mut self, index: LogIndex) {
        assert!(index <= self.applied, "compacting beyond the applied index");
        if index <= self.snapshot.index {
            return;
        }
        let term = self.term(index).expect("entry to compact to");
        let membership = self.membership_at(index);
        self.entries.drain(..(index.0 - self.snapshot.index.0) as usize);
        self.snapshot = SnapshotMeta { index, term, membership };
    }

    /// The membership in force at `index`: the latest membership entry at or
    /// before it, else the snapshot's.
    pub fn membership_at(&self, index: LogIndex) -> Membership {
        let end = (index.0.min(self.last_index().0) - self.snapshot.index.0) as usize;
        self.entries[..end]
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                EntryPayload::Membership(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.snapshot.membership.clone())
    }

    /// The index of the latest membership entry (the snapshot's if none).
    pub fn membership_index(&self) -> LogIndex {
        self.entries
            .iter()
            .rev()
            .find(|e| matches!(e.payload, EntryPayload::Membership(_)))
            .map_or(self.snapshot.index, |e| e.index)
    }

    pub fn check_invariants(&self) {
        let mut term = self.snapshot.term;
        for (expected, entry) in (self.snapshot.index.0 + 1..).zip(&self.entries) {
            assert_eq!(entry.index.0, expected, "log not contiguous");
            assert!(entry.term >= term, "log terms go backwards at {}", entry.index.0);
            term = entry.term;
        }
        assert!(self.snapshot.index <= self.applied, "applied below the snapshot");
        assert!(self.applied <= self.committed, "applied beyond committed");
        assert!(self.committed <= self.last_index(), "committed beyond the log");
        assert!(self.persisted <= self.last_index(), "persisted beyond the log");
        assert!(self.applied <= self.persisted, "applied an entry not durable here");
        self.snapshot.membership.check_invariants();
    }
}
