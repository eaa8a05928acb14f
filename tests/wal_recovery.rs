//! The WAL on real files: records survive, torn tails are cut exactly before
//! the damage, and damage in the middle of the log refuses to open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corekv::disk::{block_on_ready, StdDisk};
use corekv::limits;
use corekv::runtime::{polled_wal_writes, run_cores, DmaDisk};
use corekv::wal::{self, EntryRef, RecoveryError, WalWriter};

const SEGMENT: u64 = limits::wal_segment_bytes_min;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn payload(index: u64) -> Vec<u8> {
    let len = (index * 7919 % 3000) as usize + 1;
    (0..len).map(|i| (index as usize * 31 + i) as u8).collect()
}

/// The payloads of entries `first..first + count`.
fn payloads(first: u64, count: u64) -> Vec<Vec<u8>> {
    (first..first + count).map(payload).collect()
}

/// Entries `first..` of term 1 carrying `payloads`.
fn entries(first: u64, payloads: &[Vec<u8>]) -> Vec<EntryRef<'_>> {
    let mut entries = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        entries.push(EntryRef { term: 1, index: first + i as u64, payload });
    }
    entries
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corekv-wal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes entries 1..=count in batches of varying size; returns the first
/// index of each batch (each one write, or two across a segment's end).
fn write_log(dir: &Path, count: u64, rng: &mut Rng) -> Vec<u64> {
    write_log_moving(dir, count, rng, false)
}

/// `write_log`; with `moving`, the writer is suspended after every batch and
/// resumed on another thread (as the log driver moves between cores).
fn write_log_moving(dir: &Path, count: u64, rng: &mut Rng, moving: bool) -> Vec<u64> {
    let recovered = wal::recover(dir, SEGMENT, |_, _, _| panic!("fresh log")).unwrap();
    let mut writer =
        block_on_ready(WalWriter::open(StdDisk, dir, SEGMENT, 0, recovered.tail)).unwrap();
    let mut next = 1;
    let mut starts = Vec::new();
    while next <= count {
        starts.push(next);
        let batch = (rng.below(40) + 1).min(count - next + 1);
        let payloads = payloads(next, batch);
        block_on_ready(writer.append(&entries(next, &payloads))).unwrap();
        next += batch;
        if moving {
            let suspended = block_on_ready(writer.suspend()).unwrap();
            assert_eq!(suspended.last_index(), next - 1);
            writer = std::thread::spawn(move || {
                block_on_ready(WalWriter::resume(StdDisk, suspended)).map_err(|(e, _)| e).unwrap()
            })
            .join()
            .unwrap();
        }
    }
    block_on_ready(writer.close()).unwrap();
    starts
}

fn read_log(dir: &Path) -> Result<(Vec<u64>, wal::Recovered), RecoveryError> {
    let mut seen = Vec::new();
    let recovered = wal::recover(dir, SEGMENT, |term, index, bytes| {
        assert_eq!(term, 1);
        assert_eq!(bytes.as_ref(), payload(index).as_slice(), "entry {index} intact");
        seen.push(index);
    })?;
    Ok((seen, recovered))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut list: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    list.sort();
    list
}

/// Start offsets of the records in one segment file.
fn record_offsets(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = wal::format::segment_header_bytes;
    let mut offsets = Vec::new();
    while let wal::format::Decoded::Record(r) = wal::format::decode_record(&bytes[at..]) {
        offsets.push(at as u64);
        at += r.total_bytes;
    }
    offsets
}

