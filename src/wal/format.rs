//! The WAL's bytes (drawn in docs/formats/wal.md): a segment header, then
//! 8-byte-aligned records, each length-prefixed and xxh3-checksummed.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub const segment_magic: [u8; 8] = *b"corekvWL";
/// Version 2 gives each record its position in the write that carried it
/// (the reserved bytes of version 1, zero there: position 0). Both are read.
pub const format_version: u32 = 2;
pub const format_version_oldest: u32 = 1;
pub const segment_header_bytes: usize = 64;
pub const record_header_bytes: usize = 32;
pub const record_alignment_bytes: usize = 8;

/// Record kinds. Zero never appears in a record: a zero header ends the data.
pub const kind_entry: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub sequence: u64,
    pub first_index: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; segment_header_bytes] {
        let mut out = [0u8; segment_header_bytes];
        out[0..8].copy_from_slice(&segment_magic);
        out[8..12].copy_from_slice(&format_version.to_le_bytes());
        out[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let checksum = xxh3_64(&out[..56]);
        out[56..64].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, &'static str> {
        if bytes.len() < segment_header_bytes {
            return Err("segment shorter than its header");
        }
        if bytes[..segment_header_bytes].iter().all(|b| *b == 0) {
            return Err("segment header never written");
        }
        if bytes[0..8] != segment_magic {
            return Err("bad segment magic");
        }
        if u64::from_le_bytes(bytes[56..64].try_into().unwrap()) != xxh3_64(&bytes[..56]) {
            return Err("segment header checksum mismatch");
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if !(format_version_oldest..=format_version).contains(&version) {
            return Err("unsupported WAL format version");
        }
        Ok(SegmentHeader {
            sequence: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            first_index: u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        })
    }
}

/// Bytes a record with this payload occupies, padding included.
pub fn record_bytes(payload_bytes: usize) -> usize {
    (record_header_bytes + payload_bytes).next_multiple_of(record_alignment_bytes)
}

/// Records one write may carry: its position is 3 bytes.
pub const write_records_max: u32 = 1 << 24;

/// Appends one entry record to `out` (which must be 8-byte aligned in length).
/// `write_position`: how many records come before it in the same write (the
/// records a batch adds; not those of the tail page written again).
pub fn encode_record(
    out: &mut Vec<u8>,
    term: u64,
    index: u64,
    write_position: u32,
    payload: &[u8],
) {
    debug_assert!(out.len().is_multiple_of(record_alignment_bytes));
    assert!(write_position < write_records_max, "a write of over 2^24 records");
    let payload_bytes = u32::try_from(payload.len()).expect("payload under 4 GiB");
    let mut header = [0u8; record_header_bytes];
    header[0..4].copy_from_slice(&payload_bytes.to_le_bytes());
    header[4] = kind_entry;
    header[5..8].copy_from_slice(&write_position.to_le_bytes()[..3]);
    header[8..16].copy_from_slice(&term.to_le_bytes());
    header[16..24].copy_from_slice(&index.to_le_bytes());
    let mut hasher = Xxh3::new();
    hasher.update(&header[..24]);
    hasher.update(payload);
    header[24..32].copy_from_slice(&hasher.digest().to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(record_alignment_bytes), 0);
}

#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub term: u64,
    pub index: u64,
    /// Records before it in the write that carried it (0 in version 1).
    pub write_position: u32,
    pub payload: &'a [u8],
    /// Bytes the record occupies, padding included.
    pub total_bytes: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Record(Record<'a>),
    /// A zero header: nothing was ever written here.
    End,
    Bad(&'static str),
}

/// Decodes the record at the start of `bytes`.
pub fn decode_record(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < record_header_bytes {
        return if bytes.iter().all(|b| *b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("truncated record header")
        };
    }
    let header = &bytes[..record_header_bytes];
    if header.iter().all(|b| *b == 0) {
        return Decoded::End;
    }
    let payload_bytes = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    if header[4] != kind_entry {
        return Decoded::Bad("bad record kind");
    }
    let total_bytes = record_bytes(payload_bytes);
    if total_bytes > bytes.len() {
        return Decoded::Bad("record runs past the end of the segment");
    }
    let payload = &bytes[record_header_bytes..record_header_bytes + payload_bytes];
    let mut hasher = Xxh3::new();
    hasher.update(&header[..24]);
    hasher.update(payload);
    if hasher.digest() != u64::from_le_bytes(header[24..32].try_into().unwrap()) {
        return Decoded::Bad("record checksum mismatch");
    }
    Decoded::Record(Record {
        term: u64::from_le_bytes(header[8..16].try_into().unwrap()),
        index: u64::from_le_bytes(header[16..24].try_into().unwrap()),
        write_position: u32::from_le_bytes([header[5], header[6], header[7], 0]),
        payload,
        total_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_any_flipped_bit_is_caught() {
        let mut out = Vec::new();
        encode_record(&mut out, 3, 17, 0x0a0b0c, b"hello world");
        assert_eq!(out.len(), record_bytes(11));
        let Decoded::Record(r) = decode_record(&out) else { panic!() };
        assert_eq!(
            (r.term, r.index, r.write_position, r.payload, r.total_bytes),
            (3, 17, 0x0a0b0c, &b"hello world"[..], out.len())
        );
        for bit in 0..(record_header_bytes + 11) * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(decode_record(&damaged), Decoded::Bad(_)), "bit {bit}");
        }
        assert_eq!(decode_record(&[0u8; 64]), Decoded::End);
    }

    #[test]
    fn segment_header_round_trips() {
        let h = SegmentHeader { sequence: 5, first_index: 99 };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[20] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
        // Version 1 (records without write positions) is still read; an
        // unknown version is refused by name.
        for (version, readable) in [(1u32, true), (2, true), (3, false), (0, false)] {
            let mut header = h.encode();
            header[8..12].copy_from_slice(&version.to_le_bytes());
            let checksum = xxh3_64(&header[..56]);
            header[56..64].copy_from_slice(&checksum.to_le_bytes());
            match SegmentHeader::decode(&header) {
                Ok(decoded) => assert!(readable && decoded == h, "version {version}"),
                Err(e) => assert!(!readable && e.contains("version"), "version {version}: {e}"),
            }
        }
    }
}
