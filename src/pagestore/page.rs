//! The bytes of tree, overflow and free-list pages (drawn in
//! docs/formats/pagestore.md). Every such page starts with the same 32-byte
//! header:
//!
//! ```text
//!  0     1     2       4          8          16           24          32
//!  +-----+-----+-------+----------+----------+------------+-----------+------+
//!  |kind |  0  | count |used_bytes| page id  | generation | checksum  | body |
//!  | u8  | u8  | u16   |   u32    |   u64    |    u64     | xxh3_64   |      |
//!  +-----+-----+-------+----------+----------+------------+-----------+------+
//! ```
//!
//! The checksum covers the whole page with its own field zeroed, so a torn or
//! flipped byte anywhere is caught; the page id catches a write that landed at
//! the wrong offset; the generation (the checkpoint the page was written for)
//! catches a page that was reused after the tree that reads it was dropped.
//! Decoders never panic on any bytes: they answer `Corrupt` naming the page.

use xxhash_rust::xxh3::Xxh3;

use super::node::{shared_bytes, BranchItem, Key, LeafEntry, Node, Value};
use super::{corrupt, key_bytes_max, page_bytes, value_bytes_max, PageId, Result};

pub(crate) const page_header_bytes: usize = 32;
/// Bytes after the header: what a node's entries may occupy.
pub(crate) const page_body_bytes: usize = page_bytes - page_header_bytes;
/// Value bytes one overflow page carries (its body starts with the next id).
pub(crate) const overflow_data_bytes: usize = page_body_bytes - 8;
/// Page ids one free-list page lists (its body starts with the next id).
pub(crate) const free_list_ids_per_page: usize = (page_body_bytes - 8) / 8;

pub(crate) const kind_leaf: u8 = 1;
pub(crate) const kind_branch: u8 = 2;
pub(crate) const kind_overflow: u8 = 3;
pub(crate) const kind_free_list: u8 = 4;

const checksum_range: std::ops::Range<usize> = 24..32;

// Lengths fit their fields, and every page kind has room for its content.
const _: () = assert!(key_bytes_max <= u16::MAX as usize);
const _: () = assert!(value_bytes_max <= u32::MAX as usize);
const _: () = assert!(page_body_bytes <= u16::MAX as usize);
const _: () = assert!(free_list_ids_per_page >= 2 && overflow_data_bytes >= page_bytes / 2);

/// xxh3-64 of the page with its checksum field read as zeros.
fn page_checksum(buf: &[u8]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&buf[..checksum_range.start]);
    hasher.update(&[0u8; 8]);
    hasher.update(&buf[checksum_range.end..]);
    hasher.digest()
}

/// The fields of a verified page header.
struct Header {
    kind: u8,
    count: usize,
    used_bytes: usize,
}

/// Writes the header and the checksum over a page whose body is already in
/// `buf`.
fn seal(buf: &mut [u8], kind: u8, count: usize, used_bytes: usize, page: PageId, generation: u64) {
    assert_eq!(buf.len(), page_bytes);
    assert!(count <= u16::MAX as usize && used_bytes <= page_body_bytes);
    assert!(page >= PageId::first_data && generation >= 1);
    buf[0] = kind;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&(count as u16).to_le_bytes());
    buf[4..8].copy_from_slice(&(used_bytes as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&page.0.to_le_bytes());
    buf[16..24].copy_from_slice(&generation.to_le_bytes());
    let checksum = page_checksum(buf);
    buf[checksum_range].copy_from_slice(&checksum.to_le_bytes());
}

/// Checks checksum, id, generation and body length, and that the page has the
/// kind the caller expects.
fn verify(buf: &[u8], page: PageId, kinds: &[u8], generation_max: u64) -> Result<Header> {
    assert_eq!(buf.len(), page_bytes);
    if buf.iter().all(|b| *b == 0) {
        return Err(corrupt(page, "page was never written (all zeros)"));
    }
    let stored = u64::from_le_bytes(buf[checksum_range].try_into().unwrap());
    if page_checksum(buf) != stored {
        return Err(corrupt(page, "checksum mismatch"));
    }
    let own = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    if own != page.0 {
        return Err(corrupt(page, format!("page says it is page {own} (misdirected write)")));
    }
    let generation = u64::from_le_bytes(buf[16..24].try_into().unwrap());
    if generation == 0 || generation > generation_max {
        return Err(corrupt(
            page,
            format!("written at generation {generation}, reader expects 1..={generation_max}"),
        ));
    }
    if !kinds.contains(&buf[0]) {
        return Err(corrupt(page, format!("page kind {} where {kinds:?} was expected", buf[0])));
    }
    let used_bytes = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
    if used_bytes > page_body_bytes {
        return Err(corrupt(page, format!("used bytes {used_bytes} exceed the page body")));
    }
    let count = u16::from_le_bytes(buf[2..4].try_into().unwrap()) as usize;
    Ok(Header { kind: buf[0], count, used_bytes })
}

