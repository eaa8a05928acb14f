//! MVCC with etcd's semantics: one global revision; per key create_revision,
//! mod_revision, version and lease; reads at past revisions; compaction.
//!
//! The state is a pair of persistent (path-copying) ordered maps, so a
//! `Snapshot` is an O(1) clone that never changes: the apply loop publishes one
//! after every batch and any core reads it without a lock.
//!
//! ```text
//!   live:    key            -> Arc<KeyValue>        every live key, latest version
//!   history: (key, revision) -> Option<Arc<KeyValue>>  every change kept; None = delete
//! ```
//! Invariants (`check_invariants`): `live` is exactly the set of keys whose last
//! history entry is Some, and holds that entry; history revisions of a key are
//! ≤ `revision`; after compaction at C, no key keeps more than one entry ≤ C and
//! that entry is not a delete.
//!
//! This in-memory store is the interface the persistent copy-on-write B+tree
//! (the page store) slots into: it is rebuilt from the WAL at start for now.

mod range;
pub mod span;
mod txn;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;

pub use txn::validate_request;

use crate::types::KeyValue;

/// Revision of a fresh store, as in etcd.
pub const initial_revision: i64 = 1;

type History = OrdMap<(Bytes, i64), Option<Arc<KeyValue>>>;

/// An immutable view of the store at one revision.
#[derive(Clone)]
pub struct Snapshot {
    live: OrdMap<Bytes, Arc<KeyValue>>,
    history: History,
    revision: i64,
    compact_revision: i64,
    /// Bytes of keys and values held in history (an estimate of the db size).
    size_bytes: i64,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            live: OrdMap::new(),
            history: OrdMap::new(),
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
        self.live.len()
    }

    /// Panics if an invariant in the module documentation does not hold. O(n):
    /// for tests and the simulator.
    pub fn check_invariants(&self) {
        let mut last: Option<(&Bytes, &Option<Arc<KeyValue>>)> = None;
        let mut live_seen = 0usize;
        let mut size = 0i64;
        let mut at_or_below_compact = 0usize;
        let mut flush = |last: Option<(&Bytes, &Option<Arc<KeyValue>>)>| {
            if let Some((key, entry)) = last {
                match entry {
                    Some(kv) => {
                        let live =
                            self.live.get(key).expect("last history entry live ⇒ key in live");
                        assert!(Arc::ptr_eq(live, kv), "live holds the latest version");
                        live_seen += 1;
                    }
                    None => assert!(self.live.get(key).is_none(), "deleted key not live"),
                }
            }
        };
        let mut previous_key: Option<&Bytes> = None;
        for ((key, revision), entry) in self.history.iter() {
            assert!(*revision <= self.revision, "history beyond the store revision");
            if previous_key != Some(key) {
                flush(last.take());
                at_or_below_compact = 0;
            }
            if *revision <= self.compact_revision {
                at_or_below_compact += 1;
                assert!(at_or_below_compact <= 1, "compaction kept two old versions");
                assert!(entry.is_some(), "compaction kept a delete");
            }
            if let Some(kv) = entry {
                assert_eq!(kv.mod_revision, *revision);
                assert_eq!(&kv.key, key);
                assert!(kv.version >= 1 && kv.create_revision <= kv.mod_revision);
                size += (kv.key.len() + kv.value.len()) as i64;
            } else {
                size += key.len() as i64;
            }
            previous_key = Some(key);
            last = Some((key, entry));
        }
        flush(last);
        assert_eq!(live_seen, self.live.len(), "every live key has history");
        assert_eq!(size, self.size_bytes, "size accounting");
    }
}

/// The writable store, owned by the apply loop. Reads go through `snapshot()`.
#[derive(Default)]
pub struct Store {
    state: Snapshot,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// A store that continues from `snapshot` (for read-only txns on any core).
    pub fn from_snapshot(snapshot: Snapshot) -> Store {
        Store { state: snapshot }
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
