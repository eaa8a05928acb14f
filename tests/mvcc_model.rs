//! Property test: the MVCC store against a deliberately naive model that keeps
//! a flat list of changes and replays it for every read.

use std::collections::BTreeMap;

use bytes::Bytes;
use corekv::error::ErrorCode;
use corekv::mvcc::paged::{PagedHistory, PagedView};
use corekv::mvcc::{validate_request, Store};
use corekv::pagestore::{MemPageFile, PageStore};
use corekv::types::*;
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
struct ModelKv {
    create: i64,
    modified: i64,
    version: i64,
    value: Vec<u8>,
    lease: i64,
}

/// (key-values, count, more).
type ModelRange = (Vec<(Vec<u8>, ModelKv)>, i64, bool);

/// (revision, key, (value, lease) or None for a delete).
type Change = (i64, Vec<u8>, Option<(Vec<u8>, i64)>);

#[derive(Default)]
struct Model {
    /// Every change, in order.
    changes: Vec<Change>,
    revision: i64,
    compacted: i64,
    /// Lease id → (ttl, checkpointed expiry).
    leases: BTreeMap<i64, (i64, i64)>,
    lease_clock: i64,
}

fn in_span(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl Model {
    fn new() -> Model {
        Model {
            changes: Vec::new(),
            revision: 1,
            compacted: -1,
            leases: BTreeMap::new(),
            lease_clock: 0,
        }
    }

    fn state_at(&self, revision: i64) -> BTreeMap<Vec<u8>, ModelKv> {
        let mut state: BTreeMap<Vec<u8>, ModelKv> = BTreeMap::new();
        for (rev, key, value) in self.changes.iter().filter(|c| c.0 <= revision) {
            match value {
                Some((v, lease)) => {
                    let previous = state.get(key).cloned();
                    state.insert(
                        key.clone(),
                        ModelKv {
                            create: previous.as_ref().map_or(*rev, |p| p.create),
                            modified: *rev,
                            version: previous.as_ref().map_or(1, |p| p.version + 1),
                            value: v.clone(),
                            lease: *lease,
                        },
                    );
                }
                None => {
                    state.remove(key);
                }
            }
        }
        state
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        rev: i64,
        limit: i64,
    ) -> Result<ModelRange, ErrorCode> {
        let rev = if rev <= 0 { self.revision } else { rev };
        if rev > self.revision {
            return Err(ErrorCode::FutureRevision);
        }
        if rev < self.compacted {
            return Err(ErrorCode::Compacted);
        }
        let mut kvs: Vec<_> =
            self.state_at(rev).into_iter().filter(|(k, _)| in_span(k, start, end)).collect();
        let count = kvs.len() as i64;
        let more = limit > 0 && kvs.len() > limit as usize;
        if more {
            kvs.truncate(limit as usize);
        }
        Ok((kvs, count, more))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    Range(u8, u8, i64, i64),
    Compact(i64),
    /// if mod_revision(key) < n then put(key2, v) else delete(key2)
    Txn(u8, i64, u8, u8),
    /// Grant lease (id, ttl).
    Grant(i64, i64),
    Revoke(i64),
    /// Put (key, value) with lease id.
    PutLease(u8, u8, i64),
    /// Put (key, value) keeping the key's lease.
    PutIgnoreLease(u8, u8),
    /// Checkpoint (clock, lease id, expiry).
    LeaseCheckpoint(i64, i64, i64),
}

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];
const ENDS: [&str; 4] = ["", "c", "\0", "b"];

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0..5u8, 0..255u8).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..5u8, 0..4u8).prop_map(|(k, e)| Op::Delete(k, e)),
        4 => (0..5u8, 0..4u8, -1..12i64, 0..4i64).prop_map(|(k, e, r, l)| Op::Range(k, e, r, l)),
        1 => (0..14i64).prop_map(Op::Compact),
        2 => (0..5u8, 0..12i64, 0..5u8, 0..255u8).prop_map(|(k, n, k2, v)| Op::Txn(k, n, k2, v)),
        1 => (1..4i64, 1..100i64).prop_map(|(id, ttl)| Op::Grant(id, ttl)),
        1 => (1..4i64).prop_map(Op::Revoke),
        3 => (0..5u8, 0..255u8, 1..4i64).prop_map(|(k, v, id)| Op::PutLease(k, v, id)),
        1 => (0..5u8, 0..255u8).prop_map(|(k, v)| Op::PutIgnoreLease(k, v)),
        1 => (0..50_000i64, 1..4i64, 0..90_000i64)
            .prop_map(|(c, id, e)| Op::LeaseCheckpoint(c, id, e)),
    ];
    proptest::collection::vec(op, 1..60)
}

