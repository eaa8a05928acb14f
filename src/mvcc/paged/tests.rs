//! The paged history against the in-memory store.

use proptest::prelude::*;

use super::*;
use crate::pagestore::MemPageFile;
use crate::types::*;

/// Keys that exercise escaping (zero bytes), shared prefixes and long
/// keys, whose stems end in a hash, next to short keys with their prefix.
fn keys() -> Vec<Bytes> {
    let long = |fill: u8, n: usize, tail: &[u8]| {
        let mut key = vec![fill; n];
        key.extend_from_slice(tail);
        Bytes::from(key)
    };
    vec![
        Bytes::from_static(b"a"),
        Bytes::from_static(b"a\0"),
        Bytes::from_static(b"a\0b"),
        Bytes::from_static(b"ab"),
        Bytes::from_static(b"\0"),
        Bytes::from_static(b"b"),
        long(b'L', 950, b""),
        long(b'L', 950, b"\x01"),
        long(b'L', 1000, b"x"),
        long(b'L', 1000, b"y"),
        long(b'L', 959, b"\0\0\0"),
        long(0, 600, b"z"),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u16),
    Delete(usize, usize),
    /// Puts two keys in one revision.
    TxnPut(usize, usize),
    /// Compacts at (revision × n / 8).
    Compact(u8),
    /// Folds the changes into the page store and checkpoints.
    Checkpoint,
    /// Checkpoints, then opens the store again from its durable image.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let n = keys().len();
    prop_oneof![
        6 => (0..n, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..n, 0..n).prop_map(|(a, b)| Op::Delete(a, b)),
        1 => (0..n, 0..n).prop_map(|(a, b)| Op::TxnPut(a, b)),
        1 => (1..=8u8).prop_map(Op::Compact),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
    ]
}

fn put_op(key: &Bytes, value: u16) -> PutRequest {
    // Some values go to the page store's overflow pages.
    let bytes = if value.is_multiple_of(7) {
        vec![value as u8; 2000 + value as usize % 5000]
    } else {
        value.to_le_bytes().to_vec()
    };
    PutRequest { key: key.clone(), value: Bytes::from(bytes), ..Default::default() }
}

fn history(state: &Snapshot) -> Vec<(Bytes, Vec<ExportedVersion>)> {
    state.export().map(|(key, versions)| (key.clone(), versions)).collect()
}

/// The index a state implies: every version at or after the compaction
/// point, by revision then key.
fn expected_index(state: &Snapshot) -> Vec<(i64, Bytes)> {
    let mut out: Vec<(i64, Bytes)> = history(state)
        .into_iter()
        .flat_map(|(key, versions)| {
            versions
                .into_iter()
                .filter(|v| v.revision >= state.compact_revision())
                .map(move |v| (v.revision, key.clone()))
        })
        .collect();
    out.sort();
    out
}

fn sorted(mut index: Vec<(i64, Bytes)>) -> Vec<(i64, Bytes)> {
    index.sort();
    index
}

fn check(paged: &mut PagedHistory<MemPageFile>, model: &Snapshot) {
    let loaded = paged.load().expect("loads");
    loaded.check_invariants();
    let state = loaded.snapshot();
    assert_eq!(state.revision(), model.revision());
    assert_eq!(state.compact_revision(), model.compact_revision());
    assert_eq!(history(&state), history(model));
    assert_eq!(state.size_bytes(), model.size_bytes());
    let index: Vec<(i64, Bytes)> = paged
        .view()
        .changes_between(model.compact_revision(), i64::MAX, |_| true)
        .unwrap()
        .into_iter()
        .map(|(revision, _, key, _)| (revision, key))
        .collect();
    assert_eq!(sorted(index), expected_index(model));
    // A store over the checkpoint, loading nothing, exports the same.
    let over = Store::with_base(paged.view()).unwrap().snapshot();
    let mut exported = Vec::new();
    over.for_each_history(|key, versions| {
        exported.push((key, versions));
        Ok(())
    })
    .unwrap();
    assert_eq!(exported, history(model));
    assert_eq!((over.live_keys(), over.size_bytes()), (model.live_keys(), model.size_bytes()));
    paged.page_store_mut().check_invariants().unwrap();
}

