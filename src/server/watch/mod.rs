//! Watches: etcd's Watch over the native protocol, fanned out per core.
//!
//! ```text
//!  log driver ──(after publishing a batch)──► WatchLog (recent batches, bounded)
//!                                               │  wakes the cores with watchers
//!                                               ▼
//!  core N: Hub ── for each watcher: events from `next` on ──► its connection's out queue
//!                   from the WatchLog when it still holds them,
//!                   else from the store's history (Snapshot::events)
//! ```
//!
//! Each watcher remembers `next`, the first revision it has not been sent.
//! A delivery sends whole revisions in order (never a revision split across
//! responses unless the watch asked for fragments), then moves `next` past
//! them: so events are ordered, unique and gap-free, and resuming from
//! `last + 1` continues exactly. A watcher whose connection's queue is
//! nearly full is skipped (the client is slow): apply never waits for it,
//! other watchers go on, and memory stays bounded (the queue and the log
//! are bounded). When the log no longer holds its revisions it reads them
//! from history, in windows, and joins the log again once it is caught up;
//! if its revisions have been compacted meanwhile, it is canceled with the
//! compaction revision, as etcd does.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

mod log;
mod watchers;

use log::LogView;
pub use log::WatchLog;
use watchers::{Filter, Watcher, Watchers};

use super::connection::encode_frame;
use super::outbox::{Gather, Outbox, Spread};
use super::shared::Shared;
use crate::error::{Error, ErrorCode};
use crate::limits;
use crate::metrics::add;
use crate::mvcc::span::Span;
use crate::runtime;
use crate::types::{
    EventType, KeyValue, Response, ResponseBody, WatchCreateRequest, WatchEvent, WatchResponse,
};

/// Revisions read from history per step of a catch-up.
const catch_up_revisions: i64 = 1024;
/// Events per response (whole revisions are never split unless fragmenting).
const response_events_max: usize = 1024;
/// Bytes of keys and values per response, likewise.
const response_bytes_soft_max: usize = 64 * 1024;
/// How often a hub looks at its watchers without being woken (slow
/// watchers retry, progress notifications).
const hub_tick: Duration = Duration::from_millis(100);

/// A response frame built once for every watcher with the same span,
/// filters and position; each gets a copy with its own request id and
/// watch id patched in.
struct Template {
    /// Empty: nothing to send, the watcher only moves past `through`.
    frame: Vec<u8>,
    /// Where the watch id is in `frame` (None: the frame is an error).
    watch_id_at: Option<usize>,
    /// The revision this response completes.
    through: i64,
    /// A piece of a revision that more pieces follow.
    fragment: bool,
}

/// The watch id templates are built with (any id but 0, which flatbuffers
/// would leave out).
const template_watch_id: i64 = 1;

/// Where a watch response frame holds its watch id.
fn watch_id_position(frame: &[u8]) -> Option<usize> {
    let body = frame.get(crate::protocol::frame_header_bytes..)?;
    // SAFETY: `frame` was just encoded by `encode_frame` (a whole response
    // table), so reading it unverified cannot go out of bounds; verifying
    // it cost as much as encoding it.
    let response = unsafe { flatbuffers::root_unchecked::<crate::protocol::wire::Response>(body) };
    let watch = response.body_as_watch_response()?;
    let field = watch._tab.vtable().get(crate::protocol::wire::WatchResponse::VT_WATCH_ID);
    (field != 0).then(|| crate::protocol::frame_header_bytes + watch._tab.loc() + field as usize)
}

type LogEvent<'e> = (i64, &'e Bytes, Option<&'e KeyValue>);

/// The first of `events` (in revision order, the log's up to `last`): whole
/// revisions until their keys and values reach `room` bytes (always the
/// first revision), and the revision they complete.
fn whole_revisions_within<'e>(
    events: impl Iterator<Item = LogEvent<'e>>,
    room: usize,
    last: i64,
) -> (Vec<LogEvent<'e>>, i64) {
    let mut picked: Vec<LogEvent<'e>> = Vec::new();
    let mut bytes = 0usize;
    for event in events {
        if let Some(previous) = picked.last().map(|p| p.0) {
            if bytes >= room && previous != event.0 {
                return (picked, previous);
            }
        }
        bytes += event.1.len() + event.2.map_or(0, |kv| kv.value.len());
        picked.push(event);
    }
    (picked, last)
}

