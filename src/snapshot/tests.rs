use std::io::Cursor;

use proptest::prelude::*;

use super::*;
use crate::types::*;

fn meta_of(store: &Store, applied_index: u64) -> Meta {
    let snapshot = store.snapshot();
    Meta {
        revision: snapshot.revision(),
        compact_revision: snapshot.compact_revision(),
        applied_index,
        applied_term: 1,
        cluster_id: 7,
        member_id: 9,
        created_unix_ms: 1,
    }
}

fn encode(store: &Store) -> (Vec<u8>, Summary) {
    let mut bytes = Vec::new();
    let summary = write(&store.snapshot(), &meta_of(store, 5), &mut bytes).unwrap();
    (bytes, summary)
}

fn decode(bytes: &[u8]) -> Result<(Meta, Summary, Store), String> {
    let meta = Meta::decode(bytes)?;
    let mut importer = Importer::new(meta.revision, meta.compact_revision)?;
    let (meta, summary) =
        read(Cursor::new(bytes), bytes.len() as u64, |r| r.import(&mut importer))?;
    Ok((meta, summary, importer.finish()))
}

/// Every key's versions, their sub-revisions left out: a snapshot file
/// does not keep them (read back, they are `sub_unknown`).
fn history(store: &Store) -> Vec<(Bytes, Vec<ExportedVersion>)> {
    let without_sub = |mut v: ExportedVersion| {
        v.sub = crate::mvcc::sub_unknown;
        v
    };
    let versions = |v: Vec<ExportedVersion>| v.into_iter().map(without_sub).collect();
    store.snapshot().export().map(|(k, v)| (k.clone(), versions(v))).collect()
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Compact,
    /// Grant lease id (1..=4), or revoke it if it exists.
    Lease(i64),
    /// Put a key with lease id, if it exists.
    PutLease(u8, i64),
    Checkpoint(i64, i64),
}

fn apply(store: &mut Store, op: &Op) {
    let key = |k: u8| Bytes::from(format!("key/{k:03}"));
    let request = match op {
        Op::Put(k, len) => Request::Put(PutRequest {
            key: key(*k),
            value: Bytes::from(vec![b'v'; *len as usize]),
            ..Default::default()
        }),
        Op::Delete(k) => {
            Request::DeleteRange(DeleteRangeRequest { key: key(*k), ..Default::default() })
        }
        Op::Compact => {
            let revision = store.revision() - 2;
            if revision > store.snapshot().compact_revision() && revision >= 1 {
                store.compact(revision).unwrap();
            }
            return;
        }
        Op::Lease(id) if store.snapshot().leases().contains(*id) => Request::LeaseRevoke(*id),
        Op::Lease(id) => Request::LeaseGrant(LeaseGrantRequest { ttl: id * 10, id: *id }),
        Op::PutLease(k, id) if store.snapshot().leases().contains(*id) => {
            Request::Put(PutRequest { key: key(*k), lease: *id, ..Default::default() })
        }
        Op::PutLease(..) => return,
        Op::Checkpoint(clock_ms, id) => Request::LeaseCheckpoint(LeaseCheckpointRequest {
            clock_ms: *clock_ms,
            deadlines: vec![(*id, clock_ms + 5000)],
        }),
    };
    store.apply(&request).unwrap();
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0u8..40, 0u16..300).prop_map(|(k, l)| Op::Put(k, l)),
            2 => (0u8..40).prop_map(Op::Delete),
            1 => Just(Op::Compact),
            1 => (1i64..5).prop_map(Op::Lease),
            2 => (0u8..40, 1i64..5).prop_map(|(k, id)| Op::PutLease(k, id)),
            1 => (0i64..100_000, 1i64..5).prop_map(|(c, id)| Op::Checkpoint(c, id)),
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_keeps_every_version(ops in ops()) {
        let mut store = Store::new();
        for op in &ops {
            apply(&mut store, op);
        }
        let (bytes, summary) = encode(&store);
        let (meta, read_summary, copy) = decode(&bytes).unwrap();
        copy.check_invariants();
        prop_assert_eq!(meta, meta_of(&store, 5));
        prop_assert_eq!(summary, read_summary);
        prop_assert_eq!(summary.versions as usize, store.snapshot().versions());
        prop_assert_eq!(summary.live_keys as usize, store.snapshot().live_keys());
        prop_assert_eq!(history(&store), history(&copy));
        prop_assert_eq!(store.snapshot().size_bytes(), copy.snapshot().size_bytes());
        prop_assert_eq!(store.snapshot().leases().clone(), copy.snapshot().leases().clone());
    }
}

