//! Loading a checkpoint's whole history into memory (`PagedView::load`).

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::super::{Importer, PreparedKey, Preparer, Version};
use super::*;

impl PagedView {
    /// The checkpoint's history as an in-memory store (checked as a
    /// snapshot import is), on any thread: a member that starts serves from
    /// the pages while one loads them. Two threads each read half of the
    /// version log (by revision, leaves bypassing the page cache); deletes
    /// take their keys from the puts before them; the threads sort their
    /// halves by key, newest first; then one merges the halves, checks each
    /// key and builds its versions while this one puts the keys into the map.
    pub fn load(&self) -> Result<Store> {
        let view = self;
        let totals = view.totals;
        let mut importer = Importer::new(totals.revision, totals.compact_revision).map_err(bad)?;
        let leases = view.leases()?;
        for (id, lease) in leases.iter() {
            importer.add_lease(id, lease.ttl, lease.expiry_ms).map_err(bad)?;
        }
        importer.set_lease_clock(leases.clock_ms()).map_err(bad)?;
        let middle = (totals.compact_revision.max(0) + totals.revision) / 2 + 1;
        let (mut low, mut high) = std::thread::scope(|scope| {
            let low = scope.spawn(|| read_log(view, 1, middle));
            let high = read_log(view, middle, i64::MAX);
            let low = low.join().expect("the log reader does not panic");
            Ok::<_, HistoryError>((low?, high?))
        })?;
        name_deletes(&mut low, &mut high)?;
        let (low, high) = std::thread::scope(|scope| {
            let low = scope.spawn(|| low.sorted());
            let high = high.sorted();
            (low.join().expect("sorting does not panic"), high)
        });
        // One thread merges the halves, checks each key and builds its chain
        // of versions; this one puts the keys into the map, batch by batch.
        let preparer = importer.preparer();
        std::thread::scope(|scope| -> Result<()> {
            let (batches_tx, batches) = std::sync::mpsc::sync_channel::<Vec<PreparedKey>>(16);
            let merger = scope.spawn(move || merge_halves(low, high, preparer, batches_tx));
            for batch in batches {
                for key in batch {
                    importer.commit(key);
                }
            }
            merger.join().expect("the merger does not panic")
        })?;
        Ok(importer.finish())
    }
}

/// Versions of one stretch of the log, in log order.
struct LogPart {
    /// Each version with its key (empty for a delete until `name_deletes`),
    /// allocated as it will stay in memory (unlinked: `prepare_chain` links).
    versions: Vec<(Bytes, Arc<Version>)>,
    /// Where each version is, ascending.
    ats: Vec<At>,
    /// The deletes: their index in `versions` and their previous version.
    deletes: Vec<(usize, At)>,
}

impl LogPart {
    /// The version at `at`, if this part holds it.
    fn find(&self, at: At) -> Option<usize> {
        self.ats.binary_search(&at).ok()
    }

    /// The versions by key, newest first within a key.
    fn sorted(self) -> Vec<(Bytes, Arc<Version>)> {
        let mut versions = self.versions;
        versions.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.revision.cmp(&a.1.revision)));
        versions
    }
}

/// Gives each delete the key of the version before it (a put, or a delete
/// named already: the log is visited in order). `high` follows `low`.
fn name_deletes(low: &mut LogPart, high: &mut LogPart) -> Result<()> {
    for in_high in [false, true] {
        let deletes = std::mem::take(if in_high { &mut high.deletes } else { &mut low.deletes });
        for (index, previous) in deletes {
            let key = match (high.find(previous), low.find(previous)) {
                (Some(found), _) => high.versions[found].0.clone(),
                (None, Some(found)) => low.versions[found].0.clone(),
                (None, None) => Bytes::new(),
            };
            let part = if in_high { &mut *high } else { &mut *low };
            if key.is_empty() {
                let at = part.ats[index];
                return Err(bad(format!("the delete at {at} follows no version held")));
            }
            part.versions[index].0 = key;
        }
    }
    Ok(())
}

/// The versions of a checkpoint with revisions in [from, to), in log order.
fn read_log(view: &PagedView, from: i64, to: i64) -> Result<LogPart> {
    let start = revision_bound(from);
    let end = if to == i64::MAX { prefix_end(prefix_version) } else { revision_bound(to) };
    let mut cursor = view.snapshot.scan_cursor(Bound::Included(&start), Bound::Excluded(&end))?;
    // About one version per revision: reserved up front, the vectors are not
    // copied as they grow (they hold the whole history). Bounded by the
    // tree's entry count, so a damaged meta entry cannot ask for an absurd
    // reservation.
    let revisions = to.min(view.totals.revision.saturating_add(1)).saturating_sub(from).max(0);
    let capacity = (revisions as u64).min(view.snapshot.len()) as usize;
    let mut part = LogPart {
        versions: Vec::with_capacity(capacity),
        ats: Vec::with_capacity(capacity),
        deletes: Vec::new(),
    };
    // Consecutive puts often share a key; hold it once.
    let mut last_key = Bytes::new();
    loop {
        let step = cursor.next_with(|tree_key, value| -> Result<()> {
            let at = split_version_key(tree_key)?;
            let record = decode_record(value, at, None)?;
            let key = match record.key {
                Some(key) if key == last_key => last_key.clone(),
                Some(key) => {
                    last_key = key.clone();
                    key
                }
                None => {
                    let previous = record.previous.expect("a delete names its previous version");
                    part.deletes.push((part.versions.len(), previous));
                    Bytes::new()
                }
            };
            // Allocated here, on a reader thread; linked by the merger.
            let kv = record.version.kv;
            let version = Version { kv, revision: at.revision, sub: at.sub_u32(), previous: None };
            part.versions.push((key, Arc::new(version)));
            part.ats.push(at);
            Ok(())
        })?;
        match step {
            Some(done) => done?,
            None => break,
        }
    }
    Ok(part)
}

/// Merges the two halves of `load` (each in key order, newest first within
/// a key; a key in both has its high-half versions newer than its low-half
/// ones), prepares each key and sends them on in batches.
fn merge_halves(
    low: Vec<(Bytes, Arc<Version>)>,
    high: Vec<(Bytes, Arc<Version>)>,
    mut preparer: Preparer,
    batches: std::sync::mpsc::SyncSender<Vec<PreparedKey>>,
) -> Result<()> {
    const batch_keys: usize = 1024;
    let mut low = low.into_iter().peekable();
    let mut high = high.into_iter().peekable();
    let mut batch = Vec::with_capacity(batch_keys);
    loop {
        let take_high = match (low.peek(), high.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(l), Some(h)) => h.0 <= l.0,
        };
        let (key, first) = if take_high { high.next() } else { low.next() }.expect("peeked");
        let mut group = vec![first];
        while let Some((_, version)) = high.next_if(|(next, _)| *next == key) {
            group.push(version);
        }
        while let Some((_, version)) = low.next_if(|(next, _)| *next == key) {
            group.push(version);
        }
        batch.push(preparer.prepare_chain(key, group).map_err(bad)?);
        if batch.len() == batch_keys {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_keys));
            if batches.send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(batch);
    }
    Ok(())
}
