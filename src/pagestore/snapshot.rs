//! Read views of a checkpoint, and the registry of the ones alive.
//!
//! A `Snapshot` reads the tree of the last checkpoint completed before it was
//! taken: durable pages that copy-on-write never overwrites, so the writer
//! keeps inserting, removing and checkpointing while the snapshot reads. It
//! does not see the writer's uncheckpointed changes; to snapshot those, call
//! `checkpoint` first. (A Raft snapshot wants exactly this: a durable state
//! with its applied index.)
//!
//! While a snapshot of generation s lives, pages that trees ≤ s reference stay
//! pending (see `freelist`). Snapshots of one generation share a pin; the
//! registry holds weak references, so dropping the last `Snapshot` of a
//! generation is all it takes to release it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Weak};

use super::cursor::Cursor;
use super::file::PageFile;
use super::store::PageStore;
use super::{PageId, Result, StoreError};

/// Which tree a read walks, and the newest page generation it may meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TreeView {
    pub root: PageId,
    pub height: u32,
    /// Pages written after this generation cannot belong to the tree: meeting
    /// one means the page was reused under the reader, which is corruption.
    pub generation: u64,
}

#[derive(Debug)]
struct Pin {
    /// The store that took it: a snapshot is only read through its own store.
    owner: Weak<()>,
    view: TreeView,
    applied_index: u64,
    entry_count: u64,
}

/// A point-in-time read view of the page store's last checkpoint.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pin: Arc<Pin>,
}

impl Snapshot {
    /// The checkpoint generation this snapshot reads.
    pub fn generation(&self) -> u64 {
        self.pin.view.generation
    }

    /// The applied Raft index stored with that checkpoint.
    pub fn applied_index(&self) -> u64 {
        self.pin.applied_index
    }

    /// Entries in the snapshot's tree.
    pub fn len(&self) -> u64 {
        self.pin.entry_count
    }

    pub fn is_empty(&self) -> bool {
        self.pin.entry_count == 0
    }

    pub fn get<F: PageFile>(
        &self,
        store: &mut PageStore<F>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        store.view_get(self.view_for(store)?, key)
    }

    /// Entries with keys in (start, end), at most `limit` of them (0: all).
    pub fn range<F: PageFile>(
        &self,
        store: &mut PageStore<F>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let view = self.view_for(store)?;
        Cursor::new(store, view, start, end)?.collect_up_to(limit)
    }

    pub fn cursor<'a, F: PageFile>(
        &self,
        store: &'a mut PageStore<F>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Cursor<'a, F>> {
        let view = self.view_for(store)?;
        Cursor::new(store, view, start, end)
    }

    #[cfg(test)]
    pub(crate) fn view(&self) -> TreeView {
        self.pin.view
    }

    fn view_for<F: PageFile>(&self, store: &PageStore<F>) -> Result<TreeView> {
        let owner = self.pin.owner.upgrade();
        if !owner.is_some_and(|owner| Arc::ptr_eq(&owner, store.token())) {
            return Err(StoreError::SnapshotStale);
        }
        Ok(self.pin.view)
    }
}

/// The live snapshots of one store, by generation.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pins: BTreeMap<u64, Weak<Pin>>,
}

impl Registry {
    pub(crate) fn pin(
        &mut self,
        owner: &Arc<()>,
        view: TreeView,
        applied_index: u64,
        entry_count: u64,
    ) -> Snapshot {
        if let Some(pin) = self.pins.get(&view.generation).and_then(Weak::upgrade) {
            return Snapshot { pin };
        }
        let pin = Arc::new(Pin { owner: Arc::downgrade(owner), view, applied_index, entry_count });
        self.pins.insert(view.generation, Arc::downgrade(&pin));
        Snapshot { pin }
    }

    /// The generation of the oldest live snapshot, forgetting dropped ones.
    pub(crate) fn oldest(&mut self) -> Option<u64> {
        self.pins.retain(|_, pin| pin.strong_count() > 0);
        self.pins.keys().next().copied()
    }

    /// (view, entry count) of every live snapshot.
    pub(crate) fn live(&mut self) -> Vec<(TreeView, u64)> {
        self.pins
            .values()
            .filter_map(Weak::upgrade)
            .map(|pin| (pin.view, pin.entry_count))
            .collect()
    }
}
