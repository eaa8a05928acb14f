//! The running lease countdown of the member that leads (with one member,
//! itself): deadlines on the lease clock (`mvcc::lease`), renewed by
//! keep-alives from any core, and a task on the log driver's home core that
//! proposes a revocation when a lease expires and, every
//! `limits::lease_checkpoint_ms`, a checkpoint of the lease clock and of the
//! deadlines renewed since the last one. Expiry thus goes through the log,
//! ordered with the writes, as etcd's does. A keep-alive is answered once a
//! checkpoint of its new deadline is in the log (`renew_durably`): an
//! answered keep-alive survives a crash right after it.
//!
//! The countdown is not replicated state: it is rebuilt from the lease table
//! when the member starts, each lease then ending at its checkpointed
//! deadline (the clock resumes where the last checkpoint left it, so
//! downtime does not count, and at most one checkpoint interval is added).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::shared::{Proposal, Shared};
use crate::error::{Error, ErrorCode};
use crate::limits;
use crate::mvcc::{Leases, Snapshot};
use crate::types::*;

struct Countdown {
    ttl: i64,
    expiry_ms: i64,
    /// Renewed or granted since the last checkpoint (and in `dirty`).
    dirty: bool,
    /// When its revocation was proposed (on the lease clock).
    revoking_since: Option<i64>,
}

/// The countdowns, with what keeps the periodic work independent of how
/// many leases there are: the leases to checkpoint, and a time before which
/// none can be due (so most ticks look at nothing).
#[derive(Default)]
struct Countdowns {
    map: HashMap<i64, Countdown>,
    /// Leases renewed or granted since the last checkpoint (some may have
    /// been revoked since), oldest first: a checkpoint that cannot carry
    /// them all takes the longest waiting, so none waits forever.
    dirty: std::collections::VecDeque<i64>,
    /// No lease expires, nor is due for another revocation proposal, before
    /// this (a lower bound: renewals only move deadlines later).
    quiet_until_ms: i64,
    /// Keep-alives so far (each one's number is its place in this count).
    renewals: u64,
    /// Keep-alives waiting to be answered until a checkpoint holding their
    /// deadline is applied, oldest first (numbers increasing).
    waiting: std::collections::VecDeque<(u64, KeepAliveWaiter)>,
}

/// A keep-alive answered once its deadline is in the log.
struct KeepAliveWaiter {
    reply: async_channel::Sender<super::shared::Reply>,
    request_id: u64,
    answer: LeaseKeepAliveResponse,
}

impl Countdowns {
    fn mark_dirty(&mut self, id: i64) {
        if let Some(lease) = self.map.get_mut(&id) {
            if !lease.dirty {
                lease.dirty = true;
                self.dirty.push_back(id);
            }
        }
    }
}

pub struct Lessor {
    started: Instant,
    /// The lease clock when `started` was taken.
    base_ms: i64,
    leases: Mutex<Countdowns>,
    /// Wakes the lease task when a keep-alive waits (`run`).
    renewed: (async_channel::Sender<()>, async_channel::Receiver<()>),
}

impl Lessor {
    /// The countdown of every lease in `leases`, resumed from its checkpoint,
    /// with at least `limits::lease_restart_grace_ms` left (etcd extends
    /// every lease by an election timeout when a member starts leading):
    /// clients get a moment to reach the member again before a lease that
    /// was about to expire does.
    pub fn new(leases: &Leases) -> Lessor {
        let base_ms = leases.clock_ms();
        let mut countdowns = Countdowns { quiet_until_ms: i64::MAX, ..Default::default() };
        for (id, lease) in leases.iter() {
            let (expiry_ms, checkpointed) = match lease.expiry_ms {
                0 => (base_ms + lease.ttl * 1000, false),
                expiry_ms => (expiry_ms, true),
            };
            let expiry_ms = expiry_ms.max(base_ms + limits::lease_restart_grace_ms);
            let countdown =
                Countdown { ttl: lease.ttl, expiry_ms, dirty: false, revoking_since: None };
            countdowns.map.insert(id, countdown);
            countdowns.quiet_until_ms = countdowns.quiet_until_ms.min(expiry_ms);
            if !checkpointed {
                countdowns.mark_dirty(id);
            }
        }
        Lessor {
            started: Instant::now(),
            base_ms,
            leases: Mutex::new(countdowns),
            renewed: async_channel::bounded(1),
        }
    }

