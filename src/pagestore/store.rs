//! `PageStore`: one writer's copy-on-write B+tree over a `PageFile`.
//!
//! This file owns the store's state, opening and creating, verified page
//! reads, page allocation and release, and `checkpoint`. The tree operations
//! live in `btree`, ordered reads in `cursor`, the checks in `check`.
//!
//! State between checkpoints:
//!
//! ```text
//!   durable (meta g, on disk)         working tree (generation g + 1)
//!   root ─► pages of tree g  ◄──shared── root' ─► fresh pages (dirty in cache,
//!                                                  overflow pages already written)
//! ```
//!
//! Invariants: the working tree shares only clean pages with tree g; every
//! fresh page is reachable from the working tree; nothing tree g or a live
//! snapshot can read is ever written (`freelist` decides when a page is free).

use std::sync::Arc;

use super::cache::PageCache;
use super::file::{read_raw, PageFile, PageRead};
use super::freelist::{chain_pages_for, read_chain, write_chain, FreeSpace};
use super::meta::{self, Meta};
use super::node::Node;
use super::page::{decode_node, encode_node};
use super::read::SharedReader;
use super::snapshot::{Registry, Snapshot, TreeView};
use super::{cache_bytes_default, corrupt, page_bytes, PageId, Result, StoreError};

/// The persistent page store. Single writer, synchronous; see the module docs
/// of `pagestore` for the file and `docs/formats/pagestore.md` for the bytes.
#[derive(Debug)]
pub struct PageStore<F: PageFile> {
    pub(crate) file: F,
    pub(crate) cache: PageCache,
    pub(crate) space: FreeSpace,
    /// The last completed checkpoint.
    pub(crate) durable: Meta,
    /// The free-list pages of `durable`; the next checkpoint drops them.
    pub(crate) free_list_pages: Vec<PageId>,
    pub(crate) root: PageId,
    pub(crate) height: u32,
    pub(crate) entry_count: u64,
    pub(crate) snapshots: Registry,
    /// Identifies this store to its snapshots.
    token: Arc<()>,
    /// The file's read side, for snapshots read on other threads.
    shared_file: Arc<dyn PageRead>,
    /// Set when a write failed half way: the working tree may be inconsistent.
    pub(crate) poisoned: bool,
}

impl<F: PageFile> PageStore<F> {
    /// Makes an empty store (checkpoint generation 1, an empty root leaf) in an
    /// empty file, durably, with the default cache bound.
    pub fn create(mut file: F) -> Result<PageStore<F>> {
        if file.page_count() != 0 {
            return Err(StoreError::NotEmpty { page_count: file.page_count() });
        }
        let root = PageId::first_data;
        let mut buf = vec![0u8; page_bytes];
        encode_node(&Node::Leaf(Vec::new()), root, 1, &mut buf);
        file.write_page(root, &buf)?;
        // Page 0 stays invalid until generation 2 is written there.
        file.write_page(PageId(0), &vec![0u8; page_bytes])?;
        file.sync()?;
        let meta = Meta {
            generation: 1,
            root,
            height: 1,
            free_list_head: None,
            free_list_pages: 0,
            free_ids: 0,
            page_count: root.0 + 1,
            applied_index: 0,
            entry_count: 0,
        };
        file.write_page(meta.slot(), &meta.encode())?;
        file.sync()?;
        PageStore::open(file, cache_bytes_default)
    }

    /// Opens the last checkpoint in `file`: the valid meta page with the higher
    /// generation. Clean pages are cached up to `cache_bytes`.
    pub fn open(file: F, cache_bytes: usize) -> Result<PageStore<F>> {
        let meta = meta::choose(&read_meta_page(&file, 0)?, &read_meta_page(&file, 1)?)?;
        let (free_list_pages, free) = read_chain(&file, &meta)?;
        if free.contains(&meta.root) {
            return Err(corrupt(meta.root, "the root page is on the free list"));
        }
        let mut store = PageStore {
            space: FreeSpace::opened(free, meta.generation + 1, meta.page_count),
            cache: PageCache::new(cache_bytes),
            free_list_pages,
            root: meta.root,
            height: meta.height,
            entry_count: meta.entry_count,
            durable: meta,
            shared_file: file.shared_reader(),
            file,
            snapshots: Registry::default(),
            token: Arc::new(()),
            poisoned: false,
        };
        let view = store.working_view();
        store.node_at(view.root, view, 0)?;
        Ok(store)
    }

