//! Decoded tree pages in memory.
//!
//! - Dirty pages (written since the last checkpoint) live here only, until the
//!   checkpoint writes them; they are never evicted, because the file does not
//!   hold them yet.
//! - Clean pages (as in the file) are kept up to `clean_bytes_max`, charged one
//!   page each, and evicted by the CLOCK algorithm (second chance): a hit only
//!   sets the page's referenced bit, so reads change no structure; the hand
//!   evicts the first unreferenced page it meets, clearing bits as it passes.
//!   A data set larger than the cache is read back on demand. The clean cache
//!   is shared with readers of checkpoints on other threads (`CleanCache`,
//!   sharded locks held for one map operation).
//!
//! Invariant: a page id is dirty or clean, never both; every clean page has
//! exactly one live entry on the clock ring (entries of forgotten or
//! re-inserted pages are stale: their stamp no longer matches); the clean set
//! stays within its bound after every call.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::Mutex;

use super::node::Node;
use super::{page_bytes, PageId};

/// What one cached clean page counts against the bound.
const clean_page_charge_bytes: usize = page_bytes;

/// Page ids are dense integers: a multiplicative hash is enough and far
/// cheaper than SipHash on the read path.
#[derive(Default)]
pub(crate) struct PageIdHasher(u64);

impl Hasher for PageIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PageMap<V> = HashMap<PageId, V, BuildHasherDefault<PageIdHasher>>;

#[derive(Debug)]
struct CleanPage {
    node: Arc<Node>,
    referenced: bool,
    /// Matches the page's live entry on the ring.
    stamp: u64,
}

/// One lock's worth of the clean cache: a CLOCK over its pages.
#[derive(Debug, Default)]
struct Shard {
    clean: PageMap<CleanPage>,
    /// The clock: (page, stamp) in the order the hand visits them.
    ring: VecDeque<(PageId, u64)>,
    stamps: u64,
    bytes_max: usize,
}

impl Shard {
    fn bytes(&self) -> usize {
        self.clean.len() * clean_page_charge_bytes
    }

    fn get(&mut self, id: PageId) -> Option<Arc<Node>> {
        let page = self.clean.get_mut(&id)?;
        // Written only when it changes: a hit on a hot page then leaves its
        // line clean, and readers on other cores keep their copies.
        if !page.referenced {
            page.referenced = true;
        }
        Some(page.node.clone())
    }

    fn insert(&mut self, id: PageId, node: Arc<Node>) {
        if self.bytes_max < clean_page_charge_bytes {
            return;
        }
        self.stamps += 1;
        let stamp = self.stamps;
        self.clean.insert(id, CleanPage { node, referenced: false, stamp });
        self.ring.push_back((id, stamp));
        self.evict();
        if self.ring.len() > 2 * self.clean.len() + 64 {
            let clean = &self.clean;
            self.ring.retain(|(id, stamp)| clean.get(id).is_some_and(|p| p.stamp == *stamp));
        }
    }

    fn evict(&mut self) {
        while self.bytes() > self.bytes_max {
            let (id, stamp) = self.ring.pop_front().expect("clean pages are on the ring");
            let Some(page) = self.clean.get_mut(&id) else { continue };
            if page.stamp != stamp {
                continue;
            }
            if page.referenced {
                page.referenced = false;
                self.ring.push_back((id, stamp));
            } else {
                self.clean.remove(&id);
            }
        }
    }

    fn check_invariants(&self) {
        assert!(self.bytes() <= self.bytes_max);
        let live = self
            .ring
            .iter()
            .filter(|(id, stamp)| self.clean.get(id).is_some_and(|p| p.stamp == *stamp))
            .count();
        assert_eq!(live, self.clean.len(), "one live ring entry per clean page");
        assert!(self.ring.len() <= 2 * self.clean.len() + 65);
    }
}

/// Clean pages, shared by the writer and every reader thread: sharded so
/// that readers on different cores rarely meet on a lock, and each lock is
/// held for one map operation (never across I/O).
#[derive(Debug)]
pub(crate) struct CleanCache {
    shards: Vec<Mutex<Shard>>,
}

/// Shards of a cache large enough to share out (small caches keep one, so
/// their bound stays exact).
const cache_shards: usize = 16;

impl CleanCache {
    pub(crate) fn new(bytes_max: usize) -> CleanCache {
        let shards =
            if bytes_max >= 64 * cache_shards * clean_page_charge_bytes { cache_shards } else { 1 };
        let shards = (0..shards)
            .map(|_| Mutex::new(Shard { bytes_max: bytes_max / shards, ..Shard::default() }))
            .collect();
        CleanCache { shards }
    }