fn kv_matches(kv: &KeyValue, key: &[u8], m: &ModelKv) -> bool {
    kv.key.as_ref() == key
        && kv.create_revision == m.create
        && kv.mod_revision == m.modified
        && kv.version == m.version
        && kv.value.as_ref() == m.value.as_slice()
        && kv.lease == m.lease
}

fn check_range(store: &Store, model: &Model, k: u8, e: u8, rev: i64, limit: i64) {
    let (start, end) = (KEYS[k as usize], ENDS[e as usize]);
    let request = RangeRequest {
        key: b(start),
        range_end: b(end),
        revision: rev,
        limit,
        ..Default::default()
    };
    let got = store.snapshot().range(&request);
    match (got, model.range(start.as_bytes(), end.as_bytes(), rev, limit)) {
        (Ok(r), Ok((kvs, count, more))) => {
            assert_eq!(r.count, count, "count of {request:?}");
            assert_eq!(r.more, more);
            let count_only = RangeRequest { count_only: true, ..request.clone() };
            let counted = store.snapshot().range(&count_only).unwrap();
            assert_eq!((counted.count, counted.kvs.len()), (count, 0), "{count_only:?}");
            assert_eq!(r.kvs.len(), kvs.len(), "{request:?}: {r:?} vs {kvs:?}");
            for (kv, (key, m)) in r.kvs.iter().zip(kvs.iter()) {
                assert!(kv_matches(kv, key, m), "{kv:?} vs {key:?} {m:?}");
            }
        }
        (Err(e), Err(code)) => assert_eq!(e.code, code),
        (got, want) => panic!("{request:?}: store {got:?}, model {want:?}"),
    }
}

/// Watch history: every change to a span from a revision on, with the
/// version it replaced, against the model's list of changes.
fn check_events(store: &Store, model: &Model, k: u8, e: u8, from: i64) {
    let (start, end) = (KEYS[k as usize], ENDS[e as usize]);
    let span = corekv::mvcc::span::Span::new(&b(start), &b(end));
    let got = store.snapshot().events(&span, from, i64::MAX, true);
    if from < model.compacted {
        assert_eq!(got.err().map(|e| e.code), Some(ErrorCode::Compacted), "events from {from}");
        return;
    }
    let got = got.unwrap();
    let mut want: Vec<(i64, Vec<u8>, bool)> = model
        .changes
        .iter()
        .filter(|(rev, key, _)| *rev >= from && in_span(key, start.as_bytes(), end.as_bytes()))
        .map(|(rev, key, value)| (*rev, key.clone(), value.is_some()))
        .collect();
    want.sort();
    let summary: Vec<(i64, Vec<u8>, bool)> =
        got.iter().map(|e| (e.revision, e.key.to_vec(), e.kv.is_some())).collect();
    assert_eq!(summary, want, "events of [{start:?}, {end:?}) from {from}");
    for event in &got {
        let after = model.state_at(event.revision);
        let before = model.state_at(event.revision - 1);
        match (&event.kv, after.get(event.key.as_ref())) {
            (Some(kv), Some(m)) => assert!(kv_matches(kv, &event.key, m), "{event:?}"),
            (None, None) => {}
            other => panic!("event {event:?}: {other:?}"),
        }
        match (&event.prev_kv, before.get(event.key.as_ref())) {
            (Some(kv), Some(m)) => assert!(kv_matches(kv, &event.key, m), "prev of {event:?}"),
            (None, None) => {}
            other => panic!("prev of {event:?}: {other:?}"),
        }
    }
}

fn apply_model_put(model: &mut Model, key: &str, value: u8, lease: i64) {
    model.revision += 1;
    model.changes.push((model.revision, key.as_bytes().to_vec(), Some((vec![value], lease))));
}

/// The store's lease table (id, ttl, expiry) and clock equal the model's.
fn check_leases(leases: &corekv::mvcc::Leases, model: &Model, what: &str) {
    let got: Vec<(i64, (i64, i64))> =
        leases.iter().map(|(id, l)| (id, (l.ttl, l.expiry_ms))).collect();
    let want: Vec<(i64, (i64, i64))> = model.leases.iter().map(|(id, l)| (*id, *l)).collect();
    assert_eq!(got, want, "{what}: leases");
    assert_eq!(leases.clock_ms(), model.lease_clock, "{what}: lease clock");
}

/// Applies a put to store and model alike: its answer must be the model's.
fn put_both(store: &mut Store, model: &mut Model, request: PutRequest) {
    let key = std::str::from_utf8(&request.key).unwrap().to_string();
    let current = model.state_at(model.revision).get(key.as_bytes()).cloned();
    let want = if request.lease != 0 && !model.leases.contains_key(&request.lease) {
        Err(ErrorCode::LeaseNotFound)
    } else if request.ignore_lease && current.is_none() {
        Err(ErrorCode::KeyNotFound)
    } else {
        Ok(())
    };
    let value = request.value[0];
    let lease = match (&current, request.ignore_lease) {
        (Some(m), true) => m.lease,
        _ => request.lease,
    };
    match (store.apply(&Request::Put(request)), want) {
        (Ok(_), Ok(())) => apply_model_put(model, &key, value, lease),
        (Err(e), Err(code)) => assert_eq!(e.code, code),
        other => panic!("put {key}: {other:?}"),
    }
}

