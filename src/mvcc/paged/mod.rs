//! MVCC history on the page store, in one copy-on-write B+tree
//! (`pagestore`): every version in revision order (a log, as etcd's bbolt
//! keeps it), one small entry per key naming its newest version, and in each
//! version the revision of the key's previous one. Checkpoints fold the
//! changes applied since the last one into it (`apply`): new versions append
//! at the tree's right end and only the key entries of the keys written
//! change in place, so a checkpoint of a hot keyspace copies few pages.
//! Start-up loads it back (`load`) or reads it in place (`PagedView`), and
//! replays the WAL after its applied index.
//!
//! Tree keys (docs/formats/pagestore.md, "MVCC layout"):
//!
//! ```text
//!   'k' stem                 → its kind (1), newest revision (varint)     one per key held
//!   'v' revision(BE 8) stem  → version record                             every version held
//!   'l' lease id (BE 8)      → ttl (i64 LE), expiry on the lease clock (i64 LE)   every lease
//!   'm' name                 → i64 (BE 8)   "revision", "compact_revision", "live_keys",
//!                                           "size_bytes", "layout", "lease_clock"
//!
//!   stem = esc(key) 00 01                                   keys up to stem_key_bytes_max
//!        | esc(key[..n]) 00 02 xxh3-128(key)(BE 16)         longer keys (record holds the key)
//!   esc: every 00 byte → 00 FF, so stems of short keys sort as their keys do
//! ```
//!
//! Version record: kind (1 put, 2 delete), flags (bit 0: the full key
//! follows), then LEB128 varints: how far below this revision the key's
//! previous version is (0: none), and for a put how far below it the key was
//! created, its version and its lease (zigzag); then, if flagged, the key's
//! length (u32 LE) and the key; then a put's value.
//!
//! A read at R finds the key entry, then follows previous revisions from the
//! newest version to the first at or below R. Compaction at C keeps, per
//! key, the versions above C and the newest at or below C if it is a put;
//! it removes the rest (and the key entry of a key whose newest version is
//! a delete at or below C), walking only the versions written since the last
//! compaction, and frees their pages: no defragmentation. A previous revision
//! at or below the compaction point may therefore name a removed version: a
//! read meets one only where that version was a delete (the key is not live),
//! a history walk ends there. A missing version above it is corruption.
//!
//! Keys attach to leases through their newest version's lease field: the
//! key sets are rebuilt when the store is loaded, never stored.
//!
//! Long keys sort by their hash within their prefix in the key entries;
//! reads put them back in key order (holding only the long keys to do so).

use std::collections::HashMap;
use std::ops::Bound;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_128;

use super::{
    ExportedVersion, HistoryChange, Importer, PreparedKey, Preparer, Snapshot, Store, Version,
};
use crate::pagestore::{PageFile, PageStore, StoreError};
use crate::types::KeyValue;
use std::sync::Arc;

const prefix_key: u8 = b'k';
const prefix_version: u8 = b'v';
const prefix_lease: u8 = b'l';
const meta_lease_clock: &[u8] = b"mlease_clock";
const meta_revision: &[u8] = b"mrevision";
const meta_compact_revision: &[u8] = b"mcompact_revision";
const meta_live_keys: &[u8] = b"mlive_keys";
const meta_size_bytes: &[u8] = b"msize_bytes";
const meta_layout: &[u8] = b"mlayout";
/// The layout this module writes. The first layout ((key, revision) order)
/// wrote no `mlayout` entry, the second fixed-width record fields, the third
/// fixed-width key entries (8-byte revision, then the kind); a store holding
/// any of them is refused, not misread (and rebuilt from snapshot files and
/// the WAL).
const layout_version: i64 = 4;
/// Escaped key bytes a stem may hold before the key counts as long. The
/// largest tree key ('v', 8, stem, 2, 16) stays within the page store's cap.
pub const stem_key_bytes_max: usize = 960;
const _: () = assert!(1 + 8 + stem_key_bytes_max + 2 + 16 <= crate::pagestore::key_bytes_max);

const kind_put: u8 = 1;
const kind_delete: u8 = 2;
const flag_long_key: u8 = 1;
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