/// Every range over the test keys at several revisions: the view's
/// answer is the in-memory store's (read on another thread).
fn check_view(view: PagedView, model: &Snapshot) {
    let model = model.clone();
    std::thread::spawn(move || {
        // Reading ahead changes what is cached, never what is read.
        let all_keys = keys();
        let ahead: Vec<(&[u8], bool)> =
            all_keys.iter().enumerate().map(|(i, key)| (&key[..], i % 2 == 0)).collect();
        view.prefetch(&ahead);
        for key in &all_keys {
            let want = model.visible(key, model.revision()).unwrap();
            assert_eq!(view.get_at(key, model.revision()).unwrap(), want, "{key:?} read ahead");
            // What a put reads: the same version, its value left out for
            // keys that are not long (their key entry holds the rest).
            let long = stem(key).1;
            let want =
                want.map(|kv| KeyValue { value: if long { kv.value } else { Bytes::new() }, ..kv });
            assert_eq!(view.get_without_value(key, model.revision()).unwrap(), want, "{key:?}");
        }
        let mut bounds: Vec<Bytes> = keys();
        bounds.push(Bytes::from_static(b""));
        bounds.push(Bytes::from_static(b"b\0"));
        bounds.sort();
        let low = model.compact_revision().max(1);
        let revisions = [low, (low + model.revision()) / 2, model.revision()];
        // The version log a watch reads, against the in-memory history.
        let all = crate::mvcc::span::Span::Interval(Bytes::new(), None);
        for from in [model.compact_revision() + 1, low + 1, model.revision()] {
            let to = (from + 3).min(model.revision());
            let want: Vec<(i64, Bytes, Option<KeyValue>)> = model
                .events(&all, from, to, false)
                .unwrap()
                .into_iter()
                .map(|e| (e.revision, e.key, e.kv))
                .collect();
            // In the same order: (revision, sub), the order written.
            let without_sub = |changes: Vec<super::view::Change>| {
                changes.into_iter().map(|(r, _, k, kv)| (r, k, kv)).collect::<Vec<_>>()
            };
            let got = without_sub(view.changes_between(from, to, |_| true).unwrap());
            assert!(got == want, "changes {from}..={to}");
            // A watch of some keys only: puts and deletes of the others are
            // skipped, the rest come as they are.
            let some = |key: &[u8]| key.first().is_some_and(|b| b % 2 == 1);
            let got = without_sub(view.changes_between(from, to, |key| some(key)).unwrap());
            let want: Vec<_> = want.into_iter().filter(|change| some(&change.1)).collect();
            assert!(got == want, "changes {from}..={to} of some keys");
        }
        for revision in revisions {
            for (i, start) in bounds.iter().enumerate() {
                for end in bounds[i..].iter().map(Some).chain([None]) {
                    if end.is_some_and(|e| e.as_ref() == b"\0") {
                        continue; // etcd reads a range_end of "\0" as "no end"
                    }
                    let request = RangeRequest {
                        key: start.clone(),
                        range_end: end.cloned().unwrap_or(Bytes::from_static(b"\0")),
                        revision,
                        ..Default::default()
                    };
                    let want = model.range(&request).unwrap().kvs;
                    let mut got = Vec::new();
                    view.range_at(start, end.map(|e| e.as_ref()), revision, |kv| {
                        got.push(kv);
                        true
                    })
                    .unwrap();
                    let short = |kvs: &[KeyValue]| -> Vec<(usize, i64)> {
                        kvs.iter().map(|kv| (kv.key.len(), kv.mod_revision)).collect()
                    };
                    assert!(
                        got == want,
                        "[{} B, {:?} B) at {revision}: {:?} != {:?}",
                        start.len(),
                        end.map(|e| e.len()),
                        short(&got),
                        short(&want)
                    );
                }
            }
        }
    })
    .join()
    .unwrap();
}

