//! The two meta pages (ids 0 and 1): which tree and free list make up a
//! checkpoint. Checkpoint generation g is written to page g % 2, so a
//! checkpoint never overwrites the meta of the one before it; opening takes the
//! valid meta with the highest generation.
//!
//! ```text
//!  0        8       12       16          24       32      36      40
//!  +--------+-------+--------+-----------+--------+-------+-------+
//!  |corekvPS|version|page    |generation | root   |height |  0    |
//!  | magic  |u32 = 2|bytes   |   u64     | u64    | u32   | u32   |
//!  +--------+-------+--------+-----------+--------+-------+-------+
//!  40           48           56          64        72         80       88       96
//!  +------------+------------+-----------+---------+----------+--------+--------+
//!  |free-list   |free-list   |free ids   |page     |applied   |entry   |checksum|
//!  |head u64    |pages u64   |  u64      |count u64|index u64 |count   |xxh3_64 |
//!  +------------+------------+-----------+---------+----------+--------+--------+
//! ```
//! `checksum` covers bytes 0..88; bytes 96.. are zero.

use xxhash_rust::xxh3::xxh3_64;

use super::{corrupt, page_bytes, PageId, Result};

/// Largest page count a meta may name: 2^40 pages of 4 KiB (4 PiB), so that
/// every page offset fits in a u64 with room to spare.
const page_count_max: u64 = 1 << 40;

pub(crate) const meta_magic: [u8; 8] = *b"corekvPS";
pub(crate) const format_version: u32 = 3;
const checksum_at: usize = 88;
/// Deeper than any tree of 2^64 pages can be with at least two children per
/// branch: a larger height is corruption.
const height_max: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub generation: u64,
    pub root: PageId,
    /// Levels in the tree: 1 when the root is a leaf.
    pub height: u32,
    pub free_list_head: Option<PageId>,
    pub free_list_pages: u64,
    pub free_ids: u64,
    /// Pages the store has allocated: the file holds ids below this (a free
    /// page at the end may never have been written).
    pub page_count: u64,
    pub applied_index: u64,
    pub entry_count: u64,
}

