//! Reading one checkpoint's history from any thread: `PagedView` and its
//! range iterator `PagedRange`.

use std::ops::Bound;

use bytes::Bytes;

use super::*;

/// The MVCC history of one checkpoint, read from any thread while the
/// writer goes on (the page store keeps its pages while the view lives).
#[derive(Clone, Debug)]
pub struct PagedView {
    pub(super) snapshot: crate::pagestore::Snapshot,
    pub(super) totals: Totals,
}

/// Escaped bytes of a range bound that the scan's tree bounds keep: long
/// keys keep at least this many of theirs, so bounds cut here enclose them.
const bound_stem_bytes: usize = 900;

/// 'k' and the first `bound_stem_bytes` escaped bytes of `key`.
fn bound_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = vec![prefix_key];
    for byte in key {
        let width = if *byte == 0 { 2 } else { 1 };
        if out.len() - 1 + width > bound_stem_bytes {
            break;
        }
        out.push(*byte);
        if *byte == 0 {
            out.push(0xff);
        }
    }
    out
}

/// The smallest byte string above every string that starts with `prefix`.
fn prefix_successor(mut prefix: Vec<u8>) -> Vec<u8> {
    while let Some(last) = prefix.pop() {
        if last < 0xff {
            prefix.push(last + 1);
            return prefix;
        }
    }
    prefix_end(prefix_key)
}

/// A version in the log: (revision, sub, key, version; None for a delete).
pub type Change = (i64, u64, Bytes, Option<KeyValue>);

impl PagedView {
    pub fn revision(&self) -> i64 {
        self.totals.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.totals.compact_revision
    }

    pub fn live_keys(&self) -> i64 {
        self.totals.live_keys
    }

    pub fn size_bytes(&self) -> i64 {
        self.totals.size_bytes
    }

    /// The checkpoint's leases (without their key sets) and lease clock.
    pub fn leases(&self) -> Result<crate::mvcc::Leases> {
        let mut leases = crate::mvcc::Leases::default();
        let end = prefix_end(prefix_lease);
        let mut cursor =
            self.snapshot.cursor(Bound::Included(&[prefix_lease]), Bound::Excluded(&end))?;
        while let Some((tree_key, value)) = cursor.next_entry()? {
            let (id, ttl, expiry_ms) = decode_lease(&tree_key, &value)?;
            if id == 0 || ttl < 1 || expiry_ms < 0 {
                return Err(bad(format!("lease {id:x}: TTL {ttl}, expiry {expiry_ms}")));
            }
            leases.insert(id, ttl, expiry_ms);
        }
        if let Some(clock) = self.snapshot.get(meta_lease_clock)? {
            let clock: [u8; 8] =
                clock.as_slice().try_into().map_err(|_| bad("a lease clock of the wrong size"))?;
            leases.set_clock(i64::from_be_bytes(clock));
        }
        Ok(leases)
    }

    /// The Raft index of the checkpoint.
    pub fn applied_index(&self) -> u64 {
        self.snapshot.applied_index()
    }

    /// Visits, in key order, every key in [start, end) (`end` None: no upper
    /// bound) live at `revision` (which the caller has checked lies between
    /// the compaction point and the view's revision), with its version then;
    /// `visit` answers whether to go on.
    pub fn range_at(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        revision: i64,
        mut visit: impl FnMut(KeyValue) -> bool,
    ) -> Result<()> {
        let mut range = self.range(start, end, revision)?;
        while let Some(kv) = range.next_kv()? {
            if !visit(kv) {
                break;
            }
        }
        Ok(())
    }

    /// Every key with its versions (newest first), in key order: the whole
    /// history, one key at a time (long keys excepted, which are held until
    /// their place in key order comes).
    pub fn for_each_key(
        &self,
        mut visit: impl FnMut(Bytes, Vec<ExportedVersion>) -> Result<()>,
    ) -> Result<()> {
        let end = prefix_end(prefix_key);
        // One pass over every key entry (snapshot files, rewrites): its
        // leaves stay out of the page cache that requests use.
        let mut cursor =
            self.snapshot.scan_cursor(Bound::Included(&[prefix_key]), Bound::Excluded(&end))?;
        let mut order = KeyOrder::new();
        let mut next: Vec<(Bytes, Vec<ExportedVersion>)> = Vec::new();
        while let Some(entry) = cursor.next_with(key_entry)? {
            let (stem, newest) = entry?;
            let short_key = short_key_of(&stem)?;
            let (key, versions) = all_versions(
                &mut |k| self.snapshot.get(k),
                newest,
                short_key.as_ref(),
                self.totals.compact_revision,
            )?;
            order.push(short_key.is_none(), key, versions, |k, v| next.push((k, v)));
            for (key, versions) in next.drain(..) {
                visit(key, versions)?;
            }
        }
        while let Some((key, versions)) = order.pop() {
            visit(key, versions)?;
        }
        Ok(())
    }

