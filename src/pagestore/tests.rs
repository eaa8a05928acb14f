//! Whole-store tests: a model check against `BTreeMap` with checkpoints,
//! reopens and crashes at random points; free-page reuse under churn; damaged
//! pages; snapshot isolation; eviction; large values; a real file.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;

use super::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys of many sizes (up to the maximum) so that nodes split and combine
/// often; the numeric prefix keeps them unique and ordered.
fn key(k: u16) -> Vec<u8> {
    let mut key = format!("{k:05}").into_bytes();
    let pad = match k % 50 {
        7 => key_bytes_max - key.len(),
        0..=14 => 500 + (k as usize * 13) % 500,
        _ => (k as usize * 37) % 200,
    };
    key.resize(key.len() + pad, b'k');
    key
}

fn value(k: u16, value_bytes: usize, seed: u8) -> Vec<u8> {
    (0..value_bytes).map(|i| seed.wrapping_add((i as u8) ^ (k as u8))).collect()
}

fn all(store: &mut PageStore<MemPageFile>) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.range(Bound::Unbounded, Bound::Unbounded, 0).unwrap()
}

fn assert_equals_model(store: &mut PageStore<MemPageFile>, model: &Model) {
    assert_eq!(store.len(), model.len() as u64);
    let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
    assert!(all(store) == expected, "store differs from the model");
}

fn bound(k: Option<u16>, included: bool) -> Bound<Vec<u8>> {
    match k {
        None => Bound::Unbounded,
        Some(k) if included => Bound::Included(key(k)),
        Some(k) => Bound::Excluded(key(k)),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        k: u16,
        value_bytes: usize,
        seed: u8,
    },
    Remove {
        k: u16,
    },
    /// Inserts `count` consecutive keys: grows the tree by levels quickly.
    InsertMany {
        k: u16,
        count: u16,
        value_bytes: usize,
    },
    /// Removes `count` consecutive keys: shrinks it as quickly.
    RemoveMany {
        k: u16,
        count: u16,
    },
    Get {
        k: u16,
    },
    Range {
        start: Option<u16>,
        end: Option<u16>,
        inclusive: bool,
        limit: usize,
    },
    Checkpoint,
    Reopen,
    Crash {
        seed: u64,
        torn: bool,
    },
    /// A checkpoint cut off after `calls` writes and syncs, then a crash.
    CheckpointCrash {
        calls: u64,
        seed: u64,
        torn: bool,
    },
    Snapshot,
    ReadSnapshot {
        which: usize,
        k: u16,
    },
    DropSnapshot {
        which: usize,
    },
}

/// Keys are drawn from 0..keys_max.
const keys_max: u16 = 600;

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = 0u16..keys_max;
    let value_bytes = prop_oneof![8 => 0usize..300, 1 => 900usize..1100, 1 => 4000usize..13000];
    prop_oneof![
        12 => (k.clone(), value_bytes, any::<u8>())
            .prop_map(|(k, value_bytes, seed)| Op::Insert { k, value_bytes, seed }),
        8 => k.clone().prop_map(|k| Op::Remove { k }),
        1 => (k.clone(), 1u16..150, 0usize..200)
            .prop_map(|(k, count, value_bytes)| Op::InsertMany { k, count, value_bytes }),
        1 => (k.clone(), 1u16..200).prop_map(|(k, count)| Op::RemoveMany { k, count }),
        3 => k.clone().prop_map(|k| Op::Get { k }),
        2 => (proptest::option::of(k.clone()), proptest::option::of(k.clone()), any::<bool>(),
              0usize..20)
            .prop_map(|(start, end, inclusive, limit)| Op::Range { start, end, inclusive, limit }),
        3 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => (any::<u64>(), any::<bool>()).prop_map(|(seed, torn)| Op::Crash { seed, torn }),
        2 => (0u64..40, any::<u64>(), any::<bool>())
            .prop_map(|(calls, seed, torn)| Op::CheckpointCrash { calls, seed, torn }),
        1 => Just(Op::Snapshot),
        2 => (any::<usize>(), k.clone()).prop_map(|(which, k)| Op::ReadSnapshot { which, k }),
        1 => any::<usize>().prop_map(|which| Op::DropSnapshot { which }),
    ]
}

/// The store under test, the model of its working tree, and the model as of
/// the last completed checkpoint.
struct Harness {
    store: PageStore<MemPageFile>,
    model: Model,
    durable: Model,
    applied_index: u64,
    snapshots: Vec<(Snapshot, Model)>,
}

/// Small enough that the model test evicts and re-reads pages all the time.
const harness_cache_bytes: usize = 6 * page_bytes;

