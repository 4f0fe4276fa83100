//! The output of raft: what the driver must do, as data.

use crate::message::Message;
use crate::types::{Entry, HardState, NodeId, ReadState, Role, Snapshot, Term};

/// Everything raft wants done since the last [`crate::Raft::advance`].
///
/// The driver carries it out in this order:
/// 1. Send `messages` (may overlap with step 2: they do not depend on this node's disk).
/// 2. Persist durably: `snapshot` if any, then truncate the log from `entries[0].index` and append
///    `entries`, then `hard_state` if any. Make it durable (fsync).
/// 3. Only then send `messages_after_persist` (votes, append acknowledgements: promises that
///    must survive a crash).
/// 4. Apply `snapshot` to the state machine if any, then `committed_entries` in order; answer
///    `read_states` once their index is applied.
/// 5. Call [`crate::Raft::advance`] with this `Ready`.
#[derive(Debug, Default)]
pub struct Ready {
    /// Changes of role or known leader since the last `Ready`.
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: persist it and restore the state machine from it.
    pub snapshot: Option<Snapshot>,
    /// Entries to append. Any persisted entries at or after `entries[0].index` are replaced.
    pub entries: Vec<Entry>,
    /// May be sent before the persist of this `Ready` completes.
    pub messages: Vec<Message>,
    /// Must not be sent until this `Ready`'s persist is durable.
    pub messages_after_persist: Vec<Message>,
    /// Committed entries to apply, in order. Never beyond what is persisted locally.
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    /// Reads that could not be served (leadership lost, say); the driver fails them.
    pub failed_reads: Vec<u64>,
}

impl Ready {
    /// Whether the driver has to persist anything before sending `messages_after_persist`.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}

/// Volatile state a driver may want to show or act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
}
