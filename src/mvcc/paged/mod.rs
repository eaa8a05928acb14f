//! MVCC history on the page store, in one copy-on-write B+tree
//! (`pagestore`): every version in revision order (a log, as etcd's bbolt
//! keeps it), one small entry per key naming its newest version, and in each
//! version the address of the key's previous one. Checkpoints fold the
//! changes applied since the last one into it (`apply`): new versions append
//! at the tree's right end and only the key entries of the keys written
//! change in place, so a checkpoint of a hot keyspace copies few pages.
//! Start-up loads it back (`load`) or reads it in place (`PagedView`), and
//! replays the WAL after its applied index.
//!
//! Tree keys (docs/formats/pagestore.md, "MVCC layout"):
//!
//! ```text
//!   'k' stem                  → newest version: revision×4 + flags (varint) [, sub]   one per key held
//!   'v' revision(BE 8) sub    → version record                                        every version held
//!   'l' lease id (BE 8)       → ttl (i64 LE), expiry on the lease clock (i64 LE)      every lease
//!   'm' name                  → i64 (BE 8)   "revision", "compact_revision", "live_keys",
//!                                            "size_bytes", "layout", "lease_clock"
//!
//!   sub  = the version's place among its revision's versions (key order),
//!          as its byte count then that many big-endian bytes (0: none)
//!   stem = esc(key) 00 01                                   keys up to stem_key_bytes_max
//!        | esc(key[..n]) 00 02 xxh3-128(key)(BE 16)         longer keys
//!   esc: every 00 byte → 00 FF, so stems of short keys sort as their keys do
//! ```
//!
//! Version record, LEB128 varints: how far below this revision the key's
//! previous version is (0: none) × 4, + 2 if that version's sub follows, + 1
//! for a delete; the sub, if flagged; for a put then how far below it the
//! key was created, its version, its lease (zigzag) and the key's length,
//! then the key and the value. A delete holds no key: its previous version
//! (a put, which compaction keeps while the delete stays) does. So a delete
//! costs ~20 bytes of leaf (~13 once the leaf shares its tree key's prefix),
//! where repeating the key cost ~54 for a 32-byte key.
//!
//! A read at R finds the key entry, then follows previous versions from the
//! newest to the first at or below R. Compaction at C keeps, per key, the
//! versions above C and the newest at or below C if it is a put; it removes
//! the rest (and the key entry of a key whose newest version is a delete at
//! or below C), walking only the versions written since the last compaction,
//! and frees their pages: no defragmentation. A previous version at or below
//! the compaction point may therefore be gone: a read meets one only where
//! that version was a delete (the key is not live), a history walk ends
//! there. A missing version above it is corruption.
//!
//! Keys attach to leases through their newest version's lease field: the
//! key sets are rebuilt when the store is loaded, never stored.
//!
//! Long keys sort by their hash within their prefix in the key entries;
//! reads put them back in key order (holding only the long keys to do so).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;

use super::{ExportedVersion, HistoryChange, Snapshot, Store};
use crate::pagestore::{PageFile, PageStore, StoreError};
use crate::types::KeyValue;

mod layout;
mod load;
mod view;
pub use layout::stem_key_bytes_max;
use layout::*;
pub use view::{PagedKey, PagedRange, PagedView};

/// Version entries taken per compaction step (bounds its memory).
const compaction_chunk_entries: usize = 4096;

#[derive(Debug)]
pub enum HistoryError {
    Store(StoreError),
    /// An entry that decodes wrongly: the page checksums held, the content did not.
    Record(String),
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::Store(e) => write!(f, "{e}"),
            HistoryError::Record(reason) => write!(f, "page store history is corrupt: {reason}"),
        }
    }
}

impl std::error::Error for HistoryError {}

impl HistoryError {
    /// Whether the file's content is at fault (not the I/O that read it).
    pub fn is_corruption(&self) -> bool {
        matches!(self, HistoryError::Record(_) | HistoryError::Store(StoreError::Corrupt { .. }))
    }
}

impl From<StoreError> for HistoryError {
    fn from(error: StoreError) -> HistoryError {
        HistoryError::Store(error)
    }
}

pub type Result<T> = std::result::Result<T, HistoryError>;

fn bad(reason: impl Into<String>) -> HistoryError {
    HistoryError::Record(reason.into())
}

/// A point read of the tree (the writer's working tree or a checkpoint).
type Get<'a> = dyn FnMut(&[u8]) -> std::result::Result<Option<Vec<u8>>, StoreError> + 'a;

