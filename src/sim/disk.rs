//! A member's simulated stable storage. Writes happen in `Ready` order
//! (snapshot, entries, hard state) and become durable only when the
//! simulated write completes; a crash while a write is in flight loses it,
//! or tears it: a prefix of its records survives, as a real WAL's torn tail
//! would after recovery cut it at the first bad record.

use crate::raft::{Entry, HardState, Ready, Restored, SnapshotMeta};
use crate::types::LogIndex;

use super::kv::Kv;

#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    pub snapshot_kv: Kv,
    pub entries: Vec<Entry>,
}

impl SimDisk {
    pub fn bootstrap(snapshot: SnapshotMeta) -> SimDisk {
        SimDisk { snapshot, ..SimDisk::default() }
    }

    pub fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// Writes `ready`'s records; `keep` limits how many entries survive and
    /// whether the hard state does (a torn write).
    pub fn write(&mut self, ready: &Ready, snapshot_kv: Option<&Kv>, keep: Keep) {
        if let Some(meta) = &ready.snapshot {
            self.install(meta.clone(), snapshot_kv.expect("snapshot data").clone());
        }
        let count = match keep {
            Keep::All => ready.entries.len(),
            Keep::Prefix(n) => n.min(ready.entries.len()),
        };
        if let Some(first) = ready.entries.first().filter(|_| count > 0) {
            assert!(first.index > self.snapshot.index, "writing a compacted entry");
            let keep_before = (first.index.0 - self.snapshot.index.0 - 1) as usize;
            assert!(keep_before <= self.entries.len(), "gap in the stored log");
            self.entries.truncate(keep_before);
            self.entries.extend_from_slice(&ready.entries[..count]);
        }
        if let (Keep::All, Some(hard_state)) = (keep, ready.hard_state) {
            self.hard_state = hard_state;
        }
    }

    fn install(&mut self, meta: SnapshotMeta, kv: Kv) {
        let position = meta.index.0.checked_sub(self.snapshot.index.0 + 1).map(|p| p as usize);
        let matches =
            position.and_then(|p| self.entries.get(p)).is_some_and(|e| e.term == meta.term);
        match position {
            Some(p) if matches => {
                self.entries.drain(..=p);
            }
            _ => self.entries.clear(),
        }
        self.snapshot = meta;
        self.snapshot_kv = kv;
    }

    /// The state machine's snapshot at `meta.index` replaces the log up to it.
    pub fn compact(&mut self, meta: SnapshotMeta, kv: Kv) {
        let drop = (meta.index.0 - self.snapshot.index.0) as usize;
        assert!(drop <= self.entries.len(), "compacting beyond the stored log");
        self.entries.drain(..drop);
        self.snapshot = meta;
        self.snapshot_kv = kv;
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.entries.len() as u64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    All,
    Prefix(usize),
}