impl Harness {
    fn new() -> Harness {
        let mut store = PageStore::create(MemPageFile::new()).unwrap();
        store.set_cache_bytes(harness_cache_bytes);
        Harness {
            store,
            model: Model::new(),
            durable: Model::new(),
            applied_index: 0,
            snapshots: Vec::new(),
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Insert { k, value_bytes, seed } => {
                let value = value(k, value_bytes, seed);
                let old = self.store.insert(&key(k), &value).unwrap();
                assert_eq!(old, self.model.insert(key(k), value));
            }
            Op::Remove { k } => {
                assert_eq!(self.store.remove(&key(k)).unwrap(), self.model.remove(&key(k)));
            }
            Op::InsertMany { k, count, value_bytes } => {
                for k in k..(k + count).min(keys_max) {
                    let value = value(k, value_bytes, count as u8);
                    let old = self.store.insert(&key(k), &value).unwrap();
                    assert_eq!(old, self.model.insert(key(k), value));
                }
            }
            Op::RemoveMany { k, count } => {
                for k in k..(k + count).min(keys_max) {
                    assert_eq!(self.store.remove(&key(k)).unwrap(), self.model.remove(&key(k)));
                }
            }
            Op::Get { k } => {
                assert_eq!(self.store.get(&key(k)).unwrap(), self.model.get(&key(k)).cloned())
            }
            Op::Range { start, end, inclusive, limit } => self.range(start, end, inclusive, limit),
            Op::Checkpoint => {
                self.applied_index += 1;
                self.store.checkpoint(self.applied_index).unwrap();
                self.durable = self.model.clone();
            }
            Op::Reopen => {
                let image = self.store.file().durable_image();
                self.reopen(image, self.store.generation());
            }
            Op::Crash { seed, torn } => {
                let image = self.store.file().crash(seed, torn);
                self.reopen(image, self.store.generation());
            }
            Op::CheckpointCrash { calls, seed, torn } => self.checkpoint_crash(calls, seed, torn),
            Op::Snapshot => {
                let snapshot = self.store.snapshot();
                self.snapshots.push((snapshot, self.durable.clone()));
            }
            Op::ReadSnapshot { which, k } => self.read_snapshot(which, k),
            Op::DropSnapshot { which } => {
                if !self.snapshots.is_empty() {
                    self.snapshots.remove(which % self.snapshots.len());
                }
            }
        }
        self.store.check_invariants().unwrap();
        assert_eq!(self.store.len(), self.model.len() as u64);
    }

    fn range(&mut self, start: Option<u16>, end: Option<u16>, inclusive: bool, limit: usize) {
        let (start, end) = (bound(start, inclusive), bound(end, !inclusive));
        let got = self.store.range(as_ref(&start), as_ref(&end), limit).unwrap();
        let reversed = matches!((&start, &end), (Bound::Included(s) | Bound::Excluded(s),
            Bound::Included(e) | Bound::Excluded(e)) if s > e);
        if reversed {
            // BTreeMap::range panics here; the store answers nothing.
            assert!(got.is_empty());
            return;
        }
        let take = if limit == 0 { usize::MAX } else { limit };
        let expected: Vec<_> = self
            .model
            .range((start, end))
            .take(take)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(got == expected, "range differs");
    }

    fn checkpoint_crash(&mut self, calls: u64, seed: u64, torn: bool) {
        let before = self.store.generation();
        self.store.file_mut().fail_after(calls);
        let completed = self.store.checkpoint(self.applied_index + 1).is_ok();
        let image = self.store.file().crash(seed, torn);
        self.snapshots.clear();
        self.store = PageStore::open(image, harness_cache_bytes).unwrap();
        if self.store.generation() == before + 1 {
            self.applied_index += 1;
            self.durable = self.model.clone();
        } else {
            assert!(!completed, "a completed checkpoint was lost");
        }
        self.reopen_checks(before + u64::from(self.store.generation() > before));
    }

    fn reopen(&mut self, image: MemPageFile, generation: u64) {
        self.snapshots.clear();
        self.store = PageStore::open(image, harness_cache_bytes).unwrap();
        self.reopen_checks(generation);
    }

    fn reopen_checks(&mut self, generation: u64) {
        assert_eq!(self.store.generation(), generation);
        assert_eq!(self.store.applied_index(), self.applied_index);
        self.model = self.durable.clone();
        assert_equals_model(&mut self.store, &self.model);
    }