/// The version at `at`: None where compaction removed it, which only
/// happens at or below `compact_revision`. `known`: the key it must be.
fn read_version(
    get: &mut Get<'_>,
    at: At,
    known: Option<&Bytes>,
    compact_revision: i64,
) -> Result<Option<Record>> {
    match get(&version_key(at))? {
        Some(bytes) => Ok(Some(decode_record(&bytes, at, known)?)),
        None if at.revision <= compact_revision => Ok(None),
        None => Err(bad(format!("the version at {at} is missing"))),
    }
}

/// The version at `at`, which must be there (a key entry's own, or a
/// delete's previous put: compaction removes neither without what names it).
fn read_present(get: &mut Get<'_>, at: At, known: Option<&Bytes>) -> Result<Record> {
    match read_version(get, at, known, 0)? {
        Some(record) => Ok(record),
        None => unreachable!("revisions are at least 1"),
    }
}

/// The key of a delete's record, which leaves it out: the key of the put
/// before it (the nearest older put, which compaction keeps while the
/// delete stays).
fn key_of_delete(get: &mut Get<'_>, record: &Record) -> Result<Bytes> {
    let mut previous = record.previous;
    loop {
        let Some(at) = previous else {
            return Err(bad(format!("the delete at {} follows no put", record.version.revision)));
        };
        let older = read_present(get, at, None)?;
        if let Some(key) = older.key {
            return Ok(key);
        }
        previous = older.previous;
    }
}

/// A key entry must agree with the record it names: its kind, and for a
/// put the create revision, version and lease it repeats.
fn check_key_entry(record: &Record, newest: Newest) -> Result<()> {
    let agrees = match &record.version.kv {
        None => newest.deleted,
        Some(kv) => Newest::of(newest.at, Some(kv)) == newest,
    };
    if !agrees {
        return Err(bad(format!("the key entry disagrees with version {}", newest.at)));
    }
    Ok(())
}

/// The newest version of a key at or below `at`, walking back from its
/// newest (None: no version then, or a delete that compaction removed).
/// `known`: the key, where the reader knows it (a long key's stem does not
/// spell it; its puts hold it).
fn version_at(
    get: &mut Get<'_>,
    newest: Newest,
    at: i64,
    known: Option<&Bytes>,
    compact_revision: i64,
) -> Result<Option<Record>> {
    if newest.at.revision <= at && newest.deleted {
        return Ok(None);
    }
    // The key entry's own version is never removed without it.
    let mut record = read_present(get, newest.at, known)?;
    check_key_entry(&record, newest)?;
    let mut key = record.key.clone();
    while record.version.revision > at {
        let Some(previous) = record.previous else { return Ok(None) };
        match read_version(get, previous, key.as_ref(), compact_revision)? {
            Some(older) => record = older,
            None => return Ok(None),
        }
        key = key.or_else(|| record.key.clone());
    }
    Ok(Some(record))
}

/// Every version a key holds, newest first (the walk ends at the first
/// previous version that compaction removed), with the key.
fn all_versions(
    get: &mut Get<'_>,
    newest: Newest,
    known: Option<&Bytes>,
    compact_revision: i64,
) -> Result<(Bytes, Vec<ExportedVersion>)> {
    let first = read_present(get, newest.at, known)?;
    check_key_entry(&first, newest)?;
    let mut key = first.key.clone();
    let mut previous = first.previous;
    let mut versions = vec![first.version];
    while let Some(at) = previous {
        match read_version(get, at, key.as_ref(), compact_revision)? {
            Some(older) => {
                key = key.or_else(|| older.key.clone());
                previous = older.previous;
                versions.push(older.version);
            }
            None => break,
        }
    }
    // A delete the key entry names is preceded by a put compaction kept.
    let key = key.ok_or_else(|| bad(format!("the key of version {} holds no put", newest.at)))?;
    Ok((key, versions))
}

/// Hands keys on in key order although long keys come in stem order: holds
/// the long keys until their place comes (only they are held).
struct KeyOrder<T> {
    /// Long keys not yet handed on, largest first.
    long_keys: Vec<(Bytes, T)>,
}

impl<T> KeyOrder<T> {
    fn new() -> KeyOrder<T> {
        KeyOrder { long_keys: Vec::new() }
    }

    /// Takes the next key in stem order; hands on whatever now comes next.
    fn push(&mut self, long: bool, key: Bytes, item: T, mut out: impl FnMut(Bytes, T)) {
        if long {
            self.long_keys.push((key, item));
            self.long_keys.sort_by(|a, b| b.0.cmp(&a.0));
            return;
        }
        while self.long_keys.last().is_some_and(|(long, _)| *long < key) {
            let (long, item) = self.long_keys.pop().expect("checked");
            out(long, item);
        }
        out(key, item);
    }

