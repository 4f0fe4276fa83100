//! Errors that are the caller's decisions.

use thiserror::Error;

/// Why a request was refused, or why the store stopped.
///
/// Every variant but [`Error::Fatal`] is an answer to the client, decided by the request and the
/// store's state alone, so every replica gives the same one; the messages are etcd's (the gRPC
/// layer prefixes the `mvcc:` ones with `etcdserver: ` as etcd does). [`Error::Fatal`] means the
/// backend failed: the store refuses everything afterwards and the node must stop.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// The revision asked for is below the compaction point. For a watch, resume at
    /// `compact_revision` after re-reading the state.
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// The revision asked for is above the store's current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision { current_revision: i64 },
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A put with `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put with `ignore_value` that carries a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A put with `ignore_lease` that carries a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A branch of a transaction has more compares or ops than the limit.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A transaction would write one key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A put names a lease that does not exist (the lessor's check, made by the caller through
    /// [`crate::Store::txn_checking_leases`]); also a revoke of an unknown lease.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease grant names a lease that exists already (the lessor's refusal; the store never
    /// gives it, it is here so that every replicated command has one error type).
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease grant asks for a TTL above the largest allowed (the lessor's refusal).
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A write that would grow the database while the NOSPACE alarm is raised (the replica's
    /// refusal, as etcd's capped applier; the store never gives it).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The backend failed or returned data that contradicts the index. Stop the node.
    #[error("mvcc: fatal: {0}")]
    Fatal(BackendError),
}

/// A failure of the storage under the store.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BackendError {
    /// An I/O error from the storage engine.
    #[error("backend I/O failed: {0}")]
    Io(String),
    /// Data read back is not what was written: a bad encoding, or a disagreement between the
    /// stored records and the metadata or the index.
    #[error("backend data is corrupt: {0}")]
    Corrupt(String),
    /// An earlier failure stopped the store.
    #[error("the store stopped after an earlier failure: {0}")]
    Stopped(String),
}

/// Why a snapshot could not be written or restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The writer or reader failed.
    #[error("snapshot I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The snapshot is larger than the caller's limit.
    #[error("snapshot is larger than {size_bytes_max} bytes")]
    TooLarge { size_bytes_max: u64 },
    /// The bytes are not a valid snapshot: truncated, a bad checksum, a bad encoding, or state
    /// that breaks the store's invariants.
    #[error("snapshot is invalid: {0}")]
    Invalid(String),
    /// The store failed while reading or installing the snapshot.
    #[error(transparent)]
    Store(#[from] Error),
}
