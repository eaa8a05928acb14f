//! MVCC history on the page store: every version of every key, keyed by
//! (key, revision), plus a revision-ordered index, in one copy-on-write B+tree
//! (`pagestore`). Checkpoints fold the changes applied since the last one into
//! it (`apply`), so a checkpoint writes only what changed; start-up loads it
//! back (`load`) and replays the WAL after its applied index.
//!
//! Tree keys (docs/formats/pagestore.md, "MVCC layout"):
//!
//! ```text
//!   'h' stem revision(BE 8)  → version record     history, in (key, revision) order
//!   'r' revision(BE 8) stem  → (empty)            revision index, revisions ≥ compaction
//!   'm' name                 → i64 (BE 8)         "revision", "compact_revision"
//!
//!   stem = esc(key) 00 01                                   keys up to stem_key_bytes_max
//!        | esc(key[..n]) 00 02 xxh3-128(key)(BE 16)         longer keys (record holds the key)
//!   esc: every 00 byte → 00 FF, so stems of short keys sort as their keys do
//! ```
//!
//! Version record: kind (1 put, 2 delete), flags (bit 0: the full key
//! follows), then for a put create_revision, version, lease (i64 LE each);
//! then, if flagged, the key's length (u32 LE) and the key; then a put's value.
//!
//! Compaction at C removes, for each key changed since the previous one, the
//! versions below the newest at or below C (and that one too if it is a
//! delete), and every index entry below C: the index lists exactly the
//! versions a watch from after the compaction point may need. Pages freed by
//! compaction go back to the page store's free list: no defragmentation.
//!
//! Long keys sort by their hash within their prefix in the tree; `load` puts
//! them back in key order (holding only the long keys in memory to do so).

use std::ops::Bound;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_128;

use super::{ExportedVersion, HistoryChange, Importer, Snapshot, Store};
use crate::pagestore::{PageFile, PageStore, StoreError};
use crate::types::KeyValue;

const prefix_history: u8 = b'h';
const prefix_index: u8 = b'r';
const meta_revision: &[u8] = b"mrevision";
const meta_compact_revision: &[u8] = b"mcompact_revision";
const meta_live_keys: &[u8] = b"mlive_keys";
const meta_size_bytes: &[u8] = b"msize_bytes";
/// Escaped key bytes a stem may hold before the key counts as long. The
/// largest tree key ('r', 8, stem, 2, 16) stays within the page store's cap.
pub const stem_key_bytes_max: usize = 960;
const _: () = assert!(1 + 8 + stem_key_bytes_max + 2 + 16 <= crate::pagestore::key_bytes_max);

const kind_put: u8 = 1;
const kind_delete: u8 = 2;
const flag_long_key: u8 = 1;
/// Index entries taken per compaction step (bounds its memory).
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

/// The stem of `key`; long keys end in a hash, not the whole key.
fn stem(key: &[u8]) -> (Vec<u8>, bool) {
    let escaped_bytes = key.len() + key.iter().filter(|b| **b == 0).count();
    let mut out = Vec::with_capacity(escaped_bytes.min(stem_key_bytes_max) + 18);
    let long = escaped_bytes > stem_key_bytes_max;
    for byte in key {
        let width = if *byte == 0 { 2 } else { 1 };
        if long && out.len() + width > stem_key_bytes_max {
            break;
        }
        out.push(*byte);
        if *byte == 0 {
            out.push(0xff);
        }
    }
    if long {
        out.extend_from_slice(&[0, 2]);
        out.extend_from_slice(&xxh3_128(key).to_be_bytes());
    } else {
        out.extend_from_slice(&[0, 1]);
    }
    (out, long)
}

/// Whether a stem (already checked by `key_of_stem`) is a long key's.
fn is_long_stem(stem: &[u8]) -> bool {
    stem.len() >= 18 && stem[stem.len() - 18..stem.len() - 16] == [0, 2]
}

/// The key a short stem spells (None for a long one: its record holds it).
fn key_of_stem(stem: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut key = Vec::with_capacity(stem.len());
    let mut i = 0;
    while i < stem.len() {
        if stem[i] != 0 {
            key.push(stem[i]);
            i += 1;
            continue;
        }
        match stem.get(i + 1) {
            Some(0xff) => {
                key.push(0);
                i += 2;
            }
            Some(1) if i + 2 == stem.len() => return Ok(Some(key)),
            Some(2) if i + 18 == stem.len() => return Ok(None),
            _ => return Err(bad("a history key with a malformed stem")),
        }
    }
    Err(bad("a history key without a stem terminator"))
}

