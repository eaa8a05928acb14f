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

use super::format::{self, SegmentHeader};
use super::segment_file::{Found, SegmentFile};

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

struct Damage {
    segment: usize,
    offset: u64,
    reason: &'static str,
    /// What a write cut short leaves: zeros, or a record failing its
    /// checks (not a valid record out of place).
    torn: bool,
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
    let open =
        |path: &Path| SegmentFile::open(path).map_err(|e| RecoveryError::Io(path.to_path_buf(), e));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e| RecoveryError::Io(path, e)
    };
    // The last segment read: the search for valid records after the cut and
    // the repair of the tail start in it (each scans its rest through the
    // same window; only its records were read into memory).
    let mut last_read: Option<(usize, SegmentFile)> = None;
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
        let mut file = open(path)?;
        let header = file.range(0, format::segment_header_bytes).map_err(io_err(path))?;
        match SegmentHeader::decode(&header) {
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
                let reason = "segment out of sequence";
                damage = Some(Damage { segment: i, offset: 0, reason, torn: false });
                last_read = Some((i, file));
                break;
            }
            // Created but never written (a crash before the first append):
            // the clean end of the log, if nothing valid follows.
            Err(_)
                if header.len() >= format::segment_header_bytes
                    && header.iter().all(|b| *b == 0) =>
            {
                end = Some((i, 0));
                last_read = Some((i, file));
                break;
            }
            Err(reason) => {
                damage = Some(Damage { segment: i, offset: 0, reason, torn: false });
                last_read = Some((i, file));
                break;
            }
        }
        let mut at = format::segment_header_bytes;
        loop {
            match file.decode_at(at).map_err(io_err(path))? {
                Found::Record { term, index, payload, total_bytes } if index == last_index + 1 => {
                    if index > start_after {
                        on_entry(term, index, payload);
                    }
                    last_index = index;
                    last_term = term;
                    at += total_bytes;
                }
                Found::Record { .. } => {
                    damage = Some(Damage {
                        segment: i,
                        offset: at as u64,
                        reason: "index out of sequence",
                        torn: false,
                    });
                    break;
                }
                Found::Bad(reason) => {
                    damage = Some(Damage { segment: i, offset: at as u64, reason, torn: true });
                    break;
                }
                Found::End
                    if i + 1 < segments.len()
                        && file.valid_record_after(at + 8).map_err(io_err(path))? =>
                {
                    let reason = "zeros before the end of the segment's records";
                    damage = Some(Damage { segment: i, offset: at as u64, reason, torn: true });
                    break;
                }
                Found::End => {
                    end = Some((i, at as u64));
                    break;
                }
            }
        }
        last_read = Some((i, file));
        if damage.is_some() {
            break;
        }
        // A segment ends where its data ends; the next segment continues.
    }
    // Anything valid after the end of the data means damage in the middle,
    // unless it is what a write cut short leaves (`check_nothing_valid_after`).
    let (cut, torn) = match (&damage, end) {
        (Some(d), _) => ((d.segment, d.offset, d.reason), d.torn),
        (None, Some((segment, offset))) => {
            ((segment, offset, "zeros before the end of the log"), true)
        }
        (None, None) => ((segments.len(), 0, ""), false),
    };
    let first_lost = torn.then_some(last_index + 1);
    let dropped = check_nothing_valid_after(&segments, cut, first_lost, &mut last_read, &open)?;
    if last_index < start_after {
        return Err(RecoveryError::Gap(format!(
            "the log ends at entry {last_index}, before the snapshot's entry {start_after}"
        )));
    }
    if segments.is_empty() {
        return fresh_log(dir, segment_bytes, last_index, last_term);
    }
    let (segment, offset, _) = cut;
    let (sequence, path) = segments[segment.min(segments.len() - 1)].clone();
    let truncated = match (&damage, dropped) {
        (Some(d), _) => Some((segments[d.segment].1.clone(), d.offset)),
        // Zeros, then records of the write cut short: those are cut too.
        (None, true) => Some((segments[segment].1.clone(), offset)),
        (None, false) => None,
    };
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
    let mut file = match last_read {
        Some((read, file)) if read == segment => file,
        _ => open(&segments[segment].1)?,
    };
    let tail = repair_tail(&mut file, sequence, offset, segment_bytes)?;
    Ok(Recovered { last_index, last_term, tail, truncated })
}

