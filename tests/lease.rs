//! Leases on the real binary: grant, revoke, keep-alive, time-to-live and
//! list with etcd's answers and errors; expiry deleting every attached key in
//! one revision, seen by a watcher; keep-alives holding a lease; and a
//! restart (SIGKILL) in the middle of a TTL resuming the remaining TTL, from
//! the WAL and from page store checkpoints, in memory and read in place.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{temp_dir, Member};
use corekv::client::{Client, ClientError};
use corekv::error::ErrorCode;
use corekv::types::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn call(
    client: &mut Client,
    request: Request,
) -> Result<(ResponseHeader, ResponseBody), ErrorCode> {
    client.call(&request).map_err(|e| match e {
        ClientError::Server(e) => e.code,
        other => panic!("{request:?}: {other}"),
    })
}

fn grant(client: &mut Client, ttl: i64, id: i64) -> LeaseGrantResponse {
    match call(client, Request::LeaseGrant(LeaseGrantRequest { ttl, id })) {
        Ok((_, ResponseBody::LeaseGrant(g))) => g,
        other => panic!("grant: {other:?}"),
    }
}

fn put(client: &mut Client, key: &str, lease: i64) -> Result<i64, ErrorCode> {
    let request = PutRequest { key: b(key), value: b("v"), lease, ..Default::default() };
    call(client, Request::Put(request)).map(|(header, _)| header.revision)
}

fn time_to_live(client: &mut Client, id: i64) -> LeaseTimeToLiveResponse {
    let request = LeaseTimeToLiveRequest { id, keys: true };
    match call(client, Request::LeaseTimeToLive(request)) {
        Ok((_, ResponseBody::LeaseTimeToLive(t))) => t,
        other => panic!("timetolive: {other:?}"),
    }
}

fn keep_alive(client: &mut Client, id: i64) -> i64 {
    match call(client, Request::LeaseKeepAlive(id)) {
        Ok((_, ResponseBody::LeaseKeepAlive(k))) => {
            assert_eq!(k.id, id);
            k.ttl
        }
        other => panic!("keep-alive: {other:?}"),
    }
}

fn keys_with_prefix(client: &mut Client, prefix: &str) -> Vec<KeyValue> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let range = RangeRequest { key: b(prefix), range_end: Bytes::from(end), ..Default::default() };
    match call(client, Request::Range(range)) {
        Ok((_, ResponseBody::Range(r))) => r.kvs,
        other => panic!("range: {other:?}"),
    }
}

#[test]
fn grants_puts_revokes_and_etcds_errors() {
    let dir = temp_dir("lease-api");
    let member = Member::start(&dir);
    let mut client = member.client();
    // The minimum TTL (etcd's, from its default timings) and a chosen id.
    let short = grant(&mut client, 1, 0);
    assert_eq!(short.ttl, 2);
    assert!(short.id > 0);
    let chosen = grant(&mut client, 100, 0x100);
    assert_eq!((chosen.id, chosen.ttl), (0x100, 100));
    let again = call(&mut client, Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0x100 }));
    assert_eq!(again.err(), Some(ErrorCode::LeaseExists));
    let huge = LeaseGrantRequest { ttl: 9_000_000_001, id: 0 };
    assert_eq!(
        call(&mut client, Request::LeaseGrant(huge)).err(),
        Some(ErrorCode::LeaseTtlTooLarge)
    );
    // Puts attach keys; an unknown lease is refused and nothing changes.
    let before = put(&mut client, "k/other", 0).unwrap();
    assert_eq!(put(&mut client, "k/x", 0x999), Err(ErrorCode::LeaseNotFound));
    for key in ["k/b", "k/a", "k/c"] {
        put(&mut client, key, 0x100).unwrap();
    }
    // A key moved to another lease (or none) leaves the first one.
    put(&mut client, "k/c", short.id).unwrap();
    let t = time_to_live(&mut client, 0x100);
    assert_eq!((t.granted_ttl, t.keys.clone()), (100, vec![b("k/a"), b("k/b")]));
    assert!((98..=100).contains(&t.ttl), "{t:?}");
    match call(&mut client, Request::LeaseLeases) {
        // Soonest to expire first, as etcd lists them.
        Ok((_, ResponseBody::LeaseLeases(ids))) => assert_eq!(ids, vec![short.id, 0x100]),
        other => panic!("list: {other:?}"),
    }
    // Revoke: the attached keys go in one revision, the others stay.
    let (header, _) = call(&mut client, Request::LeaseRevoke(0x100)).unwrap();
    assert_eq!(header.revision, before + 5, "one revision for both deletes");
    let left: Vec<Bytes> =
        keys_with_prefix(&mut client, "k/").into_iter().map(|kv| kv.key).collect();
    assert_eq!(left, vec![b("k/c"), b("k/other")]);
    // Unknown leases, as etcd answers them.
    assert_eq!(
        call(&mut client, Request::LeaseRevoke(0x100)).err(),
        Some(ErrorCode::LeaseNotFound)
    );
    assert_eq!(keep_alive(&mut client, 0x100), 0);
    let gone = time_to_live(&mut client, 0x100);
    assert_eq!((gone.ttl, gone.granted_ttl, gone.keys.len()), (-1, 0, 0));
    // The member's own checkpoints are not taken from clients.
    let forged = LeaseCheckpointRequest { clock_ms: 1, deadlines: vec![(short.id, 1)] };
    assert_eq!(
        call(&mut client, Request::LeaseCheckpoint(forged)).err(),
        Some(ErrorCode::InvalidArgument)
    );
}

