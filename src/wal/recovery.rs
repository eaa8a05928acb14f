//! Opening the WAL after a stop or a crash.
//!
//! Segments are read in sequence order and every record is checked (checksum,
//! kind, consecutive index). At the first record that is not valid, recovery
//! looks for any valid record after it, in this segment or a later one:
//! - none: the damage is a torn tail (a write cut short by the crash; never
//!   acknowledged, since acknowledgement waits for fdatasync). The tail is
//!   zeroed from there and later segments are removed;
//! - some: the damage is in the middle of the log. The member refuses to
//!   start and names the file and offset: dropping the records after it would
//!   silently lose acknowledged writes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, Decoded, SegmentHeader};

#[derive(Debug)]
pub enum RecoveryError {
    Io(PathBuf, io::Error),
    /// The log does not join the snapshot the state was loaded from.
    Gap(String),
    /// Damage with valid records after it.
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: &'static str,
    },
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryError::Io(path, e) => write!(f, "WAL: {}: {e}", path.display()),
            RecoveryError::Gap(detail) => write!(f, "WAL: {detail}"),
            RecoveryError::Corrupt { file, offset, reason } => write!(
                f,
                "WAL is corrupt in the middle of the log: {} at offset {offset}: {reason}; \
                 valid records follow the damage, so the member will not start (restore from a \
                 snapshot or another member)",
                file.display()
            ),
        }
    }
}

impl std::error::Error for RecoveryError {}

/// Where the next record goes, as recovery found it.
#[derive(Debug, Clone)]
pub struct Tail {
    pub path: PathBuf,
    pub sequence: u64,
    /// Offset of the next record in the segment.
    pub write_offset: u64,
    /// The segment's size (where it ends).
    pub capacity: u64,
    /// Bytes of the partial page that holds `write_offset`, from the page start.
    pub page: Vec<u8>,
}

#[derive(Debug)]
pub struct Recovered {
    /// Index of the last valid entry (0 if the log is empty).
    pub last_index: u64,
    pub last_term: u64,
    pub tail: Tail,
    /// Set when a torn tail was cut off: the file and offset.
    pub truncated: Option<(PathBuf, u64)>,
}

pub fn segment_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:016x}.wal"))
}

/// The segment files in `dir` as (sequence, path), in sequence order. With
/// `clean`, leftovers of an interrupted roll-over (`.wal.tmp`, `.next`) are
/// removed (at start-up only: while the writer runs, `.next` is its file).
pub fn list_segments(dir: &Path, clean: bool) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if name.ends_with(".wal.tmp") || name.ends_with(".next") {
            if clean {
                fs::remove_file(&path)?;
            }
        } else if let Some(hex) = name.strip_suffix(".wal") {
            if let Ok(sequence) = u64::from_str_radix(hex, 16) {
                segments.push((sequence, path));
            }
        }
    }
    segments.sort();
    Ok(segments)
}

/// The header of the segment at `path`, if it reads and checks out.
fn read_segment_header(path: &Path) -> Option<SegmentHeader> {
    use std::io::Read;
    let mut bytes = [0u8; format::segment_header_bytes];
    fs::File::open(path).ok()?.read_exact(&mut bytes).ok()?;
    SegmentHeader::decode(&bytes).ok()
}

/// Whether a valid record starts anywhere at or after `from` in `bytes`.
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    let mut at = from.next_multiple_of(format::record_alignment_bytes);
    while at + format::record_header_bytes <= bytes.len() {
        // Only a header with the entry kind in byte 4 can decode, and most
        // of what is scanned is a preallocated segment's zeros: a byte
        // compare per position instead of a header's.
        if bytes[at + 4] == format::kind_entry {
            if let Decoded::Record(_) = format::decode_record(&bytes[at..]) {
                return true;
            }
        }
        at += format::record_alignment_bytes;
    }
    false
}

struct Damage {
    segment: usize,
    offset: u64,
    reason: &'static str,
}

