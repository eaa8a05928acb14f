//! A decoded tree page and the pure arithmetic of keeping nodes within a page:
//! sizes, searching, splitting what overflows and combining what underflows.
//!
//! A branch is a list of items `(key, child)`; item 0's key is unused (empty)
//! and the key of item i ≥ 1 is the separator: child i holds the keys k with
//! `key[i] <= k < key[i + 1]`. Keeping the separator with the child to its right
//! makes splitting and combining branches the same slice arithmetic as leaves.
//!
//! Fill bounds: every node fits `page_body_bytes`; every node but the root
//! holds at least `node_fill_bytes_min` bytes. The constants below are chosen
//! so that any node of up to one page plus one entry can be cut into two halves
//! that both fit and are both above the minimum (checked at compile time).

use std::sync::Arc;

use smallvec::SmallVec;

use super::key_bytes_max;

/// A key in a decoded node: up to 40 bytes inline (most keys), longer ones
/// on the heap. Searching a node then touches the node's own array, not one
/// allocation per key.
pub type Key = SmallVec<[u8; 40]>;
use super::page::page_body_bytes;
use super::PageId;

/// Fixed bytes of a leaf entry before its key: a 24-bit word (the key bytes
/// stored, the bytes shared with the previous key, the overflow bit) and the
/// value's length (24 bits). Six, not eight: an MVCC version of a 256-byte
/// value then fits 13 to a leaf, not 12.
pub(crate) const leaf_entry_header_bytes: usize = 6;
/// The largest leaf entry: values that would make an entry larger go to an
/// overflow chain, leaving an 8-byte page reference in the entry. Large
/// enough that an MVCC version of a 1 KiB value (a ~10-byte tree key and a
/// ~1080-byte record with its key) stays inline: a value that spills takes a
/// whole page.
pub(crate) const leaf_entry_bytes_max: usize = 1160;
const _: () = assert!(leaf_entry_bytes_max >= leaf_entry_header_bytes + key_bytes_max + 8);
/// A branch item: key length (u16), key, child id (u64).
pub(crate) const branch_item_bytes_max: usize = 2 + key_bytes_max + 8;
/// A non-root node with fewer bytes is combined with a sibling.
pub(crate) const node_fill_bytes_min: usize = page_body_bytes / 7;

const entry_bytes_max: usize = if leaf_entry_bytes_max > branch_item_bytes_max {
    leaf_entry_bytes_max
} else {
    branch_item_bytes_max
};
// A node one entry too large bisects into halves that fit the page...
const _: () = assert!(page_body_bytes + 2 * entry_bytes_max <= 2 * page_body_bytes);
// ...and an underfull node plus a full sibling plus a separator bisects too.
const _: () =
    assert!(page_body_bytes + node_fill_bytes_min + 3 * entry_bytes_max <= 2 * page_body_bytes);
// Both halves of any bisected node (more than a page) are above the minimum.
const _: () = assert!(page_body_bytes - 2 * entry_bytes_max >= 2 * node_fill_bytes_min);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Shared, so that copying a node for a write (copy-on-write of a
    /// cached page) bumps counts instead of copying every value.
    Inline(Arc<[u8]>),
    /// The value lives in a chain of overflow pages starting at `first`.
    Overflow { first: PageId, value_bytes: u32 },
}

impl Value {
    /// Whether a value of this size is stored inline next to a key of this size.
    pub(crate) fn fits_inline(key_bytes: usize, value_bytes: usize) -> bool {
        leaf_entry_header_bytes + key_bytes + value_bytes <= leaf_entry_bytes_max
    }

