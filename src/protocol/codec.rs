//! Conversion between the domain types (`crate::types`) and flatbuffers bodies.
//!
//! Decoding verifies the buffer first (bounded depth, table count and size), then
//! copies nothing: keys and values are `Bytes` slices of the received frame.
//! Unknown enum values and union members are operating errors, never panics.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use super::wire;
use crate::error::{Error, ErrorCode};
use crate::limits;
use crate::types::*;

type Builder<'a> = FlatBufferBuilder<'a>;
type Off<T> = WIPOffset<T>;
type Fbytes<'a> = WIPOffset<Vector<'a, u8>>;

/// Responses are bounded by their frame size only (a range may hold millions
/// of key-values).
fn response_verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: 4 * limits::txn_depth_max + 16,
        max_tables: limits::response_bytes_max,
        max_apparent_size: 2 * limits::response_bytes_max,
        ignore_missing_null_terminator: false,
    }
}

fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: 4 * limits::txn_depth_max + 16,
        max_tables: limits::request_tables_max,
        max_apparent_size: 2 * limits::frame_bytes_max,
        ignore_missing_null_terminator: false,
    }
}

fn malformed(what: impl std::fmt::Display) -> Error {
    Error::with_message(ErrorCode::MalformedRequest, format!("corekv: malformed request: {what}"))
}

/// A zero-copy view of `bytes` inside `frame` (which must contain it).
fn slice(frame: &Bytes, bytes: Option<Vector<'_, u8>>) -> Bytes {
    match bytes {
        Some(v) if !v.is_empty() => frame.slice_ref(v.bytes()),
        _ => Bytes::new(),
    }
}

// ---------------------------------------------------------------- requests

/// Decodes a request body. `frame` is the body as received; keys and values
/// in the result share its memory.
pub fn decode_request(frame: &Bytes) -> Result<Request, Error> {
    let request = flatbuffers::root_with_opts::<wire::Request>(&verifier_options(), frame)
        .map_err(malformed)?;
    let body = request.body_type();
    let unknown = || Error::new(ErrorCode::UnknownOperation);
    Ok(match body {
        wire::RequestBody::RangeRequest => Request::Range(decode_range(
            frame,
            request.body_as_range_request().ok_or_else(unknown)?,
        )?),
        wire::RequestBody::PutRequest => {
            Request::Put(decode_put(frame, request.body_as_put_request().ok_or_else(unknown)?))
        }
        wire::RequestBody::DeleteRangeRequest => Request::DeleteRange(decode_delete(
            frame,
            request.body_as_delete_range_request().ok_or_else(unknown)?,
        )),
        wire::RequestBody::TxnRequest => {
            Request::Txn(decode_txn(frame, request.body_as_txn_request().ok_or_else(unknown)?, 1)?)
        }
        wire::RequestBody::CompactRequest => {
            let c = request.body_as_compact_request().ok_or_else(unknown)?;
            Request::Compact(CompactRequest { revision: c.revision(), physical: c.physical() })
        }
        wire::RequestBody::StatusRequest => Request::Status,
        wire::RequestBody::SnapshotRequest => Request::Snapshot,
        wire::RequestBody::WatchCreateRequest => {
            let w = request.body_as_watch_create_request().ok_or_else(unknown)?;
            let filters: Vec<wire::FilterType> =
                w.filters().map(|f| f.iter().collect()).unwrap_or_default();
            if let Some(other) = filters
                .iter()
                .find(|f| !matches!(**f, wire::FilterType::NoPut | wire::FilterType::NoDelete))
            {
                return Err(malformed(format!("unknown watch filter {}", other.0)));
            }
            Request::WatchCreate(WatchCreateRequest {
                key: slice(frame, w.key()),
                range_end: slice(frame, w.range_end()),
                start_revision: w.start_revision(),
                progress_notify: w.progress_notify(),
                no_put: filters.contains(&wire::FilterType::NoPut),
                no_delete: filters.contains(&wire::FilterType::NoDelete),
                prev_kv: w.prev_kv(),
                watch_id: w.watch_id(),
                fragment: w.fragment(),
            })
        }
        wire::RequestBody::WatchCancelRequest => Request::WatchCancel(
            request.body_as_watch_cancel_request().ok_or_else(unknown)?.watch_id(),
        ),
        wire::RequestBody::WatchProgressRequest => Request::WatchProgress,
        wire::RequestBody::LeaseGrantRequest => {
            let g = request.body_as_lease_grant_request().ok_or_else(unknown)?;
            Request::LeaseGrant(LeaseGrantRequest { ttl: g.ttl(), id: g.id() })
        }
        wire::RequestBody::LeaseRevokeRequest => {
            Request::LeaseRevoke(request.body_as_lease_revoke_request().ok_or_else(unknown)?.id())
        }
        wire::RequestBody::LeaseKeepAliveRequest => Request::LeaseKeepAlive(
            request.body_as_lease_keep_alive_request().ok_or_else(unknown)?.id(),
        ),
        wire::RequestBody::LeaseTimeToLiveRequest => {
            let t = request.body_as_lease_time_to_live_request().ok_or_else(unknown)?;
            Request::LeaseTimeToLive(LeaseTimeToLiveRequest { id: t.id(), keys: t.keys() })
        }
        wire::RequestBody::LeaseLeasesRequest => Request::LeaseLeases,
        wire::RequestBody::LeaseCheckpointRequest => {
            let c = request.body_as_lease_checkpoint_request().ok_or_else(unknown)?;
            let deadlines = c
                .deadlines()
                .map(|d| d.iter().map(|d| (d.id(), d.expiry_ms())).collect())
                .unwrap_or_default();
            Request::LeaseCheckpoint(LeaseCheckpointRequest { clock_ms: c.clock_ms(), deadlines })
        }
        _ => return Err(unknown()),
    })
}

