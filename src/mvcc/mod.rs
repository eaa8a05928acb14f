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

mod events;
mod export;
pub mod lease;
pub mod paged;
mod range;
pub mod span;
mod txn;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;

pub use events::Event;
pub use export::{sub_unknown, ExportedVersion, Importer};
pub(crate) use export::{PreparedKey, Preparer};
pub use lease::{Lease, Leases};
pub use txn::validate_request;

use crate::error::{Error, ErrorCode};
use crate::types::KeyValue;

/// Revision of a fresh store, as in etcd.
pub const initial_revision: i64 = 1;

/// The highest revision a store holds: the page store keeps revision × 4
/// plus flags in an i64 (docs/formats/pagestore.md).
pub const revision_max: i64 = i64::MAX >> 2;

/// One version of a key: a put (`kv`) or a delete (`kv` None) at `revision`.
pub(crate) struct Version {
    pub(crate) kv: Option<KeyValue>,
    pub(crate) revision: i64,
    /// Its place among the revision's versions (etcd's sub-revision): the
    /// order of the request's operations, in which watches replay them.
    /// (Versions from a snapshot file have `sub_unknown`: they replay in
    /// key order.)
    pub(crate) sub: u32,
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

/// A layer of recent history: each key's versions, newest first.
pub(crate) type Layer = OrdMap<Bytes, Arc<Version>>;

/// An immutable view of the store at one revision.
///
/// History lives in layers, newest first, with disjoint revisions: `keys`
/// (where writes go), `frozen` (layers a checkpoint is folding into the page
/// store, newest first) and `base` (the page store's last checkpoint). A
/// key's chain in a layer ends where the older versions are in a lower one;
/// a read at revision R takes the first layer holding a version of the key at
/// or below R. Without `frozen` and `base` the store is wholly in memory.
#[derive(Clone)]
pub struct Snapshot {
    keys: Layer,
    frozen: Arc<Vec<Layer>>,
    base: Option<paged::PagedView>,
    live_keys: usize,
    revision: i64,
    compact_revision: i64,
    /// Bytes of keys and values held in all versions (an estimate of the db size).
    size_bytes: i64,
    leases: Leases,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            keys: OrdMap::new(),
            frozen: Arc::new(Vec::new()),
            base: None,
            live_keys: 0,
            revision: initial_revision,
            compact_revision: -1,
            size_bytes: 0,
            leases: Leases::default(),
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

    /// Every lease, with its attached keys.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Whether history below the in-memory layer lives elsewhere (frozen
    /// layers or the page store).
    pub fn is_layered(&self) -> bool {
        !self.frozen.is_empty() || self.base.is_some()
    }