    pub(crate) fn value_bytes(&self) -> usize {
        match self {
            Value::Inline(value) => value.len(),
            Value::Overflow { value_bytes, .. } => *value_bytes as usize,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    pub key: Key,
    pub value: Value,
}

/// How many leading bytes `key` shares with `previous`: a leaf stores an
/// entry's key as that count and the rest (prefix compression).
pub(crate) fn shared_bytes(previous: &[u8], key: &[u8]) -> usize {
    previous.iter().zip(key).take_while(|(a, b)| a == b).count()
}

impl LeafEntry {
    /// Bytes the entry takes in a leaf, after `previous` (None: it comes
    /// first, with its whole key).
    fn encoded_bytes(&self, previous: Option<&LeafEntry>) -> usize {
        let shared = previous.map_or(0, |previous| shared_bytes(&previous.key, &self.key));
        leaf_entry_header_bytes + self.key.len() - shared
            + match &self.value {
                Value::Inline(value) => value.len(),
                Value::Overflow { .. } => 8,
            }
    }
}

/// Each leaf entry's bytes, in order.
fn leaf_weights(entries: &[LeafEntry]) -> impl Iterator<Item = usize> + '_ {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| entry.encoded_bytes(i.checked_sub(1).map(|j| &entries[j])))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchItem {
    pub key: Key,
    pub child: PageId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Leaf(Vec<LeafEntry>),
    Branch(Vec<BranchItem>),
}

impl Node {
    /// Bytes the node's entries occupy in a page body (exactly what
    /// `page::encode_node` writes).
    pub(crate) fn body_bytes(&self) -> usize {
        match self {
            Node::Leaf(entries) => leaf_weights(entries).sum(),
            Node::Branch(items) => {
                8 + items[1..].iter().map(|item| 10 + item.key.len()).sum::<usize>()
            }
        }
    }

    /// Bytes each entry adds to the body. Item 0 of a branch is only its child.
    fn entry_weights(&self) -> Vec<usize> {
        match self {
            Node::Leaf(entries) => leaf_weights(entries).collect(),
            Node::Branch(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| if i == 0 { 8 } else { 10 + item.key.len() })
                .collect(),
        }
    }

    pub(crate) fn is_underfull(&self) -> bool {
        self.body_bytes() < node_fill_bytes_min
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.len(),
            Node::Branch(items) => items.len(),
        }
    }