type Built = Result<Vec<Template>, Error>;

/// The responses built in one round of deliveries, shared by watchers alike
/// (same filter, same position). Keyed by the filter's hash (computed when
/// the watcher was created) and the position, so finding a watcher's group
/// neither copies nor hashes its filter.
#[derive(Default)]
struct Templates {
    groups: HashMap<(u64, i64), Vec<(Filter, Built)>, Mixed>,
}

type Mixed = BuildHasherDefault<Spread>;

impl Templates {
    fn get(&self, watcher: &Watcher) -> Option<&Built> {
        let alike = self.groups.get(&(watcher.filter_hash, watcher.next))?;
        alike.iter().find(|(filter, _)| *filter == watcher.filter).map(|(_, built)| built)
    }

    fn insert(&mut self, watcher: &Watcher, built: Built) -> &Built {
        let alike = self.groups.entry((watcher.filter_hash, watcher.next)).or_default();
        alike.push((watcher.filter.clone(), built));
        &alike.last().expect("just pushed").1
    }
}

struct Round<'a> {
    snapshot: &'a crate::mvcc::Snapshot,
    log: &'a LogView,
    templates: Templates,
}

/// A core's watchers.
pub struct Hub {
    shared: Arc<Shared>,
    core: usize,
    watchers: RefCell<Watchers>,
    fbb: RefCell<FlatBufferBuilder<'static>>,
    /// Frames of the current round, per connection.
    gather: RefCell<Gather>,
    /// Responses gathered in the current round.
    round_responses: Cell<usize>,
}

thread_local! {
    static hub_of_core: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
}

/// This core's hub (started on first use).
pub fn hub(shared: &Arc<Shared>, core: usize) -> Rc<Hub> {
    hub_of_core.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let hub = Rc::new(Hub {
                    shared: shared.clone(),
                    core,
                    watchers: RefCell::new(Watchers::default()),
                    fbb: RefCell::new(FlatBufferBuilder::new()),
                    gather: RefCell::new(Gather::default()),
                    round_responses: Cell::new(0),
                });
                let woken = shared.watch.woken[core]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .expect("one hub per core");
                runtime::spawn(hub.clone().run(woken));
                hub
            })
            .clone()
    })
}

/// How long after the start of a round of `responses` the next may start.
fn round_pause(responses: usize) -> Duration {
    let responses = u32::try_from(responses).unwrap_or(u32::MAX);
    limits::watch_round_pause_per_response
        .saturating_mul(responses)
        .min(limits::watch_round_pause_max)
}

/// Why a delivery stopped.
enum Stop {
    /// Sent everything up to the newest revision known.
    CaughtUp,
    /// The connection's queue is full: try again later.
    Slow,
    /// Read one window of history; more next round (the hub yields to the
    /// core's other tasks between windows).
    More,
    /// The watcher is gone (canceled, or its connection closed).
    Gone,
}

impl Hub {
    async fn run(self: Rc<Hub>, woken: async_channel::Receiver<()>) {
        let interval = self.shared.watch.progress_interval;
        let mut next_progress = std::time::Instant::now() + interval;
        let mut last_round = std::time::Instant::now();
        let mut pause = Duration::ZERO;
        loop {
            let _ = runtime::timeout(hub_tick, woken.recv()).await;
            // Paced (limits::watch_round_pause_per_response).
            let since = last_round.elapsed();
            if since < pause {
                runtime::sleep(pause - since).await;
            }
            last_round = std::time::Instant::now();
            self.round_responses.set(0);
            self.deliver_all();
            pause = round_pause(self.round_responses.get());
            // A round may have read history: let the core's connections run.
            runtime::yield_now().await;
            if std::time::Instant::now() >= next_progress {
                next_progress += interval;
                self.notify_progress();
            }
        }
    }

