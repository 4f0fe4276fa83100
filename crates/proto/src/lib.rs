//! The protobuf definitions chorus speaks, generated with tonic-build.
//!
//! What it is: [`etcdserverpb`], [`mvccpb`] and [`authpb`], the etcd v3 API written from etcd's
//! published definitions (same packages, services, messages and field numbers, so etcd clients
//! such as `etcdctl` work unchanged), with tonic clients and servers; and [`peer`]
//! (`chorus.peer.v1`), the frames nodes exchange over their peer connections: a hello, then
//! batches of raft messages each with its group id; and [`session`] (`chorus.session.v1`), the
//! service that opens the client sessions of the idempotent receiver.
//!
//! What it is not: no logic and no translation to chorus's own types; the server does that at
//! its edge. The protocol files are in `proto/`.

#![allow(clippy::all)]

/// etcd's key-value types (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth types (`authpb`).
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's v3 services and messages (`etcdserverpb`).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// chorus's peer protocol (`chorus.peer.v1`).
pub mod peer {
    tonic::include_proto!("chorus.peer.v1");
}

/// chorus's client sessions (`chorus.session.v1`): open, keep alive and close the session a
/// client's writes carry in their metadata, so a retried write is applied once.
pub use self::chorus::session::v1 as session;

/// The gRPC metadata a write carries inside a session (`proto/chorus/session.proto`).
pub mod session_metadata {
    /// The session's id, as `Session.Open` returned it (decimal).
    pub const ID: &str = "chorus-session-id";
    /// The write's sequence number in the session (decimal, never reused in the session).
    pub const SEQUENCE: &str = "chorus-session-sequence";
    /// Every sequence up to this one has been answered to the client (decimal), so the cluster
    /// may forget their responses.
    pub const ACKNOWLEDGED: &str = "chorus-session-acknowledged";
    /// The message prefix of a write refused because its session is gone (expired or closed).
    pub const NOT_FOUND_MESSAGE: &str = "chorus: session not found";
}

/// The package path of chorus's own services, nested as prost expects (the generated code names
/// etcd's types through `super::super::super`).
#[doc(hidden)]
pub mod chorus {
    pub mod session {
        pub mod v1 {
            tonic::include_proto!("chorus.session.v1");
        }
    }
}
