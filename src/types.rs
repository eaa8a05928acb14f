//! The domain types shared by every layer: identifiers as newtypes, and the
//! requests and responses of etcd's KV API as plain Rust values. The wire
//! format (flatbuffers, `protocol`) and the store (`mvcc`) both speak these.

use bytes::Bytes;

use crate::error::Error;

/// A Raft term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// A position in the Raft log (first entry is 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

/// A member of the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// An MVCC revision (etcd's main revision). A fresh store is at revision 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub i64);

/// A lease identifier; 0 means "no lease".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Bytes,
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// etcd's RangeRequest. `range_end` empty: the single key; `range_end` = "\0":
/// every key >= `key`; otherwise the half-open interval [key, range_end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    pub prev_kv: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompareResult {
    #[default]
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompareTarget {
    #[default]
    Version,
    Create,
    Mod,
    Value,
    Lease,
}

/// One txn guard. `number` is the operand for every target but `Value`, which
/// compares `value`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Bytes,
    pub range_end: Bytes,
    pub number: i64,
    pub value: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRequest {
    pub revision: i64,
    pub physical: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactRequest),
    Status,
    /// A snapshot of the whole state, streamed back in chunks.
    Snapshot,
    /// Opens a watch stream (answered on this request's id until canceled).
    WatchCreate(WatchCreateRequest),
    /// Cancels the connection's watch with this id.
    WatchCancel(i64),
    /// Asks every watch of the connection for a progress notification.
    WatchProgress,
    LeaseGrant(LeaseGrantRequest),
    /// Revokes a lease, deleting every key attached to it in one revision.
    LeaseRevoke(i64),
    /// Renews a lease (served by the member, not logged).
    LeaseKeepAlive(i64),
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    LeaseLeases,
    /// The member's own record of the lease clock and renewed deadlines
    /// (refused from clients).
    LeaseCheckpoint(LeaseCheckpointRequest),
}

/// etcd's LeaseGrantRequest: TTL in seconds; id 0: the member picks one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantRequest {
    pub ttl: i64,
    pub id: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTimeToLiveRequest {
    pub id: i64,
    pub keys: bool,
}

/// The lease clock (milliseconds leases have counted down, over the
/// member's whole life) and, for leases granted or renewed since the last
/// checkpoint, `(id, expiry on that clock)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseCheckpointRequest {
    pub clock_ms: i64,
    pub deadlines: Vec<(i64, i64)>,
}

/// etcd's WatchCreateRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCreateRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    /// 0 (or below): from the next revision on.
    pub start_revision: i64,
    pub progress_notify: bool,
    /// etcd's filters: NOPUT and NODELETE.
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    /// 0: the server picks one.
    pub watch_id: i64,
    pub fragment: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One event of a watch: for a delete, `kv` holds the key and the delete's
/// revision (as `mod_revision`) only, as etcd sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// etcd's WatchResponse (its header is the response's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    pub watch_id: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub fragment: bool,
    pub events: Vec<WatchEvent>,
}

impl Request {
    /// Whether the request changes state and so must go through the log.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Range(_) | Request::Status | Request::Snapshot => false,
            Request::WatchCreate(_) | Request::WatchCancel(_) | Request::WatchProgress => false,
            Request::LeaseKeepAlive(_) | Request::LeaseTimeToLive(_) | Request::LeaseLeases => {
                false
            }
            Request::Txn(txn) => txn_has_writes(txn),
            Request::Put(_) | Request::DeleteRange(_) | Request::Compact(_) => true,
            Request::LeaseGrant(_) | Request::LeaseRevoke(_) | Request::LeaseCheckpoint(_) => true,
        }
    }
}

fn txn_has_writes(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(txn.failure.iter()).any(|op| match op {
        RequestOp::Range(_) => false,
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
        RequestOp::Txn(inner) => txn_has_writes(inner),
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
    /// The revision in this response's own header inside a txn (see schema).
    pub header_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    pub header_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
    pub header_revision: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
    pub header_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusResponse {
    pub version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact,
    Status(StatusResponse),
    Snapshot(SnapshotChunk),
    Watch(WatchResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke,
    /// ttl 0: no such lease.
    LeaseKeepAlive(LeaseKeepAliveResponse),
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    /// The ids of every lease, ascending.
    LeaseLeases(Vec<i64>),
    /// An entry the member logged for itself (nobody waits for its answer).
    LeaseCheckpoint,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    pub id: i64,
    pub ttl: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseKeepAliveResponse {
    pub id: i64,
    pub ttl: i64,
}

/// etcd's LeaseTimeToLiveResponse: `ttl` -1 and `granted_ttl` 0 when the
/// lease does not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    pub id: i64,
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Bytes>,
}

/// Part of a streamed snapshot file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub blob: Bytes,
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub header: ResponseHeader,
    pub result: Result<ResponseBody, Error>,
}