    /// Makes the working tree durable as checkpoint generation + 1, recording
    /// `applied_index` with it. The steps, and why a crash anywhere leaves
    /// either this checkpoint or the previous one, are in
    /// docs/formats/pagestore.md.
    pub fn checkpoint(&mut self, applied_index: u64) -> Result<()> {
        self.ensure_usable()?;
        let result = self.write_checkpoint(applied_index);
        self.poisoned |= result.is_err();
        result
    }

    fn write_checkpoint(&mut self, applied_index: u64) -> Result<()> {
        let generation = self.working_generation();
        // 1. The previous free list is not part of the new checkpoint.
        for page in std::mem::take(&mut self.free_list_pages) {
            self.release(page);
        }
        // 2. Pages for the new list come off the list itself, so count first.
        let listed = (self.space.free_count() + self.space.pending_count()) as usize;
        let chain: Vec<PageId> = (0..chain_pages_for(listed)).map(|_| self.allocate()).collect();
        let free_ids = self.space.persisted();
        // 3. Every new page, none of which the durable checkpoint references.
        let dirty = self.cache.take_all_dirty();
        let mut buf = vec![0u8; page_bytes];
        for (id, node) in &dirty {
            encode_node(node, *id, generation, &mut buf);
            self.file.write_page(*id, &buf)?;
        }
        write_chain(&mut self.file, &chain, &free_ids, generation)?;
        // 4. They are durable before any meta names them.
        self.file.sync()?;
        let meta = Meta {
            generation,
            root: self.root,
            height: self.height,
            free_list_head: chain.first().copied(),
            free_list_pages: chain.len() as u64,
            free_ids: free_ids.len() as u64,
            page_count: self.space.page_count(),
            applied_index,
            entry_count: self.entry_count,
        };
        // 5. The meta goes to the slot the previous checkpoint does not use.
        assert_ne!(meta.slot(), self.durable.slot());
        self.file.write_page(meta.slot(), &meta.encode())?;
        self.file.sync()?;
        // 6. Checkpoint `generation` is durable.
        self.durable = meta;
        self.free_list_pages = chain;
        self.space.end_interval();
        for (id, node) in dirty {
            self.cache.insert_clean(id, node);
        }
        self.reclaim();
        Ok(())
    }

    /// A read view of the last checkpoint (see `Snapshot`).
    pub fn snapshot(&mut self) -> Snapshot {
        let view = TreeView {
            root: self.durable.root,
            height: self.durable.height,
            generation: self.durable.generation,
        };
        let durable = &self.durable;
        let reader = || SharedReader {
            file: self.shared_file.clone(),
            cache: self.cache.shared(),
            page_count: durable.page_count,
            cache_leaves: true,
            ahead: Default::default(),
        };
        self.snapshots.pin(&self.token, view, durable.applied_index, durable.entry_count, reader)
    }

    /// The applied Raft index of the last checkpoint.
    pub fn applied_index(&self) -> u64 {
        self.durable.applied_index
    }

    /// The generation of the last checkpoint (1 right after `create`).
    pub fn generation(&self) -> u64 {
        self.durable.generation
    }

    /// Entries in the working tree.
    pub fn len(&self) -> u64 {
        self.entry_count
    }

    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// Pages allocated in the file, meta pages included.
    pub fn page_count(&self) -> u64 {
        self.space.page_count()
    }

    /// Pages that may be reused now.
    pub fn free_page_count(&self) -> u64 {
        self.space.free_count()
    }

    /// Pages dropped from the tree that wait for a checkpoint or a snapshot.
    pub fn pending_page_count(&self) -> u64 {
        self.space.pending_count()
    }

    /// Clean pages kept in memory, in bytes (dirty pages are not counted).
    pub fn cache_bytes(&self) -> usize {
        self.cache.clean_bytes()
    }