fn decode_range(frame: &Bytes, r: wire::RangeRequest<'_>) -> Result<RangeRequest, Error> {
    let sort_order = match r.sort_order() {
        wire::SortOrder::None => SortOrder::None,
        wire::SortOrder::Ascend => SortOrder::Ascend,
        wire::SortOrder::Descend => SortOrder::Descend,
        _ => return Err(Error::new(ErrorCode::InvalidSortOption)),
    };
    let sort_target = match r.sort_target() {
        wire::SortTarget::Key => SortTarget::Key,
        wire::SortTarget::Version => SortTarget::Version,
        wire::SortTarget::Create => SortTarget::Create,
        wire::SortTarget::Mod => SortTarget::Mod,
        wire::SortTarget::Value => SortTarget::Value,
        _ => return Err(Error::new(ErrorCode::InvalidSortOption)),
    };
    Ok(RangeRequest {
        key: slice(frame, r.key()),
        range_end: slice(frame, r.range_end()),
        limit: r.limit(),
        revision: r.revision(),
        sort_order,
        sort_target,
        serializable: r.serializable(),
        keys_only: r.keys_only(),
        count_only: r.count_only(),
        min_mod_revision: r.min_mod_revision(),
        max_mod_revision: r.max_mod_revision(),
        min_create_revision: r.min_create_revision(),
        max_create_revision: r.max_create_revision(),
    })
}

fn decode_put(frame: &Bytes, p: wire::PutRequest<'_>) -> PutRequest {
    PutRequest {
        key: slice(frame, p.key()),
        value: slice(frame, p.value()),
        lease: p.lease(),
        prev_kv: p.prev_kv(),
        ignore_value: p.ignore_value(),
        ignore_lease: p.ignore_lease(),
    }
}

fn decode_delete(frame: &Bytes, d: wire::DeleteRangeRequest<'_>) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: slice(frame, d.key()),
        range_end: slice(frame, d.range_end()),
        prev_kv: d.prev_kv(),
    }
}

fn decode_compare(frame: &Bytes, c: wire::Compare<'_>) -> Result<Compare, Error> {
    let result = match c.result() {
        wire::CompareResult::Equal => CompareResult::Equal,
        wire::CompareResult::Greater => CompareResult::Greater,
        wire::CompareResult::Less => CompareResult::Less,
        wire::CompareResult::NotEqual => CompareResult::NotEqual,
        other => return Err(malformed(format!("unknown compare result {}", other.0))),
    };
    let target = match c.target() {
        wire::CompareTarget::Version => CompareTarget::Version,
        wire::CompareTarget::Create => CompareTarget::Create,
        wire::CompareTarget::Mod => CompareTarget::Mod,
        wire::CompareTarget::Value => CompareTarget::Value,
        wire::CompareTarget::Lease => CompareTarget::Lease,
        other => return Err(malformed(format!("unknown compare target {}", other.0))),
    };
    Ok(Compare {
        result,
        target,
        key: slice(frame, c.key()),
        range_end: slice(frame, c.range_end()),
        number: c.number(),
        value: slice(frame, c.value()),
    })
}

fn decode_ops(
    frame: &Bytes,
    ops: Option<Vector<'_, ForwardsUOffset<wire::RequestOp<'_>>>>,
    depth: usize,
) -> Result<Vec<RequestOp>, Error> {
    let Some(ops) = ops else { return Ok(Vec::new()) };
    if ops.len() > limits::txn_ops_max {
        return Err(Error::new(ErrorCode::TooManyOps));
    }
    let unknown = || Error::new(ErrorCode::UnknownOperation);
    ops.iter()
        .map(|op| {
            Ok(match op.op_type() {
                wire::Op::RangeRequest => RequestOp::Range(decode_range(
                    frame,
                    op.op_as_range_request().ok_or_else(unknown)?,
                )?),
                wire::Op::PutRequest => {
                    RequestOp::Put(decode_put(frame, op.op_as_put_request().ok_or_else(unknown)?))
                }
                wire::Op::DeleteRangeRequest => RequestOp::DeleteRange(decode_delete(
                    frame,
                    op.op_as_delete_range_request().ok_or_else(unknown)?,
                )),
                wire::Op::TxnRequest => RequestOp::Txn(decode_txn(
                    frame,
                    op.op_as_txn_request().ok_or_else(unknown)?,
                    depth + 1,
                )?),
                _ => return Err(unknown()),
            })
        })
        .collect()
}

