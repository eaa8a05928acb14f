//! A core's watches: each one's state, and the index that finds them by
//! (connection, watch id), by key (synced one-key watches) and as ranges.

use std::collections::HashMap;

use bytes::Bytes;

use super::super::outbox::Outbox;
use crate::mvcc::span::Span;

/// One watch of one connection.
pub(super) struct Watcher {
    pub(super) connection: u64,
    pub(super) watch_id: i64,
    /// The create request's id: every response of the watch carries it.
    pub(super) request_id: u64,
    pub(super) filter: Filter,
    /// `filter`'s hash, computed once (`Templates`).
    pub(super) filter_hash: u64,
    /// The first revision not yet sent.
    pub(super) next: i64,
    pub(super) out: Outbox,
    /// Reading history: the log no longer held `next` when it was last read.
    pub(super) behind: bool,
    /// In the synced group: sent everything through `Watchers::synced_upto`
    /// (`next` is then not kept up to date).
    pub(super) synced: bool,
    pub(super) progress_notify: bool,
    /// Nothing was sent to it since the last progress tick.
    pub(super) quiet: bool,
}

/// A core's watchers, in slots (ids are slot numbers, reused).
///
/// As etcd does, watchers that have been sent everything up to the log's
/// position are "synced": indexed by key (one-key watches) or listed (range
/// watches), so a round of deliveries visits only those whose keys changed.
/// The others ("unsynced": new, slow, or reading history) are visited one
/// by one until they catch up and join.
#[derive(Default)]
pub(super) struct Watchers {
    pub(super) slots: Vec<Option<Watcher>>,
    pub(super) free: Vec<usize>,
    /// (connection, watch id) → slot: a create or cancel finds its watch
    /// without visiting the core's others.
    pub(super) by_id: HashMap<(u64, i64), usize>,
    pub(super) by_key: HashMap<Bytes, Vec<usize>>,
    pub(super) ranges: Vec<usize>,
    /// Unsynced watchers (ids of removed or synced ones are skipped).
    pub(super) unsynced: Vec<usize>,
    pub(super) synced_count: usize,
    /// Every synced watcher has been sent everything through this revision.
    pub(super) synced_upto: i64,
}

impl Watchers {
    pub(super) fn insert(&mut self, watcher: Watcher) -> usize {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        watcher.out.count_watcher(true);
        self.by_id.insert((watcher.connection, watcher.watch_id), id);
        self.slots[id] = Some(watcher);
        self.unsynced.push(id);
        id
    }

    pub(super) fn find(&self, connection: u64, watch_id: i64) -> Option<usize> {
        self.by_id.get(&(connection, watch_id)).copied()
    }

    pub(super) fn remove(&mut self, id: usize) -> Option<Watcher> {
        if self.slots.get(id).is_none_or(|slot| slot.is_none()) {
            return None;
        }
        self.unindex(id);
        self.free.push(id);
        let watcher = self.slots[id].take()?;
        self.by_id.remove(&(watcher.connection, watcher.watch_id));
        watcher.out.count_watcher(false);
        Some(watcher)
    }

    /// Takes a synced watcher out of the index (it keeps its slot).
    pub(super) fn unindex(&mut self, id: usize) {
        let Some(watcher) = self.slots[id].as_mut() else { return };
        if !watcher.synced {
            return;
        }
        watcher.synced = false;
        self.synced_count -= 1;
        match &watcher.filter.span {
            Span::Single(key) => {
                if let Some(ids) = self.by_key.get_mut(key) {
                    ids.retain(|other| *other != id);
                    if ids.is_empty() {
                        self.by_key.remove(key);
                    }
                }
            }
            Span::Interval(..) => self.ranges.retain(|other| *other != id),
        }
    }

    /// Moves a caught-up watcher into the synced group.
    pub(super) fn sync(&mut self, id: usize) {
        let Some(watcher) = self.slots[id].as_mut() else { return };
        if watcher.synced {
            return;
        }
        if self.synced_count == 0 {
            self.synced_upto = watcher.next - 1;
        }
        debug_assert_eq!(watcher.next, self.synced_upto + 1);
        watcher.synced = true;
        self.synced_count += 1;
        match &watcher.filter.span {
            Span::Single(key) => self.by_key.entry(key.clone()).or_default().push(id),
            Span::Interval(..) => self.ranges.push(id),
        }
    }

    /// Moves a synced watcher out, to go on from `next` by itself.
    pub(super) fn unsync(&mut self, id: usize, next: i64) {
        self.unindex(id);
        if let Some(watcher) = self.slots[id].as_mut() {
            watcher.next = next;
            self.unsynced.push(id);
        }
    }

    /// The first revision a watcher has not been sent.
    pub(super) fn next_of(&self, watcher: &Watcher) -> i64 {
        if watcher.synced {
            self.synced_upto + 1
        } else {
            watcher.next
        }
    }
}

/// What a watch's responses depend on, besides its position.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Filter {
    pub(super) span: Span,
    pub(super) no_put: bool,
    pub(super) no_delete: bool,
    pub(super) prev_kv: bool,
    pub(super) fragment: bool,
}
