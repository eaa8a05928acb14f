//! Reads: a range at a revision, with etcd's limit, count, sort and filters.

use std::borrow::Cow;

use super::span::Span;
use super::{storage_error, Snapshot};
use crate::error::{Error, ErrorCode};
use crate::types::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};

impl Snapshot {
    /// Resolves a requested revision (≤ 0: current) or explains why it cannot
    /// be read.
    pub fn read_revision(&self, requested: i64) -> Result<i64, Error> {
        if requested <= 0 {
            return Ok(self.revision);
        }
        if requested > self.revision {
            return Err(Error::new(ErrorCode::FutureRevision));
        }
        if requested < self.compact_revision {
            return Err(Error::new(ErrorCode::Compacted));
        }
        Ok(requested)
    }

    /// Every live key in `span` at `revision` (already resolved), in key order;
    /// calls `visit` for each and stops when it returns false. Fails only when
    /// the page store cannot be read.
    pub(super) fn scan(
        &self,
        span: &Span,
        revision: i64,
        mut visit: impl FnMut(&KeyValue) -> bool,
    ) -> Result<(), Error> {
        self.scan_counting(span, revision, usize::MAX, |kv| visit(kv)).map(drop)
    }

    /// As `scan`, but hands `visit` only the first `values` keys and counts
    /// the rest without reading their versions (etcd's range counts every
    /// key however small its limit); answers the keys seen, visited or
    /// counted, up to where `visit` stopped.
    pub(super) fn scan_counting(
        &self,
        span: &Span,
        revision: i64,
        values: usize,
        mut visit: impl FnMut(&KeyValue) -> bool,
    ) -> Result<i64, Error> {
        let mut seen = 0usize;
        if span.is_empty() {
            return Ok(0);
        }
        if let Span::Single(key) = span {
            if let Some(kv) = self.visible(key, revision)? {
                seen = 1;
                if values > 0 {
                    visit(&kv);
                }
            }
            return Ok(seen as i64);
        }
        if !self.is_layered() {
            for (_, head) in self.keys.range(span.bounds()) {
                if let Some(kv) = head.at(revision).and_then(|v| v.kv.as_ref()) {
                    seen += 1;
                    if seen <= values && !visit(kv) {
                        break;
                    }
                }
            }
            return Ok(seen as i64);
        }
        self.scan_layers(span, revision, values, visit)
    }

    /// `scan_counting` over the layers and the page store: merged in key
    /// order, each key decided by the first layer holding a version of it at
    /// or below `revision` (the page store yields only keys live there, and
    /// reads a key's version only when it is visited).
    fn scan_layers(
        &self,
        span: &Span,
        revision: i64,
        values: usize,
        mut visit: impl FnMut(&KeyValue) -> bool,
    ) -> Result<i64, Error> {
        let Span::Interval(start, end) = span else { unreachable!("single keys are looked up") };
        let layers: Vec<&super::Layer> =
            std::iter::once(&self.keys).chain(self.frozen.iter()).collect();
        let mut cursors: Vec<_> =
            layers.iter().map(|l| l.range(span.bounds()).peekable()).collect();
        let mut base = match &self.base {
            Some(base) => Some(base.range(start, end.as_deref(), revision).map_err(storage_error)?),
            None => None,
        };
        let next_from_base = |base: &mut Option<super::paged::PagedRange>| match base {
            Some(range) => range.next_key().map_err(storage_error),
            None => Ok(None),
        };
        let mut seen = 0usize;
        let mut base_next = next_from_base(&mut base)?;
        loop {
            let layer_min = cursors.iter_mut().filter_map(|c| c.peek().map(|(k, _)| *k)).min();
            let Some(key) = layer_min
                .filter(|key| base_next.as_ref().is_none_or(|b| b.key.as_ref() >= key.as_ref()))
            else {
                // The page store's key comes first (or the layers are done).
                let Some(next) = base_next.take() else { return Ok(seen as i64) };
                seen += 1;
                if seen <= values {
                    let range = base.as_ref().expect("a key came from it");
                    let kv = range.value(next).map_err(storage_error)?;
                    if !visit(&kv) {
                        return Ok(seen as i64);
                    }
                }
                base_next = next_from_base(&mut base)?;
                continue;
            };
            // The newest layer holding a version at or below `revision` decides.
            let mut decided: Option<Option<&KeyValue>> = None;
            for cursor in &mut cursors {
                if cursor.peek().is_some_and(|(k, _)| *k == key) {
                    let (_, head) = cursor.next().expect("peeked");
                    if decided.is_none() {
                        decided = head.at(revision).map(|version| version.kv.as_ref());
                    }
                }
            }
            let from_base = match base_next.as_ref().is_some_and(|b| b.key == *key) {
                true => {
                    let next = base_next.take();
                    base_next = next_from_base(&mut base)?;
                    next
                }
                false => None,
            };
            let seen_kv = match (decided, from_base) {
                (Some(kv), _) => kv.map(Cow::Borrowed),
                (None, Some(next)) if seen < values => {
                    let range = base.as_ref().expect("a key came from it");
                    Some(Cow::Owned(range.value(next).map_err(storage_error)?))
                }
                (None, Some(next)) => {
                    // Counted only: its version is not read.
                    drop(next);
                    seen += 1;
                    continue;
                }
                (None, None) => None,
            };
            if let Some(kv) = seen_kv {
                seen += 1;
                if seen <= values && !visit(&kv) {
                    return Ok(seen as i64);
                }
            }
        }
    }