fn decode_txn(frame: &Bytes, t: wire::TxnRequest<'_>, depth: usize) -> Result<TxnRequest, Error> {
    if depth > limits::txn_depth_max {
        return Err(malformed(format!("txns nested deeper than {}", limits::txn_depth_max)));
    }
    let compare = match t.compare() {
        Some(list) if list.len() > limits::txn_ops_max => {
            return Err(Error::new(ErrorCode::TooManyOps))
        }
        Some(list) => list.iter().map(|c| decode_compare(frame, c)).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(TxnRequest {
        compare,
        success: decode_ops(frame, t.success(), depth)?,
        failure: decode_ops(frame, t.failure(), depth)?,
    })
}

/// Encodes a request body into `fbb` (which is reset first) and returns it.
pub fn encode_request<'b>(fbb: &'b mut Builder<'static>, request: &Request) -> &'b [u8] {
    fbb.reset();
    let (body_type, body) = match request {
        Request::Range(r) => {
            (wire::RequestBody::RangeRequest, build_range(fbb, r).as_union_value())
        }
        Request::Put(p) => (wire::RequestBody::PutRequest, build_put(fbb, p).as_union_value()),
        Request::DeleteRange(d) => {
            (wire::RequestBody::DeleteRangeRequest, build_delete(fbb, d).as_union_value())
        }
        Request::Txn(t) => (wire::RequestBody::TxnRequest, build_txn(fbb, t).as_union_value()),
        Request::Compact(c) => {
            let args = wire::CompactRequestArgs { revision: c.revision, physical: c.physical };
            (
                wire::RequestBody::CompactRequest,
                wire::CompactRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::Status => (
            wire::RequestBody::StatusRequest,
            wire::StatusRequest::create(fbb, &wire::StatusRequestArgs {}).as_union_value(),
        ),
        Request::Snapshot => (
            wire::RequestBody::SnapshotRequest,
            wire::SnapshotRequest::create(fbb, &wire::SnapshotRequestArgs {}).as_union_value(),
        ),
        Request::WatchCreate(w) => {
            let key = bytes_of(fbb, &w.key);
            let range_end = bytes_of(fbb, &w.range_end);
            let mut filters = Vec::new();
            if w.no_put {
                filters.push(wire::FilterType::NoPut);
            }
            if w.no_delete {
                filters.push(wire::FilterType::NoDelete);
            }
            let filters = (!filters.is_empty()).then(|| fbb.create_vector(&filters));
            let args = wire::WatchCreateRequestArgs {
                key,
                range_end,
                start_revision: w.start_revision,
                progress_notify: w.progress_notify,
                filters,
                prev_kv: w.prev_kv,
                watch_id: w.watch_id,
                fragment: w.fragment,
            };
            (
                wire::RequestBody::WatchCreateRequest,
                wire::WatchCreateRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::WatchCancel(watch_id) => {
            let args = wire::WatchCancelRequestArgs { watch_id: *watch_id };
            (
                wire::RequestBody::WatchCancelRequest,
                wire::WatchCancelRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::WatchProgress => (
            wire::RequestBody::WatchProgressRequest,
            wire::WatchProgressRequest::create(fbb, &wire::WatchProgressRequestArgs {})
                .as_union_value(),
        ),
        Request::LeaseGrant(g) => {
            let args = wire::LeaseGrantRequestArgs { ttl: g.ttl, id: g.id };
            (
                wire::RequestBody::LeaseGrantRequest,
                wire::LeaseGrantRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::LeaseRevoke(id) => {
            let args = wire::LeaseRevokeRequestArgs { id: *id };
            (
                wire::RequestBody::LeaseRevokeRequest,
                wire::LeaseRevokeRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::LeaseKeepAlive(id) => {
            let args = wire::LeaseKeepAliveRequestArgs { id: *id };
            (
                wire::RequestBody::LeaseKeepAliveRequest,
                wire::LeaseKeepAliveRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::LeaseTimeToLive(t) => {
            let args = wire::LeaseTimeToLiveRequestArgs { id: t.id, keys: t.keys };
            (
                wire::RequestBody::LeaseTimeToLiveRequest,
                wire::LeaseTimeToLiveRequest::create(fbb, &args).as_union_value(),
            )
        }
        Request::LeaseLeases => (
            wire::RequestBody::LeaseLeasesRequest,
            wire::LeaseLeasesRequest::create(fbb, &wire::LeaseLeasesRequestArgs {})
                .as_union_value(),
        ),
        Request::LeaseCheckpoint(c) => {
            let deadlines: Vec<wire::LeaseDeadline> = c
                .deadlines
                .iter()
                .map(|(id, expiry)| wire::LeaseDeadline::new(*id, *expiry))
                .collect();
            let deadlines = (!deadlines.is_empty()).then(|| fbb.create_vector(&deadlines));
            let args = wire::LeaseCheckpointRequestArgs { clock_ms: c.clock_ms, deadlines };
            (
                wire::RequestBody::LeaseCheckpointRequest,
                wire::LeaseCheckpointRequest::create(fbb, &args).as_union_value(),
            )
        }
    };
    let root = wire::Request::create(fbb, &wire::RequestArgs { body_type, body: Some(body) });
    fbb.finish(root, None);
    fbb.finished_data()
}

fn bytes_of<'a>(fbb: &mut Builder<'a>, b: &[u8]) -> Option<Fbytes<'a>> {
    if b.is_empty() {
        None
    } else {
        Some(fbb.create_vector(b))
    }
}

fn wire_sort_order(order: SortOrder) -> wire::SortOrder {
    match order {
        SortOrder::None => wire::SortOrder::None,
        SortOrder::Ascend => wire::SortOrder::Ascend,
        SortOrder::Descend => wire::SortOrder::Descend,
    }
}

fn wire_sort_target(target: SortTarget) -> wire::SortTarget {
    match target {
        SortTarget::Key => wire::SortTarget::Key,
        SortTarget::Version => wire::SortTarget::Version,
        SortTarget::Create => wire::SortTarget::Create,
        SortTarget::Mod => wire::SortTarget::Mod,
        SortTarget::Value => wire::SortTarget::Value,
    }
}

fn build_range<'a>(fbb: &mut Builder<'a>, r: &RangeRequest) -> Off<wire::RangeRequest<'a>> {
    let key = bytes_of(fbb, &r.key);
    let range_end = bytes_of(fbb, &r.range_end);
    let args = wire::RangeRequestArgs {
        key,
        range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: wire_sort_order(r.sort_order),
        sort_target: wire_sort_target(r.sort_target),
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    };
    wire::RangeRequest::create(fbb, &args)
}

fn build_put<'a>(fbb: &mut Builder<'a>, p: &PutRequest) -> Off<wire::PutRequest<'a>> {
    let key = bytes_of(fbb, &p.key);
    let value = bytes_of(fbb, &p.value);
    let args = wire::PutRequestArgs {
        key,
        value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    };
    wire::PutRequest::create(fbb, &args)
}

fn build_delete<'a>(
    fbb: &mut Builder<'a>,
    d: &DeleteRangeRequest,
) -> Off<wire::DeleteRangeRequest<'a>> {
    let key = bytes_of(fbb, &d.key);
    let range_end = bytes_of(fbb, &d.range_end);
    let args = wire::DeleteRangeRequestArgs { key, range_end, prev_kv: d.prev_kv };
    wire::DeleteRangeRequest::create(fbb, &args)
}

fn build_compare<'a>(fbb: &mut Builder<'a>, c: &Compare) -> Off<wire::Compare<'a>> {
    let key = bytes_of(fbb, &c.key);
    let range_end = bytes_of(fbb, &c.range_end);
    let value = bytes_of(fbb, &c.value);
    let result = match c.result {
        CompareResult::Equal => wire::CompareResult::Equal,
        CompareResult::Greater => wire::CompareResult::Greater,
        CompareResult::Less => wire::CompareResult::Less,
        CompareResult::NotEqual => wire::CompareResult::NotEqual,
    };
    let target = match c.target {
        CompareTarget::Version => wire::CompareTarget::Version,
        CompareTarget::Create => wire::CompareTarget::Create,
        CompareTarget::Mod => wire::CompareTarget::Mod,
        CompareTarget::Value => wire::CompareTarget::Value,
        CompareTarget::Lease => wire::CompareTarget::Lease,
    };
    let args = wire::CompareArgs { result, target, key, range_end, number: c.number, value };
    wire::Compare::create(fbb, &args)
}

fn build_ops<'a>(
    fbb: &mut Builder<'a>,
    ops: &[RequestOp],
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<wire::RequestOp<'a>>>>> {
    if ops.is_empty() {
        return None;
    }
    let built: Vec<_> = ops
        .iter()
        .map(|op| {
            let (op_type, op) = match op {
                RequestOp::Range(r) => {
                    (wire::Op::RangeRequest, build_range(fbb, r).as_union_value())
                }
                RequestOp::Put(p) => (wire::Op::PutRequest, build_put(fbb, p).as_union_value()),
                RequestOp::DeleteRange(d) => {
                    (wire::Op::DeleteRangeRequest, build_delete(fbb, d).as_union_value())
                }
                RequestOp::Txn(t) => (wire::Op::TxnRequest, build_txn(fbb, t).as_union_value()),
            };
            wire::RequestOp::create(fbb, &wire::RequestOpArgs { op_type, op: Some(op) })
        })
        .collect();
    Some(fbb.create_vector(&built))
}

fn build_txn<'a>(fbb: &mut Builder<'a>, t: &TxnRequest) -> Off<wire::TxnRequest<'a>> {
    let compares: Vec<_> = t.compare.iter().map(|c| build_compare(fbb, c)).collect();
    let compare = if compares.is_empty() { None } else { Some(fbb.create_vector(&compares)) };
    let success = build_ops(fbb, &t.success);
    let failure = build_ops(fbb, &t.failure);
    wire::TxnRequest::create(fbb, &wire::TxnRequestArgs { compare, success, failure })
}

