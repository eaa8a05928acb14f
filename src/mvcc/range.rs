//! Reads: a range at a revision, with etcd's limit, count, sort and filters.

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
        if span.is_empty() {
            return Ok(());
        }
        if let Span::Single(key) = span {
            if let Some(kv) = self.visible(key, revision)? {
                visit(&kv);
            }
            return Ok(());
        }
        if !self.is_layered() {
            for (_, head) in self.keys.range(span.bounds()) {
                if let Some(kv) = head.at(revision).and_then(|v| v.kv.as_ref()) {
                    if !visit(kv) {
                        break;
                    }
                }
            }
            return Ok(());
        }
        self.scan_layers(span, revision, visit)
    }

    /// `scan` over the layers and the page store: merged in key order, each
    /// key decided by the first layer holding a version of it at or below
    /// `revision` (the page store yields only keys live there).
    fn scan_layers(
        &self,
        span: &Span,
        revision: i64,
        mut visit: impl FnMut(&KeyValue) -> bool,
    ) -> Result<(), Error> {
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
            Some(range) => range.next_kv().map_err(storage_error),
            None => Ok(None),
        };
        let mut base_next = next_from_base(&mut base)?;
        loop {
            let layer_min = cursors.iter_mut().filter_map(|c| c.peek().map(|(k, _)| *k)).min();
            let Some(key) = layer_min
                .filter(|key| base_next.as_ref().is_none_or(|b| b.key.as_ref() >= key.as_ref()))
            else {
                // The page store's key comes first (or the layers are done).
                let Some(kv) = base_next.take() else { return Ok(()) };
                base_next = next_from_base(&mut base)?;
                if !visit(&kv) {
                    return Ok(());
                }
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
                    let kv = base_next.take();
                    base_next = next_from_base(&mut base)?;
                    kv
                }
                false => None,
            };
            let seen = match decided {
                Some(kv) => kv,
                None => from_base.as_ref(),
            };
            if let Some(kv) = seen {
                if !visit(kv) {
                    return Ok(());
                }
            }
        }
    }

    /// etcd's Range, answered from this snapshot.
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
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
        let mut count = 0i64;
        let mut kvs: Vec<KeyValue> = Vec::new();
        self.scan(&span, revision, |kv| {
            count += 1;
            if !r.count_only && kvs.len() < fetch_max {
                kvs.push(kv.clone());
            }
            true
        })?;
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

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // As etcd: a target other than the key with no order means ascending.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    match target {
        SortTarget::Key => {}
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}
