//! Txns and request validation, with etcd's rules: the compare path is chosen
//! against the state before the txn (nested txns too), every request on that
//! path is checked before anything changes, then the ops apply in order.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use bytes::Bytes;

use super::span::Span;
use super::write::Change;
use super::{Snapshot, Store};
use crate::error::{Error, ErrorCode};
use crate::limits;
use crate::types::*;

/// The checks etcd makes at its API layer, before a request is proposed:
/// empty keys, sizes, flag combinations, txn op counts and duplicate keys.
pub fn validate_request(request: &Request) -> Result<(), Error> {
    match request {
        Request::Range(r) => validate_range(r),
        Request::Put(p) => validate_put(p),
        Request::DeleteRange(d) => validate_delete(d),
        Request::Txn(t) => {
            validate_txn(t, limits::txn_ops_max)?;
            check_intervals(&t.success).and(check_intervals(&t.failure)).map(|_| ())
        }
        Request::Compact(_) | Request::Status | Request::Snapshot => Ok(()),
        Request::WatchCreate(w) => {
            if w.key.len() > limits::key_bytes_max || w.range_end.len() > limits::key_bytes_max {
                return Err(Error::new(ErrorCode::RequestTooLarge));
            }
            Ok(())
        }
        Request::WatchCancel(_) | Request::WatchProgress => Ok(()),
        Request::LeaseGrant(_)
        | Request::LeaseRevoke(_)
        | Request::LeaseKeepAlive(_)
        | Request::LeaseTimeToLive(_)
        | Request::LeaseLeases
        | Request::LeaseCheckpoint(_) => Ok(()),
    }
}

fn validate_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::new(ErrorCode::EmptyKey));
    }
    if key.len() > limits::key_bytes_max {
        return Err(Error::new(ErrorCode::RequestTooLarge));
    }
    Ok(())
}

fn validate_range(r: &RangeRequest) -> Result<(), Error> {
    validate_key(&r.key)
}

fn validate_put(p: &PutRequest) -> Result<(), Error> {
    validate_key(&p.key)?;
    if p.value.len() > limits::value_bytes_max {
        return Err(Error::new(ErrorCode::RequestTooLarge));
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::new(ErrorCode::ValueProvided));
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::new(ErrorCode::LeaseProvided));
    }
    Ok(())
}

fn validate_delete(d: &DeleteRangeRequest) -> Result<(), Error> {
    validate_key(&d.key)
}

/// etcd's checkTxnRequest: nested txns get the budget left by their parent.
fn validate_txn(t: &TxnRequest, ops_max: usize) -> Result<(), Error> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > ops_max {
        return Err(Error::new(ErrorCode::TooManyOps));
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::new(ErrorCode::EmptyKey));
    }
    for op in t.success.iter().chain(t.failure.iter()) {
        match op {
            RequestOp::Range(r) => validate_range(r)?,
            RequestOp::Put(p) => validate_put(p)?,
            RequestOp::DeleteRange(d) => validate_delete(d)?,
            RequestOp::Txn(inner) => validate_txn(inner, ops_max - ops)?,
        }
    }
    Ok(())
}

