//! The log driver: propose → append to the log → commit → apply → publish →
//! reply, on one core. With a single voter an entry is committed once it is
//! durable in the local log; the Raft core (its own module, later) takes the
//! commit decision without changing the shape of this loop.
//!
//! Group commit: while one batch is being written and synced, proposals queue
//! up in the channel; the next batch takes all of them (up to the limits).
//!
//! Snapshots: every `--snapshot-count` applied entries (or `--snapshot-interval`
//! seconds with new entries), the published state is written to
//! DATA_DIR/snapshots by a thread of its own (the loop never waits for it),
//! then old snapshots beyond `--snapshot-retain` are deleted and WAL segments
//! wholly below `index - --wal-retain-entries` are purged. One at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::disk::LogDisk;
use crate::limits;
use crate::metrics::add;
use crate::mvcc::Store;
use crate::types::Response;
use crate::wal::{EntryRef, WalWriter};

use super::config::SnapshotPolicy;
use super::shared::{Proposal, Published, Shared};
use crate::snapshot::{self, Meta};

/// The member's own snapshots: when the next is due, and the one being written.
pub struct Snapshots {
    policy: SnapshotPolicy,
    snapshot_dir: PathBuf,
    wal_dir: PathBuf,
    last_index: u64,
    last_at: Instant,
    writing: Option<JoinHandle<()>>,
}

impl Snapshots {
    pub fn new(data_dir: &Path, policy: SnapshotPolicy, last_index: u64) -> Snapshots {
        Snapshots {
            policy,
            snapshot_dir: data_dir.join("snapshots"),
            wal_dir: data_dir.join("wal"),
            last_index,
            last_at: Instant::now(),
            writing: None,
        }
    }

    fn due(&mut self, applied_index: u64) -> bool {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return false;
        }
        if let Some(done) = self.writing.take() {
            let _ = done.join();
        }
        let new_entries = applied_index.saturating_sub(self.last_index);
        let by_count = self.policy.count > 0 && new_entries >= self.policy.count;
        let by_time = self.policy.interval_secs > 0
            && new_entries > 0
            && self.last_at.elapsed().as_secs() >= self.policy.interval_secs;
        by_count || by_time
    }

    /// Starts writing `published` as a snapshot if one is due.
    fn maybe_start(&mut self, shared: &Arc<Shared>, published: &Published) {
        if !self.due(published.applied_index) {
            return;
        }
        self.last_index = published.applied_index;
        self.last_at = Instant::now();
        let state = published.snapshot.clone();
        let meta = shared.snapshot_meta(published);
        let (policy, snapshot_dir, wal_dir) =
            (self.policy, self.snapshot_dir.clone(), self.wal_dir.clone());
        let shared = shared.clone();
        let spawned = crate::runtime::spawn_background("snapshot", move || {
            write_and_purge(&shared, &state, &meta, policy, &snapshot_dir, &wal_dir)
        });
        match spawned {
            Ok(handle) => self.writing = Some(handle),
            Err(e) => eprintln!("corekv: cannot start a snapshot thread: {e}"),
        }
    }
}

/// Writes one snapshot, then drops what it makes unnecessary. A failure is
/// reported, not fatal: the WAL still holds every entry.
fn write_and_purge(
    shared: &Shared,
    state: &crate::mvcc::Snapshot,
    meta: &Meta,
    policy: SnapshotPolicy,
    snapshot_dir: &Path,
    wal_dir: &Path,
) {
    let started = Instant::now();
    let duty = crate::limits::snapshot_work_fraction;
    let (path, summary) = match snapshot::save_in_dir(snapshot_dir, state, meta, duty) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("corekv: snapshot at index {} failed: {e}", meta.applied_index);
            return;
        }
    };
    let snapshots = &shared.metrics.snapshots;
    add(&snapshots.taken, 1);
    add(&snapshots.bytes, summary.compressed_bytes);
    if let Err(e) = snapshot::retain(snapshot_dir, policy.retain) {
        eprintln!("corekv: cannot delete old snapshots in {}: {e}", snapshot_dir.display());
    }
    let keep_from = meta.applied_index.saturating_sub(policy.wal_retain_entries) + 1;
    match crate::wal::purge(wal_dir, keep_from) {
        Ok(purged) => {
            add(&snapshots.wal_segments_purged, purged as u64);
            shared.wal_first_sequence.fetch_add(purged as u64, Ordering::Relaxed);
        }
        Err(e) => eprintln!("corekv: cannot purge the WAL in {}: {e}", wal_dir.display()),
    }
    eprintln!(
        "corekv: snapshot {} (index {}, revision {}, {} keys, {} bytes) in {} ms",
        path.display(),
        meta.applied_index,
        meta.revision,
        summary.keys,
        summary.compressed_bytes
            + (snapshot::format::header_bytes + snapshot::format::trailer_bytes) as u64,
        started.elapsed().as_millis()
    );
}

pub struct Driver<D: LogDisk> {
    pub shared: Arc<Shared>,
    pub store: Store,
    pub wal: WalWriter<D>,
    pub proposals: async_channel::Receiver<Proposal>,
    pub snapshots: Snapshots,
}

impl<D: LogDisk> Driver<D> {
    pub async fn run(mut self) {
        let mut batch: Vec<Proposal> = Vec::with_capacity(limits::batch_entries_max);
        while let Ok(first) = self.proposals.recv().await {
            let mut bytes = first.payload.len();
            batch.push(first);
            while batch.len() < limits::batch_entries_max && bytes < limits::batch_bytes_max {
                match self.proposals.try_recv() {
                    Ok(p) => {
                        bytes += p.payload.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            self.step(&mut batch).await;
        }
    }

    async fn step(&mut self, batch: &mut Vec<Proposal>) {
        // 1. Append to the log and make it durable.
        let first_index = self.wal.last_index() + 1;
        let entries: Vec<EntryRef<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, p)| EntryRef {
                term: self.shared.raft_term,
                index: first_index + i as u64,
                payload: &p.payload,
            })
            .collect();
        let (bytes_before, syncs_before) = (self.wal.bytes_written, self.wal.syncs);
        if let Err(e) = self.wal.append(&entries).await {
            // Never retry an fsync: the page cache state is unknown after a failure.
            eprintln!("corekv: fatal: WAL append failed: {e}; stopping the member");
            std::process::exit(70);
        }
        let log = &self.shared.metrics.log;
        add(&log.batches, 1);
        add(&log.entries, batch.len() as u64);
        add(&log.wal_bytes, self.wal.bytes_written - bytes_before);
        add(&log.wal_syncs, self.wal.syncs - syncs_before);
        // 2. Commit: a single voter's durable entries are committed.
        let commit_index = self.wal.last_index();
        // 3. Apply in log order; each reply carries the revision after its entry.
        let mut replies = Vec::with_capacity(batch.len());
        for proposal in batch.drain(..) {
            let result = self.store.apply(&proposal.request);
            let header = self.shared.header(self.store.revision());
            replies.push((proposal.reply, proposal.request_id, Response { header, result }));
        }
        // 4. Publish, then acknowledge.
        let snapshot = self.store.snapshot();
        let first_sequence = self.shared.wal_first_sequence.load(Ordering::Relaxed);
        let published = Published {
            snapshot,
            applied_index: commit_index,
            wal_bytes: self.wal.disk_bytes(first_sequence),
        };
        self.snapshots.maybe_start(&self.shared, &published);
        self.shared.publish(published);
        for (reply, request_id, response) in replies {
            // A full or closed channel means the connection is gone.
            let _ = reply.try_send((request_id, response));
        }
    }
}
