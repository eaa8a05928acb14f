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
use super::read::SharedReader;
use super::{PageId, Result, StoreError};

/// Which tree a read walks, and the newest page generation it may meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeView {
    pub root: PageId,
    pub height: u32,
    /// Pages written after this generation cannot belong to the tree: meeting
    /// one means the page was reused under the reader, which is corruption.
    pub generation: u64,
}

#[derive(Debug)]
struct Pin {
    /// The store that took it: once that store is gone (or reopened), nothing
    /// keeps the pages from reuse, so the snapshot refuses to read.
    owner: Weak<()>,
    view: TreeView,
    applied_index: u64,
    entry_count: u64,
    reader: SharedReader,
}

/// A point-in-time read view of the page store's last checkpoint. Cheap to
/// clone, and readable from any thread while the writer goes on.
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

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.pin.owner.upgrade().is_none() {
            return Err(StoreError::SnapshotStale);
        }
        super::read::get_in(&mut self.pin.reader.clone(), self.pin.view, key)
    }

    /// Reads into the page cache, in batches, the leaves that point reads of
    /// `keys` will need, so that those reads find them there instead of
    /// waiting on the disk one after another. Best effort: a page that cannot
    /// be read is left for the read itself to report.
    pub fn prefetch<K: AsRef<[u8]>>(&self, keys: &[K]) {
        if self.pin.owner.upgrade().is_some() {
            self.pin.reader.prefetch(self.pin.view, keys);
        }
    }

    /// Entries with keys in (start, end), at most `limit` of them (0: all).
    pub fn range(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.cursor(start, end)?.collect_up_to(limit)
    }

    /// A cursor over the entries with keys in (start, end).
    pub fn cursor(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Cursor<SharedReader>> {
        if self.pin.owner.upgrade().is_none() {
            return Err(StoreError::SnapshotStale);
        }
        Cursor::new(self.pin.reader.clone(), self.pin.view, start, end)
    }

    /// As `cursor`, for a one-pass scan of much of the store: the leaves it
    /// reads are not kept in the page cache.
    pub fn scan_cursor(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Cursor<SharedReader>> {
        if self.pin.owner.upgrade().is_none() {
            return Err(StoreError::SnapshotStale);
        }
        let reader = SharedReader { cache_leaves: false, ..self.pin.reader.clone() };
        Cursor::new(reader, self.pin.view, start, end)
    }

    #[cfg(test)]
    pub(crate) fn view(&self) -> TreeView {
        self.pin.view
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
        reader: impl FnOnce() -> SharedReader,
    ) -> Snapshot {
        if let Some(pin) = self.pins.get(&view.generation).and_then(Weak::upgrade) {
            return Snapshot { pin };
        }
        let owner = Arc::downgrade(owner);
        let pin = Arc::new(Pin { owner, view, applied_index, entry_count, reader: reader() });
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