/// The key a short stem spells, as `Bytes`.
fn short_key_of(stem: &[u8]) -> Result<Option<Bytes>> {
    Ok(key_of_stem(stem)?.map(Bytes::from))
}

/// A key entry's tree key.
fn key_entry_key(stem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + stem.len());
    out.push(prefix_key);
    out.extend_from_slice(stem);
    out
}

/// A version's tree key: revision first, so versions are a log in the tree.
fn version_key(revision: i64, stem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + stem.len());
    out.push(prefix_version);
    out.extend_from_slice(&(revision as u64).to_be_bytes());
    out.extend_from_slice(stem);
    out
}

/// Splits a version's tree key into (revision, stem).
fn split_version_key(tree_key: &[u8]) -> Result<(i64, &[u8])> {
    if tree_key.len() < 1 + 8 + 2 || tree_key[0] != prefix_version {
        return Err(bad("a version key too short"));
    }
    let revision = i64::from_be_bytes(tree_key[1..9].try_into().expect("8 bytes"));
    if revision < 1 {
        return Err(bad(format!("a version at revision {revision}")));
    }
    Ok((revision, &tree_key[9..]))
}

/// A key entry's stem.
fn split_key_entry(tree_key: &[u8]) -> Result<&[u8]> {
    if tree_key.len() < 1 + 2 || tree_key[0] != prefix_key {
        return Err(bad("a key entry's key too short"));
    }
    Ok(&tree_key[1..])
}

/// A key entry: the key's newest version.
#[derive(Clone, Copy, Debug)]
struct Newest {
    revision: i64,
    deleted: bool,
}

/// A key entry's value: the newest version's kind, then its revision as an
/// unsigned LEB128 varint (2–4 bytes for most revisions, not 8).
fn encode_newest(revision: i64, deleted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    out.push(if deleted { kind_delete } else { kind_put });
    put_varint(&mut out, revision as u64);
    out
}

fn decode_newest(value: &[u8]) -> Result<Newest> {
    let wrong = || bad(format!("a key entry {value:02x?}"));
    let (&kind, digits) = value.split_first().ok_or_else(wrong)?;
    // Canonical: 1 to 9 bytes (revisions are below 2^63), continuation bits
    // on all but the last, and no zero last byte after the first.
    let last = digits.len().checked_sub(1).ok_or_else(wrong)?;
    if digits.len() > 9
        || digits.iter().enumerate().any(|(i, d)| (d & 0x80 != 0) != (i < last))
        || (last > 0 && digits[last] == 0)
        || (kind != kind_put && kind != kind_delete)
    {
        return Err(wrong());
    }
    let revision = digits.iter().rev().fold(0u64, |n, d| n << 7 | u64::from(d & 0x7f));
    let revision = i64::try_from(revision).map_err(|_| wrong())?;
    if revision < 1 {
        return Err(wrong());
    }
    Ok(Newest { revision, deleted: kind == kind_delete })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

/// The record of `key`'s version at `revision` (`kv` None: a delete),
/// whose previous version is at `previous` (0: none).
fn encode_record(
    key: &[u8],
    long: bool,
    revision: i64,
    previous: i64,
    kv: Option<&KeyValue>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.map_or(0, |kv| kv.value.len()));
    out.push(if kv.is_some() { kind_put } else { kind_delete });
    out.push(if long { flag_long_key } else { 0 });
    // Revisions as distances below this one (small for recent ones).
    put_varint(&mut out, if previous == 0 { 0 } else { (revision - previous) as u64 });
    if let Some(kv) = kv {
        put_varint(&mut out, (revision - kv.create_revision) as u64);
        put_varint(&mut out, kv.version as u64);
        put_varint(&mut out, zigzag(kv.lease));
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

/// A decoded version record.
struct Record {
    /// The full key (from the record for a long key, else the one given).
    key: Bytes,
    /// The key's previous version's revision (0: none).
    previous: i64,
    version: ExportedVersion,
}

fn decode_record(record: &[u8], revision: i64, short_key: Option<&Bytes>) -> Result<Record> {
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let slice = record.get(*at..*at + n).ok_or_else(|| bad("a version record cut short"))?;
        *at += n;
        Ok(slice)
    };
    let varint = |at: &mut usize| -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = take(at, 1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a version record's number runs past 64 bits"))
    };
    // A revision `distance` below this one: at least 1.
    let below = |distance: u64, what: &str| -> Result<i64> {
        match i64::try_from(distance) {
            Ok(distance) if distance < revision => Ok(revision - distance),
            _ => Err(bad(format!("the version at {revision} names a {what} {distance} below it"))),
        }
    };
    let mut at = 0;
    let header = take(&mut at, 2)?;
    let (kind, flags) = (header[0], header[1]);
    if flags & !flag_long_key != 0 || (kind != kind_put && kind != kind_delete) {
        return Err(bad(format!("a version record of kind {kind} flags {flags}")));
    }
    let previous = match varint(&mut at)? {
        0 => 0,
        distance => below(distance, "previous version")?,
    };
    let fields = if kind == kind_put {
        let create_revision = below(varint(&mut at)?, "creation")?;
        let version = i64::try_from(varint(&mut at)?)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| bad(format!("the version at {revision} has no valid version")))?;
        Some((create_revision, version, unzigzag(varint(&mut at)?)))
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
    Ok(Record { key, previous, version: ExportedVersion { revision, kv } })
}

fn lease_key(id: i64) -> [u8; 9] {
    let mut out = [prefix_lease; 9];
    out[1..].copy_from_slice(&(id as u64).to_be_bytes());
    out
}

fn encode_lease(ttl: i64, expiry_ms: i64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&ttl.to_le_bytes());
    out[8..].copy_from_slice(&expiry_ms.to_le_bytes());
    out
}

