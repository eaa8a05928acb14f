//! Point reads and the copy-on-write insert and remove.
//!
//! A write descends from the root recording the path, changes an owned copy of
//! the leaf, then rebuilds the path bottom up (`rebuild`): at each level the
//! changed child is combined with a sibling if it underflows, cut into pieces
//! if it overflows, and each piece placed copy-on-write: a fresh page is
//! rewritten in memory, any other page is left alone and its content goes to a
//! new page, which changes the parent's reference and so the parent too. The
//! walk stops early at the first level whose page id and shape did not change:
//! everything above is unchanged.
//!
//! Values too large to sit inline go to overflow chains, written to the file at
//! once: their pages are fresh, so no checkpoint or snapshot can read them, and
//! the next checkpoint's first sync makes them durable with the tree pages.

use super::file::read_raw;
use super::node::{
    leaf_entry_bytes_max, leaf_entry_header_bytes, BranchItem, Key, LeafEntry, Node, Value,
};
use super::page::{encode_overflow, overflow_data_bytes, page_body_bytes};
use super::read::{check_reference, read_overflow_chain};
use super::snapshot::TreeView;
use super::{key_bytes_max, page_bytes, value_bytes_max, PageFile, PageId, PageStore};
use super::{Result, StoreError};

/// Free bytes a fresh left sibling must have for a copied leaf to be
/// repacked with it (see `replace_child`): less is not worth the work.
const pack_room_bytes: usize = page_body_bytes / 16;

/// One branch on the way down: the page and the index of the child taken.
pub(crate) struct Frame {
    page: PageId,
    index: usize,
}

