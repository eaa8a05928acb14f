//! A WAL segment as recovery reads it.
//!
//! A segment is preallocated (64 MiB of zeros by default) and its records
//! fill it from the start. Recovery needs the records in memory (replayed
//! entries are slices of them), but of the rest only two answers: whether a
//! valid record starts anywhere in it (damage in the middle of the log) and
//! whether it is all zeros (a torn tail to clean). So the records are read
//! as they are decoded, into `head`, and the rest is scanned through one
//! reused window, never held whole: a restart then touches the memory of
//! its records, not of the whole segment (fresh memory is what a restart's
//! time goes to: the kernel zeroes every page of it).

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, Decoded};

/// Bytes read at a time, into the head or the window.
const step_bytes: usize = 1 << 20;

pub(crate) struct SegmentFile {
    pub(crate) path: PathBuf,
    file: fs::File,
    /// The file's length.
    pub(crate) len: usize,
    /// The file's bytes from offset 0, as far as read, a step per chunk
    /// (each its own allocation: a record is a slice of the chunk holding
    /// it, and nothing is copied to grow the head).
    head: Vec<Bytes>,
    head_len: usize,
    /// Bytes of the file from `window_at`, for scans.
    window: Vec<u8>,
    window_at: usize,
}

/// What `decode_at` finds, owning its payload.
/// A valid record found by scanning (`next_valid_record`).
pub(crate) struct Valid {
    pub offset: usize,
    pub index: u64,
    pub write_position: u32,
    /// Bytes it occupies, padding included.
    pub total: usize,
}

pub(crate) enum Found {
    Record { term: u64, index: u64, payload: Bytes, total_bytes: usize },
    End,
    Bad(&'static str),
}

impl SegmentFile {
    pub(crate) fn open(path: &Path) -> io::Result<SegmentFile> {
        let file = fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        Ok(SegmentFile {
            path: path.to_path_buf(),
            file,
            len,
            head: Vec::new(),
            head_len: 0,
            window: Vec::new(),
            window_at: 0,
        })
    }

    /// Reads the head on to `to` (or the end of the file).
    fn head_to(&mut self, to: usize) -> io::Result<()> {
        let to = to.min(self.len);
        while self.head_len < to {
            let bytes = step_bytes.min(self.len - self.head_len);
            let mut chunk = vec![0u8; bytes];
            self.file.read_exact_at(&mut chunk, self.head_len as u64)?;
            self.head.push(Bytes::from(chunk));
            self.head_len += bytes;
        }
        Ok(())
    }

    /// `[at, end)` of the file (read into the head first), clamped to the
    /// file: a slice of one chunk, or a copy where it spans two.
    pub(crate) fn range(&mut self, at: usize, end: usize) -> io::Result<Bytes> {
        let end = end.min(self.len);
        if at >= end {
            return Ok(Bytes::new());
        }
        self.head_to(end)?;
        // Every chunk but the last is `step_bytes` long.
        let (first, last) = (at / step_bytes, (end - 1) / step_bytes);
        if first == last {
            return Ok(self.head[first].slice(at % step_bytes..(end - 1) % step_bytes + 1));
        }
        let mut joined = Vec::with_capacity(end - at);
        for chunk in first..=last {
            let from = if chunk == first { at % step_bytes } else { 0 };
            let to = if chunk == last { (end - 1) % step_bytes + 1 } else { step_bytes };
            joined.extend_from_slice(&self.head[chunk][from..to]);
        }
        Ok(Bytes::from(joined))
    }

