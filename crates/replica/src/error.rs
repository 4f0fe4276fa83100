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

/// Why the session table refused a session command, or a session keep-alive. The refusals of
/// replicated commands (in [`crate::CommandResponse::SessionRefused`]) are decided by the
/// replicated state alone, the same on every replica.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    /// No such session: never opened, closed, or expired.
    #[error("chorus: session {id} not found (closed or expired)")]
    NotFound { id: u64 },
    /// The sequence is at or below what the client acknowledged, and its response was dropped:
    /// the client said it had the answer already.
    #[error(
        "chorus: session {id} sequence {sequence} was already acknowledged (up to {acknowledged})"
    )]
    SequenceAcknowledged {
        id: u64,
        sequence: u64,
        acknowledged: u64,
    },
    /// The session holds [`crate::SESSION_RESPONSES_MAX`] responses or more than
    /// [`crate::SESSION_RESPONSE_BYTES_MAX`] bytes of them the client has not acknowledged.
    #[error("chorus: too many unacknowledged requests in the session")]
    TooManyOutstanding,
    /// `sessions_max` sessions are open already.
    #[error("chorus: too many sessions (the limit is {max})")]
    TooManySessions { max: u32 },
    /// A TTL above [`crate::SESSION_TTL_SECONDS_MAX`].
    #[error("chorus: session TTL {ttl_seconds} above the limit of {ttl_seconds_max} seconds")]
    TtlTooLarge {
        ttl_seconds: i64,
        ttl_seconds_max: i64,
    },
    /// Only the leader keeps session deadlines: ask it (`leader_hint`, if known).
    #[error("etcdserver: not leader")]
    NotLeader {
        leader_hint: Option<chorus_raft::NodeId>,
    },
    /// An earlier error stopped the replica.
    #[error("the replica stopped after an earlier error")]
    Stopped,
}
