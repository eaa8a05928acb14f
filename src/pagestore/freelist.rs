//! Which pages may be written, and when a page dropped by copy-on-write becomes
//! one of them.
//!
//! A page dropped from the working tree (generation W = durable + 1) is:
//! - *fresh* (allocated since the last checkpoint): no checkpoint and no
//!   snapshot has seen it, so it is free at once;
//! - otherwise *pending under W*: the durable checkpoint W − 1, and snapshots
//!   of generation < W, may still read it. It becomes free once checkpoint W
//!   is durable and no live snapshot has a generation below W (`reclaim`).
//!   The tree of W − 1 is then no longer whole, though its meta page stays
//!   valid until checkpoint W + 1 overwrites the slot; opening falls back to
//!   it only if meta W rots, and then the generation stamped on every page
//!   reports the reused pages as corrupt (as bbolt and LMDB, which also
//!   reuse a page one commit after it is dropped).
//!
//! The persisted free list (a chain of free-list pages named by the meta) holds
//! every free and pending page. Opening checkpoint G puts them all back as
//! pending under G + 1, free once the next checkpoint is durable: the meta of
//! G may have reached the disk in a checkpoint whose final sync failed, so the
//! older meta, which may reference them, is kept openable until a sync is
//! known to have succeeded.
//!
//! Invariant: free, pending and fresh are disjoint, and all ids lie in
//! `2..page_count`.

use std::collections::{BTreeMap, BTreeSet};

use super::file::{read_raw, PageFile};
use super::meta::Meta;
use super::page::{decode_free_list, encode_free_list, free_list_ids_per_page};
use super::{corrupt, page_bytes, PageId, Result};

#[derive(Debug)]
pub(crate) struct FreeSpace {
    /// Pages that may be written now; the lowest is used first so the file
    /// stays dense.
    free: BTreeSet<PageId>,
    /// Generation W → pages the tree of W no longer references.
    pending: BTreeMap<u64, Vec<PageId>>,
    /// Pages allocated since the last checkpoint and still in use.
    fresh: BTreeSet<PageId>,
    /// Pages ever allocated: the next page past the end of the file.
    page_count: u64,
}

impl FreeSpace {
    pub(crate) fn new(free: BTreeSet<PageId>, page_count: u64) -> FreeSpace {
        assert!(free.iter().all(|id| *id >= PageId::first_data && id.0 < page_count));
        FreeSpace { free, pending: BTreeMap::new(), fresh: BTreeSet::new(), page_count }
    }

    /// The space of a checkpoint as opened: its persisted free list is
    /// pending under `generation`, the working one (see the module comment).
    pub(crate) fn opened(listed: BTreeSet<PageId>, generation: u64, page_count: u64) -> FreeSpace {
        let mut space = FreeSpace::new(BTreeSet::new(), page_count);
        assert!(listed.iter().all(|id| *id >= PageId::first_data && id.0 < page_count));
        if !listed.is_empty() {
            space.pending.insert(generation, listed.into_iter().collect());
        }
        space
    }

    /// A page to write: the lowest free one, or a new one at the end.
    pub(crate) fn allocate(&mut self) -> PageId {
        let id = self.free.pop_first().unwrap_or_else(|| {
            self.page_count += 1;
            PageId(self.page_count - 1)
        });
        assert!(self.fresh.insert(id), "page {id} allocated twice");
        id
    }

    /// Drops a page from the working tree of generation `working_generation`.
    /// Returns whether it is free at once (it was fresh).
    pub(crate) fn release(&mut self, id: PageId, working_generation: u64) -> bool {
        assert!(id >= PageId::first_data && id.0 < self.page_count, "release of page {id}");
        if self.fresh.remove(&id) {
            assert!(self.free.insert(id), "page {id} freed twice");
            return true;
        }
        self.pending.entry(working_generation).or_default().push(id);
        false
    }

    pub(crate) fn is_fresh(&self, id: PageId) -> bool {
        self.fresh.contains(&id)
    }

    /// Frees the pages pending under every generation up to `horizon`: the
    /// durable generation, or the oldest live snapshot's if lower.
    pub(crate) fn reclaim(&mut self, horizon: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > horizon {
                break;
            }
            for id in entry.remove() {
                assert!(self.free.insert(id), "page {id} freed twice");
            }
        }
    }

    /// A checkpoint made every fresh page durable.
    pub(crate) fn end_interval(&mut self) {
        self.fresh.clear();
    }

    /// Every page the persisted free list must name, ascending.
    pub(crate) fn persisted(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self.free.iter().copied().collect();
        ids.extend(self.pending.values().flatten().copied());
        ids.sort_unstable();
        ids
    }

    pub(crate) fn free_count(&self) -> u64 {
        self.free.len() as u64
    }

    pub(crate) fn pending_count(&self) -> u64 {
        self.pending.values().map(|ids| ids.len() as u64).sum()
    }

    pub(crate) fn page_count(&self) -> u64 {
        self.page_count
    }

    pub(crate) fn free_ids(&self) -> impl Iterator<Item = PageId> + '_ {
        self.free.iter().copied()
    }

    pub(crate) fn pending_ids(&self) -> impl Iterator<Item = (u64, PageId)> + '_ {
        self.pending.iter().flat_map(|(generation, ids)| ids.iter().map(|id| (*generation, *id)))
    }

    pub(crate) fn fresh_ids(&self) -> impl Iterator<Item = PageId> + '_ {
        self.fresh.iter().copied()
    }
}

