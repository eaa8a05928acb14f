//! Snapshots on the real binaries: save under concurrent writes, status,
//! restore into a new data dir, a member started on it holding exactly the
//! source's state at the snapshot's revision; automatic snapshots with
//! retention and WAL purge; damaged snapshot files refused.

#![allow(non_upper_case_globals)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{temp_dir, Member};
use corekv::client::Client;
use corekv::types::*;

fn ctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_corekvctl")).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let request = Request::Put(PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    });
    client.call(&request).unwrap().0.revision
}

/// Every key with its value and revisions, at `revision` (0: the newest).
fn everything(client: &mut Client, revision: i64) -> Vec<KeyValue> {
    let request = Request::Range(RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision,
        ..Default::default()
    });
    let (_, ResponseBody::Range(range)) = client.call(&request).unwrap() else { panic!() };
    range.kvs
}

fn writer(endpoint: String, id: usize, stop: Arc<AtomicBool>) -> usize {
    let mut client = Client::connect(&[endpoint], Duration::from_secs(2)).unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        // Overwrites and deletes, so history has several versions per key.
        let key = format!("w{id}/{:04}", n % 700);
        if n % 11 == 10 {
            let request = Request::DeleteRange(DeleteRangeRequest {
                key: Bytes::from(key),
                ..Default::default()
            });
            client.call(&request).unwrap();
        } else {
            put(&mut client, &key, &format!("value-{id}-{n}-{}", "x".repeat(n % 200)));
        }
        n += 1;
    }
    n
}

