//! The leader's view of each follower's log (§5.3, etcd-raft's Progress):
//!
//! ```text
//!            reject / snapshot failed             snapshot reached
//!   ┌──────────────┐◄────────────────── Replicate ◄───────────────┐
//!   │    Probe     │───── append acked ────►                       │
//!   │ one append   │                                               │
//!   │ in flight    │───── next < first index ──► Snapshot ─────────┘
//!   └──────────────┘
//! ```
//!
//! Probe sends one append per heartbeat interval until the follower's log is
//! found to match; Replicate streams appends optimistically, bounded by a
//! window of messages in flight; Snapshot waits for the driver to ship one.
//! Invariant: `match_index < next_index`.

use std::collections::VecDeque;

use crate::types::LogIndex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    Probe,
    Replicate,
    /// Waiting for a snapshot at this index to be installed.
    Snapshot(LogIndex),
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// Probe: an append is outstanding; no more until a response or heartbeat.
    pub probe_sent: bool,
    /// The last index of each append in flight (Replicate).
    pub inflight: VecDeque<LogIndex>,
    /// Heard from since the last check-quorum round (§6.2).
    pub recent_active: bool,
}

impl Progress {
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: true,
        }
    }

    /// Whether the leader may send another append now.
    pub fn is_paused(&self, inflight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= inflight_max,
            ProgressState::Snapshot(_) => true,
        }
    }

    /// An append ending at `last` went out.
    pub fn sent(&mut self, last: LogIndex) {
        match self.state {
            ProgressState::Replicate => {
                if last >= self.next_index {
                    self.next_index = LogIndex(last.0 + 1);
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot(_) => unreachable!("append while sending a snapshot"),
        }
    }

    /// The follower matches up to `index`. Returns whether it advanced.
    pub fn acknowledged(&mut self, index: LogIndex) -> bool {
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(LogIndex(index.0 + 1));
        self.probe_sent = false;
        match self.state {
            ProgressState::Probe => self.become_replicate(),
            ProgressState::Snapshot(at) if index >= at => self.become_replicate(),
            _ => {}
        }
        true
    }

    /// The follower rejected an append at `rejected`; resume from `next`.
    /// Stale rejections (for appends before the current window) are ignored.
    pub fn rejected(&mut self, rejected: LogIndex, next: LogIndex) -> bool {
        let stale = rejected <= self.match_index
            || matches!(self.state, ProgressState::Snapshot(_))
            || (self.state == ProgressState::Probe && rejected.0 + 1 != self.next_index.0);
        if stale {
            return false;
        }
        self.next_index = next.min(rejected).max(LogIndex(self.match_index.0 + 1));
        self.become_probe();
        true
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = self.next_index.max(LogIndex(self.match_index.0 + 1));
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = LogIndex(self.match_index.0 + 1);
    }

    pub fn become_snapshot(&mut self, at: LogIndex) {
        self.state = ProgressState::Snapshot(at);
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn check_invariants(&self, inflight_max: usize) {
        assert!(
            self.match_index < self.next_index,
            "match {:?} >= next {:?}",
            self,
            self.next_index
        );
        assert!(self.inflight.len() <= inflight_max, "in-flight window overflow");
        assert!(self.inflight.iter().zip(self.inflight.iter().skip(1)).all(|(a, b)| a < b));
        if self.state != ProgressState::Replicate {
            assert!(self.inflight.is_empty(), "in-flight appends outside Replicate");
        }
    }
}