    /// The version of `key` visible at `revision` (None: absent or deleted).
    pub(crate) fn visible(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>, Error> {
        match (self.visible_in_memory(key, revision), &self.base) {
            (Some(found), _) => Ok(found),
            (None, Some(base)) => base.get_at(key, revision).map_err(storage_error),
            (None, None) => Ok(None),
        }
    }

    /// As `visible`, but a version found in the page store comes without its
    /// value (`PagedView::get_without_value`): for a put, which needs the
    /// key's create revision, version and lease, not its value.
    pub(crate) fn visible_without_value(
        &self,
        key: &[u8],
        revision: i64,
    ) -> Result<Option<KeyValue>, Error> {
        match (self.visible_in_memory(key, revision), &self.base) {
            (Some(found), _) => Ok(found),
            (None, Some(base)) => base.get_without_value(key, revision).map_err(storage_error),
            (None, None) => Ok(None),
        }
    }

    /// What the in-memory layers (newest first) say of `key` at `revision`:
    /// None when none holds a version at or below it.
    fn visible_in_memory(&self, key: &[u8], revision: i64) -> Option<Option<KeyValue>> {
        std::iter::once(&self.keys)
            .chain(self.frozen.iter())
            .find_map(|layer| layer.get(key).and_then(|head| head.at(revision)))
            .map(|version| version.kv.clone())
    }

    /// Versions held in memory, over all keys (tombstones included).
    pub fn versions(&self) -> usize {
        self.keys
            .values()
            .map(|head| std::iter::successors(Some(head), |v| v.previous.as_ref()).count())
            .sum()
    }

    /// Panics if an invariant in the module documentation does not hold. O(n):
    /// for tests and the simulator.
    pub fn check_invariants(&self) {
        if self.is_layered() {
            return self.check_layers();
        }
        let (mut live, mut size) = (0usize, 0i64);
        let mut leased: Vec<(Bytes, i64)> = Vec::new();
        for (key, head) in self.keys.iter() {
            live += usize::from(head.kv.is_some());
            if let Some(kv) = &head.kv {
                assert!(kv.lease == 0 || self.leases.contains(kv.lease), "key of a lost lease");
                leased.push((key.clone(), kv.lease));
            }
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
        self.leases.check(&leased);
    }
}

/// Every key held in `layers`, ascending, once each.
pub(crate) fn layered_keys(layers: &[&Layer]) -> Vec<Bytes> {
    let mut keys: Vec<Bytes> = layers.iter().flat_map(|layer| layer.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A page store read failure, as a request error (on the apply path the
/// member stops: see `server::driver`).
pub(crate) fn storage_error(error: paged::HistoryError) -> Error {
    let what = if error.is_corruption() { damaged_prefix } else { "etcdserver: storage error" };
    Error::with_message(ErrorCode::Corrupt, format!("{what}: {error}"))
}

/// How the message of an error from a page that failed verification
/// begins (an I/O error reading the page store is also `Corrupt` to a
/// client, but does not say the store is damaged).
const damaged_prefix: &str = "etcdserver: corrupt cluster";

/// Whether `error` says a page of the store failed verification.
pub fn is_damage(error: &Error) -> bool {
    error.code == ErrorCode::Corrupt && error.message.starts_with(damaged_prefix)
}

impl Snapshot {
    /// The invariants of a layered store: chains are well formed, layers
    /// hold disjoint, descending revision ranges, and the live key count is
    /// what a full read finds. (Compaction in memory is deferred to the
    /// checkpoint, so old versions may remain.)
    fn check_layers(&self) {
        let mut floor = self.revision + 1;
        for layer in std::iter::once(&self.keys).chain(self.frozen.iter()) {
            let mut lowest = floor;
            for (key, head) in layer.iter() {
                let mut newer = i64::MAX;
                for version in std::iter::successors(Some(head), |v| v.previous.as_ref()) {
                    assert!(version.revision < newer, "revisions decrease along a chain");
                    assert!(version.revision < floor, "layers hold disjoint revisions");
                    newer = version.revision;
                    lowest = lowest.min(version.revision);
                    if let Some(kv) = &version.kv {
                        assert_eq!(&kv.key, key);
                        assert_eq!(kv.mod_revision, version.revision);
                    }
                }
            }
            floor = lowest;
        }
        if let Some(base) = &self.base {
            assert!(base.revision() < floor, "the base is older than every layer");
        }
        let mut live = 0usize;
        let mut leased: Vec<(Bytes, i64)> = Vec::new();
        self.scan(&span::Span::Interval(Bytes::new(), None), self.revision, |kv| {
            live += 1;
            leased.push((kv.key.clone(), kv.lease));
            true
        })
        .expect("the page store reads");
        assert_eq!(live, self.live_keys, "live key count");
        self.leases.check(&leased);
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
    /// Lease `id` as it now is, `(ttl, expiry_ms)`, or None once revoked.
    /// (Keys attach through their versions' lease field.)
    Lease { id: i64, lease: Option<(i64, i64)> },
    /// The lease clock, as checkpointed.
    LeaseClock(i64),
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

    /// A store over a checkpoint of the page store: nothing is loaded, reads
    /// of history older than what is applied from now on go to the pages.
    pub fn with_base(base: paged::PagedView) -> Result<Store, paged::HistoryError> {
        let leases = base.leases()?;
        let mut state = Snapshot {
            keys: OrdMap::new(),
            frozen: Arc::new(Vec::new()),
            live_keys: base.live_keys() as usize,
            revision: base.revision(),
            compact_revision: base.compact_revision(),
            size_bytes: base.size_bytes(),
            base: Some(base),
            leases,
        };
        if !state.leases.is_empty() {
            // The key sets are not stored: attach the live keys again.
            let mut leased: Vec<(Bytes, i64)> = Vec::new();
            let all = span::Span::Interval(Bytes::new(), None);
            state
                .scan(&all, state.revision, |kv| {
                    if kv.lease != 0 {
                        leased.push((kv.key.clone(), kv.lease));
                    }
                    true
                })
                .map_err(|e| paged::HistoryError::Record(e.message))?;
            for (key, lease) in leased {
                if !state.leases.contains(lease) {
                    return Err(paged::HistoryError::Record(format!(
                        "a key is attached to lease {lease:x}, which does not exist"
                    )));
                }
                state.leases.attach(lease, &key);
            }
        }
        Ok(Store { state, log: None })
    }

    /// Freezes the in-memory layer (a checkpoint is about to fold its
    /// changes into the page store) and starts an empty one above it.
    pub fn freeze(&mut self) {
        let top = std::mem::take(&mut self.state.keys);
        if !top.is_empty() {
            Arc::make_mut(&mut self.state.frozen).insert(0, top);
        }
    }

    /// Reads ahead from the page store, in batches, what applying `requests`
    /// will read there: the current version of each key a put or a
    /// single-key delete writes, when no layer in memory holds it. Without
    /// this each such key costs its own disk reads, one after another, in
    /// the apply loop (the page file is read with O_DIRECT).
    pub fn prefetch<'a>(&self, requests: impl Iterator<Item = &'a crate::types::Request>) {
        let state = &self.state;
        let Some(base) = &state.base else { return };
        let in_memory = |key: &[u8]| {
            std::iter::once(&state.keys).chain(state.frozen.iter()).any(|l| l.contains_key(key))
        };
        let keys: Vec<(&[u8], bool)> = requests
            .filter_map(|request| match request {
                crate::types::Request::Put(p) => Some((&p.key[..], write::put_reads_value(p))),
                crate::types::Request::DeleteRange(d) if d.range_end.is_empty() => {
                    Some((&d.key[..], true))
                }
                _ => None,
            })
            .filter(|(key, _)| !in_memory(key))
            .collect();
        if keys.len() > 1 {
            base.prefetch(&keys);
        }
    }

    /// Replaces every frozen layer and the old base with `base`, a
    /// checkpoint holding every change up to the newest frozen one.
    pub fn rebase(&mut self, base: paged::PagedView) {
        if cfg!(debug_assertions) {
            let top_oldest = self
                .state
                .keys
                .values()
                .flat_map(|head| std::iter::successors(Some(head), |v| v.previous.as_ref()))
                .map(|v| v.revision)
                .min();
            assert!(
                top_oldest.is_none_or(|oldest| oldest > base.revision()),
                "a rebase under changes the checkpoint already holds"
            );
        }
        self.state.frozen = Arc::new(Vec::new());
        self.state.base = Some(base);
    }

    /// Takes up `loaded`, this store's base (the page store's checkpoint)
    /// read wholly into memory: the versions applied since are linked onto
    /// its chains and the store stops reading the page store. A compaction
    /// applied meanwhile (deferred while layered) is carried out now. Fails,
    /// changing nothing, when `loaded` is not this store's base (or a
    /// checkpoint is being folded).
    pub fn adopt_loaded(&mut self, loaded: Store) -> Result<(), String> {
        let state = &self.state;
        let Some(base) = &state.base else {
            return Err("the store does not read a checkpoint".into());
        };
        if !state.frozen.is_empty() {
            return Err("a checkpoint is being folded".into());
        }
        let loaded = loaded.state;
        if loaded.is_layered()
            || loaded.revision != base.revision()
            || loaded.compact_revision != base.compact_revision()
        {
            return Err(format!(
                "loaded revision {} (compacted at {}) is not the checkpoint's {} ({})",
                loaded.revision,
                loaded.compact_revision,
                base.revision(),
                base.compact_revision()
            ));
        }
        let mut keys = loaded.keys;
        let (mut live, mut size) = (loaded.live_keys as i64, loaded.size_bytes);
        for (key, head) in state.keys.iter() {
            let newest_first: Vec<&Arc<Version>> =
                std::iter::successors(Some(head), |v| v.previous.as_ref()).collect();
            let mut below = keys.get(key).cloned();
            live -= i64::from(below.as_ref().is_some_and(|v| v.kv.is_some()));
            for version in newest_first.into_iter().rev() {
                if version.revision <= loaded.revision {
                    return Err(format!("a version at {} is in the checkpoint", version.revision));
                }
                size += version.bytes(key);
                below = Some(Arc::new(Version {
                    kv: version.kv.clone(),
                    revision: version.revision,
                    sub: version.sub,
                    previous: below,
                }));
            }
            live += i64::from(head.kv.is_some());
            keys.insert(key.clone(), below.expect("a chain holds a version"));
        }
        if live != state.live_keys as i64 {
            return Err(format!("{live} live keys where the store counts {}", state.live_keys));
        }
        let compact_to = state.compact_revision;
        let state = &mut self.state;
        state.keys = keys;
        state.base = None;
        state.size_bytes = size;
        state.compact_revision = loaded.compact_revision;
        if compact_to > state.compact_revision {
            // Recorded when it was applied: not a new change.
            let log = self.log.take();
            let compacted = self.compact(compact_to);
            self.log = log;
            compacted.map_err(|e| e.message)?;
        }
        Ok(())
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
