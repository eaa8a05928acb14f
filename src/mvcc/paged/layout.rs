//! The tree keys and values of the MVCC layout (docs/formats/pagestore.md,
//! "MVCC layout"): stems, version addresses, key entries, version records
//! and lease entries, each with its checked decoder.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_128;

use super::{bad, ExportedVersion, Result};
use crate::types::KeyValue;

pub(super) const prefix_key: u8 = b'k';
pub(super) const prefix_version: u8 = b'v';
pub(super) const prefix_lease: u8 = b'l';
pub(super) const meta_lease_clock: &[u8] = b"mlease_clock";
pub(super) const meta_revision: &[u8] = b"mrevision";
pub(super) const meta_compact_revision: &[u8] = b"mcompact_revision";
pub(super) const meta_live_keys: &[u8] = b"mlive_keys";
pub(super) const meta_size_bytes: &[u8] = b"msize_bytes";
pub(super) const meta_layout: &[u8] = b"mlayout";
/// The layout this module writes. The first layout ((key, revision) order)
/// wrote no `mlayout` entry, the second fixed-width record fields, the third
/// fixed-width key entries, the fourth versions under (revision, stem) with
/// every delete repeating its key, the fifth key entries naming only the
/// newest version; a store holding any of them is refused, not misread (and
/// rebuilt from snapshot files and the WAL).
pub(super) const layout_version: i64 = 6;
/// Escaped key bytes a stem may hold before the key counts as long. The
/// largest tree key ('k', stem, 2, 16) stays within the page store's cap.
pub const stem_key_bytes_max: usize = 960;
const _: () = assert!(1 + stem_key_bytes_max + 2 + 16 <= crate::pagestore::key_bytes_max);
/// Revisions the key entry's packing (revision × 4 + flags) can hold.
pub(super) use crate::mvcc::revision_max;

/// The stem of `key`; long keys end in a hash, not the whole key.
pub(super) fn stem(key: &[u8]) -> (Vec<u8>, bool) {
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
pub(super) fn is_long_stem(stem: &[u8]) -> bool {
    stem.len() >= 18 && stem[stem.len() - 18..stem.len() - 16] == [0, 2]
}

/// The key a short stem spells (None for a long one: its records hold it).
pub(super) fn key_of_stem(stem: &[u8]) -> Result<Option<Vec<u8>>> {
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
pub(super) fn short_key_of(stem: &[u8]) -> Result<Option<Bytes>> {
    Ok(key_of_stem(stem)?.map(Bytes::from))
}

/// A key entry's tree key.
pub(super) fn key_entry_key(stem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + stem.len());
    out.push(prefix_key);
    out.extend_from_slice(stem);
    out
}

/// A key entry's stem.
pub(super) fn split_key_entry(tree_key: &[u8]) -> Result<&[u8]> {
    if tree_key.len() < 1 + 2 || tree_key[0] != prefix_key {
        return Err(bad("a key entry's key too short"));
    }
    Ok(&tree_key[1..])
}

/// Where a version is in the log: its revision, and its place among that
/// revision's versions (etcd's sub-revision: numbered in the order the
/// request wrote them; in key order in stores written before 2026-12-01).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct At {
    pub(super) revision: i64,
    pub(super) sub: u64,
}

impl At {
    pub(super) fn new(revision: i64, sub: u64) -> At {
        At { revision, sub }
    }
}

impl At {
    /// The sub as the store in memory keeps it (one past u32 reads as
    /// unknown: it orders last, by key).
    pub(crate) fn sub_u32(&self) -> u32 {
        u32::try_from(self.sub).unwrap_or(crate::mvcc::sub_unknown)
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.revision, self.sub)
    }
}