/// Refuses (`Corrupt`) if a valid record follows the cut, unless the cut
/// looks like a write cut short (`first_lost`: the index of the first
/// record not recovered) and every valid record after it belongs to that
/// same write: it is in the cut's segment, and its index less its position
/// in its write is at most `first_lost` (the write began at or before the
/// cut). A torn write may persist any of its pages, but no later write
/// starts before it completes; so a record of a later write (acknowledged)
/// after the cut means damage in the middle of the log. Answers whether
/// any valid record follows (to be cut with the rest).
fn check_nothing_valid_after(
    segments: &[(u64, PathBuf)],
    (segment, offset, reason): (usize, u64, &'static str),
    first_lost: Option<u64>,
    last_read: &mut Option<(usize, SegmentFile)>,
    open: &dyn Fn(&Path) -> Result<SegmentFile, RecoveryError>,
) -> Result<bool, RecoveryError> {
    let mut dropped = false;
    for i in segment..segments.len() {
        let mut opened;
        let file = match last_read {
            Some((read, file)) if *read == i => file,
            _ => {
                opened = open(&segments[i].1)?;
                &mut opened
            }
        };
        let from = if i == segment { offset as usize + format::record_alignment_bytes } else { 0 };
        let mut from = from.max(format::segment_header_bytes);
        let io_err = |e| RecoveryError::Io(segments[i].1.clone(), e);
        while let Some(valid) = file.next_valid_record(from).map_err(io_err)? {
            let same_write = first_lost.is_some_and(|first_lost| {
                let write_start = valid.index.checked_sub(u64::from(valid.write_position));
                i == segment
                    && valid.index >= first_lost
                    && write_start.is_some_and(|start| start <= first_lost)
            });
            if !same_write {
                let (file, offset) = (segments[segment].1.clone(), offset);
                return Err(RecoveryError::Corrupt { file, offset, reason });
            }
            dropped = true;
            from = valid.offset + valid.total;
        }
    }
    Ok(dropped)
}

fn fresh_log(
    dir: &Path,
    segment_bytes: u64,
    last_index: u64,
    last_term: u64,
) -> Result<Recovered, RecoveryError> {
    let path = segment_path(dir, 0);
    prepare_segment_file(&path, segment_bytes).map_err(|e| RecoveryError::Io(path.clone(), e))?;
    let page = SegmentHeader { sequence: 0, first_index: last_index + 1 }.encode().to_vec();
    let tail =
        Tail { path, sequence: 0, write_offset: page.len() as u64, capacity: segment_bytes, page };
    Ok(Recovered { last_index, last_term, tail, truncated: None })
}

/// Zeroes the segment from `offset` on (and extends it to `segment_bytes` if
/// a crash or an operator left it shorter), syncs it, and returns the tail.
fn repair_tail(
    file: &mut SegmentFile,
    sequence: u64,
    offset: u64,
    segment_bytes: u64,
) -> Result<Tail, RecoveryError> {
    let path = file.path.clone();
    let io_err = |e| RecoveryError::Io(path.clone(), e);
    // The bytes of the page holding `offset`, up to it (the writer rewrites
    // that page whole).
    let page_start = offset - offset % crate::limits::io_alignment_bytes as u64;
    let page = file.range(page_start as usize, offset as usize).map_err(io_err)?.to_vec();
    let capacity = (file.len as u64).max(segment_bytes);
    let dirty = !file.zeros_from(offset as usize).map_err(io_err)?;
    if dirty || (file.len as u64) < capacity {
        let writer = OpenOptions::new().write(true).open(&path).map_err(io_err)?;
        write_zeros(&writer, offset, capacity).map_err(io_err)?;
        writer.sync_all().map_err(io_err)?;
    }
    Ok(Tail { path: path.clone(), sequence, write_offset: offset, capacity, page })
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
