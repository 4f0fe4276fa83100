//! The lessor: the replicated lease table (which leases exist, their TTLs, the keys attached to
//! each) and this replica's own clock of when each lease expires.
//!
//! Two kinds of state live here, kept apart on purpose:
//! - **Replicated**: the leases granted and not revoked (id → granted TTL), and the keys
//!   attached to each. Changed only by applying committed commands, so every replica holds the
//!   same. The TTLs go into the replica's snapshot; the attached keys are derived from the mvcc
//!   store (every live key whose `lease` is non-zero).
//! - **Local**: a deadline per lease, in ticks of this replica's monotonic clock. Only a leader
//!   acts on it (it proposes revokes for expired leases and serves keep-alives); a replica that
//!   becomes leader restarts every deadline at `now + ttl`, so no lease expires early because
//!   leadership moved (as etcd's lessor on promotion).

use crate::error::LeaseError;
use crate::snapshot::LeaseRecord;
use chorus_mvcc::{Event, EventKind};
use std::collections::{BTreeMap, BTreeSet};

/// The largest TTL a lease may be granted, in seconds: etcd's `MaxLeaseTTL`.
pub const LEASE_TTL_SECONDS_MAX: i64 = 9_000_000_000;

/// What [`crate::Replica::lease_time_to_live`] answers: etcd's `LeaseTimeToLiveResponse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    pub id: i64,
    /// The TTL the lease was granted with (and each keep-alive restores).
    pub granted_ttl_seconds: i64,
    /// The seconds left before the leader revokes it, rounded up; 0 once expired.
    pub remaining_ttl_seconds: i64,
    /// The keys attached, in key order; empty unless asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Lease {
    ttl_seconds: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// The lease table and the local expiry clock.
///
/// # Invariants
/// - Every id in `leases` is non-zero, every TTL in `1..=LEASE_TTL_SECONDS_MAX`.
/// - `key_leases` and the key sets of `leases` describe the same attachments; every lease a key
///   names exists.
/// - `deadlines` has exactly the ids of `leases`; `expiry` holds exactly the pairs
///   `(deadline, id)` of `deadlines`; `revoking` is a subset of the ids of `leases`.
#[derive(Debug)]
pub(crate) struct Lessor {
    leases: BTreeMap<i64, Lease>,
    key_leases: BTreeMap<Vec<u8>, i64>,
    ticks_per_second: u64,
    now_ticks: u64,
    deadlines: BTreeMap<i64, u64>,
    expiry: BTreeSet<(u64, i64)>,
    /// Leases this leader proposed to revoke and has not applied the revoke of.
    revoking: BTreeSet<i64>,
}

impl Lessor {
    pub(crate) fn new(ticks_per_second: u64) -> Lessor {
        assert!(ticks_per_second >= 1, "ticks_per_second of 0");
        Lessor {
            leases: BTreeMap::new(),
            key_leases: BTreeMap::new(),
            ticks_per_second,
            now_ticks: 0,
            deadlines: BTreeMap::new(),
            expiry: BTreeSet::new(),
            revoking: BTreeSet::new(),
        }
    }

    /// Replaces the table with `leases` (from a snapshot), no keys attached yet (see
    /// [`Lessor::attach`]); every deadline starts at `now + ttl`.
    pub(crate) fn restore(&mut self, leases: &[LeaseRecord]) {
        self.leases.clear();
        self.key_leases.clear();
        self.deadlines.clear();
        self.expiry.clear();
        self.revoking.clear();
        for lease in leases {
            self.insert(lease.id, lease.ttl_seconds);
        }
    }

    /// Attaches `key` to `lease` as the store holds it (rebuilding after a restore).
    pub(crate) fn attach(&mut self, key: Vec<u8>, lease: i64) -> Result<(), String> {
        let Some(entry) = self.leases.get_mut(&lease) else {
            return Err(format!(
                "key {:?} is attached to lease {lease}, which does not exist",
                String::from_utf8_lossy(&key)
            ));
        };
        entry.keys.insert(key.clone());
        self.key_leases.insert(key, lease);
        Ok(())
    }