    /// etcd's progress notifications: every watch created with
    /// progress_notify that is caught up and was sent nothing since the last
    /// tick gets an empty response whose header revision it is complete up to.
    fn notify_progress(&self) {
        let current = self.shared.published.load().snapshot.revision();
        let mut guard = self.watchers.borrow_mut();
        let watchers = &mut *guard;
        let synced_upto = watchers.synced_upto;
        for watcher in watchers.slots.iter_mut().flatten() {
            // The synced group is complete up to its position; a watch from
            // a future revision (never synced before it) has nothing to
            // wait for up to the store's revision.
            let complete_upto = if watcher.synced {
                Some(synced_upto)
            } else {
                (watcher.next > current).then_some(current)
            };
            if let Some(revision) = complete_upto.filter(|_| watcher.progress_notify) {
                if watcher.quiet {
                    let notification =
                        WatchResponse { watch_id: watcher.watch_id, ..Default::default() };
                    self.send(watcher, revision, notification);
                }
            }
            watcher.quiet = true;
        }
        self.gather.borrow_mut().flush();
    }

    fn count(&self, delta: isize) {
        let counter = &self.shared.watch.watchers[self.core];
        if delta > 0 {
            counter.fetch_add(delta as usize, Ordering::SeqCst);
        } else {
            counter.fetch_sub((-delta) as usize, Ordering::SeqCst);
        }
    }

    /// Counts a watch about to be created and reads the revision it is
    /// created at (its `created` response's): counted first, so every batch
    /// published after that read is recorded in the log. Followed by
    /// `create` with that revision, or `abandon`.
    pub fn begin_create(&self) -> i64 {
        self.count(1);
        self.shared.published.load().snapshot.revision()
    }

    /// Undoes `begin_create` (the connection closed before `create`).
    pub fn abandon(&self) {
        self.count(-1);
    }

    /// Opens a watch whose `created` response, at revision `current` (from
    /// `begin_create`), is already queued on `out` (so its events come
    /// after it). Without a start revision it starts right after `current`.
    pub fn create(
        &self,
        connection: u64,
        request_id: u64,
        watch_id: i64,
        request: &WatchCreateRequest,
        out: &Outbox,
        current: i64,
    ) {
        let next = if request.start_revision > 0 { request.start_revision } else { current + 1 };
        let filter = Filter {
            // Copies: the request's bytes are a slice of a whole read
            // buffer, which a long-lived watcher would otherwise keep alive.
            span: Span::new(
                &Bytes::copy_from_slice(&request.key),
                &Bytes::copy_from_slice(&request.range_end),
            ),
            no_put: request.no_put,
            no_delete: request.no_delete,
            prev_kv: request.prev_kv,
            fragment: request.fragment,
        };
        // Keyed per process: a client cannot choose filters that collide.
        static filter_hasher: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let filter_hash = {
            use std::hash::BuildHasher;
            filter_hasher.get_or_init(Default::default).hash_one(&filter)
        };
        self.watchers.borrow_mut().insert(Watcher {
            connection,
            watch_id,
            request_id,
            filter,
            filter_hash,
            next,
            out: out.clone(),
            behind: false,
            synced: false,
            progress_notify: request.progress_notify,
            quiet: true,
        });
        // Deliver what is already there without waiting for a write.
        let _ = self.shared.watch.wakers[self.core].try_send(());
    }

    /// Whether `connection` has a watch `watch_id`.
    pub fn exists(&self, connection: u64, watch_id: i64) -> bool {
        self.watchers.borrow().find(connection, watch_id).is_some()
    }

    /// Cancels a watch; answers the create request's id (its stream then
    /// ends with a `canceled` response), or None if there is no such watch.
    pub fn cancel(&self, connection: u64, watch_id: i64) -> Option<u64> {
        let mut watchers = self.watchers.borrow_mut();
        let id = watchers.find(connection, watch_id)?;
        let watcher = watchers.remove(id)?;
        drop(watchers);
        self.count(-1);
        Some(watcher.request_id)
    }