    /// The next held long key, once every stem has been pushed.
    fn pop(&mut self) -> Option<(Bytes, T)> {
        self.long_keys.pop()
    }
}

/// The whole MVCC history in a page store, with its revision and compaction
/// point. The checkpoint's applied index is the page store's.
pub struct PagedHistory<F: PageFile> {
    store: PageStore<F>,
    revision: i64,
    compact_revision: i64,
    /// What the last checkpoint holds.
    durable: Totals,
}

/// A checkpoint's revision, compaction point and (logical) totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub revision: i64,
    pub compact_revision: i64,
    /// Keys live at `revision`.
    pub live_keys: i64,
    /// Bytes of keys and values in the versions held (`Snapshot::size_bytes`).
    pub size_bytes: i64,
}

impl<F: PageFile> PagedHistory<F> {
    /// The history held in `store` (an empty store holds an empty history).
    pub fn open(mut store: PageStore<F>) -> Result<PagedHistory<F>> {
        let read = |store: &mut PageStore<F>, name: &[u8], default: i64| -> Result<i64> {
            match store.get(name)? {
                None => Ok(default),
                Some(bytes) => Ok(i64::from_be_bytes(
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("a meta entry of the wrong size"))?,
                )),
            }
        };
        let revision = read(&mut store, meta_revision, super::initial_revision)?;
        let compact_revision = read(&mut store, meta_compact_revision, -1)?;
        let live_keys = read(&mut store, meta_live_keys, 0)?;
        let size_bytes = read(&mut store, meta_size_bytes, 0)?;
        let layout = read(&mut store, meta_layout, 0)?;
        if layout != layout_version && !(layout == 0 && store.is_empty()) {
            return Err(bad(format!(
                "written in layout {layout}, this build reads layout {layout_version}"
            )));
        }
        if !(super::initial_revision..=revision_max).contains(&revision)
            || compact_revision > revision
            || live_keys < 0
            || size_bytes < 0
        {
            return Err(bad(format!(
                "revision {revision}, compacted at {compact_revision}, {live_keys} keys, \
                 {size_bytes} bytes"
            )));
        }
        let durable = Totals { revision, compact_revision, live_keys, size_bytes };
        Ok(PagedHistory { store, revision, compact_revision, durable })
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// The Raft index the last checkpoint holds everything up to.
    pub fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    pub fn page_store(&self) -> &PageStore<F> {
        &self.store
    }

    pub fn page_store_mut(&mut self) -> &mut PageStore<F> {
        &mut self.store
    }

