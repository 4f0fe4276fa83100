//! Errors that are the caller's decisions.

use crate::types::NodeId;
use thiserror::Error;

/// Why a proposal, read or membership change was refused. Refusals are immediate: raft never
/// queues a request it cannot serve.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership transfer to {to} under way")]
    TransferInProgress { to: NodeId },
    #[error("proposal of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("{uncommitted_bytes} bytes are uncommitted, the limit is {max_bytes}")]
    Backpressure {
        uncommitted_bytes: usize,
        max_bytes: usize,
    },
    #[error("a membership change is still pending")]
    ConfChangePending,
    #[error("invalid membership change: {reason}")]
    InvalidConfChange { reason: String },
    #[error("learner {learner} is {behind_entries} entries behind and cannot be promoted yet")]
    LearnerBehind {
        learner: NodeId,
        behind_entries: u64,
    },
}

/// Why a snapshot or compaction request was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CompactError {
    #[error("index {index} is beyond the applied index {applied}")]
    NotApplied { index: u64, applied: u64 },
    #[error("index {index} is already compacted (snapshot at {snapshot})")]
    AlreadyCompacted { index: u64, snapshot: u64 },
}