fn run(ops: Vec<Op>) {
    let mut model = Store::new();
    model.record_changes(true);
    let mut paged = PagedHistory::open(PageStore::create(MemPageFile::new()).unwrap()).unwrap();
    let mut index = 0u64;
    let mut durable = model.snapshot();
    for op in ops {
        index += 1;
        match op {
            Op::Checkpoint | Op::Reopen => {
                paged.apply(&model.take_changes()).unwrap();
                paged
                    .checkpoint(
                        index,
                        model.revision(),
                        model.snapshot().live_keys(),
                        model.snapshot().size_bytes(),
                    )
                    .unwrap();
                durable = model.snapshot();
                check(&mut paged, &durable);
                assert_eq!(paged.applied_index(), index);
                check_view(paged.view(), &durable);
            }
            _ => apply_op(&mut model, &op),
        }
        if matches!(op, Op::Reopen) {
            let image = paged.page_store().file().durable_image();
            paged = PagedHistory::open(PageStore::open(image, 1 << 20).unwrap()).unwrap();
            check(&mut paged, &durable);
        }
    }
    paged.apply(&model.take_changes()).unwrap();
    paged
        .checkpoint(
            index + 1,
            model.revision(),
            model.snapshot().live_keys(),
            model.snapshot().size_bytes(),
        )
        .unwrap();
    check(&mut paged, &model.snapshot());
}

fn apply_op(store: &mut Store, op: &Op) {
    let keys = keys();
    match *op {
        Op::Put(k, v) => {
            store.apply(&Request::Put(put_op(&keys[k], v))).unwrap();
        }
        Op::Delete(a, b) => {
            let (start, end) = (keys[a.min(b)].clone(), keys[a.max(b)].clone());
            let range_end = if a == b { Bytes::new() } else { end };
            let d = DeleteRangeRequest { key: start, range_end, prev_kv: false };
            store.apply(&Request::DeleteRange(d)).unwrap();
        }
        Op::TxnPut(a, b) => {
            let mut success = vec![RequestOp::Put(put_op(&keys[a], 1))];
            if a != b {
                success.push(RequestOp::Put(put_op(&keys[b], 2)));
            }
            let t = TxnRequest { compare: vec![], success, failure: vec![] };
            store.apply(&Request::Txn(t)).unwrap();
        }
        Op::Compact(n) => {
            let at = store.revision() * i64::from(n) / 8;
            let _ = store.compact(at.max(1));
        }
        Op::Checkpoint | Op::Reopen => {}
    }
}