// --------------------------------------------------------------- responses

/// Bytes of keys, values and other variable data in `response`: no more
/// than its encoding takes, known without encoding it (a txn of many ranges
/// over one large value shares that value in memory, but would not in its
/// encoding).
pub fn response_bytes_lower_bound(response: &Response) -> usize {
    fn kv(kv: &KeyValue) -> usize {
        kv.key.len() + kv.value.len()
    }
    fn range(r: &RangeResponse) -> usize {
        r.kvs.iter().map(kv).sum()
    }
    fn put(p: &PutResponse) -> usize {
        p.prev_kv.as_ref().map_or(0, kv)
    }
    fn delete(d: &DeleteRangeResponse) -> usize {
        d.prev_kvs.iter().map(kv).sum()
    }
    fn txn(t: &TxnResponse) -> usize {
        let op = |op: &ResponseOp| match op {
            ResponseOp::Range(r) => range(r),
            ResponseOp::Put(p) => put(p),
            ResponseOp::DeleteRange(d) => delete(d),
            ResponseOp::Txn(t) => txn(t),
        };
        t.responses.iter().map(op).sum()
    }
    match &response.result {
        Ok(ResponseBody::Range(r)) => range(r),
        Ok(ResponseBody::Put(p)) => put(p),
        Ok(ResponseBody::DeleteRange(d)) => delete(d),
        Ok(ResponseBody::Txn(t)) => txn(t),
        Ok(ResponseBody::Watch(w)) => {
            w.events.iter().map(|e| kv(&e.kv) + e.prev_kv.as_ref().map_or(0, kv)).sum()
        }
        Ok(ResponseBody::Snapshot(chunk)) => chunk.blob.len(),
        _ => 0,
    }
}

