//! Kill -9 durability: several clients write while the real server is killed
//! with SIGKILL; after each restart every acknowledged write is present with
//! the revision it was acknowledged at. The member checkpoints its page store
//! (and writes a snapshot file) every few hundred entries and purges its WAL
//! behind them, so kills land before, during and after checkpoints, purges and
//! segment roll-overs, and restarts go through checkpoint load + WAL replay.

#![allow(non_upper_case_globals)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{temp_dir, Member};
use corekv::client::Client;
use corekv::types::*;

const rounds: usize = 50;
const writers: usize = 4;

/// (key, value, revision) of every acknowledged put.
type Acked = Arc<Mutex<Vec<(String, String, i64)>>>;

fn writer(endpoint: String, round: usize, id: usize, acked: Acked, stop: Arc<AtomicBool>) {
    let Ok(mut client) = Client::connect(&[endpoint], Duration::from_secs(2)) else { return };
    // Pipeline a few puts at a time so batches hold several entries.
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut sent = Vec::new();
        for _ in 0..4 {
            let key = format!("w{id}/r{round}/{i:06}");
            let value = format!("value-{round}-{id}-{i}");
            i += 1;
            let request = Request::Put(PutRequest {
                key: Bytes::from(key.clone()),
                value: Bytes::from(value.clone()),
                ..Default::default()
            });
            match client.send(&request) {
                Ok(request_id) => sent.push((request_id, key, value)),
                Err(_) => return,
            }
        }
        for (request_id, key, value) in sent {
            match client.receive(request_id) {
                Ok(Response { header, result: Ok(_) }) => {
                    acked.lock().unwrap().push((key, value, header.revision))
                }
                _ => return,
            }
        }
    }
}