/// A member that starts serving over its checkpoint and then takes up the
/// checkpoint loaded into memory: `before` is in the checkpoint, `after`
/// is applied over it (compactions deferred) before the loaded copy is
/// adopted. The result is the in-memory store that applied everything.
fn adopt(before: Vec<Op>, after: Vec<Op>) {
    let mut model = Store::new();
    model.record_changes(true);
    for op in &before {
        apply_op(&mut model, op);
    }
    let mut paged = PagedHistory::open(PageStore::create(MemPageFile::new()).unwrap()).unwrap();
    paged.apply(&model.take_changes()).unwrap();
    let state = model.snapshot();
    paged.checkpoint(1, state.revision(), state.live_keys(), state.size_bytes()).unwrap();
    let mut layered = Store::with_base(paged.view()).unwrap();
    layered.record_changes(true);
    for op in &after {
        apply_op(&mut model, op);
        apply_op(&mut layered, op);
    }
    // Leases granted after the checkpoint, keys attached, one revoked
    // (deleting its key).
    let keys = keys();
    for store in [&mut model, &mut layered] {
        for id in [7, 8] {
            store.apply(&Request::LeaseGrant(LeaseGrantRequest { ttl: 100, id })).unwrap();
        }
        for (key, lease) in [(&keys[0], 7), (&keys[1], 8), (&keys[2], 8)] {
            let put = PutRequest { lease, ..put_op(key, 3) };
            store.apply(&Request::Put(put)).unwrap();
        }
        store.apply(&Request::LeaseRevoke(8)).unwrap();
    }
    let recorded = layered.take_changes();
    let loaded = paged.view().load().unwrap();
    // A store that is not the checkpoint loaded is refused.
    let mut probe = Store::with_base(paged.view()).unwrap();
    assert!(probe.adopt_loaded(Store::from_snapshot(probe.snapshot())).is_err());
    if state.revision() > 1 {
        assert!(probe.adopt_loaded(Store::new()).is_err());
    }
    layered.adopt_loaded(loaded).unwrap();
    assert!(layered.take_changes().is_empty(), "adopting records no change");
    assert!(
        !recorded.is_empty() || after.iter().all(|op| matches!(op, Op::Checkpoint | Op::Reopen))
    );
    layered.check_invariants();
    let (got, want) = (layered.snapshot(), model.snapshot());
    assert!(!got.is_layered());
    assert_eq!(
        (got.revision(), got.compact_revision()),
        (want.revision(), want.compact_revision())
    );
    assert_eq!(history(&got), history(&want));
    assert_eq!((got.live_keys(), got.size_bytes()), (want.live_keys(), want.size_bytes()));
    assert_eq!(got.leases(), want.leases());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_paged_history_is_the_in_memory_history(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }

    #[test]
    fn a_store_over_its_checkpoint_takes_up_the_checkpoint_loaded(
        before in proptest::collection::vec(op(), 0..60),
        after in proptest::collection::vec(op(), 0..60),
    ) {
        adopt(before, after);
    }
}

#[test]
fn stems_sort_as_their_keys_and_spell_them_back() {
    let mut short: Vec<Bytes> = keys().into_iter().filter(|k| !stem(k).1).collect();
    short.sort();
    let stems: Vec<Vec<u8>> = short.iter().map(|k| stem(k).0).collect();
    assert!(stems.windows(2).all(|w| w[0] < w[1]), "stems in key order");
    for (key, stem) in short.iter().zip(&stems) {
        assert_eq!(key_of_stem(stem).unwrap().as_deref(), Some(key.as_ref()));
    }
    let (long, is_long) = stem(&keys()[8]);
    assert!(is_long && key_of_stem(&long).unwrap().is_none());
    assert!(long.len() <= stem_key_bytes_max + 18);
}

#[test]
fn replace_all_then_load_is_the_state() {
    let mut model = Store::new();
    for (i, key) in keys().iter().enumerate() {
        model.apply(&Request::Put(put_op(key, i as u16))).unwrap();
        model.apply(&Request::Put(put_op(key, 7 * i as u16))).unwrap();
    }
    model.compact(10).unwrap();
    // A txn writing a key, then a smaller one: a rewrite keeps that order
    // (the sub-revisions), which `check` compares with the model's events.
    let (high, low) = (keys()[3].clone(), keys()[1].clone());
    assert!(high > low);
    let success = vec![RequestOp::Put(put_op(&high, 1)), RequestOp::Put(put_op(&low, 2))];
    model.apply(&Request::Txn(TxnRequest { compare: vec![], success, failure: vec![] })).unwrap();
    let mut paged = PagedHistory::open(PageStore::create(MemPageFile::new()).unwrap()).unwrap();
    paged
        .apply(&[HistoryChange::Version {
            key: Bytes::from_static(b"stale"),
            revision: 2,
            kv: Some(KeyValue {
                key: Bytes::from_static(b"stale"),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: Bytes::from_static(b"old"),
                lease: 0,
            }),
        }])
        .unwrap();
    // A delete of a key never written is refused: it could not name its key.
    let never = HistoryChange::Version { key: Bytes::from_static(b"never"), revision: 3, kv: None };
    assert!(paged.apply(&[never]).is_err_and(|e| e.to_string().contains("never written")));
    paged.replace_all(&model.snapshot()).unwrap();
    paged
        .checkpoint(
            9,
            model.revision(),
            model.snapshot().live_keys(),
            model.snapshot().size_bytes(),
        )
        .unwrap();
    check(&mut paged, &model.snapshot());
}