    /// Drops every watch of a connection that is going away.
    pub fn drop_connection(&self, connection: u64) {
        let mut watchers = self.watchers.borrow_mut();
        let ids: Vec<usize> = (0..watchers.slots.len())
            .filter(|id| watchers.slots[*id].as_ref().is_some_and(|w| w.connection == connection))
            .collect();
        let gone = ids.len();
        for id in ids {
            watchers.remove(id);
        }
        drop(watchers);
        if gone > 0 {
            self.count(-(gone as isize));
        }
    }

    /// The revision up to which every watch of `connection` has been sent
    /// all its events (for a progress notification), and whether it has any.
    pub fn progress(&self, connection: u64) -> i64 {
        let current = self.shared.published.load().snapshot.revision();
        let watchers = self.watchers.borrow();
        watchers
            .slots
            .iter()
            .flatten()
            .filter(|w| w.connection == connection)
            .map(|w| watchers.next_of(w) - 1)
            .fold(current, i64::min)
    }

    /// Counts a response gathered (the metric, and the round's pacing).
    fn count_response(&self) {
        add(&self.shared.metrics.cores[self.core].watch_responses, 1);
        self.round_responses.set(self.round_responses.get() + 1);
    }

    /// Gathers one response for `watcher` (after what it was sent before in
    /// this round); dropped if its connection's queue has no room.
    fn send(&self, watcher: &Watcher, revision: i64, response: WatchResponse) {
        let response = Response {
            header: self.shared.header(revision),
            result: Ok(ResponseBody::Watch(response)),
        };
        let frame = encode_frame(&mut self.fbb.borrow_mut(), watcher.request_id, &response);
        // Control responses go whatever the budget (they are small).
        let mut gather = self.gather.borrow_mut();
        if let Some(buffer) = gather.buffer(watcher.connection, &watcher.out, None) {
            buffer.extend_from_slice(&frame);
            self.count_response();
        }
    }

    fn deliver_all(&self) {
        let mut guard = self.watchers.borrow_mut();
        let watchers = &mut *guard;
        watchers.unsynced.retain(|id| watchers.slots[*id].as_ref().is_some_and(|w| !w.synced));
        watchers.unsynced.sort_unstable();
        watchers.unsynced.dedup();
        let oldest_unsynced = watchers
            .unsynced
            .iter()
            .filter_map(|id| watchers.slots[*id].as_ref().map(|w| w.next))
            .min();
        let synced_from = (watchers.synced_count > 0).then_some(watchers.synced_upto + 1);
        let Some(oldest) = [oldest_unsynced, synced_from].into_iter().flatten().min() else {
            return;
        };
        // One read of the log per round, from the oldest position any
        // watcher needs (or as far back as the log goes); then the state,
        // which holds at least everything the log does (for prev_kv).
        let log = self.shared.watch.view(oldest);
        let published = self.shared.published.load_full();
        let snapshot = &published.snapshot;
        let mut round = Round { snapshot, log: &log, templates: Templates::default() };
        // Watches of a connection without room for all its synced watches'
        // responses wait for the next round, all of them: they stay at one
        // position, and share their responses then.
        let mut left_out = std::collections::HashSet::new();
        if watchers.synced_count > 0 {
            left_out = self.deliver_synced(watchers, &mut round);
        }
        let unsynced = std::mem::take(&mut watchers.unsynced);
        let mut more = false;
        for id in unsynced {
            let Some(watcher) = watchers.slots[id].as_mut() else { continue };
            if watcher.synced {
                continue;
            }
            if left_out.contains(&id) {
                watchers.unsynced.push(id);
                continue;
            }
            match self.deliver(watcher, &mut round) {
                Stop::Gone => {
                    watchers.remove(id);
                    self.count(-1);
                }
                Stop::Slow => watchers.unsynced.push(id),
                Stop::More => {
                    watchers.unsynced.push(id);
                    more = true;
                }
                Stop::CaughtUp => {
                    let next = watcher.next;
                    // A watch from a future revision waits by itself: the
                    // synced group is never ahead of the store (its position
                    // is what progress notifications report).
                    let future = next > snapshot.revision() + 1;
                    if !future && (watchers.synced_count == 0 || next == watchers.synced_upto + 1) {
                        watchers.sync(id);
                    } else {
                        watchers.unsynced.push(id);
                    }
                }
            }
        }
        self.gather.borrow_mut().flush();
        if more {
            // Go on with the catch-ups right after the core's other tasks.
            let _ = self.shared.watch.wakers[self.core].try_send(());
        }
    }

