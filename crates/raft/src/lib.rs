//! The Raft consensus core of chorus.
//!
//! A pure, deterministic state machine: it does no I/O, reads no clock and has no randomness but
//! the seed in its [`Config`]. The driver (the server's group task, or the simulator) feeds it
//! inputs — [`Raft::tick`], [`Raft::step`], [`Raft::propose`], [`Raft::read_index`] — and carries
//! out its outputs, collected in a [`Ready`]. Because nothing else goes in, the same inputs always
//! give the same outputs, which is what lets `chorus-sim` replay any failure from its seed.
//!
//! What it is not: a log store (the driver persists entries; raft keeps the uncompacted tail in
//! memory), a network (messages are values), or a state machine (entries are opaque bytes).
//!
//! Implemented: elections with pre-vote and check-quorum, heartbeats, pipelined and batched
//! replication with a bounded in-flight window and a probe state, fast log backtracking, commit by
//! majority of the configuration in force and only in the leader's term, snapshots sent in chunks,
//! ReadIndex and leader leases, leadership transfer, joint-consensus membership and learners.

mod config;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod progress;
mod raft;
mod read;
mod ready;
mod replication;
mod rng;
mod types;

#[cfg(feature = "fault-injection")]
pub use config::Faults;
pub use config::{Config, LeaseConfig};
pub use error::{CompactError, ProposeError};
pub use membership::PeerProgress;
pub use message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, InstallSnapshot,
    InstallSnapshotResponse, Message, MessageBody, Propose, ReadIndexRequest, ReadIndexResponse,
    RequestVote, RequestVoteResponse,
};
pub use raft::{Raft, RestoreState};
pub use ready::{Ready, SoftState};
pub use types::{
    ConfChange, ConfChangeStep, Entry, EntryPayload, GroupId, HardState, LogIndex, Membership,
    NodeId, ReadState, Role, Snapshot, SnapshotMeta, Term,
};