    pub fn set_cache_bytes(&mut self, cache_bytes: usize) {
        self.cache.set_clean_bytes_max(cache_bytes);
    }

    pub fn file(&self) -> &F {
        &self.file
    }

    /// Gives the file back; unsynced work since the last checkpoint is dropped.
    pub fn into_file(self) -> F {
        self.file
    }

    #[cfg(test)]
    pub(crate) fn file_mut(&mut self) -> &mut F {
        &mut self.file
    }

    pub(crate) fn ensure_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    pub(crate) fn working_generation(&self) -> u64 {
        self.durable.generation + 1
    }

    pub(crate) fn working_view(&self) -> TreeView {
        TreeView { root: self.root, height: self.height, generation: self.working_generation() }
    }

    /// A tree page, from the cache or verified from the file.
    pub(crate) fn node(&mut self, id: PageId, generation_max: u64) -> Result<Arc<Node>> {
        self.check_reference(id)?;
        if let Some(node) = self.cache.get(id) {
            return Ok(node);
        }
        let mut buf = vec![0u8; page_bytes];
        read_raw(&self.file, id, &mut buf)?;
        let node = Arc::new(decode_node(&buf, id, generation_max)?);
        self.cache.insert_clean(id, node.clone());
        Ok(node)
    }

    /// A page id read from the file must name a data page inside it: a
    /// damaged (but checksum-valid) reference is an error, not a panic later.
    pub(crate) fn check_reference(&self, id: PageId) -> Result<()> {
        super::read::check_reference(id, self.space.page_count())
    }

    /// A tree page at `depth` (0 = root) of `view`: a leaf exactly at the
    /// bottom level, a branch above it.
    pub(crate) fn node_at(&mut self, id: PageId, view: TreeView, depth: u32) -> Result<Arc<Node>> {
        let node = self.node(id, view.generation)?;
        super::read::check_kind(&node, id, view, depth)?;
        Ok(node)
    }

    /// The content of a working-tree page, owned, to be changed and placed.
    pub(crate) fn take_for_write(&mut self, id: PageId) -> Result<Node> {
        if let Some(node) = self.cache.take_dirty(id) {
            return Ok(Arc::try_unwrap(node).unwrap_or_else(|node| (*node).clone()));
        }
        let generation = self.working_generation();
        Ok((*self.node(id, generation)?).clone())
    }

    /// Writes `node` as the new content of page `old`: in place if `old` is
    /// fresh (no checkpoint or snapshot has seen it), else to a new page.
    pub(crate) fn place(&mut self, old: PageId, node: Node) -> PageId {
        if self.space.is_fresh(old) {
            self.cache.put_dirty(old, node);
            return old;
        }
        self.release(old);
        self.place_new(node)
    }

    pub(crate) fn place_new(&mut self, node: Node) -> PageId {
        let id = self.allocate();
        self.cache.put_dirty(id, node);
        id
    }

    pub(crate) fn allocate(&mut self) -> PageId {
        if self.space.free_count() == 0 {
            self.reclaim();
        }
        let id = self.space.allocate();
        // A reused page may still be cached with what it held before.
        self.cache.forget(id);
        id
    }

    /// Drops a page from the working tree (see `freelist` for when it is free).
    pub(crate) fn release(&mut self, id: PageId) {
        if self.space.release(id, self.working_generation()) {
            self.cache.forget(id);
        }
    }

    /// Frees pending pages that neither the durable checkpoint nor a live
    /// snapshot can read (see `freelist`).
    pub(crate) fn reclaim(&mut self) {
        let durable = self.durable.generation;
        let horizon = self.snapshots.oldest().map_or(durable, |oldest| oldest.min(durable));
        self.space.reclaim(horizon);
    }
}

/// A meta page's bytes. A page that cannot be read (past the end of a file
/// cut short, or an I/O error such as a bad sector) reads as zeros, an
/// invalid meta, so the store still opens from the other one; if both fail,
/// opening names both pages.
fn read_meta_page(file: &impl PageFile, id: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; page_bytes];
    match read_raw(file, PageId(id), &mut buf) {
        Ok(()) => Ok(buf),
        Err(_) => Ok(vec![0u8; page_bytes]),
    }
}