    fn read_snapshot(&mut self, which: usize, k: u16) {
        if self.snapshots.is_empty() {
            return;
        }
        let (snapshot, model) = &self.snapshots[which % self.snapshots.len()];
        assert_eq!(snapshot.get(&key(k)).unwrap(), model.get(&key(k)).cloned());
        let entries = snapshot.range(Bound::Unbounded, Bound::Unbounded, 0);
        let expected: Vec<_> = model.clone().into_iter().collect();
        assert!(entries.unwrap() == expected, "snapshot differs from its model");
        assert_eq!(snapshot.len(), model.len() as u64);
    }
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_a_btreemap_through_checkpoints_reopens_and_crashes(
        ops in proptest::collection::vec(op_strategy(), 1..400)
    ) {
        let mut harness = Harness::new();
        for op in ops {
            harness.step(op);
        }
    }
}

fn numbered_key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn filled(count: u32, value_bytes: usize, seed: u8) -> (PageStore<MemPageFile>, Model) {
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    let mut model = Model::new();
    for i in 0..count {
        let value = value(i as u16, value_bytes, seed);
        store.insert(&numbered_key(i), &value).unwrap();
        model.insert(numbered_key(i), value);
    }
    (store, model)
}

#[test]
fn churn_reuses_free_pages_instead_of_growing_the_file() {
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    let mut after_first_round = 0;
    for round in 0..10u32 {
        for i in 0..5000 {
            store.insert(&numbered_key(i), &value(i as u16, 100, round as u8)).unwrap();
        }
        // Checkpointed pages are clean: deleting them makes them pending, not free.
        store.checkpoint(2 * u64::from(round) + 1).unwrap();
        for i in 0..5000 {
            assert!(store.remove(&numbered_key(i)).unwrap().is_some());
        }
        store.checkpoint(2 * u64::from(round) + 2).unwrap();
        store.check_invariants().unwrap();
        assert_eq!((store.len(), store.height), (0, 1));
        if round == 0 {
            after_first_round = store.page_count();
        }
        assert!(store.page_count() <= 2 * after_first_round, "round {round}: file grows");
    }
    let file = store.into_file().durable_image();
    let mut store = PageStore::open(file, 0).unwrap();
    store.check_invariants().unwrap();
    // Listed pages come back pending: the older meta may still reference
    // some of them. One checkpoint later they are free.
    let listed = store.free_page_count() + store.pending_page_count();
    // All but the two metas, the root and the free-list chain's own pages.
    let unlisted = store.page_count() - listed;
    assert!(unlisted <= 8, "freed pages are listed: {listed} of {}", store.page_count());
    store.checkpoint(100).unwrap();
    assert!(store.free_page_count() + 8 >= store.page_count(), "listed pages free again");
}

#[test]
fn a_damaged_tree_page_is_an_error_naming_it() {
    let (mut store, _) = filled(2000, 30, 1);
    store.checkpoint(1).unwrap();
    assert!(store.height >= 2);
    let root = store.root;
    let generation = store.generation() + 1;
    let leaf = store.node(root, generation).unwrap().child(1);
    let mut file = store.into_file().durable_image();
    file.damage(leaf, 200, 0x04);
    let mut store = PageStore::open(file.clone(), 1 << 20).unwrap();
    let error = store.range(Bound::Unbounded, Bound::Unbounded, 0).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { page, .. } if page == leaf.0), "{error}");
    assert!(error.to_string().contains(&format!("page {leaf}")), "{error}");
    file.damage(root, 40, 0x01);
    let error = PageStore::open(file, 1 << 20).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { page, .. } if page == root.0), "{error}");
}

#[test]
fn a_damaged_meta_page_falls_back_to_the_other_and_both_is_an_error() {
    let (mut store, model_two) = filled(500, 30, 2);
    store.checkpoint(2).unwrap(); // generation 2, in page 0
    for i in 500..900 {
        store.insert(&numbered_key(i), b"later").unwrap();
    }
    store.checkpoint(3).unwrap(); // generation 3, in page 1
    let image = store.into_file().durable_image();

    let mut newest_bad = image.clone();
    newest_bad.damage(PageId(1), 20, 0x80);
    let mut store = PageStore::open(newest_bad, 1 << 20).unwrap();
    assert_eq!((store.generation(), store.applied_index()), (2, 2));
    assert_equals_model(&mut store, &model_two);
    store.check_invariants().unwrap();

    let mut oldest_bad = image.clone();
    oldest_bad.damage(PageId(0), 90, 0x01);
    let store = PageStore::open(oldest_bad, 1 << 20).unwrap();
    assert_eq!((store.generation(), store.len()), (3, 900));

    let mut both_bad = image;
    both_bad.damage(PageId(0), 3, 0x01);
    both_bad.damage(PageId(1), 60, 0x01);
    let error = PageStore::open(both_bad, 1 << 20).unwrap_err().to_string();
    assert!(error.contains("page 0") && error.contains("page 1"), "{error}");
}

