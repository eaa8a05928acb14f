//! Export and import of the whole MVCC state, for snapshots (src/snapshot/).
//!
//! Export walks keys in order and, per key, its versions newest first: exactly
//! the history a reader at any revision above the compaction point can see.
//! Import takes the same sequence back and checks every rule the store relies
//! on (keys strictly ascending, revisions strictly decreasing along a chain and
//! within the store's revision, the kv fields consistent), so a snapshot that
//! decodes but lies is refused rather than served.

use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;

use super::{Leases, Snapshot, Store, Version};
use crate::types::KeyValue;

/// One version of a key as exported: a put (`kv`) or a delete at `revision`,
/// the `sub`-th of that revision (`sub_unknown` when read from a snapshot
/// file, whose format has no sub-revisions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedVersion {
    pub revision: i64,
    pub sub: u32,
    pub kv: Option<KeyValue>,
}

/// The sub-revision of a version whose place in its revision is not known
/// (from a snapshot file): such versions order by key after any other.
pub const sub_unknown: u32 = u32::MAX;

impl Snapshot {
    /// Every key in order with its versions newest first, from every layer
    /// and the page store, as a reader above the compaction point sees them
    /// (versions that compaction removes but a layer still holds are left
    /// out). Fails only when the page store cannot be read.
    pub fn for_each_history(
        &self,
        mut visit: impl FnMut(Bytes, Vec<ExportedVersion>) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.is_layered() {
            for (key, versions) in self.export() {
                visit(key.clone(), versions)?;
            }
            return Ok(());
        }
        let compact = self.compact_revision;
        // Versions newer than the compaction point, then the newest at or
        // below it if it is a put.
        let compacted = |versions: Vec<ExportedVersion>| -> Vec<ExportedVersion> {
            let mut kept = Vec::with_capacity(versions.len());
            for version in versions {
                if version.revision > compact {
                    kept.push(version);
                } else {
                    if version.kv.is_some() {
                        kept.push(version);
                    }
                    break;
                }
            }
            kept
        };
        let layers: Vec<&super::Layer> =
            std::iter::once(&self.keys).chain(self.frozen.iter()).collect();
        let mut merged = super::layered_keys(&layers).into_iter().peekable();
        // A key's versions in the layers, newest first.
        let in_layers = |key: &Bytes| -> Vec<ExportedVersion> {
            layers
                .iter()
                .filter_map(|layer| layer.get(key))
                .flat_map(|head| std::iter::successors(Some(head), |v| v.previous.as_ref()))
                .map(|v| ExportedVersion { revision: v.revision, sub: v.sub, kv: v.kv.clone() })
                .collect()
        };
        let mut emit = |key: Bytes, versions: Vec<ExportedVersion>| -> Result<(), String> {
            let versions = compacted(versions);
            if versions.is_empty() {
                return Ok(());
            }
            visit(key, versions)
        };
        if let Some(base) = &self.base {
            // The visitor's own failure, told apart from the page store's.
            let mut failure: Option<String> = None;
            let mut visit_base = |key: Bytes, base_versions| -> Result<(), String> {
                while merged.peek().is_some_and(|k| *k < key) {
                    let k = merged.next().expect("peeked");
                    let versions = in_layers(&k);
                    emit(k, versions)?;
                }
                let mut versions = Vec::new();
                if merged.peek().is_some_and(|k| *k == key) {
                    versions = in_layers(&merged.next().expect("peeked"));
                }
                versions.extend(base_versions);
                emit(key, versions)
            };
            let read = base.for_each_key(|key, versions| {
                visit_base(key, versions).map_err(|e| {
                    failure = Some(e);
                    super::paged::HistoryError::Record("stopped by its reader".into())
                })
            });
            if let Some(failure) = failure {
                return Err(failure);
            }
            read.map_err(|e| e.to_string())?;
        }
        for key in merged {
            let versions = in_layers(&key);
            emit(key, versions)?;
        }
        Ok(())
    }

    /// Every key in order with its versions, newest first (a store wholly
    /// in memory; `for_each_history` reads any store).
    pub fn export(&self) -> impl Iterator<Item = (&Bytes, Vec<ExportedVersion>)> + '_ {
        self.keys.iter().map(|(key, head)| {
            let versions = std::iter::successors(Some(head), |v| v.previous.as_ref())
                .map(|v| ExportedVersion { revision: v.revision, sub: v.sub, kv: v.kv.clone() })
                .collect();
            (key, versions)
        })
    }
}

/// Builds a store from exported keys; `finish` checks the totals.
pub struct Importer {
    keys: OrdMap<Bytes, Arc<Version>>,
    live_keys: usize,
    size_bytes: i64,
    /// Checks and builds keys (and holds the leases, which keys attach to).
    prep: Preparer,
    keys_added: bool,
}

