//! The client's errors, and which failures a call may retry on another endpoint.
//!
//! # Which errors are safe to retry
//!
//! Reads (get, watch, member list, lease time-to-live and list, status) are retried on any
//! transient failure: the endpoint could not be reached or the connection broke, or etcd's
//! `etcdserver: no leader`, `leader changed`, `request timed out`, `server stopped`,
//! `too many requests`.
//!
//! Writes (put, delete, txn, compact, lease grant and revoke, member changes) are retried only
//! when the failure proves the write was not applied:
//!
//! - the connection to the endpoint could not be established (nothing was sent);
//! - the request was still queued when its connection closed (hyper answers "operation was
//!   canceled" only for requests it never handed to the connection), or the server refused the
//!   HTTP/2 stream (REFUSED_STREAM: not processed);
//! - `etcdserver: no leader` (the member refused before proposing anything);
//! - `etcdserver: too many requests` (refused before proposing).
//!
//! Every other transient failure of a write leaves its outcome unknown and is returned as
//! [`Error::OutcomeUnknown`], never retried. That includes `etcdserver: leader changed`: a
//! chorus member also answers it when the leader it forwarded the write to went away before
//! answering, and that leader may have applied the write first.
//!
//! Inside a client session ([`crate::session`], the default against chorus) every transient
//! failure of a write is retried like a read's: the cluster applies a (session, sequence) once
//! and answers a repeat with the stored response.

pub use tonic::Code;
use tonic::Status;

/// A failed call; each variant is a decision for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The cluster answered with an error: etcd's gRPC code and message, e.g.
    /// `InvalidArgument` / `etcdserver: key not found`. Retrying will not help.
    #[error("{message}")]
    Server { code: Code, message: String },
    /// A write was sent and failed in a way that does not say whether it was applied: it may
    /// have been applied once, or not at all. Read before writing again.
    #[error("{message} (the outcome is unknown: the write may or may not have been applied)")]
    OutcomeUnknown { code: Code, message: String },
    /// No endpoint completed the call before the deadline; `message` is the last failure.
    /// Nothing was applied (a write is only retried after failures that prove that).
    #[error("{message}")]
    Unavailable { message: String },
    /// The server canceled a watch; `compact_revision` is set when the revision to resume
    /// from has been compacted (the events in between are lost to this watcher).
    #[error("watch was canceled ({reason})")]
    WatchCanceled {
        reason: String,
        compact_revision: i64,
    },
    /// An endpoint string that cannot be used.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The client was built without endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
    /// The caller's arguments are wrong (found before anything was sent).
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// The gRPC code: the server's for server errors; `Unavailable`, `DeadlineExceeded`,
    /// `Canceled` or `InvalidArgument` for the client's own.
    pub fn code(&self) -> Code {
        match self {
            Error::Server { code, .. } | Error::OutcomeUnknown { code, .. } => *code,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::WatchCanceled { .. } => Code::Cancelled,
            Error::InvalidEndpoint { .. } | Error::NoEndpoints | Error::InvalidArgument(_) => {
                Code::InvalidArgument
            }
        }
    }

    /// True for errors the cluster answered (the request reached a member and was refused).
    pub fn is_server_error(&self) -> bool {
        matches!(self, Error::Server { .. } | Error::WatchCanceled { .. })
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Error {
        Error::Server {
            code: status.code(),
            message: status_message(&status),
        }
    }
}

/// The status's message, or its code's description when it has none (a server that does not
/// serve a service answers `Unimplemented` with no message).
pub(crate) fn status_message(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}: {}", status.code(), status.code().description())
    } else {
        status.message().to_string()
    }
}

/// Whether a call is a read (safe to repeat) or a write (repeated only when proven unapplied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
    /// A write inside a client session: the cluster applies it once however often it is sent,
    /// so it is retried like a read.
    SessionWrite,
}

/// What a failure says about the call, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not transient: answer the caller.
    Final,
    /// Transient, and the request was certainly not applied.
    NotApplied,
    /// Transient, but a write may have been applied.
    MaybeApplied,
}

/// etcd's messages that mean "try again", with whether they prove nothing was applied.
const TRANSIENT_MESSAGES: [(&str, Failure); 5] = [
    ("etcdserver: no leader", Failure::NotApplied),
    ("etcdserver: too many requests", Failure::NotApplied),
    ("etcdserver: leader changed", Failure::MaybeApplied),
    ("etcdserver: request timed out", Failure::MaybeApplied),
    ("etcdserver: server stopped", Failure::MaybeApplied),
];

/// Fragments of tonic/hyper messages for a request that was never sent: the connection could
/// not be established, or the server refused the HTTP/2 stream before processing it
/// (REFUSED_STREAM, which HTTP/2 defines as "not processed").
const NOT_SENT_FRAGMENTS: [&str; 5] = [
    "error trying to connect",
    "tcp connect error",
    "Connection refused",
    "dns error",
    "refused stream before processing",
];

