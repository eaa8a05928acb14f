//! The log driver: propose → append to the log → commit → apply → publish →
//! reply, on one core. With a single voter an entry is committed once it is
//! durable in the local log; the Raft core (its own module, later) takes the
//! commit decision without changing the shape of this loop.
//!
//! Group commit: while one batch is being written and synced, proposals queue
//! up in the channel; the next batch takes all of them (up to the limits).

use std::sync::Arc;

use crate::disk::LogDisk;
use crate::limits;
use crate::metrics::add;
use crate::mvcc::Store;
use crate::types::Response;
use crate::wal::{EntryRef, WalWriter};

use super::shared::{Proposal, Published, Shared};

pub struct Driver<D: LogDisk> {
    pub shared: Arc<Shared>,
    pub store: Store,
    pub wal: WalWriter<D>,
    pub proposals: async_channel::Receiver<Proposal>,
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
        self.shared.publish(Published {
            snapshot,
            applied_index: commit_index,
            wal_bytes: self.wal.disk_bytes(),
        });
        for (reply, request_id, response) in replies {
            // A full or closed channel means the connection is gone.
            let _ = reply.try_send((request_id, response));
        }
    }
}
