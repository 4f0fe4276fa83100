//! Why a client request failed, and the gRPC status etcd answers for it (same codes and
//! messages, so etcd clients react as they do with etcd).

use chorus_raft::NodeId;
use tonic::{Code, Status};

/// A client request's failure; each variant is a decision for the caller.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerError {
    /// This node is not the leader; forward to `leader` if known.
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    /// The request's entry was overwritten by a new leader, or its read could not be
    /// confirmed: the client may retry.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// No answer within the request timeout; the outcome is unknown.
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request is too large")]
    TooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: too many operations in txn request")]
    TooDeep,
    /// The state machine refused it (the same answer on every replica).
    #[error("{0}")]
    Mvcc(chorus_mvcc::Error),
    /// The node is stopping, or stopped after a storage failure.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A watch id already in use on the stream.
    #[error("etcdserver: watch ID already exists")]
    WatchIdExists,
    /// Forwarding to the leader failed.
    #[error("{0}")]
    Forward(String),
    /// The member table refused a membership change (the same answer on every replica).
    #[error("{0}")]
    Member(chorus_replica::MemberError),
    /// A learner's log is too far behind the leader's to promote it.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// The change would leave fewer members running than a quorum needs.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Another membership change is still being carried out (one at a time).
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A peer URL that is not `http://host:port`.
    #[error("etcdserver: {0}")]
    BadPeerUrl(String),
    /// The request's session metadata is incomplete or malformed.
    #[error("chorus: bad session metadata: {0}")]
    InvalidSession(String),
    /// The session table refused the request (the same answer on every replica).
    #[error("{}", session_message(.0))]
    Session(chorus_replica::SessionError),
}

/// What a client reads for a refusal of the session table; a gone session's message starts
/// with [`chorus_proto::session_metadata::NOT_FOUND_MESSAGE`], which clients look for.
fn session_message(error: &chorus_replica::SessionError) -> String {
    use chorus_replica::SessionError;
    match error {
        SessionError::NotFound { .. } => format!(
            "{} (it expired or was closed; open a new one)",
            chorus_proto::session_metadata::NOT_FOUND_MESSAGE
        ),
        other => other.to_string(),
    }
}

fn session_code(error: &chorus_replica::SessionError) -> Code {
    use chorus_replica::SessionError;
    match error {
        SessionError::NotFound { .. } | SessionError::SequenceAcknowledged { .. } => {
            Code::FailedPrecondition
        }
        SessionError::TooManyOutstanding | SessionError::TooManySessions { .. } => {
            Code::ResourceExhausted
        }
        SessionError::TtlTooLarge { .. } => Code::OutOfRange,
        SessionError::NotLeader { .. } | SessionError::Stopped => Code::Unavailable,
    }
}

impl From<chorus_replica::SessionError> for ServerError {
    /// A keep-alive refused by the replica: a follower forwards to the leader it knows.
    fn from(error: chorus_replica::SessionError) -> ServerError {
        use chorus_replica::SessionError;
        match error {
            SessionError::NotLeader { leader_hint } => ServerError::NotLeader {
                leader: leader_hint,
            },
            SessionError::Stopped => ServerError::Stopped,
            other => ServerError::Session(other),
        }
    }
}

impl From<ServerError> for Status {
    fn from(error: ServerError) -> Status {
        let message = error.to_string();
        match error {
            ServerError::NotLeader { .. } => {
                Status::new(Code::Unavailable, "etcdserver: no leader")
            }
            ServerError::LeaderChanged | ServerError::Timeout | ServerError::Stopped => {
                Status::new(Code::Unavailable, message)
            }
            ServerError::TooLarge | ServerError::TooDeep => {
                Status::new(Code::InvalidArgument, message)
            }
            ServerError::TooManyRequests => Status::new(Code::ResourceExhausted, message),
            ServerError::WatchIdExists => Status::new(Code::InvalidArgument, message),
            ServerError::Mvcc(error) => mvcc_status(&error),
            ServerError::Forward(_) | ServerError::Unhealthy => {
                Status::new(Code::Unavailable, message)
            }
            ServerError::Member(chorus_replica::MemberError::NotFound) => {
                Status::new(Code::NotFound, message)
            }
            ServerError::Member(_)
            | ServerError::LearnerNotReady
            | ServerError::NotEnoughStartedMembers => {
                Status::new(Code::FailedPrecondition, message)
            }
            ServerError::BadPeerUrl(_) | ServerError::InvalidSession(_) => {
                Status::new(Code::InvalidArgument, message)
            }
            ServerError::Session(error) => Status::new(session_code(&error), message),
        }
    }
}

fn mvcc_status(error: &chorus_mvcc::Error) -> Status {
    use chorus_mvcc::Error;
    let code = match error {
        Error::Compacted { .. } | Error::FutureRevision { .. } => Code::OutOfRange,
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps
        | Error::DuplicateKey => Code::InvalidArgument,
        Error::LeaseNotFound => Code::NotFound,
        Error::LeaseExists => Code::FailedPrecondition,
        Error::LeaseTtlTooLarge => Code::OutOfRange,
        Error::Fatal(_) => Code::Internal,
        Error::NoSpace => Code::ResourceExhausted,
    };
    Status::new(code, error.to_string())
}

impl From<chorus_replica::LeaseError> for ServerError {
    /// A keep-alive or time-to-live refused by the replica: a follower forwards to the leader
    /// it knows; an unknown lease is etcd's "requested lease not found".
    fn from(error: chorus_replica::LeaseError) -> ServerError {
        match error {
            chorus_replica::LeaseError::NotLeader { leader_hint } => ServerError::NotLeader {
                leader: leader_hint,
            },
            chorus_replica::LeaseError::NotFound => {
                ServerError::Mvcc(chorus_mvcc::Error::LeaseNotFound)
            }
            chorus_replica::LeaseError::Stopped => ServerError::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_codes_and_messages() {
        let status = Status::from(ServerError::Mvcc(chorus_mvcc::Error::Compacted {
            compact_revision: 3,
        }));
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "mvcc: required revision has been compacted"
        );
        let status = Status::from(ServerError::TooLarge);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "etcdserver: request is too large");
        let status = Status::from(ServerError::NotLeader { leader: None });
        assert_eq!(status.message(), "etcdserver: no leader");
        let status = Status::from(ServerError::LeaderChanged);
        assert_eq!(status.message(), "etcdserver: leader changed");
        let status = Status::from(ServerError::Member(chorus_replica::MemberError::NotFound));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "etcdserver: member not found");
        let status = Status::from(ServerError::Member(chorus_replica::MemberError::IdExists));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "etcdserver: member ID already exist");
    }

    #[test]
    fn lease_refusals_carry_etcds_codes_and_messages() {
        let status = Status::from(ServerError::Mvcc(chorus_mvcc::Error::LeaseNotFound));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "etcdserver: requested lease not found");
        let status = Status::from(ServerError::Mvcc(chorus_mvcc::Error::LeaseExists));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "etcdserver: lease already exists");
        let status = Status::from(ServerError::Mvcc(chorus_mvcc::Error::LeaseTtlTooLarge));
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.message(), "etcdserver: too large lease TTL");
        let status = Status::from(ServerError::from(chorus_replica::LeaseError::NotFound));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            ServerError::from(chorus_replica::LeaseError::NotLeader {
                leader_hint: Some(chorus_raft::NodeId(2))
            }),
            ServerError::NotLeader {
                leader: Some(chorus_raft::NodeId(2))
            }
        );
    }
}
