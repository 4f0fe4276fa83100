//! One replicated group of chorus: the raft core, the node's durable state and the mvcc store,
//! wired into one synchronous state machine.
//!
//! What it is: [`Replica`] owns a [`chorus_raft::Raft`], a [`Durable`] (WAL, hard state file and
//! snapshot store over the storage's [`chorus_storage::Fs`] seam) and a [`chorus_mvcc::Store`]
//! over a [`chorus_mvcc::Backend`]. One [`Replica::handle_ready`] carries out one whole raft
//! `Ready` in the order the raft contract sets (send, persist, send after persist, apply,
//! advance), applies committed [`Command`]s to the store and hands back an [`Outcome`]: messages
//! to send, commands applied with their answers, reads that may be served. It recovers
//! everything on [`Replica::open`], and snapshots and compacts the log by a policy of its own.
//! [`command`] and [`entry`] hold the binary encodings of commands, entries and memberships.
//!
//! What it is not: it is not async and reads no clock (time comes in as [`Replica::tick`]); it
//! does no I/O but through the `Fs` trait and the mvcc `Backend`; it does not send messages
//! (they are values in the `Outcome`) nor keep the waiting requests (the caller keys them by
//! index and term). It knows nothing of gRPC or of the network. Leases are here: the lease table
//! is replicated state (granted and revoked by [`Command`]s), expiry is the leader's, by ticks.
//! The member table ([`members`]: etcd's view of the cluster, with the cluster id) is replicated
//! state too, changed by member commands and carried in snapshots. Client sessions ([`session`]:
//! the idempotent receiver, exactly-once writes across retries) are replicated state kept in the
//! mvcc backend's side table. The server's group task and the simulator drive the same code.
//!
//! docs/replica.md describes the cycle, the encodings, recovery and the snapshot policy.

pub mod alarm;
mod codec;
pub mod command;
mod durable;
pub mod entry;
mod error;
mod lease;
pub mod members;
mod replica;
pub mod response;
pub mod seed;
pub mod session;
pub mod snapshot;
pub mod snapshot_job;
pub mod tables;
pub mod watch;

pub use codec::DecodeError;
pub use command::{
    decode_command, decode_forward_tag, encode_command, encode_forwarded, is_forwardable, Command,
    ForwardTag,
};
pub use durable::{Durable, DurableConfig};
pub use error::{LeaseError, ProposeError, ReplicaError, SessionError};
pub use lease::{LeaseTimeToLive, LEASE_TTL_SECONDS_MAX};
pub use members::{MemberError, MemberRecord, MemberTable};
pub use replica::{
    grows_database, lease_ttl_seconds_min, AppliedCommand, CommandResponse, MemberChanged, Outcome,
    Replica, ReplicaConfig,
};
pub use session::{SESSION_RESPONSES_MAX, SESSION_RESPONSE_BYTES_MAX, SESSION_TTL_SECONDS_MAX};
pub use snapshot_job::{SnapshotJob, WrittenSnapshot};
pub use watch::{StreamId, WatchConfig, WatchCreate, WatchError, WatchHub, WatchId, WatchResponse};