    /// The index of the child of this branch whose range holds `key`.
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        let Node::Branch(items) = self else { panic!("child_index on a leaf") };
        partition_point_prefetching(&items[1..], |item| item.key.as_slice() <= key)
    }

    pub(crate) fn child(&self, index: usize) -> PageId {
        let Node::Branch(items) = self else { panic!("child on a leaf") };
        items[index].child
    }

    /// Joins two adjacent nodes of one kind; `separator` is the parent's key
    /// between them (it moves down into a branch, and is dropped for leaves).
    pub(crate) fn combine(left: Node, separator: Key, right: Node) -> Node {
        match (left, right) {
            (Node::Leaf(mut left), Node::Leaf(right)) => {
                left.extend(right);
                Node::Leaf(left)
            }
            (Node::Branch(mut left), Node::Branch(mut right)) => {
                right[0].key = separator;
                left.extend(right);
                Node::Branch(left)
            }
            _ => panic!("combining a leaf with a branch"),
        }
    }

    /// Cuts the node into pieces that each fit a page. Balanced cuts by
    /// default; `append` (the change was at the node's right end, as with
    /// ascending keys or revisions) leaves the left piece as full as the fill
    /// bounds allow, so a tree grown by appends is packed, not half empty.
    /// Returns (separator, piece); the first separator is empty (the piece
    /// inherits the node's place in its parent), the others go to the parent.
    pub(crate) fn split_to_fit(self, append: bool) -> Vec<(Key, Node)> {
        if self.body_bytes() <= page_body_bytes {
            return vec![(Key::new(), self)];
        }
        if let Some(at) = append.then(|| self.left_full_cut()).flatten() {
            let (left, separator, right) = self.cut(at);
            let mut pieces = left.split_to_fit(append);
            let mut right_pieces = right.split_to_fit(append);
            right_pieces[0].0 = separator;
            pieces.extend(right_pieces);
            return pieces;
        }
        self.split_even()
    }

    /// Cuts into as few pieces of about equal size as fit the fill bounds
    /// (see `split_to_fit` for what it returns).
    pub(crate) fn split_even(self) -> Vec<(Key, Node)> {
        let mut pieces = self.body_bytes().div_ceil(page_body_bytes).max(1);
        loop {
            if let Some(split) = self.try_split_even(pieces) {
                return split;
            }
            pieces += 1;
            assert!(pieces <= self.len(), "no split of a {}-byte node fits", self.body_bytes());
        }
    }

    /// `pieces` pieces within the fill bounds, each cut as near the even
    /// share as entry sizes allow (trying the cut on either side of it).
    fn try_split_even(&self, pieces: usize) -> Option<Vec<(Key, Node)>> {
        let within = |node: &Node| node.body_bytes() <= page_body_bytes && !node.is_underfull();
        if pieces == 1 {
            return within(self).then(|| vec![(Key::new(), self.clone())]);
        }
        let weights = self.entry_weights();
        if weights.len() < pieces {
            return None;
        }
        let total: usize = weights.iter().sum();
        let target = total / pieces;
        let mut above = 1;
        while above + 1 < weights.len() && self.cut_sizes(&weights, total, above).0 < target {
            above += 1;
        }
        let below = above.saturating_sub(1).max(1);
        let distance = |at: usize| self.cut_sizes(&weights, total, at).0.abs_diff(target);
        let mut candidates = vec![above, below];
        candidates.dedup();
        candidates.sort_by_key(|at| distance(*at));
        for at in candidates {
            let (left, separator, right) = self.clone().cut(at);
            if !within(&left) {
                continue;
            }
            if let Some(mut rest) = right.try_split_even(pieces - 1) {
                rest[0].0 = separator;
                let mut out = vec![(Key::new(), left)];
                out.extend(rest);
                return Some(out);
            }
        }
        None
    }

    /// (left, right) body bytes of the pieces a cut before entry `at` makes.
    fn cut_sizes(&self, weights: &[usize], total: usize, at: usize) -> (usize, usize) {
        let left: usize = weights[..at].iter().sum();
        // A branch's item `at` loses its key to the parent and becomes item 0;
        // a leaf's entry `at` comes first, with its whole key.
        let right = match self {
            Node::Branch(_) => total - left - weights[at] + 8,
            Node::Leaf(entries) => {
                total - left + shared_bytes(&entries[at - 1].key, &entries[at].key)
            }
        };
        (left, right)
    }

    /// The last cut whose left piece fits a page and whose right piece is not
    /// underfull, if any.
    fn left_full_cut(&self) -> Option<usize> {
        let weights = self.entry_weights();
        let total: usize = weights.iter().sum();
        (1..weights.len()).rev().find(|at| {
            let (left, right) = self.cut_sizes(&weights, total, *at);
            left <= page_body_bytes && right >= node_fill_bytes_min
        })
    }

    /// Cuts before entry `at`: (left, separator, right).
    fn cut(self, at: usize) -> (Node, Key, Node) {
        match self {
            Node::Leaf(mut entries) => {
                let right = entries.split_off(at);
                // The shortest separator between the two pieces (suffix
                // truncation): a prefix of the right piece's first key one
                // byte longer than what it shares with the left's last. It
                // is above every key on the left and at most every key on
                // the right; short separators keep branches wide and inline.
                let first = right[0].key.as_slice();
                let shared = entries.last().map_or(0, |last| {
                    last.key.iter().zip(first).take_while(|(a, b)| a == b).count()
                });
                let separator = Key::from_slice(&first[..(shared + 1).min(first.len())]);
                (Node::Leaf(entries), separator, Node::Leaf(right))
            }
            Node::Branch(mut items) => {
                let mut right = items.split_off(at);
                let separator = std::mem::take(&mut right[0].key);
                (Node::Branch(items), separator, Node::Branch(right))
            }
        }
    }
}