/// Replays the WAL in `dir` (created if missing), calling `on_entry(term,
/// index, payload)` for every valid entry in order, and repairs a torn tail.
pub fn recover(
    dir: &Path,
    segment_bytes: u64,
    on_entry: impl FnMut(u64, u64, Bytes),
) -> Result<Recovered, RecoveryError> {
    recover_after(dir, segment_bytes, 0, on_entry)
}

/// As `recover`, for a state loaded from a snapshot that holds every entry up
/// to `start_after`: the log may begin anywhere at or before `start_after + 1`
/// (older segments were purged), only later entries are handed to `on_entry`,
/// and a log that starts after `start_after + 1` or ends before `start_after`
/// is refused (entries would be missing).
pub fn recover_after(
    dir: &Path,
    segment_bytes: u64,
    start_after: u64,
    mut on_entry: impl FnMut(u64, u64, Bytes),
) -> Result<Recovered, RecoveryError> {
    fs::create_dir_all(dir).map_err(|e| RecoveryError::Io(dir.to_path_buf(), e))?;
    let segments = list_segments(dir, true).map_err(|e| RecoveryError::Io(dir.to_path_buf(), e))?;
    let read = |path: &Path| fs::read(path).map_err(|e| RecoveryError::Io(path.to_path_buf(), e));
    // The last segment read: the checks after the loop and the repair of the
    // tail start in it, and a segment is tens of MiB (read once, not thrice).
    let mut last_read: Option<(usize, Bytes)> = None;
    let (mut last_index, mut last_term) = (start_after, 0u64);
    let mut damage: Option<Damage> = None;
    let mut end: Option<(usize, u64)> = None; // (segment, offset) after the last record
    let mut skipped = 0;
    for (i, (sequence, path)) in segments.iter().enumerate() {
        // A segment whose every entry the snapshot already holds (the next
        // segment starts at or before start_after + 1) is not read at all.
        if i == skipped && i + 1 < segments.len() {
            if let Some(next) = read_segment_header(&segments[i + 1].1) {
                if next.sequence == segments[i + 1].0
                    && next.first_index <= start_after + 1
                    && next.first_index >= 1
                {
                    skipped += 1;
                    last_index = next.first_index - 1;
                    continue;
                }
            }
        }
        let bytes = Bytes::from(read(path)?);
        last_read = Some((i, bytes.clone()));
        match SegmentHeader::decode(&bytes) {
            Ok(h) if h.sequence == *sequence && h.first_index == last_index + 1 => {}
            // The oldest segment left after purging starts at or before the
            // snapshot's next entry: entries up to the snapshot are skipped.
            Ok(h) if i == skipped && h.sequence == *sequence && h.first_index >= 1 => {
                if h.first_index > start_after + 1 {
                    let held = match start_after {
                        0 => "no valid snapshot holds the entries before it".to_string(),
                        n => format!("the snapshot holds entries up to {n} only"),
                    };
                    return Err(RecoveryError::Gap(format!(
                        "{} starts at entry {}, but {held}: entries in between are missing",
                        path.display(),
                        h.first_index
                    )));
                }
                last_index = h.first_index - 1;
            }
            Ok(_) => {
                damage = Some(Damage { segment: i, offset: 0, reason: "segment out of sequence" });
                break;
            }
            // Created but never written (a crash before the first append):
            // the clean end of the log, if nothing valid follows.
            Err(_)
                if bytes.len() >= format::segment_header_bytes
                    && bytes[..format::segment_header_bytes].iter().all(|b| *b == 0) =>
            {
                end = Some((i, 0));
                break;
            }
            Err(reason) => {
                damage = Some(Damage { segment: i, offset: 0, reason });
                break;
            }
        }
        let mut at = format::segment_header_bytes;
        loop {
            match format::decode_record(&bytes[at.min(bytes.len())..]) {
                Decoded::Record(r) if r.index == last_index + 1 => {
                    let start = at + format::record_header_bytes;
                    if r.index > start_after {
                        on_entry(r.term, r.index, bytes.slice(start..start + r.payload.len()));
                    }
                    last_index = r.index;
                    last_term = r.term;
                    at += r.total_bytes;
                }
                Decoded::Record(_) => {
                    damage = Some(Damage {
                        segment: i,
                        offset: at as u64,
                        reason: "index out of sequence",
                    });
                    break;
                }
                Decoded::Bad(reason) => {
                    damage = Some(Damage { segment: i, offset: at as u64, reason });
                    break;
                }
                Decoded::End if i + 1 < segments.len() && valid_record_after(&bytes, at + 8) => {
                    let reason = "zeros before the end of the segment's records";
                    damage = Some(Damage { segment: i, offset: at as u64, reason });
                    break;
                }
                Decoded::End => {
                    end = Some((i, at as u64));
                    break;
                }
            }
        }
        if damage.is_some() {
            break;
        }
        // A segment ends where its data ends; the next segment continues.
    }
    // Anything valid after the end of the data means damage in the middle.
    let cut = match (&damage, end) {
        (Some(d), _) => (d.segment, d.offset, d.reason),
        (None, Some((segment, offset))) => (segment, offset, "zeros before the end of the log"),
        (None, None) => (segments.len(), 0, ""),
    };
    let read_again = |i: usize| -> Result<Bytes, RecoveryError> {
        match &last_read {
            Some((read_i, bytes)) if *read_i == i => Ok(bytes.clone()),
            _ => Ok(Bytes::from(read(&segments[i].1)?)),
        }
    };
    check_nothing_valid_after(&segments, cut, &read_again)?;
    if last_index < start_after {
        return Err(RecoveryError::Gap(format!(
            "the log ends at entry {last_index}, before the snapshot's entry {start_after}"
        )));
    }
    if segments.is_empty() {
        return Ok(fresh_log(dir, segment_bytes, last_index, last_term));
    }
    let (segment, offset, _) = cut;
    let (sequence, path) = segments[segment.min(segments.len() - 1)].clone();
    let truncated = damage.as_ref().map(|d| (segments[d.segment].1.clone(), d.offset));
    for (_, later) in &segments[segment + 1..] {
        fs::remove_file(later).map_err(|e| RecoveryError::Io(later.clone(), e))?;
    }
    if offset < format::segment_header_bytes as u64 {
        // The segment's header itself is gone: start it again.
        fs::remove_file(&path).map_err(|e| RecoveryError::Io(path.clone(), e))?;
        prepare_segment_file(&path, segment_bytes)
            .map_err(|e| RecoveryError::Io(path.clone(), e))?;
        let page = SegmentHeader { sequence, first_index: last_index + 1 }.encode().to_vec();
        let tail =
            Tail { path, sequence, write_offset: page.len() as u64, capacity: segment_bytes, page };
        return Ok(Recovered { last_index, last_term, tail, truncated });
    }
    let bytes = read_again(segment.min(segments.len() - 1))?;
    let tail = repair_tail(&path, &bytes, sequence, offset, segment_bytes)?;
    Ok(Recovered { last_index, last_term, tail, truncated })
}

