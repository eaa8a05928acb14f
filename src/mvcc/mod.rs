//! MVCC with etcd's semantics: one global revision; per key create_revision,
//! mod_revision, version and lease; reads at past revisions; compaction.
//!
//! The state is one persistent (path-copying) ordered map from each key to its
//! newest version; each version links to the one before it:
//!
//! ```text
//!   keys: key -> Arc<Version>  (newest)  --previous-->  Version  --previous-->  …
//!                 kv: Some(KeyValue) = a put, None = a delete at `revision`
//! ```
//! A `Snapshot` is an O(1) clone that never changes: the apply loop publishes
//! one after every batch and any core reads it without a lock. A put copies
//! only the map's path to its key and prepends one version (older versions
//! are shared, never copied).
//!
//! Invariants (`check_invariants`): along a chain revisions strictly decrease
//! and are ≤ `revision`; `live_keys` counts the keys whose newest version is a
//! put; after compaction at C no chain holds a version older than the one
//! visible at C, and no chain's version at or below C is a delete.
//!
//! This in-memory store is the interface the persistent copy-on-write B+tree
//! (the page store) slots into: it is rebuilt from the WAL at start for now.

mod export;
pub mod paged;
mod range;
pub mod span;
mod txn;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;

pub use export::{ExportedVersion, Importer};
pub use txn::validate_request;

use crate::types::KeyValue;

/// Revision of a fresh store, as in etcd.
pub const initial_revision: i64 = 1;

/// One version of a key: a put (`kv`) or a delete (`kv` None) at `revision`.
pub(crate) struct Version {
    pub(crate) kv: Option<KeyValue>,
    pub(crate) revision: i64,
    pub(crate) previous: Option<Arc<Version>>,
}

impl Version {
    /// The version visible at `revision`, if the key existed then in any form.
    pub(crate) fn at(self: &Arc<Version>, revision: i64) -> Option<&Arc<Version>> {
        let mut version = self;
        while version.revision > revision {
            version = version.previous.as_ref()?;
        }
        Some(version)
    }

    fn bytes(&self, key: &[u8]) -> i64 {
        (key.len() + self.kv.as_ref().map_or(0, |kv| kv.value.len())) as i64
    }
}

/// An immutable view of the store at one revision.
#[derive(Clone)]
pub struct Snapshot {
    keys: OrdMap<Bytes, Arc<Version>>,
    live_keys: usize,
    revision: i64,
    compact_revision: i64,
    /// Bytes of keys and values held in all versions (an estimate of the db size).
    size_bytes: i64,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            keys: OrdMap::new(),
            live_keys: 0,
            revision: initial_revision,
            compact_revision: -1,
            size_bytes: 0,
        }
    }
}

impl Snapshot {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision of the last compaction (-1 if none yet).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn size_bytes(&self) -> i64 {
        self.size_bytes
    }

    pub fn live_keys(&self) -> usize {
        self.live_keys
    }

    /// Versions held, over all keys (tombstones included).
    pub fn versions(&self) -> usize {
        self.keys
            .values()
            .map(|head| std::iter::successors(Some(head), |v| v.previous.as_ref()).count())
            .sum()
    }

    /// Panics if an invariant in the module documentation does not hold. O(n):
    /// for tests and the simulator.
    pub fn check_invariants(&self) {
        let (mut live, mut size) = (0usize, 0i64);
        for (key, head) in self.keys.iter() {
            live += usize::from(head.kv.is_some());
            let mut newer = i64::MAX;
            let mut at_or_below_compact = 0;
            for version in std::iter::successors(Some(head), |v| v.previous.as_ref()) {
                assert!(version.revision < newer, "revisions decrease along a chain");
                assert!(version.revision <= self.revision, "version beyond the store revision");
                newer = version.revision;
                size += version.bytes(key);
                if let Some(kv) = &version.kv {
                    assert_eq!(&kv.key, key);
                    assert_eq!(kv.mod_revision, version.revision);
                    assert!(kv.version >= 1 && kv.create_revision <= kv.mod_revision);
                }
                if version.revision <= self.compact_revision {
                    at_or_below_compact += 1;
                    assert!(at_or_below_compact <= 1, "compaction kept two old versions");
                    assert!(version.kv.is_some(), "compaction kept a delete");
                }
            }
        }
        assert_eq!(live, self.live_keys, "live key count");
        assert_eq!(size, self.size_bytes, "size accounting");
    }
}

/// One change to the history, in the order applied: what a checkpoint folds
/// into the page store (`paged`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryChange {
    /// A put (`kv`) or a delete (`kv` None) of `key` at `revision`.
    Version { key: Bytes, revision: i64, kv: Option<KeyValue> },
    /// A compaction at this revision.
    Compact(i64),
}

/// The writable store, owned by the apply loop. Reads go through `snapshot()`.
#[derive(Default)]
pub struct Store {
    state: Snapshot,
    /// Changes since the last `take_changes`, when recording.
    log: Option<Vec<HistoryChange>>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// A store that continues from `snapshot` (for read-only txns on any core).
    pub fn from_snapshot(snapshot: Snapshot) -> Store {
        Store { state: snapshot, log: None }
    }

    /// Starts (or stops) recording every change for `take_changes`.
    pub fn record_changes(&mut self, on: bool) {
        self.log = on.then(Vec::new);
    }

    /// The changes recorded since the last call, in the order applied.
    pub fn take_changes(&mut self) -> Vec<HistoryChange> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The current state as an immutable snapshot (O(1)).
    pub fn snapshot(&self) -> Snapshot {
        self.state.clone()
    }

    pub fn revision(&self) -> i64 {
        self.state.revision
    }

    pub fn check_invariants(&self) {
        self.state.check_invariants()
    }
}

#[cfg(test)]
mod tests;