#[test]
fn every_entry_survives_across_segments_and_reopen() {
    let dir = temp_dir("survive");
    let mut rng = Rng(1);
    write_log(&dir, 6000, &mut rng);
    assert!(segments(&dir).len() >= 3, "the log spans several segments");
    let (seen, recovered) = read_log(&dir).unwrap();
    assert_eq!(seen, (1..=6000).collect::<Vec<_>>());
    assert!(recovered.truncated.is_none());
    // Appending after a reopen continues the same log.
    let mut writer =
        block_on_ready(WalWriter::open(StdDisk, &dir, SEGMENT, 6000, recovered.tail)).unwrap();
    let p = payload(6001);
    block_on_ready(writer.append(&[EntryRef { term: 1, index: 6001, payload: &p }])).unwrap();
    block_on_ready(writer.close()).unwrap();
    assert_eq!(read_log(&dir).unwrap().0.len(), 6001);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_writer_suspended_and_resumed_on_another_thread_after_every_batch_loses_nothing() {
    let dir = temp_dir("moving");
    let mut rng = Rng(7);
    write_log_moving(&dir, 8000, &mut rng, true);
    assert!(segments(&dir).len() >= 3, "the moves span segment roll-overs");
    let (seen, recovered) = read_log(&dir).unwrap();
    assert_eq!(seen, (1..=8000).collect::<Vec<_>>());
    assert!(recovered.truncated.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The WAL through DMA files on an executor, as a member writes it, in
/// three phases of 3000 entries (each past a segment roll-over), with the
/// spin set once at each phase's start (`WalWriter::set_write_spin`, the
/// log driver away from the disk's interrupt CPU): 1 ms, every write
/// polled, mostly within the spin; 1 µs, mostly found on the timer; zero,
/// slept for through glommio. Every entry is there.
#[test]
fn dma_writes_waited_for_by_polling_or_by_sleeping_lose_nothing() {
    let dir = temp_dir("dma-spin");
    let recovered = wal::recover(&dir, SEGMENT, |_, _, _| panic!("fresh log")).unwrap();
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Some(recovered.tail)));
    let phase = 3000;
    let writing = dir.clone();
    run_cores(1, "wal-spin-test", Duration::ZERO, move |_| {
        let (dir, tail) = (writing.clone(), tail.lock().unwrap().take().expect("one core"));
        async move {
            let mut writer = WalWriter::open(DmaDisk, &dir, SEGMENT, 0, tail).await.unwrap();
            let (mut rng, mut next) = (Rng(11), 1);
            let spins = [Duration::from_millis(1), Duration::from_micros(1), Duration::ZERO];
            for (n, spin) in spins.into_iter().enumerate() {
                writer.set_write_spin(spin);
                let (spun, napped) = polled_wal_writes();
                let (segments_before, mut batches) = (segments(&dir).len(), 0);
                while next <= phase * (n as u64 + 1) {
                    let batch = (rng.below(40) + 1).min(phase * (n as u64 + 1) - next + 1);
                    let payloads = payloads(next, batch);
                    writer.append(&entries(next, &payloads)).await.unwrap();
                    next += batch;
                    batches += 1;
                }
                assert!(segments(&dir).len() > segments_before, "phase {n} rolled over");
                let (spun, napped) = {
                    let now = polled_wal_writes();
                    (now.0 - spun, now.1 - napped)
                };
                match n {
                    0 | 1 => {
                        let (within, late) = if n == 0 { (spun, napped) } else { (napped, spun) };
                        assert!(spun + napped >= batches && within > late / 2, "{spun} {napped}")
                    }
                    _ => assert_eq!((spun, napped), (0, 0)),
                }
            }
            writer.close().await.unwrap();
        }
    })
    .unwrap();
    let (seen, recovered) = read_log(&dir).unwrap();
    assert_eq!(seen, (1..=3 * phase).collect::<Vec<_>>());
    assert!(recovered.truncated.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn torn_tails_open_with_exactly_the_records_before_the_damage() {
    let mut rng = Rng(7);
    for round in 0..40 {
        let dir = temp_dir(&format!("torn{round}"));
        let batch_starts = write_log(&dir, 1500 + rng.below(1500), &mut rng);
        let last = segments(&dir).pop().unwrap();
        let offsets = record_offsets(&last);
        let total_before = read_log(&dir).unwrap().0.len();
        // Damage somewhere inside the last three records of the log.
        let victim = offsets.len() - 1 - rng.below(3.min(offsets.len() as u64)) as usize;
        let record_end = offsets.get(victim + 1).copied().unwrap_or_else(|| {
            offsets[victim] + wal::format::record_bytes(payload(0).len()) as u64
        });
        let damage_at = offsets[victim] + rng.below((record_end - offsets[victim]).max(1));
        let survivors = total_before - (offsets.len() - victim);
        // A damaged record of the last write is taken for that write cut
        // short (with the rest of it); one of an earlier write, followed by
        // a later write's records, is damage in the middle.
        // The last write starts at the last batch, or at the last segment's
        // first record if that batch began in the segment before.
        let victim_index = survivors as u64 + 1;
        let last_segment_first = (total_before - offsets.len()) as u64 + 1;
        let last_write = (*batch_starts.last().unwrap()).max(last_segment_first);
        let in_last_write = victim_index >= last_write;
        let truncate = round % 2 == 0;
        if truncate {
            let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
            file.set_len(damage_at).unwrap();
        } else {
            let mut bytes = std::fs::read(&last).unwrap();
            bytes[damage_at as usize] ^= 0x5a;
            std::fs::write(&last, bytes).unwrap();
        }
        match read_log(&dir) {
            Ok((seen, recovered)) => {
                let only_last_damaged = victim == offsets.len() - 1 || truncate || in_last_write;
                assert!(
                    only_last_damaged,
                    "round {round}: damage before the last write must refuse"
                );
                assert_eq!(
                    seen.len(),
                    survivors,
                    "round {round}: opens with the records before the damage"
                );
                let (file, offset) = recovered.truncated.expect("reports the cut");
                assert_eq!((file, offset), (last.clone(), offsets[victim]));
                // The repaired log takes new entries and keeps them.
                let next = seen.len() as u64 + 1;
                let mut writer = block_on_ready(WalWriter::open(
                    StdDisk,
                    &dir,
                    SEGMENT,
                    next - 1,
                    recovered.tail,
                ))
                .unwrap();
                let p = payload(next);
                block_on_ready(writer.append(&[EntryRef { term: 1, index: next, payload: &p }]))
                    .unwrap();
                block_on_ready(writer.close()).unwrap();
                assert_eq!(read_log(&dir).unwrap().0.len(), survivors + 1);
            }
            Err(RecoveryError::Corrupt { file, offset, .. }) => {
                assert!(
                    !truncate && victim < offsets.len() - 1 && !in_last_write,
                    "round {round}: a torn tail must open"
                );
                assert_eq!((file, offset), (last.clone(), offsets[victim]));
            }
            Err(other) => panic!("round {round}: {other}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Appends entries `first..first + count` as one batch (one write).
fn append_batch(dir: &Path, first: u64, count: u64) {
    let recovered = wal::recover(dir, SEGMENT, |_, _, _| {}).unwrap();
    let mut writer =
        block_on_ready(WalWriter::open(StdDisk, dir, SEGMENT, first - 1, recovered.tail)).unwrap();
    let payloads = payloads(first, count);
    block_on_ready(writer.append(&entries(first, &payloads))).unwrap();
    block_on_ready(writer.close()).unwrap();
}

/// A power cut during a write of many pages may persist any of them: the
/// pages that did not land hold what they held before (the tail page's
/// earlier records, zeros after). Whatever landed of the last write, the
/// log opens with the records before its first missing one.
#[test]
fn a_multi_page_write_cut_short_opens_whatever_pages_of_it_landed() {
    let mut rng = Rng(11);
    for round in 0..30 {
        let dir = temp_dir(&format!("torn-pages{round}"));
        write_log(&dir, 200 + rng.below(300), &mut rng);
        let before = read_log(&dir).unwrap().0.len();
        let path = segments(&dir).pop().unwrap();
        let old = std::fs::read(&path).unwrap();
        let count = 40 + rng.below(40) as usize;
        append_batch(&dir, before as u64 + 1, count as u64);
        let offsets = record_offsets(&path);
        let batch = &offsets[offsets.len() - count..];
        let mut torn = std::fs::read(&path).unwrap();
        // Lose a random set of the write's pages (at least one).
        let pages = batch[0] as usize / 4096..=(*batch.last().unwrap() as usize + 4096) / 4096;
        let mut lost = 0;
        for page in pages.clone() {
            if rng.below(3) == 0 || (page == *pages.end() && lost == 0) {
                let range = page * 4096..((page + 1) * 4096).min(torn.len());
                torn[range.clone()].copy_from_slice(&old[range]);
                lost += 1;
            }
        }
        std::fs::write(&path, &torn).unwrap();
        let intact = |at: u64| {
            matches!(
                wal::format::decode_record(&torn[at as usize..]),
                wal::format::Decoded::Record(_)
            )
        };
        let first_missing = batch.iter().position(|at| !intact(*at));
        let (seen, recovered) = read_log(&dir).unwrap_or_else(|e| panic!("round {round}: {e}"));
        match first_missing {
            Some(i) => {
                assert_eq!(seen.len(), before + i, "round {round}: the records before the loss");
                // Reported when records or bytes of the write were cut
                // (zeros from the first missing one on are a clean end).
                let dropped = batch[i + 1..].iter().any(|at| intact(*at));
                if dropped {
                    assert_eq!(
                        recovered.truncated,
                        Some((path.clone(), batch[i])),
                        "round {round}"
                    );
                }
                if let Some(cut) = &recovered.truncated {
                    assert_eq!(cut, &(path.clone(), batch[i]), "round {round}");
                }
            }
            None => assert_eq!(seen.len(), before + count, "round {round}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The same loss in the write before the last one is damage in the middle:
/// the last write was acknowledged, so the member refuses to start.
#[test]
fn a_lost_page_of_an_earlier_write_refuses_to_open() {
    let dir = temp_dir("torn-earlier");
    let mut rng = Rng(5);
    write_log(&dir, 300, &mut rng);
    let path = segments(&dir).pop().unwrap();
    let old = std::fs::read(&path).unwrap();
    append_batch(&dir, 301, 30);
    append_batch(&dir, 331, 60);
    let offsets = record_offsets(&path);
    // A page holding only records of the first of the two writes.
    let earlier = &offsets[offsets.len() - 90..offsets.len() - 60];
    let page = earlier[1] as usize / 4096 + 1;
    assert!(((page + 1) * 4096) as u64 <= earlier[earlier.len() - 1], "a page inside it");
    let mut torn = std::fs::read(&path).unwrap();
    torn[page * 4096..(page + 1) * 4096].copy_from_slice(&old[page * 4096..(page + 1) * 4096]);
    std::fs::write(&path, &torn).unwrap();
    match read_log(&dir) {
        Err(RecoveryError::Corrupt { file, .. }) => assert_eq!(file, path),
        other => panic!("expected a refusal, got {:?}", other.map(|(seen, _)| seen.len())),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_open_and_names_the_place() {
    let dir = temp_dir("middle");
    let mut rng = Rng(3);
    write_log(&dir, 5000, &mut rng);
    let first = segments(&dir)[0].clone();
    let offsets = record_offsets(&first);
    let target = offsets[offsets.len() / 2];
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[target as usize + 40] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let err = read_log(&dir).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&first.display().to_string()), "{message}");
    assert!(message.contains(&format!("offset {target}")), "{message}");
    // Refusing changed nothing: the same answer again.
    assert_eq!(read_log(&dir).unwrap_err().to_string(), message);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn read_log_after(dir: &Path, start_after: u64) -> Result<Vec<u64>, RecoveryError> {
    let mut seen = Vec::new();
    wal::recover_after(dir, SEGMENT, start_after, |_, index, bytes| {
        assert_eq!(bytes.as_ref(), payload(index).as_slice(), "entry {index} intact");
        seen.push(index);
    })?;
    Ok(seen)
}

#[test]
fn purge_drops_whole_segments_below_a_snapshot_and_recovery_resumes_after_it() {
    let dir = temp_dir("purge");
    let mut rng = Rng(11);
    let count = 12000;
    write_log(&dir, count, &mut rng);
    let before = segments(&dir);
    assert!(before.len() >= 4, "several segments: {}", before.len());
    // Before any purge, recovery after a snapshot at 8000 skips the segments
    // the snapshot covers and hands out exactly the later entries.
    let seen = read_log_after(&dir, 8000).unwrap();
    assert_eq!(seen, (8001..=count).collect::<Vec<_>>());
    let seen = read_log_after(&dir, count).unwrap();
    assert!(seen.is_empty());
    // Nothing below entry 1: nothing to purge.
    assert_eq!(wal::purge(&dir, 1).unwrap(), 0);
    // Keep from entry 8000: every segment ending before it goes, and the
    // first remaining one still holds entry 8000.
    let deleted = wal::purge(&dir, 8000).unwrap();
    assert!(deleted >= 1);
    let after = segments(&dir);
    assert_eq!(after.len(), before.len() - deleted);
    assert_eq!(after[..], before[deleted..], "the oldest segments went, in order");
    // A snapshot at 8000: recovery hands out exactly 8001..=count.
    let seen = read_log_after(&dir, 8000).unwrap();
    assert_eq!(seen, (8001..=count).collect::<Vec<_>>());
    // A snapshot older than the first remaining entry leaves a gap: refused.
    let error = read_log_after(&dir, 10).unwrap_err().to_string();
    assert!(error.contains("missing"), "{error}");
    // A snapshot beyond the end of the log: refused too.
    let error = read_log_after(&dir, count + 5).unwrap_err().to_string();
    assert!(error.contains("before the snapshot"), "{error}");
    // Purging everything keeps the last segment (the one being written).
    wal::purge(&dir, u64::MAX).unwrap();
    assert_eq!(segments(&dir).len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_log_after_a_restored_snapshot_continues_at_the_next_index() {
    let dir = temp_dir("restored");
    let recovered = wal::recover_after(&dir, SEGMENT, 500, |_, _, _| panic!("empty")).unwrap();
    assert_eq!(recovered.last_index, 500);
    let mut writer =
        block_on_ready(WalWriter::open(StdDisk, &dir, SEGMENT, 500, recovered.tail)).unwrap();
    let payloads = payloads(501, 10);
    block_on_ready(writer.append(&entries(501, &payloads))).unwrap();
    block_on_ready(writer.close()).unwrap();
    assert_eq!(read_log_after(&dir, 500).unwrap(), (501..=510).collect::<Vec<_>>());
    assert_eq!(read_log_after(&dir, 505).unwrap(), (506..=510).collect::<Vec<_>>());
    // Without the snapshot, entries 1..=500 are missing.
    assert!(read_log(&dir).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