/// etcd's checkIntervals: within one branch, no key may be put twice, and no
/// put may fall inside a delete; deletes may overlap each other. The two
/// branches of a nested txn exclude each other, so they may share puts.
/// Stricter than etcd 3.4 in one case: a put in one nested txn and a delete
/// covering it in a later one (etcd #16380 lets that through, and then
/// writes two versions of the key at one revision). Puts are a hash set and
/// deletes merged intervals: a request of thousands of ops is checked in
/// O(n log n), not O(n²).
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Bytes>, Covered), Error> {
    let duplicate = || Err(Error::new(ErrorCode::DuplicateKey));
    let mut deletes = Covered::default();
    for op in ops {
        if let RequestOp::DeleteRange(d) = op {
            deletes.insert(&Span::new(&d.key, &d.range_end));
        }
    }
    let mut puts: HashSet<Bytes> = HashSet::new();
    for op in ops {
        let RequestOp::Txn(inner) = op else { continue };
        let (puts_then, deletes_then) = check_intervals(&inner.success)?;
        let (puts_else, deletes_else) = check_intervals(&inner.failure)?;
        if puts.iter().any(|key| deletes_then.contains(key) || deletes_else.contains(key)) {
            return duplicate();
        }
        for key in &puts_then {
            if puts.contains(key) || deletes.contains(key) {
                return duplicate();
            }
        }
        for key in &puts_else {
            let from_then = puts_then.contains(key);
            if (puts.contains(key) && !from_then) || deletes.contains(key) {
                return duplicate();
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if deletes.contains(&p.key) || !puts.insert(p.key.clone()) {
            return duplicate();
        }
    }
    Ok((puts, deletes))
}

/// The keys a set of spans covers, as disjoint [start, end) intervals by
/// start (end None: every key from start on).
#[derive(Default)]
struct Covered(BTreeMap<Vec<u8>, Option<Vec<u8>>>);

impl Covered {
    fn insert(&mut self, span: &Span) {
        let (mut start, mut end) = match span {
            Span::Single(key) => {
                // [key, key + "\0"): the key alone.
                let mut next = key.to_vec();
                next.push(0);
                (key.to_vec(), Some(next))
            }
            _ if span.is_empty() => return,
            Span::Interval(start, end) => (start.to_vec(), end.as_ref().map(|e| e.to_vec())),
        };
        let reaches =
            |end: &Option<Vec<u8>>, key: &[u8]| end.as_ref().is_none_or(|e| e.as_slice() >= key);
        // An interval before `start` that reaches it is merged in.
        if let Some((before, before_end)) = self.0.range(..=start.clone()).next_back() {
            if reaches(before_end, &start) {
                start = before.clone();
                end = max_end(end, before_end.clone());
            }
        }
        // So is every interval starting within the new one.
        loop {
            let next = self.0.range(start.clone()..).next().map(|(k, v)| (k.clone(), v.clone()));
            let Some((next_start, next_end)) = next else { break };
            if !reaches(&end, &next_start) {
                break;
            }
            self.0.remove(&next_start);
            end = max_end(end, next_end);
        }
        self.0.insert(start, end);
    }

    fn extend(&mut self, other: Covered) {
        for (start, end) in other.0 {
            let span = Span::Interval(Bytes::from(start), end.map(Bytes::from));
            self.insert(&span);
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        let mut before = self.0.range::<[u8], _>((Bound::Unbounded, Bound::Included(key)));
        before.next_back().is_some_and(|(_, end)| end.as_ref().is_none_or(|e| key < e.as_slice()))
    }
}

/// The later of two interval ends (None: unbounded).
fn max_end(a: Option<Vec<u8>>, b: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// One compare against the state, with etcd's rule for keys that do not exist:
/// a value compare fails; other targets compare against zero.
fn compare_holds(state: &Snapshot, c: &Compare) -> Result<bool, Error> {
    let span = Span::new(&c.key, &c.range_end);
    let mut any = false;
    let mut all = true;
    state.scan(&span, state.revision, |kv| {
        any = true;
        all = compare_kv(c, Some(kv));
        all
    })?;
    if !any {
        return Ok(c.target != CompareTarget::Value && compare_kv(c, None));
    }
    Ok(all)
}

fn compare_kv(c: &Compare, kv: Option<&KeyValue>) -> bool {
    let ordering = match c.target {
        CompareTarget::Value => kv.map_or(&[][..], |kv| &kv.value[..]).cmp(&c.value[..]),
        CompareTarget::Version => kv.map_or(0, |kv| kv.version).cmp(&c.number),
        CompareTarget::Create => kv.map_or(0, |kv| kv.create_revision).cmp(&c.number),
        CompareTarget::Mod => kv.map_or(0, |kv| kv.mod_revision).cmp(&c.number),
        CompareTarget::Lease => kv.map_or(0, |kv| kv.lease).cmp(&c.number),
    };
    match c.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// The branch each txn on the path takes, in the order they are applied.
fn txn_path(state: &Snapshot, t: &TxnRequest, path: &mut Vec<bool>) -> Result<(), Error> {
    let mut succeeded = true;
    for c in &t.compare {
        if !compare_holds(state, c)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in if succeeded { &t.success } else { &t.failure } {
        if let RequestOp::Txn(inner) = op {
            txn_path(state, inner, path)?;
        }
    }
    Ok(())
}

impl Store {
    pub(super) fn apply_txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, Error> {
        let mut path = Vec::new();
        txn_path(&self.state, t, &mut path)?;
        self.check_txn(t, &path, &mut 0)?;
        let mut change = Change::new(&mut self.state, self.log.as_mut());
        let mut response = apply_on_path(&mut change, t, &path, &mut 0)?;
        change.finish();
        response.header_revision = self.state.revision;
        Ok(response)
    }

    fn check_txn(&self, t: &TxnRequest, path: &[bool], at: &mut usize) -> Result<(), Error> {
        let succeeded = path[*at];
        *at += 1;
        for op in if succeeded { &t.success } else { &t.failure } {
            match op {
                RequestOp::Range(r) => self.state.read_revision(r.revision).map(|_| ())?,
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(inner) => self.check_txn(inner, path, at)?,
            }
        }
        Ok(())
    }
}

fn apply_on_path(
    change: &mut Change<'_>,
    t: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse, Error> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            RequestOp::Range(r) => ResponseOp::Range(change.range(r)?),
            RequestOp::Put(p) => ResponseOp::Put(change.put(p)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(change.delete(d)?),
            RequestOp::Txn(inner) => ResponseOp::Txn(apply_on_path(change, inner, path, at)?),
        });
    }
    // etcd leaves the header of a nested txn's response empty.
    Ok(TxnResponse { succeeded, responses, header_revision: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(k: u8) -> Bytes {
        Bytes::from(vec![b'a' + k % 8; 1 + (k / 8) as usize % 2])
    }

    proptest! {
        /// Merged intervals answer as the spans they were made of.
        #[test]
        fn covered_keys_are_those_some_span_holds(
            spans in proptest::collection::vec((0u8..16, 0u8..17), 0..12),
            probes in proptest::collection::vec(0u8..16, 1..20),
        ) {
            let spans: Vec<Span> = spans
                .iter()
                .map(|(start, end)| match end {
                    16 => Span::new(&key(*start), &Bytes::new()),
                    _ => Span::new(&key(*start), &key(*end)),
                })
                .collect();
            let mut covered = Covered::default();
            let (first, second) = spans.split_at(spans.len() / 2);
            first.iter().for_each(|s| covered.insert(s));
            let mut other = Covered::default();
            second.iter().for_each(|s| other.insert(s));
            covered.extend(other);
            covered.insert(&Span::Interval(key(15), None));
            for probe in probes.iter().map(|p| key(*p)).chain([Bytes::from_static(b"zz")]) {
                let model = spans.iter().any(|s| s.contains(&probe))
                    || Span::Interval(key(15), None).contains(&probe);
                prop_assert_eq!(covered.contains(&probe), model, "{:?}", probe);
            }
        }
    }
}
