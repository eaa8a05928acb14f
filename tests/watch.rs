//! Watches on the real binary: etcd's guarantees (ordered, unique, reliable,
//! atomic, resumable, bookmarkable), compaction, cancel, filters, and a slow
//! reader that falls behind the log and catches up from history (or is
//! canceled with the compaction revision once its history is compacted) while
//! another watcher keeps receiving.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{temp_dir, Member};
use corekv::client::Client;
use corekv::error::ErrorCode;
use corekv::types::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn prefix(p: &str) -> WatchCreateRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchCreateRequest { key: b(p), range_end: Bytes::from(end), ..Default::default() }
}

/// Opens a watch; answers (its stream's request id, its watch id).
fn watch(client: &mut Client, create: WatchCreateRequest) -> (u64, i64) {
    let id = client.send(&Request::WatchCreate(create)).unwrap();
    match client.receive(id).unwrap().result {
        Ok(ResponseBody::Watch(w)) if w.created => (id, w.watch_id),
        other => panic!("expected created, got {other:?}"),
    }
}

fn next(client: &mut Client, stream: u64) -> (ResponseHeader, WatchResponse) {
    let response = client.receive(stream).unwrap();
    match response.result {
        Ok(ResponseBody::Watch(w)) => (response.header, w),
        other => panic!("expected a watch response, got {other:?}"),
    }
}

/// Events of a stream until one at `last` (or beyond) has arrived, checking
/// that no revision is split across responses.
fn events_until(client: &mut Client, stream: u64, last: i64) -> Vec<WatchEvent> {
    let mut events: Vec<WatchEvent> = Vec::new();
    while events.last().is_none_or(|e| e.kv.mod_revision < last) {
        let (header, w) = next(client, stream);
        assert!(!w.canceled, "canceled: {w:?}");
        if let (Some(before), Some(first)) = (events.last(), w.events.first()) {
            assert!(before.kv.mod_revision < first.kv.mod_revision, "a revision split or repeated");
        }
        if let Some(newest) = w.events.last() {
            assert!(header.revision >= newest.kv.mod_revision, "header behind its events");
        }
        events.extend(w.events);
    }
    events
}

/// Puts pipelined in windows; answers the revision of each.
fn put_many(client: &mut Client, puts: &[(String, String)]) -> Vec<i64> {
    let mut revisions = Vec::new();
    for window in puts.chunks(256) {
        let ids: Vec<u64> = window
            .iter()
            .map(|(k, v)| {
                let request =
                    Request::Put(PutRequest { key: b(k), value: b(v), ..Default::default() });
                client.send(&request).unwrap()
            })
            .collect();
        for id in ids {
            revisions.push(client.receive(id).unwrap().header.revision);
        }
    }
    revisions
}

fn summary(events: &[WatchEvent]) -> Vec<(i64, EventType, Bytes, Bytes)> {
    events
        .iter()
        .map(|e| (e.kv.mod_revision, e.kind, e.kv.key.clone(), e.kv.value.clone()))
        .collect()
}