/// Falling back to the older meta must open exactly the older checkpoint:
/// its pages are not reused while its meta page can still be chosen (only
/// once the checkpoint after the newest one overwrites its slot).
#[test]
fn fallback_to_an_older_meta_whose_pages_were_reused_is_reported_not_read() {
    let build = || {
        let (mut store, _) = filled(800, 60, 3);
        store.checkpoint(1).unwrap(); // generation 2: tree A
        for i in 0..800 {
            store.insert(&numbered_key(i), &value(i as u16, 60, 4)).unwrap();
        }
        store.checkpoint(2).unwrap(); // generation 3: tree A's pages are free again
        for i in 0..800 {
            store.insert(&numbered_key(i), &value(i as u16, 60, 5)).unwrap();
        }
        store
    };
    let mut store = build();
    let calls_before = store.file().calls_made();
    store.checkpoint(3).unwrap();
    let checkpoint_calls = store.file().calls_made() - calls_before;
    // Losing power just as the new meta is written (after the data writes,
    // which reused tree A's pages, were synced), then generation 3's meta
    // rots: only generation 2's meta is left, and its tree is not whole.
    let mut store = build();
    store.file_mut().fail_after(checkpoint_calls - 2);
    assert!(store.checkpoint(3).is_err());
    let mut image = store.into_file();
    image.damage(PageId(1), 30, 0x02);
    let outcome = PageStore::open(image, 0).and_then(|mut store| {
        assert_eq!(store.applied_index(), 1);
        store.range(Bound::Unbounded, Bound::Unbounded, 0)
    });
    match outcome {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(
                reason.contains("generation"),
                "a reused page is told by its generation: {reason}"
            )
        }
        other => panic!("tree A's pages were reused, yet reading it gave {other:?}"),
    }
}

/// In a running store a dropped page is free once the checkpoint that
/// dropped it is durable; after a reopen, the listed pages wait for one more
/// checkpoint (the meta just opened may have come from a checkpoint whose last
/// sync failed, so the other meta's tree is kept).
#[test]
fn dropped_pages_are_free_one_checkpoint_later_and_after_a_reopen_one_more() {
    let (mut store, _) = filled(2000, 100, 7);
    store.checkpoint(1).unwrap();
    for i in 0..2000 {
        store.remove(&numbered_key(i)).unwrap();
    }
    let dropped = store.pending_page_count();
    assert!(dropped > 40, "removing every key drops the tree's pages: {dropped}");
    store.checkpoint(2).unwrap();
    assert_eq!(store.pending_page_count(), 0, "free once their drop is durable");
    assert!(store.free_page_count() >= dropped);

    let (mut store, _) = filled(2000, 100, 7);
    store.checkpoint(1).unwrap();
    for i in 0..2000 {
        store.remove(&numbered_key(i)).unwrap();
    }
    let image = store.into_file().durable_image();
    let mut store = PageStore::open(image, 0).unwrap();
    for i in 0..2000 {
        store.remove(&numbered_key(i)).unwrap();
    }
    store.checkpoint(2).unwrap();
    let mut store = PageStore::open(store.into_file().durable_image(), 0).unwrap();
    let listed = store.pending_page_count();
    assert!(listed >= dropped && store.free_page_count() == 0, "listed pages wait after opening");
    store.checkpoint(3).unwrap();
    assert!(store.free_page_count() >= listed, "and are free after the next checkpoint");
    store.check_invariants().unwrap();
}

/// `Snapshot::prefetch` reads the leaves point reads will need into the
/// cache in batches; the reads then answer what they answered before.
#[test]
fn prefetch_caches_the_leaves_of_the_keys_and_changes_no_answer() {
    let (mut store, model) = filled(5000, 100, 9);
    store.checkpoint(1).unwrap();
    let image = store.into_file().durable_image();
    let mut store = PageStore::open(image, 64 << 20).unwrap();
    let snapshot = store.snapshot();
    let before = store.cache_bytes();
    let wanted: Vec<Vec<u8>> = (0..5000).step_by(50).map(numbered_key).collect();
    let mut with_absent = wanted.clone();
    with_absent.push(b"absent".to_vec());
    snapshot.prefetch(&with_absent);
    let leaves = store.cache_bytes() - before;
    assert!(leaves >= 50 * 3000, "about one leaf per key read ahead: {leaves} bytes");
    for key in &wanted {
        assert_eq!(snapshot.get(key).unwrap().as_ref(), model.get(key), "{key:?}");
    }
    assert_eq!(store.cache_bytes() - before, leaves, "the reads found every leaf cached");
    assert_eq!(snapshot.get(b"absent").unwrap(), None);
}