/// hyper's message when a request was never handed to the connection because the connection
/// had closed (its client dispatcher only answers "canceled" for requests still queued).
const HYPER_CANCELED_MESSAGE: &str = "operation was canceled";

/// Classifies a failed call's status. Pure, so the retry rules are unit-tested.
pub fn classify(status: &Status) -> Failure {
    let message = status.message();
    if let Some((_, failure)) = TRANSIENT_MESSAGES
        .iter()
        .find(|(known, _)| message.starts_with(known))
    {
        return *failure;
    }
    if is_etcd_message(message) {
        return Failure::Final;
    }
    match status.code() {
        Code::Cancelled if message == HYPER_CANCELED_MESSAGE => Failure::NotApplied,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            if NOT_SENT_FRAGMENTS
                .iter()
                .any(|fragment| message.contains(fragment))
            {
                Failure::NotApplied
            } else {
                Failure::MaybeApplied
            }
        }
        _ => Failure::Final,
    }
}

/// True when the failure came from the transport rather than from a member's answer, so the
/// connection should be dropped and made again.
pub fn is_transport_failure(status: &Status) -> bool {
    !is_etcd_message(status.message())
        && matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
        )
}

fn is_etcd_message(message: &str) -> bool {
    message.starts_with("etcdserver:") || message.starts_with("mvcc:")
}

/// Whether a call of `kind` may be tried again after `failure`.
pub fn may_retry(kind: CallKind, failure: Failure) -> bool {
    match (kind, failure) {
        (_, Failure::Final) => false,
        (CallKind::Read | CallKind::SessionWrite, _) => true,
        (CallKind::Write, Failure::NotApplied) => true,
        (CallKind::Write, Failure::MaybeApplied) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn etcd_errors_that_prove_nothing_was_applied_retry_writes() {
        for message in ["etcdserver: no leader", "etcdserver: too many requests"] {
            let failure = classify(&Status::unavailable(message));
            assert_eq!(failure, Failure::NotApplied, "{message}");
            assert!(may_retry(CallKind::Write, failure));
        }
    }

    #[test]
    fn leader_changed_and_timeouts_retry_reads_but_not_writes() {
        for message in [
            "etcdserver: leader changed",
            "etcdserver: request timed out",
            "etcdserver: server stopped",
        ] {
            let failure = classify(&Status::unavailable(message));
            assert_eq!(failure, Failure::MaybeApplied, "{message}");
            assert!(may_retry(CallKind::Read, failure));
            assert!(!may_retry(CallKind::Write, failure));
        }
    }

    #[test]
    fn a_refused_connection_is_not_applied_a_broken_one_may_be() {
        let refused = Status::unavailable(
            "error trying to connect: tcp connect error: Connection refused (os error 111)",
        );
        assert_eq!(classify(&refused), Failure::NotApplied);
        assert!(is_transport_failure(&refused));
        let broken = Status::unknown("transport error");
        assert_eq!(classify(&broken), Failure::MaybeApplied);
        assert!(is_transport_failure(&broken));
        let reset = Status::cancelled("h2 protocol error: stream no longer needed");
        assert_eq!(classify(&reset), Failure::MaybeApplied);
    }

    #[test]
    fn a_request_queued_on_a_closed_connection_or_a_refused_stream_was_not_sent() {
        let queued = Status::cancelled("operation was canceled");
        assert_eq!(classify(&queued), Failure::NotApplied);
        assert!(may_retry(CallKind::Write, classify(&queued)));
        let refused = Status::unavailable(
            "h2 protocol error: refused stream before processing any application logic",
        );
        assert_eq!(classify(&refused), Failure::NotApplied);
    }

    #[test]
    fn answers_from_the_state_machine_are_final() {
        for status in [
            Status::invalid_argument("etcdserver: key not found"),
            Status::out_of_range("mvcc: required revision has been compacted"),
            Status::unimplemented("unknown service etcdserverpb.Lease"),
            Status::invalid_argument("etcdserver: request is too large"),
        ] {
            assert_eq!(classify(&status), Failure::Final, "{status:?}");
            assert!(!may_retry(CallKind::Read, classify(&status)));
            assert!(!is_transport_failure(&status) || status.code() == Code::Unavailable);
        }
    }

    #[test]
    fn a_status_without_a_message_says_its_code() {
        let error = Error::from(Status::unimplemented(""));
        assert_eq!(
            error.to_string(),
            "Unimplemented: Operation is not implemented or not supported"
        );
    }

    #[test]
    fn errors_carry_codes_and_etcds_messages() {
        let error = Error::from(Status::invalid_argument("etcdserver: key not found"));
        assert_eq!(error.to_string(), "etcdserver: key not found");
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.is_server_error());
        let unknown = Error::OutcomeUnknown {
            code: Code::Unavailable,
            message: "etcdserver: leader changed".into(),
        };
        assert!(unknown
            .to_string()
            .starts_with("etcdserver: leader changed"));
        assert!(!unknown.is_server_error());
    }
}