/// Encodes a response body into `fbb` (reset first) and returns it.
pub fn encode_response<'b>(fbb: &'b mut Builder<'static>, response: &Response) -> &'b [u8] {
    fbb.reset();
    let h = &response.header;
    let header = wire::ResponseHeader::new(h.cluster_id, h.member_id, h.revision, h.raft_term);
    let mut args = wire::ResponseArgs { header: Some(&header), ..Default::default() };
    match &response.result {
        Ok(body) => {
            let (body_type, off) = build_response_body(fbb, body);
            args.body_type = body_type;
            args.body = Some(off);
        }
        Err(error) => {
            let message = fbb.create_string(&error.message);
            let args_error = wire::ErrorArgs { code: error.code as u16, message: Some(message) };
            args.error = Some(wire::Error::create(fbb, &args_error));
        }
    }
    let root = wire::Response::create(fbb, &args);
    fbb.finish(root, None);
    fbb.finished_data()
}

fn build_response_body(
    fbb: &mut Builder<'_>,
    body: &ResponseBody,
) -> (wire::ResponseBody, WIPOffset<flatbuffers::UnionWIPOffset>) {
    match body {
        ResponseBody::Range(r) => {
            (wire::ResponseBody::RangeResponse, build_range_response(fbb, r).as_union_value())
        }
        ResponseBody::Put(p) => {
            (wire::ResponseBody::PutResponse, build_put_response(fbb, p).as_union_value())
        }
        ResponseBody::DeleteRange(d) => (
            wire::ResponseBody::DeleteRangeResponse,
            build_delete_response(fbb, d).as_union_value(),
        ),
        ResponseBody::Txn(t) => {
            (wire::ResponseBody::TxnResponse, build_txn_response(fbb, t).as_union_value())
        }
        ResponseBody::Compact => (
            wire::ResponseBody::CompactResponse,
            wire::CompactResponse::create(fbb, &wire::CompactResponseArgs {}).as_union_value(),
        ),
        ResponseBody::Status(s) => {
            let version = fbb.create_string(&s.version);
            let args = wire::StatusResponseArgs {
                version: Some(version),
                db_size: s.db_size,
                leader: s.leader,
                raft_index: s.raft_index,
                raft_term: s.raft_term,
                raft_applied_index: s.raft_applied_index,
                db_size_in_use: s.db_size_in_use,
                is_learner: s.is_learner,
            };
            (
                wire::ResponseBody::StatusResponse,
                wire::StatusResponse::create(fbb, &args).as_union_value(),
            )
        }
        ResponseBody::Snapshot(chunk) => {
            let blob = Some(fbb.create_vector(&chunk.blob));
            let args = wire::SnapshotResponseArgs { blob, done: chunk.done };
            (
                wire::ResponseBody::SnapshotResponse,
                wire::SnapshotResponse::create(fbb, &args).as_union_value(),
            )
        }
        ResponseBody::Watch(w) => {
            (wire::ResponseBody::WatchResponse, build_watch_response(fbb, w).as_union_value())
        }
        ResponseBody::LeaseGrant(g) => {
            let args = wire::LeaseGrantResponseArgs { id: g.id, ttl: g.ttl };
            (
                wire::ResponseBody::LeaseGrantResponse,
                wire::LeaseGrantResponse::create(fbb, &args).as_union_value(),
            )
        }
        // A checkpoint's answer goes nowhere; it is encoded as a revoke's
        // (an empty table) should it ever be.
        ResponseBody::LeaseRevoke | ResponseBody::LeaseCheckpoint => (
            wire::ResponseBody::LeaseRevokeResponse,
            wire::LeaseRevokeResponse::create(fbb, &wire::LeaseRevokeResponseArgs {})
                .as_union_value(),
        ),
        ResponseBody::LeaseKeepAlive(k) => {
            let args = wire::LeaseKeepAliveResponseArgs { id: k.id, ttl: k.ttl };
            (
                wire::ResponseBody::LeaseKeepAliveResponse,
                wire::LeaseKeepAliveResponse::create(fbb, &args).as_union_value(),
            )
        }
        ResponseBody::LeaseTimeToLive(t) => {
            let keys: Vec<_> = t
                .keys
                .iter()
                .map(|key| {
                    let key = bytes_of(fbb, key);
                    wire::LeaseKey::create(fbb, &wire::LeaseKeyArgs { key })
                })
                .collect();
            let keys = (!keys.is_empty()).then(|| fbb.create_vector(&keys));
            let args = wire::LeaseTimeToLiveResponseArgs {
                id: t.id,
                ttl: t.ttl,
                granted_ttl: t.granted_ttl,
                keys,
            };
            (
                wire::ResponseBody::LeaseTimeToLiveResponse,
                wire::LeaseTimeToLiveResponse::create(fbb, &args).as_union_value(),
            )
        }
        ResponseBody::LeaseLeases(ids) => {
            let ids = (!ids.is_empty()).then(|| fbb.create_vector(ids));
            let args = wire::LeaseLeasesResponseArgs { ids };
            (
                wire::ResponseBody::LeaseLeasesResponse,
                wire::LeaseLeasesResponse::create(fbb, &args).as_union_value(),
            )
        }
    }
}