/// A version's tree key: the stem, then the revision inverted so that a
/// key's versions sort newest first (a read at R seeks straight to the
/// newest version at or below R).
fn history_key(stem: &[u8], revision: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + stem.len() + 8);
    out.push(prefix_history);
    out.extend_from_slice(stem);
    out.extend_from_slice(&(!(revision as u64)).to_be_bytes());
    out
}

/// A tree key above every version of `stem` and below the next stem (stems
/// are prefix-free: a short stem ends 00 01, a long one 00 02 and 16 bytes).
fn past_stem(stem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + stem.len() + 8);
    out.push(prefix_history);
    out.extend_from_slice(stem);
    out.extend_from_slice(&[0xff; 8]);
    out
}

fn index_key(revision: i64, stem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + stem.len());
    out.push(prefix_index);
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(stem);
    out
}

/// Splits a history tree key into (stem, revision).
fn split_history_key(tree_key: &[u8]) -> Result<(&[u8], i64)> {
    if tree_key.len() < 1 + 2 + 8 || tree_key[0] != prefix_history {
        return Err(bad("a history key too short"));
    }
    let (stem, revision) = tree_key[1..].split_at(tree_key.len() - 9);
    let revision = !u64::from_be_bytes(revision.try_into().expect("8 bytes")) as i64;
    if revision < 1 {
        return Err(bad(format!("a version at revision {revision}")));
    }
    Ok((stem, revision))
}

fn encode_record(key: &[u8], long: bool, kv: Option<&KeyValue>) -> Vec<u8> {
    let mut out = Vec::with_capacity(26 + kv.map_or(0, |kv| kv.value.len()));
    out.push(if kv.is_some() { kind_put } else { kind_delete });
    out.push(if long { flag_long_key } else { 0 });
    if let Some(kv) = kv {
        out.extend_from_slice(&kv.create_revision.to_le_bytes());
        out.extend_from_slice(&kv.version.to_le_bytes());
        out.extend_from_slice(&kv.lease.to_le_bytes());
    }
    if long {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    if let Some(kv) = kv {
        out.extend_from_slice(&kv.value);
    }
    out
}

/// A decoded record: (the full key if the record holds it, the version).
fn decode_record(
    record: &[u8],
    revision: i64,
    short_key: Option<&Bytes>,
) -> Result<(Bytes, ExportedVersion)> {
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let slice = record.get(*at..*at + n).ok_or_else(|| bad("a version record cut short"))?;
        *at += n;
        Ok(slice)
    };
    let i64_at = |at: &mut usize| -> Result<i64> {
        Ok(i64::from_le_bytes(take(at, 8)?.try_into().expect("8 bytes")))
    };
    let mut at = 0;
    let header = take(&mut at, 2)?;
    let (kind, flags) = (header[0], header[1]);
    if flags & !flag_long_key != 0 || (kind != kind_put && kind != kind_delete) {
        return Err(bad(format!("a version record of kind {kind} flags {flags}")));
    }
    let fields = if kind == kind_put {
        Some((i64_at(&mut at)?, i64_at(&mut at)?, i64_at(&mut at)?))
    } else {
        None
    };
    let key = if flags & flag_long_key != 0 {
        let len = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes")) as usize;
        Bytes::copy_from_slice(take(&mut at, len)?)
    } else {
        short_key.cloned().ok_or_else(|| bad("a long key's record lacks it"))?
    };
    let kv = fields.map(|(create_revision, version, lease)| KeyValue {
        key: key.clone(),
        create_revision,
        mod_revision: revision,
        version,
        value: Bytes::copy_from_slice(&record[at..]),
        lease,
    });
    if kv.is_none() && at != record.len() {
        return Err(bad("a delete record with a value"));
    }
    Ok((key, ExportedVersion { revision, kv }))
}

