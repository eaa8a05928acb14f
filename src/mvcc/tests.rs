//! etcd's semantics, one rule per test.

use bytes::Bytes;

use super::*;
use crate::error::ErrorCode;
use crate::types::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(store: &mut Store, key: &str, value: &str) -> PutResponse {
    let request = Request::Put(PutRequest {
        key: b(key),
        value: b(value),
        prev_kv: true,
        ..Default::default()
    });
    match store.apply(&request).unwrap() {
        ResponseBody::Put(r) => r,
        other => panic!("{other:?}"),
    }
}

fn get(store: &Store, key: &str, end: &str, revision: i64) -> Result<RangeResponse, Error> {
    store.snapshot().range(&RangeRequest {
        key: b(key),
        range_end: b(end),
        revision,
        ..Default::default()
    })
}

fn txn(store: &mut Store, t: TxnRequest) -> Result<TxnResponse, Error> {
    validate_request(&Request::Txn(t.clone()))?;
    store.apply(&Request::Txn(t)).map(|body| match body {
        ResponseBody::Txn(r) => r,
        other => panic!("{other:?}"),
    })
}

use crate::error::Error;

#[test]
fn a_fresh_store_is_at_revision_one_and_each_put_adds_one() {
    let mut store = Store::new();
    assert_eq!(store.revision(), 1);
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    let kv = &get(&store, "a", "", 0).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(store.revision(), 3);
    store.check_invariants();
}

#[test]
fn delete_then_put_starts_a_new_generation() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    store
        .apply(&Request::DeleteRange(DeleteRangeRequest { key: b("a"), ..Default::default() }))
        .unwrap();
    put(&mut store, "a", "2");
    let kv = &get(&store, "a", "", 0).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (4, 4, 1));
    // The old generation is still readable at its revision.
    assert_eq!(get(&store, "a", "", 2).unwrap().kvs[0].value, b("1"));
    assert!(get(&store, "a", "", 3).unwrap().kvs.is_empty());
}

#[test]
fn deleting_nothing_does_not_move_the_revision() {
    let mut store = Store::new();
    let body = store
        .apply(&Request::DeleteRange(DeleteRangeRequest { key: b("x"), ..Default::default() }));
    assert_eq!(
        body.unwrap(),
        ResponseBody::DeleteRange(DeleteRangeResponse { header_revision: 1, ..Default::default() })
    );
    assert_eq!(store.revision(), 1);
}

#[test]
fn future_and_compacted_revisions_are_refused_with_etcds_errors() {
    let mut store = Store::new();
    for i in 0..5 {
        put(&mut store, "k", &i.to_string());
    }
    assert_eq!(get(&store, "k", "", 7).unwrap_err().code, ErrorCode::FutureRevision);
    store.compact(4).unwrap();
    assert_eq!(get(&store, "k", "", 3).unwrap_err().code, ErrorCode::Compacted);
    assert_eq!(get(&store, "k", "", 4).unwrap().kvs[0].value, b("2"));
    assert_eq!(
        store.compact(4).unwrap_err().message,
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(store.compact(9).unwrap_err().code, ErrorCode::FutureRevision);
    store.check_invariants();
}

#[test]
fn compaction_drops_deleted_keys_and_old_versions() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "1");
    store
        .apply(&Request::DeleteRange(DeleteRangeRequest { key: b("a"), ..Default::default() }))
        .unwrap();
    put(&mut store, "b", "2");
    store.compact(store.revision()).unwrap();
    store.check_invariants();
    assert_eq!(store.state.versions(), 1);
    assert_eq!(get(&store, "a", "\0", 0).unwrap().count, 1);
}

#[test]
fn range_limit_count_sort_and_filters_follow_etcd() {
    let mut store = Store::new();
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "0")] {
        put(&mut store, k, v);
    }
    let snap = store.snapshot();
    let base = RangeRequest { key: b("a"), range_end: b("\0"), ..Default::default() };
    let r = snap.range(&RangeRequest { limit: 2, ..base.clone() }).unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 4));
    let r = snap
        .range(&RangeRequest {
            sort_target: SortTarget::Value,
            sort_order: SortOrder::Descend,
            ..base.clone()
        })
        .unwrap();
    let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("a"), b("c"), b("b"), b("d")]);
    let r = snap.range(&RangeRequest { min_mod_revision: 4, ..base.clone() }).unwrap();
    assert_eq!(r.kvs.len(), 2);
    assert_eq!(r.count, 4, "count ignores filters, as etcd's does");
    let r = snap.range(&RangeRequest { count_only: true, ..base.clone() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 4));
    let r = snap.range(&RangeRequest { keys_only: true, ..base.clone() }).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    // Ties (every version is 1) stay in key order in both directions, as
    // etcd's sort.Reverse leaves them: descending with limit 1 gives "a".
    let r = snap
        .range(&RangeRequest {
            sort_target: SortTarget::Version,
            sort_order: SortOrder::Descend,
            limit: 1,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((r.kvs[0].key.clone(), r.more), (b("a"), true));
    let r = snap.range(&RangeRequest { sort_order: SortOrder::Descend, ..base }).unwrap();
    let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("d"), b("c"), b("b"), b("a")], "by key, descending");
}