#[test]
fn live_and_catch_up_streams_are_the_same_ordered_gap_free_history() {
    let dir = temp_dir("watch-history");
    let member = Member::start(&dir);
    let mut writer = member.client();
    let mut live = member.client();
    let (stream, _) = watch(&mut live, WatchCreateRequest { prev_kv: true, ..prefix("w/") });
    let mut expected: Vec<(i64, EventType, Bytes, Bytes)> = Vec::new();
    for round in 0..20 {
        let puts: Vec<(String, String)> =
            (0..50).map(|i| (format!("w/{:02}", i % 7), format!("v{round}-{i}"))).collect();
        for ((k, v), revision) in puts.iter().zip(put_many(&mut writer, &puts)) {
            expected.push((revision, EventType::Put, b(k), b(v)));
        }
        writer.put(b"other", b"x").unwrap(); // outside the prefix
        let d = DeleteRangeRequest { key: b(&format!("w/{:02}", round % 7)), ..Default::default() };
        let (header, body) = writer.call(&Request::DeleteRange(d)).unwrap();
        if matches!(body, ResponseBody::DeleteRange(r) if r.deleted == 1) {
            expected.push((
                header.revision,
                EventType::Delete,
                b(&format!("w/{:02}", round % 7)),
                Bytes::new(),
            ));
        }
    }
    let last = expected.last().unwrap().0;
    let got = events_until(&mut live, stream, last);
    assert_eq!(summary(&got), expected, "the live stream");
    // prev_kv: each event's previous version is the one before it in the stream.
    for (i, event) in got.iter().enumerate() {
        let before = got[..i].iter().rev().find(|e| e.kv.key == event.kv.key);
        let want = before.filter(|e| e.kind == EventType::Put).map(|e| e.kv.clone());
        if before.is_some() {
            assert_eq!(event.prev_kv, want, "prev_kv of {:?}", event.kv);
        }
    }
    // A watch from the first revision reads the same history back, and a
    // watch resumed from any point continues exactly.
    let first = expected[0].0;
    let mut again = member.client();
    let (stream, _) =
        watch(&mut again, WatchCreateRequest { start_revision: first, ..prefix("w/") });
    assert_eq!(summary(&events_until(&mut again, stream, last)), expected, "from history");
    let middle = expected[expected.len() / 2].0;
    let (stream, _) =
        watch(&mut again, WatchCreateRequest { start_revision: middle + 1, ..prefix("w/") });
    let resumed = events_until(&mut again, stream, last);
    let tail: Vec<_> = expected.iter().filter(|e| e.0 > middle).cloned().collect();
    assert_eq!(summary(&resumed), tail, "resumed from {}", middle + 1);
}

#[test]
fn compacted_start_cancels_with_the_compaction_revision() {
    let dir = temp_dir("watch-compacted");
    let member = Member::start(&dir);
    let mut client = member.client();
    for i in 0..10 {
        client.put(format!("c/{i}").as_bytes(), b"v").unwrap();
    }
    let (header, _) =
        client.call(&Request::Compact(CompactRequest { revision: 8, physical: false })).unwrap();
    assert!(header.revision >= 8);
    let (stream, _) = watch(&mut client, WatchCreateRequest { start_revision: 3, ..prefix("c/") });
    let (_, w) = next(&mut client, stream);
    assert!(w.canceled && w.compact_revision == 8, "{w:?}");
    assert!(w.cancel_reason.contains("compacted"), "{w:?}");
    // From the compaction point on it works.
    let (stream, _) = watch(&mut client, WatchCreateRequest { start_revision: 9, ..prefix("c/") });
    let events = events_until(&mut client, stream, 11);
    assert_eq!(events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(), vec![9, 10, 11]);
}

/// The same while another watch keeps the event log recording: the log
/// still holds the compacted revisions, and a watch from there must end
/// all the same.
#[test]
fn compacted_start_cancels_even_while_the_event_log_holds_it() {
    let dir = temp_dir("watch-compacted-log");
    let member = Member::start(&dir);
    let mut client = member.client();
    let mut keeper = member.client();
    let (kept, _) = watch(&mut keeper, prefix("c/"));
    let revisions: Vec<i64> =
        (0..10).map(|i| client.put(format!("c/{i}").as_bytes(), b"v").unwrap().revision).collect();
    assert_eq!(events_until(&mut keeper, kept, revisions[9]).len(), 10);
    let compact_at = revisions[6];
    client
        .call(&Request::Compact(CompactRequest { revision: compact_at, physical: false }))
        .unwrap();
    let start = revisions[1];
    let (stream, _) =
        watch(&mut client, WatchCreateRequest { start_revision: start, ..prefix("c/") });
    let (_, w) = next(&mut client, stream);
    assert!(w.canceled && w.compact_revision == compact_at, "{w:?}");
    // From the compaction point on it works, prev_kv included.
    let create =
        WatchCreateRequest { start_revision: compact_at + 1, prev_kv: true, ..prefix("c/") };
    let (stream, _) = watch(&mut client, create);
    let events = events_until(&mut client, stream, revisions[9]);
    assert_eq!(
        events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        revisions[7..].to_vec()
    );
}