    /// The lease clock now.
    pub fn now_ms(&self) -> i64 {
        self.base_ms + self.started.elapsed().as_millis() as i64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Countdowns> {
        self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A grant was applied: the lease counts down its full TTL from now.
    pub fn granted(&self, id: i64, ttl: i64) {
        let mut leases = self.lock();
        let expiry_ms = self.now_ms() + ttl * 1000;
        leases.map.insert(id, Countdown { ttl, expiry_ms, dirty: false, revoking_since: None });
        leases.quiet_until_ms = leases.quiet_until_ms.min(expiry_ms);
        leases.mark_dirty(id);
    }

    /// A revocation was applied (or found no such lease).
    pub fn revoked(&self, id: i64) {
        self.lock().map.remove(&id);
    }

    /// A keep-alive: the lease's TTL, counting from now, or None if it does
    /// not exist or has expired (its revocation is on its way). The clock is
    /// read under the lock: an expiry seen by `expired` is seen here too.
    #[cfg(test)]
    pub fn renew(&self, id: i64) -> Option<i64> {
        let (reply, _) = async_channel::bounded(1);
        let ttl = self.renew_durably(id, reply, 0)?;
        self.lock().waiting.pop_back().expect("just queued");
        Some(ttl)
    }

    /// A keep-alive of request `request_id`, answered through `reply` once a
    /// checkpoint holding its new deadline is applied: an answered
    /// keep-alive survives a crash right after it. The lease task (`run`)
    /// carries the deadlines renewed meanwhile in one checkpoint entry.
    /// Answers the TTL, or None (nothing queued) if the lease does not exist
    /// or has expired.
    pub fn renew_durably(
        &self,
        id: i64,
        reply: async_channel::Sender<super::shared::Reply>,
        request_id: u64,
    ) -> Option<i64> {
        let mut leases = self.lock();
        let now = self.now_ms();
        let lease = leases.map.get_mut(&id)?;
        if lease.expiry_ms <= now || lease.revoking_since.is_some() {
            return None;
        }
        lease.expiry_ms = now + lease.ttl * 1000;
        let ttl = lease.ttl;
        let answer = LeaseKeepAliveResponse { id, ttl };
        leases.mark_dirty(id);
        leases.renewals += 1;
        let number = leases.renewals;
        leases.waiting.push_back((number, KeepAliveWaiter { reply, request_id, answer }));
        drop(leases);
        let _ = self.renewed.0.try_send(());
        Some(ttl)
    }

    /// Milliseconds left before lease `id` expires (0 once it has).
    pub fn remaining_ms(&self, id: i64) -> Option<i64> {
        let now = self.now_ms();
        self.lock().map.get(&id).map(|lease| (lease.expiry_ms - now).max(0))
    }

    /// Expired leases whose revocation is not yet proposed (or was proposed
    /// long enough ago to try again), at most `max`, soonest first. Looks at
    /// the leases only once one may be due.
    pub fn expired(&self, max: usize) -> Vec<i64> {
        let mut leases = self.lock();
        let now = self.now_ms();
        if now < leases.quiet_until_ms {
            return Vec::new();
        }
        // When each lease is next due: its expiry, or the retry of a
        // revocation proposed and not yet applied.
        let due_at = |l: &Countdown| match l.revoking_since {
            None => l.expiry_ms,
            Some(at) => at + limits::lease_revoke_retry_ms,
        };
        let mut due: Vec<(i64, i64)> = leases
            .map
            .iter()
            .filter(|(_, l)| due_at(l) <= now)
            .map(|(id, l)| (l.expiry_ms, *id))
            .collect();
        due.sort_unstable();
        due.truncate(max);
        for (_, id) in &due {
            if let Some(lease) = leases.map.get_mut(id) {
                lease.revoking_since = Some(now);
            }
        }
        leases.quiet_until_ms = leases.map.values().map(due_at).min().unwrap_or(i64::MAX);
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// The clock now and the deadlines renewed since the last checkpoint
    /// (at most `limits::lease_checkpoint_deadlines_max`; the rest stay due).
    /// None when there are no leases: the clock then need not move.
    #[cfg(test)]
    pub fn checkpoint(&self) -> Option<LeaseCheckpointRequest> {
        self.checkpoint_covering().0
    }

    /// `checkpoint`, and the number of keep-alives whose deadlines it and
    /// the checkpoints before it hold (None if some are still left over):
    /// those may be answered once it is applied (`answer_upto`).
    fn checkpoint_covering(&self) -> (Option<LeaseCheckpointRequest>, Option<u64>) {
        let mut leases = self.lock();
        let clock_ms = self.now_ms();
        if leases.map.is_empty() {
            leases.dirty.clear();
            return (None, Some(leases.renewals));
        }
        let mut deadlines = Vec::new();
        while deadlines.len() < limits::lease_checkpoint_deadlines_max {
            let Some(id) = leases.dirty.pop_front() else { break };
            if let Some(lease) = leases.map.get_mut(&id) {
                lease.dirty = false;
                deadlines.push((id, lease.expiry_ms));
            }
        }
        deadlines.sort_unstable();
        let covered = leases.dirty.is_empty().then_some(leases.renewals);
        (Some(LeaseCheckpointRequest { clock_ms, deadlines }), covered)
    }

    /// Takes the keep-alives numbered up to `covered`, to be answered.
    fn answer_upto(&self, covered: u64) -> Vec<KeepAliveWaiter> {
        let mut leases = self.lock();
        let mut answered = Vec::new();
        while leases.waiting.front().is_some_and(|(number, _)| *number <= covered) {
            answered.extend(leases.waiting.pop_front().map(|(_, waiter)| waiter));
        }
        answered
    }

    fn has_waiting(&self) -> bool {
        !self.lock().waiting.is_empty()
    }
}

/// The answers the member gives itself: time-to-live, the list (from
/// `snapshot`, the published state, and the countdown); a checkpoint from a
/// client is refused. (A keep-alive goes through the log: `renew_durably`.)
pub fn serve(
    shared: &Shared,
    snapshot: &Snapshot,
    request: &Request,
) -> Result<ResponseBody, Error> {
    let leases = snapshot.leases();
    match request {
        Request::LeaseTimeToLive(t) => {
            let remaining = shared.lessor.remaining_ms(t.id);
            let answer = match (leases.get(t.id), remaining) {
                (Some(lease), Some(remaining_ms)) => LeaseTimeToLiveResponse {
                    id: t.id,
                    // Whole seconds, rounded down, as etcd answers.
                    ttl: remaining_ms / 1000,
                    granted_ttl: lease.ttl,
                    keys: if t.keys { lease.keys.iter().cloned().collect() } else { Vec::new() },
                },
                _ => {
                    LeaseTimeToLiveResponse { id: t.id, ttl: -1, granted_ttl: 0, keys: Vec::new() }
                }
            };
            Ok(ResponseBody::LeaseTimeToLive(answer))
        }
        Request::LeaseLeases => {
            // Soonest to expire first, as etcd lists them (one lock for all).
            let countdowns = shared.lessor.lock();
            let expiry = |id: i64| countdowns.map.get(&id).map_or(i64::MAX, |c| c.expiry_ms);
            let mut ids: Vec<(i64, i64)> = leases.iter().map(|(id, _)| (expiry(id), id)).collect();
            drop(countdowns);
            ids.sort_unstable();
            Ok(ResponseBody::LeaseLeases(ids.into_iter().map(|(_, id)| id).collect()))
        }
        Request::LeaseCheckpoint(_) => Err(Error::with_message(
            ErrorCode::InvalidArgument,
            "corekv: lease checkpoints are written by the member itself",
        )),
        _ => unreachable!("only lease reads are served here"),
    }
}

/// A grant as it goes into the log: its TTL raised to the minimum (etcd
/// raises it when applying; here the log holds what is granted), and an id
/// picked when the client left it 0.
pub fn prepare_grant(shared: &Shared, mut grant: LeaseGrantRequest) -> Request {
    grant.ttl = grant.ttl.max(limits::lease_ttl_min_secs);
    if grant.id == 0 {
        let published = shared.published.load();
        grant.id = loop {
            let id = next_lease_id(shared.member_id);
            if !published.snapshot.leases().contains(id) {
                break id;
            }
        };
    }
    Request::LeaseGrant(grant)
}

/// A fresh positive lease id: the member id, the time and a counter, hashed
/// (unique in practice; a clash is caught by the grant as etcd's is).
fn next_lease_id(member_id: u64) -> i64 {
    static counter: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let mut seed = [0u8; 24];
    seed[..8].copy_from_slice(&member_id.to_le_bytes());
    seed[8..16].copy_from_slice(&nanos.to_le_bytes());
    seed[16..].copy_from_slice(&n.to_le_bytes());
    match (xxhash_rust::xxh3::xxh3_64(&seed) >> 1) as i64 {
        0 => 1,
        id => id,
    }
}

/// Proposes `request` as the member's own entry; its answer goes to `reply`.
async fn propose(
    shared: &Shared,
    reply: &async_channel::Sender<super::shared::Reply>,
    request: Request,
) -> bool {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let payload =
        Bytes::copy_from_slice(crate::protocol::codec::encode_request(&mut fbb, &request));
    let proposal = Proposal { request, payload, request_id: 0, reply: reply.clone(), origin: None };
    shared.proposals.send(proposal).await.is_ok()
}

/// The expiry and checkpoint task, on the log driver's home core. Every tick it
/// proposes the revocation of expired leases; every
/// `limits::lease_checkpoint_ms`, or at once when keep-alives wait, a
/// checkpoint of the clock and the renewed deadlines, one at a time: the
/// keep-alives it holds are answered when it is applied.
pub async fn run(shared: Arc<Shared>) {
    // Revocations' answers go to a closed channel: the driver's send fails
    // and is ignored.
    let (ignored, _) = async_channel::bounded(1);
    let (applied_tx, applied) = async_channel::bounded(1);
    let tick = Duration::from_millis(limits::lease_tick_ms);
    let checkpoint_every = Duration::from_millis(limits::lease_checkpoint_ms);
    let mut last_checkpoint = Instant::now();
    let mut last_tick = Instant::now();
    let lessor = &shared.lessor;
    loop {
        if !lessor.has_waiting() {
            let _ = crate::runtime::timeout(tick, lessor.renewed.1.recv()).await;
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            for id in lessor.expired(limits::lease_revokes_per_tick) {
                if !propose(&shared, &ignored, Request::LeaseRevoke(id)).await {
                    return;
                }
            }
        }
        if !lessor.has_waiting() && last_checkpoint.elapsed() < checkpoint_every {
            continue;
        }
        last_checkpoint = Instant::now();
        let (checkpoint, covered) = lessor.checkpoint_covering();
        let header = match checkpoint {
            Some(checkpoint) => {
                if !propose(&shared, &applied_tx, Request::LeaseCheckpoint(checkpoint)).await {
                    return;
                }
                match applied.recv().await {
                    Ok((_, response)) => response.header,
                    Err(_) => return,
                }
            }
            None => shared.header(shared.published.load().snapshot.revision()),
        };
        for waiter in covered.map(|c| lessor.answer_upto(c)).unwrap_or_default() {
            let answer = ResponseBody::LeaseKeepAlive(waiter.answer);
            let response = Response { header, result: Ok(answer) };
            // A full or closed channel means the connection is gone.
            let _ = waiter.reply.try_send((waiter.request_id, Box::new(response)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::Store;

    fn store_with(leases: &[(i64, i64)], clock_ms: i64, deadlines: Vec<(i64, i64)>) -> Store {
        let mut store = Store::new();
        for (id, ttl) in leases {
            store.apply(&Request::LeaseGrant(LeaseGrantRequest { ttl: *ttl, id: *id })).unwrap();
        }
        let checkpoint = LeaseCheckpointRequest { clock_ms, deadlines };
        store.apply(&Request::LeaseCheckpoint(checkpoint)).unwrap();
        store
    }

    #[test]
    fn a_restart_resumes_checkpointed_deadlines_with_a_grace_floor() {
        // Lease 1: 30 s left at the checkpoint; 2: 0.2 s left; 3: never
        // checkpointed (its full TTL).
        let store =
            store_with(&[(1, 60), (2, 60), (3, 10)], 100_000, vec![(1, 130_000), (2, 100_200)]);
        let lessor = Lessor::new(store.snapshot().leases());
        let remaining = |id| lessor.remaining_ms(id).unwrap();
        assert!((29_900..=30_000).contains(&remaining(1)), "{}", remaining(1));
        assert!((900..=1_000).contains(&remaining(2)), "grace: {}", remaining(2));
        assert!((9_900..=10_000).contains(&remaining(3)), "{}", remaining(3));
        // Lease 3's deadline is not on record yet: the next checkpoint has it.
        let checkpoint = lessor.checkpoint().unwrap();
        assert!(checkpoint.clock_ms >= 100_000);
        assert_eq!(checkpoint.deadlines.iter().map(|d| d.0).collect::<Vec<_>>(), vec![3]);
        assert!(lessor.checkpoint().unwrap().deadlines.is_empty(), "sent once");
    }

    #[test]
    fn an_expired_lease_is_revoked_once_and_never_renewed() {
        let store = store_with(&[(7, 60)], 5_000, vec![(7, 4_000)]);
        let lessor = Lessor::new(store.snapshot().leases());
        assert_eq!(lessor.expired(10), Vec::<i64>::new(), "the grace second first");
        std::thread::sleep(Duration::from_millis(1_050));
        assert_eq!(lessor.expired(10), vec![7]);
        assert_eq!(lessor.expired(10), Vec::<i64>::new(), "proposed once");
        assert_eq!(lessor.renew(7), None, "its revocation is on its way");
        lessor.revoked(7);
        assert_eq!(lessor.remaining_ms(7), None);
        assert!(lessor.checkpoint().is_none(), "no leases, no checkpoints");
    }

    #[test]
    fn ticks_look_only_at_what_is_due_and_checkpoints_carry_each_renewal_once() {
        let lessor = Lessor::new(&Leases::default());
        for id in 1..=1000 {
            lessor.granted(id, 60);
        }
        lessor.granted(5000, 2);
        assert_eq!(lessor.expired(100), Vec::<i64>::new(), "nothing due yet");
        let first = lessor.checkpoint().unwrap();
        assert_eq!(first.deadlines.len(), 1001, "every grant once");
        for _ in 0..3 {
            assert_eq!(lessor.renew(7), Some(60));
        }
        lessor.revoked(8);
        let second = lessor.checkpoint().unwrap();
        assert_eq!(second.deadlines.iter().map(|d| d.0).collect::<Vec<_>>(), vec![7]);
        std::thread::sleep(Duration::from_millis(2_050));
        assert_eq!(lessor.expired(100), vec![5000], "only the short lease");
        assert_eq!(lessor.expired(100), Vec::<i64>::new());
        // Not applied: proposed again after the retry interval.
        std::thread::sleep(Duration::from_millis(limits::lease_revoke_retry_ms as u64 + 50));
        assert_eq!(lessor.expired(100), vec![5000]);
    }

    /// More renewals than one checkpoint carries: those waiting longest go
    /// first, so under a steady stream of renewals none is left behind.
    #[test]
    fn a_checkpoint_that_cannot_carry_every_renewal_takes_the_oldest() {
        let max = limits::lease_checkpoint_deadlines_max as i64;
        let lessor = Lessor::new(&Leases::default());
        for id in 1..=max + 10 {
            lessor.granted(id, 60);
        }
        let first = lessor.checkpoint().unwrap();
        assert_eq!(first.deadlines.len() as i64, max);
        assert!(first.deadlines.iter().all(|(id, _)| *id <= max), "the oldest first");
        // Renewed again before the next checkpoint: the 10 left over still go next.
        for id in 1..=max {
            lessor.renew(id);
        }
        let second = lessor.checkpoint().unwrap();
        let carried: Vec<i64> = second.deadlines.iter().map(|d| d.0).collect();
        assert!((max + 1..=max + 10).all(|id| carried.contains(&id)), "left behind");
    }

    #[test]
    fn a_keep_alive_restarts_the_full_ttl_and_is_checkpointed() {
        let lessor = Lessor::new(&Leases::default());
        lessor.granted(9, 5);
        lessor.checkpoint();
        std::thread::sleep(Duration::from_millis(30));
        assert!(lessor.remaining_ms(9).unwrap() < 4_990);
        assert_eq!(lessor.renew(9), Some(5));
        assert!(lessor.remaining_ms(9).unwrap() >= 4_990);
        assert_eq!(lessor.checkpoint().unwrap().deadlines.len(), 1);
        assert_eq!(lessor.renew(10), None);
    }
}
