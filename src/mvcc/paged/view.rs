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

/// The first `bound_stem_bytes` escaped bytes of `key`, after 'h'.
fn bound_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = vec![prefix_history];
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
    prefix_end(prefix_history)
}

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

    /// Every key with its versions (newest first), in key order, as
    /// `PagedHistory::for_each_key`, from this checkpoint.
    pub fn for_each_key(
        &self,
        visit: impl FnMut(Bytes, Vec<ExportedVersion>) -> Result<()>,
    ) -> Result<()> {
        let end = prefix_end(prefix_history);
        let cursor =
            self.snapshot.cursor(Bound::Included(&[prefix_history]), Bound::Excluded(&end))?;
        for_each_key_in(cursor, visit)
    }

    /// The version of `key` live at `revision`, if any.
    pub fn get_at(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>> {
        let mut end = key.to_vec();
        end.push(0);
        self.range(key, Some(&end), revision)?.next_kv()
    }

    /// A pull iterator over what `range_at` visits. Reads one key's versions
    /// at a time: memory does not grow with the range (long keys excepted,
    /// which are held until their place in key order comes).
    pub fn range(&self, start: &[u8], end: Option<&[u8]>, revision: i64) -> Result<PagedRange> {
        let low = bound_prefix(start);
        let high =
            end.map_or_else(|| prefix_end(prefix_history), |e| prefix_successor(bound_prefix(e)));
        let cursor = self.snapshot.cursor(Bound::Included(&low), Bound::Excluded(&high))?;
        Ok(PagedRange {
            cursor,
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            revision,
            long_keys: Vec::new(),
            ready: std::collections::VecDeque::new(),
            exhausted: false,
        })
    }
}

/// Live keys of a range at one revision, in key order (`PagedView::range`).
/// For each key it seeks to the newest version at or below the revision,
/// then past the key's older versions: the cost is per key, not per version.
pub struct PagedRange {
    cursor: crate::pagestore::Cursor<crate::pagestore::SharedReader>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    revision: i64,
    /// Live long keys not yet handed out, largest first.
    long_keys: Vec<KeyValue>,
    ready: std::collections::VecDeque<KeyValue>,
    exhausted: bool,
}

/// What the range reader found at the cursor.
enum Found {
    /// A version newer than the revision: seek to this tree key.
    TooNew(Vec<u8>),
    /// The key's version at the revision (None: deleted then); then seek
    /// past the key.
    Version { stem: Vec<u8>, kv: Option<KeyValue> },
}

impl PagedRange {
    fn in_range(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|end| key < end.as_slice())
    }

    /// A key's reading is done: queue it (and long keys before it).
    fn finish(&mut self, stem: &[u8], kv: Option<KeyValue>) {
        let Some(kv) = kv.filter(|kv| self.in_range(&kv.key)) else { return };
        if is_long_stem(stem) {
            self.long_keys.push(kv);
            self.long_keys.sort_by(|a, b| b.key.cmp(&a.key));
            return;
        }
        while self.long_keys.last().is_some_and(|long| long.key < kv.key) {
            let long = self.long_keys.pop().expect("checked");
            self.ready.push_back(long);
        }
        self.ready.push_back(kv);
    }

    /// The next live key, or None at the end of the range.
    pub fn next_kv(&mut self) -> Result<Option<KeyValue>> {
        loop {
            if let Some(kv) = self.ready.pop_front() {
                return Ok(Some(kv));
            }
            if self.exhausted {
                return Ok(self.long_keys.pop());
            }
            let revision = self.revision;
            let step = self.cursor.next_with(|tree_key, record| -> Result<Found> {
                let (stem, at) = split_history_key(tree_key)?;
                if at > revision {
                    return Ok(Found::TooNew(history_key(stem, revision)));
                }
                let short_key = key_of_stem(stem)?.map(Bytes::from);
                let (_, version) = decode_record(record, at, short_key.as_ref())?;
                Ok(Found::Version { stem: stem.to_vec(), kv: version.kv })
            })?;
            match step {
                None => self.exhausted = true,
                Some(found) => match found? {
                    Found::TooNew(target) => self.cursor.seek_forward(&target)?,
                    Found::Version { stem, kv } => {
                        self.cursor.seek_forward(&past_stem(&stem))?;
                        self.finish(&stem, kv);
                    }
                },
            }
        }
    }
}