/// A version's tree key: 'v', the revision (8 bytes, big-endian), then the
/// sub as its byte count and that many big-endian bytes (none for 0), so
/// that versions sort by (revision, sub) and the common sub 0 costs a byte.
pub(super) fn version_key(at: At) -> Vec<u8> {
    let mut out = revision_bound(at.revision);
    let bytes = at.sub.to_be_bytes();
    let skip = (at.sub.leading_zeros() / 8) as usize;
    out.push((8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// The tree key below every version at `revision` and above every older one.
pub(super) fn revision_bound(revision: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 9);
    out.push(prefix_version);
    out.extend_from_slice(&(revision as u64).to_be_bytes());
    out
}

/// A version's address from its tree key.
pub(super) fn split_version_key(tree_key: &[u8]) -> Result<At> {
    let wrong = || bad(format!("a version key {tree_key:02x?}"));
    if tree_key.len() < 1 + 8 + 1 || tree_key[0] != prefix_version {
        return Err(wrong());
    }
    let revision = i64::from_be_bytes(tree_key[1..9].try_into().expect("8 bytes"));
    let digits = &tree_key[10..];
    // Canonical: the count matches and the first byte is not zero.
    if !(1..=revision_max).contains(&revision)
        || usize::from(tree_key[9]) != digits.len()
        || digits.len() > 8
        || digits.first() == Some(&0)
    {
        return Err(wrong());
    }
    let sub = digits.iter().fold(0u64, |n, d| n << 8 | u64::from(*d));
    Ok(At { revision, sub })
}

/// A key entry: the key's newest version, and when that is a put, what a
/// put over it needs without reading its record (its create revision,
/// version and lease; zero for a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Newest {
    pub(super) at: At,
    pub(super) deleted: bool,
    pub(super) create_revision: i64,
    pub(super) version: i64,
    pub(super) lease: i64,
}

impl Newest {
    /// The entry naming `kv` (None: a delete) at `at`.
    pub(super) fn of(at: At, kv: Option<&KeyValue>) -> Self {
        match kv {
            Some(kv) => Newest {
                at,
                deleted: false,
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
            },
            None => Newest { at, deleted: true, create_revision: 0, version: 0, lease: 0 },
        }
    }
}

/// A key entry's value: one LEB128 varint, revision × 4 + (2 if the newest
/// version is a delete) + (1 if its sub follows), then the sub (≥ 1) as a
/// varint if flagged; for a put, then revision − create revision, version
/// and zigzag(lease) as varints: 6–8 bytes for most entries, 3–4 for a
/// delete.
pub(super) fn encode_newest(newest: Newest) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    let flags = u64::from(newest.deleted) << 1 | u64::from(newest.at.sub != 0);
    put_varint(&mut out, (newest.at.revision as u64) << 2 | flags);
    if newest.at.sub != 0 {
        put_varint(&mut out, newest.at.sub);
    }
    if !newest.deleted {
        put_varint(&mut out, (newest.at.revision - newest.create_revision) as u64);
        put_varint(&mut out, newest.version as u64);
        put_varint(&mut out, zigzag(newest.lease));
    }
    out
}

pub(super) fn decode_newest(value: &[u8]) -> Result<Newest> {
    let wrong = || bad(format!("a key entry {value:02x?}"));
    let mut reader = Reader { bytes: value, at: 0 };
    let packed = reader.varint().map_err(|_| wrong())?;
    let revision = (packed >> 2) as i64;
    let sub = if packed & 1 != 0 { reader.varint().map_err(|_| wrong())? } else { 0 };
    let deleted = packed & 2 != 0;
    let (mut create_revision, mut version, mut lease) = (0, 0, 0);
    if !deleted {
        let distance = reader.varint().map_err(|_| wrong())?;
        create_revision = revision.checked_sub_unsigned(distance).unwrap_or(0);
        version = i64::try_from(reader.varint().map_err(|_| wrong())?).unwrap_or(0);
        lease = unzigzag(reader.varint().map_err(|_| wrong())?);
    }
    if !(1..=revision_max).contains(&revision)
        || (packed & 1 != 0 && sub == 0)
        || (!deleted && (create_revision < 1 || version < 1))
        || reader.at != value.len()
    {
        return Err(wrong());
    }
    Ok(Newest { at: At { revision, sub }, deleted, create_revision, version, lease })
}

/// An unsigned LEB128 varint (7 bits a byte, low first).
pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
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

/// Checked reads of a record or entry.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| bad("a version record cut short"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// A canonical varint: at most 64 bits, no zero last byte after the first.
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for (i, shift) in (0..64).step_by(7).enumerate() {
            let byte = self.take(1)?[0];
            if shift == 63 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(bad("a varint with a zero last byte"));
                }
                return Ok(value);
            }
        }
        Err(bad("a version record's number runs past 64 bits"))
    }
}

/// The record of the version of `key` at `at` (`kv` None: a delete), whose
/// previous version is `previous` (None: none; a delete always has one).
pub(super) fn encode_record(
    key: &[u8],
    at: At,
    previous: Option<At>,
    kv: Option<&KeyValue>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.map_or(0, |kv| key.len() + kv.value.len()));
    // The previous version's distance below this revision (small for recent
    // ones; 0: none), × 4, + 2 if its sub follows, + 1 for a delete.
    let delete = u64::from(kv.is_none());
    match previous {
        Some(previous) => {
            let distance = (at.revision - previous.revision) as u64;
            put_varint(&mut out, distance << 2 | u64::from(previous.sub != 0) << 1 | delete);
            if previous.sub != 0 {
                put_varint(&mut out, previous.sub);
            }
        }
        None => put_varint(&mut out, delete),
    }
    if let Some(kv) = kv {
        put_varint(&mut out, (at.revision - kv.create_revision) as u64);
        put_varint(&mut out, kv.version as u64);
        put_varint(&mut out, zigzag(kv.lease));
        put_varint(&mut out, key.len() as u64);
        out.extend_from_slice(key);
        out.extend_from_slice(&kv.value);
    }
    out
}

