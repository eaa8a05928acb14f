//! Page reads shared by the writer and by readers of checkpoints on other
//! threads: the verified read of a tree page and of an overflow chain, and
//! `PageSource`, what a cursor reads through (the writer's store, which sees
//! its dirty pages, or a `SharedReader`, which sees checkpointed pages only).

use std::sync::Arc;

use super::cache::CleanCache;
use super::direct::AlignedPages;
use super::file::PageRead;
use super::node::{partition_point_prefetching, Node, Value};
use super::page::{decode_node, decode_overflow, overflow_data_bytes};
use super::snapshot::TreeView;
use super::{corrupt, page_bytes, PageFile, PageId, PageStore, Result};

/// Where a cursor gets its pages.
pub trait PageSource {
    /// A tree page at `depth` (0 = root) of `view`, verified.
    fn node_at(&mut self, id: PageId, view: TreeView, depth: u32) -> Result<Arc<Node>>;
    /// A value's bytes (reading its overflow chain if it has one).
    fn read_value(&mut self, value: &Value, generation_max: u64) -> Result<Vec<u8>>;
    /// Whether `read_ahead` does anything (so a cursor lists ids only then).
    fn reads_ahead(&self) -> bool {
        false
    }
    /// A hint: the leaves `ids` (the rest of a branch's children) are about
    /// to be read in this order.
    fn read_ahead(&mut self, _ids: &[PageId]) {}
}

/// The value of `key` in the tree `view`, by one descent from the root
/// (a point read remembers no path, unlike a cursor).
pub(crate) fn get_in(
    source: &mut impl PageSource,
    view: TreeView,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    let mut id = view.root;
    let mut depth = 0;
    let leaf = loop {
        let node = source.node_at(id, view, depth)?;
        if depth + 1 == view.height {
            break node;
        }
        id = node.child(node.child_index(key));
        depth += 1;
    };
    let Node::Leaf(entries) = &*leaf else { unreachable!("the bottom level is leaves") };
    // The first entry whose key is not below `key`.
    let at = partition_point_prefetching(entries, |entry| entry.key.as_slice() < key);
    match entries.get(at) {
        Some(entry) if entry.key.as_slice() == key => {
            Ok(Some(source.read_value(&entry.value, view.generation)?))
        }
        _ => Ok(None),
    }
}

impl<F: PageFile> PageSource for &mut PageStore<F> {
    fn node_at(&mut self, id: PageId, view: TreeView, depth: u32) -> Result<Arc<Node>> {
        PageStore::node_at(self, id, view, depth)
    }

    fn read_value(&mut self, value: &Value, generation_max: u64) -> Result<Vec<u8>> {
        PageStore::read_value(self, value, generation_max)
    }
}

/// A leaf exactly at the bottom level of `view`, a branch above it.
pub(crate) fn check_kind(node: &Node, id: PageId, view: TreeView, depth: u32) -> Result<()> {
    let leaf_expected = depth + 1 == view.height;
    if matches!(node, Node::Leaf(_)) != leaf_expected {
        let reason = format!("wrong page kind at depth {depth} of a tree {} high", view.height);
        return Err(corrupt(id, reason));
    }
    Ok(())
}

/// A page id read from the file must name a data page inside it.
pub(crate) fn check_reference(id: PageId, page_count: u64) -> Result<()> {
    if id < PageId::first_data || id.0 >= page_count {
        return Err(corrupt(id, "reference to a page outside the file's data pages"));
    }
    Ok(())
}

/// Reads and verifies an overflow chain through `read`: (the value, the
/// chain's pages).
pub(crate) fn read_overflow_chain(
    mut read: impl FnMut(PageId, &mut [u8]) -> Result<()>,
    first: PageId,
    value_bytes: u32,
    generation_max: u64,
) -> Result<(Vec<u8>, Vec<PageId>)> {
    let value_bytes = value_bytes as usize;
    let mut value = Vec::with_capacity(value_bytes);
    let mut pages = Vec::with_capacity(value_bytes.div_ceil(overflow_data_bytes));
    let mut buf = vec![0u8; page_bytes];
    let mut next = Some(first);
    while let Some(page) = next {
        read(page, &mut buf)?;
        let (following, data) = decode_overflow(&buf, page, generation_max)?;
        let expected = (value_bytes - value.len()).min(overflow_data_bytes);
        if data.len() != expected
            || (following.is_some() == (value.len() + expected == value_bytes))
        {
            return Err(corrupt(
                page,
                format!("overflow page does not fit a {value_bytes}-byte value"),
            ));
        }
        value.extend_from_slice(data);
        pages.push(page);
        next = following;
    }
    Ok((value, pages))
}

/// Reads the pages of one checkpoint from any thread, through the store's
/// shared clean cache. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedReader {
    pub(crate) file: Arc<dyn PageRead>,
    pub(crate) cache: Arc<CleanCache>,
    /// The checkpoint's page count: every page it references is below it.
    pub(crate) page_count: u64,
    /// Whether leaves read go into the cache (not for one-pass scans of the
    /// whole store, which would only push out the pages requests use). Scans
    /// read leaves ahead instead.
    pub(crate) cache_leaves: bool,
    pub(crate) ahead: ReadAhead,
}

/// Leaves a scan read ahead, in one batch: with O_DIRECT each page read
/// goes to the disk, and a scan reading one leaf at a time would wait for
/// every one of them in turn.
#[derive(Debug, Default)]
pub struct ReadAhead {
    ids: Vec<PageId>,
    pages: Option<AlignedPages>,
}