#[test]
fn a_snapshot_keeps_its_view_and_its_pages_while_the_writer_goes_on() {
    let (mut store, model) = filled(1500, 80, 6);
    store.checkpoint(10).unwrap();
    let snapshot = store.snapshot();
    let pages = store.tree_pages(snapshot.view()).unwrap();
    for round in 0..5u32 {
        for i in 0..1500 {
            store.insert(&numbered_key(i), &value(i as u16, 120, round as u8)).unwrap();
        }
        for i in (0..1500).step_by(3) {
            store.remove(&numbered_key(i)).unwrap();
        }
        store.checkpoint(11 + u64::from(round)).unwrap();
        store.check_invariants().unwrap();
        let free: Vec<PageId> = store.space.free_ids().collect();
        assert!(pages.iter().all(|page| !free.contains(page)), "a snapshot page was freed");
        let seen = snapshot.range(Bound::Unbounded, Bound::Unbounded, 0).unwrap();
        assert!(seen == model.clone().into_iter().collect::<Vec<_>>());
        assert_eq!(snapshot.get(&numbered_key(3)).unwrap(), model.get(&numbered_key(3)).cloned());
        assert_eq!((snapshot.applied_index(), snapshot.len()), (10, 1500));
    }
    let mut cursor = snapshot.cursor(Bound::Excluded(&numbered_key(10)), Bound::Unbounded).unwrap();
    assert_eq!(cursor.next_entry().unwrap().unwrap().0, numbered_key(11));
    drop(cursor);
    let pending_before = store.pending_page_count();
    assert!(pending_before > 0);
    drop(snapshot);
    store.checkpoint(20).unwrap();
    store.check_invariants().unwrap();
    assert!(store.pending_page_count() < pending_before, "dropping the snapshot frees its pages");
    let free: Vec<PageId> = store.space.free_ids().collect();
    assert!(pages.iter().any(|page| free.contains(page)));
}