/// Free-list pages needed to list `ids` free pages.
pub(crate) fn chain_pages_for(ids: usize) -> usize {
    ids.div_ceil(free_list_ids_per_page)
}

/// Writes `ids` across the chain `pages` (which may have room to spare: pages
/// taken for the chain come off the list it describes).
pub(crate) fn write_chain(
    file: &mut impl PageFile,
    pages: &[PageId],
    ids: &[PageId],
    generation: u64,
) -> Result<()> {
    assert!(ids.len() <= pages.len() * free_list_ids_per_page);
    let mut buf = vec![0u8; page_bytes];
    let mut chunks = ids.chunks(free_list_ids_per_page);
    for (i, page) in pages.iter().enumerate() {
        let chunk = chunks.next().unwrap_or(&[]);
        encode_free_list(&mut buf, *page, generation, pages.get(i + 1).copied(), chunk);
        file.write_page(*page, &buf)?;
    }
    Ok(())
}

/// Reads and verifies the free list of checkpoint `meta`: (its chain pages,
/// the free ids it lists).
pub(crate) fn read_chain(
    file: &impl PageFile,
    meta: &Meta,
) -> Result<(Vec<PageId>, BTreeSet<PageId>)> {
    let mut chain = Vec::new();
    let mut ids = BTreeSet::new();
    let mut buf = vec![0u8; page_bytes];
    let mut next = meta.free_list_head;
    while let Some(page) = next {
        if chain.len() as u64 >= meta.free_list_pages || chain.contains(&page) {
            return Err(corrupt(page, "free-list chain longer than the meta says"));
        }
        if page < PageId::first_data || page.0 >= meta.page_count {
            return Err(corrupt(page, "free-list chain leaves the file"));
        }
        read_raw(file, page, &mut buf)?;
        let (following, listed) = decode_free_list(&buf, page, meta.generation)?;
        for id in listed {
            if id < PageId::first_data || id.0 >= meta.page_count || !ids.insert(id) {
                return Err(corrupt(page, format!("free list names page {id} badly")));
            }
        }
        chain.push(page);
        next = following;
    }
    let overlap = chain.iter().find(|page| ids.contains(page));
    if let Some(page) = overlap {
        return Err(corrupt(*page, "free-list page lists itself as free"));
    }
    if chain.len() as u64 != meta.free_list_pages || ids.len() as u64 != meta.free_ids {
        let at = chain.last().copied().unwrap_or(PageId(meta.generation % 2));
        return Err(corrupt(at, "free list is shorter than the meta says"));
    }
    Ok((chain, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_pages_free_at_once_and_others_wait_for_the_horizon() {
        let mut space = FreeSpace::new(BTreeSet::new(), 2);
        let a = space.allocate();
        let b = space.allocate();
        assert_eq!((a, b, space.page_count()), (PageId(2), PageId(3), 4));
        assert!(space.release(a, 5));
        space.end_interval();
        assert!(!space.release(b, 6));
        assert_eq!(space.persisted(), vec![a, b]);
        space.reclaim(5);
        assert_eq!((space.free_count(), space.pending_count()), (1, 1));
        space.reclaim(6);
        assert_eq!((space.free_count(), space.pending_count()), (2, 0));
        assert_eq!(space.allocate(), a);
    }

    #[test]
    fn chain_round_trip() {
        let mut file = crate::pagestore::MemPageFile::new();
        let ids: Vec<PageId> = (10..1200).map(PageId).collect();
        let pages = [PageId(2), PageId(3), PageId(4)];
        assert_eq!(chain_pages_for(ids.len()), 3);
        write_chain(&mut file, &pages, &ids, 4).unwrap();
        let meta = Meta {
            generation: 4,
            root: PageId(5),
            height: 1,
            free_list_head: Some(PageId(2)),
            free_list_pages: 3,
            free_ids: ids.len() as u64,
            page_count: 1200,
            applied_index: 0,
            entry_count: 0,
        };
        let (chain, listed) = read_chain(&file, &meta).unwrap();
        assert_eq!(chain, pages.to_vec());
        assert_eq!(listed.into_iter().collect::<Vec<_>>(), ids);
    }
}
