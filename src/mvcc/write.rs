//! Writes: put, delete-range, txn and compact, applied in log order. Every
//! change of one request shares one new revision (etcd's main revision).

use std::sync::Arc;

use bytes::Bytes;

use super::span::Span;
use super::{Snapshot, Store};
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
                let mut change = Change::new(&mut self.state);
                let response = change.put(p);
                change.finish();
                Ok(ResponseBody::Put(response))
            }
            Request::DeleteRange(d) => {
                let mut change = Change::new(&mut self.state);
                let response = change.delete(d);
                change.finish();
                Ok(ResponseBody::DeleteRange(response))
            }
            Request::Txn(t) => self.apply_txn(t).map(ResponseBody::Txn),
            Request::Compact(c) => {
                self.compact(c.revision)?;
                Ok(ResponseBody::Compact)
            }
            Request::Status => Ok(ResponseBody::Status(StatusResponse::default())),
        }
    }

    /// The checks etcd makes against the state before a put (lease, key
    /// existence for ignore_value/ignore_lease).
    pub(super) fn check_put(&self, p: &PutRequest) -> Result<(), Error> {
        if (p.ignore_value || p.ignore_lease) && !self.state.live.contains_key(&p.key) {
            return Err(Error::new(ErrorCode::KeyNotFound));
        }
        if p.lease != 0 {
            // Leases arrive with their own module; until then none exists.
            return Err(Error::new(ErrorCode::LeaseNotFound));
        }
        Ok(())
    }

    /// Removes history older than `revision`, keeping for every key the version
    /// visible at `revision`.
    pub fn compact(&mut self, revision: i64) -> Result<(), Error> {
        let state = &mut self.state;
        if revision <= state.compact_revision {
            return Err(Error::new(ErrorCode::Compacted));
        }
        if revision > state.revision {
            return Err(Error::new(ErrorCode::FutureRevision));
        }
        let mut doomed: Vec<(Bytes, i64)> = Vec::new();
        let mut group: Vec<(&(Bytes, i64), bool)> = Vec::new();
        let mut flush = |group: &mut Vec<(&(Bytes, i64), bool)>| {
            // Keep the newest entry ≤ revision if it is a live version.
            if let Some((_, newest_live)) = group.last() {
                let keep_newest = *newest_live;
                let cut = if keep_newest { group.len() - 1 } else { group.len() };
                doomed.extend(group[..cut].iter().map(|(k, _)| (*k).clone()));
            }
            group.clear();
        };
        let mut current_key: Option<&Bytes> = None;
        for (history_key, entry) in state.history.iter() {
            if current_key != Some(&history_key.0) {
                flush(&mut group);
                current_key = Some(&history_key.0);
            }
            if history_key.1 <= revision {
                group.push((history_key, entry.is_some()));
            }
        }
        flush(&mut group);
        for history_key in doomed {
            if let Some(entry) = state.history.remove(&history_key) {
                state.size_bytes -= entry_bytes(&history_key.0, &entry);
            }
        }
        state.compact_revision = revision;
        Ok(())
    }
}

fn entry_bytes(key: &Bytes, entry: &Option<Arc<KeyValue>>) -> i64 {
    match entry {
        Some(kv) => (kv.key.len() + kv.value.len()) as i64,
        None => key.len() as i64,
    }
}

/// The changes of one request, all at revision `state.revision + 1`. The
/// revision moves only if something changed (as in etcd, a delete of nothing
/// or a read-only txn leaves it).
pub(super) struct Change<'a> {
    pub(super) state: &'a mut Snapshot,
    revision: i64,
    changed: bool,
}

impl<'a> Change<'a> {
    pub(super) fn new(state: &'a mut Snapshot) -> Change<'a> {
        let revision = state.revision + 1;
        Change { state, revision, changed: false }
    }

    pub(super) fn finish(self) {
        if self.changed {
            self.state.revision = self.revision;
        }
    }

    /// Reads inside a write see the changes made so far (as etcd's txns do).
    pub(super) fn range(&self, r: &RangeRequest) -> RangeResponse {
        let mut view = self.state.clone();
        if self.changed {
            view.revision = self.revision;
        }
        view.range(r).expect("txn ranges were checked before applying")
    }

    /// A put that passed `Store::check_put`.
    pub(super) fn put(&mut self, p: &PutRequest) -> PutResponse {
        let previous = self.state.live.get(&p.key).cloned();
        let value = match (&previous, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => Bytes::copy_from_slice(&p.value),
        };
        let lease = match (&previous, p.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => p.lease,
        };
        let key = Bytes::copy_from_slice(&p.key);
        let kv = Arc::new(KeyValue {
            key: key.clone(),
            create_revision: previous.as_ref().map_or(self.revision, |prev| prev.create_revision),
            mod_revision: self.revision,
            version: previous.as_ref().map_or(1, |prev| prev.version + 1),
            value,
            lease,
        });
        self.state.size_bytes += (kv.key.len() + kv.value.len()) as i64;
        self.state.live.insert(key.clone(), kv.clone());
        if let Some(old) = self.state.history.insert((key, self.revision), Some(kv)) {
            self.state.size_bytes -= entry_bytes(&p.key, &old);
        }
        self.changed = true;
        PutResponse {
            prev_kv: if p.prev_kv { previous.map(|kv| KeyValue::clone(&kv)) } else { None },
            header_revision: self.revision,
        }
    }

    pub(super) fn delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let span = Span::new(&d.key, &d.range_end);
        let doomed: Vec<Arc<KeyValue>> = if span.is_empty() {
            Vec::new()
        } else {
            self.state.live.range(span.bounds()).map(|(_, kv)| kv.clone()).collect()
        };
        for kv in &doomed {
            self.state.live.remove(&kv.key);
            self.state.size_bytes += kv.key.len() as i64;
            self.state.history.insert((kv.key.clone(), self.revision), None);
            self.changed = true;
        }
        DeleteRangeResponse {
            header_revision: if self.changed { self.revision } else { self.state.revision },
            deleted: doomed.len() as i64,
            prev_kvs: if d.prev_kv {
                doomed.iter().map(|kv| KeyValue::clone(kv)).collect()
            } else {
                Vec::new()
            },
        }
    }
}