#[test]
fn a_snapshot_reads_the_last_checkpoint_not_uncheckpointed_writes() {
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    store.insert(b"a", b"1").unwrap();
    store.checkpoint(1).unwrap();
    store.insert(b"a", b"2").unwrap();
    store.insert(b"b", b"3").unwrap();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(snapshot.get(b"b").unwrap(), None);
    assert_eq!(store.get(b"a").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn a_cache_only_read_of_a_page_not_in_memory_misses_and_changes_nothing() {
    let cache_bytes = 8 * page_bytes;
    let (mut store, model) = filled(20_000, 40, 7);
    store.checkpoint(1).unwrap();
    let image = store.into_file().durable_image();
    let mut store = PageStore::open(image, cache_bytes).unwrap();
    let snapshot = store.snapshot();
    let key = numbered_key(12_345);
    let expected = model.get(&key).cloned();
    assert!(expected.is_some());
    // Nothing read yet: the leaf is not in memory.
    let (result, missed) = read::cache_only(|| snapshot.get(&key));
    assert!(missed);
    match result {
        Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        other => panic!("a miss must fail the read, not answer: {other:?}"),
    }
    // Read where waiting is allowed, then again from memory only.
    assert_eq!(snapshot.get(&key).unwrap(), expected);
    let (result, missed) = read::cache_only(|| snapshot.get(&key));
    assert!(!missed, "the leaf is cached now");
    assert_eq!(result.unwrap(), expected);
    // A read outside `cache_only` on the same thread reads the disk again.
    for i in (0..20_000).step_by(997) {
        let key = numbered_key(i);
        assert_eq!(snapshot.get(&key).unwrap(), model.get(&key).cloned());
    }
}

#[test]
fn a_data_set_larger_than_the_cache_is_read_back_on_demand() {
    let cache_bytes = 8 * page_bytes;
    let (mut store, model) = filled(20_000, 40, 7);
    store.set_cache_bytes(cache_bytes);
    store.checkpoint(1).unwrap();
    assert!(store.cache_bytes() <= cache_bytes);
    let image = store.into_file().durable_image();
    let mut store = PageStore::open(image, cache_bytes).unwrap();
    assert!(store.page_count() > 100);
    assert_equals_model(&mut store, &model);
    for i in (0..20_000).step_by(97) {
        assert_eq!(store.get(&numbered_key(i)).unwrap(), model.get(&numbered_key(i)).cloned());
    }
    assert!(store.cache_bytes() <= cache_bytes);
    store.check_invariants().unwrap();
}

#[test]
fn values_of_megabytes_go_to_overflow_chains_and_come_back() {
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    let big = value(1, 2 * 1024 * 1024, 9);
    let bigger = value(2, 3 * 1024 * 1024 + 17, 10);
    store.insert(b"big", &big).unwrap();
    store.insert(b"bigger", &bigger).unwrap();
    store.insert(b"small", b"s").unwrap();
    store.checkpoint(1).unwrap();
    let image = store.into_file().durable_image();
    let mut store = PageStore::open(image, 1 << 20).unwrap();
    assert_eq!(store.get(b"big").unwrap(), Some(big.clone()));
    assert_eq!(store.get(b"bigger").unwrap(), Some(bigger));
    store.check_invariants().unwrap();
    assert_eq!(store.insert(b"big", b"tiny").unwrap(), Some(big));
    assert!(store.free_page_count() < 512);
    store.checkpoint(2).unwrap();
    assert!(store.free_page_count() >= 512, "the old chain is free once its drop is durable");
    let pages = store.page_count();
    store.insert(b"again", &value(3, 2 * 1024 * 1024, 11)).unwrap();
    assert!(store.page_count() <= pages + 2, "the new chain reuses the old one's pages");
    store.check_invariants().unwrap();
    let too_big = vec![0; value_bytes_max + 1];
    assert!(matches!(store.insert(b"x", &too_big), Err(StoreError::ValueTooLarge { .. })));
    let long_key = vec![b'k'; key_bytes_max + 1];
    assert!(matches!(store.insert(&long_key, b""), Err(StoreError::KeyTooLarge { .. })));
}

/// Cuts power after every possible number of writes and syncs of one
/// checkpoint, then restarts from several crash images of each.
#[test]
fn a_checkpoint_cut_off_anywhere_opens_at_the_old_or_the_new_state() {
    let (mut base, old_model) = filled(600, 150, 12);
    base.insert(b"overflow", &value(5, 20_000, 1)).unwrap();
    let mut old_model = old_model;
    old_model.insert(b"overflow".to_vec(), value(5, 20_000, 1));
    base.checkpoint(1).unwrap();
    let image = base.into_file().durable_image();
    let mutate = |store: &mut PageStore<MemPageFile>, model: &mut Model| {
        for i in (0..600).step_by(2) {
            store.remove(&numbered_key(i)).unwrap();
            model.remove(&numbered_key(i));
        }
        for i in 600..700 {
            let value = value(i as u16, 300, 13);
            store.insert(&numbered_key(i), &value).unwrap();
            model.insert(numbered_key(i), value);
        }
        store.insert(b"overflow", &value(6, 9_000, 2)).unwrap();
        model.insert(b"overflow".to_vec(), value(6, 9_000, 2));
    };
    let mut calls = 0;
    loop {
        let mut store = PageStore::open(image.clone(), 1 << 20).unwrap();
        let mut new_model = old_model.clone();
        mutate(&mut store, &mut new_model);
        store.file_mut().fail_after(calls);
        let completed = store.checkpoint(2).is_ok();
        for seed in 0..6 {
            let crashed = store.file().crash(seed * 1000 + calls, seed % 2 == 0);
            let mut reopened = PageStore::open(crashed, 1 << 20).unwrap();
            let expected = match reopened.generation() {
                2 if !completed => &old_model,
                3 => &new_model,
                other => panic!("opened generation {other} (completed: {completed})"),
            };
            assert_equals_model(&mut reopened, expected);
            reopened.check_invariants().unwrap();
        }
        if completed {
            break;
        }
        calls += 1;
    }
    assert!(calls > 10, "the checkpoint took {calls} calls");
}

#[test]
fn a_store_on_a_real_file_survives_reopening() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let name = format!("corekv-pagestore-{}-{}", std::process::id(), nanos.as_nanos());
    let path = std::env::temp_dir().join(name);
    let big = value(8, 2 * 1024 * 1024, 14);
    {
        let mut store = PageStore::create(StdPageFile::create(&path).unwrap()).unwrap();
        for i in 0..3000 {
            store.insert(&numbered_key(i), &value(i as u16, 50, 15)).unwrap();
        }
        store.insert(b"big", &big).unwrap();
        store.checkpoint(42).unwrap();
        store.insert(b"lost", b"not checkpointed").unwrap();
    }
    let mut store = PageStore::open(StdPageFile::open(&path).unwrap(), 1 << 20).unwrap();
    assert_eq!((store.applied_index(), store.len()), (42, 3001));
    assert_eq!(store.get(b"big").unwrap(), Some(big));
    assert_eq!(store.get(b"lost").unwrap(), None);
    assert_eq!(store.get(&numbered_key(2999)).unwrap(), Some(value(2999, 50, 15)));
    store.check_invariants().unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// Review finding: a meta page found in the other meta's slot (a misdirected
/// write) is refused, so the next checkpoint cannot overwrite the only
/// durable meta; the store opens from the meta in its own slot.
#[test]
fn a_meta_in_the_wrong_slot_is_refused() {
    let (mut store, _) = filled(200, 40, 8);
    store.checkpoint(1).unwrap();
    store.checkpoint(2).unwrap();
    let generation = store.generation();
    let mut file = store.into_file().durable_image();
    let (own, other) = (PageId(generation % 2), PageId(1 - generation % 2));
    let mut page = vec![0u8; page_bytes];
    file.read_page(own, &mut page).unwrap();
    file.write_page(other, &page).unwrap();
    file.sync().unwrap();
    let store = PageStore::open(file.durable_image(), 0).unwrap();
    assert_eq!((store.generation(), store.applied_index()), (generation, 2));
    // With the own slot gone too, nothing valid is left: an error names both.
    file.damage(own, 30, 0x04);
    let error = PageStore::open(file.durable_image(), 0).map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("wrong slot"), "{error}");
}

/// Review finding: a snapshot outliving the store that took it (say, after
/// a reopen, whose writer no longer knows its pin) is an error, not a read of
/// pages that may have been reused.
#[test]
fn a_snapshot_of_a_store_that_is_gone_is_an_error() {
    let (mut store, _) = filled(50, 20, 2);
    store.checkpoint(1).unwrap();
    let snapshot = store.snapshot();
    assert!(snapshot.get(&numbered_key(3)).unwrap().is_some());
    let _reopened = PageStore::open(store.into_file().durable_image(), 0).unwrap();
    let error = snapshot.get(&numbered_key(3)).unwrap_err();
    assert!(matches!(error, StoreError::SnapshotStale), "{error}");
}

/// Readers on other threads read their checkpoints while the writer goes on
/// inserting, removing, checkpointing and reusing pages, through one shared
/// cache smaller than the data: each sees exactly its checkpoint.
#[test]
fn snapshots_are_read_on_other_threads_while_the_writer_goes_on() {
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    store.set_cache_bytes(64 * page_bytes);
    let mut model = Model::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for round in 0..24u32 {
        for i in 0..400u32 {
            let k = (i * 7 + round * 13) % 1500;
            if (i + round) % 5 == 0 {
                store.remove(&numbered_key(k)).unwrap();
                model.remove(&numbered_key(k));
            } else {
                let value = value(k as u16, 40 + (k as usize % 300), round as u8);
                store.insert(&numbered_key(k), &value).unwrap();
                model.insert(numbered_key(k), value);
            }
        }
        store.checkpoint(u64::from(round) + 1).unwrap();
        if round % 4 == 0 {
            let (snapshot, expected) = (store.snapshot(), model.clone());
            let stop = stop.clone();
            readers.push(std::thread::spawn(move || {
                let mut passes = 0;
                while passes < 3 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let all = snapshot.range(Bound::Unbounded, Bound::Unbounded, 0).unwrap();
                    let want: Vec<_> =
                        expected.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    assert!(all == want, "a reader saw a state other than its checkpoint");
                    let k = numbered_key(passes % 1500);
                    assert_eq!(snapshot.get(&k).unwrap(), expected.get(&k).cloned());
                    passes += 1;
                }
                passes
            }));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() >= 3);
    }
    store.check_invariants().unwrap();
}