/// `slice.partition_point(pred)`, searching so that the probes' cache misses
/// overlap: each step asks the CPU for both places the next probe may be
/// before it reads the current one. A point read of a large tree is bound
/// by these misses (a decoded branch of ~100 items spans ~90 lines), and a
/// plain binary search takes them one after another.
pub(crate) fn partition_point_prefetching<T>(slice: &[T], pred: impl Fn(&T) -> bool) -> usize {
    if slice.is_empty() {
        return 0;
    }
    let mut base = 0;
    let mut size = slice.len();
    while size > 1 {
        let half = size / 2;
        let next_half = (size - half) / 2;
        prefetch(&slice[base + next_half]);
        prefetch(&slice[base + half + next_half]);
        if pred(&slice[base + half]) {
            base += half;
        }
        size -= half;
    }
    base + usize::from(pred(&slice[base]))
}

/// Hints that `item` will be read soon (no effect where unsupported).
#[inline(always)]
fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (item as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_of(sizes: &[usize]) -> Node {
        Node::Leaf(
            sizes
                .iter()
                .enumerate()
                .map(|(i, size)| LeafEntry {
                    key: Key::from_slice(format!("{i:04}").as_bytes()),
                    value: Value::Inline(vec![7; *size].into()),
                })
                .collect(),
        )
    }

    #[test]
    fn an_overfull_leaf_splits_into_balanced_halves_within_bounds() {
        let node = leaf_of(&[1000, 1000, 1000, 1000, 100]);
        assert!(node.body_bytes() > page_body_bytes);
        let pieces = node.split_to_fit(false);
        assert_eq!(pieces.len(), 2);
        assert!(pieces[0].0.is_empty());
        assert_eq!(pieces[1].0.as_slice(), b"0002");
        for (_, piece) in &pieces {
            assert!(piece.body_bytes() <= page_body_bytes);
            assert!(!piece.is_underfull());
        }
    }

    #[test]
    fn an_appended_leaf_keeps_its_left_piece_full() {
        let node = leaf_of(&[300; 14]);
        let pieces = node.split_to_fit(true);
        assert_eq!(pieces.len(), 2);
        let (left, right) = (&pieces[0].1, &pieces[1].1);
        assert!(left.body_bytes() <= page_body_bytes && !right.is_underfull());
        assert!(left.body_bytes() > right.body_bytes(), "left-heavy");
        assert!(left.body_bytes() + 308 > page_body_bytes - node_fill_bytes_min);
    }

    #[test]
    fn branch_split_moves_the_separator_up_and_combine_brings_it_back() {
        let items: Vec<BranchItem> = (0..400u64)
            .map(|i| BranchItem {
                key: if i == 0 {
                    Key::new()
                } else {
                    Key::from_slice(format!("{i:08}").as_bytes())
                },
                child: PageId(i + 2),
            })
            .collect();
        let node = Node::Branch(items.clone());
        let pieces = node.split_to_fit(false);
        assert_eq!(pieces.len(), 2);
        let (_, left) = &pieces[0];
        let (separator, right) = &pieces[1];
        let Node::Branch(right_items) = right else { panic!() };
        assert!(right_items[0].key.is_empty());
        let joined = Node::combine(left.clone(), separator.clone(), right.clone());
        assert_eq!(joined, Node::Branch(items));
    }

    #[test]
    fn partition_point_prefetching_agrees_with_the_standard_one() {
        for len in 0..70usize {
            let slice: Vec<usize> = (0..len).map(|i| i * 2).collect();
            for threshold in 0..2 * len + 2 {
                let pred = |x: &usize| *x < threshold;
                assert_eq!(
                    partition_point_prefetching(&slice, pred),
                    slice.partition_point(pred),
                    "len {len}, threshold {threshold}"
                );
            }
        }
    }

    #[test]
    fn child_index_follows_separators() {
        let node = Node::Branch(vec![
            BranchItem { key: Key::new(), child: PageId(2) },
            BranchItem { key: Key::from_slice(b"m"), child: PageId(3) },
            BranchItem { key: Key::from_slice(b"t"), child: PageId(4) },
        ]);
        assert_eq!(node.child_index(b"a"), 0);
        assert_eq!(node.child_index(b"m"), 1);
        assert_eq!(node.child_index(b"s"), 1);
        assert_eq!(node.child_index(b"z"), 2);
    }
}
