//! Ordered reads: a cursor walks the leaves left to right, holding only the
//! path of branches from the root and the current leaf, so a scan of any size
//! uses memory for one root-to-leaf path (plus the value it hands out).
//!
//! A cursor reads through a `PageSource`: the store itself (borrowed mutably,
//! so the working tree cannot change under it), or a snapshot's
//! `SharedReader` (any thread; the pages of a checkpoint, which nothing
//! overwrites while the snapshot lives).

use std::ops::Bound;
use std::sync::Arc;

use super::node::{Node, Value};
use super::read::PageSource;
use super::snapshot::TreeView;
use super::{PageFile, PageId, PageStore, Result};

/// Streams the entries of a key range in order.
pub struct Cursor<S: PageSource> {
    store: S,
    view: TreeView,
    /// Branches from the root down, each with the index of the child walked.
    path: Vec<(Arc<Node>, usize)>,
    /// The leaf being read; None once the range is exhausted or failed.
    leaf: Option<Arc<Node>>,
    position: usize,
    end: Bound<Vec<u8>>,
}

impl<F: PageFile> PageStore<F> {
    /// Entries with keys in (start, end), at most `limit` of them (0: all).
    pub fn range(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.cursor(start, end)?.collect_up_to(limit)
    }

    /// A cursor over the working tree's entries with keys in (start, end).
    pub fn cursor(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Cursor<&mut PageStore<F>>> {
        self.ensure_usable()?;
        let view = self.working_view();
        Cursor::new(self, view, start, end)
    }
}

impl<S: PageSource> Cursor<S> {
    pub(crate) fn new(
        store: S,
        view: TreeView,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Cursor<S>> {
        let end = end.map(<[u8]>::to_vec);
        let mut cursor = Cursor { store, view, path: Vec::new(), leaf: None, position: 0, end };
        cursor.seek(start)?;
        Ok(cursor)
    }

    /// Descends to the first entry at or after `start`.
    fn seek(&mut self, start: Bound<&[u8]>) -> Result<()> {
        let mut id = self.view.root;
        for depth in 0..self.view.height - 1 {
            let node = self.store.node_at(id, self.view, depth)?;
            let index = match start {
                Bound::Unbounded => 0,
                Bound::Included(key) | Bound::Excluded(key) => node.child_index(key),
            };
            id = node.child(index);
            self.path.push((node, index));
        }
        self.read_ahead();
        let leaf = self.store.node_at(id, self.view, self.view.height - 1)?;
        let Node::Leaf(entries) = &*leaf else { unreachable!("node_at checked the kind") };
        self.position = match start {
            Bound::Unbounded => 0,
            Bound::Included(key) => entries.partition_point(|entry| entry.key.as_slice() < key),
            Bound::Excluded(key) => entries.partition_point(|entry| entry.key.as_slice() <= key),
        };
        self.leaf = Some(leaf);
        Ok(())
    }

    /// Moves forward to the first entry at or after `target` (which is not
    /// before the cursor's position): within the current leaf when it holds
    /// `target`, else by a new descent from the root.
    pub fn seek_forward(&mut self, target: &[u8]) -> Result<()> {
        let Some(leaf) = self.leaf.clone() else { return Ok(()) };
        let Node::Leaf(entries) = &*leaf else { unreachable!("cursor leaves are leaves") };
        if entries.last().is_some_and(|last| last.key.as_slice() >= target) {
            let rest = &entries[self.position.min(entries.len())..];
            self.position += rest.partition_point(|entry| entry.key.as_slice() < target);
            return Ok(());
        }
        self.path.clear();
        self.leaf = None;
        self.seek(Bound::Included(target))
    }

    /// The next entry, or None past the end of the range.
    pub fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.next_with(|key, value| (key.to_vec(), value.to_vec()))
    }

    /// Hands the next entry's key and value to `visit` without copying them
    /// (an inline value is read in place); None past the end of the range.
    pub fn next_with<T>(&mut self, visit: impl FnOnce(&[u8], &[u8]) -> T) -> Result<Option<T>> {
        loop {
            let Some(leaf) = self.leaf.clone() else { return Ok(None) };
            let Node::Leaf(entries) = &*leaf else { unreachable!("cursor leaves are leaves") };
            let Some(entry) = entries.get(self.position) else {
                self.next_leaf()?;
                continue;
            };
            let past_end = match &self.end {
                Bound::Unbounded => false,
                Bound::Included(end) => entry.key.as_slice() > end.as_slice(),
                Bound::Excluded(end) => entry.key.as_slice() >= end.as_slice(),
            };
            if past_end {
                self.leaf = None;
                return Ok(None);
            }
            // Advance only past an entry actually returned: after a failed
            // value read, calling again retries it rather than skipping it.
            let seen = match &entry.value {
                Value::Inline(value) => visit(&entry.key, value),
                other => {
                    let value = self.store.read_value(other, self.view.generation)?;
                    visit(&entry.key, &value)
                }
            };
            self.position += 1;
            return Ok(Some(seen));
        }
    }

    /// Moves to the leaf right of the current one, or ends the walk.
    fn next_leaf(&mut self) -> Result<()> {
        self.leaf = None;
        while let Some((node, index)) = self.path.last_mut() {
            if *index + 1 < node.len() {
                *index += 1;
                break;
            }
            self.path.pop();
        }
        let Some((node, index)) = self.path.last() else { return Ok(()) };
        let mut id = node.child(*index);
        while self.path.len() + 1 < self.view.height as usize {
            let node = self.store.node_at(id, self.view, self.path.len() as u32)?;
            id = node.child(0);
            self.path.push((node, 0));
        }
        let depth = self.view.height - 1;
        self.read_ahead();
        self.leaf = Some(self.store.node_at(id, self.view, depth)?);
        self.position = 0;
        Ok(())
    }

    /// Tells the source which leaves come next: the rest of the children of
    /// the branch above the leaf about to be read.
    fn read_ahead(&mut self) {
        if !self.store.reads_ahead() {
            return;
        }
        if let Some((node, index)) = self.path.last() {
            let Node::Branch(items) = &**node else { unreachable!("the path holds branches") };
            let ids: Vec<PageId> = items[*index..].iter().map(|item| item.child).collect();
            self.store.read_ahead(&ids);
        }
    }

    pub(crate) fn collect_up_to(mut self, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        while limit == 0 || out.len() < limit {
            match self.next_entry()? {
                Some(entry) => out.push(entry),
                None => break,
            }
        }
        Ok(out)
    }
}

impl<S: PageSource> Iterator for Cursor<S> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    /// Ends after the first error.
    fn next(&mut self) -> Option<Self::Item> {
        let result = self.next_entry();
        if result.is_err() {
            self.leaf = None;
            self.path.clear();
        }
        result.transpose()
    }
}
