//! The protobuf definitions chorus speaks, generated with tonic-build.
//!
//! What it is: [`etcdserverpb`], [`mvccpb`] and [`authpb`], the etcd v3 API written from etcd's
//! published definitions (same packages, services, messages and field numbers, so etcd clients
//! such as `etcdctl` work unchanged), with tonic clients and servers; and [`peer`]
//! (`chorus.peer.v1`), the frames nodes exchange over their peer connections: a hello, then
//! batches of raft messages each with its group id.
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