/// A lease entry: (id, ttl, expiry_ms).
fn decode_lease(tree_key: &[u8], value: &[u8]) -> Result<(i64, i64, i64)> {
    let (Ok(id), Ok(value)) = (<[u8; 8]>::try_from(&tree_key[1..]), <[u8; 16]>::try_from(value))
    else {
        return Err(bad("a lease entry of the wrong size"));
    };
    let ttl = i64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    let expiry_ms = i64::from_le_bytes(value[8..].try_into().expect("8 bytes"));
    Ok((u64::from_be_bytes(id) as i64, ttl, expiry_ms))
}

fn prefix_end(prefix: u8) -> Vec<u8> {
    vec![prefix + 1]
}

/// A point read of the tree (the writer's working tree or a checkpoint).
type Get<'a> = dyn FnMut(&[u8]) -> std::result::Result<Option<Vec<u8>>, StoreError> + 'a;

/// The version of `stem` at `revision`: None where compaction removed it,
/// which only happens at or below `compact_revision`.
fn read_version(
    get: &mut Get<'_>,
    stem: &[u8],
    revision: i64,
    short_key: Option<&Bytes>,
    compact_revision: i64,
) -> Result<Option<Record>> {
    match get(&version_key(revision, stem))? {
        Some(bytes) => {
            let record = decode_record(&bytes, revision, short_key)?;
            Ok(Some(record))
        }
        None if revision <= compact_revision => Ok(None),
        None => Err(bad(format!("the version at revision {revision} is missing"))),
    }
}

/// The newest version of a key at or below `at`, walking back from its
/// newest (None: no version then, or a delete that compaction removed).
fn version_at(
    get: &mut Get<'_>,
    stem: &[u8],
    newest: Newest,
    at: i64,
    short_key: Option<&Bytes>,
    compact_revision: i64,
) -> Result<Option<Record>> {
    if newest.revision <= at && newest.deleted {
        return Ok(None);
    }
    // The key entry's own version is never removed without it.
    let Some(mut record) = read_version(get, stem, newest.revision, short_key, 0)? else {
        unreachable!("revision 0 is never read")
    };
    if record.version.kv.is_none() != newest.deleted {
        return Err(bad(format!("the key entry disagrees with version {}", newest.revision)));
    }
    while record.version.revision > at {
        if record.previous == 0 {
            return Ok(None);
        }
        let key = record.key.clone();
        match read_version(get, stem, record.previous, short_key, compact_revision)? {
            Some(older) if older.key == key => record = older,
            Some(_) => return Err(bad("two keys share a stem")),
            None => return Ok(None),
        }
    }
    Ok(Some(record))
}