fn prefix_end(prefix: u8) -> Vec<u8> {
    vec![prefix + 1]
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
        if revision < super::initial_revision
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
    /// Versions go in first, in tree-key order (consecutive inserts then
    /// meet the same, already copied leaves), then the compactions in the
    /// order applied: a compaction at C only touches versions at or below C,
    /// all of which came before it, so the result is the same as in log order.
    pub fn apply(&mut self, changes: &[HistoryChange]) -> Result<()> {
        let mut versions: Vec<(Vec<u8>, i64, Vec<u8>)> = Vec::with_capacity(changes.len());
        for change in changes {
            if let HistoryChange::Version { key, revision, kv } = change {
                let (stem, long) = stem(key);
                let record = encode_record(key, long, kv.as_ref());
                versions.push((history_key(&stem, *revision), *revision, record));
            }
        }
        versions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        versions.dedup_by(|b, a| a.0 == b.0);
        self.store.insert_sorted(versions.iter().map(|(k, _, r)| (k.as_slice(), r.as_slice())))?;
        // The index in revision order: appends at the tree's right end.
        let mut index: Vec<Vec<u8>> = versions
            .iter()
            .map(|(tree_key, revision, _)| index_key(*revision, &tree_key[1..tree_key.len() - 8]))
            .collect();
        index.sort_unstable();
        self.store.insert_sorted(index.iter().map(|k| (k.as_slice(), &[][..])))?;
        if let Some(newest) = versions.iter().map(|(_, revision, _)| *revision).max() {
            self.revision = self.revision.max(newest);
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
        // `state` may read an older checkpoint of this same store: its pages
        // stay pinned while it does, whatever this writer changes.
        let store = &mut self.store;
        let mut failure: Option<HistoryError> = None;
        let compact_revision = state.compact_revision();
        let read = state.for_each_history(|key, versions| {
            let (stem, long) = stem(&key);
            let mut write = || -> Result<()> {
                for version in &versions {
                    let record = encode_record(&key, long, version.kv.as_ref());
                    store.insert(&history_key(&stem, version.revision), &record)?;
                    if version.revision >= compact_revision {
                        store.insert(&index_key(version.revision, &stem), &[])?;
                    }
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
        if revision < self.revision {
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

    /// Removes history below `revision` (see the module comment).
    fn compact(&mut self, revision: i64) -> Result<()> {
        let end = index_key(revision + 1, &[]);
        let mut from: Option<Vec<u8>> = None;
        loop {
            let start = match &from {
                Some(last) => Bound::Excluded(last.as_slice()),
                None => Bound::Included(&[prefix_index][..]),
            };
            let chunk: Vec<Vec<u8>> = self
                .store
                .cursor(start, Bound::Excluded(&end))?
                .take(compaction_chunk_entries)
                .map(|entry| entry.map(|(key, _)| key))
                .collect::<std::result::Result<_, _>>()?;
            let Some(last) = chunk.last().cloned() else { break };
            for entry in &chunk {
                if entry.len() < 9 {
                    return Err(bad("an index key too short"));
                }
                let at = i64::from_be_bytes(entry[1..9].try_into().expect("8 bytes"));
                self.compact_stem(&entry[9..], revision)?;
                if at < revision {
                    self.store.remove(entry)?;
                }
            }
            from = Some(last);
        }
        self.compact_revision = self.compact_revision.max(revision);
        Ok(())
    }

    /// Drops the versions of one key that compaction at `revision` removes.
    fn compact_stem(&mut self, stem: &[u8], revision: i64) -> Result<()> {
        // The versions at or below `revision`, newest first.
        let start = history_key(stem, revision);
        let end = past_stem(stem);
        let versions: Vec<(Vec<u8>, bool)> = self
            .store
            .cursor(Bound::Included(&start), Bound::Excluded(&end))?
            .map(|entry| entry.map(|(key, record)| (key, record.first() == Some(&kind_delete))))
            .collect::<std::result::Result<_, _>>()?;
        let Some((newest, newest_is_delete)) = versions.first() else { return Ok(()) };
        let keep_newest = !newest_is_delete;
        for (i, (key, _)) in versions.iter().enumerate() {
            if i == 0 && keep_newest {
                continue;
            }
            self.store.remove(key)?;
            if key != newest {
                // Its own index entry (below the compaction point) goes too.
                let (_, at) = split_history_key(key)?;
                self.store.remove(&index_key(at, stem))?;
            }
        }
        if !keep_newest {
            let (_, at) = split_history_key(newest)?;
            self.store.remove(&index_key(at, stem))?;
        }
        Ok(())
    }

    /// Every key with its versions (newest first), in key order, calling
    /// `visit` for each: the whole history, for loading or exporting.
    pub fn for_each_key(
        &mut self,
        visit: impl FnMut(Bytes, Vec<ExportedVersion>) -> Result<()>,
    ) -> Result<()> {
        let end = prefix_end(prefix_history);
        let cursor =
            self.store.cursor(Bound::Included(&[prefix_history]), Bound::Excluded(&end))?;
        for_each_key_in(cursor, visit)
    }

    /// Revision-index entries from `from` on: (revision, key), in revision
    /// order, at most `limit` of them.
    pub fn changes_since(&mut self, from: i64, limit: usize) -> Result<Vec<(i64, Bytes)>> {
        let start = index_key(from, &[]);
        let end = prefix_end(prefix_index);
        let entries: Vec<Vec<u8>> = self
            .store
            .cursor(Bound::Included(&start), Bound::Excluded(&end))?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| key))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::with_capacity(entries.len());
        for tree_key in entries {
            if tree_key.len() < 9 {
                return Err(bad("an index key too short"));
            }
            let revision = i64::from_be_bytes(tree_key[1..9].try_into().expect("8 bytes"));
            let stem = &tree_key[9..];
            let key = match key_of_stem(stem)? {
                Some(key) => Bytes::from(key),
                None => {
                    let record = self
                        .store
                        .get(&history_key(stem, revision))?
                        .ok_or_else(|| bad("an index entry without its version"))?;
                    decode_record(&record, revision, None)?.0
                }
            };
            out.push((revision, key));
        }
        Ok(out)
    }
}

/// `PagedHistory::for_each_key` over any cursor of the history entries.
fn for_each_key_in<S: crate::pagestore::PageSource>(
    mut cursor: crate::pagestore::Cursor<S>,
    mut visit: impl FnMut(Bytes, Vec<ExportedVersion>) -> Result<()>,
) -> Result<()> {
    /// The key being read: its stem, the key, its versions newest first.
    type Group = (Vec<u8>, Bytes, Vec<ExportedVersion>);
    let mut long_keys: Vec<(Bytes, Vec<ExportedVersion>)> = Vec::new();
    let mut group: Option<Group> = None;
    let mut emit = |(stem, key, versions): Group,
                    long_keys: &mut Vec<(Bytes, Vec<ExportedVersion>)>|
     -> Result<()> {
        if is_long_stem(&stem) {
            long_keys.push((key, versions));
            return Ok(());
        }
        // Long keys that sort before this one go first.
        if !long_keys.is_empty() {
            long_keys.sort_by(|a, b| b.0.cmp(&a.0));
            while long_keys.last().is_some_and(|(long, _)| *long < key) {
                let (long, versions) = long_keys.pop().expect("checked");
                visit(long, versions)?;
            }
        }
        visit(key, versions)
    };
    loop {
        let step = cursor.next_with(|tree_key, record| -> Result<()> {
            let (stem, revision) = split_history_key(tree_key)?;
            if let Some((current, key, versions)) = &mut group {
                if current.as_slice() == stem {
                    let (record_key, version) = decode_record(record, revision, Some(key))?;
                    if record_key != *key {
                        return Err(bad("two keys share a stem"));
                    }
                    versions.push(version);
                    return Ok(());
                }
            }
            if let Some(done) = group.take() {
                emit(done, &mut long_keys)?;
            }
            let short_key = key_of_stem(stem)?.map(Bytes::from);
            let (key, version) = decode_record(record, revision, short_key.as_ref())?;
            group = Some((stem.to_vec(), key, vec![version]));
            Ok(())
        })?;
        match step {
            Some(result) => result?,
            None => break,
        }
    }
    if let Some(done) = group.take() {
        emit(done, &mut long_keys)?;
    }
    long_keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, versions) in long_keys {
        visit(key, versions)?;
    }
    Ok(())
}

impl<F: PageFile + Send> PagedHistory<F> {
    /// The whole history as an in-memory store (checked as a snapshot import
    /// is). A second thread reads the tree while this one builds the store.
    pub fn load(&mut self) -> Result<Store> {
        type Batch = Vec<(Bytes, Vec<ExportedVersion>)>;
        const batch_keys: usize = 1024;
        let mut importer = Importer::new(self.revision, self.compact_revision).map_err(bad)?;
        let (batches, received) = std::sync::mpsc::sync_channel::<Batch>(16);
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut batch = Vec::with_capacity(batch_keys);
                self.for_each_key(|key, versions| {
                    batch.push((key, versions));
                    if batch.len() == batch_keys {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_keys));
                        batches.send(full).map_err(|_| bad("the importer stopped"))?;
                    }
                    Ok(())
                })?;
                batches.send(batch).map_err(|_| bad("the importer stopped"))
            });
            let mut imported = Ok(());
            'batches: for batch in received {
                for (key, versions) in batch {
                    if let Err(e) = importer.add(key, versions) {
                        imported = Err(bad(e));
                        break 'batches;
                    }
                }
            }
            // An importer error is the cause; the reader then only saw it stop.
            let read = reader.join().expect("the history reader does not panic");
            imported.and(read)
        })?;
        Ok(importer.finish())
    }
}

mod view;
pub use view::{PagedRange, PagedView};

#[cfg(test)]
mod tests;