/// A key checked and its chain of versions built, for `Importer::commit`.
pub(crate) struct PreparedKey {
    key: Bytes,
    head: Arc<Version>,
    live: bool,
    bytes: i64,
    lease: i64,
}

/// The checks and the building half of `Importer::add`, which may run on
/// another thread than the importer (`Importer::preparer`): keys in strictly
/// ascending order, each with a well-formed history.
#[derive(Clone)]
pub(crate) struct Preparer {
    revision: i64,
    compact_revision: i64,
    last_key: Option<Bytes>,
    leases: Leases,
}

impl Preparer {
    /// Checks one key with its versions, newest first, and builds its chain.
    pub(crate) fn prepare(
        &mut self,
        key: Bytes,
        versions: Vec<ExportedVersion>,
    ) -> Result<PreparedKey, String> {
        let versions = versions
            .into_iter()
            .map(|v| {
                Arc::new(Version { kv: v.kv, revision: v.revision, sub: v.sub, previous: None })
            })
            .collect();
        self.prepare_chain(key, versions)
    }

    /// As `prepare`, from versions already allocated, each unshared and
    /// without a previous one (a loader builds them on its own threads);
    /// links them newest first.
    pub(crate) fn prepare_chain(
        &mut self,
        key: Bytes,
        mut versions: Vec<Arc<Version>>,
    ) -> Result<PreparedKey, String> {
        if self.last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err("keys out of order".into());
        }
        if versions.is_empty() {
            return Err("a key without versions".into());
        }
        let mut newer = self.revision + 1;
        let mut at_or_below_compact = 0;
        for version in &versions {
            if version.revision >= newer || version.revision < 1 {
                return Err(format!("revision {} out of order for its key", version.revision));
            }
            newer = version.revision;
            if version.revision <= self.compact_revision {
                at_or_below_compact += 1;
                if at_or_below_compact > 1 || version.kv.is_none() {
                    return Err("history below the compaction point".into());
                }
            }
            if let Some(kv) = &version.kv {
                if kv.key != key
                    || kv.mod_revision != version.revision
                    || kv.version < 1
                    || kv.create_revision < 1
                    || kv.create_revision > kv.mod_revision
                {
                    return Err(format!("inconsistent version at revision {}", version.revision));
                }
            }
        }
        // A delete removes a live key: the version before it is a put.
        if versions.iter().enumerate().any(|(i, version)| {
            version.kv.is_none() && versions.get(i + 1).is_none_or(|older| older.kv.is_none())
        }) {
            return Err("a delete of a key that was not live".into());
        }
        let lease = versions[0].kv.as_ref().map_or(0, |kv| kv.lease);
        if lease != 0 && !self.leases.contains(lease) {
            return Err(format!("a key is attached to lease {lease:x}, which does not exist"));
        }
        let live = versions[0].kv.is_some();
        let mut bytes = 0;
        let mut head: Option<Arc<Version>> = None;
        while let Some(mut version) = versions.pop() {
            let unshared = Arc::get_mut(&mut version).expect("versions to link are unshared");
            debug_assert!(unshared.previous.is_none());
            unshared.previous = head;
            bytes += version.bytes(&key);
            head = Some(version);
        }
        self.last_key = Some(key.clone());
        let head = head.expect("at least one version");
        Ok(PreparedKey { key, head, live, bytes, lease })
    }
}

impl Importer {
    pub fn new(revision: i64, compact_revision: i64) -> Result<Importer, String> {
        if !(super::initial_revision..=super::revision_max).contains(&revision)
            || compact_revision > revision
        {
            return Err(format!("revision {revision} / compact revision {compact_revision}"));
        }
        Ok(Importer {
            keys: OrdMap::new(),
            live_keys: 0,
            size_bytes: 0,
            prep: Preparer {
                revision,
                compact_revision,
                last_key: None,
                leases: Leases::default(),
            },
            keys_added: false,
        })
    }

    /// Adds a lease; leases come before the keys attached to them.
    pub fn add_lease(&mut self, id: i64, ttl: i64, expiry_ms: i64) -> Result<(), String> {
        if id == 0 || self.prep.leases.contains(id) || self.keys_added {
            return Err(format!("lease {id:x}: zero, repeated, or after the keys"));
        }
        if !(1..=super::lease::lease_ttl_max).contains(&ttl) || expiry_ms < 0 {
            return Err(format!("lease {id:x}: TTL {ttl}, expiry {expiry_ms}"));
        }
        self.prep.leases.insert(id, ttl, expiry_ms);
        Ok(())
    }

    /// Sets the lease clock (`mvcc::lease`).
    pub fn set_lease_clock(&mut self, clock_ms: i64) -> Result<(), String> {
        if clock_ms < 0 {
            return Err(format!("lease clock {clock_ms}"));
        }
        self.prep.leases.set_clock(clock_ms);
        Ok(())
    }