    /// The record at `at` (or why there is none): the answer a decode of the
    /// whole file in memory gives.
    pub(crate) fn decode_at(&mut self, at: usize) -> io::Result<Found> {
        let header = self.range(at, at.saturating_add(format::record_header_bytes))?;
        // A header claiming more than the file holds decodes as bad on its
        // own: the rest is not read (a damaged length would read it all).
        let bytes = match claimed_bytes(&header) {
            Some(total) if total <= self.len - at => self.range(at, at + total)?,
            _ => header,
        };
        Ok(match format::decode_record(&bytes) {
            Decoded::Record(r) => {
                let (term, index, total_bytes) = (r.term, r.index, r.total_bytes);
                let start = format::record_header_bytes;
                let payload = bytes.slice(start..start + r.payload.len());
                Found::Record { term, index, payload, total_bytes }
            }
            Decoded::End => Found::End,
            Decoded::Bad(reason) => Found::Bad(reason),
        })
    }

    /// `[at, at + bytes)` of the file through the window (at most a step,
    /// or to the end of the file).
    fn window(&mut self, at: usize, bytes: usize) -> io::Result<&[u8]> {
        let end = at.saturating_add(bytes).min(self.len);
        let held = self.window_at..self.window_at + self.window.len();
        if at < held.start || end > held.end {
            let read = (end - at).max(step_bytes).min(self.len - at);
            self.window.resize(read, 0);
            self.file.read_exact_at(&mut self.window, at as u64)?;
            self.window_at = at;
        }
        Ok(&self.window[at - self.window_at..end - self.window_at])
    }

    /// Whether a valid record starts at any aligned offset at or after `from`.
    pub(crate) fn valid_record_after(&mut self, from: usize) -> io::Result<bool> {
        Ok(self.next_valid_record(from)?.is_some())
    }

    /// The first valid record at an aligned offset at or after `from`.
    pub(crate) fn next_valid_record(&mut self, from: usize) -> io::Result<Option<Valid>> {
        let mut at = from.next_multiple_of(format::record_alignment_bytes);
        while at.saturating_add(format::record_header_bytes) <= self.len {
            let chunk_end = (at + step_bytes).min(self.len);
            let chunk = self.window(at, chunk_end - at)?;
            // Candidates in this chunk: only a header with the entry kind in
            // byte 4 can decode, and most of what is scanned is zeros.
            let candidates: Vec<usize> = (0..chunk.len())
                .step_by(format::record_alignment_bytes)
                .filter(|i| chunk.get(i + 4) == Some(&format::kind_entry))
                .map(|i| at + i)
                .collect();
            for candidate in candidates {
                if candidate + format::record_header_bytes > self.len {
                    break;
                }
                let header = self.window(candidate, format::record_header_bytes)?;
                let total = claimed_bytes(header).unwrap_or(format::record_header_bytes);
                if total > self.len - candidate {
                    continue; // runs past the end: not a valid record
                }
                let record = self.window(candidate, total)?;
                if let Decoded::Record(r) = format::decode_record(record) {
                    let (index, write_position) = (r.index, r.write_position);
                    return Ok(Some(Valid { offset: candidate, index, write_position, total }));
                }
            }
            at = chunk_end.next_multiple_of(format::record_alignment_bytes);
        }
        Ok(None)
    }

