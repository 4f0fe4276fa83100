//! Errors that are the caller's decisions.

use chorus_storage::StorageError;
use thiserror::Error;

/// Why the replica cannot go on. Every variant means: stop this replica (drop it) and, for the
/// storage's transient ones, reopen it; recovery on open decides what is durable. The replica
/// refuses every further [`crate::Replica::handle_ready`] after returning one.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The WAL, hard state or snapshot store failed. After [`StorageError::Fatal`] the storage
    /// refuses writes; [`StorageError::Corrupt`] needs an operator (or a rebuild from peers).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Durable state that passed the storage's checksums does not make sense: an entry or a
    /// snapshot membership that does not decode, a log that does not follow its snapshot, a
    /// state machine ahead of the log.
    #[error("corrupt replica state: {reason}")]
    Corrupt { reason: String },
    /// The mvcc store's backend failed ([`chorus_mvcc::Error::Fatal`]).
    #[error("state machine failed: {0}")]
    Store(chorus_mvcc::Error),
    /// A snapshot could not be taken or restored.
    #[error("state machine snapshot failed: {0}")]
    Snapshot(#[from] chorus_mvcc::SnapshotError),
    /// An earlier error stopped the replica.
    #[error("the replica stopped after an earlier error: {reason}")]
    Stopped { reason: String },
}

/// Why a proposal was refused; nothing was appended.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProposeError {
    /// Raft refused it: not the leader (with a hint), too large, back-pressure, ...
    #[error(transparent)]
    Raft(#[from] chorus_raft::ProposeError),
    /// The command's transactions nest deeper than [`crate::command::TXN_DEPTH_MAX`].
    #[error("transactions nested {depth} deep, the limit is {depth_max}")]
    TooDeep { depth: usize, depth_max: usize },
    /// An earlier error stopped the replica.
    #[error("the replica stopped after an earlier error")]
    Stopped,
}

/// Why a lease keep-alive or time-to-live query was refused (etcd's answers).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LeaseError {
    /// Only the leader keeps lease deadlines: ask it (`leader_hint`, if known).
    #[error("etcdserver: not leader")]
    NotLeader {
        leader_hint: Option<chorus_raft::NodeId>,
    },
    /// No such lease in the applied state, or it expired and its revoke is under way.
    #[error("etcdserver: requested lease not found")]
    NotFound,
    /// An earlier error stopped the replica.
    #[error("the replica stopped after an earlier error")]
    Stopped,
}