/// A store whose history moves into the page store as a member's does: every
/// few operations the in-memory layer is frozen and its changes folded into
/// a page store checkpoint, and a few operations later (as when the
/// checkpoint thread finishes) the store is rebased onto that checkpoint.
struct Layering {
    history: PagedHistory<MemPageFile>,
    /// A checkpoint written but not yet taken up by the store.
    done: Option<PagedView>,
    index: u64,
}

impl Layering {
    fn new() -> Layering {
        let store = PageStore::create(MemPageFile::new()).unwrap();
        Layering { history: PagedHistory::open(store).unwrap(), done: None, index: 0 }
    }

    /// Called after every operation: alternately freezes + folds, and rebases.
    fn step(&mut self, store: &mut Store, op_number: usize, model: &Model) {
        if op_number % 5 != 4 {
            return;
        }
        if let Some(view) = self.done.take() {
            store.rebase(view);
            return;
        }
        let state = store.snapshot();
        store.freeze();
        self.index += 1;
        self.history.apply(&store.take_changes()).unwrap();
        self.history
            .checkpoint(self.index, state.revision(), state.live_keys(), state.size_bytes())
            .unwrap();
        let view = self.history.view();
        check_leases(&view.leases().unwrap(), model, "page store checkpoint");
        self.done = Some(view);
    }
}