/// A watch from a revision the store has not reached yet waits for it;
/// its progress notifications never name a revision the store does not
/// have, and other watches opened meanwhile are not held up.
#[test]
fn a_watch_from_a_future_revision_waits_and_reports_only_real_progress() {
    let dir = temp_dir("watch-future");
    let member =
        Member::start_with(&dir, &["--experimental-watch-progress-notify-interval", "300ms"]);
    let mut client = member.client();
    let mut writer = member.client();
    let current = writer.put(b"f/0", b"0").unwrap().revision;
    let start = current + 5;
    let create =
        WatchCreateRequest { start_revision: start, progress_notify: true, ..prefix("f/") };
    let (future, _) = watch(&mut client, create);
    let (header, w) = next(&mut client, future);
    assert!(w.events.is_empty() && !w.canceled, "{w:?}");
    assert_eq!(header.revision, current, "progress at the store's revision, not beyond it");
    // Another watch opened now gets the next put at once.
    let mut other = member.client();
    let (now, _) = watch(&mut other, prefix("f/"));
    let revision = writer.put(b"f/1", b"1").unwrap().revision;
    assert_eq!(events_until(&mut other, now, revision).len(), 1);
    // The future watch starts exactly at its start revision.
    for i in 2..8 {
        writer.put(format!("f/{i}").as_bytes(), b"v").unwrap();
    }
    let mut events = Vec::new();
    while events.last().is_none_or(|e: &WatchEvent| e.kv.mod_revision < start + 2) {
        let (header, w) = next(&mut client, future);
        assert!(!w.canceled, "{w:?}");
        assert!(header.revision >= start - 1 || w.events.is_empty(), "{header:?} {w:?}");
        events.extend(w.events);
    }
    assert_eq!(events[0].kv.mod_revision, start);
}