impl<F: PageFile> PageStore<F> {
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.ensure_usable()?;
        self.view_get(self.working_view(), key)
    }

    /// Sets `key` to `value`, answering the value it replaced.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.ensure_usable()?;
        if key.len() > key_bytes_max {
            return Err(StoreError::KeyTooLarge { key_bytes: key.len() });
        }
        if value.len() > value_bytes_max {
            return Err(StoreError::ValueTooLarge { value_bytes: value.len() });
        }
        let result = self.insert_entry(key, value);
        self.poisoned |= result.is_err();
        result
    }

    /// Sets every key of `entries` (ascending, no repeats) to its value: the
    /// same as inserting them one by one, but each leaf is descended to,
    /// copied and rebuilt once for all the entries that land in it.
    pub fn insert_sorted<'e>(
        &mut self,
        entries: impl IntoIterator<Item = (&'e [u8], &'e [u8])>,
    ) -> Result<()> {
        self.ensure_usable()?;
        let result = self.insert_sorted_entries(entries);
        self.poisoned |= result.is_err();
        result
    }

    fn insert_sorted_entries<'e>(
        &mut self,
        entries: impl IntoIterator<Item = (&'e [u8], &'e [u8])>,
    ) -> Result<()> {
        let mut entries = entries.into_iter().peekable();
        let mut previous: Option<&[u8]> = None;
        while let Some(&(first, _)) = entries.peek() {
            let view = self.working_view();
            let (path, leaf_id, leaf) = self.descend(view, first)?;
            drop(leaf);
            // The keys this leaf holds end below the nearest separator to the
            // right of the path.
            let mut upper: Option<Key> = None;
            for frame in path.iter().rev() {
                let Node::Branch(items) = &*self.node(frame.page, view.generation)? else {
                    unreachable!("path frames are branches")
                };
                if let Some(item) = items.get(frame.index + 1) {
                    upper = Some(item.key.clone());
                    break;
                }
            }
            let mut leaf = self.take_for_write(leaf_id)?;
            let Node::Leaf(leaf_entries) = &mut leaf else {
                unreachable!("descend ends at a leaf")
            };
            let mut dropped = Vec::new();
            let mut append = true;
            let mut from = 0;
            // A bound on the leaf's growth: the rebuild cuts it into pages.
            let mut added_bytes = 0;
            while let Some(&(key, value)) = entries.peek() {
                if upper.as_ref().is_some_and(|upper| key >= upper.as_slice())
                    || added_bytes > 2 * page_bytes
                {
                    break;
                }
                if key.len() > key_bytes_max {
                    return Err(StoreError::KeyTooLarge { key_bytes: key.len() });
                }
                if value.len() > value_bytes_max {
                    return Err(StoreError::ValueTooLarge { value_bytes: value.len() });
                }
                assert!(previous.is_none_or(|p| p < key), "insert_sorted keys ascend");
                previous = Some(key);
                entries.next();
                let stored = self.store_value(key, value)?;
                added_bytes +=
                    leaf_entry_header_bytes + key.len() + value.len().min(leaf_entry_bytes_max);
                let rest = &leaf_entries[from..];
                match rest.binary_search_by(|entry| entry.key.as_slice().cmp(key)) {
                    Ok(i) => {
                        let old = std::mem::replace(&mut leaf_entries[from + i].value, stored);
                        dropped.push(old);
                        from += i + 1;
                        append &= from == leaf_entries.len();
                    }
                    Err(i) => {
                        let entry = LeafEntry { key: Key::from_slice(key), value: stored };
                        leaf_entries.insert(from + i, entry);
                        self.entry_count += 1;
                        from += i + 1;
                        append &= from == leaf_entries.len();
                    }
                }
            }
            self.rebuild(path, leaf_id, leaf, append)?;
            for value in dropped {
                self.release_value(value)?;
            }
        }
        Ok(())
    }

    /// Removes `key`, answering its value.
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.ensure_usable()?;
        let result = self.remove_entry(key);
        self.poisoned |= result.is_err();
        result
    }

    pub(crate) fn view_get(&mut self, view: TreeView, key: &[u8]) -> Result<Option<Vec<u8>>> {
        super::read::get_in(&mut &mut *self, view, key)
    }

    /// The path of branches from the root to the leaf for `key`, and the leaf.
    fn descend(
        &mut self,
        view: TreeView,
        key: &[u8],
    ) -> Result<(Vec<Frame>, PageId, std::sync::Arc<Node>)> {
        let mut path = Vec::with_capacity(view.height as usize);
        let mut id = view.root;
        for depth in 0..view.height {
            let node = self.node_at(id, view, depth)?;
            if depth + 1 == view.height {
                return Ok((path, id, node));
            }
            let index = node.child_index(key);
            path.push(Frame { page: id, index });
            id = node.child(index);
        }
        unreachable!("a tree is at least one level high")
    }

    fn insert_entry(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let (path, leaf_id, leaf) = self.descend(self.working_view(), key)?;
        drop(leaf);
        let stored = self.store_value(key, value)?;
        let mut leaf = self.take_for_write(leaf_id)?;
        let Node::Leaf(entries) = &mut leaf else { unreachable!("descend ends at a leaf") };
        let (old, at) = match entries.binary_search_by(|entry| entry.key.as_slice().cmp(key)) {
            Ok(i) => (Some(std::mem::replace(&mut entries[i].value, stored)), i),
            Err(i) => {
                entries.insert(i, LeafEntry { key: Key::from_slice(key), value: stored });
                self.entry_count += 1;
                (None, i)
            }
        };
        let append = at + 1 == entries.len();
        self.rebuild(path, leaf_id, leaf, append)?;
        old.map(|value| self.drop_value(value)).transpose()
    }

    fn remove_entry(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (path, leaf_id, leaf) = self.descend(self.working_view(), key)?;
        let Node::Leaf(entries) = &*leaf else { unreachable!("descend ends at a leaf") };
        if entries.binary_search_by(|entry| entry.key.as_slice().cmp(key)).is_err() {
            return Ok(None);
        }
        drop(leaf);
        let mut leaf = self.take_for_write(leaf_id)?;
        let Node::Leaf(entries) = &mut leaf else { unreachable!("descend ends at a leaf") };
        let i = entries.binary_search_by(|entry| entry.key.as_slice().cmp(key)).unwrap();
        let removed = entries.remove(i);
        self.entry_count -= 1;
        self.rebuild(path, leaf_id, leaf, false)?;
        Ok(Some(self.drop_value(removed.value)?))
    }

    /// Places `node` as the new content of page `old` at the bottom of `path`
    /// and fixes every ancestor up to the root. `append`: the change was at the
    /// node's right end (see `Node::split_to_fit`).
    fn rebuild(
        &mut self,
        mut path: Vec<Frame>,
        mut old: PageId,
        mut node: Node,
        mut append: bool,
    ) -> Result<()> {
        let generation = self.working_generation();
        while let Some(frame) = path.pop() {
            let siblings = self.node(frame.page, generation)?.len();
            let combine = node.is_underfull() && siblings > 1;
            if !combine && node.body_bytes() <= page_body_bytes && self.space.is_fresh(old) {
                self.cache.put_dirty(old, node);
                return Ok(());
            }
            let mut parent = self.take_for_write(frame.page)?;
            self.replace_child(&mut parent, frame.index, old, node, append)?;
            // New items land at the parent's right end only from its last child.
            append &= frame.index + 1 == siblings;
            old = frame.page;
            node = parent;
        }
        self.set_root(old, node, append);
        Ok(())
    }

    /// Puts the new content of child `index` (until now page `old`) into
    /// `parent`: combined with a sibling if it underflows, cut into pieces if it
    /// overflows, every piece placed copy-on-write.
    fn replace_child(
        &mut self,
        parent: &mut Node,
        index: usize,
        old: PageId,
        node: Node,
        append: bool,
    ) -> Result<()> {
        let Node::Branch(items) = parent else { unreachable!("a parent is a branch") };
        let mut start = index;
        let mut replaced = 1;
        let mut content = node;
        let mut pack = false;
        // An underfull node takes entries from a sibling; an overfull one
        // (not growing at the right end) shares its entries with a sibling
        // before splitting, so that splits leave pages fuller (B*-tree).
        let overfull = !append && content.body_bytes() > page_body_bytes;
        if (content.is_underfull() || overfull) && items.len() > 1 {
            // Prefer the right sibling; the last child combines with its left.
            let sibling_index = if index + 1 < items.len() { index + 1 } else { index - 1 };
            let sibling_id = items[sibling_index].child;
            let sibling = self.take_for_write(sibling_id)?;
            self.release(sibling_id);
            content = if sibling_index > index {
                Node::combine(content, items[sibling_index].key.clone(), sibling)
            } else {
                Node::combine(sibling, items[index].key.clone(), content)
            };
            start = index.min(sibling_index);
            replaced = 2;
        } else if index > 0 && matches!(content, Node::Leaf(_)) {
            // A leaf copied next to a left sibling already rewritten in this
            // generation: both pages are written anyway, so the two are
            // repacked with the left one full. A sorted batch that rewrites
            // a run of leaves (a checkpoint's key entries) leaves them packed
            // instead of at the ~75% a tree of random inserts settles at.
            let left_id = items[index - 1].child;
            let generation = self.working_generation();
            if self.space.is_fresh(left_id)
                && self.node(left_id, generation)?.body_bytes() + pack_room_bytes <= page_body_bytes
            {
                let left = self.take_for_write(left_id)?;
                self.release(left_id);
                content = Node::combine(left, items[index].key.clone(), content);
                start = index - 1;
                replaced = 2;
                pack = true;
            }
        }
        let mut placed = Vec::new();
        let pieces = content.split_to_fit(append || pack);
        for (i, (separator, piece)) in pieces.into_iter().enumerate() {
            let (key, child) = if i == 0 {
                (items[start].key.clone(), self.place(old, piece))
            } else {
                (separator, self.place_new(piece))
            };
            placed.push(BranchItem { key, child });
        }
        items.splice(start..start + replaced, placed);
        Ok(())
    }

    /// Installs the new root content: a branch left with one child gives the
    /// root to that child; a root that overflows grows the tree by a level.
    fn set_root(&mut self, old: PageId, node: Node, append: bool) {
        if let Node::Branch(items) = &node {
            if items.len() == 1 {
                self.release(old);
                self.root = items[0].child;
                self.height -= 1;
                return;
            }
        }
        let mut pieces = node.split_to_fit(append);
        if pieces.len() == 1 {
            let (_, node) = pieces.pop().unwrap();
            self.root = self.place(old, node);
            return;
        }
        let mut items = Vec::with_capacity(pieces.len());
        for (i, (separator, piece)) in pieces.into_iter().enumerate() {
            let child = if i == 0 { self.place(old, piece) } else { self.place_new(piece) };
            items.push(BranchItem { key: separator, child });
        }
        let root = Node::Branch(items);
        assert!(root.body_bytes() <= page_body_bytes, "a new root holds its few children");
        self.root = self.place_new(root);
        self.height += 1;
    }

    /// The stored form of a value: inline, or written out to a new overflow
    /// chain.
    fn store_value(&mut self, key: &[u8], value: &[u8]) -> Result<Value> {
        if Value::fits_inline(key.len(), value.len()) {
            return Ok(Value::Inline(value.into()));
        }
        let chunks: Vec<&[u8]> = value.chunks(overflow_data_bytes).collect();
        let pages: Vec<PageId> = chunks.iter().map(|_| self.allocate()).collect();
        let generation = self.working_generation();
        let mut buf = vec![0u8; page_bytes];
        for (i, chunk) in chunks.iter().enumerate() {
            encode_overflow(&mut buf, pages[i], generation, pages.get(i + 1).copied(), chunk);
            self.file.write_page(pages[i], &buf)?;
        }
        Ok(Value::Overflow { first: pages[0], value_bytes: value.len() as u32 })
    }

    /// Takes a value out of the working tree without reading it: releases
    /// its overflow pages (reading their chain to find them).
    fn release_value(&mut self, value: Value) -> Result<()> {
        if let Value::Overflow { .. } = value {
            self.drop_value(value)?;
        }
        Ok(())
    }

    /// Takes a value out of the working tree: answers its bytes and releases
    /// its overflow pages.
    fn drop_value(&mut self, value: Value) -> Result<Vec<u8>> {
        match value {
            Value::Inline(bytes) => Ok(bytes.to_vec()),
            Value::Overflow { first, value_bytes } => {
                let generation = self.working_generation();
                let (bytes, pages) = self.read_overflow(first, value_bytes, generation)?;
                for page in pages {
                    self.release(page);
                }
                Ok(bytes)
            }
        }
    }

    pub(crate) fn read_value(&mut self, value: &Value, generation_max: u64) -> Result<Vec<u8>> {
        match value {
            Value::Inline(bytes) => Ok(bytes.to_vec()),
            Value::Overflow { first, value_bytes } => {
                Ok(self.read_overflow(*first, *value_bytes, generation_max)?.0)
            }
        }
    }

    /// Reads and verifies an overflow chain: (the value, the chain's pages).
    pub(crate) fn read_overflow(
        &mut self,
        first: PageId,
        value_bytes: u32,
        generation_max: u64,
    ) -> Result<(Vec<u8>, Vec<PageId>)> {
        let page_count = self.space.page_count();
        let file = &self.file;
        let read = |page, buf: &mut [u8]| {
            check_reference(page, page_count)?;
            read_raw(file, page, buf)
        };
        read_overflow_chain(read, first, value_bytes, generation_max)
    }
}