    fn shard(&self, id: PageId) -> std::sync::MutexGuard<'_, Shard> {
        let mut hasher = PageIdHasher::default();
        hasher.write_u64(id.0);
        let index = (hasher.finish() >> 32) as usize % self.shards.len();
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, id: PageId) -> Option<Arc<Node>> {
        self.shard(id).get(id)
    }

    pub(crate) fn insert(&self, id: PageId, node: Arc<Node>) {
        self.shard(id).insert(id, node);
    }

    pub(crate) fn forget(&self, id: PageId) {
        // Its ring entry goes stale and is dropped when the hand reaches it.
        self.shard(id).clean.remove(&id);
    }

    pub(crate) fn contains(&self, id: PageId) -> bool {
        self.shard(id).clean.contains_key(&id)
    }

    pub(crate) fn set_bytes_max(&self, bytes_max: usize) {
        let per_shard = bytes_max / self.shards.len();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.bytes_max = per_shard;
            shard.evict();
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes()).sum()
    }

    fn check_invariants(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|p| p.into_inner()).check_invariants();
        }
    }
}

/// The writer's view: its dirty pages, and the shared clean cache.
#[derive(Debug)]
pub(crate) struct PageCache {
    dirty: PageMap<Arc<Node>>,
    clean: Arc<CleanCache>,
}

impl PageCache {
    pub(crate) fn new(clean_bytes_max: usize) -> PageCache {
        PageCache { dirty: PageMap::default(), clean: Arc::new(CleanCache::new(clean_bytes_max)) }
    }

    /// The clean cache, for readers of checkpoints.
    pub(crate) fn shared(&self) -> Arc<CleanCache> {
        self.clean.clone()
    }

    pub(crate) fn set_clean_bytes_max(&mut self, clean_bytes_max: usize) {
        self.clean.set_bytes_max(clean_bytes_max);
    }

    pub(crate) fn get(&mut self, id: PageId) -> Option<Arc<Node>> {
        if !self.dirty.is_empty() {
            if let Some(node) = self.dirty.get(&id) {
                return Some(node.clone());
            }
        }
        self.clean.get(id)
    }

    /// Remembers a page just read from, or written to, the file.
    pub(crate) fn insert_clean(&mut self, id: PageId, node: Arc<Node>) {
        assert!(!self.dirty.contains_key(&id), "page {id} is dirty");
        self.clean.insert(id, node);
    }

    pub(crate) fn put_dirty(&mut self, id: PageId, node: Node) {
        self.clean.forget(id);
        self.dirty.insert(id, Arc::new(node));
    }

    pub(crate) fn take_dirty(&mut self, id: PageId) -> Option<Arc<Node>> {
        self.dirty.remove(&id)
    }

    /// Drops whatever is cached for a page that is being reused or freed.
    pub(crate) fn forget(&mut self, id: PageId) {
        self.dirty.remove(&id);
        self.clean.forget(id);
    }

    /// Hands every dirty page to the checkpoint, in page order.
    pub(crate) fn take_all_dirty(&mut self) -> BTreeMap<PageId, Arc<Node>> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    pub(crate) fn dirty_ids(&self) -> impl Iterator<Item = PageId> + '_ {
        self.dirty.keys().copied()
    }

    pub(crate) fn clean_bytes(&self) -> usize {
        self.clean.bytes()
    }

    pub(crate) fn check_invariants(&self) {
        self.clean.check_invariants();
        for id in self.dirty.keys() {
            assert!(!self.clean.contains(*id), "page {id} is dirty and clean");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreferenced_clean_page_goes_before_a_recently_used_one() {
        let mut cache = PageCache::new(2 * page_bytes);
        let node = || Arc::new(Node::Leaf(Vec::new()));
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

    #[test]
    fn forgetting_and_reinserting_keeps_the_ring_bounded_and_consistent() {
        let mut cache = PageCache::new(8 * page_bytes);
        let node = || Arc::new(Node::Leaf(Vec::new()));
        for round in 0..1000u64 {
            let id = PageId(2 + round % 13);
            cache.insert_clean(id, node());
            if round % 3 == 0 {
                cache.forget(id);
            }
            if round % 5 == 0 {
                let _ = cache.get(PageId(2 + (round * 7) % 13));
            }
            cache.check_invariants();
        }
    }

    #[test]
    fn a_large_cache_is_sharded_and_stays_within_its_bound_under_threads() {
        let bytes_max = 2048 * page_bytes;
        let cache = Arc::new(CleanCache::new(bytes_max));
        assert_eq!(cache.shards.len(), cache_shards);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..5000u64 {
                        let id = PageId(2 + (i * 7 + t) % 3000);
                        if cache.get(id).is_none() {
                            cache.insert(id, Arc::new(Node::Leaf(Vec::new())));
                        }
                        if i % 11 == 0 {
                            cache.forget(PageId(2 + i % 3000));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        cache.check_invariants();
        assert!(cache.bytes() <= bytes_max);
    }
}