impl Meta {
    /// The meta page this checkpoint is written to.
    pub(crate) fn slot(&self) -> PageId {
        PageId(self.generation % 2)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        assert!(self.generation >= 1 && self.height >= 1 && self.height <= height_max);
        assert!(self.root >= PageId::first_data && self.root.0 < self.page_count);
        let mut out = vec![0u8; page_bytes];
        out[0..8].copy_from_slice(&meta_magic);
        out[8..12].copy_from_slice(&format_version.to_le_bytes());
        out[12..16].copy_from_slice(&(page_bytes as u32).to_le_bytes());
        let fields = [
            self.generation,
            self.root.0,
            u64::from(self.height),
            self.free_list_head.map_or(0, |id| id.0),
            self.free_list_pages,
            self.free_ids,
            self.page_count,
            self.applied_index,
            self.entry_count,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&field.to_le_bytes());
        }
        let checksum = xxh3_64(&out[..checksum_at]);
        out[checksum_at..checksum_at + 8].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Decodes and validates meta page `page` (0 or 1).
    pub(crate) fn decode(bytes: &[u8], page: PageId) -> Result<Meta> {
        assert_eq!(bytes.len(), page_bytes);
        let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        if bytes[0..8] != meta_magic {
            return Err(corrupt(page, "bad meta magic (never written, or damaged)"));
        }
        if field(checksum_at) != xxh3_64(&bytes[..checksum_at]) {
            return Err(corrupt(page, "meta checksum mismatch"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != format_version {
            return Err(corrupt(page, format!("unsupported format version {version}")));
        }
        let stored_page_bytes = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
        if stored_page_bytes as usize != page_bytes {
            return Err(corrupt(page, format!("page size {stored_page_bytes}, not {page_bytes}")));
        }
        let height = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
        let meta = Meta {
            generation: field(16),
            root: PageId(field(24)),
            height,
            free_list_head: Some(PageId(field(40))).filter(|id| id.0 != 0),
            free_list_pages: field(48),
            free_ids: field(56),
            page_count: field(64),
            applied_index: field(72),
            entry_count: field(80),
        };
        meta.validate().map_err(|reason| corrupt(page, reason))?;
        // A meta in the wrong slot (a misdirected write) would make the next
        // checkpoint overwrite the only durable meta.
        if meta.slot() != page {
            return Err(corrupt(page, format!("generation {} in the wrong slot", meta.generation)));
        }
        Ok(meta)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let in_range = |id: PageId| id >= PageId::first_data && id.0 < self.page_count;
        if self.generation == 0 || self.generation >= u64::MAX / 2 {
            return Err(format!("generation {}", self.generation));
        }
        // Page offsets must fit in a u64 (and in any real file).
        if self.page_count > page_count_max {
            return Err(format!("page count {}", self.page_count));
        }
        if self.height == 0 || self.height > height_max {
            return Err(format!("tree height {}", self.height));
        }
        if !in_range(self.root) {
            return Err(format!("root page {} outside the file", self.root));
        }
        if self.free_list_head.is_some_and(|head| !in_range(head)) {
            return Err("free-list head outside the file".into());
        }
        if self.free_list_head.is_some() != (self.free_list_pages > 0)
            || self.free_list_pages.saturating_add(self.free_ids) > self.page_count
        {
            return Err("free-list sizes disagree with the file".into());
        }
        Ok(())
    }
}

/// Picks the checkpoint to open from the two meta pages: the valid one with
/// the highest generation. Both invalid is an error naming both reasons.
pub(crate) fn choose(page0: &[u8], page1: &[u8]) -> Result<Meta> {
    match (Meta::decode(page0, PageId(0)), Meta::decode(page1, PageId(1))) {
        (Ok(a), Ok(b)) => Ok(if a.generation >= b.generation { a } else { b }),
        (Ok(meta), Err(_)) | (Err(_), Ok(meta)) => Ok(meta),
        (Err(a), Err(b)) => Err(corrupt(PageId(0), format!("no valid meta page: {a}; {b}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: u64) -> Meta {
        Meta {
            generation,
            root: PageId(2),
            height: 1,
            free_list_head: Some(PageId(3)),
            free_list_pages: 1,
            free_ids: 4,
            page_count: 9,
            applied_index: 77,
            entry_count: 5,
        }
    }

    #[test]
    fn round_trip_and_choice_by_generation() {
        let (old, new) = (meta(4), meta(5));
        assert_eq!(Meta::decode(&old.encode(), PageId(0)).unwrap(), old);
        assert_eq!(choose(&old.encode(), &new.encode()).unwrap(), new);
        let mut torn = new.encode();
        torn[20] ^= 1;
        assert_eq!(choose(&old.encode(), &torn).unwrap(), old);
        let error = choose(&vec![0; page_bytes], &torn).unwrap_err().to_string();
        assert!(error.contains("page 0") && error.contains("page 1"), "{error}");
    }

    #[test]
    fn a_meta_of_another_format_version_is_refused_by_name() {
        // Version 1 had 8-byte leaf entry headers (2 bytes more per entry),
        // version 2 no prefix compression of leaf keys.
        let mut old = meta(3).encode();
        old[8..12].copy_from_slice(&2u32.to_le_bytes());
        let sum = xxh3_64(&old[..checksum_at]);
        old[checksum_at..checksum_at + 8].copy_from_slice(&sum.to_le_bytes());
        let error = Meta::decode(&old, PageId(1)).unwrap_err().to_string();
        assert!(error.contains("unsupported format version 2"), "{error}");
    }

    #[test]
    fn every_byte_before_the_checksum_is_covered() {
        let good = meta(3).encode();
        for at in 0..checksum_at + 8 {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(Meta::decode(&bad, PageId(1)).is_err(), "flip at {at} went unnoticed");
        }
    }
}
