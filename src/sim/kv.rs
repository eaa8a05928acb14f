//! The replicated state machine the simulator runs on the Raft log: an
//! etcd-like KV (global revision, per-key mod_revision, put, compare-and-put
//! on mod_revision, delete) plus a session table so that a command retried
//! by its client takes effect at most once (at-most-once via client id and
//! sequence number, like RIFL / etcd's lease-less idempotent txns).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::kv_model::{KvInput, KvOutput};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub client: u64,
    pub seq: u64,
    pub key: u64,
    pub input: KvInput,
}

const command_bytes: usize = 8 * 5 + 1;

impl Command {
    pub fn encode(&self) -> Bytes {
        let (kind, a, b) = match self.input {
            KvInput::Get => (0u8, 0, 0),
            KvInput::Put { value } => (1, value, 0),
            KvInput::CompareAndPut { expected_mod_revision, value } => {
                (2, expected_mod_revision, value)
            }
            KvInput::Delete => (3, 0, 0),
        };
        let mut out = Vec::with_capacity(command_bytes);
        for word in [self.client, self.seq, self.key, a, b] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.push(kind);
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Command {
        assert_eq!(bytes.len(), command_bytes, "simulator command size");
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        let input = match bytes[40] {
            0 => KvInput::Get,
            1 => KvInput::Put { value: word(3) },
            2 => KvInput::CompareAndPut { expected_mod_revision: word(3), value: word(4) },
            3 => KvInput::Delete,
            other => panic!("unknown simulator command {other}"),
        };
        Command { client: word(0), seq: word(1), key: word(2), input }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    revision: u64,
    data: BTreeMap<u64, (u64, u64)>,
    /// client → (latest sequence number applied, its output)
    sessions: BTreeMap<u64, (u64, KvOutput)>,
}

impl Kv {
    /// Applies a command; returns its output, or None for a stale retry of
    /// a command older than the client's latest.
    pub fn apply(&mut self, command: &Command) -> Option<KvOutput> {
        if let Some((last, output)) = self.sessions.get(&command.client) {
            if command.seq == *last {
                return Some(output.clone());
            }
            if command.seq < *last {
                return None;
            }
        }
        let output = match command.input {
            KvInput::Get => self.get(command.key),
            KvInput::Put { value } => self.put(command.key, value),
            KvInput::CompareAndPut { expected_mod_revision, value } => {
                let current = self.data.get(&command.key).map_or(0, |&(_, m)| m);
                if current == expected_mod_revision {
                    self.put(command.key, value)
                } else {
                    KvOutput::CompareFailed
                }
            }
            KvInput::Delete => {
                let existed = self.data.remove(&command.key).is_some();
                if existed {
                    self.revision += 1;
                }
                KvOutput::Deleted { existed }
            }
        };
        self.sessions.insert(command.client, (command.seq, output.clone()));
        Some(output)
    }

    fn put(&mut self, key: u64, value: u64) -> KvOutput {
        self.revision += 1;
        self.data.insert(key, (value, self.revision));
        KvOutput::Put { revision: self.revision }
    }

    pub fn get(&self, key: u64) -> KvOutput {
        KvOutput::Got(self.data.get(&key).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_retries_apply_once() {
        let put = Command { client: 7, seq: 1, key: 3, input: KvInput::Put { value: 70 } };
        assert_eq!(Command::decode(&put.encode()), put);
        let cas = Command {
            client: 7,
            seq: 2,
            key: 3,
            input: KvInput::CompareAndPut { expected_mod_revision: 1, value: 71 },
        };
        assert_eq!(Command::decode(&cas.encode()), cas);
        let mut kv = Kv::default();
        assert_eq!(kv.apply(&put), Some(KvOutput::Put { revision: 1 }));
        assert_eq!(kv.apply(&put), Some(KvOutput::Put { revision: 1 }), "retry is deduplicated");
        assert_eq!(kv.apply(&cas), Some(KvOutput::Put { revision: 2 }));
        assert_eq!(kv.apply(&put), None, "older command is stale");
        assert_eq!(kv.get(3), KvOutput::Got(Some((71, 2))));
    }
}