fn build_watch_response<'a>(
    fbb: &mut Builder<'a>,
    w: &WatchResponse,
) -> Off<wire::WatchResponse<'a>> {
    let events = (!w.events.is_empty()).then(|| {
        let built: Vec<_> = w
            .events
            .iter()
            .map(|event| {
                let kv = Some(build_kv(fbb, &event.kv));
                let prev_kv = event.prev_kv.as_ref().map(|kv| build_kv(fbb, kv));
                let kind = match event.kind {
                    EventType::Put => wire::EventType::Put,
                    EventType::Delete => wire::EventType::Delete,
                };
                wire::Event::create(fbb, &wire::EventArgs { type_: kind, kv, prev_kv })
            })
            .collect();
        fbb.create_vector(&built)
    });
    let cancel_reason = (!w.cancel_reason.is_empty()).then(|| fbb.create_string(&w.cancel_reason));
    let args = wire::WatchResponseArgs {
        watch_id: w.watch_id,
        created: w.created,
        canceled: w.canceled,
        compact_revision: w.compact_revision,
        cancel_reason,
        fragment: w.fragment,
        events,
    };
    wire::WatchResponse::create(fbb, &args)
}

fn build_kv<'a>(fbb: &mut Builder<'a>, kv: &KeyValue) -> Off<wire::KeyValue<'a>> {
    let key = bytes_of(fbb, &kv.key);
    let value = bytes_of(fbb, &kv.value);
    let args = wire::KeyValueArgs {
        key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value,
        lease: kv.lease,
    };
    wire::KeyValue::create(fbb, &args)
}

fn build_kvs<'a>(
    fbb: &mut Builder<'a>,
    kvs: &[KeyValue],
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<wire::KeyValue<'a>>>>> {
    if kvs.is_empty() {
        return None;
    }
    let built: Vec<_> = kvs.iter().map(|kv| build_kv(fbb, kv)).collect();
    Some(fbb.create_vector(&built))
}

fn build_range_response<'a>(
    fbb: &mut Builder<'a>,
    r: &RangeResponse,
) -> Off<wire::RangeResponse<'a>> {
    let kvs = build_kvs(fbb, &r.kvs);
    let args = wire::RangeResponseArgs {
        kvs,
        more: r.more,
        count: r.count,
        header_revision: r.header_revision,
    };
    wire::RangeResponse::create(fbb, &args)
}