    /// Folds changes into the working tree, in order.
    ///
    /// Each revision's changes must all be in one batch, after every
    /// revision folded before (a revision's versions are numbered when it
    /// is folded). Versions go in first, in (revision, sub) order (appends at
    /// the tree's right end), then the key entries of the keys written, in
    /// key order, then the compactions in the order applied: a compaction at
    /// C only touches versions at or below C, all of which came before it,
    /// so the result is the same as in log order.
    pub fn apply(&mut self, changes: &[HistoryChange]) -> Result<()> {
        let mut written: HashMap<Vec<u8>, Newest> = HashMap::new();
        let mut versions: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(changes.len());
        let mut folded = self.revision;
        let mut pending = changes
            .iter()
            .filter_map(|change| match change {
                HistoryChange::Version { key, revision, kv } => Some((key, *revision, kv)),
                _ => None,
            })
            .peekable();
        while let Some(&(_, revision, _)) = pending.peek() {
            if revision <= folded || revision > revision_max {
                return Err(bad(format!("a version at revision {revision} after {folded}")));
            }
            folded = revision;
            // The revision's versions, one per key (the later stands), in
            // the order written (the request's operations): that order
            // numbers them, as etcd's sub-revisions, and watches replay it.
            let mut group: Vec<(&Bytes, &Option<KeyValue>)> = Vec::new();
            let mut place: HashMap<&Bytes, usize> = HashMap::new();
            while let Some((key, _, kv)) = pending.next_if(|(_, r, _)| *r == revision) {
                match place.get(key) {
                    Some(at) => group[*at].1 = kv,
                    None => {
                        place.insert(key, group.len());
                        group.push((key, kv));
                    }
                }
            }
            for (sub, (key, kv)) in group.into_iter().enumerate() {
                let at = At::new(revision, sub as u64);
                let (stem, _) = stem(key);
                let previous = match written.get(&stem) {
                    Some(newest) => Some(newest.at),
                    None => match self.store.get(&key_entry_key(&stem))? {
                        Some(value) => Some(decode_newest(&value)?.at),
                        None => None,
                    },
                };
                if previous.is_some_and(|previous| previous.revision >= revision) {
                    return Err(bad(format!("a version at {at} after one at {previous:?}")));
                }
                if kv.is_none() && previous.is_none() {
                    return Err(bad(format!("a delete at {at} of a key never written")));
                }
                versions.push((version_key(at), encode_record(key, at, previous, kv.as_ref())));
                written.insert(stem, Newest::of(at, kv.as_ref()));
            }
        }
        self.store.insert_sorted(versions.iter().map(|(k, r)| (k.as_slice(), r.as_slice())))?;
        drop(versions);
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = written
            .into_iter()
            .map(|(stem, newest)| (key_entry_key(&stem), encode_newest(newest)))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.store.insert_sorted(entries.iter().map(|(k, v)| (k.as_slice(), &v[..])))?;
        self.revision = folded;
        let mut leases: BTreeMap<i64, Option<(i64, i64)>> = BTreeMap::new();
        let mut clock: Option<i64> = None;
        for change in changes {
            match change {
                HistoryChange::Lease { id, lease } => {
                    leases.insert(*id, *lease);
                }
                HistoryChange::LeaseClock(ms) => clock = Some(*ms),
                _ => {}
            }
        }
        for (id, lease) in leases {
            match lease {
                Some((ttl, expiry_ms)) => {
                    self.store.insert(&lease_key(id), &encode_lease(ttl, expiry_ms))?;
                }
                None => {
                    self.store.remove(&lease_key(id))?;
                }
            }
        }
        if let Some(clock) = clock {
            self.store.insert(meta_lease_clock, &clock.to_be_bytes())?;
        }
        for change in changes {
            if let HistoryChange::Compact(revision) = change {
                self.compact(*revision)?;
            }
        }
        Ok(())
    }

    /// Replaces the whole history with `state` (when the page store lags
    /// behind a state loaded from elsewhere, such as a snapshot file).
    pub fn replace_all(&mut self, state: &Snapshot) -> Result<()> {
        loop {
            let keys: Vec<Vec<u8>> = self
                .store
                .cursor(Bound::Unbounded, Bound::Unbounded)?
                .take(compaction_chunk_entries)
                .map(|entry| entry.map(|(key, _)| key))
                .collect::<std::result::Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            for key in keys {
                self.store.remove(&key)?;
            }
        }
        if state.revision() > revision_max {
            return Err(bad(format!("revision {} is past this layout's", state.revision())));
        }
        // `state` may read an older checkpoint of this same store: its pages
        // stay pinned while it does, whatever this writer changes.
        let store = &mut self.store;
        let mut failure: Option<HistoryError> = None;
        // Versions keep the sub they were written with; those from a
        // snapshot file (sub unknown) are numbered in key order, in which
        // keys come (a revision's versions all have one or the other).
        let mut subs: HashMap<i64, u64> = HashMap::new();
        let read = state.for_each_history(|key, versions| {
            let (stem, _) = stem(&key);
            let mut write = || -> Result<()> {
                let ats: Vec<At> = versions
                    .iter()
                    .map(|version| {
                        if version.sub != crate::mvcc::sub_unknown {
                            return At::new(version.revision, u64::from(version.sub));
                        }
                        let next = subs.entry(version.revision).or_insert(0);
                        *next += 1;
                        At::new(version.revision, *next - 1)
                    })
                    .collect();
                for (i, version) in versions.iter().enumerate() {
                    let previous = ats.get(i + 1).copied();
                    if version.kv.is_none() && previous.is_none() {
                        return Err(bad(format!("a delete at {} names no put", ats[i])));
                    }
                    let record = encode_record(&key, ats[i], previous, version.kv.as_ref());
                    store.insert(&version_key(ats[i]), &record)?;
                }
                if let Some(newest) = versions.first() {
                    let entry = encode_newest(Newest::of(ats[0], newest.kv.as_ref()));
                    store.insert(&key_entry_key(&stem), &entry)?;
                }
                Ok(())
            };
            write().map_err(|e| {
                let message = e.to_string();
                failure = Some(e);
                message
            })
        });
        if let Some(failure) = failure {
            return Err(failure);
        }
        read.map_err(bad)?;
        for (id, lease) in state.leases().iter() {
            self.store.insert(&lease_key(id), &encode_lease(lease.ttl, lease.expiry_ms))?;
        }
        self.store.insert(meta_lease_clock, &state.leases().clock_ms().to_be_bytes())?;
        self.revision = state.revision();
        self.compact_revision = state.compact_revision();
        Ok(())
    }