fn run(ops: Vec<Op>, layered: bool) {
    let mut store = Store::new();
    store.record_changes(true);
    let mut layering = layered.then(Layering::new);
    let mut model = Model::new();
    for (op_number, op) in ops.into_iter().enumerate() {
        if let Some(layering) = &mut layering {
            layering.step(&mut store, op_number, &model);
        }
        match op {
            Op::Put(k, v) => {
                let key = KEYS[k as usize];
                let request = Request::Put(PutRequest {
                    key: b(key),
                    value: Bytes::from(vec![v]),
                    prev_kv: true,
                    ..Default::default()
                });
                let before = model.state_at(model.revision).get(key.as_bytes()).cloned();
                let ResponseBody::Put(response) = store.apply(&request).unwrap() else { panic!() };
                match (response.prev_kv, before) {
                    (Some(kv), Some(m)) => assert!(kv_matches(&kv, key.as_bytes(), &m)),
                    (None, None) => {}
                    other => panic!("prev_kv {other:?}"),
                }
                apply_model_put(&mut model, key, v, 0);
            }
            Op::Delete(k, e) => {
                let (start, end) = (KEYS[k as usize], ENDS[e as usize]);
                let request = Request::DeleteRange(DeleteRangeRequest {
                    key: b(start),
                    range_end: b(end),
                    prev_kv: false,
                });
                let ResponseBody::DeleteRange(response) = store.apply(&request).unwrap() else {
                    panic!()
                };
                let doomed: Vec<_> = model
                    .state_at(model.revision)
                    .into_keys()
                    .filter(|key| in_span(key, start.as_bytes(), end.as_bytes()))
                    .collect();
                assert_eq!(response.deleted, doomed.len() as i64);
                if !doomed.is_empty() {
                    model.revision += 1;
                    for key in doomed {
                        model.changes.push((model.revision, key, None));
                    }
                }
            }
            Op::Range(k, e, rev, limit) => check_range(&store, &model, k, e, rev, limit),
            Op::Compact(rev) => {
                let got = store
                    .apply(&Request::Compact(CompactRequest { revision: rev, physical: false }));
                let want = if rev <= model.compacted {
                    Err(ErrorCode::Compacted)
                } else if rev > model.revision {
                    Err(ErrorCode::FutureRevision)
                } else {
                    Ok(())
                };
                match (got, want) {
                    (Ok(_), Ok(())) => model.compacted = rev,
                    (Err(e), Err(code)) => assert_eq!(e.code, code),
                    other => panic!("compact {rev}: {other:?}"),
                }
            }
            Op::Txn(k, n, k2, v) => {
                let (key, key2) = (KEYS[k as usize], KEYS[k2 as usize]);
                let request = Request::Txn(TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Less,
                        target: CompareTarget::Mod,
                        key: b(key),
                        number: n,
                        ..Default::default()
                    }],
                    success: vec![RequestOp::Put(PutRequest {
                        key: b(key2),
                        value: Bytes::from(vec![v]),
                        ..Default::default()
                    })],
                    failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                        key: b(key2),
                        ..Default::default()
                    })],
                });
                validate_request(&request).unwrap();
                let state = model.state_at(model.revision);
                let modified = state.get(key.as_bytes()).map_or(0, |m| m.modified);
                let ResponseBody::Txn(response) = store.apply(&request).unwrap() else { panic!() };
                assert_eq!(response.succeeded, modified < n);
                if modified < n {
                    apply_model_put(&mut model, key2, v, 0);
                } else if state.contains_key(key2.as_bytes()) {
                    model.revision += 1;
                    model.changes.push((model.revision, key2.as_bytes().to_vec(), None));
                }
            }
            Op::Grant(id, ttl) => {
                let got = store.apply(&Request::LeaseGrant(LeaseGrantRequest { ttl, id }));
                match (got, model.leases.contains_key(&id)) {
                    (Ok(ResponseBody::LeaseGrant(g)), false) => {
                        assert_eq!((g.id, g.ttl), (id, ttl));
                        model.leases.insert(id, (ttl, 0));
                    }
                    (Err(e), true) => assert_eq!(e.code, ErrorCode::LeaseExists),
                    other => panic!("grant {id}: {other:?}"),
                }
            }
            Op::Revoke(id) => {
                let got = store.apply(&Request::LeaseRevoke(id));
                match (got, model.leases.remove(&id)) {
                    (Ok(ResponseBody::LeaseRevoke), Some(_)) => {
                        let doomed: Vec<Vec<u8>> = model
                            .state_at(model.revision)
                            .into_iter()
                            .filter(|(_, m)| m.lease == id)
                            .map(|(key, _)| key)
                            .collect();
                        if !doomed.is_empty() {
                            model.revision += 1;
                            for key in doomed {
                                model.changes.push((model.revision, key, None));
                            }
                        }
                    }
                    (Err(e), None) => assert_eq!(e.code, ErrorCode::LeaseNotFound),
                    other => panic!("revoke {id}: {other:?}"),
                }
            }
            Op::PutLease(k, v, id) => {
                let request = PutRequest {
                    key: b(KEYS[k as usize]),
                    value: Bytes::from(vec![v]),
                    lease: id,
                    ..Default::default()
                };
                put_both(&mut store, &mut model, request);
            }
            Op::PutIgnoreLease(k, v) => {
                let request = PutRequest {
                    key: b(KEYS[k as usize]),
                    value: Bytes::from(vec![v]),
                    ignore_lease: true,
                    ..Default::default()
                };
                put_both(&mut store, &mut model, request);
            }
            Op::LeaseCheckpoint(clock_ms, id, expiry_ms) => {
                let deadlines = vec![(id, expiry_ms)];
                let checkpoint = LeaseCheckpointRequest { clock_ms, deadlines };
                store.apply(&Request::LeaseCheckpoint(checkpoint)).unwrap();
                model.lease_clock = model.lease_clock.max(clock_ms);
                // A checkpointed deadline only moves later.
                if let Some(lease) = model.leases.get_mut(&id) {
                    lease.1 = lease.1.max(expiry_ms);
                }
            }
        }
        check_leases(store.snapshot().leases(), &model, "store");
        assert_eq!(store.revision(), model.revision);
        store.check_invariants();
    }
    // Every key and revision still readable agrees with the model at the end.
    for rev in (model.compacted.max(1))..=model.revision {
        for k in 0..5 {
            check_range(&store, &model, k, 2, rev, 0);
        }
    }
    // So does the history a watch reads: from below the compaction point
    // (refused), and from just above it on (at the compaction point itself
    // a delete there is gone, as in etcd).
    for from in (model.compacted - 1).max(1)..=model.revision + 1 {
        if from == model.compacted {
            continue;
        }
        for (k, e) in [(0, 2), (1, 1), (2, 0), (0, 3), (4, 2)] {
            check_events(&store, &model, k, e, from);
        }
    }
    // The leases (key sets too) come back from the page store: loaded into
    // memory, and read in place.
    if let Some(mut layering) = layering {
        let state = store.snapshot();
        store.freeze();
        layering.history.apply(&store.take_changes()).unwrap();
        let index = layering.index + 1;
        let (revision, live, size) = (state.revision(), state.live_keys(), state.size_bytes());
        layering.history.checkpoint(index, revision, live, size).unwrap();
        let loaded = layering.history.load().unwrap();
        assert_eq!(loaded.snapshot().leases(), state.leases(), "leases loaded");
        loaded.check_invariants();
        let in_place = Store::with_base(layering.history.view()).unwrap();
        assert_eq!(in_place.snapshot().leases(), state.leases(), "leases read in place");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn store_matches_model(ops in ops()) {
        run(ops, false);
    }

    /// The same, with history in frozen layers and page store checkpoints.
    #[test]
    fn layered_store_matches_model(ops in ops()) {
        run(ops, true);
    }
}
