//! The bytes of a snapshot file (drawn in docs/formats/snapshot.md):
//! a 128-byte header, one zstd frame holding the records, a 64-byte trailer.

use xxhash_rust::xxh3::xxh3_64;

pub const header_magic: [u8; 8] = *b"corekvSN";
pub const trailer_magic: [u8; 8] = *b"corekvSE";
pub const format_version: u32 = 1;
pub const header_bytes: usize = 128;
pub const trailer_bytes: usize = 72;

/// Record tags in the uncompressed body.
pub const tag_end: u8 = 0;
pub const tag_key: u8 = 1;
/// A lease (before every key record): id, ttl, expiry on the lease clock.
pub const tag_lease: u8 = 2;
/// The lease clock (after the leases, before the keys).
pub const tag_lease_clock: u8 = 3;
/// Version kinds.
pub const kind_put: u8 = 1;
pub const kind_delete: u8 = 2;

/// What a snapshot is a copy of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub revision: i64,
    pub compact_revision: i64,
    /// The last log entry applied to the state.
    pub applied_index: u64,
    pub applied_term: u64,
    pub cluster_id: u64,
    pub member_id: u64,
    pub created_unix_ms: u64,
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl Meta {
    pub fn encode(&self) -> [u8; header_bytes] {
        let mut out = [0u8; header_bytes];
        out[0..8].copy_from_slice(&header_magic);
        out[8..12].copy_from_slice(&format_version.to_le_bytes());
        out[16..24].copy_from_slice(&self.revision.to_le_bytes());
        out[24..32].copy_from_slice(&self.compact_revision.to_le_bytes());
        out[32..40].copy_from_slice(&self.applied_index.to_le_bytes());
        out[40..48].copy_from_slice(&self.applied_term.to_le_bytes());
        out[48..56].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[56..64].copy_from_slice(&self.member_id.to_le_bytes());
        out[64..72].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        let checksum = xxh3_64(&out[..header_bytes - 8]);
        out[header_bytes - 8..].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Meta, &'static str> {
        if bytes.len() < header_bytes {
            return Err("shorter than its header");
        }
        if bytes[0..8] != header_magic {
            return Err("not a corekv snapshot (bad magic)");
        }
        if le_u64(bytes, header_bytes - 8) != xxh3_64(&bytes[..header_bytes - 8]) {
            return Err("header checksum mismatch");
        }
        if u32::from_le_bytes(bytes[8..12].try_into().unwrap()) != format_version {
            return Err("unsupported snapshot format version");
        }
        if bytes[12..16] != [0; 4] || bytes[72..header_bytes - 8].iter().any(|b| *b != 0) {
            return Err("reserved header bytes are not zero");
        }
        let (revision, applied_index) = (le_u64(bytes, 16), le_u64(bytes, 32));
        // What a member can hold: revisions the page store can address,
        // log indexes with room after them.
        if revision > crate::mvcc::revision_max as u64 || applied_index > i64::MAX as u64 {
            return Err("revision or applied index out of range");
        }
        Ok(Meta {
            revision: revision as i64,
            compact_revision: le_u64(bytes, 24) as i64,
            applied_index,
            applied_term: le_u64(bytes, 40),
            cluster_id: le_u64(bytes, 48),
            member_id: le_u64(bytes, 56),
            created_unix_ms: le_u64(bytes, 64),
        })
    }
}

/// Totals and the content hash, written after the records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct keys.
    pub keys: u64,
    /// Versions over all keys (etcd's "total keys" counts these).
    pub versions: u64,
    /// Keys whose newest version is a put.
    pub live_keys: u64,
    /// Bytes of the uncompressed body.
    pub body_bytes: u64,
    /// Bytes of the zstd frame.
    pub compressed_bytes: u64,
    /// xxh3-64 of the uncompressed body.
    pub body_hash: u64,
    /// xxh3-64 of the zstd frame (a change in the frame's own fields that
    /// leaves the body the same is damage too).
    pub compressed_hash: u64,
}

impl Summary {
    pub fn encode(&self) -> [u8; trailer_bytes] {
        let mut out = [0u8; trailer_bytes];
        out[0..8].copy_from_slice(&trailer_magic);
        out[8..16].copy_from_slice(&self.keys.to_le_bytes());
        out[16..24].copy_from_slice(&self.versions.to_le_bytes());
        out[24..32].copy_from_slice(&self.live_keys.to_le_bytes());
        out[32..40].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[40..48].copy_from_slice(&self.compressed_bytes.to_le_bytes());
        out[48..56].copy_from_slice(&self.body_hash.to_le_bytes());
        out[56..64].copy_from_slice(&self.compressed_hash.to_le_bytes());
        let checksum = xxh3_64(&out[..trailer_bytes - 8]);
        out[trailer_bytes - 8..].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Summary, &'static str> {
        if bytes.len() != trailer_bytes || bytes[0..8] != trailer_magic {
            return Err("no trailer: the file is truncated or was not completely written");
        }
        if le_u64(bytes, trailer_bytes - 8) != xxh3_64(&bytes[..trailer_bytes - 8]) {
            return Err("trailer checksum mismatch");
        }
        Ok(Summary {
            keys: le_u64(bytes, 8),
            versions: le_u64(bytes, 16),
            live_keys: le_u64(bytes, 24),
            body_bytes: le_u64(bytes, 32),
            compressed_bytes: le_u64(bytes, 40),
            body_hash: le_u64(bytes, 48),
            compressed_hash: le_u64(bytes, 56),
        })
    }

    /// etcdctl's 32-bit hash field.
    pub fn hash32(&self) -> u32 {
        self.body_hash as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_trailer_round_trip_and_reject_damage() {
        let meta = Meta {
            revision: 42,
            compact_revision: 7,
            applied_index: 99,
            applied_term: 3,
            cluster_id: 0xabc,
            member_id: 0xdef,
            created_unix_ms: 1_700_000_000_000,
        };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes), Ok(meta));
        // Sound checksums, numbers no member can hold: refused, not a panic
        // or a store that can never checkpoint.
        let too_new = Meta { revision: crate::mvcc::revision_max + 1, ..meta };
        assert!(Meta::decode(&too_new.encode()).unwrap_err().contains("out of range"));
        let last_index = Meta { applied_index: u64::MAX, ..meta };
        assert!(Meta::decode(&last_index.encode()).unwrap_err().contains("out of range"));
        let highest = Meta { revision: crate::mvcc::revision_max, ..meta };
        assert_eq!(Meta::decode(&highest.encode()), Ok(highest));
        assert!(crate::mvcc::Importer::new(crate::mvcc::revision_max + 1, 0).is_err());
        for i in 0..header_bytes {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert!(Meta::decode(&bad).is_err(), "flipped byte {i}");
        }
        let summary = Summary {
            keys: 1,
            versions: 2,
            live_keys: 1,
            body_bytes: 100,
            compressed_bytes: 60,
            body_hash: 0x1234_5678_9abc,
            compressed_hash: 0x9876,
        };
        let bytes = summary.encode();
        assert_eq!(Summary::decode(&bytes), Ok(summary));
        for i in 0..trailer_bytes {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert!(Summary::decode(&bad).is_err(), "flipped byte {i}");
        }
        assert!(Summary::decode(&bytes[..trailer_bytes - 1]).is_err());
    }
}