#[test]
fn snapshot_saved_under_writes_restores_to_a_member_with_the_same_state() {
    let dir = temp_dir("snapshot-source");
    let source = Member::start(&dir);
    let mut client = source.client();
    for i in 0..2000 {
        put(&mut client, &format!("seed/{i:05}"), &format!("v{i}"));
    }
    let compact = Request::Compact(CompactRequest { revision: 1500, physical: false });
    client.call(&compact).unwrap();
    // A lease with a key: both travel in the snapshot.
    client.call(&Request::LeaseGrant(LeaseGrantRequest { ttl: 600, id: 0x77 })).unwrap();
    let leased = PutRequest {
        key: Bytes::from_static(b"leased/a"),
        value: Bytes::from_static(b"v"),
        lease: 0x77,
        ..Default::default()
    };
    client.call(&Request::Put(leased)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|id| {
            let (endpoint, stop) = (source.endpoint.clone(), stop.clone());
            std::thread::spawn(move || writer(endpoint, id, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let file = dir.with_extension("snap");
    let file = file.to_str().unwrap();
    let (code, out, err) = ctl(&["--endpoints", &source.endpoint, "snapshot", "save", file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("Snapshot saved at {file}\n"));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written > 100, "writes went on around the snapshot: {written}");

    let (code, status, err) = ctl(&["snapshot", "status", file, "-w", "json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let revision = status["revision"].as_i64().unwrap();
    assert!(revision > 2000, "{status}");
    assert!(status["totalKey"].as_i64().unwrap() > 2000, "{status}");
    assert_eq!(status["totalSize"].as_u64().unwrap(), std::fs::metadata(file).unwrap().len());
    let latest = everything(&mut client, 0);
    let (header, _) = client.status().unwrap();
    assert!(header.revision > revision, "writes continued after the snapshot");

    let restored_dir = temp_dir("snapshot-restored");
    std::fs::remove_dir(&restored_dir).unwrap();
    let restored_str = restored_dir.to_str().unwrap();
    let (code, _, err) = ctl(&["snapshot", "restore", file, "--data-dir", restored_str]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&["snapshot", "restore", file, "--data-dir", restored_str]);
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");

    let restored = Member::start(&restored_dir);
    let mut copy = restored.client();
    let (header, _) = copy.status().unwrap();
    assert_eq!(header.revision, revision, "the restored member is at the snapshot's revision");
    // Every key, value and revision, at the snapshot's revision and at older
    // revisions down to the compaction point.
    for at in [revision, revision - 1, revision - 50, 1800, 1500] {
        let want = everything(&mut client, at);
        let got = everything(&mut copy, if at == revision { 0 } else { at });
        assert_eq!(got.len(), want.len(), "key count at revision {at}");
        assert!(got == want, "state at revision {at} differs");
    }
    let compacted = Request::Range(RangeRequest {
        key: Bytes::from_static(b"seed/00000"),
        revision: 1400,
        ..Default::default()
    });
    let error = copy.call(&compacted).unwrap_err().to_string();
    assert!(error.contains("compacted"), "{error}");
    assert_ne!(latest, everything(&mut copy, 0), "the source moved on; the copy did not");
    // The lease came along, its key attached, its TTL counting.
    let ttl = LeaseTimeToLiveRequest { id: 0x77, keys: true };
    match copy.call(&Request::LeaseTimeToLive(ttl)).unwrap().1 {
        ResponseBody::LeaseTimeToLive(t) => {
            assert_eq!((t.granted_ttl, t.keys), (600, vec![Bytes::from_static(b"leased/a")]));
            assert!((590..=600).contains(&t.ttl), "remaining {}", t.ttl);
        }
        other => panic!("{other:?}"),
    }
    // The restored member takes writes after the snapshot's revision, and
    // keeps them across a restart.
    assert_eq!(put(&mut copy, "after", "restore"), revision + 1);
    let mut restored = restored;
    restored.restart();
    let mut copy = restored.client();
    assert_eq!(copy.get(b"after").unwrap().unwrap().mod_revision, revision + 1);
    copy.call(&Request::LeaseRevoke(0x77)).unwrap();
    assert_eq!(copy.get(b"leased/a").unwrap(), None, "revoking deletes the restored key");
    drop((source, restored));
    for path in [&dir, &restored_dir] {
        std::fs::remove_dir_all(path).unwrap();
    }
    std::fs::remove_file(file).unwrap();
}

/// Flips a bit in every page of a page store but its two meta pages.
fn damage_every_tree_page(db: &Path) {
    let mut bytes = std::fs::read(db).unwrap();
    for page in bytes.chunks_mut(4096).skip(2) {
        page[100] ^= 0x01;
    }
    std::fs::write(db, &bytes).unwrap();
}

fn files(dir: &Path, extension: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == extension))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn checkpoints_and_snapshots_are_retained_purge_the_wal_and_damage_is_refused() {
    let dir = temp_dir("snapshot-auto");
    // By count while writing; by time for the tail once writes stop.
    let flags = [
        "--snapshot-count",
        "1000",
        "--snapshot-interval",
        "1",
        "--snapshot-retain",
        "2",
        "--wal-retain-entries",
        "500",
    ];
    let mut member = Member::start_with(&dir, &flags);
    let mut client = member.client();
    let value = "v".repeat(2000);
    for i in 0..12_000 {
        put(&mut client, &format!("k/{:05}", i % 3000), &format!("{i}-{value}"));
    }
    // Checkpoints are written in the background: wait for the last one due.
    let snapshots = dir.join("snapshots");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let caught_up = |log: &str| {
        log.contains("db (index 12000,") && log.contains("snap (index 12000,") && {
            // Retention runs right after the file is written.
            std::thread::sleep(Duration::from_millis(200));
            true
        }
    };
    while !caught_up(&member.log_text()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot at 12000:\n{}",
            member.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files(&snapshots, "snap"), 2, "--snapshot-retain 2");
    // 12,000 entries of ~2 KiB fill ~6 segments of 4 MiB; all but the ones
    // holding entries from 11,500 on are gone.
    let segments = files(&dir.join("wal"), "wal");
    assert!(segments <= 2, "the WAL was purged below the snapshot: {segments} segments left");
    let before = everything(&mut client, 0);
    member.restart();
    let mut client = member.client();
    let log = member.log_text();
    assert!(log.contains("loaded checkpoint ") || log.contains("opened checkpoint "), "{log}");
    assert_eq!(everything(&mut client, 0), before);
    assert_eq!(client.status().unwrap().0.revision, 12_001);

    // Damage every tree page of the page store: the error names a page, the
    // file is moved aside (kept), and the state comes from the newest
    // snapshot file and the WAL, unchanged.
    drop(client);
    member.kill9();
    damage_every_tree_page(&dir.join("db"));
    member.restart();
    let mut client = member.client();
    let log = member.log_text();
    assert!(log.contains("corrupt at page"), "names the page:\n{log}");
    assert!(log.contains("db.damaged-") && log.contains("loaded snapshot"), "{log}");
    assert_eq!(everything(&mut client, 0), before);
    let damaged = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("db.damaged-"))
        .count();
    assert_eq!(damaged, 1, "the damaged page store is kept aside");

    // Damage both snapshots too (the new page store holds nothing yet): each
    // is reported by name and skipped, and the purged WAL alone does not
    // reach back to entry 1, so the member refuses to start rather than serve
    // a state with entries missing.
    drop(client);
    member.kill9();
    let mut names: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    names.sort();
    for name in &names {
        let mut bytes = std::fs::read(name).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(name, &bytes).unwrap();
    }
    let text = common::refused_start(&dir, &flags, &dir.with_extension("refused.log"));
    for name in &names {
        assert!(text.contains(name.to_str().unwrap()), "names the damaged file:\n{text}");
    }
    assert!(text.contains("corrupt"), "{text}");
    assert!(text.contains("missing"), "explains the refusal:\n{text}");
    let newest = names.last().unwrap();
    // The snapshot file's own checks, through corekvctl.
    let (code, _, err) = ctl(&["snapshot", "status", newest.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("corrupt"), "{err}");
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The THP_enabled field of a process's /proc status.
/// While no snapshot file can be written, checkpoints purge nothing: a
/// damaged page store is rebuilt from the newest snapshot file plus the WAL
/// after it, here from the whole WAL, with every acknowledged write.
#[test]
fn the_wal_is_kept_until_a_snapshot_file_holds_it() {
    let dir = temp_dir("snapshot-wal-cover");
    let flags = ["--snapshot-count", "1000", "--wal-retain-entries", "500"];
    let mut member = Member::start_with(&dir, &flags);
    // A file where the snapshot directory would be: every file fails.
    let snapshots = dir.join("snapshots");
    let _ = std::fs::remove_dir_all(&snapshots);
    std::fs::write(&snapshots, b"in the way").unwrap();
    let mut client = member.client();
    let value = "v".repeat(2000);
    for i in 0..6_000 {
        put(&mut client, &format!("k/{:05}", i % 2000), &format!("{i}-{value}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !member.log_text().contains("db (index 6000,") {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint:
{}",
            member.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = member.log_text();
    assert!(log.contains("snapshot at index") && log.contains("failed"), "{log}");
    // ~12 MB of entries in 4 MiB segments, the first one still there.
    let first = dir.join("wal").join(format!("{:016x}.wal", 1));
    assert!(first.exists(), "the WAL was purged below every snapshot file");
    let before = everything(&mut client, 0);
    drop(client);
    member.kill9();
    std::fs::remove_file(&snapshots).unwrap();
    damage_every_tree_page(&dir.join("db"));
    member.restart();
    let mut client = member.client();
    let log = member.log_text();
    assert!(log.contains("db.damaged-"), "{log}");
    assert_eq!(everything(&mut client, 0), before);
    assert_eq!(client.status().unwrap().0.revision, 6_001);
    drop(client);
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A page store that cannot be read (here a directory where the file should
/// be) is not known to be damaged: start-up fails, naming it, and leaves it
/// where it is instead of moving it aside and starting over.
#[test]
fn a_page_store_that_cannot_be_read_is_left_in_place() {
    let dir = temp_dir("snapshot-db-unreadable");
    std::fs::create_dir_all(dir.join("db")).unwrap();
    let text = common::refused_start(&dir, &[], &dir.with_extension("unreadable.log"));
    assert!(text.contains("cannot open the page store"), "{text}");
    assert!(dir.join("db").is_dir(), "left in place");
    let aside = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("db."))
        .count();
    assert_eq!(aside, 0, "nothing moved aside:\n{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A restored data dir has no WAL: its snapshot file is all there is. If
/// that file is damaged before the first start, the member refuses to
/// start (naming the missing entries) instead of serving an empty store.
#[test]
fn a_restored_snapshot_that_does_not_load_refuses_start_instead_of_serving_empty() {
    let dir = temp_dir("snapshot-restore-damaged-source");
    let source = Member::start(&dir);
    let mut client = source.client();
    for i in 0..300 {
        put(&mut client, &format!("k/{i:04}"), &"v".repeat(100));
    }
    let file = dir.with_extension("damaged.snap");
    let file = file.to_str().unwrap();
    let (code, _, err) = ctl(&["--endpoints", &source.endpoint, "snapshot", "save", file]);
    assert_eq!(code, 0, "{err}");
    drop(source);
    let restored = temp_dir("snapshot-restore-damaged");
    std::fs::remove_dir(&restored).unwrap();
    let (code, _, err) =
        ctl(&["snapshot", "restore", file, "--data-dir", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let snaps: Vec<_> = std::fs::read_dir(restored.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let mut bytes = std::fs::read(&snaps[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&snaps[0], &bytes).unwrap();
    let log = restored.with_extension("log");
    let text = common::refused_start(&restored, &[], &log);
    assert!(text.contains("are missing") && text.contains("restore the snapshot"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&restored).unwrap();
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(log);
}

/// Snapshot streams are served a few at a time (each has a thread): a client
/// beyond them is told to try again, and gets one once another ends.
#[test]
fn snapshot_streams_beyond_the_limit_are_refused_until_one_ends() {
    let dir = temp_dir("snapshot-streams");
    let member = Member::start(&dir);
    let mut client = member.client();
    let stalled = stall_every_snapshot_stream(&member, &mut client);
    drop(stalled);
    a_snapshot_stream_is_served_within(&mut client, Duration::from_secs(20));
    drop(client);
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A snapshot stream whose client takes nothing for the stall timeout is
/// ended, so that clients that stopped reading (a hung backup job) cannot
/// hold every place for ever.
#[test]
fn a_stalled_snapshot_stream_is_ended_after_the_stall_timeout() {
    let dir = temp_dir("snapshot-stall");
    let member = Member::start_with(&dir, &["--experimental-snapshot-stall-timeout", "2s"]);
    let mut client = member.client();
    let stalled = stall_every_snapshot_stream(&member, &mut client);
    // The stalled clients stay connected, and still never read.
    a_snapshot_stream_is_served_within(&mut client, Duration::from_secs(20));
    assert!(member.log_text().contains("took no data for 2s; ending it"), "{}", member.log_text());
    drop(stalled);
    drop(client);
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Fills the member with ~40 MB that does not compress (a stream nobody
/// reads cannot finish), opens as many snapshot streams as are served at
/// once without reading them, and checks that `client` is refused another.
fn stall_every_snapshot_stream(member: &Member, client: &mut Client) -> Vec<Client> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..40 {
        let value: Vec<u8> = (0..1024 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        client.put(format!("s/{i}").as_bytes(), &value).unwrap();
    }
    let stalled: Vec<Client> = (0..corekv::limits::snapshot_streams_max)
        .map(|_| {
            let mut c = member.client();
            c.send(&Request::Snapshot).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    match client.call(&Request::Snapshot) {
        Err(corekv::client::ClientError::Server(e)) => {
            assert!(e.message.contains("try again later"), "{e:?}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|(h, _)| h)),
    }
    stalled
}

/// Asks for a snapshot until one is served (its first chunk), failing
/// after `wait`.
fn a_snapshot_stream_is_served_within(client: &mut Client, wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let id = client.send(&Request::Snapshot).unwrap();
        match client.receive(id).unwrap().result {
            Ok(ResponseBody::Snapshot(_)) => break,
            Err(e) if e.message.contains("try again later") => {
                assert!(std::time::Instant::now() < deadline, "never freed");
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
    }
}

fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("kernel reports it");
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// Once recovered, the member serves with transparent huge pages off: a
/// fresh 2 MiB page faulted in by an executor stalls the requests behind it,
/// which is what made put p99 triple during a snapshot save
/// (docs/performance.md). An operator's MIMALLOC_ALLOW_THP leaves them on.
#[test]
fn a_serving_member_has_transparent_huge_pages_off_unless_asked() {
    let dir = temp_dir("thp-off");
    let mut member = Member::start(&dir);
    assert_eq!(thp_enabled(member.child.id()), "0");
    let _ = member.child.kill();
    let _ = member.child.wait();

    let dir = temp_dir("thp-on");
    let (port, peer) = (common::free_port(), common::free_port());
    let log = dir.with_extension("log");
    let mut child = common::corekv_command(&dir, port, peer, &log)
        .env("MIMALLOC_ALLOW_THP", "1")
        .spawn()
        .unwrap();
    let endpoint = format!("127.0.0.1:{port}");
    let ready = corekv::client::wait_ready(&endpoint, Duration::from_secs(20));
    let state = thp_enabled(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.is_ok(), "corekv did not start");
    assert_eq!(state, "1");
}

/// A restart after a short WAL tail serves from the checkpoint's pages at
/// once and loads them into memory meanwhile; the state is the same before
/// and after the loaded copy is taken up, including a compaction and
/// deletes that were in the tail. (4,000 keys load in milliseconds, so the
/// first check may already run on the loaded copy; reads over the pages are
/// the tests with `--experimental-reads-from-disk`, and the take-up itself
/// is `mvcc::paged::tests::adopt`.)
#[test]
fn a_restart_serves_from_the_pages_while_it_loads_them() {
    let dir = temp_dir("snapshot-warm-up");
    let mut member = Member::start_with(&dir, &["--snapshot-count", "5000"]);
    let mut client = member.client();
    for i in 0..5000 {
        put(&mut client, &format!("k/{:05}", i % 4000), &format!("value {i}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !member.log_text().contains("db (index 5000,") {
        assert!(std::time::Instant::now() < deadline, "no checkpoint: {}", member.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The tail: overwrites, a compaction and deletes (61 entries for 4,000 keys).
    for i in 0..30 {
        put(&mut client, &format!("k/{:05}", i * 7), &format!("tail {i}"));
    }
    let compact_at = 4990;
    let compact = Request::Compact(CompactRequest { revision: compact_at, physical: false });
    client.call(&compact).unwrap();
    for i in 0..30 {
        let delete = Request::DeleteRange(DeleteRangeRequest {
            key: Bytes::from(format!("k/{:05}", 100 + i)),
            ..Default::default()
        });
        client.call(&delete).unwrap();
    }
    let old = 5010;
    let (now, then) = (everything(&mut client, 0), everything(&mut client, old));
    assert_eq!(now.len(), 4000 - 30);
    member.restart();
    assert!(
        member.log_text().contains("; loading it into memory while serving"),
        "{}",
        member.log_text()
    );
    let mut client = member.client();
    let compacted = |client: &mut Client| {
        client.call(&Request::Range(RangeRequest {
            key: Bytes::from_static(b"k/"),
            revision: compact_at - 1,
            ..Default::default()
        }))
    };
    let check = |client: &mut Client| {
        assert_eq!(everything(client, 0), now);
        assert_eq!(everything(client, old), then);
        let error = compacted(client).expect_err("below the compaction point");
        assert!(error.to_string().contains("compacted"), "{error}");
    };
    check(&mut client);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !member.log_text().contains("corekv: warm-up done: ") {
        assert!(std::time::Instant::now() < deadline, "never loaded: {}", member.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    check(&mut client);
    // Writes go on over the loaded copy, and survive another restart.
    put(&mut client, "k/00000", "after");
    member.restart();
    let mut client = member.client();
    let got = everything(&mut client, 0);
    assert_eq!(got.iter().find(|kv| kv.key == "k/00000").unwrap().value, "after");
    assert_eq!(got.len(), now.len());
}

/// Restarts `member`, whose page store was damaged: it is moved aside and
/// rebuilt from the snapshot file and the WAL, with the state `state`.
/// Then stops it and removes `dir`.
fn restart_rebuilt(mut member: Member, dir: &Path, state: &[KeyValue]) {
    member.restart();
    let log = member.log_text();
    assert!(log.contains("db.damaged-") && log.contains("loaded snapshot"), "{log}");
    assert_eq!(everything(&mut member.client(), 0), state);
    drop(member);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Flips a bit in page `page` of the page store at `db`.
fn flip_page(db: &Path, page: usize) {
    let mut bytes = std::fs::read(db).unwrap();
    bytes[page * 4096 + 100] ^= 0x01;
    std::fs::write(db, &bytes).unwrap();
}

/// A page of the page store at `db` that opening it does not read but
/// loading it does: damaged, the store opens and then fails to load.
fn page_only_loading_reads(db: &Path) -> usize {
    damaged_page_where(db, "loading", |history| history.load().is_err_and(|e| e.is_corruption()))
}

/// The first page, from the end of the page store at `db`, that leaves the
/// store openable when damaged but makes `fails` (given the opened store)
/// true; `what` names what reads it, for the failure message.
fn damaged_page_where(
    db: &Path,
    what: &str,
    fails: impl Fn(&mut corekv::mvcc::paged::PagedHistory<corekv::pagestore::DirectPageFile>) -> bool,
) -> usize {
    use corekv::mvcc::paged::PagedHistory;
    use corekv::pagestore::{DirectPageFile, PageStore};
    let bytes = std::fs::read(db).unwrap();
    let copy = db.with_extension("probe");
    for page in (2..bytes.len() / 4096).rev() {
        let mut damaged = bytes.clone();
        damaged[page * 4096 + 100] ^= 0x01;
        std::fs::write(&copy, &damaged).unwrap();
        let Ok(store) = PageStore::open(DirectPageFile::open(&copy).unwrap(), 1 << 20) else {
            continue;
        };
        let Ok(mut history) = PagedHistory::open(store) else { continue };
        if fails(&mut history) {
            std::fs::remove_file(&copy).unwrap();
            return page;
        }
    }
    panic!("no page of {} is read by {what} only", db.display());
}

/// A member with a checkpoint and a snapshot file at index 3000 and no WAL
/// tail after it; answers its state.
fn checkpointed_member(dir: &Path, args: &[&str]) -> (Member, Vec<KeyValue>) {
    let flags = ["--snapshot-count", "1000", "--snapshot-interval", "1"];
    let mut member = Member::start_with(dir, &[&flags[..], args].concat());
    let mut client = member.client();
    for i in 0..3000 {
        put(&mut client, &format!("k/{:04}", i % 800), &format!("{i}-{}", "v".repeat(300)));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let log = |m: &Member| m.log_text();
    while !(log(&member).contains("db (index 3000,") && log(&member).contains("snap (index 3000,"))
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint at 3000:\n{}", log(&member));
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = everything(&mut client, 0);
    member.kill9();
    (member, state)
}

/// A page store damaged where opening it does not look (a page only
/// loading reads) is moved aside and rebuilt from the snapshot file and the
/// WAL, whether the member loads before serving (at start-up) or serves
/// from the pages while loading (the first start stops, the next rebuilds),
/// instead of failing the same way on every start.
#[test]
fn a_page_store_damaged_past_what_opening_reads_is_rebuilt() {
    // Loading before serving: one start.
    let dir = temp_dir("snapshot-deep-damage-load");
    let (member, state) = checkpointed_member(&dir, &["--experimental-load-before-serving"]);
    let db = dir.join("db");
    let page = page_only_loading_reads(&db);
    flip_page(&db, page);
    restart_rebuilt(member, &dir, &state);

    // Serving from the pages while loading them: that start stops (exit 70)
    // with the store moved aside; the next one rebuilds it.
    let dir = temp_dir("snapshot-deep-damage-warm");
    let (member, state) = checkpointed_member(&dir, &[]);
    let db = dir.join("db");
    let page = page_only_loading_reads(&db);
    flip_page(&db, page);
    let flags = ["--snapshot-count", "1000", "--snapshot-interval", "1"];
    let mut child = common::corekv_command(&dir, member.client_port, member.peer_port, &member.log)
        .args(flags)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "kept serving:\n{}", member.log_text());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70), "{}", member.log_text());
    assert!(member.log_text().contains("db.damaged-"), "{}", member.log_text());
    let member = Member::start_with(&dir, &flags);
    let log = member.log_text();
    assert!(log.contains("loaded snapshot"), "{log}");
    assert_eq!(everything(&mut member.client(), 0), state);
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A page of the store at `db` that opening it and reading it in place do
/// not read, but a put of `key` over it does (its key entry's leaf).
fn page_a_put_reads(db: &Path, key: &[u8]) -> usize {
    let put = Request::Put(PutRequest {
        key: Bytes::copy_from_slice(key),
        value: Bytes::from_static(b"x"),
        ..Default::default()
    });
    damaged_page_where(db, "a put", |history| {
        let Ok(mut over) = corekv::mvcc::Store::with_base(history.view()) else { return false };
        over.apply(&put).is_err_and(|e| corekv::mvcc::is_damage(&e))
    })
}

/// Damage found while replaying the WAL over the page store's checkpoint
/// (a short tail: the member serves from the pages) is treated as damage
/// found opening it: the store is moved aside and rebuilt, not refused on
/// every start.
#[test]
fn a_page_store_damaged_where_the_replay_reads_is_rebuilt() {
    let dir = temp_dir("snapshot-replay-damage");
    let (member, _) = checkpointed_member(&dir, &[]);
    drop(member);
    // A short tail over the checkpoint: puts of one key.
    let mut member = Member::start_with(&dir, &["--snapshot-count", "1000000"]);
    let mut client = member.client();
    for i in 0..5 {
        put(&mut client, "k/0007", &format!("tail-{i}"));
    }
    let state = everything(&mut client, 0);
    drop(client);
    member.kill9();
    let db = dir.join("db");
    let page = page_a_put_reads(&db, b"k/0007");
    flip_page(&db, page);
    restart_rebuilt(member, &dir, &state);
}
