//! Writes: put, delete-range, txn and compact, applied in log order. Every
//! change of one request shares one new revision (etcd's main revision).

use std::sync::Arc;

use bytes::Bytes;

use super::range::Bound;
use super::span::Span;
use super::{HistoryChange, Snapshot, Store, Version};
use crate::error::{Error, ErrorCode};
use crate::types::*;

impl Store {
    /// Applies one request (a committed log entry, or a read) and answers it.
    /// Deterministic: the same requests in the same order give the same state.
    pub fn apply(&mut self, request: &Request) -> Result<ResponseBody, Error> {
        match request {
            Request::Range(r) => self.state.range(r).map(ResponseBody::Range),
            Request::Put(p) => {
                self.check_put(p)?;
                let mut change = Change::new(&mut self.state, self.log.as_mut());
                let response = change.put(p)?;
                change.finish();
                Ok(ResponseBody::Put(response))
            }
            Request::DeleteRange(d) => {
                let mut change = Change::new(&mut self.state, self.log.as_mut());
                let response = change.delete(d)?;
                change.finish();
                Ok(ResponseBody::DeleteRange(response))
            }
            Request::Txn(t) => self.apply_txn(t).map(ResponseBody::Txn),
            Request::Compact(c) => {
                self.compact(c.revision)?;
                Ok(ResponseBody::Compact)
            }
            Request::Status => Ok(ResponseBody::Status(StatusResponse::default())),
            Request::LeaseGrant(g) => self.lease_grant(g),
            Request::LeaseRevoke(id) => self.lease_revoke(*id),
            Request::LeaseCheckpoint(c) => Ok(self.lease_checkpoint(c)),
            // Served by the member, never applied.
            Request::Snapshot
            | Request::WatchCreate(_)
            | Request::WatchCancel(_)
            | Request::WatchProgress
            | Request::LeaseKeepAlive(_)
            | Request::LeaseTimeToLive(_)
            | Request::LeaseLeases => Err(Error::new(ErrorCode::UnknownOperation)),
        }
    }

    /// The checks etcd makes against the state before a put (lease, key
    /// existence for ignore_value/ignore_lease).
    pub(super) fn check_put(&self, p: &PutRequest) -> Result<(), Error> {
        if (p.ignore_value || p.ignore_lease)
            && self.state.visible_without_value(&p.key, self.state.revision)?.is_none()
        {
            return Err(Error::new(ErrorCode::KeyNotFound));
        }
        if p.lease != 0 && !self.state.leases.contains(p.lease) {
            return Err(Error::new(ErrorCode::LeaseNotFound));
        }
        Ok(())
    }

    /// Removes history older than `revision`, keeping for every key the version
    /// visible at `revision` (unless it is a delete).
    pub fn compact(&mut self, revision: i64) -> Result<(), Error> {
        let state = &mut self.state;
        if revision <= state.compact_revision {
            return Err(Error::new(ErrorCode::Compacted));
        }
        if revision > state.revision {
            return Err(Error::new(ErrorCode::FutureRevision));
        }
        if state.is_layered() {
            // Old versions in the layers and the page store go when the next
            // checkpoint folds this compaction in; reads below it are refused
            // from now on, and reads above it never needed them.
            state.compact_revision = revision;
            if let Some(log) = &mut self.log {
                log.push(HistoryChange::Compact(revision));
            }
            return Ok(());
        }
        let mut rewritten: Vec<(Bytes, Option<Arc<Version>>)> = Vec::new();
        for (key, head) in state.keys.iter() {
            let Some(visible) = head.at(revision) else { continue };
            let drop_visible = visible.kv.is_none();
            if visible.previous.is_none() && !drop_visible {
                continue;
            }
            let (chain, dropped) = truncate_chain(key, head, revision, drop_visible);
            state.size_bytes -= dropped;
            rewritten.push((key.clone(), chain));
        }
        for (key, chain) in rewritten {
            match chain {
                Some(chain) => state.keys.insert(key, chain),
                None => state.keys.remove(&key),
            };
        }
        state.compact_revision = revision;
        if let Some(log) = &mut self.log {
            log.push(HistoryChange::Compact(revision));
        }
        Ok(())
    }
}

/// A copy of the chain from `head` that ends at the version visible at
/// `revision` (or just before it when that version is a delete); returns it
/// (None when nothing is left) and the bytes dropped.
fn truncate_chain(
    key: &[u8],
    head: &Arc<Version>,
    revision: i64,
    drop_visible: bool,
) -> (Option<Arc<Version>>, i64) {
    let mut kept: Vec<&Arc<Version>> = Vec::new();
    let mut dropped = 0;
    let mut cut = false;
    for version in std::iter::successors(Some(head), |v| v.previous.as_ref()) {
        if cut {
            dropped += version.bytes(key);
        } else if version.revision <= revision {
            cut = true;
            if drop_visible {
                dropped += version.bytes(key);
            } else {
                kept.push(version);
            }
        } else {
            kept.push(version);
        }
    }
    let mut chain: Option<Arc<Version>> = None;
    for version in kept.into_iter().rev() {
        chain = Some(Arc::new(Version {
            kv: version.kv.clone(),
            revision: version.revision,
            sub: version.sub,
            previous: chain,
        }));
    }
    (chain, dropped)
}

