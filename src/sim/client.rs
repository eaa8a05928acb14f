//! Simulated clients: each has one operation outstanding at a time, sends it
//! to the member it believes leads, retries on redirects and timeouts (with
//! the same sequence number, so the state machine applies it at most once),
//! and records invocations and completions for the linearizability check.

use crate::types::NodeId;

use super::kv_model::{KvInput, KvOperation, KvOutput};
use super::rng::Rng;

/// Keys the clients contend on.
pub const keys_count: u64 = 4;
/// One attempt waits this long for an answer before trying another member.
pub const attempt_timeout_ms: u64 = 40;
/// During the fault phase a client gives up on an operation after this long
/// and records its outcome as unknown.
pub const give_up_ms: u64 = 600;

#[derive(Clone, Debug)]
pub struct Outstanding {
    pub seq: u64,
    pub key: u64,
    pub input: KvInput,
    pub attempt: u32,
    pub call: u64,
    pub history_slot: usize,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub id: u64,
    pub next_seq: u64,
    pub outstanding: Option<Outstanding>,
    pub target: NodeId,
    /// The mod_revision this client last saw per key, for compare-and-put.
    seen_revision: [u64; keys_count as usize],
    pub completed: u64,
}

impl Client {
    pub fn new(id: u64, target: NodeId) -> Client {
        Client {
            id,
            next_seq: 1,
            outstanding: None,
            target,
            seen_revision: [0; keys_count as usize],
            completed: 0,
        }
    }

    /// Chooses the next operation and records its invocation.
    pub fn invoke(&mut self, rng: &mut Rng, now: u64, history: &mut Vec<KvOperation>) {
        let key = rng.range(0, keys_count - 1);
        let seq = self.next_seq;
        self.next_seq += 1;
        let value = self.id * 1_000_000 + seq;
        let input = match rng.range(0, 9) {
            0..=3 => KvInput::Get,
            4..=6 => KvInput::Put { value },
            7..=8 => {
                let expected = self.seen_revision[key as usize];
                KvInput::CompareAndPut { expected_mod_revision: expected, value }
            }
            _ => KvInput::Delete,
        };
        history.push(KvOperation {
            key,
            client: self.id,
            input: input.clone(),
            call: now,
            output: KvOutput::Unknown,
            return_time: None,
        });
        let history_slot = history.len() - 1;
        self.outstanding =
            Some(Outstanding { seq, key, input, attempt: 0, call: now, history_slot });
    }

    /// The answer to the outstanding operation arrived.
    pub fn complete(&mut self, output: KvOutput, now: u64, history: &mut [KvOperation]) {
        let op = self.outstanding.take().expect("an outstanding operation");
        match &output {
            KvOutput::Got(Some((_, revision))) | KvOutput::Put { revision } => {
                self.seen_revision[op.key as usize] = *revision
            }
            KvOutput::Got(None) | KvOutput::Deleted { .. } => {
                self.seen_revision[op.key as usize] = 0
            }
            _ => {}
        }
        let record = &mut history[op.history_slot];
        record.output = output;
        record.return_time = Some(now);
        self.completed += 1;
    }

    /// Abandons the outstanding operation: it may or may not take effect.
    pub fn give_up(&mut self) {
        self.outstanding = None;
    }
}