/// The `created` response names the revision the watch starts after:
/// nothing written after it is missed, under a concurrent write load.
#[test]
fn a_watch_gets_every_write_after_its_created_revision() {
    let dir = temp_dir("watch-created-revision");
    let member = Member::start(&dir);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (mut client, stop) = (member.client(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    client.put(format!("w/{w}/{}", i % 50).as_bytes(), b"v").unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut client = member.client();
    let mut reader = member.client();
    for _ in 0..30 {
        let id = client.send(&Request::WatchCreate(prefix("w/"))).unwrap();
        let created = client.receive(id).unwrap();
        assert!(matches!(&created.result, Ok(ResponseBody::Watch(w)) if w.created));
        let after = reader.call(&Request::Status).unwrap().0.revision;
        let events = events_until(&mut client, id, after);
        assert_eq!(
            events[0].kv.mod_revision,
            created.header.revision + 1,
            "none missed or repeated"
        );
        let watch_id = match created.result {
            Ok(ResponseBody::Watch(w)) => w.watch_id,
            _ => unreachable!(),
        };
        let cancel = client.send(&Request::WatchCancel(watch_id)).unwrap();
        client.receive(cancel).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn cancel_filters_ids_and_progress() {
    let dir = temp_dir("watch-cancel");
    let member = Member::start(&dir);
    let mut client = member.client();
    let mut writer = member.client();
    let (puts_only, id1) =
        watch(&mut client, WatchCreateRequest { no_delete: true, ..prefix("f/") });
    let (deletes_only, id2) =
        watch(&mut client, WatchCreateRequest { no_put: true, ..prefix("f/") });
    assert_ne!(id1, id2);
    // A watch id in use is refused.
    let id = client
        .send(&Request::WatchCreate(WatchCreateRequest { watch_id: id1, ..prefix("f/") }))
        .unwrap();
    assert!(client.receive(id).unwrap().result.is_err());
    writer.put(b"f/a", b"1").unwrap();
    let d = DeleteRangeRequest { key: b("f/a"), ..Default::default() };
    let (header, _) = writer.call(&Request::DeleteRange(d)).unwrap();
    let puts = events_until(&mut client, puts_only, header.revision - 1);
    assert_eq!(puts.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventType::Put]);
    let deletes = events_until(&mut client, deletes_only, header.revision);
    assert_eq!(deletes.len(), 1);
    assert_eq!((deletes[0].kind, deletes[0].kv.key.clone()), (EventType::Delete, b("f/a")));
    // Progress: every watch of the connection has been sent everything up to it.
    let id = client.send(&Request::WatchProgress).unwrap();
    let response = client.receive(id).unwrap();
    assert!(response.header.revision >= header.revision - 1, "{response:?}");
    // Cancel: the stream ends with `canceled`, the cancel is answered too.
    let id = client.send(&Request::WatchCancel(id1)).unwrap();
    let (_, end) = next(&mut client, puts_only);
    assert!(end.canceled && end.watch_id == id1);
    assert!(matches!(client.receive(id).unwrap().result, Ok(ResponseBody::Watch(w)) if w.canceled));
    let id = client.send(&Request::WatchCancel(id1)).unwrap();
    let error = client.receive(id).unwrap().result.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidArgument);
    // Nothing more arrives on the canceled stream; the other goes on.
    writer.put(b"f/b", b"2").unwrap();
    let d = DeleteRangeRequest { key: b("f/b"), ..Default::default() };
    let (header, _) = writer.call(&Request::DeleteRange(d)).unwrap();
    let deletes = events_until(&mut client, deletes_only, header.revision);
    assert_eq!(deletes.last().unwrap().kv.key, b("f/b"));
}

#[test]
fn a_slow_reader_falls_back_to_history_and_misses_nothing() {
    let dir = temp_dir("watch-slow");
    let member = Member::start(&dir);
    let mut writer = member.client();
    let mut slow = member.client();
    let mut fast = member.client();
    let (slow_stream, _) = watch(&mut slow, prefix("s/"));
    let (fast_stream, _) = watch(&mut fast, prefix("s/"));
    // More events than the server's log holds (65,536), while `slow` reads
    // nothing; `fast` reads as they come (from another thread).
    let total = 80_000;
    let fast_reader = std::thread::spawn(move || {
        let mut count = 0usize;
        let mut last = 0;
        let started = Instant::now();
        while count < total {
            let (_, w) = next(&mut fast, fast_stream);
            for e in &w.events {
                assert!(e.kv.mod_revision > last, "fast: out of order");
                last = e.kv.mod_revision;
            }
            count += w.events.len();
        }
        (count, started.elapsed())
    });
    // 1 KiB values: far more than the socket buffers and the server's
    // per-connection queue hold.
    let puts: Vec<(String, String)> =
        (0..total).map(|i| (format!("s/{:05}", i % 5000), format!("{i:01024}"))).collect();
    let revisions = put_many(&mut writer, &puts);
    let (count, _) = fast_reader.join().unwrap();
    assert_eq!(count, total);
    std::thread::sleep(Duration::from_millis(300));
    // Now the slow reader reads everything: all revisions, in order, once.
    slow.set_timeout(Duration::from_secs(20)).unwrap();
    let events = events_until(&mut slow, slow_stream, *revisions.last().unwrap());
    let got: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(got, revisions, "the slow reader's stream");
    for (event, (key, value)) in events.iter().zip(&puts) {
        assert_eq!((&event.kv.key, &event.kv.value), (&b(key), &b(value)));
    }
    let log = member.log_text();
    assert!(log.contains("is slow: its watches wait"), "{log}");
    assert!(log.contains("takes watch events again"), "{log}");
    assert!(log.contains("is behind the event log; reading history"), "{log}");
    assert!(log.contains("caught up at revision"), "{log}");
}

#[test]
fn a_thousand_watches_on_one_connection_do_not_make_it_slow() {
    // Kubernetes' API server multiplexes its watches on few connections: a
    // revision then sends a response per watch into one connection's queue.
    // What the queue may hold grows with the connection's watches, so these
    // 40 revisions (40,000 responses, ~9 MB: more than the 4 MiB a
    // connection with one watch may queue) wait there whole while the
    // client reads nothing, and no watch is held back.
    let dir = temp_dir("watch-many-on-one");
    let member = Member::start(&dir);
    let mut writer = member.client();
    let mut client = member.client();
    let streams: Vec<u64> = (0..1000).map(|_| watch(&mut client, prefix("m/")).0).collect();
    let puts: Vec<(String, String)> =
        (0..40).map(|i| (format!("m/{i:02}"), format!("{i:0100}"))).collect();
    let revisions = put_many(&mut writer, &puts);
    std::thread::sleep(Duration::from_millis(300));
    for stream in &streams {
        let events = events_until(&mut client, *stream, *revisions.last().unwrap());
        let got: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
        assert_eq!(got, revisions, "stream {stream}");
    }
    let log = member.log_text();
    assert!(!log.contains("is slow"), "{log}");
    assert!(!log.contains("is behind the event log"), "{log}");
}

#[test]
fn a_revision_larger_than_the_queue_budget_goes_while_other_watches_keep_busy() {
    // One connection: a watch on s/ that a writer keeps busy, and a watch
    // with prev_kv on big/, whose delete of 48 keys of 100 KiB makes one
    // ~4.8 MB response: more than the connection may queue (4 MiB + 16 KiB
    // per watch). It must still go, whole, while s/ events keep coming.
    let dir = temp_dir("watch-oversize");
    let member = Member::start(&dir);
    let mut writer = member.client();
    let big: Vec<(String, String)> =
        (0..48).map(|i| (format!("big/{i:02}"), "x".repeat(100 * 1024))).collect();
    put_many(&mut writer, &big);
    let mut client = member.client();
    client.set_timeout(Duration::from_secs(30)).unwrap();
    let (small_stream, _) = watch(&mut client, prefix("s/"));
    let (big_stream, _) =
        watch(&mut client, WatchCreateRequest { prev_kv: true, ..prefix("big/") });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let (stop, mut writer) = (stop.clone(), member.client());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(20)
            {
                let puts: Vec<(String, String)> =
                    (0..64).map(|j| (format!("s/{:03}", (i + j) % 500), "v".repeat(200))).collect();
                put_many(&mut writer, &puts);
                i += 64;
            }
            i
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let delete = DeleteRangeRequest { key: b("big/"), range_end: b("big0"), prev_kv: false };
    let deleted_at = writer.call(&Request::DeleteRange(delete)).unwrap().0.revision;
    let (mut small_last, mut big_events) = (0, Vec::new());
    let received = loop {
        let (id, response) = client.receive_any().unwrap();
        let Ok(ResponseBody::Watch(w)) = response.result else { panic!("{response:?}") };
        assert!(!w.canceled, "{w:?}");
        if id == small_stream {
            for e in &w.events {
                assert!(e.kv.mod_revision > small_last, "s/ out of order");
                small_last = e.kv.mod_revision;
            }
        } else if id == big_stream {
            big_events.extend(w.events);
            if big_events.len() == big.len() {
                break !stop.swap(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    let puts = writing.join().unwrap();
    assert!(received, "big/ was delivered only once the writer stopped ({puts} puts)");
    for (event, (key, value)) in big_events.iter().zip(&big) {
        assert_eq!(event.kind, EventType::Delete);
        assert_eq!(event.kv.mod_revision, deleted_at);
        let prev = event.prev_kv.as_ref().expect("prev_kv");
        assert_eq!((&prev.key, prev.value.len()), (&b(key), value.len()));
    }
}

#[test]
fn a_large_revision_comes_whole_or_in_fragments_when_asked() {
    let dir = temp_dir("watch-fragment");
    let member = Member::start(&dir);
    let mut client = member.client();
    let puts: Vec<(String, String)> =
        (0..1500).map(|i| (format!("g/{i:04}"), "v".into())).collect();
    put_many(&mut client, &puts);
    let mut watcher = member.client();
    let (pieces, _) = watch(&mut watcher, WatchCreateRequest { fragment: true, ..prefix("g/") });
    let (whole, _) = watch(&mut watcher, prefix("g/"));
    let d = DeleteRangeRequest { key: b("g/"), range_end: b("g0"), prev_kv: false };
    let (header, _) = client.call(&Request::DeleteRange(d)).unwrap();
    // Without fragments: one response with all 1,500 deletes.
    let (_, w) = next(&mut watcher, whole);
    assert_eq!((w.events.len(), w.fragment), (1500, false));
    assert!(w
        .events
        .iter()
        .all(|e| e.kind == EventType::Delete && e.kv.mod_revision == header.revision));
    // With fragments: pieces of at most 1,024 events, all but the last marked.
    let mut got = Vec::new();
    loop {
        let (_, w) = next(&mut watcher, pieces);
        assert!(w.events.len() <= 1024);
        got.extend(w.events);
        if !w.fragment {
            break;
        }
    }
    assert_eq!(got.len(), 1500);
    let keys: Vec<_> = got.iter().map(|e| e.kv.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1500, "no event twice");
}

#[test]
fn progress_notifications_come_to_quiet_watches_that_asked() {
    let dir = temp_dir("watch-progress");
    let member =
        Member::start_with(&dir, &["--experimental-watch-progress-notify-interval", "300ms"]);
    let mut client = member.client();
    let mut writer = member.client();
    let (stream, _) =
        watch(&mut client, WatchCreateRequest { progress_notify: true, ..prefix("p/") });
    let revision = writer.put(b"p/a", b"1").unwrap().revision;
    let events = events_until(&mut client, stream, revision);
    assert_eq!(events.len(), 1);
    // Then, with nothing happening: an empty response at that revision.
    let started = Instant::now();
    let (header, w) = next(&mut client, stream);
    assert!(w.events.is_empty() && !w.canceled && !w.created, "{w:?}");
    assert_eq!(header.revision, revision);
    assert!(started.elapsed() < Duration::from_secs(3));
    // A bad interval is refused at start-up.
    let mut bad = common::corekv_command(
        &temp_dir("watch-progress-bad"),
        common::free_port(),
        common::free_port(),
        &dir.with_extension("bad.log"),
    );
    let status =
        bad.args(["--experimental-watch-progress-notify-interval", "0s"]).status().unwrap();
    assert!(!status.success());
}

#[test]
fn a_reader_left_behind_by_compaction_is_canceled_with_the_compaction_revision() {
    let dir = temp_dir("watch-behind-compacted");
    let member = Member::start(&dir);
    let mut writer = member.client();
    let mut slow = member.client();
    let (stream, _) = watch(&mut slow, prefix("b/"));
    // Far more than the event log (65,536 events) plus what the connection
    // buffers hold, while `slow` reads nothing; then history up to the end
    // is compacted away.
    let puts: Vec<(String, String)> =
        (0..140_000).map(|i| (format!("b/{:04}", i % 1000), format!("{i:0256}"))).collect();
    let revisions = put_many(&mut writer, &puts);
    let last = *revisions.last().unwrap();
    let request = Request::Compact(CompactRequest { revision: last, physical: false });
    writer.call(&request).unwrap();
    // The reader gets what was queued for it before, then the cancel.
    slow.set_timeout(Duration::from_secs(20)).unwrap();
    let mut received = 0usize;
    let end = loop {
        let (_, w) = next(&mut slow, stream);
        if w.canceled {
            break w;
        }
        for e in &w.events {
            assert_eq!(e.kv.mod_revision, revisions[received], "in order, none missing");
            received += 1;
        }
    };
    assert_eq!(end.compact_revision, last, "{end:?}");
    assert!(received < puts.len(), "it had fallen behind ({received} received)");
}

/// Rounds are paced (at most `limits::watch_round_pause_max` after the last
/// one began), and an event still wakes its hub at once: an event waiting
/// for the hub's 100 ms tick instead would put the median near 50 ms.
#[test]
fn events_come_within_milliseconds_of_their_put_under_paced_rounds() {
    let dir = temp_dir("watch-prompt");
    let member = Member::start(&dir);
    let mut client = member.client();
    let mut writer = member.client();
    // A hundred watches on one connection: each round has 100 responses.
    let streams: Vec<u64> = (0..100).map(|_| watch(&mut client, prefix("q/")).0).collect();
    let mut waits = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        let revision = writer.put(format!("q/{i}").as_bytes(), b"v").unwrap().revision;
        for stream in &streams {
            let events = events_until(&mut client, *stream, revision);
            assert_eq!(events.last().map(|e| e.kv.mod_revision), Some(revision));
        }
        waits.push(started.elapsed());
        // Now and then right away, now and then after the pause has passed.
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    waits.sort();
    let median = waits[waits.len() / 2];
    assert!(median < Duration::from_millis(25), "median put → event {median:?}: {waits:?}");
}

/// As etcd: a watch whose range holds no key (range end ≤ key) is created
/// and canceled in one response, id -1, "mvcc: watcher range is empty"; the
/// connection's other watches go on.
#[test]
fn a_watch_on_an_empty_range_is_created_and_canceled_at_once() {
    let dir = temp_dir("watch-empty-range");
    let member = Member::start(&dir);
    let mut client = member.client();
    for (key, end) in [("w/t3", "w/t1"), ("w/a", "w/a")] {
        let create = WatchCreateRequest { key: b(key), range_end: b(end), ..Default::default() };
        let id = client.send(&Request::WatchCreate(create)).unwrap();
        let (_, w) = next(&mut client, id);
        assert!(w.created && w.canceled, "{w:?}");
        assert_eq!((w.watch_id, w.cancel_reason.as_str()), (-1, "mvcc: watcher range is empty"));
    }
    // corekvctl says so and exits 5, as etcdctl does (instead of waiting).
    let mut ctl = std::process::Command::new(env!("CARGO_BIN_EXE_corekvctl"))
        .args(["--endpoints", &member.endpoint, "watch", "w/t3", "w/t1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            ctl.kill().unwrap();
            panic!("corekvctl watch on an empty range did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = ctl.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "watch was canceled (mvcc: watcher range is empty)\n\
         Error: watch is canceled by the server\n"
    );
    // No id was taken: the next watch gets the id a connection's first does.
    let (stream, id) = watch(&mut client, prefix("w/"));
    let (_, first) = watch(&mut member.client(), prefix("w/"));
    assert_eq!(id, first);
    let revision = client.put(b"w/x", b"1").unwrap().revision;
    let got = events_until(&mut client, stream, revision);
    assert_eq!(summary(&got), vec![(revision, EventType::Put, b("w/x"), b("1"))]);
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Events of one revision (a txn's) come in the order of its operations,
/// as in etcd (its sub-revisions): live, replayed from history in memory,
/// and replayed after a restart (from the page store's checkpoint).
#[test]
fn a_txns_events_replay_in_the_order_of_its_operations() {
    let dir = temp_dir("watch-txn-order");
    let mut member = Member::start_with(&dir, &["--snapshot-count", "3"]);
    let mut client = member.client();
    client.put(b"w/m", b"0").unwrap();
    let put =
        |key: &str| RequestOp::Put(PutRequest { key: b(key), value: b("1"), ..Default::default() });
    let txn = |keys: [&str; 3]| {
        let delete = DeleteRangeRequest { key: b("w/m"), ..Default::default() };
        let success =
            vec![put(keys[0]), put(keys[1]), RequestOp::DeleteRange(delete), put(keys[2])];
        Request::Txn(TxnRequest { compare: vec![], success, failure: vec![] })
    };
    let order = |events: &[WatchEvent]| -> Vec<(i64, String)> {
        let key = |e: &WatchEvent| String::from_utf8_lossy(&e.kv.key).into_owned();
        events.iter().map(|e| (e.kv.mod_revision, key(e))).collect()
    };
    let want = |revision: i64, keys: [&str; 4]| -> Vec<(i64, String)> {
        keys.iter().map(|k| (revision, k.to_string())).collect()
    };
    // No watcher yet: a watch from its revision reads the history.
    let revision = client.call(&txn(["w/z", "w/a", "w/q"])).unwrap().0.revision;
    let first = want(revision, ["w/z", "w/a", "w/m", "w/q"]);
    let from = WatchCreateRequest { start_revision: revision, ..prefix("w/") };
    let (stream, _) = watch(&mut client, from.clone());
    let mut got = order(&events_until(&mut client, stream, revision));
    got.retain(|(r, _)| *r == revision);
    assert_eq!(got, first, "from history");
    // Live (the key w/m put back first, so the txn deletes it again).
    client.put(b"w/m", b"0").unwrap();
    let (live, _) = watch(&mut client, prefix("w/"));
    let second = client.call(&txn(["w/y", "w/b", "w/c"])).unwrap().0.revision;
    let got = events_until(&mut client, live, second);
    assert_eq!(order(&got), want(second, ["w/y", "w/b", "w/m", "w/c"]), "live");
    // Checkpointed (every 3 entries), then loaded back after a restart.
    for i in 0..6 {
        client.put(format!("x/{i}").as_bytes(), b"v").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !member.log_text().contains("db (index ") {
        assert!(Instant::now() < deadline, "no checkpoint:\n{}", member.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    member.restart();
    let mut client = member.client();
    let (stream, _) = watch(&mut client, from);
    let mut got = order(&events_until(&mut client, stream, revision));
    got.retain(|(r, _)| *r == revision);
    assert_eq!(got, first, "after a restart");
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}