/// The changes of one request, all at revision `state.revision + 1`. The
/// revision moves only if something changed (as in etcd, a delete of nothing
/// or a read-only txn leaves it).
pub(super) struct Change<'a> {
    pub(super) state: &'a mut Snapshot,
    revision: i64,
    changed: bool,
    log: Option<&'a mut Vec<HistoryChange>>,
    /// Bytes of keys and values the ranges of this request may still
    /// collect: past it the answer is refused as too large anyway, so the
    /// ranges stop collecting (memory and time stay bounded).
    range_budget: usize,
    /// The sub-revision of the next version written.
    sub: u32,
}

impl<'a> Change<'a> {
    pub(super) fn new(
        state: &'a mut Snapshot,
        log: Option<&'a mut Vec<HistoryChange>>,
    ) -> Change<'a> {
        let revision = state.revision + 1;
        let range_budget = crate::limits::response_bytes_max;
        Change { state, revision, changed: false, log, range_budget, sub: 0 }
    }

    fn record(&mut self, key: &Bytes, kv: Option<&KeyValue>) {
        if let Some(log) = &mut self.log {
            let (key, revision, kv) = (key.clone(), self.revision, kv.cloned());
            log.push(HistoryChange::Version { key, revision, kv });
        }
    }

    fn next_sub(&mut self) -> u32 {
        self.sub += 1;
        self.sub - 1
    }

    pub(super) fn finish(self) {
        if self.changed {
            self.state.revision = self.revision;
        }
    }

    /// Reads inside a write see the changes made so far (as etcd's txns do).
    /// Fails only when the page store cannot be read.
    /// Past the request's range budget it answers what it collected,
    /// already over the response limit (`Bound::Truncate`).
    pub(super) fn range(&mut self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        let mut view = self.state.clone();
        if self.changed {
            view.revision = self.revision;
        }
        let response =
            view.range_within(r, Bound::Truncate(self.range_budget)).map_err(|e| match e.code {
                ErrorCode::Corrupt => e,
                _ => panic!("txn ranges were checked before applying: {e:?}"),
            })?;
        let collected: usize = response
            .kvs
            .iter()
            .map(|kv| kv.key.len() + if r.keys_only { 0 } else { kv.value.len() })
            .sum();
        self.range_budget = self.range_budget.saturating_sub(collected);
        Ok(response)
    }

    /// A put that passed `Store::check_put`.
    pub(super) fn put(&mut self, p: &PutRequest) -> Result<PutResponse, Error> {
        let head = self.state.keys.get(&p.key).cloned();
        let previous = if put_reads_value(p) {
            self.state.visible(&p.key, self.revision)?
        } else {
            self.state.visible_without_value(&p.key, self.revision)?
        };
        let previous = previous.as_ref();
        let value = match (previous, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => Bytes::copy_from_slice(&p.value),
        };
        let lease = match (previous, p.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => p.lease,
        };
        let key = previous.map_or_else(|| Bytes::copy_from_slice(&p.key), |prev| prev.key.clone());
        let kv = KeyValue {
            key: key.clone(),
            create_revision: previous.map_or(self.revision, |prev| prev.create_revision),
            mod_revision: self.revision,
            version: previous.map_or(1, |prev| prev.version + 1),
            value,
            lease,
        };
        let prev_kv = if p.prev_kv { previous.cloned() } else { None };
        if previous.is_none() {
            self.state.live_keys += 1;
        }
        match previous.map_or(0, |prev| prev.lease) {
            old if old == lease => {}
            0 => {}
            old => self.state.leases.detach(old, &key),
        }
        if lease != 0 {
            self.state.leases.attach(lease, &key);
        }
        self.record(&key, Some(&kv));
        let sub = self.next_sub();
        let version =
            Arc::new(Version { kv: Some(kv), revision: self.revision, sub, previous: head });
        self.state.size_bytes += version.bytes(&key);
        self.state.keys.insert(key, version);
        self.changed = true;
        Ok(PutResponse { prev_kv, header_revision: self.revision })
    }

    pub(super) fn delete(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, Error> {
        let span = Span::new(&d.key, &d.range_end);
        // Every version is at or below this change's revision, so this scans
        // the newest versions, this change's own included.
        let mut doomed: Vec<KeyValue> = Vec::new();
        self.state.scan(&span, self.revision, |kv| {
            doomed.push(kv.clone());
            true
        })?;
        let mut prev_kvs = Vec::new();
        for kv in &doomed {
            // The chain in memory, if any: older versions may be below it.
            let head = self.state.keys.get(&kv.key).cloned();
            self.record(&kv.key, None);
            if kv.lease != 0 {
                self.state.leases.detach(kv.lease, &kv.key);
            }
            let sub = self.next_sub();
            let tombstone =
                Arc::new(Version { kv: None, revision: self.revision, sub, previous: head });
            self.state.size_bytes += tombstone.bytes(&kv.key);
            self.state.keys.insert(kv.key.clone(), tombstone);
            self.state.live_keys -= 1;
            self.changed = true;
        }
        if d.prev_kv {
            prev_kvs = doomed.to_vec();
        }
        Ok(DeleteRangeResponse {
            header_revision: if self.changed { self.revision } else { self.state.revision },
            deleted: doomed.len() as i64,
            prev_kvs,
        })
    }
}

/// Whether a put needs the previous version's value (for prev_kv and
/// ignore_value): without them a key in the page store costs its key entry,
/// not its record (`Snapshot::visible_without_value`, `Store::prefetch`).
pub(super) fn put_reads_value(p: &PutRequest) -> bool {
    p.prev_kv || p.ignore_value
}
