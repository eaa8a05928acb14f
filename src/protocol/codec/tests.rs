//! Round trips of every request and response, and decoding of bad input.
use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn round_trip(request: Request) {
    let mut fbb = Builder::new();
    let encoded = Bytes::copy_from_slice(encode_request(&mut fbb, &request));
    assert_eq!(decode_request(&encoded).unwrap(), request);
}

#[test]
fn requests_round_trip() {
    round_trip(Request::Status);
    round_trip(Request::Snapshot);
    round_trip(Request::WatchProgress);
    round_trip(Request::WatchCancel(-3));
    round_trip(Request::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 0x694d }));
    round_trip(Request::LeaseRevoke(-7));
    round_trip(Request::LeaseKeepAlive(7));
    round_trip(Request::LeaseTimeToLive(LeaseTimeToLiveRequest { id: 3, keys: true }));
    round_trip(Request::LeaseLeases);
    round_trip(Request::LeaseCheckpoint(LeaseCheckpointRequest::default()));
    round_trip(Request::LeaseCheckpoint(LeaseCheckpointRequest {
        clock_ms: 12_345,
        deadlines: vec![(1, 20_000), (i64::MAX, -1)],
    }));
    round_trip(Request::WatchCreate(WatchCreateRequest::default()));
    round_trip(Request::WatchCreate(WatchCreateRequest {
        key: b("a"),
        range_end: b("b"),
        start_revision: 9,
        progress_notify: true,
        no_put: false,
        no_delete: true,
        prev_kv: true,
        watch_id: 4,
        fragment: true,
    }));
    round_trip(Request::Compact(CompactRequest { revision: 7, physical: true }));
    round_trip(Request::Put(PutRequest {
        key: b("k"),
        value: b("v"),
        lease: 3,
        ..Default::default()
    }));
    round_trip(Request::Range(RangeRequest {
        key: b("a"),
        range_end: b("z"),
        limit: 10,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Mod,
        max_create_revision: 9,
        ..Default::default()
    }));
    let inner = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: b("x"),
            ..Default::default()
        })],
        failure: vec![],
    };
    round_trip(Request::Txn(TxnRequest {
        compare: vec![Compare {
            result: CompareResult::NotEqual,
            target: CompareTarget::Value,
            key: b("k"),
            value: b("v"),
            ..Default::default()
        }],
        success: vec![RequestOp::Txn(inner)],
        failure: vec![RequestOp::Range(RangeRequest { key: b("k"), ..Default::default() })],
    }));
}

#[test]
fn responses_round_trip() {
    let kv = KeyValue {
        key: b("k"),
        create_revision: 2,
        mod_revision: 3,
        version: 2,
        value: b("v"),
        lease: 0,
    };
    let header = ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 };
    let bodies = vec![
        ResponseBody::Range(RangeResponse {
            kvs: vec![kv.clone()],
            more: true,
            count: 5,
            header_revision: 3,
        }),
        ResponseBody::Put(PutResponse { prev_kv: Some(kv.clone()), header_revision: 3 }),
        ResponseBody::DeleteRange(DeleteRangeResponse {
            deleted: 1,
            prev_kvs: vec![kv.clone()],
            header_revision: 3,
        }),
        ResponseBody::Txn(TxnResponse {
            succeeded: true,
            responses: vec![ResponseOp::Put(PutResponse::default())],
            header_revision: 0,
        }),
        ResponseBody::Compact,
        ResponseBody::Watch(WatchResponse::default()),
        ResponseBody::LeaseGrant(LeaseGrantResponse { id: 5, ttl: 60 }),
        ResponseBody::LeaseRevoke,
        ResponseBody::LeaseKeepAlive(LeaseKeepAliveResponse { id: 5, ttl: 0 }),
        ResponseBody::LeaseTimeToLive(LeaseTimeToLiveResponse::default()),
        ResponseBody::LeaseTimeToLive(LeaseTimeToLiveResponse {
            id: 5,
            ttl: 59,
            granted_ttl: 60,
            keys: vec![b("a"), b("b")],
        }),
        ResponseBody::LeaseLeases(vec![]),
        ResponseBody::LeaseLeases(vec![1, 2, 3]),
        ResponseBody::Watch(WatchResponse {
            watch_id: 3,
            created: true,
            canceled: true,
            compact_revision: 2,
            cancel_reason: "gone".into(),
            fragment: true,
            events: vec![
                WatchEvent { kind: EventType::Put, kv: kv.clone(), prev_kv: None },
                WatchEvent {
                    kind: EventType::Delete,
                    kv: KeyValue { key: b("k"), mod_revision: 4, ..Default::default() },
                    prev_kv: Some(kv.clone()),
                },
            ],
        }),
        ResponseBody::Status(StatusResponse {
            version: "3.4.0".into(),
            raft_index: 8,
            ..Default::default()
        }),
    ];
    let mut fbb = Builder::new();
    for body in bodies {
        let response = Response { header, result: Ok(body) };
        let encoded = Bytes::copy_from_slice(encode_response(&mut fbb, &response));
        assert_eq!(decode_response(&encoded).unwrap(), response);
    }
    let response = Response { header, result: Err(Error::new(ErrorCode::Compacted)) };
    let encoded = Bytes::copy_from_slice(encode_response(&mut fbb, &response));
    assert_eq!(decode_response(&encoded).unwrap(), response);
}

#[test]
fn garbage_is_a_malformed_request_not_a_panic() {
    for garbage in [&b""[..], b"\x01", b"\xff\xff\xff\xff\x00\x00\x00\x00", &[7u8; 100]] {
        let err = decode_request(&Bytes::copy_from_slice(garbage)).unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedRequest, "{garbage:?}");
    }
}

#[test]
fn txn_over_the_op_limit_is_refused_while_decoding() {
    let ops = vec![
        RequestOp::Range(RangeRequest { key: b("k"), ..Default::default() });
        limits::txn_ops_max + 1
    ];
    let request = Request::Txn(TxnRequest { compare: vec![], success: ops, failure: vec![] });
    let mut fbb = Builder::new();
    let encoded = Bytes::copy_from_slice(encode_request(&mut fbb, &request));
    assert_eq!(decode_request(&encoded).unwrap_err().code, ErrorCode::TooManyOps);
}
