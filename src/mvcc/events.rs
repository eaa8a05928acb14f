//! What changed between two revisions, for watches: the puts and deletes of
//! a span's keys at each revision, in order, with the versions they replaced.
//!
//! History comes from every layer: the in-memory chains (`keys`, `frozen`)
//! and the page store's version log (`base`), whose revisions are disjoint.

use bytes::Bytes;

use super::span::Span;
use super::{storage_error, Snapshot};
use crate::error::{Error, ErrorCode};
use crate::types::KeyValue;

/// One change: `key` written at `revision` (`kv` None: deleted then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: i64,
    pub key: Bytes,
    pub kv: Option<KeyValue>,
    /// The key's version just before `revision` (None: it did not exist),
    /// when asked for.
    pub prev_kv: Option<KeyValue>,
}

impl Snapshot {
    /// The changes to keys in `span` at revisions `from` through `to`
    /// (`to` is capped at this snapshot's revision), ordered by revision and,
    /// within one, as the request wrote them (etcd's sub-revision order;
    /// by key for history restored from a snapshot file); each with its
    /// previous version if `prev_kv`.
    ///
    /// `from` below the compaction point is `Compacted`, as etcd answers a
    /// watch from there. From the compaction point itself, as in etcd, a
    /// delete at exactly that revision is gone (compaction removed it).
    pub fn events(
        &self,
        span: &Span,
        from: i64,
        to: i64,
        prev_kv: bool,
    ) -> Result<Vec<Event>, Error> {
        if from < self.compact_revision {
            return Err(Error::new(ErrorCode::Compacted));
        }
        let (from, to) = (from.max(1), to.min(self.revision));
        // Each with its sub-revision, to order by.
        let mut events: Vec<(u64, Event)> = Vec::new();
        if span.is_empty() || to < from {
            return Ok(Vec::new());
        }
        for layer in std::iter::once(&self.keys).chain(self.frozen.iter()) {
            let heads: Vec<_> = match span {
                Span::Single(key) => layer.get(key).map(|head| (key, head)).into_iter().collect(),
                Span::Interval(..) => layer.range(span.bounds()).collect(),
            };
            for (key, head) in heads {
                let chain = std::iter::successors(Some(head), |v| v.previous.as_ref());
                for version in chain.take_while(|v| v.revision >= from) {
                    if version.revision <= to {
                        let event = Event {
                            revision: version.revision,
                            key: key.clone(),
                            kv: version.kv.clone(),
                            prev_kv: None,
                        };
                        events.push((u64::from(version.sub), event));
                    }
                }
            }
        }
        if let Some(base) = &self.base {
            let changes =
                base.changes_between(from, to, |key| span.contains(key)).map_err(storage_error)?;
            events.extend(
                changes.into_iter().map(|(revision, sub, key, kv)| {
                    (sub, Event { revision, key, kv, prev_kv: None })
                }),
            );
        }
        events.sort_by(|(a_sub, a), (b_sub, b)| {
            (a.revision, a_sub, &a.key).cmp(&(b.revision, b_sub, &b.key))
        });
        let mut events: Vec<Event> = events.into_iter().map(|(_, event)| event).collect();
        if prev_kv {
            for event in &mut events {
                event.prev_kv = self.visible(&event.key, event.revision - 1)?;
            }
        }
        Ok(events)
    }
}