/// A bounds-checked little-endian reader over a page body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    page: PageId,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| corrupt(self.page, "entry runs past the used bytes"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u24(&mut self) -> Result<u32> {
        let bytes = self.take(3)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn page_id(&mut self) -> Result<PageId> {
        let id = self.u64()?;
        if id < PageId::first_data.0 {
            return Err(corrupt(self.page, format!("reference to page {id}, a meta page")));
        }
        Ok(PageId(id))
    }

    /// A chain link (overflow and free-list pages): 0 ends the chain, any
    /// other value must name a data page.
    fn next_link(&mut self) -> Result<Option<PageId>> {
        let at = self.at;
        if self.u64()? == 0 {
            return Ok(None);
        }
        self.at = at;
        self.page_id().map(Some)
    }

    fn key(&mut self) -> Result<Key> {
        let key_bytes = self.u16()? as usize;
        if key_bytes > key_bytes_max {
            return Err(corrupt(self.page, format!("key of {key_bytes} bytes")));
        }
        Ok(Key::from_slice(self.take(key_bytes)?))
    }
}

/// Writes `buf` into a little-endian cursor, for encoders.
struct Writer<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, data: &[u8]) {
        self.bytes[self.at..self.at + data.len()].copy_from_slice(data);
        self.at += data.len();
    }
}

/// Encodes a tree node as page `page` written for checkpoint `generation`.
pub(crate) fn encode_node(node: &Node, page: PageId, generation: u64, buf: &mut [u8]) {
    let used_bytes = node.body_bytes();
    assert!(used_bytes <= page_body_bytes, "node of {used_bytes} bytes does not fit a page");
    buf.fill(0);
    let mut out = Writer { bytes: &mut buf[page_header_bytes..], at: 0 };
    let (kind, count) = match node {
        Node::Leaf(entries) => {
            let mut previous: &[u8] = &[];
            for entry in entries {
                let shared = shared_bytes(previous, &entry.key);
                let suffix = &entry.key[shared..];
                let (overflow, value_bytes) = match &entry.value {
                    Value::Inline(value) => (0, value.len() as u32),
                    Value::Overflow { value_bytes, .. } => (1, *value_bytes),
                };
                let word = suffix.len() as u32 | (shared as u32) << 11 | overflow << 22;
                out.put(&word.to_le_bytes()[..3]);
                out.put(&value_bytes.to_le_bytes()[..3]);
                out.put(suffix);
                match &entry.value {
                    Value::Inline(value) => out.put(value),
                    Value::Overflow { first, .. } => out.put(&first.0.to_le_bytes()),
                }
                previous = &entry.key;
            }
            (kind_leaf, entries.len())
        }
        Node::Branch(items) => {
            out.put(&items[0].child.0.to_le_bytes());
            for item in &items[1..] {
                out.put(&(item.key.len() as u16).to_le_bytes());
                out.put(&item.key);
                out.put(&item.child.0.to_le_bytes());
            }
            (kind_branch, items.len())
        }
    };
    assert_eq!(out.at, used_bytes);
    seal(buf, kind, count, used_bytes, page, generation);
}

/// Decodes and verifies a tree page. Keys must be strictly ascending and each
/// encoding canonical (inline exactly when the entry fits inline).
pub(crate) fn decode_node(buf: &[u8], page: PageId, generation_max: u64) -> Result<Node> {
    let header = verify(buf, page, &[kind_leaf, kind_branch], generation_max)?;
    let body = &buf[page_header_bytes..page_header_bytes + header.used_bytes];
    let mut reader = Reader { bytes: body, at: 0, page };
    let node = if header.kind == kind_leaf {
        Node::Leaf(decode_leaf_entries(&mut reader, header.count)?)
    } else {
        if header.count < 2 {
            return Err(corrupt(page, format!("branch with {} children", header.count)));
        }
        let mut items = vec![BranchItem { key: Key::new(), child: reader.page_id()? }];
        for _ in 1..header.count {
            let key = reader.key()?;
            items.push(BranchItem { key, child: reader.page_id()? });
        }
        if items[1..].windows(2).any(|pair| pair[0].key >= pair[1].key) {
            return Err(corrupt(page, "branch keys out of order"));
        }
        Node::Branch(items)
    };
    if reader.at != body.len() {
        return Err(corrupt(page, "entries end before the used bytes"));
    }
    Ok(node)
}