/// A decoded version record.
pub(super) struct Record {
    /// Where it is.
    pub(super) at: At,
    /// The key: a put's own; for a delete, the one the reader gave (a
    /// delete's record does not hold it: its previous version does).
    pub(super) key: Option<Bytes>,
    /// The key's previous version (None: none).
    pub(super) previous: Option<At>,
    pub(super) version: ExportedVersion,
}

impl Record {
    pub(super) fn is_delete(&self) -> bool {
        self.version.kv.is_none()
    }
}

/// A put record's key, read without the rest (None for a delete's record,
/// or one that does not decode: `decode_record` says why).
pub(super) fn put_key_of(record: &[u8]) -> Option<&[u8]> {
    let mut reader = Reader { bytes: record, at: 0 };
    let packed = reader.varint().ok()?;
    if packed & 1 != 0 {
        return None;
    }
    if packed & 2 != 0 {
        reader.varint().ok()?;
    }
    for _ in 0..3 {
        reader.varint().ok()?;
    }
    let key_bytes = usize::try_from(reader.varint().ok()?).ok()?;
    reader.take(key_bytes).ok()
}

/// Decodes the record at `at`. `known` is the key the reader expects, if
/// it knows it: a put of another key is corruption.
pub(super) fn decode_record(record: &[u8], at: At, known: Option<&Bytes>) -> Result<Record> {
    let revision = at.revision;
    let mut reader = Reader { bytes: record, at: 0 };
    // A revision `distance` below this one: at least 1.
    let below = |distance: u64, what: &str| -> Result<i64> {
        match i64::try_from(distance) {
            Ok(distance) if distance < revision => Ok(revision - distance),
            _ => Err(bad(format!("the version at {at} names a {what} {distance} below it"))),
        }
    };
    let packed = reader.varint()?;
    let previous = match packed >> 2 {
        0 if packed & 2 != 0 => return Err(bad(format!("the version at {at} has a stray sub"))),
        0 => None,
        distance => {
            let sub = if packed & 2 != 0 { reader.varint()? } else { 0 };
            if packed & 2 != 0 && sub == 0 {
                return Err(bad(format!("the version at {at} names sub 0 explicitly")));
            }
            Some(At { revision: below(distance, "previous version")?, sub })
        }
    };
    if packed & 1 != 0 {
        if reader.at != record.len() {
            return Err(bad(format!("the delete at {at} has bytes after its fields")));
        }
        if previous.is_none() {
            return Err(bad(format!("the delete at {at} names no previous version")));
        }
        let version = ExportedVersion { revision, sub: at.sub_u32(), kv: None };
        return Ok(Record { at, key: known.cloned(), previous, version });
    }
    let create_revision = below(reader.varint()?, "creation")?;
    let version = i64::try_from(reader.varint()?)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| bad(format!("the version at {at} has no valid version")))?;
    let lease = unzigzag(reader.varint()?);
    let key_bytes = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
    let key = reader.take(key_bytes)?;
    let key = match known {
        Some(known) if known.as_ref() == key => known.clone(),
        Some(_) => return Err(bad(format!("the version at {at} is another key's"))),
        None => Bytes::copy_from_slice(key),
    };
    let kv = KeyValue {
        key: key.clone(),
        create_revision,
        mod_revision: revision,
        version,
        value: Bytes::copy_from_slice(&record[reader.at..]),
        lease,
    };
    let version = ExportedVersion { revision, sub: at.sub_u32(), kv: Some(kv) };
    Ok(Record { at, key: Some(key), previous, version })
}

pub(super) fn lease_key(id: i64) -> [u8; 9] {
    let mut out = [prefix_lease; 9];
    out[1..].copy_from_slice(&(id as u64).to_be_bytes());
    out
}

pub(super) fn encode_lease(ttl: i64, expiry_ms: i64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&ttl.to_le_bytes());
    out[8..].copy_from_slice(&expiry_ms.to_le_bytes());
    out
}

/// A lease entry: (id, ttl, expiry_ms).
pub(super) fn decode_lease(tree_key: &[u8], value: &[u8]) -> Result<(i64, i64, i64)> {
    let (Ok(id), Ok(value)) = (<[u8; 8]>::try_from(&tree_key[1..]), <[u8; 16]>::try_from(value))
    else {
        return Err(bad("a lease entry of the wrong size"));
    };
    let ttl = i64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    let expiry_ms = i64::from_le_bytes(value[8..].try_into().expect("8 bytes"));
    Ok((u64::from_be_bytes(id) as i64, ttl, expiry_ms))
}

pub(super) fn prefix_end(prefix: u8) -> Vec<u8> {
    vec![prefix + 1]
}