#[test]
fn a_compare_without_a_key_is_refused_as_etcd_refuses_it() {
    let compare = Compare { target: CompareTarget::Version, ..Default::default() };
    let request = Request::Txn(TxnRequest { compare: vec![compare], ..Default::default() });
    let error = crate::mvcc::validate_request(&request).unwrap_err();
    assert_eq!(error.code, crate::error::ErrorCode::EmptyKey);
}

#[test]
fn compare_on_a_missing_key_uses_zero_and_value_compares_fail() {
    let mut store = Store::new();
    let cmp = |target, result, number| Compare {
        target,
        result,
        key: b("missing"),
        number,
        ..Default::default()
    };
    let ok = |store: &mut Store, c: Compare| {
        txn(store, TxnRequest { compare: vec![c], ..Default::default() }).unwrap().succeeded
    };
    assert!(ok(&mut store, cmp(CompareTarget::Version, CompareResult::Equal, 0)));
    assert!(ok(&mut store, cmp(CompareTarget::Mod, CompareResult::Less, 1)));
    assert!(ok(&mut store, cmp(CompareTarget::Create, CompareResult::Equal, 0)));
    assert!(!ok(&mut store, cmp(CompareTarget::Value, CompareResult::Equal, 0)));
    assert!(!ok(&mut store, cmp(CompareTarget::Value, CompareResult::NotEqual, 0)));
}

#[test]
fn txn_reads_see_its_own_writes_and_share_one_revision() {
    let mut store = Store::new();
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest { key: b("a"), value: b("1"), ..Default::default() }),
            RequestOp::Put(PutRequest { key: b("b"), value: b("2"), ..Default::default() }),
            RequestOp::Range(RangeRequest {
                key: b("a"),
                range_end: b("\0"),
                ..Default::default()
            }),
        ],
        failure: vec![],
    };
    let r = txn(&mut store, t).unwrap();
    assert!(r.succeeded);
    let ResponseOp::Range(range) = &r.responses[2] else { panic!() };
    assert_eq!(range.count, 2);
    assert!(range.kvs.iter().all(|kv| kv.mod_revision == 2));
    assert_eq!(store.revision(), 2);
}

#[test]
fn txn_ranges_stop_collecting_past_the_response_limit_and_the_txn_still_applies() {
    let mut store = Store::new();
    let value = Bytes::from(vec![7u8; 1400 * 1024]);
    for i in 0..60 {
        let key = Bytes::from(format!("k{i:02}"));
        let request = Request::Put(PutRequest { key, value: value.clone(), ..Default::default() });
        store.apply(&request).unwrap();
    }
    let all = RangeRequest { key: b("k"), range_end: b("l"), ..Default::default() };
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Range(all.clone()),
            RequestOp::Put(PutRequest { key: b("w"), value: b("1"), ..Default::default() }),
            RequestOp::Range(all.clone()),
        ],
        failure: vec![],
    };
    let r = txn(&mut store, t).unwrap();
    let ResponseOp::Range(first) = &r.responses[0] else { panic!() };
    let ResponseOp::Range(second) = &r.responses[2] else { panic!() };
    // 64 MiB / 1.4 MiB: the 47th value passes the limit; nothing after it
    // is collected, and the next range, with no budget left, takes one.
    assert_eq!(first.kvs.len(), 47);
    assert_eq!(second.kvs.len(), 1);
    let response = Response { header: Default::default(), result: Ok(ResponseBody::Txn(r)) };
    let bytes = crate::protocol::codec::response_bytes_lower_bound(&response);
    assert!(bytes > crate::limits::response_bytes_max, "{bytes}");
    // The txn's write applied all the same (the answer is refused whole).
    assert_eq!(get(&store, "w", "", 0).unwrap().kvs.len(), 1);
    // Outside a txn the same range is refused; sorted, it is collected whole.
    assert_eq!(store.snapshot().range(&all).unwrap_err().code, ErrorCode::RequestTooLarge);
    let sorted = RangeRequest { sort_order: SortOrder::Descend, ..all };
    assert_eq!(store.snapshot().range(&sorted).unwrap().kvs.len(), 60);
}

