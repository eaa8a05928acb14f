//! Appending to the WAL: one write and one fdatasync per batch (group commit).
//!
//! Writes are 4 KiB-aligned (O_DIRECT): a batch is written from the start of
//! the page that holds the current tail, so the tail page is written again
//! with the same leading bytes plus the new records. A torn rewrite leaves each
//! sector old or new, and both hold the same earlier records, so acknowledged
//! records are never at risk (docs/formats/wal.md).
//!
//! The next segment is zero-filled by a helper thread while the current one
//! fills, so a roll-over costs a rename, not 64 MiB of writes.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use super::format::{self, SegmentHeader};
use super::recovery::{prepare_segment_file, segment_path, sync_dir, Tail};
use crate::disk::{LogDisk, LogFile};
use crate::limits;

/// One entry to append: its term, index and payload.
pub struct EntryRef<'a> {
    pub term: u64,
    pub index: u64,
    pub payload: &'a [u8],
}

pub struct WalWriter<D: LogDisk> {
    disk: D,
    /// The open segment, `end.path`.
    file: Option<D::File>,
    end: Suspended,
    /// How long a write is waited for by polling (`set_write_spin`).
    spin: Duration,
}

/// Where the log ends, and everything a writer keeps but its open file
/// (which belongs to the core that opened it): what a suspended writer
/// hands to another thread. Moves between threads.
pub struct Suspended {
    dir: PathBuf,
    segment_bytes: u64,
    /// The open segment's file.
    path: PathBuf,
    sequence: u64,
    capacity: u64,
    write_offset: u64,
    /// The staging buffer: it always starts with the bytes of the tail page
    /// before `write_offset`.
    staging: Vec<u8>,
    last_index: u64,
    next_segment: Option<JoinHandle<io::Result<PathBuf>>>,
    /// Bytes written in total (for metrics and benches).
    bytes_written: u64,
    syncs: u64,
}

impl Suspended {
    /// A writer not yet opened, at the tail recovery found.
    pub fn at_tail(dir: &Path, segment_bytes: u64, last_index: u64, tail: Tail) -> Suspended {
        Suspended {
            dir: dir.to_path_buf(),
            segment_bytes,
            path: tail.path,
            sequence: tail.sequence,
            capacity: tail.capacity,
            write_offset: tail.write_offset,
            staging: tail.page,
            last_index,
            next_segment: None,
            bytes_written: 0,
            syncs: 0,
        }
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }
}

fn page_start(offset: u64) -> u64 {
    offset - offset % limits::io_alignment_bytes as u64
}

impl<D: LogDisk> WalWriter<D> {
    /// Opens the writer at the tail recovery found.
    pub async fn open(
        disk: D,
        dir: &Path,
        segment_bytes: u64,
        last_index: u64,
        tail: Tail,
    ) -> io::Result<Self> {
        let suspended = Suspended::at_tail(dir, segment_bytes, last_index, tail);
        Self::resume(disk, suspended).await.map_err(|(e, _)| e)
    }

    /// Opens the writer where `suspended` left it, on this thread's disk; if
    /// the file cannot be opened, hands `suspended` back with the error.
    pub async fn resume(disk: D, suspended: Suspended) -> Result<Self, (io::Error, Suspended)> {
        assert_eq!(
            suspended.staging.len() as u64,
            suspended.write_offset - page_start(suspended.write_offset)
        );
        let file = match disk.open_for_append(&suspended.path).await {
            Ok(file) => file,
            Err(e) => return Err((e, suspended)),
        };
        let mut writer = WalWriter { disk, file: Some(file), end: suspended, spin: Duration::ZERO };
        if writer.end.next_segment.is_none() {
            writer.start_preparing_next();
        }
        Ok(writer)
    }

    /// Closes the segment file and hands back where the log ends, for
    /// another thread to `resume` (the log driver moves between cores; a
    /// DMA file belongs to one core's ring). Nothing is in flight: every
    /// append has completed.
    pub async fn suspend(mut self) -> io::Result<Suspended> {
        if let Some(file) = self.file.take() {
            file.close().await?;
        }
        Ok(self.end)
    }

    /// Waits for each write by polling for up to `spin` before sleeping
    /// (`LogFile::set_write_spin`), in this segment and the next ones, until
    /// set again or suspended.
    pub fn set_write_spin(&mut self, spin: Duration) {
        self.spin = spin;
        if let Some(file) = &self.file {
            file.set_write_spin(spin);
        }
    }

    pub fn write_spin(&self) -> Duration {
        self.spin
    }