fn sample_store() -> Store {
    let mut store = Store::new();
    for i in 0..60u16 {
        apply(&mut store, &Op::Put((i % 17) as u8, i * 3));
        if i % 9 == 0 {
            apply(&mut store, &Op::Delete((i % 5) as u8));
        }
    }
    apply(&mut store, &Op::Compact);
    apply(&mut store, &Op::Lease(3));
    apply(&mut store, &Op::PutLease(2, 3));
    apply(&mut store, &Op::Checkpoint(1234, 3));
    store
}

#[test]
fn a_key_of_a_lease_the_file_does_not_hold_is_refused() {
    let mut importer = Importer::new(10, 0).unwrap();
    let kv = KeyValue {
        key: Bytes::from_static(b"k"),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: Bytes::new(),
        lease: 7,
    };
    let versions =
        vec![ExportedVersion { revision: 2, sub: crate::mvcc::sub_unknown, kv: Some(kv) }];
    let error = importer.add(Bytes::from_static(b"k"), versions).unwrap_err();
    assert!(error.contains("lease 7"), "{error}");
    let mut importer = Importer::new(10, 0).unwrap();
    importer.add_lease(7, 10, 0).unwrap();
    assert!(importer.add_lease(7, 10, 0).is_err(), "a lease twice");
    assert!(importer.add_lease(8, 0, 0).is_err(), "a TTL of 0");
    assert!(importer.add_lease(0, 10, 0).is_err(), "lease 0");
}

#[test]
fn every_flipped_byte_is_detected() {
    let (bytes, _) = encode(&sample_store());
    for at in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[at] ^= bit;
            assert!(decode(&bad).is_err(), "flipped bit {bit:#x} of byte {at} went unnoticed");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_detected() {
    let (bytes, _) = encode(&sample_store());
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len]).is_err(), "truncated to {len} bytes");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 10]);
    assert!(decode(&longer).is_err());
}

#[test]
fn an_empty_store_round_trips() {
    let store = Store::new();
    let (bytes, summary) = encode(&store);
    assert_eq!((summary.keys, summary.versions), (0, 0));
    let (_, _, copy) = decode(&bytes).unwrap();
    assert_eq!(copy.revision(), store.revision());
}

