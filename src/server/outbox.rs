//! A connection's out queue: encoded responses waiting for its socket
//! writer, with the bytes they hold and the watches that send into it.
//!
//! Watch events are bounded by bytes per connection, not by frames per
//! connection: one revision sends a frame to each watcher, so a client with
//! a thousand watches on one connection (as Kubernetes' API server has)
//! would otherwise look slow after a few dozen frames and fall back to
//! reading history, while a client with one watch per connection could
//! queue as much as it likes. The budget grows with the connection's
//! watches (`limits::watch_queue_bytes_per_watcher`), so what a stalled
//! client holds stays bounded and proportional to what it asked for.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::limits;

#[derive(Default)]
struct State {
    /// Bytes of the frames in the queue (not yet taken by the writer).
    bytes: AtomicUsize,
    /// Watches of the connection.
    watchers: AtomicUsize,
    /// Its watches found the queue over their budget, and nothing was
    /// queued for them since.
    slow: AtomicBool,
    /// Notified when the writer takes frames (senders waiting for bytes).
    drained: event_listener::Event,
}

/// The sending side (the connection's reader, its completer, and every
/// watch of the connection, all on the connection's core).
#[derive(Clone)]
pub struct Outbox {
    tx: async_channel::Sender<Vec<u8>>,
    state: Arc<State>,
}

/// The socket writer's side.
pub struct OutboxReader {
    rx: async_channel::Receiver<Vec<u8>>,
    state: Arc<State>,
}

/// Whether watch frames of `bytes` may join `queued` bytes: within the
/// budget, or anything while under half of it (so a response larger than
/// the budget goes, overshooting it once, instead of waiting forever).
fn fits(queued: usize, bytes: usize, out: &Outbox) -> bool {
    let budget = out.watch_budget();
    queued + bytes <= budget || queued < budget / 2
}

/// A hasher for keys that are small integers or already hashes.
#[derive(Default)]
pub struct Spread(u64);

impl std::hash::Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_i64(&mut self, value: i64) {
        self.write_u64(value as u64);
    }
}

/// A queue holding at most `limits::connection_responses_queued_max` items.
pub fn outbox() -> (Outbox, OutboxReader) {
    let (tx, rx) = async_channel::bounded(limits::connection_responses_queued_max);
    let state = Arc::new(State::default());
    (Outbox { tx, state: state.clone() }, OutboxReader { rx, state })
}

