//! The chorus node: the async shell around the pure replica.
//!
//! What it is: [`node::run`] opens one group's [`chorus_replica::Replica`] on disk and drives it
//! from one tokio task (the [`group`] task, a singular update queue: every input arrives on one
//! bounded channel; ticks come from a monotonic interval), sends and receives raft messages
//! over TCP ([`transport`], framed by [`peer_codec`]), and serves the etcd v3 gRPC API
//! ([`grpc`]): KV, Watch ([`watchers`]), Lease, Maintenance (Status, Alarm, Defragment, Hash,
//! HashKV, Snapshot, MoveLeader; the backend quota in [`group_maintenance`]) and Cluster
//! (MemberAdd, MemberRemove, MemberUpdate, MemberPromote, MemberList over the replicated member
//! table, [`group_members`]; each change logged by [`group_events`]), with etcd's response headers and error statuses; [`restore`]
//! seeds a new member from a saved snapshot. Followers forward writes, lease requests and
//! membership changes to the leader and serve linearizable reads through ReadIndex.
//! Optionally it serves an admin HTTP port ([`admin`]): Prometheus [`metrics`], health and
//! readiness, a JSON API and a live dashboard; on shutdown a leader hands over first
//! ([`shutdown`]).
//!
//! What it is not: no consensus or storage logic of its own (that is `chorus-replica` and
//! below); no Auth service yet, no TLS; one group per node.
//! docs/server.md says what works.

pub mod admin;
pub mod config;
pub mod convert;
pub mod error;
pub mod follower_read;
pub mod group;
pub mod group_events;
pub mod group_maintenance;
pub mod group_members;
pub mod grpc;
pub mod members;
pub mod metrics;
pub mod node;
pub mod peer_codec;
mod peer_direct;
pub mod restore;
pub mod shutdown;
pub mod transport;
pub mod watchers;

pub use config::{parse_initial_cluster, ServerConfig};
pub use error::ServerError;
pub use node::{run, NodeError};