    /// Adds one key with its versions, newest first.
    pub fn add(&mut self, key: Bytes, versions: Vec<ExportedVersion>) -> Result<(), String> {
        let prepared = self.prep.prepare(key, versions)?;
        self.commit(prepared);
        Ok(())
    }

    /// What checks and builds keys for `commit` on another thread (once the
    /// leases are added): keys go through it in order, then to `commit` in
    /// the same order.
    pub(crate) fn preparer(&self) -> Preparer {
        self.prep.clone()
    }

    /// Adds a key `Preparer::prepare` accepted (keys in the order prepared).
    pub(crate) fn commit(&mut self, prepared: PreparedKey) {
        let PreparedKey { key, head, live, bytes, lease } = prepared;
        debug_assert!(
            self.keys.get_max().is_none_or(|(last, _)| *last < key),
            "keys committed out of order"
        );
        self.keys_added = true;
        self.prep.leases.attach(lease, &key);
        self.live_keys += usize::from(live);
        self.size_bytes += bytes;
        self.keys.insert(key, head);
    }

    pub fn finish(self) -> Store {
        Store::from_snapshot(Snapshot {
            keys: self.keys,
            frozen: Arc::new(Vec::new()),
            base: None,
            live_keys: self.live_keys,
            revision: self.prep.revision,
            compact_revision: self.prep.compact_revision,
            size_bytes: self.size_bytes,
            leases: self.prep.leases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    fn put(store: &mut Store, key: &str, value: &str) {
        let request = Request::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        });
        store.apply(&request).unwrap();
    }

    fn round_trip(store: &Store) -> Store {
        let snapshot = store.snapshot();
        let mut importer = Importer::new(snapshot.revision(), snapshot.compact_revision()).unwrap();
        for (key, versions) in snapshot.export() {
            importer.add(key.clone(), versions).unwrap();
        }
        importer.finish()
    }

    #[test]
    fn export_then_import_is_the_same_state() {
        let mut store = Store::new();
        for i in 0..50 {
            put(&mut store, &format!("k{}", i % 7), &format!("v{i}"));
        }
        let delete = Request::DeleteRange(DeleteRangeRequest {
            key: Bytes::from_static(b"k3"),
            ..Default::default()
        });
        store.apply(&delete).unwrap();
        store.compact(20).unwrap();
        let copy = round_trip(&store);
        copy.check_invariants();
        let (a, b) = (store.snapshot(), copy.snapshot());
        assert_eq!(a.revision(), b.revision());
        assert_eq!(a.compact_revision(), b.compact_revision());
        assert_eq!(a.live_keys(), b.live_keys());
        assert_eq!(a.size_bytes(), b.size_bytes());
        let all: Vec<_> = a.export().map(|(k, v)| (k.clone(), v)).collect();
        let again: Vec<_> = b.export().map(|(k, v)| (k.clone(), v)).collect();
        assert_eq!(all, again);
    }

    #[test]
    fn import_refuses_inconsistent_history() {
        let kv = |key: &str, rev: i64| KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value: Bytes::new(),
            lease: 0,
        };
        let v = |rev: i64, key: &str| ExportedVersion {
            revision: rev,
            sub: sub_unknown,
            kv: Some(kv(key, rev)),
        };
        let mut importer = Importer::new(10, 0).unwrap();
        importer.add(Bytes::from_static(b"b"), vec![v(5, "b")]).unwrap();
        assert!(importer.add(Bytes::from_static(b"a"), vec![v(6, "a")]).is_err(), "order");
        assert!(importer.add(Bytes::from_static(b"c"), vec![v(11, "c")]).is_err(), "future");
        assert!(importer.add(Bytes::from_static(b"d"), vec![v(3, "d"), v(4, "d")]).is_err());
        assert!(importer.add(Bytes::from_static(b"e"), vec![v(3, "x")]).is_err(), "key");
        assert!(importer.add(Bytes::from_static(b"f"), vec![]).is_err(), "empty");
        let mut compacted = Importer::new(10, 5).unwrap();
        let deleted = ExportedVersion { revision: 4, sub: sub_unknown, kv: None };
        assert!(compacted.add(Bytes::from_static(b"g"), vec![v(6, "g"), deleted]).is_err());
        // A delete removes a live key: never first, never after a delete.
        let delete = |revision: i64| ExportedVersion { revision, sub: sub_unknown, kv: None };
        let mut importer = Importer::new(10, 0).unwrap();
        assert!(importer.add(Bytes::from_static(b"h"), vec![delete(7)]).is_err(), "first");
        let twice = vec![delete(8), delete(7), v(6, "i")];
        assert!(importer.add(Bytes::from_static(b"i"), twice).is_err(), "twice");
        let fine = vec![v(9, "j"), delete(8), v(6, "j")];
        assert!(importer.add(Bytes::from_static(b"j"), fine).is_ok());
        assert!(Importer::new(0, -1).is_err());
    }
}
