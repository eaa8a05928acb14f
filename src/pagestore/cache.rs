//! Decoded tree pages in memory.
//!
//! - Dirty pages (written since the last checkpoint) live here only, until the
//!   checkpoint writes them; they are never evicted, because the file does not
//!   hold them yet.
//! - Clean pages (as in the file) are kept up to `clean_bytes_max`, charged one
//!   page each, and the least recently used is evicted first: a data set larger
//!   than the cache is read back on demand.
//!
//! Invariant: a page id is dirty or clean, never both; the clean set stays
//! within its bound after every call.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::node::Node;
use super::{page_bytes, PageId};

/// What one cached clean page counts against the bound.
const clean_page_charge_bytes: usize = page_bytes;

#[derive(Debug)]
pub(crate) struct PageCache {
    dirty: BTreeMap<PageId, Rc<Node>>,
    /// Clean page → (node, last use on `clock`).
    clean: HashMap<PageId, (Rc<Node>, u64)>,
    /// Last use → page: the first entry is the least recently used.
    recency: BTreeMap<u64, PageId>,
    clock: u64,
    clean_bytes_max: usize,
}

impl PageCache {
    pub(crate) fn new(clean_bytes_max: usize) -> PageCache {
        PageCache {
            dirty: BTreeMap::new(),
            clean: HashMap::new(),
            recency: BTreeMap::new(),
            clock: 0,
            clean_bytes_max,
        }
    }

    pub(crate) fn set_clean_bytes_max(&mut self, clean_bytes_max: usize) {
        self.clean_bytes_max = clean_bytes_max;
        self.evict();
    }

    pub(crate) fn get(&mut self, id: PageId) -> Option<Rc<Node>> {
        if let Some(node) = self.dirty.get(&id) {
            return Some(node.clone());
        }
        let (node, last_use) = self.clean.get_mut(&id)?;
        self.recency.remove(last_use);
        self.clock += 1;
        *last_use = self.clock;
        self.recency.insert(self.clock, id);
        Some(node.clone())
    }

    /// Remembers a page just read from, or written to, the file.
    pub(crate) fn insert_clean(&mut self, id: PageId, node: Rc<Node>) {
        assert!(!self.dirty.contains_key(&id), "page {id} is dirty");
        if self.clean_bytes_max < clean_page_charge_bytes {
            return;
        }
        self.forget_clean(id);
        self.clock += 1;
        self.clean.insert(id, (node, self.clock));
        self.recency.insert(self.clock, id);
        self.evict();
    }

    pub(crate) fn put_dirty(&mut self, id: PageId, node: Node) {
        self.forget_clean(id);
        self.dirty.insert(id, Rc::new(node));
    }

    pub(crate) fn take_dirty(&mut self, id: PageId) -> Option<Rc<Node>> {
        self.dirty.remove(&id)
    }

    /// Drops whatever is cached for a page that is being reused or freed.
    pub(crate) fn forget(&mut self, id: PageId) {
        self.dirty.remove(&id);
        self.forget_clean(id);
    }

    /// Hands every dirty page to the checkpoint, in page order.
    pub(crate) fn take_all_dirty(&mut self) -> BTreeMap<PageId, Rc<Node>> {
        std::mem::take(&mut self.dirty)
    }

    pub(crate) fn dirty_ids(&self) -> impl Iterator<Item = PageId> + '_ {
        self.dirty.keys().copied()
    }

    pub(crate) fn clean_bytes(&self) -> usize {
        self.clean.len() * clean_page_charge_bytes
    }

    fn forget_clean(&mut self, id: PageId) {
        if let Some((_, last_use)) = self.clean.remove(&id) {
            self.recency.remove(&last_use);
        }
    }

    fn evict(&mut self) {
        while self.clean_bytes() > self.clean_bytes_max {
            let (_, id) = self.recency.pop_first().expect("clean pages have a recency");
            self.clean.remove(&id);
        }
    }

    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.clean.len(), self.recency.len());
        assert!(self.clean_bytes() <= self.clean_bytes_max);
        for (id, (_, last_use)) in &self.clean {
            assert_eq!(self.recency.get(last_use), Some(id));
            assert!(!self.dirty.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_clean_page_goes_first() {
        let mut cache = PageCache::new(2 * page_bytes);
        let node = || Rc::new(Node::Leaf(Vec::new()));
        cache.insert_clean(PageId(2), node());
        cache.insert_clean(PageId(3), node());
        assert!(cache.get(PageId(2)).is_some());
        cache.insert_clean(PageId(4), node());
        assert!(cache.get(PageId(3)).is_none());
        assert!(cache.get(PageId(2)).is_some() && cache.get(PageId(4)).is_some());
        cache.put_dirty(PageId(5), Node::Leaf(Vec::new()));
        cache.put_dirty(PageId(2), Node::Leaf(Vec::new()));
        cache.check_invariants();
        assert_eq!(cache.clean_bytes(), page_bytes);
        assert_eq!(cache.take_all_dirty().len(), 2);
    }
}