#[test]
fn damaged_records_are_errors_not_panics() {
    // Records of versions at revision 5: varints (the first: the previous
    // version's distance × 4 + 2 if its sub follows + 1 for a delete).
    let records = [
        vec![],
        vec![0],                                                          // a put cut short
        vec![0, 5, 1, 0, 0],       // created 5 below revision 5: at 0
        vec![0, 0, 0, 0, 0],       // version 0
        vec![0, 0, 1, 0x80],       // a lease varint cut short
        vec![0, 0, 1, 0, 9, b'k'], // a key cut short
        vec![0, 0, 1, 0, 1, b'j'], // another key than the one read
        vec![1],                   // a delete with no previous version
        vec![4 | 1, 5],            // a delete with a value
        vec![20 | 1],              // a previous version at 0
        vec![4 | 2 | 1],           // a previous version's sub missing
        vec![4 | 2 | 1, 0],        // sub 0 spelt out
        vec![2, 0, 1, 0, 1, b'k'], // a sub with no previous version
        vec![0x81, 0],             // a non-canonical varint
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // > 64 bits
    ];
    let key = Bytes::from_static(b"k");
    let at = At::new(5, 0);
    let delete = decode_record(&[4 | 2 | 1, 3], at, None).unwrap();
    assert!(delete.is_delete());
    assert_eq!((delete.previous, delete.key), (Some(At::new(4, 3)), None));
    assert_eq!(decode_record(&[4 | 1], at, None).unwrap().previous, Some(At::new(4, 0)));
    let put = decode_record(&[0, 2, 3, 3, 1, b'k', b'v'], at, Some(&key)).unwrap();
    let kv = put.version.kv.unwrap();
    assert_eq!((kv.create_revision, kv.version, kv.lease, &kv.value[..]), (3, 3, -2, &b"v"[..]));
    assert_eq!((put.key, put.previous), (Some(key.clone()), None));
    // Every record encodes and decodes back, leases of any sign included.
    for lease in [0, 1, -1, i64::MAX, i64::MIN] {
        let kv = KeyValue {
            key: key.clone(),
            create_revision: 1,
            mod_revision: 1_000_000_007,
            version: 9,
            value: Bytes::from_static(b"value"),
            lease,
        };
        let at = At::new(kv.mod_revision, 300);
        let previous = Some(At::new(77, u64::MAX));
        let record = encode_record(&key, at, previous, Some(&kv));
        let back = decode_record(&record, at, None).unwrap();
        assert_eq!((back.previous, back.version.kv, back.at), (previous, Some(kv), at));
    }
    for record in records {
        assert!(decode_record(&record, at, Some(&key)).is_err(), "{record:?}");
    }
    let bad_entries: [&[u8]; 12] = [
        &[],
        &[0],                                                       // revision 0
        &[0x87],                                                    // continuation past the end
        &[4 << 2 | 2, 1],                                           // a byte after a delete
        &[0x87, 0],       // non-canonical (a zero last byte)
        &[4 << 2 | 3, 0], // a sub flagged, and 0
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 2], // past 64 bits
        &[4 << 2],        // a put without its create revision, version and lease
        &[4 << 2, 0, 1],  // a put without its lease
        &[4 << 2, 4, 1, 0], // created at revision 0
        &[4 << 2, 0, 0, 0], // version 0
        &[4 << 2, 0, 1, 0, 0], // a byte after the lease
    ];
    for entry in bad_entries {
        assert!(decode_newest(entry).is_err(), "{entry:?}");
    }
    for revision in [1, 7, 127, 128, 300, 1 << 20, revision_max] {
        for deleted in [false, true] {
            for sub in [0, 1, 300, u64::MAX] {
                for (create, version, lease) in [(1, 1, 0), (revision, 1, -1), (1, i64::MAX, 7)] {
                    let at = At::new(revision, sub);
                    let kv = KeyValue {
                        key: Bytes::from_static(b"k"),
                        create_revision: create,
                        mod_revision: revision,
                        version,
                        value: Bytes::new(),
                        lease,
                    };
                    let newest = Newest::of(at, (!deleted).then_some(&kv));
                    let entry = encode_newest(newest);
                    assert_eq!(decode_newest(&entry).unwrap(), newest, "{entry:?}");
                }
            }
        }
    }
    assert_eq!(encode_newest(Newest::of(At::new(300, 0), None)).len(), 2);
    // Version keys sort by (revision, sub) and split back.
    let ats = [At::new(1, 0), At::new(1, 1), At::new(1, 255), At::new(1, 256), At::new(2, 0)];
    let keys: Vec<Vec<u8>> = ats.iter().map(|at| version_key(*at)).collect();
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
    for (at, tree_key) in ats.iter().zip(&keys) {
        assert_eq!(split_version_key(tree_key).unwrap(), *at);
        assert!(revision_bound(at.revision) < *tree_key);
        assert!(*tree_key < revision_bound(at.revision + 1));
    }
    assert_eq!(version_key(At::new(9, 0)).len(), 10, "sub 0 costs one byte");
    for tree_key in
        [&b"v\0\0\0\0\0\0\0\x01"[..], b"v\0\0\0\0\0\0\0\x01\x01\0", b"v\0\0\0\0\0\0\0\0\0"]
    {
        assert!(split_version_key(tree_key).is_err(), "{tree_key:?}");
    }
    for stem in [&[][..], &[0], &[0, 3], &[b'a', 0, 1, 7], &[0, 2, 1]] {
        assert!(key_of_stem(stem).is_err(), "{stem:?}");
    }
}