    /// etcd's Range, answered from this snapshot; one whose keys and values
    /// pass the response limit is refused (`RequestTooLarge`) as soon as
    /// that is known.
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        self.range_within(r, Bound::Refuse(crate::limits::response_bytes_max))
    }

    /// etcd's Range; past `bound`'s bytes of keys and values (unsorted and
    /// unfiltered ranges, whose collected entries are the answer) collecting
    /// stops: `Refuse` then fails with `RequestTooLarge`, `Truncate` answers
    /// what it collected, already over the limit, for a txn (which must not
    /// fail once its writes have applied) to be refused whole before it is
    /// encoded.
    pub(super) fn range_within(
        &self,
        r: &RangeRequest,
        bound: Bound,
    ) -> Result<RangeResponse, Error> {
        let revision = self.read_revision(r.revision)?;
        let span = Span::new(&r.key, &r.range_end);
        let filtered = r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        // As etcd: fetch everything when sorting or filtering, else one extra
        // to learn whether there is more.
        let fetch_max = if r.sort_order != SortOrder::None || filtered || r.limit <= 0 {
            usize::MAX
        } else {
            r.limit as usize + 1
        };
        let mut kvs: Vec<KeyValue> = Vec::new();
        let values = if r.count_only { 0 } else { fetch_max };
        // Unsorted and unfiltered, what is collected is the answer: past the
        // response limit it can only be refused, so stop collecting there
        // (a range over the whole store holds no more than that in memory).
        let bytes_max = match bound {
            Bound::Refuse(max) | Bound::Truncate(max)
                if r.sort_order == SortOrder::None && !filtered =>
            {
                Some(max)
            }
            _ => None,
        };
        let mut collected_bytes = 0usize;
        let mut too_large = false;
        let count = self.scan_counting(&span, revision, values, |kv| {
            collected_bytes += kv.key.len() + if r.keys_only { 0 } else { kv.value.len() };
            if bytes_max.is_some_and(|max| collected_bytes > max) {
                too_large = true;
                if let Bound::Truncate(_) = bound {
                    // Kept: the answer must stay over the limit.
                    kvs.push(kv.clone());
                }
                return false;
            }
            kvs.push(kv.clone());
            true
        })?;
        if too_large {
            if let Bound::Refuse(_) = bound {
                return Err(Error::new(ErrorCode::RequestTooLarge));
            }
            return Ok(RangeResponse { kvs, more: true, count, header_revision: self.revision });
        }
        if r.count_only {
            return Ok(RangeResponse {
                kvs: Vec::new(),
                more: false,
                count,
                header_revision: self.revision,
            });
        }
        kvs.retain(|kv| {
            (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
        });
        sort(&mut kvs, r.sort_order, r.sort_target);
        let mut more = false;
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value = bytes::Bytes::new();
            }
        }
        Ok(RangeResponse { kvs, more, count, header_revision: self.revision })
    }
}

/// How much of a range's keys and values is collected (`range_within`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Bound {
    Refuse(usize),
    Truncate(usize),
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // As etcd: a target other than the key with no order means ascending.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    // Stable, and descending by comparing the other way round (not by
    // reversing an ascending sort): keys that tie stay in key order, as
    // etcd's sort.Reverse leaves them (for up to 12 results, where Go's sort
    // is an insertion sort; beyond, etcd's order of ties is unspecified).
    let descend = order == SortOrder::Descend;
    let directed =
        |ordering: std::cmp::Ordering| if descend { ordering.reverse() } else { ordering };
    match target {
        SortTarget::Key if descend => kvs.reverse(),
        SortTarget::Key => {}
        SortTarget::Version => kvs.sort_by(|a, b| directed(a.version.cmp(&b.version))),
        SortTarget::Create => {
            kvs.sort_by(|a, b| directed(a.create_revision.cmp(&b.create_revision)))
        }
        SortTarget::Mod => kvs.sort_by(|a, b| directed(a.mod_revision.cmp(&b.mod_revision))),
        SortTarget::Value => kvs.sort_by(|a, b| directed(a.value.cmp(&b.value))),
    }
}