    /// Sends the synced watchers the log's new events, each only to the
    /// watchers of its key (and the range watchers holding it); a watcher
    /// whose queue is full leaves the group. None of them is visited unless
    /// it has events.
    /// Answers the watchers left out for want of room in their connection.
    fn deliver_synced(
        &self,
        watchers: &mut Watchers,
        round: &mut Round<'_>,
    ) -> std::collections::HashSet<usize> {
        let mut left_out = std::collections::HashSet::new();
        let from = watchers.synced_upto + 1;
        let Some((batches, last)) = round.log.from(from) else {
            // The log no longer holds their position: each goes on by itself.
            let synced: Vec<usize> = (0..watchers.slots.len())
                .filter(|id| watchers.slots[*id].as_ref().is_some_and(|w| w.synced))
                .collect();
            for id in synced {
                watchers.unsync(id, from);
            }
            return left_out;
        };
        if last < from {
            return left_out;
        }
        type Matched<'e> = Vec<(i64, &'e Bytes, Option<&'e KeyValue>)>;
        // Each watcher's events, in the order watchers first matched; a
        // watcher's place in `matched` by slot (dense: no hashing per event).
        let mut matched: Vec<(usize, Matched<'_>)> = Vec::new();
        let mut place: Vec<u32> = vec![u32::MAX; watchers.slots.len()];
        let mut add = |id: usize, event| {
            if place[id] == u32::MAX {
                place[id] = matched.len() as u32;
                matched.push((id, Vec::new()));
            }
            matched[place[id] as usize].1.push(event);
        };
        for (revision, key, kv) in batches.iter().flat_map(|b| b.changes.iter()) {
            if *revision < from {
                continue;
            }
            let event = (*revision, key, kv.as_ref());
            for id in watchers.by_key.get(key).into_iter().flatten() {
                add(*id, event);
            }
            for id in &watchers.ranges {
                let Some(watcher) = watchers.slots[*id].as_ref() else { continue };
                if watcher.filter.span.contains(key) {
                    add(*id, event);
                }
            }
        }
        // Built first, then sent per connection all or nothing: watches of
        // a connection stay at one position (and share their responses when
        // they catch up) instead of scattering when its queue fills.
        let mut needed: HashMap<u64, (usize, Outbox), Mixed> = HashMap::default();
        for (id, events) in matched.iter_mut() {
            let Some(watcher) = watchers.slots[*id].as_mut() else { continue };
            watcher.next = from;
            let built = match round.templates.get(watcher) {
                Some(built) => built,
                None => {
                    let events = std::mem::take(events).into_iter();
                    let built = self.responses(watcher, round.snapshot, events, last);
                    round.templates.insert(watcher, built)
                }
            };
            let bytes: usize = built.iter().flatten().map(|t| t.frame.len()).sum();
            needed.entry(watcher.connection).or_insert_with(|| (0, watcher.out.clone())).0 += bytes;
        }
        let admitted: HashMap<u64, bool, Mixed> = {
            let gather = self.gather.borrow();
            needed.iter().map(|(c, (bytes, out))| (*c, gather.room_for(*c, out, *bytes))).collect()
        };
        for (id, _) in matched {
            let Some(watcher) = watchers.slots[id].as_mut() else { continue };
            let built = round.templates.get(watcher).expect("built above");
            let admit = admitted.get(&watcher.connection).copied().unwrap_or(false);
            if !admit && built.is_ok() {
                self.note_slow(watcher);
                watchers.unsync(id, from);
                left_out.insert(id);
                continue;
            }
            match built {
                Ok(templates) => {
                    // Admitted with its connection: no budget check per watch.
                    if !self.send_templates(watcher, templates, false) {
                        let next = watcher.next;
                        watchers.unsync(id, next);
                    }
                }
                Err(e) => {
                    self.fail(watcher, round.snapshot.revision(), e.clone());
                    watchers.remove(id);
                    self.count(-1);
                }
            }
        }
        watchers.synced_upto = last;
        left_out
    }

    /// Ends a watch whose next revision is compacted, with etcd's answer.
    fn compacted(&self, watcher: &Watcher, snapshot: &crate::mvcc::Snapshot, error: Error) -> Stop {
        let canceled = WatchResponse {
            watch_id: watcher.watch_id,
            canceled: true,
            compact_revision: snapshot.compact_revision(),
            cancel_reason: error.message,
            ..Default::default()
        };
        // etcd leaves the revision out of this header.
        self.send(watcher, 0, canceled);
        Stop::Gone
    }

    /// Sends a watcher what it has not been sent yet, as far as its queue allows.
    fn deliver(&self, watcher: &mut Watcher, round: &mut Round<'_>) -> Stop {
        let snapshot = round.snapshot;
        loop {
            if watcher.out.is_closed() {
                return Stop::Gone;
            }
            // Room for a whole response at least: else the responses built
            // below (from `next` to the newest revision) would be built
            // again every round while none of them fits.
            let room = self.gather.borrow().room_for(
                watcher.connection,
                &watcher.out,
                response_bytes_soft_max,
            );
            if !room {
                self.note_slow(watcher);
                return Stop::Slow;
            }
            // Below the compaction point the watch ends, as etcd's does,
            // even where the event log still holds those revisions.
            if watcher.next < snapshot.compact_revision() {
                return self.compacted(watcher, snapshot, Error::new(ErrorCode::Compacted));
            }
            // From the log if it holds every revision from `next` on, else
            // from history (which every published revision is in).
            if let Some((batches, last)) = round.log.from(watcher.next) {
                if watcher.behind {
                    watcher.behind = false;
                    eprintln!(
                        "corekv: watch {} of connection {} caught up at revision {}",
                        watcher.watch_id, watcher.connection, watcher.next
                    );
                }
                if last < watcher.next {
                    return Stop::CaughtUp;
                }
                if round.templates.get(watcher).is_none() {
                    // Never more built than sent: what fits a share of the
                    // connection's room (its other watches at this position
                    // send these same responses), the rest next round.
                    let room = self.gather.borrow().room(watcher.connection, &watcher.out)
                        / watcher.out.watchers().max(1);
                    let events = batches
                        .iter()
                        .flat_map(|b| b.changes.iter())
                        .filter(|(revision, key, _)| {
                            *revision >= watcher.next && watcher.filter.span.contains(key)
                        })
                        .map(|(revision, key, kv)| (*revision, key, kv.as_ref()));
                    let (picked, through) = whole_revisions_within(events, room, last);
                    let built = self.responses(watcher, snapshot, picked.into_iter(), through);
                    round.templates.insert(watcher, built);
                }
                let built = round.templates.get(watcher).expect("just built");
                return match built {
                    Ok(templates) => match self.send_templates(watcher, templates, true) {
                        true if watcher.next > last => Stop::CaughtUp,
                        true => Stop::More,
                        false => Stop::Slow,
                    },
                    Err(e) => self.fail(watcher, snapshot.revision(), e.clone()),
                };
            }
            let current = snapshot.revision();
            if watcher.next > current {
                return Stop::CaughtUp;
            }
            if !watcher.behind {
                watcher.behind = true;
                add(&self.shared.metrics.cores[self.core].watch_catch_ups, 1);
                eprintln!(
                    "corekv: watch {} of connection {} is behind the event log; \
                     reading history from revision {}",
                    watcher.watch_id, watcher.connection, watcher.next
                );
            }
            let upper = (watcher.next + catch_up_revisions - 1).min(current);
            let events = match snapshot.events(&watcher.filter.span, watcher.next, upper, false) {
                Ok(events) => events,
                Err(e) if e.code == ErrorCode::Compacted => {
                    return self.compacted(watcher, snapshot, e);
                }
                Err(e) => return self.fail(watcher, current, e),
            };
            let events = events.iter().map(|e| (e.revision, &e.key, e.kv.as_ref()));
            let templates = match self.responses(watcher, snapshot, events, upper) {
                Ok(templates) => templates,
                Err(e) => return self.fail(watcher, current, e),
            };
            if !self.send_templates(watcher, &templates, true) {
                return Stop::Slow;
            }
            if watcher.next <= current {
                return Stop::More;
            }
        }
    }

    /// Says so (once until it takes events again) when a connection's
    /// queue holds all its watches may queue: its client reads slower than
    /// its events come, and its watches wait (reading history later if the
    /// event log moves past them).
    fn note_slow(&self, watcher: &Watcher) {
        if watcher.out.set_slow() {
            add(&self.shared.metrics.cores[self.core].watch_slow_connections, 1);
            eprintln!(
                "corekv: connection {} is slow: its watches wait ({} bytes queued)",
                watcher.connection,
                watcher.out.bytes()
            );
        }
    }

    /// Ends a watch that cannot go on (its history cannot be read).
    fn fail(&self, watcher: &Watcher, revision: i64, error: Error) -> Stop {
        let canceled = WatchResponse {
            watch_id: watcher.watch_id,
            canceled: true,
            cancel_reason: error.message,
            ..Default::default()
        };
        self.send(watcher, revision, canceled);
        Stop::Gone
    }

    /// The responses carrying `events` (revisions from `watcher.next`
    /// through `upper`, in order) for any watcher with `watcher`'s span,
    /// filters and position: whole revisions per response (a revision split
    /// only when fragmenting), each marked with the revision it completes.
    /// The last one completes `upper` (an empty list: nothing to send, but
    /// the watcher moves past `upper`).
    fn responses<'e>(
        &self,
        watcher: &Watcher,
        snapshot: &crate::mvcc::Snapshot,
        events: impl Iterator<Item = (i64, &'e Bytes, Option<&'e KeyValue>)>,
        upper: i64,
    ) -> Result<Vec<Template>, Error> {
        let mut templates = Vec::new();
        let mut response: Vec<WatchEvent> = Vec::new();
        let mut bytes = 0usize;
        let mut events = events.peekable();
        while let Some(&(revision, _, _)) = events.peek() {
            // One revision's events.
            let mut group: Vec<WatchEvent> = Vec::new();
            while let Some((_, key, kv)) = events.next_if(|e| e.0 == revision) {
                let kind = if kv.is_some() { EventType::Put } else { EventType::Delete };
                if (kind == EventType::Put && watcher.filter.no_put)
                    || (kind == EventType::Delete && watcher.filter.no_delete)
                {
                    continue;
                }
                let prev_kv = match watcher.filter.prev_kv {
                    true => snapshot.visible(key, revision - 1)?,
                    false => None,
                };
                let kv = kv.cloned().unwrap_or_else(|| KeyValue {
                    key: key.clone(),
                    mod_revision: revision,
                    ..Default::default()
                });
                group.push(WatchEvent { kind, kv, prev_kv });
            }
            let group_bytes: usize = group.iter().map(|e| e.kv.key.len() + e.kv.value.len()).sum();
            let full = response.len() + group.len() > response_events_max
                || bytes + group_bytes > response_bytes_soft_max;
            if full && !response.is_empty() {
                let through = response.last().expect("not empty").kv.mod_revision;
                templates.push(self.template(watcher, std::mem::take(&mut response), through));
                bytes = 0;
            }
            if watcher.filter.fragment && group.len() > response_events_max {
                let mut pieces = group.chunks(response_events_max).peekable();
                while let Some(piece) = pieces.next() {
                    let more = pieces.peek().is_some();
                    let fragment = WatchResponse {
                        watch_id: template_watch_id,
                        fragment: more,
                        events: piece.to_vec(),
                        ..Default::default()
                    };
                    let mut template = self.encode_template(fragment, revision);
                    template.fragment = more;
                    templates.push(template);
                }
                continue;
            }
            bytes += group_bytes;
            response.extend(group);
        }
        templates.push(self.template(watcher, response, upper));
        Ok(templates)
    }