/// Leaves read ahead at once (256 KiB).
const read_ahead_pages: usize = 64;

impl Clone for ReadAhead {
    /// A clone reads ahead on its own.
    fn clone(&self) -> ReadAhead {
        ReadAhead::default()
    }
}

thread_local! {
    /// Set while the thread may not wait for the disk (see `cache_only`).
    static reads_cached_only: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set when a read under `cache_only` needed a page not in memory.
    static read_missed: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `read` on this thread with checkpoint reads limited to the page
/// cache: a page not in memory fails the read (with an error of kind
/// `WouldBlock`) instead of waiting for the disk. Answers what `read`
/// answered and whether it missed; after a miss the caller runs the read
/// again where waiting is allowed (an executor core hands it to a blocking
/// thread, so that one request's disk read does not stall every other
/// request of the core).
pub fn cache_only<R>(read: impl FnOnce() -> R) -> (R, bool) {
    let before = reads_cached_only.replace(true);
    read_missed.set(false);
    let result = read();
    reads_cached_only.set(before);
    (result, read_missed.replace(false))
}

/// Under `cache_only`: the error for a page not in memory.
fn refuse_disk_read() -> Result<()> {
    if reads_cached_only.get() {
        read_missed.set(true);
        let miss = std::io::Error::new(std::io::ErrorKind::WouldBlock, "page not in the cache");
        return Err(super::StoreError::Io(miss));
    }
    Ok(())
}

impl SharedReader {
    fn read(&self, id: PageId, buf: &mut [u8]) -> Result<()> {
        check_reference(id, self.page_count)?;
        refuse_disk_read()?;
        Ok(self.file.read_page(id, buf)?)
    }

    fn node(&self, id: PageId, generation_max: u64) -> Result<Arc<Node>> {
        check_reference(id, self.page_count)?;
        if let Some(node) = self.cache.get(id) {
            return Ok(node);
        }
        refuse_disk_read()?;
        thread_local! {
            static page: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; page_bytes]);
        }
        let node = page.with(|buf| -> Result<Node> {
            let mut buf = buf.borrow_mut();
            self.read(id, &mut buf)?;
            decode_node(&buf, id, generation_max)
        })?;
        let node = Arc::new(node);
        if self.cache_leaves || !matches!(*node, Node::Leaf(_)) {
            self.cache.insert(id, node.clone());
        }
        Ok(node)
    }

    /// See `Snapshot::prefetch`.
    pub(crate) fn prefetch<K: AsRef<[u8]>>(&self, view: TreeView, keys: &[K]) {
        let mut missing: Vec<PageId> = Vec::new();
        for key in keys {
            let mut id = view.root;
            for depth in 0..view.height - 1 {
                let Ok(node) = self.node(id, view.generation) else { return };
                if check_kind(&node, id, view, depth).is_err() {
                    return;
                }
                id = node.child(node.child_index(key.as_ref()));
            }
            if check_reference(id, self.page_count).is_ok() && self.cache.get(id).is_none() {
                missing.push(id);
            }
        }
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        let mut pages = AlignedPages::new(missing.len().min(read_ahead_pages));
        for ids in missing.chunks(read_ahead_pages) {
            if self.file.read_pages(ids, &mut pages).is_err() {
                return;
            }
            for (i, id) in ids.iter().enumerate() {
                match decode_node(pages.page(i), *id, view.generation) {
                    Ok(node @ Node::Leaf(_)) => self.cache.insert(*id, Arc::new(node)),
                    _ => return,
                }
            }
        }
    }
}

impl PageSource for SharedReader {
    fn node_at(&mut self, id: PageId, view: TreeView, depth: u32) -> Result<Arc<Node>> {
        let ahead = &self.ahead;
        let node = match (ahead.ids.iter().position(|read| *read == id), &ahead.pages) {
            (Some(at), Some(pages)) => Arc::new(decode_node(pages.page(at), id, view.generation)?),
            _ => self.node(id, view.generation)?,
        };
        check_kind(&node, id, view, depth)?;
        Ok(node)
    }

    fn reads_ahead(&self) -> bool {
        !self.cache_leaves
    }

    fn read_ahead(&mut self, ids: &[PageId]) {
        if self.cache_leaves || ids.len() < 2 || self.ahead.ids.contains(&ids[0]) {
            return;
        }
        if reads_cached_only.get() {
            return; // a hint: the read of the first leaf fails instead
        }
        let ids = &ids[..ids.len().min(read_ahead_pages)];
        let ahead = &mut self.ahead;
        ahead.ids.clear();
        if ids.iter().any(|id| check_reference(*id, self.page_count).is_err()) {
            return; // the read of the bad one reports it
        }
        let pages = ahead.pages.get_or_insert_with(|| AlignedPages::new(read_ahead_pages));
        // A failure is not reported here: reading the page itself will.
        if self.file.read_pages(ids, pages).is_ok() {
            ahead.ids.extend_from_slice(ids);
        }
    }

    fn read_value(&mut self, value: &Value, generation_max: u64) -> Result<Vec<u8>> {
        match value {
            Value::Inline(bytes) => Ok(bytes.to_vec()),
            Value::Overflow { first, value_bytes } => {
                let read = |id, buf: &mut [u8]| self.read(id, buf);
                Ok(read_overflow_chain(read, *first, *value_bytes, generation_max)?.0)
            }
        }
    }
}