#[test]
fn create_store_is_crash_atomic_and_a_leftover_temporary_does_not_block_it() {
    let dir = std::env::temp_dir().join(format!("corekv-pagestore-create-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.pages");
    // A crash during an earlier create left only the temporary behind.
    std::fs::write(dir.join("store.pages.tmp"), b"half made").unwrap();
    let mut store = StdPageFile::create_store(&path).unwrap();
    assert!(!dir.join("store.pages.tmp").exists());
    store.insert(b"k", b"v").unwrap();
    store.checkpoint(7).unwrap();
    drop(store);
    let mut reopened = PageStore::open(StdPageFile::open(&path).unwrap(), 1 << 20).unwrap();
    assert_eq!(reopened.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(reopened.applied_index(), 7);
    // An existing store is never overwritten by create.
    assert!(StdPageFile::create(&path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ascending_inserts_pack_pages_and_random_ones_keep_the_fill_bounds() {
    // 40,000 entries of ~120 bytes: 4.8 MB, ~1170 full pages.
    let (mut store, model) = filled(40_000, 100, 3);
    store.check_invariants().unwrap();
    assert_equals_model(&mut store, &model);
    let data_bytes: u64 = model.iter().map(|(k, v)| (k.len() + v.len() + 8) as u64).sum();
    let fill = data_bytes as f64 / (store.page_count() * page_bytes as u64) as f64;
    assert!(fill > 0.75, "ascending inserts fill pages {:.0}%", fill * 100.0);
    // The same entries in a scattered order: balanced splits, bounds kept.
    let mut scattered = PageStore::create(MemPageFile::new()).unwrap();
    for i in 0..40_000u32 {
        let k = (u64::from(i) * 35_761 % 40_000) as u32;
        scattered.insert(&numbered_key(k), &value(k as u16, 100, 3)).unwrap();
    }
    scattered.check_invariants().unwrap();
    assert_equals_model(&mut scattered, &model);
}

#[test]
fn a_sorted_batch_over_random_inserts_leaves_the_leaves_it_rewrites_packed() {
    // 30,000 entries of ~48 bytes (a member's key entries are ~45), inserted
    // in a scattered order: leaves settle near three quarters full.
    let mut store = PageStore::create(MemPageFile::new()).unwrap();
    let scattered = |i: u32| (u64::from(i) * 35_761 % 30_000) as u32;
    for i in 0..30_000u32 {
        store.insert(&numbered_key(scattered(i)), &[1u8; 34]).unwrap();
    }
    store.checkpoint(1).unwrap();
    let in_use = |store: &PageStore<MemPageFile>| {
        store.page_count() - store.free_page_count() - store.pending_page_count()
    };
    let before = in_use(&store);
    // Every entry rewritten in one sorted batch, same sizes (a checkpoint of
    // deletes rewrites each key entry in place).
    let keys: Vec<Vec<u8>> = (0..30_000u32).map(numbered_key).collect();
    store.insert_sorted(keys.iter().map(|k| (k.as_slice(), &[2u8; 34][..]))).unwrap();
    store.checkpoint(2).unwrap();
    store.checkpoint(3).unwrap();
    store.check_invariants().unwrap();
    let after = in_use(&store);
    // The same entries inserted in ascending order: packed by appends.
    let mut packed = PageStore::create(MemPageFile::new()).unwrap();
    for k in &keys {
        packed.insert(k, &[2u8; 34]).unwrap();
    }
    packed.checkpoint(1).unwrap();
    let least = in_use(&packed);
    assert!(after * 100 < before * 85, "{before} pages before, {after} after");
    assert!(after * 100 <= least * 103, "{after} pages, {least} packed by appends");
    for k in &keys {
        assert_eq!(store.get(k).unwrap().as_deref(), Some(&[2u8; 34][..]));
    }
}

#[test]
fn seek_forward_lands_on_the_first_entry_at_or_after_the_target() {
    let (mut store, model) = filled(3000, 30, 4);
    store.checkpoint(1).unwrap();
    let snapshot = store.snapshot();
    let mut cursor =
        snapshot.cursor(Bound::Unbounded, Bound::Excluded(&numbered_key(2900))).unwrap();
    let mut at = 0u32;
    // Steps of every size: within the current leaf and across many leaves.
    for step in [1u32, 2, 5, 17, 60, 250, 3, 900, 1, 40] {
        at += step;
        let target = numbered_key(at);
        cursor.seek_forward(&target).unwrap();
        let want = model.range(target.clone()..numbered_key(2900)).next().map(|(k, _)| k.clone());
        let got = cursor.next_entry().unwrap().map(|(k, _)| k);
        assert_eq!(got, want, "seek to {at}");
        at += 1;
    }
    // Past the end bound: the cursor stays at its end.
    cursor.seek_forward(&numbered_key(2950)).unwrap();
    assert!(cursor.next_entry().unwrap().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Sorted batches (new keys, replaced keys, values that overflow) land
    /// exactly as inserting them one by one would, within every bound.
    #[test]
    fn insert_sorted_is_insert_one_by_one(
        batches in proptest::collection::vec(
            proptest::collection::btree_map(0u16..3000, (0usize..6000, any::<u8>()), 1..400),
            1..6,
        ),
    ) {
        let mut store = PageStore::create(MemPageFile::new()).unwrap();
        let mut model = Model::new();
        for (round, batch) in batches.iter().enumerate() {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = batch
                .iter()
                .map(|(k, (size, seed))| (key(*k), value(*k, *size, *seed)))
                .collect();
            store
                .insert_sorted(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
                .unwrap();
            for (k, v) in entries {
                model.insert(k, v);
            }
            store.check_invariants().unwrap();
            assert_equals_model(&mut store, &model);
            if round % 2 == 1 {
                store.checkpoint(round as u64).unwrap();
            }
        }
    }
}