    /// Whether every byte from `from` to the end of the file is zero.
    pub(crate) fn zeros_from(&mut self, from: usize) -> io::Result<bool> {
        let mut at = from;
        while at < self.len {
            let chunk = self.window(at, step_bytes)?;
            if !all_zeros(chunk) {
                return Ok(false);
            }
            at += chunk.len();
        }
        Ok(true)
    }
}

/// The bytes the record whose header starts `bytes` claims (header,
/// payload, padding), if the header is there.
fn claimed_bytes(bytes: &[u8]) -> Option<usize> {
    let length = bytes.get(..4)?;
    let payload = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
    Some(format::record_bytes(payload))
}

/// Whether every byte is zero (64 at a time).
pub(crate) fn all_zeros(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    blocks.all(|block| block.iter().fold(0, |any, b| any | b) == 0)
        && blocks.remainder().iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corekv-segfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = temp_dir().join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

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

    /// Records small and larger than a step, at places around the steps,
    /// in a file whose length is not a multiple of 8: found or not exactly
    /// as a decode of the whole file in memory finds them.
    #[test]
    fn scans_agree_with_the_whole_file_in_memory() {
        let len = 3 * step_bytes + 101;
        for payload_bytes in [300usize, step_bytes + step_bytes / 2] {
            let payload: Vec<u8> = (0..payload_bytes).map(|i| (i % 251) as u8).collect();
            let mut record = Vec::new();
            format::encode_record(&mut record, 2, 9, 0, &payload);
            let places = [0, 8, step_bytes - 8, step_bytes - 200, step_bytes, step_bytes + 16];
            for (n, place) in places.into_iter().enumerate() {
                for damaged in [false, true] {
                    let mut bytes = vec![0u8; len];
                    bytes[place..place + record.len()].copy_from_slice(&record);
                    if damaged {
                        bytes[place + format::record_header_bytes + 1] ^= 1;
                    }
                    let name = format!("scan{payload_bytes}-{n}-{damaged}");
                    let path = temp_file(&name, &bytes);
                    let mut file = SegmentFile::open(&path).unwrap();
                    let at = format!("payload {payload_bytes} at {place}");
                    assert_eq!(file.valid_record_after(0).unwrap(), !damaged, "{at}");
                    assert!(!file.valid_record_after(place + 1).unwrap(), "past it, {at}");
                    assert!(!file.zeros_from(0).unwrap(), "{at}");
                    assert!(file.zeros_from(place + record.len()).unwrap(), "{at}");
                    match file.decode_at(place).unwrap() {
                        Found::Record { payload: read, total_bytes, .. } => {
                            assert!(!damaged, "{at}");
                            assert_eq!(&read[..], &payload[..], "{at}");
                            assert_eq!(total_bytes, record.len(), "{at}");
                        }
                        _ => assert!(damaged, "{at}"),
                    }
                    assert!(matches!(file.decode_at(place + record.len()).unwrap(), Found::End));
                    assert_eq!(&file.range(place, place + 4).unwrap()[..], &record[..4]);
                    fs::remove_file(&path).unwrap();
                }
            }
        }
        let _ = fs::remove_dir(temp_dir()); // the last test out removes it
    }

    #[test]
    fn a_byte_past_the_first_window_is_seen() {
        for at in [step_bytes + 5, 2 * step_bytes - 1, 3 * step_bytes + 2] {
            let mut bytes = vec![0u8; 3 * step_bytes + 3];
            bytes[at] = 1;
            let path = temp_file(&format!("byte{at}"), &bytes);
            let mut file = SegmentFile::open(&path).unwrap();
            assert!(!file.zeros_from(100).unwrap(), "byte at {at}");
            assert!(file.zeros_from(at + 1).unwrap(), "after the byte at {at}");
            // The end of a file shorter than a record header is the end.
            assert!(
                matches!(file.decode_at(bytes.len() - 2).unwrap(), Found::End)
                    == (at < bytes.len() - 2)
            );
            fs::remove_file(&path).unwrap();
        }
        let _ = fs::remove_dir(temp_dir());
    }

    #[test]
    fn a_record_claiming_more_than_the_file_is_bad_without_reading_on() {
        let mut record = Vec::new();
        format::encode_record(&mut record, 1, 1, 0, b"x");
        record[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut bytes = vec![0u8; 4096];
        bytes[64..64 + record.len()].copy_from_slice(&record);
        let path = temp_file("claims", &bytes);
        let mut file = SegmentFile::open(&path).unwrap();
        assert!(matches!(file.decode_at(64).unwrap(), Found::Bad(_)));
        assert!(!file.valid_record_after(0).unwrap());
        // Only the header was read into the head (one step).
        assert!(file.head_len <= step_bytes);
        fs::remove_file(&path).unwrap();
        let _ = fs::remove_dir(temp_dir());
    }
}
