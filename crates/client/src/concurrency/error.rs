//! The errors of the lock and election recipes; each variant is a decision for the caller.

use std::time::Duration;

/// Why a [`LeaseSession`](super::LeaseSession) ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionEnd {
    /// The cluster no longer knows the lease: it expired (renewals did not reach the leader
    /// within its time-to-live) or someone revoked it. Its keys are gone.
    #[error("the lease expired or was revoked")]
    Expired,
    /// Renewals kept failing until the lease's time-to-live (as last granted) ran out: it has
    /// expired by now, or will, as far as this client can tell.
    #[error("the lease could not be renewed in time: {message}")]
    KeepAliveFailed { message: String },
    /// The session was closed or dropped by its owner.
    #[error("the session was closed")]
    Closed,
}

/// A failed lock or election operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConcurrencyError {
    /// The session's lease is gone (or going): whatever was held with it is lost. Start a new
    /// [`LeaseSession`](super::LeaseSession).
    #[error("lease session {lease_id:x} ended: {reason}")]
    SessionExpired { lease_id: i64, reason: SessionEnd },
    /// `try_lock` found the lock held by another contender.
    #[error("the lock is held by another session")]
    Locked,
    /// `proclaim` (or `resign`) by a candidate that is not the leader (any more).
    #[error("not the leader of the election")]
    NotLeader,
    /// Nobody campaigns in the election.
    #[error("the election has no leader")]
    NoLeader,
    /// The caller's cancel signal fired before the lock (leadership) was had; the waiter's key
    /// was deleted.
    #[error("cancelled while waiting")]
    Cancelled,
    /// The lock (leadership) was not had within `after`; the waiter's key was deleted.
    #[error("not acquired within {after:?}")]
    TimedOut { after: Duration },
    /// A call to the cluster failed (see [`crate::Error`]).
    #[error(transparent)]
    Client(#[from] crate::Error),
}
