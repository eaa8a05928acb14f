//! The event log watches read: the recent applied batches, shared by the
//! log driver (which records them while any watcher exists) and every
//! core's hub.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::mvcc::HistoryChange;
use crate::types::KeyValue;

/// Events the log keeps (older batches are dropped; their watchers read
/// history instead).
const log_events_max: usize = 65_536;

/// One applied batch's changes: (revision, key, version; None for a delete).
pub struct Batch {
    first: i64,
    last: i64,
    pub(super) changes: Vec<(i64, Bytes, Option<KeyValue>)>,
}

struct LogState {
    batches: VecDeque<Arc<Batch>>,
    events: usize,
    /// Every revision from `covered_from` to `last` is in `batches`.
    covered_from: i64,
    last: i64,
}

/// Recent batches, shared by the log driver (which records them while any
/// watcher exists) and every core's hub.
pub struct WatchLog {
    state: Mutex<LogState>,
    /// `--experimental-watch-progress-notify-interval`.
    pub(super) progress_interval: Duration,
    /// Watchers per core.
    pub(super) watchers: Vec<AtomicUsize>,
    pub(super) wakers: Vec<async_channel::Sender<()>>,
    pub(super) woken: Vec<Mutex<Option<async_channel::Receiver<()>>>>,
}

impl WatchLog {
    pub fn new(cores: usize, progress_interval: Duration) -> WatchLog {
        let (wakers, woken) = (0..cores)
            .map(|_| {
                let (tx, rx) = async_channel::bounded(1);
                (tx, Mutex::new(Some(rx)))
            })
            .unzip();
        WatchLog {
            progress_interval,
            state: Mutex::new(LogState {
                batches: VecDeque::new(),
                events: 0,
                covered_from: i64::MAX,
                last: 0,
            }),
            watchers: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            wakers,
            woken,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn any_watchers(&self) -> bool {
        self.watchers.iter().any(|n| n.load(Ordering::SeqCst) > 0)
    }

    /// A batch's changes, for `record` once the batch is published (None
    /// while nobody watches, or if the batch changed nothing).
    pub fn prepare(&self, changes: &[HistoryChange]) -> Option<Arc<Batch>> {
        if !self.any_watchers() {
            let mut state = self.state();
            if !state.batches.is_empty() {
                state.batches.clear();
                state.events = 0;
                state.covered_from = i64::MAX;
            }
            return None;
        }
        let changes: Vec<(i64, Bytes, Option<KeyValue>)> = changes
            .iter()
            .filter_map(|change| match change {
                HistoryChange::Version { key, revision, kv } => {
                    Some((*revision, key.clone(), kv.clone()))
                }
                HistoryChange::Compact(_)
                | HistoryChange::Lease { .. }
                | HistoryChange::LeaseClock(_) => None,
            })
            .collect();
        let (first, last) = (changes.first()?.0, changes.last()?.0);
        Some(Arc::new(Batch { first, last, changes }))
    }

    /// Records a published batch and wakes the cores with watchers.
    pub fn record(&self, batch: Arc<Batch>) {
        {
            let mut state = self.state();
            if state.batches.is_empty() || state.last + 1 != batch.first {
                // A gap (batches went unrecorded while nobody watched).
                state.batches.clear();
                state.events = 0;
                state.covered_from = batch.first;
            }
            state.events += batch.changes.len();
            state.last = batch.last;
            state.batches.push_back(batch);
            while state.events > log_events_max && state.batches.len() > 1 {
                let dropped = state.batches.pop_front().expect("more than one");
                state.events -= dropped.changes.len();
                state.covered_from = dropped.last + 1;
            }
        }
        for (core, waker) in self.wakers.iter().enumerate() {
            if self.watchers[core].load(Ordering::SeqCst) > 0 {
                let _ = waker.try_send(());
            }
        }
    }

    /// The batches holding revisions from `from` on (from as far back as
    /// the log goes, if not that far).
    pub(super) fn view(&self, from: i64) -> LogView {
        let state = self.state();
        if state.batches.is_empty() {
            return LogView { batches: Vec::new(), covered_from: i64::MAX, last: 0 };
        }
        // Batches are in revision order: skip to the first that matters.
        let first = state.batches.partition_point(|b| b.last < from);
        let batches = state.batches.range(first..).cloned().collect();
        LogView { batches, covered_from: state.covered_from, last: state.last }
    }
}

/// The part of the log a round of deliveries reads.
pub(super) struct LogView {
    batches: Vec<Arc<Batch>>,
    covered_from: i64,
    last: i64,
}

impl LogView {
    /// The batches with revisions from `from` on, and the newest revision,
    /// if the view holds every revision from `from` on.
    pub(super) fn from(&self, from: i64) -> Option<(&[Arc<Batch>], i64)> {
        // The log holds every revision from `covered_from` to `last`, and
        // the view every batch from the round's oldest position on.
        if from < self.covered_from {
            return None;
        }
        let first = self.batches.partition_point(|b| b.last < from);
        Some((&self.batches[first..], self.last))
    }
}
