//! Txns and request validation, with etcd's rules: the compare path is chosen
//! against the state before the txn (nested txns too), every request on that
//! path is checked before anything changes, then the ops apply in order.

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
fn check_intervals(ops: &[RequestOp]) -> Result<(Vec<bytes::Bytes>, Vec<Span>), Error> {
    let duplicate = || Err(Error::new(ErrorCode::DuplicateKey));
    let mut deletes: Vec<Span> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(Span::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: Vec<bytes::Bytes> = Vec::new();
    for op in ops {
        let RequestOp::Txn(inner) = op else { continue };
        let (puts_then, deletes_then) = check_intervals(&inner.success)?;
        let (puts_else, deletes_else) = check_intervals(&inner.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deletes.iter().any(|d| d.contains(key)) {
                return duplicate();
            }
            puts.push(key.clone());
        }
        for key in &puts_else {
            let from_then = puts_then.contains(key);
            if (puts.contains(key) && !from_then) || deletes.iter().any(|d| d.contains(key)) {
                return duplicate();
            }
            puts.push(key.clone());
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deletes.iter().any(|d| d.contains(&p.key)) {
            return duplicate();
        }
        puts.push(p.key.clone());
    }
    Ok((puts, deletes))
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