#[test]
fn expiry_deletes_the_attached_keys_in_one_revision_and_watchers_see_it() {
    let dir = temp_dir("lease-expiry");
    let member = Member::start(&dir);
    let mut client = member.client();
    let mut watcher = member.client();
    let create = WatchCreateRequest { key: b("e/"), range_end: b("e0"), ..Default::default() };
    let stream = watcher.send(&Request::WatchCreate(create)).unwrap();
    assert!(
        matches!(watcher.receive(stream).unwrap().result, Ok(ResponseBody::Watch(w)) if w.created)
    );
    let granted_at = Instant::now();
    let lease = grant(&mut client, 2, 0).id;
    for key in ["e/1", "e/2", "e/3"] {
        put(&mut client, key, lease).unwrap();
    }
    put(&mut client, "e/kept", 0).unwrap();
    // Three puts and one put, then the expiry's three deletes in one response.
    let mut events = Vec::new();
    while events.len() < 7 {
        let response = watcher.receive(stream).unwrap();
        let Ok(ResponseBody::Watch(w)) = response.result else { panic!("{response:?}") };
        assert!(!w.canceled);
        if w.events.iter().any(|e| e.kind == EventType::Delete) {
            assert_eq!(w.events.len(), 3, "the revocation's deletes arrive together: {w:?}");
        }
        events.extend(w.events);
    }
    let expired_after = granted_at.elapsed();
    assert!(
        expired_after >= Duration::from_millis(1900) && expired_after < Duration::from_secs(4),
        "expired after {expired_after:?} (TTL 2 s)"
    );
    let deletes: Vec<&WatchEvent> = events.iter().filter(|e| e.kind == EventType::Delete).collect();
    let keys: Vec<Bytes> = deletes.iter().map(|e| e.kv.key.clone()).collect();
    assert_eq!(keys, vec![b("e/1"), b("e/2"), b("e/3")]);
    assert!(deletes.iter().all(|e| e.kv.mod_revision == deletes[0].kv.mod_revision));
    let left: Vec<Bytes> =
        keys_with_prefix(&mut client, "e/").into_iter().map(|kv| kv.key).collect();
    assert_eq!(left, vec![b("e/kept")]);
    assert_eq!(time_to_live(&mut client, lease).ttl, -1);
}

#[test]
fn keep_alives_hold_a_lease_and_it_expires_once_they_stop() {
    let dir = temp_dir("lease-keepalive");
    let member = Member::start(&dir);
    let mut client = member.client();
    let lease = grant(&mut client, 2, 0).id;
    put(&mut client, "ka", lease).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        assert_eq!(keep_alive(&mut client, lease), 2);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(keys_with_prefix(&mut client, "ka").len(), 1, "kept alive past its TTL");
    let stopped = Instant::now();
    while !keys_with_prefix(&mut client, "ka").is_empty() {
        assert!(stopped.elapsed() < Duration::from_secs(4), "did not expire");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stopped.elapsed() >= Duration::from_millis(1400), "expired early");
    assert_eq!(keep_alive(&mut client, lease), 0);
}