    /// The table, by increasing id, for a snapshot.
    pub(crate) fn records(&self) -> Vec<LeaseRecord> {
        self.leases
            .iter()
            .map(|(id, lease)| LeaseRecord {
                id: *id,
                ttl_seconds: lease.ttl_seconds,
            })
            .collect()
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub(crate) fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// The keys attached to lease `id`, in key order.
    pub(crate) fn keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|lease| lease.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies a grant committed at raft `index`: the lease `id` (or, for 0, an id picked from
    /// `index` and the table) with `ttl_seconds` (at least 1). Returns the id and TTL granted.
    /// Deterministic: the same table and command give the same answer on every replica.
    pub(crate) fn grant(
        &mut self,
        index: u64,
        id: i64,
        ttl_seconds: i64,
    ) -> Result<(i64, i64), chorus_mvcc::Error> {
        if ttl_seconds > LEASE_TTL_SECONDS_MAX {
            return Err(chorus_mvcc::Error::LeaseTtlTooLarge);
        }
        let id = if id == 0 { self.pick_id(index) } else { id };
        if self.leases.contains_key(&id) {
            return Err(chorus_mvcc::Error::LeaseExists);
        }
        let ttl_seconds = ttl_seconds.max(1);
        self.insert(id, ttl_seconds);
        Ok((id, ttl_seconds))
    }

    /// A positive id no lease has: a mix of `index` (a bijection of u64, cut to 63 bits), then
    /// the next free one. At most as many probes as there are leases.
    fn pick_id(&self, index: u64) -> i64 {
        let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let mut id = (z & (i64::MAX as u64)) as i64;
        for _ in 0..=self.leases.len() {
            if id != 0 && !self.leases.contains_key(&id) {
                return id;
            }
            id = id.wrapping_add(1) & i64::MAX;
        }
        panic!("no free lease id after {} probes", self.leases.len() + 1);
    }

    fn insert(&mut self, id: i64, ttl_seconds: i64) {
        self.leases.insert(
            id,
            Lease {
                ttl_seconds,
                keys: BTreeSet::new(),
            },
        );
        self.set_deadline(id, ttl_seconds);
    }

    /// Removes lease `id` after its revoke was applied (its keys deleted: their events were
    /// passed to [`Lessor::apply_events`] first).
    pub(crate) fn remove(&mut self, id: i64) {
        if let Some(lease) = self.leases.remove(&id) {
            for key in lease.keys {
                self.key_leases.remove(&key);
            }
        }
        if let Some(deadline) = self.deadlines.remove(&id) {
            self.expiry.remove(&(deadline, id));
        }
        self.revoking.remove(&id);
    }

    /// Follows the store's changes: a put attaches its key to its lease (detaching it from the
    /// one it had), a delete detaches it.
    pub(crate) fn apply_events(&mut self, events: &[Event]) {
        for event in events {
            let key = &event.kv.key;
            if let Some(old) = self.key_leases.remove(key) {
                if let Some(lease) = self.leases.get_mut(&old) {
                    lease.keys.remove(key);
                }
            }
            if event.kind == EventKind::Put && event.kv.lease != 0 {
                let lease = event.kv.lease;
                match self.leases.get_mut(&lease) {
                    Some(entry) => {
                        entry.keys.insert(key.clone());
                        self.key_leases.insert(key.clone(), lease);
                    }
                    None => panic!("a put attached a key to lease {lease}, which does not exist"),
                }
            }
        }
    }

    /// One tick of this replica's clock.
    pub(crate) fn tick(&mut self) {
        self.now_ticks += 1;
    }

    /// On becoming leader: every lease's deadline restarts at `now + ttl`, and nothing is being
    /// revoked yet.
    pub(crate) fn restart_deadlines(&mut self) {
        self.revoking.clear();
        let leases: Vec<(i64, i64)> = self
            .leases
            .iter()
            .map(|(id, lease)| (*id, lease.ttl_seconds))
            .collect();
        for (id, ttl_seconds) in leases {
            self.set_deadline(id, ttl_seconds);
        }
    }

    /// On losing leadership: the revokes this node proposed are no longer its business.
    pub(crate) fn forget_revoking(&mut self) {
        self.revoking.clear();
    }

    fn set_deadline(&mut self, id: i64, ttl_seconds: i64) {
        if let Some(old) = self.deadlines.remove(&id) {
            self.expiry.remove(&(old, id));
        }
        let deadline = self.now_ticks.saturating_add(self.ttl_ticks(ttl_seconds));
        self.deadlines.insert(id, deadline);
        self.expiry.insert((deadline, id));
    }

    fn ttl_ticks(&self, ttl_seconds: i64) -> u64 {
        u64::try_from(ttl_seconds)
            .unwrap_or(0)
            .saturating_mul(self.ticks_per_second)
    }

    /// Up to `count_max` leases whose deadline has passed and whose revoke is not under way, by
    /// deadline; they are marked as being revoked by [`Lessor::mark_revoking`].
    pub(crate) fn expired(&self, count_max: usize) -> Vec<i64> {
        self.expiry
            .iter()
            .take_while(|(deadline, _)| *deadline <= self.now_ticks)
            .map(|(_, id)| *id)
            .filter(|id| !self.revoking.contains(id))
            .take(count_max)
            .collect()
    }

    pub(crate) fn mark_revoking(&mut self, id: i64) {
        self.revoking.insert(id);
    }

    fn is_expired(&self, id: i64) -> bool {
        let running =
            matches!(self.deadlines.get(&id), Some(deadline) if *deadline > self.now_ticks);
        self.revoking.contains(&id) || !running
    }

    /// A leader's keep-alive: the deadline restarts at `now + ttl`; returns the TTL. An
    /// unknown lease, or one already expired (its revoke is coming), is not found.
    pub(crate) fn keep_alive(&mut self, id: i64) -> Result<i64, LeaseError> {
        let Some(ttl_seconds) = self.leases.get(&id).map(|lease| lease.ttl_seconds) else {
            return Err(LeaseError::NotFound);
        };
        if self.is_expired(id) {
            return Err(LeaseError::NotFound);
        }
        self.set_deadline(id, ttl_seconds);
        Ok(ttl_seconds)
    }

    /// What a leader says of lease `id`.
    pub(crate) fn time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLive, LeaseError> {
        let Some(lease) = self.leases.get(&id) else {
            return Err(LeaseError::NotFound);
        };
        let remaining_ticks = match self.deadlines.get(&id) {
            Some(deadline) if !self.revoking.contains(&id) => {
                deadline.saturating_sub(self.now_ticks)
            }
            _ => 0,
        };
        let remaining_seconds = remaining_ticks.div_ceil(self.ticks_per_second);
        Ok(LeaseTimeToLive {
            id,
            granted_ttl_seconds: lease.ttl_seconds,
            remaining_ttl_seconds: i64::try_from(remaining_seconds).unwrap_or(i64::MAX),
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// The attachments as a map key → lease, to compare with the store's.
    pub(crate) fn key_leases(&self) -> &BTreeMap<Vec<u8>, i64> {
        &self.key_leases
    }

    /// Panics unless every invariant of the type holds.
    pub(crate) fn check_invariants(&self) {
        let mut attached = 0;
        for (id, lease) in &self.leases {
            assert_ne!(*id, 0, "lease id 0 in the table");
            assert!(
                (1..=LEASE_TTL_SECONDS_MAX).contains(&lease.ttl_seconds),
                "lease {id} has TTL {}",
                lease.ttl_seconds
            );
            for key in &lease.keys {
                assert_eq!(
                    self.key_leases.get(key),
                    Some(id),
                    "lease {id} holds a key the key map does not give it"
                );
            }
            attached += lease.keys.len();
            let deadline = self.deadlines.get(id);
            assert!(deadline.is_some(), "lease {id} has no deadline");
            if let Some(deadline) = deadline {
                assert!(self.expiry.contains(&(*deadline, *id)));
            }
        }
        assert_eq!(
            attached,
            self.key_leases.len(),
            "key map and leases disagree"
        );
        assert_eq!(self.deadlines.len(), self.leases.len(), "stray deadlines");
        assert_eq!(
            self.expiry.len(),
            self.deadlines.len(),
            "stray expiry entries"
        );
        assert!(
            self.revoking.iter().all(|id| self.leases.contains_key(id)),
            "revoking a lease that does not exist"
        );
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn picked_ids_are_positive_and_skip_taken_ones() {
        let mut lessor = Lessor::new(10);
        let (first, _) = lessor.grant(7, 0, 5).expect("granted");
        assert!(first > 0);
        // The same index again (cannot happen in a log, but the table must not collide).
        let (second, _) = lessor.grant(7, 0, 5).expect("granted");
        assert!(second > 0 && second != first);
        assert_eq!(
            lessor.grant(8, first, 5),
            Err(chorus_mvcc::Error::LeaseExists)
        );
        assert_eq!(
            lessor.grant(9, 3, LEASE_TTL_SECONDS_MAX + 1),
            Err(chorus_mvcc::Error::LeaseTtlTooLarge)
        );
        lessor.check_invariants();
    }

    #[test]
    fn a_lease_expires_after_its_ttl_in_ticks_and_keep_alive_postpones_it() {
        let mut lessor = Lessor::new(10);
        lessor.grant(1, 42, 2).expect("granted");
        for _ in 0..19 {
            lessor.tick();
        }
        assert_eq!(lessor.expired(10), Vec::<i64>::new());
        assert_eq!(
            lessor
                .time_to_live(42, false)
                .map(|ttl| ttl.remaining_ttl_seconds),
            Ok(1)
        );
        assert_eq!(lessor.keep_alive(42), Ok(2));
        for _ in 0..20 {
            lessor.tick();
        }
        assert_eq!(lessor.expired(10), vec![42]);
        assert_eq!(lessor.keep_alive(42), Err(LeaseError::NotFound));
        lessor.mark_revoking(42);
        assert_eq!(lessor.expired(10), Vec::<i64>::new());
        lessor.check_invariants();
    }
}