fn build_put_response<'a>(fbb: &mut Builder<'a>, p: &PutResponse) -> Off<wire::PutResponse<'a>> {
    let prev_kv = p.prev_kv.as_ref().map(|kv| build_kv(fbb, kv));
    wire::PutResponse::create(
        fbb,
        &wire::PutResponseArgs { prev_kv, header_revision: p.header_revision },
    )
}

fn build_delete_response<'a>(
    fbb: &mut Builder<'a>,
    d: &DeleteRangeResponse,
) -> Off<wire::DeleteRangeResponse<'a>> {
    let prev_kvs = build_kvs(fbb, &d.prev_kvs);
    wire::DeleteRangeResponse::create(
        fbb,
        &wire::DeleteRangeResponseArgs {
            deleted: d.deleted,
            prev_kvs,
            header_revision: d.header_revision,
        },
    )
}

fn build_txn_response<'a>(fbb: &mut Builder<'a>, t: &TxnResponse) -> Off<wire::TxnResponse<'a>> {
    let built: Vec<_> = t
        .responses
        .iter()
        .map(|op| {
            let (response_type, response) = match op {
                ResponseOp::Range(r) => {
                    (wire::OpResponse::RangeResponse, build_range_response(fbb, r).as_union_value())
                }
                ResponseOp::Put(p) => {
                    (wire::OpResponse::PutResponse, build_put_response(fbb, p).as_union_value())
                }
                ResponseOp::DeleteRange(d) => (
                    wire::OpResponse::DeleteRangeResponse,
                    build_delete_response(fbb, d).as_union_value(),
                ),
                ResponseOp::Txn(t) => {
                    (wire::OpResponse::TxnResponse, build_txn_response(fbb, t).as_union_value())
                }
            };
            wire::ResponseOp::create(
                fbb,
                &wire::ResponseOpArgs { response_type, response: Some(response) },
            )
        })
        .collect();
    let responses = if built.is_empty() { None } else { Some(fbb.create_vector(&built)) };
    let args = wire::TxnResponseArgs {
        succeeded: t.succeeded,
        responses,
        header_revision: t.header_revision,
    };
    wire::TxnResponse::create(fbb, &args)
}

/// Decodes a response body (client side). A response that cannot be decoded
/// is reported as a malformed-response error.
pub fn decode_response(frame: &Bytes) -> Result<Response, Error> {
    let response =
        flatbuffers::root_with_opts::<wire::Response>(&response_verifier_options(), frame)
            .map_err(|e| {
                Error::with_message(
                    ErrorCode::MalformedRequest,
                    format!("corekv: malformed response: {e}"),
                )
            })?;
    let header = response.header().map_or(ResponseHeader::default(), |h| ResponseHeader {
        cluster_id: h.cluster_id(),
        member_id: h.member_id(),
        revision: h.revision(),
        raft_term: h.raft_term(),
    });
    if let Some(error) = response.error() {
        let code = ErrorCode::from_u16(error.code()).unwrap_or(ErrorCode::InvalidArgument);
        let message = error.message().unwrap_or(code.message()).to_string();
        return Ok(Response { header, result: Err(Error { code, message }) });
    }
    let bad =
        || Error::with_message(ErrorCode::MalformedRequest, "corekv: malformed response body");
    let body = match response.body_type() {
        wire::ResponseBody::RangeResponse => ResponseBody::Range(read_range_response(
            frame,
            response.body_as_range_response().ok_or_else(bad)?,
        )),
        wire::ResponseBody::PutResponse => ResponseBody::Put(read_put_response(
            frame,
            response.body_as_put_response().ok_or_else(bad)?,
        )),
        wire::ResponseBody::DeleteRangeResponse => ResponseBody::DeleteRange(read_delete_response(
            frame,
            response.body_as_delete_range_response().ok_or_else(bad)?,
        )),
        wire::ResponseBody::TxnResponse => ResponseBody::Txn(read_txn_response(
            frame,
            response.body_as_txn_response().ok_or_else(bad)?,
        )?),
        wire::ResponseBody::CompactResponse => ResponseBody::Compact,
        wire::ResponseBody::StatusResponse => {
            let s = response.body_as_status_response().ok_or_else(bad)?;
            ResponseBody::Status(StatusResponse {
                version: s.version().unwrap_or_default().to_string(),
                db_size: s.db_size(),
                db_size_in_use: s.db_size_in_use(),
                leader: s.leader(),
                raft_index: s.raft_index(),
                raft_term: s.raft_term(),
                raft_applied_index: s.raft_applied_index(),
                is_learner: s.is_learner(),
            })
        }
        wire::ResponseBody::SnapshotResponse => {
            let s = response.body_as_snapshot_response().ok_or_else(bad)?;
            ResponseBody::Snapshot(SnapshotChunk { blob: slice(frame, s.blob()), done: s.done() })
        }
        wire::ResponseBody::WatchResponse => {
            let w = response.body_as_watch_response().ok_or_else(bad)?;
            let mut events = Vec::new();
            for event in w.events().iter().flatten() {
                let kind = match event.type_() {
                    wire::EventType::Put => EventType::Put,
                    wire::EventType::Delete => EventType::Delete,
                    _ => return Err(bad()),
                };
                let kv = read_kv(frame, event.kv().ok_or_else(bad)?);
                let prev_kv = event.prev_kv().map(|kv| read_kv(frame, kv));
                events.push(WatchEvent { kind, kv, prev_kv });
            }
            ResponseBody::Watch(WatchResponse {
                watch_id: w.watch_id(),
                created: w.created(),
                canceled: w.canceled(),
                compact_revision: w.compact_revision(),
                cancel_reason: w.cancel_reason().unwrap_or_default().to_string(),
                fragment: w.fragment(),
                events,
            })
        }
        wire::ResponseBody::LeaseGrantResponse => {
            let g = response.body_as_lease_grant_response().ok_or_else(bad)?;
            ResponseBody::LeaseGrant(LeaseGrantResponse { id: g.id(), ttl: g.ttl() })
        }
        wire::ResponseBody::LeaseRevokeResponse => ResponseBody::LeaseRevoke,
        wire::ResponseBody::LeaseKeepAliveResponse => {
            let k = response.body_as_lease_keep_alive_response().ok_or_else(bad)?;
            ResponseBody::LeaseKeepAlive(LeaseKeepAliveResponse { id: k.id(), ttl: k.ttl() })
        }
        wire::ResponseBody::LeaseTimeToLiveResponse => {
            let t = response.body_as_lease_time_to_live_response().ok_or_else(bad)?;
            let keys = t.keys().iter().flatten().map(|k| slice(frame, k.key())).collect();
            ResponseBody::LeaseTimeToLive(LeaseTimeToLiveResponse {
                id: t.id(),
                ttl: t.ttl(),
                granted_ttl: t.granted_ttl(),
                keys,
            })
        }
        wire::ResponseBody::LeaseLeasesResponse => {
            let l = response.body_as_lease_leases_response().ok_or_else(bad)?;
            ResponseBody::LeaseLeases(l.ids().map(|ids| ids.iter().collect()).unwrap_or_default())
        }
        _ => return Err(bad()),
    };
    Ok(Response { header, result: Ok(body) })
}