#[test]
fn files_in_a_dir_are_saved_listed_retained_and_loaded_newest_first() {
    let dir = std::env::temp_dir().join(format!("corekv-snapdir-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let mut store = Store::new();
    for i in 0..5u64 {
        apply(&mut store, &Op::Put(i as u8, 10));
        save_in_dir(&dir, &store.snapshot(), &meta_of(&store, 10 + i), 0.5).unwrap();
    }
    fs::write(dir.join("0000000000000099-0000000000000001.snap.tmp"), b"partial").unwrap();
    assert_eq!(list(&dir, true).unwrap().len(), 5);
    assert!(!dir.join("0000000000000099-0000000000000001.snap.tmp").exists(), "temp cleaned");
    assert_eq!(retain(&dir, 2).unwrap(), 3);
    let files = list(&dir, false).unwrap();
    assert_eq!(files.len(), 2);
    // Damage the newest: loading falls back to the one before, with a warning.
    let newest = files.last().unwrap();
    let len = fs::metadata(newest).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(newest).unwrap();
    file.set_len(len - 1).unwrap();
    let mut warnings = Vec::new();
    let (path, meta, loaded) =
        load_newest(&dir, |e| warnings.push(e.to_string())).unwrap().unwrap();
    assert_eq!(path, files[0]);
    assert_eq!(meta.applied_index, 13);
    assert_eq!(loaded.revision(), meta.revision);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("corrupt or truncated"), "{}", warnings[0]);
    assert!(warnings[0].contains(newest.to_str().unwrap()), "names the file");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_save_in_a_dir_leaves_no_temporary_file() {
    let dir = std::env::temp_dir().join(format!("corekv-snapdir-fail-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let mut store = Store::new();
    apply(&mut store, &Op::Put(1, 10));
    let meta = meta_of(&store, 10);
    // The rename cannot replace a non-empty directory of the file's name.
    let target = dir.join(file_name(&meta));
    fs::create_dir_all(target.join("x")).unwrap();
    assert!(save_in_dir(&dir, &store.snapshot(), &meta, 1.0).is_err());
    let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![target.file_name().unwrap().to_owned()], "only the blocking dir");
    fs::remove_dir_all(&dir).unwrap();
}

/// `status` checks a file counting versions where loading keeps them: both
/// agree on its figures, and both notice a flipped bit anywhere.
#[test]
fn checking_a_file_without_keeping_versions_agrees_with_loading_it() {
    let (bytes, summary) = encode(&sample_store());
    let check = |b: &[u8]| read_with(Cursor::new(b), b.len() as u64, false, |_| Ok(()));
    assert_eq!(check(&bytes).unwrap().1, summary);
    assert_eq!(decode(&bytes).unwrap().1, summary);
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        assert!(check(&bad).is_err(), "flipped byte {at} went unnoticed");
    }
}

/// A body of `keys` keys, each with `deletes` deletes at revision 1: what a
/// hostile file repeats to decompress to far more than it weighs.
fn body_of_deletes(keys: u32, deletes: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for k in 0..keys {
        let key = format!("k{k}");
        body.push(format::tag_key);
        body.extend_from_slice(&(key.len() as u32).to_le_bytes());
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(&deletes.to_le_bytes());
        for _ in 0..deletes {
            body.extend_from_slice(&1i64.to_le_bytes());
            body.push(format::kind_delete);
        }
    }
    body.push(format::tag_end);
    body
}

/// `body` as a file whose trailer is sound but counts `body_bytes`.
fn file_declaring(body: &[u8], body_bytes: u64) -> Vec<u8> {
    let mut file = fuzz_wrap_body(&meta_of(&Store::new(), 1), body);
    let at = file.len() - format::trailer_bytes;
    let mut summary = Summary::decode(&file[at..]).unwrap();
    summary.body_bytes = body_bytes;
    file[at..].copy_from_slice(&summary.encode());
    file
}

#[test]
fn a_body_past_the_bytes_its_trailer_counts_is_refused_as_it_is_read() {
    let read_it = |file: &[u8], keep| {
        read_with(Cursor::new(file), file.len() as u64, keep, |_| Ok(())).unwrap_err()
    };
    // One key whose version count alone needs more than the trailer counts.
    let file = file_declaring(&body_of_deletes(1, 100_000), 1000);
    for keep in [true, false] {
        let error = read_it(&file, keep);
        assert!(error.contains("a key with 100000 versions, more than the 1000 bytes"), "{error}");
    }
    // Many small keys, each within it, together past it.
    let file = file_declaring(&body_of_deletes(1000, 1), 1000);
    for keep in [true, false] {
        let error = read_it(&file, keep);
        assert!(error.contains("runs past the 1000 bytes its trailer counts"), "{error}");
    }
}

#[test]
fn a_body_larger_than_memory_is_refused_before_loading_it() {
    let file = file_declaring(&body_of_deletes(1, 1), 1 << 60);
    let error = read(Cursor::new(&file), file.len() as u64, |_| Ok(())).unwrap_err();
    assert!(error.contains("more than this machine's memory"), "{error}");
    // Only checking it reads on, and finds the count wrong.
    let error = read_with(Cursor::new(&file), file.len() as u64, false, |_| Ok(())).unwrap_err();
    assert!(error.contains("do not match the trailer"), "{error}");
}
