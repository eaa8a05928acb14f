//! Leases in the replicated state, with etcd's semantics: a lease has a
//! granted TTL and the set of keys attached to it; revoking it deletes every
//! attached key in one revision. What is replicated (and so deterministic):
//! grants, revocations, and checkpoints of the lease clock and deadlines.
//! What is not: the running countdown, kept by the member that leads
//! (`server::lessor`), which proposes revocations when leases expire.
//!
//! The lease clock counts the milliseconds leases have been counting down
//! over the member's whole life (it stands still while no member leads, as
//! etcd's leases do). Deadlines are on that clock, so a member that starts
//! from a checkpoint at clock C gives a lease with expiry E exactly E - C
//! milliseconds more: neither the full TTL again nor nothing (etcd #9888).
//!
//! Invariants (`check`): every lease's key set holds exactly the live keys
//! whose newest version names that lease; no live key names a lease that
//! does not exist.

use std::sync::Arc;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};

use super::{HistoryChange, Store};
use crate::error::{Error, ErrorCode};
use crate::types::*;

/// etcd's MaxLeaseTTL (seconds).
pub const lease_ttl_max: i64 = 9_000_000_000;

/// One lease: its granted TTL (seconds), its deadline on the lease clock as
/// last checkpointed (0: never checkpointed, the full TTL from a restart),
/// and the keys attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub ttl: i64,
    pub expiry_ms: i64,
    pub keys: OrdSet<Bytes>,
}

/// Every lease, by id, and the lease clock as last checkpointed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leases {
    map: OrdMap<i64, Arc<Lease>>,
    clock_ms: i64,
}

impl Leases {
    pub fn get(&self, id: i64) -> Option<&Arc<Lease>> {
        self.map.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.map.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every lease, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Arc<Lease>)> + '_ {
        self.map.iter().map(|(id, lease)| (*id, lease))
    }

    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// Adds a lease without keys (grants, and loads from a snapshot or the
    /// page store: keys attach as they are loaded).
    pub(crate) fn insert(&mut self, id: i64, ttl: i64, expiry_ms: i64) {
        self.map.insert(id, Arc::new(Lease { ttl, expiry_ms, keys: OrdSet::new() }));
    }

    pub(crate) fn set_clock(&mut self, clock_ms: i64) {
        self.clock_ms = self.clock_ms.max(clock_ms);
    }

    /// Attaches `key` to lease `id` (which exists: puts are checked first).
    pub(crate) fn attach(&mut self, id: i64, key: &Bytes) {
        if let Some(lease) = self.map.get_mut(&id) {
            Arc::make_mut(lease).keys.insert(key.clone());
        }
    }

    pub(crate) fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.map.get_mut(&id) {
            Arc::make_mut(lease).keys.remove(key);
        }
    }

    /// Panics unless the key sets match `live` (each live key and its lease).
    pub fn check(&self, live: &[(Bytes, i64)]) {
        let mut attached: Vec<(Bytes, i64)> = self
            .map
            .iter()
            .flat_map(|(id, lease)| lease.keys.iter().map(move |key| (key.clone(), *id)))
            .collect();
        attached.sort();
        let mut expected: Vec<(Bytes, i64)> =
            live.iter().filter(|(_, lease)| *lease != 0).cloned().collect();
        expected.sort();
        assert_eq!(attached, expected, "lease key sets differ from the keys' leases");
    }
}

impl Store {
    /// Grants a lease (the TTL was raised to the member's minimum before it
    /// was proposed: the log holds the TTL granted).
    pub(super) fn lease_grant(&mut self, g: &LeaseGrantRequest) -> Result<ResponseBody, Error> {
        if g.id == 0 {
            return Err(Error::new(ErrorCode::LeaseNotFound));
        }
        if g.ttl > lease_ttl_max {
            return Err(Error::new(ErrorCode::LeaseTtlTooLarge));
        }
        if g.ttl < 1 {
            // The member raises TTLs before proposing: only a forged entry
            // gets here, and what the store could not load back is refused.
            return Err(Error::with_message(
                ErrorCode::InvalidArgument,
                "corekv: lease TTL below 1 s",
            ));
        }
        if self.state.leases.contains(g.id) {
            return Err(Error::new(ErrorCode::LeaseExists));
        }
        self.state.leases.insert(g.id, g.ttl, 0);
        self.record_lease(g.id);
        Ok(ResponseBody::LeaseGrant(LeaseGrantResponse { id: g.id, ttl: g.ttl }))
    }

    /// Revokes a lease: its keys are deleted in one revision (in key order,
    /// as etcd does), then the lease goes.
    pub(super) fn lease_revoke(&mut self, id: i64) -> Result<ResponseBody, Error> {
        let Some(lease) = self.state.leases.get(id).cloned() else {
            return Err(Error::new(ErrorCode::LeaseNotFound));
        };
        let mut change = super::write::Change::new(&mut self.state, self.log.as_mut());
        for key in lease.keys.iter() {
            let delete = DeleteRangeRequest { key: key.clone(), ..Default::default() };
            change.delete(&delete)?;
        }
        change.finish();
        self.state.leases.map.remove(&id);
        self.record_lease(id);
        Ok(ResponseBody::LeaseRevoke)
    }

    /// The member's checkpoint of the lease clock and renewed deadlines
    /// (deadlines of leases revoked since are ignored). A deadline only
    /// moves later: a keep-alive's own checkpoint may be applied before a
    /// periodic one taken just before that keep-alive.
    pub(super) fn lease_checkpoint(&mut self, c: &LeaseCheckpointRequest) -> ResponseBody {
        // Negative times are never written; one that were is ignored rather
        // than stored where a restart would refuse it.
        self.state.leases.set_clock(c.clock_ms.max(0));
        if let Some(log) = &mut self.log {
            log.push(HistoryChange::LeaseClock(self.state.leases.clock_ms));
        }
        for (id, expiry_ms) in c.deadlines.iter().filter(|(_, expiry_ms)| *expiry_ms >= 0) {
            if let Some(lease) = self.state.leases.map.get_mut(id) {
                let lease = Arc::make_mut(lease);
                lease.expiry_ms = lease.expiry_ms.max(*expiry_ms);
                self.record_lease(*id);
            }
        }
        ResponseBody::LeaseCheckpoint
    }

    /// Records lease `id` as it now is (or its absence) for the page store.
    fn record_lease(&mut self, id: i64) {
        if let Some(log) = &mut self.log {
            let lease = self.state.leases.get(id).map(|l| (l.ttl, l.expiry_ms));
            log.push(HistoryChange::Lease { id, lease });
        }
    }
}
