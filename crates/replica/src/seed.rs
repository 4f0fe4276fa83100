//! Restoring a cluster from a saved state snapshot (the blob the Maintenance `Snapshot` call
//! streams, as `etcdctl snapshot save` writes it): each new member's data directory is seeded
//! with the snapshot as its raft snapshot, at the index the state machine had applied and term
//! 1, with the new cluster's voters as its membership, the log empty after it and everything up
//! to it committed. Opening the replica then restores the state machine from it (its mvcc
//! backend must be empty), and the members elect a leader in term 2 and go on from there. Every
//! member of the new cluster must be seeded from the same file.

use crate::durable::{Durable, DurableConfig};
use crate::error::ReplicaError;
use crate::snapshot::decode_state_snapshot;
use chorus_raft::{LogIndex, Membership, NodeId, SnapshotMeta, Term};
use chorus_storage::Fs;
use std::path::Path;

/// What a seed put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeded {
    /// The raft index of the snapshot: the state machine's applied index in the old cluster.
    pub index: LogIndex,
    /// The store's revision in the snapshot.
    pub revision: i64,
    /// Leases in the snapshot.
    pub leases: usize,
}

/// Seeds the empty durable state in `dir` with the replica snapshot `blob` (checked whole,
/// mvcc part included, before anything is written), for a cluster of `voters`. Durable when it
/// returns Ok.
pub fn seed_from_state_snapshot<F: Fs + Clone>(
    fs: F,
    dir: &Path,
    config: &DurableConfig,
    blob: &[u8],
    voters: impl IntoIterator<Item = NodeId>,
) -> Result<Seeded, ReplicaError> {
    let state = decode_state_snapshot(blob).map_err(|error| ReplicaError::Corrupt {
        reason: format!("snapshot: {error}"),
    })?;
    let mvcc = chorus_mvcc::decode_snapshot(state.mvcc).map_err(|error| ReplicaError::Corrupt {
        reason: format!("snapshot's key-value state: {error}"),
    })?;
    if mvcc.meta.applied_index == 0 {
        return Err(ReplicaError::Corrupt {
            reason: "the snapshot holds no applied entry".to_string(),
        });
    }
    let membership = Membership::new(voters);
    if membership.voters.is_empty() {
        return Err(ReplicaError::Corrupt {
            reason: "no voter to restore the snapshot for".to_string(),
        });
    }
    let meta = SnapshotMeta {
        last_index: LogIndex(mvcc.meta.applied_index),
        last_term: Term(1),
        membership,
    };
    // The old cluster's member table stays behind: the new members start from the membership
    // they are configured with (a snapshot without a table keeps the configured one).
    let blob =
        crate::snapshot::encode_state_snapshot(state.mvcc, &state.leases, None, &state.alarms);
    let (mut durable, _) = Durable::open(fs, dir, config)?;
    durable.seed(&meta, &blob)?;
    Ok(Seeded {
        index: meta.last_index,
        revision: mvcc.meta.current_revision,
        leases: state.leases.len(),
    })
}
