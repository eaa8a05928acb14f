//! `check_invariants`: walks the whole working tree (and every live snapshot's
//! tree) and panics on any broken invariant. Tests call it after every step; it
//! reads every page, so it is not for production paths.
//!
//! Checked: keys strictly ascending across the tree and inside separator bounds;
//! every node fits its page and every non-root node is above the fill minimum;
//! every leaf at the same depth; inline/overflow placement canonical; the entry
//! count; every page reachable exactly once; reachable ∪ durable free-list
//! pages ∪ free ∪ pending = all data pages, with no overlap; every fresh page
//! reachable; no page a live snapshot reads is free.

use std::collections::BTreeMap;

use super::node::{Node, Value};
use super::page::page_body_bytes;
use super::snapshot::TreeView;
use super::{PageFile, PageId, PageStore, Result};

/// What a walk found: each page with what it is.
#[derive(Default)]
struct Walk {
    pages: BTreeMap<PageId, &'static str>,
    entries: u64,
}

impl Walk {
    fn claim(&mut self, id: PageId, role: &'static str) {
        if let Some(earlier) = self.pages.insert(id, role) {
            panic!("page {id} is both {earlier} and {role}");
        }
    }
}

impl<F: PageFile> PageStore<F> {
    /// Panics on a broken invariant; answers an error only when a page cannot
    /// be read or verified.
    pub fn check_invariants(&mut self) -> Result<()> {
        self.ensure_usable()?;
        self.cache.check_invariants();
        let view = self.working_view();
        let mut walk = Walk::default();
        self.walk(view, view.root, 0, (None, None), &mut walk)?;
        assert_eq!(walk.entries, self.entry_count, "entry count");
        for id in self.space.fresh_ids() {
            assert!(walk.pages.contains_key(&id), "fresh page {id} is not in the tree");
        }
        for id in self.cache.dirty_ids() {
            assert!(self.space.is_fresh(id), "dirty page {id} is not fresh");
        }
        for id in self.free_list_pages.clone() {
            walk.claim(id, "a free-list page");
        }
        for id in self.space.free_ids() {
            walk.claim(id, "free");
        }
        let working = self.working_generation();
        for (generation, id) in self.space.pending_ids() {
            assert!(generation <= working, "page {id} pending under future {generation}");
            walk.claim(id, "pending");
        }
        let data_pages = PageId::first_data.0..self.space.page_count();
        assert!(walk.pages.keys().all(|id| data_pages.contains(&id.0)));
        assert_eq!(walk.pages.len() as u64, data_pages.end - data_pages.start, "pages lost");
        self.check_snapshots()
    }

    /// Every page of the tree `view` (tree, overflow), for tests.
    #[cfg(test)]
    pub(crate) fn tree_pages(&mut self, view: TreeView) -> Result<Vec<PageId>> {
        let mut walk = Walk::default();
        self.walk(view, view.root, 0, (None, None), &mut walk)?;
        Ok(walk.pages.into_keys().collect())
    }

    /// Every live snapshot's tree is whole and none of its pages is free.
    fn check_snapshots(&mut self) -> Result<()> {
        for (view, entry_count) in self.snapshots.live() {
            let mut walk = Walk::default();
            self.walk(view, view.root, 0, (None, None), &mut walk)?;
            assert_eq!(walk.entries, entry_count, "snapshot {} entry count", view.generation);
            let free: Vec<PageId> = self.space.free_ids().collect();
            for id in free {
                assert!(!walk.pages.contains_key(&id), "snapshot page {id} is free");
            }
        }
        Ok(())
    }

    /// Checks the subtree at `id`, whose keys must lie in [lower, upper).
    fn walk(
        &mut self,
        view: TreeView,
        id: PageId,
        depth: u32,
        bounds: (Option<&[u8]>, Option<&[u8]>),
        walk: &mut Walk,
    ) -> Result<()> {
        walk.claim(id, "a tree page");
        let node = self.node_at(id, view, depth)?;
        assert!(node.body_bytes() <= page_body_bytes, "page {id} overflows");
        assert!(depth == 0 || !node.is_underfull(), "page {id} underflows");
        let (lower, upper) = bounds;
        let in_bounds =
            |key: &[u8]| lower.is_none_or(|l| l <= key) && upper.is_none_or(|u| key < u);
        match &*node {
            Node::Leaf(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    assert!(in_bounds(&entry.key), "page {id}: key outside its parent's bounds");
                    assert!(i == 0 || entries[i - 1].key < entry.key, "page {id}: keys unsorted");
                    let bytes = entry.value.value_bytes();
                    let inline = Value::fits_inline(entry.key.len(), bytes);
                    assert_eq!(inline, matches!(entry.value, Value::Inline(_)), "page {id}");
                    if let Value::Overflow { first, value_bytes } = entry.value {
                        let (_, pages) = self.read_overflow(first, value_bytes, view.generation)?;
                        pages.into_iter().for_each(|page| walk.claim(page, "an overflow page"));
                    }
                }
                walk.entries += entries.len() as u64;
            }
            Node::Branch(items) => {
                assert!(items.len() >= 2, "branch {id} has {} children", items.len());
                for i in 0..items.len() {
                    let child_lower = if i == 0 { lower } else { Some(items[i].key.as_slice()) };
                    let child_upper = items.get(i + 1).map(|item| item.key.as_slice()).or(upper);
                    if i > 0 {
                        assert!(in_bounds(&items[i].key), "page {id}: separator out of bounds");
                        assert!(i == 1 || items[i - 1].key < items[i].key, "page {id}: unsorted");
                    }
                    let bounds = (child_lower, child_upper);
                    self.walk(view, items[i].child, depth + 1, bounds, walk)?;
                }
            }
        }
        Ok(())
    }
}