/// Grants, keeps one lease alive, kills the member with SIGKILL and starts
/// it again: every lease resumes its remaining TTL (within a second), the
/// time the member was down not counted, and revoking still deletes the
/// keys (the key sets come back from the page store or the WAL).
fn restart_resumes_remaining_ttls(args: &[&str]) {
    let dir = temp_dir("lease-restart");
    let mut member = Member::start_with(&dir, args);
    let mut client = member.client();
    // Keys enough that a short WAL tail would let a restart serve before
    // loading the checkpoint, were it not for the leases it holds.
    for i in 0..400 {
        put(&mut client, &format!("r/unleased/{i}"), 0).unwrap();
    }
    let plain = grant(&mut client, 30, 0).id;
    let renewed = grant(&mut client, 20, 0).id;
    let short = grant(&mut client, 4, 0).id;
    put(&mut client, "r/plain", plain).unwrap();
    put(&mut client, "r/short", short).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(keep_alive(&mut client, renewed), 20);
    std::thread::sleep(Duration::from_millis(1200));
    let before: Vec<i64> =
        [plain, renewed, short].iter().map(|id| time_to_live(&mut client, *id).ttl).collect();
    member.kill9();
    // Down for longer than the short lease had left.
    std::thread::sleep(Duration::from_secs(4));
    member.restart();
    if !args.is_empty() {
        // A checkpoint holding leases is loaded before serving (over the
        // pages, finding each lease's keys would read every key).
        let log = member.log_text();
        let how =
            if args.contains(&"--experimental-reads-from-disk") { "opened" } else { "loaded" };
        assert!(log.contains(&format!("corekv: {how} checkpoint ")), "{log}");
    }
    let mut client = member.client();
    let after: Vec<i64> =
        [plain, renewed, short].iter().map(|id| time_to_live(&mut client, *id).ttl).collect();
    for (before, after) in before.iter().zip(&after) {
        assert!((before - after).abs() <= 1, "remaining TTLs {before:?} before, {after:?} after");
    }
    assert!(after[2] >= 0 && keys_with_prefix(&mut client, "r/short").len() == 1);
    assert_eq!(time_to_live(&mut client, plain).keys, vec![b("r/plain")]);
    call(&mut client, Request::LeaseRevoke(plain)).unwrap();
    assert!(keys_with_prefix(&mut client, "r/plain").is_empty());
    // The short lease still expires, on time.
    let restarted = Instant::now();
    while !keys_with_prefix(&mut client, "r/short").is_empty() {
        assert!(restarted.elapsed() < Duration::from_secs(6), "did not expire after a restart");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A keep-alive is answered once its new deadline is in the log: killed
/// right after the answer, the member still gives the lease its whole TTL
/// (the lease clock does not run while the member is down).
#[test]
fn a_keep_alive_answered_right_before_a_crash_survives_it() {
    let dir = temp_dir("lease-keep-alive-crash");
    let mut member = Member::start(&dir);
    let mut client = member.client();
    let id = grant(&mut client, 20, 0).id;
    // Long enough for periodic checkpoints of the older deadline.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(keep_alive(&mut client, id), 20);
    member.kill9();
    member.restart();
    let mut client = member.client();
    let ttl = time_to_live(&mut client, id).ttl;
    assert!(ttl >= 19, "the keep-alive was lost: {ttl} s left of 20");
}

#[test]
fn a_restart_resumes_remaining_ttls_from_the_wal() {
    restart_resumes_remaining_ttls(&[]);
}

#[test]
fn a_restart_resumes_remaining_ttls_from_checkpoints() {
    // A checkpoint every few lease checkpoints: the restart reads the page
    // store (and the WAL after it).
    restart_resumes_remaining_ttls(&["--snapshot-count", "3"]);
}

#[test]
fn a_restart_resumes_remaining_ttls_reading_from_disk() {
    restart_resumes_remaining_ttls(&["--snapshot-count", "3", "--experimental-reads-from-disk"]);
}

#[test]
fn thousands_of_leases_expire_and_take_their_keys_with_them() {
    let dir = temp_dir("lease-many");
    let member = Member::start(&dir);
    let mut client = member.client();
    // 2,000 leases of 2 s, a key each, plus one long lease that must stay.
    let keep = grant(&mut client, 600, 0).id;
    put(&mut client, "many/kept", keep).unwrap();
    let started = Instant::now();
    for i in 0..2000 {
        let lease = grant(&mut client, 2, 0).id;
        put(&mut client, &format!("many/{i:04}"), lease).unwrap();
    }
    let granted_in = started.elapsed();
    // Revocations go at most 1,000 a second (etcd's rate): all gone within
    // the TTL, the time granting took, and two seconds of revoking.
    let deadline = started + granted_in + Duration::from_secs(2) + Duration::from_secs(4);
    loop {
        let left = keys_with_prefix(&mut client, "many/").len();
        if left == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} keys left after {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    match call(&mut client, Request::LeaseLeases) {
        Ok((_, ResponseBody::LeaseLeases(ids))) => assert_eq!(ids, vec![keep]),
        other => panic!("list: {other:?}"),
    }
    assert_eq!(keys_with_prefix(&mut client, "many/")[0].key, b("many/kept"));
}