    /// A response of `events` completing revision `through` (none: a marker
    /// that only moves the watcher on).
    fn template(&self, _watcher: &Watcher, events: Vec<WatchEvent>, through: i64) -> Template {
        if events.is_empty() {
            return Template { frame: Vec::new(), watch_id_at: None, through, fragment: false };
        }
        let response = WatchResponse { watch_id: template_watch_id, events, ..Default::default() };
        self.encode_template(response, through)
    }

    fn encode_template(&self, response: WatchResponse, through: i64) -> Template {
        let response = Response {
            header: self.shared.header(through),
            result: Ok(ResponseBody::Watch(response)),
        };
        let frame = encode_frame(&mut self.fbb.borrow_mut(), 0, &response);
        let watch_id_at = watch_id_position(&frame);
        Template { frame, watch_id_at, through, fragment: false }
    }

    /// Sends a watcher its copies of `templates`, moving `next` past each
    /// revision completed; false if its queue filled up first (`budget`:
    /// checked against the connection's budget, unless the caller admitted
    /// the whole round already). A fragmented revision is sent whole or not
    /// at all (a resent fragment would repeat).
    fn send_templates(&self, watcher: &mut Watcher, templates: &[Template], budget: bool) -> bool {
        let mut gather = self.gather.borrow_mut();
        let mut i = 0;
        while i < templates.len() {
            // A template, or a run of fragments up to the one that ends
            // its revision.
            let mut j = i;
            while templates[j].fragment && j + 1 < templates.len() {
                j += 1;
            }
            let run = &templates[i..=j];
            let bytes: usize = run.iter().map(|t| t.frame.len()).sum();
            if bytes > 0 {
                let checked = budget.then_some(bytes);
                let Some(buffer) = gather.buffer(watcher.connection, &watcher.out, checked) else {
                    self.note_slow(watcher);
                    return false;
                };
                for template in run.iter().filter(|t| !t.frame.is_empty()) {
                    let at = buffer.len();
                    buffer.extend_from_slice(&template.frame);
                    buffer[at + 4..at + 12].copy_from_slice(&watcher.request_id.to_le_bytes());
                    if let Some(id_at) = template.watch_id_at {
                        let id_at = at + id_at;
                        buffer[id_at..id_at + 8].copy_from_slice(&watcher.watch_id.to_le_bytes());
                    }
                    self.count_response();
                }
                if watcher.out.clear_slow() {
                    eprintln!("corekv: connection {} takes watch events again", watcher.connection);
                }
                watcher.quiet = false;
            }
            watcher.next = watcher.next.max(run[run.len() - 1].through + 1);
            i = j + 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_pause_by_their_responses_up_to_the_bound() {
        assert_eq!(round_pause(0), Duration::ZERO);
        assert_eq!(round_pause(1), limits::watch_round_pause_per_response);
        assert_eq!(round_pause(10), 10 * limits::watch_round_pause_per_response);
        assert!(round_pause(10) < limits::watch_round_pause_max);
        assert_eq!(round_pause(1_000_000), limits::watch_round_pause_max);
        assert_eq!(round_pause(usize::MAX), limits::watch_round_pause_max);
    }

    #[test]
    fn whole_revisions_until_the_room_is_used() {
        let (k, v) = (
            Bytes::from_static(b"key"),
            KeyValue { value: vec![0; 7].into(), ..Default::default() },
        );
        // Revisions 5, 5, 6, 7: 10 bytes an event (3 of key, 7 of value).
        let events = [(5, &k, Some(&v)), (5, &k, Some(&v)), (6, &k, None), (7, &k, Some(&v))];
        let cut = |room| {
            let (picked, through) = whole_revisions_within(events.iter().copied(), room, 9);
            (picked.iter().map(|e| e.0).collect::<Vec<_>>(), through)
        };
        assert_eq!(cut(0), (vec![5, 5], 5), "the first revision always, whole");
        assert_eq!(cut(15), (vec![5, 5], 5), "never half a revision");
        assert_eq!(cut(20), (vec![5, 5], 5));
        assert_eq!(cut(21), (vec![5, 5, 6], 6));
        assert_eq!(cut(1000), (vec![5, 5, 6, 7], 9), "all of it completes the log's last");
    }
}