#[test]
fn txn_checks_duplicates_and_limits_like_etcd() {
    let mut store = Store::new();
    let p = |k: &str| RequestOp::Put(PutRequest { key: b(k), value: b("v"), ..Default::default() });
    let d = |k: &str, e: &str| {
        RequestOp::DeleteRange(DeleteRangeRequest { key: b(k), range_end: b(e), prev_kv: false })
    };
    let dup = TxnRequest { compare: vec![], success: vec![p("a"), p("a")], failure: vec![] };
    assert_eq!(
        txn(&mut store, dup).unwrap_err().message,
        "etcdserver: duplicate key given in txn request"
    );
    let dup = TxnRequest { compare: vec![], success: vec![d("a", "c"), p("b")], failure: vec![] };
    assert_eq!(txn(&mut store, dup).unwrap_err().code, ErrorCode::DuplicateKey);
    let fine = TxnRequest {
        compare: vec![],
        success: vec![d("a", "c"), d("b", "")],
        failure: vec![p("a"), p("b")],
    };
    assert!(txn(&mut store, fine).is_ok());
    let nested = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![p("x")],
            failure: vec![p("x")],
        })],
        failure: vec![],
    };
    assert!(txn(&mut store, nested).is_ok(), "then and else of one txn may share keys");
    // A put in one nested txn and a delete over it in a later one: etcd 3.4
    // lets it through (#16380) and writes two versions at one revision.
    let inner =
        |op: RequestOp| RequestOp::Txn(TxnRequest { success: vec![op], ..Default::default() });
    for (first, second) in [(p("k"), d("k", "")), (p("k"), d("a", "z")), (d("k", ""), p("k"))] {
        let both = TxnRequest { success: vec![inner(first), inner(second)], ..Default::default() };
        assert_eq!(txn(&mut store, both).unwrap_err().code, ErrorCode::DuplicateKey);
    }
    let apart =
        TxnRequest { success: vec![inner(p("k")), inner(d("l", "m"))], ..Default::default() };
    assert!(txn(&mut store, apart).is_ok());
    let many = TxnRequest {
        compare: vec![],
        success: (0..129).map(|i| p(&i.to_string())).collect(),
        failure: vec![],
    };
    assert_eq!(
        txn(&mut store, many).unwrap_err().message,
        "etcdserver: too many operations in txn request"
    );
}

#[test]
fn put_flags_follow_etcd() {
    let mut store = Store::new();
    let request = |p: PutRequest| Request::Put(PutRequest { key: b("k"), ..p });
    let check = |store: &mut Store, r: Request| validate_request(&r).and_then(|_| store.apply(&r));
    let err = check(&mut store, request(PutRequest { ignore_value: true, ..Default::default() }))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::KeyNotFound);
    let err = check(
        &mut store,
        request(PutRequest { ignore_value: true, value: b("v"), ..Default::default() }),
    );
    assert_eq!(err.unwrap_err().message, "etcdserver: value is provided");
    let err =
        check(&mut store, request(PutRequest { lease: 5, ..Default::default() })).unwrap_err();
    assert_eq!(err.message, "etcdserver: requested lease not found");
    let err = check(&mut store, Request::Put(PutRequest::default())).unwrap_err();
    assert_eq!(err.message, "etcdserver: key is not provided");
    put(&mut store, "k", "v1");
    check(&mut store, request(PutRequest { ignore_value: true, ..Default::default() })).unwrap();
    let kv = &get(&store, "k", "", 0).unwrap().kvs[0];
    assert_eq!((kv.value.clone(), kv.version), (b("v1"), 2));
}

#[test]
fn overlapping_deletes_in_one_txn_delete_each_key_once() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    let d = |k: &str, e: &str| {
        RequestOp::DeleteRange(DeleteRangeRequest { key: b(k), range_end: b(e), prev_kv: true })
    };
    let t = TxnRequest { compare: vec![], success: vec![d("a", "c"), d("b", "")], failure: vec![] };
    let r = txn(&mut store, t).unwrap();
    let deleted: Vec<i64> = r
        .responses
        .iter()
        .map(|op| match op {
            ResponseOp::DeleteRange(d) => d.deleted,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(deleted, vec![2, 0]);
    assert_eq!(store.revision(), 4);
    assert_eq!(store.snapshot().live_keys(), 0);
    store.check_invariants();
    // Both keys are still readable at the revision before the txn.
    assert_eq!(get(&store, "a", "\0", 3).unwrap().count, 2);
}
