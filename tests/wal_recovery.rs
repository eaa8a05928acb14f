//! The WAL on real files: records survive, torn tails are cut exactly before
//! the damage, and damage in the middle of the log refuses to open.

use std::path::{Path, PathBuf};

use corekv::disk::{block_on_ready, StdDisk};
use corekv::limits;
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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corekv-wal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes entries 1..=count in batches of varying size; returns the byte
/// offset where each entry's record starts, per segment file.
fn write_log(dir: &Path, count: u64, rng: &mut Rng) {
    let recovered = wal::recover(dir, SEGMENT, |_, _, _| panic!("fresh log")).unwrap();
    let mut writer =
        block_on_ready(WalWriter::open(StdDisk, dir, SEGMENT, 0, recovered.tail)).unwrap();
    let mut next = 1;
    while next <= count {
        let batch = (rng.below(40) + 1).min(count - next + 1);
        let payloads: Vec<_> = (next..next + batch).map(payload).collect();
        let entries: Vec<_> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| EntryRef { term: 1, index: next + i as u64, payload: p })
            .collect();
        block_on_ready(writer.append(&entries)).unwrap();
        next += batch;
    }
    block_on_ready(writer.close()).unwrap();
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
fn torn_tails_open_with_exactly_the_records_before_the_damage() {
    let mut rng = Rng(7);
    for round in 0..40 {
        let dir = temp_dir(&format!("torn{round}"));
        write_log(&dir, 1500 + rng.below(1500), &mut rng);
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
                let only_last_damaged = victim == offsets.len() - 1 || truncate;
                assert!(
                    only_last_damaged,
                    "round {round}: damage before the last record must refuse"
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
                    !truncate && victim < offsets.len() - 1,
                    "round {round}: a torn tail must open"
                );
                assert_eq!((file, offset), (last.clone(), offsets[victim]));
            }
            Err(other) => panic!("round {round}: {other}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
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
    let payloads: Vec<_> = (501..=510).map(payload).collect();
    let entries: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| EntryRef { term: 1, index: 501 + i as u64, payload: p })
        .collect();
    block_on_ready(writer.append(&entries)).unwrap();
    block_on_ready(writer.close()).unwrap();
    assert_eq!(read_log_after(&dir, 500).unwrap(), (501..=510).collect::<Vec<_>>());
    assert_eq!(read_log_after(&dir, 505).unwrap(), (506..=510).collect::<Vec<_>>());
    // Without the snapshot, entries 1..=500 are missing.
    assert!(read_log(&dir).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