    /// The versions written at revisions from `from` to `to` (inclusive)
    /// to keys that `wanted` accepts, in (revision, sub) order:
    /// (revision, sub, key, version; None for a delete). Reads the version log
    /// from `from` on, whatever the keys (and, for a delete, the put before
    /// it, which holds its key).
    pub fn changes_between(
        &self,
        from: i64,
        to: i64,
        mut wanted: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        if to < from.max(1) {
            return Ok(out);
        }
        let start = revision_bound(from.max(1));
        let end = revision_bound(to.saturating_add(1));
        let mut cursor = self.snapshot.cursor(Bound::Included(&start), Bound::Excluded(&end))?;
        loop {
            let step = cursor.next_with(|tree_key, record| -> Result<Option<Record>> {
                // A put of a key not wanted is not decoded further.
                if put_key_of(record).is_some_and(|key| !wanted(key)) {
                    return Ok(None);
                }
                decode_record(record, split_version_key(tree_key)?, None).map(Some)
            })?;
            let record = match step {
                Some(Ok(Some(record))) => record,
                Some(Ok(None)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(out),
            };
            let key = match &record.key {
                Some(key) => key.clone(),
                None => key_of_delete(&mut |k| self.snapshot.get(k), &record)?,
            };
            if wanted(&key) {
                out.push((record.version.revision, record.at.sub, key, record.version.kv));
            }
        }
    }

    /// Reads ahead, in two batches, the pages that a read of each of `keys`
    /// (key, whether its value is wanted) at the newest revision will read:
    /// their key entries, then the newest versions of those whose value is
    /// wanted (`get_at`) or that are long (see `get_without_value`,
    /// `pagestore::Snapshot::prefetch`).
    pub fn prefetch(&self, keys: &[(&[u8], bool)]) {
        let entries: Vec<Vec<u8>> =
            keys.iter().map(|(key, _)| key_entry_key(&stem(key).0)).collect();
        self.snapshot.prefetch(&entries);
        let versions: Vec<Vec<u8>> = entries
            .iter()
            .zip(keys)
            .filter(|(_, (key, with_value))| *with_value || stem(key).1)
            .filter_map(|(entry, _)| {
                let newest = decode_newest(&self.snapshot.get(entry).ok()??).ok()?;
                (!newest.deleted).then(|| version_key(newest.at))
            })
            .collect();
        self.snapshot.prefetch(&versions);
    }

    /// The version of `key` live at `revision`, if any, with its value left
    /// empty when the key's entry tells the rest (its newest version is the
    /// one live at `revision`, and the key is not long: a long key's stem
    /// does not prove the key, its record does). What a put over the key
    /// needs, without reading the version's record.
    pub fn get_without_value(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>> {
        let (stem, long) = stem(key);
        if long {
            return self.get_at(key, revision);
        }
        let Some(value) = self.snapshot.get(&key_entry_key(&stem))? else { return Ok(None) };
        let newest = decode_newest(&value)?;
        if newest.at.revision > revision {
            return self.get_at(key, revision);
        }
        Ok((!newest.deleted).then(|| KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: newest.create_revision,
            mod_revision: newest.at.revision,
            version: newest.version,
            value: Bytes::new(),
            lease: newest.lease,
        }))
    }

    /// The version of `key` live at `revision`, if any.
    pub fn get_at(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>> {
        let (stem, _) = stem(key);
        let Some(value) = self.snapshot.get(&key_entry_key(&stem))? else { return Ok(None) };
        let newest = decode_newest(&value)?;
        // A put of another key (long keys whose stems collide) is an error.
        let key = Bytes::copy_from_slice(key);
        let found = version_at(
            &mut |k| self.snapshot.get(k),
            newest,
            revision,
            Some(&key),
            self.totals.compact_revision,
        )?;
        Ok(found.and_then(|record| record.version.kv))
    }

    /// A pull iterator over what `range_at` visits. Reads one key at a time:
    /// memory does not grow with the range (long keys excepted, which are
    /// held until their place in key order comes).
    pub fn range(&self, start: &[u8], end: Option<&[u8]>, revision: i64) -> Result<PagedRange> {
        let low = bound_prefix(start);
        let high =
            end.map_or_else(|| prefix_end(prefix_key), |e| prefix_successor(bound_prefix(e)));
        let cursor = self.snapshot.cursor(Bound::Included(&low), Bound::Excluded(&high))?;
        Ok(PagedRange {
            cursor,
            snapshot: self.snapshot.clone(),
            compact_revision: self.totals.compact_revision,
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            revision,
            order: KeyOrder::new(),
            ready: std::collections::VecDeque::new(),
            exhausted: false,
        })
    }
}

/// A key entry from a cursor: (stem, newest version).
fn key_entry(tree_key: &[u8], value: &[u8]) -> Result<(Vec<u8>, Newest)> {
    Ok((split_key_entry(tree_key)?.to_vec(), decode_newest(value)?))
}

/// A live key of a range; its version is read when asked for
/// (`PagedRange::value`), so counting keys reads only key entries.
#[derive(Debug)]
pub struct PagedKey {
    pub key: Bytes,
    stem: Vec<u8>,
    newest: Newest,
    /// The version, where finding the key needed it already.
    kv: Option<KeyValue>,
}

/// Live keys of a range at one revision, in key order (`PagedView::range`).
/// Walks the key entries: a key whose newest version is at or below the
/// revision is live unless that is a delete, with no version read; older
/// revisions follow previous revisions from the newest.
pub struct PagedRange {
    cursor: crate::pagestore::Cursor<crate::pagestore::SharedReader>,
    snapshot: crate::pagestore::Snapshot,
    compact_revision: i64,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    revision: i64,
    order: KeyOrder<PagedKey>,
    ready: std::collections::VecDeque<PagedKey>,
    exhausted: bool,
}

impl PagedRange {
    fn in_range(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|end| key < end.as_slice())
    }

    fn version_at(&self, newest: Newest, at: i64, known: Option<&Bytes>) -> Result<Option<Record>> {
        let snapshot = &self.snapshot;
        version_at(&mut |k| snapshot.get(k), newest, at, known, self.compact_revision)
    }

    /// The next live key and its version.
    pub fn next_kv(&mut self) -> Result<Option<KeyValue>> {
        match self.next_key()? {
            Some(key) => Ok(Some(self.value(key)?)),
            None => Ok(None),
        }
    }

    /// The version of a key this range handed out.
    pub fn value(&self, key: PagedKey) -> Result<KeyValue> {
        if let Some(kv) = key.kv {
            return Ok(kv);
        }
        let found = self.version_at(key.newest, key.newest.at.revision, Some(&key.key))?;
        found
            .and_then(|record| record.version.kv)
            .ok_or_else(|| bad("a live key without its version"))
    }

    /// The next live key, or None at the end of the range.
    pub fn next_key(&mut self) -> Result<Option<PagedKey>> {
        loop {
            if let Some(key) = self.ready.pop_front() {
                return Ok(Some(key));
            }
            if self.exhausted {
                return Ok(self.order.pop().map(|(_, key)| key));
            }
            let Some(entry) = self.cursor.next_with(key_entry)? else {
                self.exhausted = true;
                continue;
            };
            let (stem, newest) = entry?;
            if newest.deleted && newest.at.revision <= self.revision {
                continue;
            }
            let short_key = short_key_of(&stem)?;
            let found = match short_key {
                Some(key) if !self.in_range(&key) => continue,
                Some(key) if newest.at.revision <= self.revision => {
                    PagedKey { key, stem, newest, kv: None }
                }
                short_key => {
                    let record = self.version_at(newest, self.revision, short_key.as_ref())?;
                    let Some(kv) = record.and_then(|record| record.version.kv) else { continue };
                    if !self.in_range(&kv.key) {
                        continue;
                    }
                    PagedKey { key: kv.key.clone(), stem, newest, kv: Some(kv) }
                }
            };
            let long = is_long_stem(&found.stem);
            let ready = &mut self.ready;
            self.order.push(long, found.key.clone(), found, |_, key| ready.push_back(key));
        }
    }
}