fn check_nothing_valid_after(
    segments: &[(u64, PathBuf)],
    (segment, offset, reason): (usize, u64, &'static str),
    read: &dyn Fn(usize) -> Result<Bytes, RecoveryError>,
) -> Result<(), RecoveryError> {
    for i in segment..segments.len() {
        let bytes = read(i)?;
        let from = if i == segment { offset as usize + format::record_alignment_bytes } else { 0 };
        let from = from.max(format::segment_header_bytes);
        if valid_record_after(&bytes, from) {
            let (file, offset) = (segments[segment].1.clone(), offset);
            return Err(RecoveryError::Corrupt { file, offset, reason });
        }
    }
    Ok(())
}

fn fresh_log(dir: &Path, segment_bytes: u64, last_index: u64, last_term: u64) -> Recovered {
    let path = segment_path(dir, 0);
    prepare_segment_file(&path, segment_bytes).expect("create the first WAL segment");
    let page = SegmentHeader { sequence: 0, first_index: last_index + 1 }.encode().to_vec();
    let tail =
        Tail { path, sequence: 0, write_offset: page.len() as u64, capacity: segment_bytes, page };
    Recovered { last_index, last_term, tail, truncated: None }
}

/// Zeroes the segment (`bytes`, as read) from `offset` on (and extends it to
/// `segment_bytes` if a crash or an operator left it shorter), syncs it, and
/// returns the tail.
fn repair_tail(
    path: &Path,
    bytes: &[u8],
    sequence: u64,
    offset: u64,
    segment_bytes: u64,
) -> Result<Tail, RecoveryError> {
    let io_err = |e| RecoveryError::Io(path.to_path_buf(), e);
    let capacity = (bytes.len() as u64).max(segment_bytes);
    let page_start = offset - offset % crate::limits::io_alignment_bytes as u64;
    let page = bytes[page_start as usize..offset as usize].to_vec();
    let dirty = !all_zeros(&bytes[offset as usize..]);
    if dirty || (bytes.len() as u64) < capacity {
        let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
        write_zeros(&file, offset, capacity).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
    }
    Ok(Tail { path: path.to_path_buf(), sequence, write_offset: offset, capacity, page })
}

/// Whether every byte is zero (64 at a time: the rest of a preallocated
/// segment is tens of MiB).
fn all_zeros(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    blocks.all(|block| block.iter().fold(0, |any, b| any | b) == 0)
        && blocks.remainder().iter().all(|b| *b == 0)
}

fn write_zeros(file: &fs::File, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Deletes the oldest segments whose every entry is below `keep_from`, and
/// returns how many. A segment's last entry is one before the next segment's
/// first, so the segment being written (the last) is never deleted, nor one
/// whose successor's header is not yet written. Safe while the writer runs:
/// it only ever adds segments at the end.
pub fn purge(dir: &Path, keep_from: u64) -> io::Result<usize> {
    let segments = list_segments(dir, false)?;
    let mut deleted = 0;
    for pair in segments.windows(2) {
        match read_segment_header(&pair[1].1) {
            Some(next) if next.sequence == pair[1].0 && next.first_index <= keep_from => {
                fs::remove_file(&pair[0].1)?;
                deleted += 1;
            }
            _ => break,
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

/// Creates a segment file of `segment_bytes` zeros, written through once so
/// that later fdatasyncs carry no metadata (PLATFORM.md), and synced.
pub fn prepare_segment_file(path: &Path, segment_bytes: u64) -> io::Result<()> {
    let tmp = path.with_extension("wal.tmp");
    {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = segment_bytes;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().expect("segment in a directory"))
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zeros_sees_a_byte_anywhere() {
        for len in [0usize, 1, 63, 64, 65, 200, 4096] {
            let zeros = vec![0u8; len];
            assert!(all_zeros(&zeros), "len {len}");
            for at in 0..len {
                let mut bytes = zeros.clone();
                bytes[at] = 0x80;
                assert!(!all_zeros(&bytes), "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn a_record_is_found_at_any_aligned_place_among_zeros() {
        let mut record = Vec::new();
        format::encode_record(&mut record, 2, 9, b"payload");
        for at in (0..256).step_by(format::record_alignment_bytes) {
            let mut bytes = vec![0u8; 512];
            bytes[at..at + record.len()].copy_from_slice(&record);
            assert!(valid_record_after(&bytes, 0), "at {at}");
            assert!(!valid_record_after(&bytes, at + 1), "from past it, at {at}");
            // Damaged: the entry kind is there but the checksum fails.
            bytes[at + format::record_header_bytes] ^= 1;
            assert!(!valid_record_after(&bytes, 0), "damaged, at {at}");
        }
    }
}