    /// Bytes the log occupies on disk (segments are preallocated), given the
    /// oldest segment left after purging.
    pub fn disk_bytes(&self, first_sequence: u64) -> u64 {
        (self.end.sequence + 1).saturating_sub(first_sequence) * self.end.segment_bytes
    }

    pub fn last_index(&self) -> u64 {
        self.end.last_index
    }

    /// Bytes written in total (for metrics and benches).
    pub fn bytes_written(&self) -> u64 {
        self.end.bytes_written
    }

    /// Writes made durable in total.
    pub fn syncs(&self) -> u64 {
        self.end.syncs
    }

    fn start_preparing_next(&mut self) {
        let path = segment_path(&self.end.dir, self.end.sequence + 1).with_extension("next");
        let bytes = self.end.segment_bytes;
        self.end.next_segment = Some(
            std::thread::Builder::new()
                .name("wal-prepare".into())
                .spawn(move || prepare_segment_file(&path, bytes).map(|_| path))
                .expect("spawn the WAL segment preparer"),
        );
    }

    /// Appends `entries` (consecutive indexes following `last_index`) and makes
    /// them durable. On error the member must stop: never retry an fsync.
    pub async fn append(&mut self, entries: &[EntryRef<'_>]) -> io::Result<()> {
        let mut rest = entries;
        while !rest.is_empty() {
            let mut end =
                self.end.write_offset as usize + (self.end.staging.len() - self.page_len());
            let mut taken = 0;
            for entry in rest {
                assert_eq!(
                    entry.index,
                    self.end.last_index + 1 + taken as u64,
                    "WAL indexes are consecutive"
                );
                let bytes = format::record_bytes(entry.payload.len());
                // Keep 32 zero bytes after the last record when possible, so the
                // end of the data is explicit.
                if end + bytes > self.end.capacity as usize {
                    break;
                }
                // Its place in this write: recovery tells a torn last write
                // (records of it after the damage) from damage before.
                let position = taken as u32;
                format::encode_record(
                    &mut self.end.staging,
                    entry.term,
                    entry.index,
                    position,
                    entry.payload,
                );
                end += bytes;
                taken += 1;
            }
            if taken > 0 {
                self.flush().await?;
                self.end.last_index += taken as u64;
                rest = &rest[taken..];
            }
            if !rest.is_empty() {
                assert!(
                    taken > 0 || self.end.write_offset > format::segment_header_bytes as u64,
                    "a record larger than a whole segment"
                );
                self.roll_over().await?;
            }
        }
        Ok(())
    }

    fn page_len(&self) -> usize {
        (self.end.write_offset - page_start(self.end.write_offset)) as usize
    }

    /// Writes the staging buffer at the tail page and syncs.
    async fn flush(&mut self) -> io::Result<()> {
        let start = page_start(self.end.write_offset);
        let data_end = start + self.end.staging.len() as u64;
        let padded = self.end.staging.len().next_multiple_of(limits::io_alignment_bytes);
        self.end.staging.resize(padded, 0);
        let file = self.file.as_ref().expect("an open segment");
        file.write_at(start, &self.end.staging).await?;
        file.sync_data().await?;
        self.end.bytes_written += padded as u64;
        self.end.syncs += 1;
        // Keep only the new partial tail page.
        let new_page_start = page_start(data_end);
        let keep = (data_end - new_page_start) as usize;
        let from = (new_page_start - start) as usize;
        self.end.staging.copy_within(from..from + keep, 0);
        self.end.staging.truncate(keep);
        self.end.write_offset = data_end;
        Ok(())
    }

    async fn roll_over(&mut self) -> io::Result<()> {
        let prepared = self.end.next_segment.take().expect("a segment is always being prepared");
        let prepared = prepared.join().expect("segment preparer panicked")?;
        let sequence = self.end.sequence + 1;
        let path = segment_path(&self.end.dir, sequence);
        std::fs::rename(&prepared, &path)?;
        sync_dir(&self.end.dir)?;
        let file = self.disk.open_for_append(&path).await?;
        file.set_write_spin(self.spin);
        if let Some(old) = self.file.replace(file) {
            old.close().await?;
        }
        self.end.path = path;
        self.end.sequence = sequence;
        self.end.capacity = self.end.segment_bytes;
        let header = SegmentHeader { sequence, first_index: self.end.last_index + 1 };
        self.end.staging.clear();
        self.end.staging.extend_from_slice(&header.encode());
        self.end.write_offset = format::segment_header_bytes as u64;
        self.start_preparing_next();
        Ok(())
    }

    pub async fn close(mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.close().await?;
        }
        if let Some(next) = self.end.next_segment.take() {
            let _ = next.join();
        }
        Ok(())
    }
}