/// Every version a key holds, newest first (the walk ends at the first
/// previous revision that compaction removed).
fn all_versions(
    get: &mut Get<'_>,
    stem: &[u8],
    newest: Newest,
    short_key: Option<&Bytes>,
    compact_revision: i64,
) -> Result<(Bytes, Vec<ExportedVersion>)> {
    let Some(first) = read_version(get, stem, newest.revision, short_key, 0)? else {
        unreachable!("revision 0 is never read")
    };
    if first.version.kv.is_none() != newest.deleted {
        return Err(bad(format!("the key entry disagrees with version {}", newest.revision)));
    }
    let key = first.key.clone();
    let mut previous = first.previous;
    let mut versions = vec![first.version];
    while previous != 0 {
        match read_version(get, stem, previous, short_key, compact_revision)? {
            Some(older) if older.key == key => {
                previous = older.previous;
                versions.push(older.version);
            }
            Some(_) => return Err(bad("two keys share a stem")),
            None => break,
        }
    }
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

/// A key written in the batch being folded.
struct Written {
    /// Its newest version in the batch, and whether that is a delete.
    newest: i64,
    deleted: bool,
    /// The revision before `newest` and where `newest`'s record is.
    previous: i64,
    slot: usize,
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
    /// Versions go in first, in revision order (appends at the tree's right
    /// end), then the key entries of the keys written, in key order, then the
    /// compactions in the order applied: a compaction at C only touches
    /// versions at or below C, all of which came before it, so the result is
    /// the same as in log order.
    pub fn apply(&mut self, changes: &[HistoryChange]) -> Result<()> {
        let mut written: HashMap<Vec<u8>, Written> = HashMap::new();
        let mut versions: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(changes.len());
        for change in changes {
            let HistoryChange::Version { key, revision, kv } = change else { continue };
            let (stem, long) = stem(key);
            let (previous, slot) = match written.get(&stem) {
                // The same key twice in one revision: the later stands.
                Some(w) if w.newest == *revision => (w.previous, Some(w.slot)),
                Some(w) => (w.newest, None),
                None => match self.store.get(&key_entry_key(&stem))? {
                    Some(value) => (decode_newest(&value)?.revision, None),
                    None => (0, None),
                },
            };
            if previous >= *revision {
                return Err(bad(format!(
                    "a version at revision {revision} after one at {previous}"
                )));
            }
            let record = encode_record(key, long, *revision, previous, kv.as_ref());
            let slot = match slot {
                Some(slot) => {
                    versions[slot].1 = record;
                    slot
                }
                None => {
                    versions.push((version_key(*revision, &stem), record));
                    versions.len() - 1
                }
            };
            let deleted = kv.is_none();
            written.insert(stem, Written { newest: *revision, deleted, previous, slot });
        }
        let newest = versions
            .last()
            .map(|(tree_key, _)| split_version_key(tree_key).map(|(revision, _)| revision))
            .transpose()?;
        // Log order is revision order; within a revision, tree-key order.
        versions.sort_by(|a, b| a.0.cmp(&b.0));
        self.store.insert_sorted(versions.iter().map(|(k, r)| (k.as_slice(), r.as_slice())))?;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = written
            .into_iter()
            .map(|(stem, w)| (key_entry_key(&stem), encode_newest(w.newest, w.deleted)))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.store.insert_sorted(entries.iter().map(|(k, v)| (k.as_slice(), &v[..])))?;
        if let Some(newest) = newest {
            self.revision = self.revision.max(newest);
        }
        let mut leases: std::collections::BTreeMap<i64, Option<(i64, i64)>> = Default::default();
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
        // `state` may read an older checkpoint of this same store: its pages
        // stay pinned while it does, whatever this writer changes.
        let store = &mut self.store;
        let mut failure: Option<HistoryError> = None;
        let read = state.for_each_history(|key, versions| {
            let (stem, long) = stem(&key);
            let mut write = || -> Result<()> {
                for (i, version) in versions.iter().enumerate() {
                    let previous = versions.get(i + 1).map_or(0, |older| older.revision);
                    let record =
                        encode_record(&key, long, version.revision, previous, version.kv.as_ref());
                    store.insert(&version_key(version.revision, &stem), &record)?;
                }
                if let Some(newest) = versions.first() {
                    let entry = encode_newest(newest.revision, newest.kv.is_none());
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
        let start = version_key((self.compact_revision + 1).max(1), &[]);
        let end = version_key(revision + 1, &[]);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let lower = match &after {
                Some(last) => Bound::Excluded(last.as_slice()),
                None => Bound::Included(start.as_slice()),
            };
            let chunk: Vec<Vec<u8>> = self
                .store
                .cursor(lower, Bound::Excluded(&end))?
                .take(compaction_chunk_entries)
                .map(|entry| entry.map(|(key, _)| key))
                .collect::<std::result::Result<_, _>>()?;
            let Some(last) = chunk.last().cloned() else { break };
            let mut stems: Vec<&[u8]> = chunk
                .iter()
                .map(|tree_key| split_version_key(tree_key).map(|(_, stem)| stem))
                .collect::<Result<_>>()?;
            stems.sort_unstable();
            stems.dedup();
            for stem in stems {
                self.compact_key(stem, revision)?;
            }
            after = Some(last);
        }
        self.compact_revision = revision;
        Ok(())
    }

    /// Drops the versions of one key that compaction at `revision` removes.
    fn compact_key(&mut self, stem: &[u8], revision: i64) -> Result<()> {
        let entry_key = key_entry_key(stem);
        let Some(value) = self.store.get(&entry_key)? else { return Ok(()) };
        let newest = decode_newest(&value)?;
        let short_key = short_key_of(stem)?;
        let store = &mut self.store;
        let kept = if newest.revision <= revision && newest.deleted {
            // Read it anyway: its older versions go too.
            read_version(&mut |k| store.get(k), stem, newest.revision, short_key.as_ref(), 0)?
        } else {
            let found = version_at(
                &mut |k| store.get(k),
                stem,
                newest,
                revision,
                short_key.as_ref(),
                revision,
            )?;
            match found {
                Some(kept) => Some(kept),
                None => return Ok(()),
            }
        };
        let Some(kept) = kept else { unreachable!("revision 0 is never read") };
        let mut older = kept.previous;
        while older != 0 {
            match self.store.remove(&version_key(older, stem))? {
                Some(bytes) => older = decode_record(&bytes, older, short_key.as_ref())?.previous,
                None if older <= revision => break,
                None => return Err(bad(format!("the version at revision {older} is missing"))),
            }
        }
        if kept.version.kv.is_none() {
            self.store.remove(&version_key(kept.version.revision, stem))?;
            if kept.version.revision == newest.revision {
                self.store.remove(&entry_key)?;
            }
        }
        Ok(())
    }

    /// The last checkpoint's history as an in-memory store (checked as a
    /// snapshot import is). Two threads each read half of the version log
    /// (by revision, leaves bypassing the page cache) and sort it by key,
    /// newest first; then one merges the halves, checks each key and builds
    /// its versions while this one puts the keys into the map.
    pub fn load(&mut self) -> Result<Store> {
        self.view().load()
    }
}

impl PagedView {
    /// As `PagedHistory::load`, from this checkpoint (on any thread: a
    /// member that starts serves from the pages while one loads them).
    pub fn load(&self) -> Result<Store> {
        let view = self;
        let totals = view.totals;
        let mut importer = Importer::new(totals.revision, totals.compact_revision).map_err(bad)?;
        let leases = view.leases()?;
        for (id, lease) in leases.iter() {
            importer.add_lease(id, lease.ttl, lease.expiry_ms).map_err(bad)?;
        }
        importer.set_lease_clock(leases.clock_ms()).map_err(bad)?;
        let middle = (totals.compact_revision.max(0) + totals.revision) / 2 + 1;
        let (low, high) = std::thread::scope(|scope| {
            let low = scope.spawn(|| sorted_versions(view, 1, middle));
            let high = sorted_versions(view, middle, i64::MAX);
            let low = low.join().expect("the log reader does not panic");
            Ok::<_, HistoryError>((low?, high?))
        })?;
        // One thread merges the halves, checks each key and builds its chain
        // of versions; this one puts the keys into the map, batch by batch.
        let preparer = importer.preparer();
        std::thread::scope(|scope| -> Result<()> {
            let (batches_tx, batches) = std::sync::mpsc::sync_channel::<Vec<PreparedKey>>(16);
            let merger = scope.spawn(move || merge_halves(low, high, preparer, batches_tx));
            for batch in batches {
                for key in batch {
                    importer.commit(key);
                }
            }
            merger.join().expect("the merger does not panic")
        })?;
        Ok(importer.finish())
    }
}

/// Merges the two halves of `load` (each in key order, newest first within
/// a key; a key in both has its high-half versions newer than its low-half
/// ones), prepares each key and sends them on in batches.
fn merge_halves(
    low: Vec<(Bytes, Arc<Version>)>,
    high: Vec<(Bytes, Arc<Version>)>,
    mut preparer: Preparer,
    batches: std::sync::mpsc::SyncSender<Vec<PreparedKey>>,
) -> Result<()> {
    const batch_keys: usize = 1024;
    let mut low = low.into_iter().peekable();
    let mut high = high.into_iter().peekable();
    let mut batch = Vec::with_capacity(batch_keys);
    loop {
        let take_high = match (low.peek(), high.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(l), Some(h)) => h.0 <= l.0,
        };
        let (key, first) = if take_high { high.next() } else { low.next() }.expect("peeked");
        let mut group = vec![first];
        while let Some((_, version)) = high.next_if(|(next, _)| *next == key) {
            group.push(version);
        }
        while let Some((_, version)) = low.next_if(|(next, _)| *next == key) {
            group.push(version);
        }
        batch.push(preparer.prepare_chain(key, group).map_err(bad)?);
        if batch.len() == batch_keys {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_keys));
            if batches.send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(batch);
    }
    Ok(())
}

/// The versions of a checkpoint with revisions in [from, to), sorted by key,
/// newest first within a key, each allocated as it will stay in memory
/// (unlinked: `Preparer::prepare_chain` links them).
fn sorted_versions(view: &PagedView, from: i64, to: i64) -> Result<Vec<(Bytes, Arc<Version>)>> {
    let start = version_key(from, &[]);
    let end = if to == i64::MAX { prefix_end(prefix_version) } else { version_key(to, &[]) };
    let mut cursor = view.snapshot.scan_cursor(Bound::Included(&start), Bound::Excluded(&end))?;
    // About one version per revision: reserved up front, the vector is not
    // copied as it grows (it holds the whole history).
    // Bounded by the tree's entry count, so a damaged meta entry cannot ask
    // for an absurd reservation.
    let revisions = to.min(view.totals.revision.saturating_add(1)).saturating_sub(from).max(0);
    let capacity = (revisions as u64).min(view.snapshot.len());
    let mut versions: Vec<(Bytes, Arc<Version>)> = Vec::with_capacity(capacity as usize);
    // Consecutive versions often share a stem; decode it once.
    let mut last_stem: (Vec<u8>, Option<Bytes>) = (Vec::new(), None);
    loop {
        let step = cursor.next_with(|tree_key, record| -> Result<(Bytes, Arc<Version>)> {
            let (revision, stem) = split_version_key(tree_key)?;
            if last_stem.0 != stem {
                last_stem = (stem.to_vec(), short_key_of(stem)?);
            }
            let record = decode_record(record, revision, last_stem.1.as_ref())?;
            // Allocated here, on a reader thread; linked by the merger.
            let kv = record.version.kv;
            Ok((record.key, Arc::new(Version { kv, revision, previous: None })))
        })?;
        match step {
            Some(version) => versions.push(version?),
            None => break,
        }
    }
    versions.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.revision.cmp(&a.1.revision)));
    Ok(versions)
}

mod view;
pub use view::{PagedKey, PagedRange, PagedView};

#[cfg(test)]
mod tests;