fn read_kv(frame: &Bytes, kv: wire::KeyValue<'_>) -> KeyValue {
    KeyValue {
        key: slice(frame, kv.key()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        value: slice(frame, kv.value()),
        lease: kv.lease(),
    }
}

fn read_kvs(
    frame: &Bytes,
    kvs: Option<Vector<'_, ForwardsUOffset<wire::KeyValue<'_>>>>,
) -> Vec<KeyValue> {
    kvs.map(|list| list.iter().map(|kv| read_kv(frame, kv)).collect()).unwrap_or_default()
}

fn read_range_response(frame: &Bytes, r: wire::RangeResponse<'_>) -> RangeResponse {
    RangeResponse {
        kvs: read_kvs(frame, r.kvs()),
        more: r.more(),
        count: r.count(),
        header_revision: r.header_revision(),
    }
}

fn read_put_response(frame: &Bytes, p: wire::PutResponse<'_>) -> PutResponse {
    PutResponse {
        prev_kv: p.prev_kv().map(|kv| read_kv(frame, kv)),
        header_revision: p.header_revision(),
    }
}

fn read_delete_response(frame: &Bytes, d: wire::DeleteRangeResponse<'_>) -> DeleteRangeResponse {
    DeleteRangeResponse {
        deleted: d.deleted(),
        prev_kvs: read_kvs(frame, d.prev_kvs()),
        header_revision: d.header_revision(),
    }
}

fn read_txn_response(frame: &Bytes, t: wire::TxnResponse<'_>) -> Result<TxnResponse, Error> {
    let bad = || Error::with_message(ErrorCode::MalformedRequest, "corekv: malformed txn response");
    let mut responses = Vec::new();
    for op in t.responses().into_iter().flatten() {
        responses.push(match op.response_type() {
            wire::OpResponse::RangeResponse => ResponseOp::Range(read_range_response(
                frame,
                op.response_as_range_response().ok_or_else(bad)?,
            )),
            wire::OpResponse::PutResponse => ResponseOp::Put(read_put_response(
                frame,
                op.response_as_put_response().ok_or_else(bad)?,
            )),
            wire::OpResponse::DeleteRangeResponse => ResponseOp::DeleteRange(read_delete_response(
                frame,
                op.response_as_delete_range_response().ok_or_else(bad)?,
            )),
            wire::OpResponse::TxnResponse => ResponseOp::Txn(read_txn_response(
                frame,
                op.response_as_txn_response().ok_or_else(bad)?,
            )?),
            _ => return Err(bad()),
        });
    }
    Ok(TxnResponse { succeeded: t.succeeded(), responses, header_revision: t.header_revision() })
}

#[cfg(test)]
mod tests;