#[test]
fn a_store_in_another_layout_is_refused() {
    // The first layout: versions under 'h', no layout entry.
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    store.insert(b"h\x61\0\x01\xff\xff\xff\xff\xff\xff\xff\xfe", &[1, 0]).unwrap();
    store.insert(meta_revision, &2i64.to_be_bytes()).unwrap();
    let error = PagedHistory::open(store).err().expect("refused");
    assert!(error.is_corruption() && error.to_string().contains("layout 0"), "{error}");
    // The second: fixed-width record fields, whose records this build would
    // misread.
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    store.insert(meta_layout, &2i64.to_be_bytes()).unwrap();
    let error = PagedHistory::open(store).err().expect("refused");
    assert!(error.is_corruption() && error.to_string().contains("layout 2"), "{error}");
    // The third: fixed-width key entries.
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    store.insert(meta_layout, &3i64.to_be_bytes()).unwrap();
    let error = PagedHistory::open(store).err().expect("refused");
    assert!(error.is_corruption() && error.to_string().contains("layout 3"), "{error}");
    // The fourth: versions under (revision, stem), deletes holding their key.
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    store.insert(meta_layout, &4i64.to_be_bytes()).unwrap();
    let error = PagedHistory::open(store).err().expect("refused");
    assert!(error.is_corruption() && error.to_string().contains("layout 4"), "{error}");
    // A store this layout wrote opens; so does an empty one.
    let mut paged = PagedHistory::open(PageStore::create(MemPageFile::new()).unwrap()).unwrap();
    paged.checkpoint(1, 1, 0, 0).unwrap();
    let image = paged.page_store().file().durable_image();
    assert!(PagedHistory::open(PageStore::open(image, 1 << 20).unwrap()).is_ok());
}