fn decode_leaf_entries(reader: &mut Reader, count: usize) -> Result<Vec<LeafEntry>> {
    let page = reader.page;
    let mut entries: Vec<LeafEntry> = Vec::with_capacity(count);
    for _ in 0..count {
        let word = reader.u24()?;
        let value_bytes = reader.u24()?;
        let (suffix_bytes, shared) = ((word & 0x7ff) as usize, (word >> 11 & 0x7ff) as usize);
        let overflow = word >> 22 & 1 != 0;
        let previous: &[u8] = entries.last().map_or(&[], |last| &last.key);
        if word >> 23 != 0 || shared > previous.len() || shared + suffix_bytes > key_bytes_max {
            return Err(corrupt(page, format!("leaf entry word {word:06x}")));
        }
        let suffix = reader.take(suffix_bytes)?;
        // Canonical: the whole prefix the keys share is shared.
        if suffix.first().is_some_and(|b| previous.get(shared) == Some(b)) {
            return Err(corrupt(page, "a leaf key shares less than it could"));
        }
        let mut key = Key::from_slice(&previous[..shared]);
        key.extend_from_slice(suffix);
        let key_bytes = key.len();
        let inline = Value::fits_inline(key_bytes, value_bytes as usize);
        let value = match overflow {
            false if inline => Value::Inline(reader.take(value_bytes as usize)?.into()),
            true if !inline && value_bytes as usize <= value_bytes_max => {
                Value::Overflow { first: reader.page_id()?, value_bytes }
            }
            _ => {
                let kind = if overflow { "overflow" } else { "inline" };
                return Err(corrupt(page, format!("{kind} value of {value_bytes} bytes")));
            }
        };
        if entries.last().is_some_and(|last| last.key >= key) {
            return Err(corrupt(page, "leaf keys out of order"));
        }
        entries.push(LeafEntry { key, value });
    }
    Ok(entries)
}

/// Encodes one page of an overflow chain: `next` is the following page of the
/// chain, or None on the last page.
pub(crate) fn encode_overflow(
    buf: &mut [u8],
    page: PageId,
    generation: u64,
    next: Option<PageId>,
    data: &[u8],
) {
    assert!(!data.is_empty() && data.len() <= overflow_data_bytes);
    buf.fill(0);
    let body = &mut buf[page_header_bytes..];
    body[..8].copy_from_slice(&next.map_or(0, |id| id.0).to_le_bytes());
    body[8..8 + data.len()].copy_from_slice(data);
    seal(buf, kind_overflow, 0, 8 + data.len(), page, generation);
}

/// Decodes one overflow page: (the next page, this page's value bytes).
pub(crate) fn decode_overflow(
    buf: &[u8],
    page: PageId,
    generation_max: u64,
) -> Result<(Option<PageId>, &[u8])> {
    let header = verify(buf, page, &[kind_overflow], generation_max)?;
    if header.used_bytes <= 8 {
        return Err(corrupt(page, "overflow page without data"));
    }
    let body = &buf[page_header_bytes..page_header_bytes + header.used_bytes];
    let mut reader = Reader { bytes: body, at: 0, page };
    let next = reader.next_link()?;
    Ok((next, &body[8..]))
}

/// Encodes one page of the free-list chain.
pub(crate) fn encode_free_list(
    buf: &mut [u8],
    page: PageId,
    generation: u64,
    next: Option<PageId>,
    ids: &[PageId],
) {
    assert!(ids.len() <= free_list_ids_per_page);
    buf.fill(0);
    let used_bytes = 8 + 8 * ids.len();
    let mut out = Writer { bytes: &mut buf[page_header_bytes..], at: 0 };
    out.put(&next.map_or(0, |id| id.0).to_le_bytes());
    for id in ids {
        out.put(&id.0.to_le_bytes());
    }
    seal(buf, kind_free_list, ids.len(), used_bytes, page, generation);
}

/// Decodes one free-list page: (the next page, the free ids it lists).
pub(crate) fn decode_free_list(
    buf: &[u8],
    page: PageId,
    generation_max: u64,
) -> Result<(Option<PageId>, Vec<PageId>)> {
    let header = verify(buf, page, &[kind_free_list], generation_max)?;
    if header.used_bytes != 8 + 8 * header.count {
        return Err(corrupt(page, "free-list count disagrees with its used bytes"));
    }
    let body = &buf[page_header_bytes..page_header_bytes + header.used_bytes];
    let mut reader = Reader { bytes: body, at: 0, page };
    let next = reader.next_link()?;
    let ids = (0..header.count).map(|_| reader.page_id()).collect::<Result<Vec<_>>>()?;
    Ok((next, ids))
}