    /// Makes everything applied durable, as of Raft index `applied_index`,
    /// store revision `revision` and the store's totals then.
    pub fn checkpoint(
        &mut self,
        applied_index: u64,
        revision: i64,
        live_keys: usize,
        size_bytes: i64,
    ) -> Result<()> {
        if revision < self.revision || revision > revision_max {
            return Err(bad(format!("checkpoint at revision {revision} below {}", self.revision)));
        }
        self.revision = revision;
        let totals = Totals {
            revision,
            compact_revision: self.compact_revision,
            live_keys: live_keys as i64,
            size_bytes,
        };
        self.store.insert(meta_revision, &totals.revision.to_be_bytes())?;
        self.store.insert(meta_compact_revision, &totals.compact_revision.to_be_bytes())?;
        self.store.insert(meta_live_keys, &totals.live_keys.to_be_bytes())?;
        self.store.insert(meta_size_bytes, &totals.size_bytes.to_be_bytes())?;
        self.store.insert(meta_layout, &layout_version.to_be_bytes())?;
        self.store.checkpoint(applied_index)?;
        self.durable = totals;
        Ok(())
    }

    /// A read view of the last checkpoint, for any thread.
    pub fn view(&mut self) -> PagedView {
        PagedView { snapshot: self.store.snapshot(), totals: self.durable }
    }

    /// What the last checkpoint holds.
    pub fn totals(&self) -> Totals {
        self.durable
    }

    /// Removes history below `revision` (see the module comment): visits
    /// the keys of the versions written since the last compaction.
    fn compact(&mut self, revision: i64) -> Result<()> {
        if revision <= self.compact_revision {
            return Ok(());
        }
        let start = revision_bound((self.compact_revision + 1).max(1));
        let end = revision_bound(revision.saturating_add(1));
        let mut after: Option<Vec<u8>> = None;
        loop {
            let lower = match &after {
                Some(last) => Bound::Excluded(last.as_slice()),
                None => Bound::Included(start.as_slice()),
            };
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = self
                .store
                .cursor(lower, Bound::Excluded(&end))?
                .take(compaction_chunk_entries)
                .collect::<std::result::Result<_, _>>()?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            let mut keys: Vec<Bytes> = Vec::with_capacity(chunk.len());
            for (tree_key, value) in &chunk {
                let record = decode_record(value, split_version_key(tree_key)?, None)?;
                keys.push(match record.key {
                    Some(key) => key,
                    None => key_of_delete(&mut |k| self.store.get(k), &record)?,
                });
            }
            drop(chunk);
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                self.compact_key(&key, revision)?;
            }
        }
        self.compact_revision = revision;
        Ok(())
    }

    /// Drops the versions of one key that compaction at `revision` removes.
    fn compact_key(&mut self, key: &Bytes, revision: i64) -> Result<()> {
        let entry_key = key_entry_key(&stem(key).0);
        let Some(value) = self.store.get(&entry_key)? else { return Ok(()) };
        let newest = decode_newest(&value)?;
        let store = &mut self.store;
        let kept = if newest.at.revision <= revision && newest.deleted {
            // Read it anyway: its older versions go too.
            read_present(&mut |k| store.get(k), newest.at, Some(key))?
        } else {
            let found = version_at(&mut |k| store.get(k), newest, revision, Some(key), revision)?;
            match found {
                Some(kept) => kept,
                None => return Ok(()),
            }
        };
        let mut older = kept.previous;
        while let Some(at) = older {
            match self.store.remove(&version_key(at))? {
                Some(bytes) => older = decode_record(&bytes, at, Some(key))?.previous,
                None if at.revision <= revision => break,
                None => return Err(bad(format!("the version at {at} is missing"))),
            }
        }
        if kept.is_delete() {
            self.store.remove(&version_key(kept.at))?;
            if kept.at == newest.at {
                self.store.remove(&entry_key)?;
            }
        }
        Ok(())
    }

    /// The last checkpoint's history as an in-memory store (see
    /// `PagedView::load`).
    pub fn load(&mut self) -> Result<Store> {
        self.view().load()
    }
}

#[cfg(test)]
mod tests;