impl Outbox {
    /// Queues a frame, waiting for room; false if the writer is gone.
    /// Counted once queued, not while waiting for room (every user of a
    /// connection's queue runs on its core: the writer cannot take the
    /// frame before it is counted).
    /// Waits too while the queue holds over
    /// `limits::connection_queue_bytes_max` with this frame (unless it is
    /// empty): a client that does not read holds that much, not more.
    pub async fn send(&self, frame: Vec<u8>) -> bool {
        let bytes = frame.len();
        let room =
            |queued: usize| queued == 0 || queued + bytes <= limits::connection_queue_bytes_max;
        while !room(self.bytes()) {
            if self.tx.is_closed() {
                return false;
            }
            let drained = self.state.drained.listen();
            if room(self.bytes()) || self.tx.is_closed() {
                continue;
            }
            drained.await;
        }
        let sent = self.tx.send(frame).await.is_ok();
        if sent {
            self.state.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        sent
    }

    /// Queues a frame if there is room and the writer is there.
    pub fn try_send(&self, frame: Vec<u8>) -> bool {
        let bytes = frame.len();
        self.state.bytes.fetch_add(bytes, Ordering::Relaxed);
        let sent = self.tx.try_send(frame).is_ok();
        if !sent {
            self.state.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        sent
    }

    /// Items queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether one more item fits now.
    pub fn has_slot(&self) -> bool {
        self.tx.len() < limits::connection_responses_queued_max
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.state.bytes.load(Ordering::Relaxed)
    }

    /// Counts a watch of the connection in (+1) or out (-1).
    pub fn count_watcher(&self, opened: bool) {
        match opened {
            true => self.state.watchers.fetch_add(1, Ordering::Relaxed),
            false => self.state.watchers.fetch_sub(1, Ordering::Relaxed),
        };
    }

    /// Watches of the connection.
    pub fn watchers(&self) -> usize {
        self.state.watchers.load(Ordering::Relaxed)
    }

    /// Bytes of queued frames past which the connection's watches wait
    /// (their client is slow): a base plus a share per watch.
    pub fn watch_budget(&self) -> usize {
        let budget = limits::watch_queue_bytes_base
            + self.watchers().saturating_mul(limits::watch_queue_bytes_per_watcher);
        budget.min(limits::watch_queue_bytes_max)
    }

    /// Marks the connection slow; true if it was not.
    pub fn set_slow(&self) -> bool {
        !self.state.slow.swap(true, Ordering::Relaxed)
    }

    /// Marks it not slow (events were queued for it); true if it was.
    pub fn clear_slow(&self) -> bool {
        self.state.slow.swap(false, Ordering::Relaxed)
    }
}

impl OutboxReader {
    /// The next frame; None once every sender is gone.
    pub async fn recv(&self) -> Option<Vec<u8>> {
        let frame = self.rx.recv().await.ok()?;
        self.taken(frame.len());
        Some(frame)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Option<Vec<u8>> {
        let frame = self.rx.try_recv().ok()?;
        self.taken(frame.len());
        Some(frame)
    }

    fn taken(&self, bytes: usize) {
        self.state.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.state.drained.notify(usize::MAX);
    }
}

impl Drop for OutboxReader {
    /// Senders waiting for room find the queue closed.
    fn drop(&mut self) {
        self.rx.close();
        self.state.drained.notify(usize::MAX);
    }
}

/// Frames for many connections gathered during one synchronous pass (a
/// round of watch deliveries), queued as one item per connection when the
/// pass ends: a revision reaching a thousand watches of a connection costs
/// its queue and its writer one item, not a thousand. Nothing else runs on
/// the core during the pass, so a slot found free when a connection's
/// buffer opens is still free when it is queued.
#[derive(Default)]
pub struct Gather {
    /// Connection → its place in `buffers` (connection numbers are small
    /// sequential integers: no need for a keyed hash).
    by_connection: HashMap<u64, usize, BuildHasherDefault<Spread>>,
    buffers: Vec<(Outbox, Vec<u8>)>,
}

impl Gather {
    fn gathered(&self, connection: u64) -> usize {
        self.by_connection.get(&connection).map_or(0, |at| self.buffers[*at].1.len())
    }

    /// Whether the connection's watches may queue `bytes` more (`fits`).
    pub fn room_for(&self, connection: u64, out: &Outbox, bytes: usize) -> bool {
        self.slot(connection, out) && fits(out.bytes() + self.gathered(connection), bytes, out)
    }

    /// Whether the connection has a buffer in this pass, or a free slot in
    /// its queue for one.
    fn slot(&self, connection: u64, out: &Outbox) -> bool {
        self.by_connection.contains_key(&connection) || (!out.is_closed() && out.has_slot())
    }

    /// Bytes the connection's watches may still queue (all of its budget
    /// when nothing is queued).
    pub fn room(&self, connection: u64, out: &Outbox) -> usize {
        match self.slot(connection, out) {
            true => out.watch_budget().saturating_sub(out.bytes() + self.gathered(connection)),
            false => 0,
        }
    }

    /// The connection's buffer for this pass if watch frames of `bytes`
    /// fit (see `room_for`; None: a control frame, which only needs the
    /// buffer); None if not, or if its queue has no slot for the buffer or
    /// its writer is gone.
    pub fn buffer(
        &mut self,
        connection: u64,
        out: &Outbox,
        bytes: Option<usize>,
    ) -> Option<&mut Vec<u8>> {
        let at = match self.by_connection.get(&connection) {
            Some(at) => *at,
            None => {
                if !self.slot(connection, out) {
                    return None;
                }
                self.buffers.push((out.clone(), Vec::new()));
                self.by_connection.insert(connection, self.buffers.len() - 1);
                self.buffers.len() - 1
            }
        };
        let buffer = &mut self.buffers[at].1;
        let fit = bytes.is_none_or(|bytes| fits(out.bytes() + buffer.len(), bytes, out));
        fit.then_some(buffer)
    }

    /// Queues what was gathered, one item per connection.
    pub fn flush(&mut self) {
        self.by_connection.clear();
        for (out, frames) in self.buffers.drain(..) {
            // Only a closed queue refuses (its connection is going away).
            if !frames.is_empty() {
                out.try_send(frames);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_the_frames_and_the_budget_the_watches() {
        let (out, reader) = outbox();
        let base = out.watch_budget();
        assert_eq!(base, limits::watch_queue_bytes_base);
        out.count_watcher(true);
        out.count_watcher(true);
        assert_eq!(out.watch_budget(), base + 2 * limits::watch_queue_bytes_per_watcher);
        out.count_watcher(false);
        assert_eq!(out.watch_budget(), base + limits::watch_queue_bytes_per_watcher);
        assert!(out.try_send(vec![0; 100]));
        assert!(out.try_send(vec![0; 20]));
        assert_eq!((out.len(), out.bytes()), (2, 120));
        assert_eq!(reader.try_recv().map(|f| f.len()), Some(100));
        assert_eq!(out.bytes(), 20);
        for _ in 1..limits::connection_responses_queued_max {
            assert!(out.try_send(vec![1]));
        }
        assert!(!out.has_slot());
        let before = out.bytes();
        assert!(!out.try_send(vec![0; 50]), "full");
        assert_eq!(out.bytes(), before, "a frame not queued is not counted");
        drop(reader);
        assert!(out.is_closed());
        assert!(!out.try_send(vec![0; 7]));
        assert_eq!(out.bytes(), before);
    }
}