/// Gives arbitrary bytes a valid header checksum and id, so that fuzzing
/// reaches the body decoders.
pub(crate) fn fuzz_seal(buf: &mut [u8], page: PageId) {
    buf[8..16].copy_from_slice(&page.0.to_le_bytes());
    buf[16..24].copy_from_slice(&1u64.to_le_bytes());
    let checksum = page_checksum(buf);
    buf[checksum_range].copy_from_slice(&checksum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagestore::StoreError;

    fn leaf() -> Node {
        Node::Leaf(vec![
            LeafEntry { key: Key::from_slice(b"a"), value: Value::Inline(b"1"[..].into()) },
            LeafEntry {
                key: Key::from_slice(b"b"),
                value: Value::Overflow { first: PageId(9), value_bytes: 5000 },
            },
        ])
    }

    #[test]
    fn node_round_trip_and_every_flipped_byte_is_caught() {
        let mut buf = vec![0u8; page_bytes];
        encode_node(&leaf(), PageId(5), 3, &mut buf);
        assert_eq!(decode_node(&buf, PageId(5), 3).unwrap(), leaf());
        for at in [0, 3, 9, 17, 25, 40, 4095] {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            match decode_node(&bad, PageId(5), 3) {
                Err(StoreError::Corrupt { page: 5, .. }) => {}
                other => panic!("flip at {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn leaf_keys_are_stored_after_what_they_share_and_only_the_longest_share_decodes() {
        let key =
            |i: usize| Key::from_slice(format!("/registry/pods/default/pod-{i:04}").as_bytes());
        let node = Node::Leaf(
            (0..60)
                .map(|i| LeafEntry { key: key(i), value: Value::Inline(b"v"[..].into()) })
                .collect(),
        );
        // 31-byte keys; after the first, each stores 1 or 2 bytes.
        assert!(node.body_bytes() < 6 + 31 + 1 + 59 * (6 + 2 + 1), "{}", node.body_bytes());
        let mut buf = vec![0u8; page_bytes];
        encode_node(&node, PageId(5), 3, &mut buf);
        assert_eq!(decode_node(&buf, PageId(5), 3).unwrap(), node);
        // "ab" then "ac" stored whole: canonical is "c" after 1 shared byte.
        let entry = |word: u32, key: &[u8], value: u8| {
            let mut out = word.to_le_bytes()[..3].to_vec();
            out.extend_from_slice(&1u32.to_le_bytes()[..3]);
            out.extend_from_slice(key);
            out.push(value);
            out
        };
        let decode = |second: Vec<u8>| {
            let mut body = entry(2, b"ab", 1);
            body.extend(second);
            let mut buf = vec![0u8; page_bytes];
            buf[page_header_bytes..page_header_bytes + body.len()].copy_from_slice(&body);
            seal(&mut buf, kind_leaf, 2, body.len(), PageId(5), 3);
            decode_node(&buf, PageId(5), 3)
        };
        let Node::Leaf(entries) = decode(entry(1 | 1 << 11, b"c", 2)).unwrap() else { panic!() };
        assert_eq!(entries[1].key.as_slice(), b"ac");
        for second in [
            entry(2, b"ac", 2),          // shares nothing: not canonical
            entry(1 | 3 << 11, b"c", 2), // shares more than "ab" has
            entry(2 << 11, b"", 2),      // "ab" again
            entry(1 | 1 << 23, b"c", 2), // the reserved bit
        ] {
            assert!(decode(second).is_err());
        }
    }

    #[test]
    fn the_checksum_is_xxh3_of_the_page_with_its_field_zeroed() {
        let mut buf = vec![0u8; page_bytes];
        encode_node(&leaf(), PageId(5), 3, &mut buf);
        let stored = u64::from_le_bytes(buf[24..32].try_into().unwrap());
        buf[24..32].fill(0);
        assert_eq!(stored, xxhash_rust::xxh3::xxh3_64(&buf));
    }

    #[test]
    fn misdirected_and_too_new_pages_are_caught() {
        let mut buf = vec![0u8; page_bytes];
        encode_node(&leaf(), PageId(5), 3, &mut buf);
        let error = decode_node(&buf, PageId(6), 3).unwrap_err().to_string();
        assert!(error.contains("page 6") && error.contains("misdirected"), "{error}");
        let error = decode_node(&buf, PageId(5), 2).unwrap_err().to_string();
        assert!(error.contains("generation 3"), "{error}");
    }

    #[test]
    fn overflow_and_free_list_round_trip() {
        let mut buf = vec![0u8; page_bytes];
        encode_overflow(&mut buf, PageId(4), 1, Some(PageId(8)), b"hello");
        assert_eq!(decode_overflow(&buf, PageId(4), 1).unwrap(), (Some(PageId(8)), &b"hello"[..]));
        let ids: Vec<PageId> = (2..2 + free_list_ids_per_page as u64).map(PageId).collect();
        encode_free_list(&mut buf, PageId(3), 2, None, &ids);
        assert_eq!(decode_free_list(&buf, PageId(3), 2).unwrap(), (None, ids));
    }

    #[test]
    fn decoders_survive_garbage() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..page_bytes)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 7) as u8
                })
                .collect();
            crate::pagestore::fuzz_decode_page(&bytes);
        }
    }
}