fn check_all_present(member: &Member, acked: &[(String, String, i64)]) {
    let mut client = member.client();
    let everything = Request::Range(RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        ..Default::default()
    });
    let (_, ResponseBody::Range(range)) = client.call(&everything).unwrap() else { panic!() };
    let stored: std::collections::HashMap<Bytes, KeyValue> =
        range.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    for (key, value, revision) in acked {
        let kv = stored.get(key.as_bytes()).unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.value.as_ref(), value.as_bytes(), "{key}");
        assert_eq!(kv.mod_revision, *revision, "{key} kept the revision it was acknowledged at");
        assert_eq!(kv.create_revision, *revision);
    }
    // Every put made exactly one revision: the store's revision is at least
    // the number of acknowledged puts + 1.
    let (header, _) = client.status().unwrap();
    assert!(
        header.revision > acked.len() as i64,
        "revision {} for {} puts",
        header.revision,
        acked.len()
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_mid_load() {
    survive_kills("durability", rounds, &[]);
}

/// The same with the store reading older history from the page store's
/// checkpoints (frozen layers, rebases, no load at start-up).
#[test]
fn acknowledged_writes_survive_sigkill_reading_from_disk() {
    survive_kills("durability-disk", rounds / 2, &["--experimental-reads-from-disk"]);
}

fn survive_kills(name: &str, round_count: usize, extra: &[&str]) {
    let dir = temp_dir(name);
    let mut flags =
        vec!["--snapshot-count", "300", "--snapshot-retain", "2", "--wal-retain-entries", "100"];
    flags.extend_from_slice(extra);
    let mut member = Member::start_with(&dir, &flags);
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let mut seed = 0x2545F4914F6CDD1Du64;
    for round in 0..round_count {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..writers)
            .map(|id| {
                let (endpoint, acked, stop) =
                    (member.endpoint.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || writer(endpoint, round, id, acked, stop))
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 250));
        member.kill9();
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        if extra.is_empty() {
            // Every other restart loads the checkpoint before serving; the
            // others (short WAL tails) serve from its pages while loading it.
            member.args.retain(|a| a != "--experimental-load-before-serving");
            if round % 2 == 1 {
                member.args.push("--experimental-load-before-serving".into());
            }
        }
        member.restart();
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty());
        check_all_present(&member, &acked);
    }
    let total = acked.lock().unwrap().len();
    let log = member.log_text();
    let (checkpoints, loads) = (
        log.matches("corekv: checkpoint ").count(),
        log.matches("loaded checkpoint ").count() + log.matches("opened checkpoint ").count(),
    );
    eprintln!(
        "{name}: {round_count} SIGKILL rounds, {total} acknowledged puts all present; \
         {checkpoints} checkpoints taken, {loads} restarts from a checkpoint"
    );
    assert!(
        checkpoints >= 10 && loads >= 10,
        "kills met checkpoints: {checkpoints} taken, {loads} loaded"
    );
    if extra.is_empty() {
        let (first, meanwhile) = (
            log.matches("loaded checkpoint ").count(),
            log.matches("; loading it into memory while serving").count(),
        );
        assert!(first >= 3 && meanwhile >= 3, "loaded {first} before serving, {meanwhile} while");
    }
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint backlog of 50 changes: writes stall while each checkpoint
/// runs and resume when it is done; every acknowledged write is there, after
/// the stalls and after a kill -9.
#[test]
fn writes_stall_while_checkpoints_catch_up_and_nothing_is_lost() {
    let dir = temp_dir("stall");
    let flags = ["--snapshot-count", "100", "--experimental-checkpoint-backlog", "50"];
    let mut member = Member::start_with(&dir, &flags);
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..writers)
        .map(|id| {
            let (endpoint, acked, stop) = (member.endpoint.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || writer(endpoint, 0, id, acked, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let log = member.log_text();
    let stalls = log.matches("write stall").count();
    assert!(stalls >= 1, "no write stall with a backlog of 50:\n{log}");
    assert!(acked.len() > 500, "writes went on between stalls: {} acknowledged", acked.len());
    check_all_present(&member, &acked);
    member.kill9();
    member.restart();
    check_all_present(&member, &acked);
    eprintln!("stall: {} acknowledged puts, {stalls} write stalls", acked.len());
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The log driver follows a lone writer's core (`driver::Follow`): one
/// writer pinned to one CPU, then to the other, in turns, moves the driver
/// to its core in each turn (but the first, if the driver starts there).
/// Every write acknowledged around the moves, and in the last turn, cut
/// short by kill -9, is there after the restart.
#[test]
fn the_log_driver_follows_a_lone_writer_between_cores_and_loses_nothing() {
    let cpus = corekv::runtime::core_cpus(2);
    assert_ne!(cpus[0], cpus[1], "this test needs two CPUs");
    let dir = temp_dir("follow");
    let flags = ["--snapshot-count", "300", "--wal-retain-entries", "100"];
    let mut member = Member::start_with(&dir, &flags);
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let moves = |member: &Member| member.log_text().matches("corekv: log driver moves").count();
    // The driver's home: the core on the CPU taking the disk's interrupts,
    // else core 0. Only if that CPU is known does the driver poll for its
    // WAL writes away from home (`Follow::write_spin`).
    let start = member.log_text();
    let home = usize::from(start.contains("log driver on core 1 "));
    let interrupts_known = start.contains("takes the WAL disk's interrupts");
    let one_queue = corekv::runtime::disk_queues(&dir) == Some(1);
    let mut at = home;
    let turns = 5;
    for turn in 0..turns {
        let acked_before = acked.lock().unwrap().len();
        let (cpu, core) = (cpus[turn % 2], turn % 2);
        // The driver moves to this turn's core (at most once a second), if
        // it is not there. A writer's connection is served on its CPU's core
        // unless that core holds more connections than the other (a
        // connection just closed may still count there: placement::choose),
        // so a writer that brings no move in 5 s connects again.
        let mut attempts = 0;
        let (stop, thread) = loop {
            let stop = Arc::new(AtomicBool::new(false));
            let (endpoint, into, stop_writer) =
                (member.endpoint.clone(), acked.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                corekv::runtime::pin_current_thread(cpu);
                // Keys of its own (the writer id) in each attempt.
                writer(endpoint, turn, attempts, into, stop_writer)
            });
            let moves_before = moves(&member);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while core != at
                && moves(&member) == moves_before
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if core == at || moves(&member) > moves_before {
                break (stop, thread);
            }
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
            attempts += 1;
            eprintln!("follow: no move in turn {turn} in 5 s; the writer connects again");
            assert!(attempts < 4, "no move in turn {turn}:\n{}", member.log_text());
        };
        at = core;
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            member.child.try_wait().unwrap().is_none(),
            "corekv exited:\n{}",
            member.log_text()
        );
        if turn + 1 == turns {
            member.kill9();
        }
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        let acked_now = acked.lock().unwrap().len();
        assert!(acked_now > acked_before, "turn {turn} acknowledged no write");
    }
    let log = member.log_text();
    let moved = moves(&member);
    assert!(moved >= turns - 1 && moved <= turns, "{moved} moves in {turns} turns:\n{log}");
    assert!(!log.contains("fatal"), "{log}");
    // Each turn away from home (after a move there) polls, if the disk's
    // interrupts have a known CPU and one queue.
    let away_moves = log.matches("corekv: log driver moves").count()
        - log.matches(&format!("to core {home}, following")).count();
    let polling =
        log.matches(&format!("log driver on core {} polls up to 1000 µs", 1 - home)).count();
    assert_eq!(polling, if interrupts_known && one_queue { away_moves } else { 0 }, "{log}");
    assert!(!log.contains(&format!("log driver on core {home} polls")), "{log}");
    member.restart();
    let acked = acked.lock().unwrap().clone();
    check_all_present(&member, &acked);
    eprintln!("follow: {moved} moves of the log driver, {} acknowledged puts present", acked.len());
    drop(member);
    std::fs::remove_dir_all(&dir).unwrap();
}
