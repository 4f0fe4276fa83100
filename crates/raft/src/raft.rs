//! The node: roles, elections, replication, reads, transfers and membership.

use crate::config::Config;
use crate::error::{CompactError, ProposeError};
use crate::message::Message;
use crate::ready::Ready;
use crate::types::{
    ConfChange, Entry, HardState, LogIndex, Membership, NodeId, Role, Snapshot, SnapshotMeta, Term,
};
use bytes::Bytes;

/// What a node had on stable storage when it (re)started.
#[derive(Clone, Debug, Default)]
pub struct RestoreState {
    pub hard_state: HardState,
    /// The latest snapshot, if the log was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// The persisted log after the snapshot, in order, contiguous.
    pub entries: Vec<Entry>,
}

/// One raft node. See the crate documentation for the driving contract.
pub struct Raft {
    _private: (),
}

#[allow(unused_variables, clippy::unused_self)]
impl Raft {
    /// A node restored from `restore` (empty for a brand-new node).
    pub fn new(config: Config, restore: RestoreState) -> Raft {
        todo!()
    }

    /// Advances the logical clock by one tick: elections and heartbeats are due in ticks.
    pub fn tick(&mut self) {
        todo!()
    }

    /// Handles a message from a peer. Messages for another group or node, or from a stale term,
    /// are ignored: the network may deliver anything.
    pub fn step(&mut self, message: Message) {
        todo!()
    }

    /// Proposes application data. Returns the index the entry will have; the entry is committed
    /// once it appears in `Ready::committed_entries` with this index and the current term.
    pub fn propose(&mut self, data: Bytes) -> Result<LogIndex, ProposeError> {
        todo!()
    }

    /// Proposes a membership change (joint consensus).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<LogIndex, ProposeError> {
        todo!()
    }

    /// Asks for a linearizable read. The answer arrives as a `ReadState` with this `id` (or in
    /// `failed_reads`) in a later `Ready`. Works on followers by asking the leader.
    pub fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        todo!()
    }

    /// Hands leadership to `to` once its log is up to date. Proposals are refused meanwhile.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), ProposeError> {
        todo!()
    }

    /// Starts an election now (tests, and operators forcing an election).
    pub fn campaign(&mut self) {
        todo!()
    }

    /// The application has a snapshot of its state at `index` (which it has applied): raft drops
    /// the log up to it and sends the snapshot to followers that are too far behind. Returns the
    /// metadata the driver stores with the snapshot.
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<SnapshotMeta, CompactError> {
        todo!()
    }

    /// Whether [`Raft::ready`] has anything to do.
    pub fn has_ready(&self) -> bool {
        todo!()
    }

    /// Takes the work to be done. Call [`Raft::advance`] once it is durable and applied, before
    /// calling `ready` again.
    pub fn ready(&mut self) -> Ready {
        todo!()
    }

    /// The last `Ready` is persisted and its committed entries applied.
    pub fn advance(&mut self) {
        todo!()
    }

    pub fn id(&self) -> NodeId {
        todo!()
    }
    pub fn role(&self) -> Role {
        todo!()
    }
    pub fn term(&self) -> Term {
        todo!()
    }
    pub fn leader(&self) -> Option<NodeId> {
        todo!()
    }
    pub fn commit_index(&self) -> LogIndex {
        todo!()
    }
    /// The last entry handed out for applying.
    pub fn applied_index(&self) -> LogIndex {
        todo!()
    }
    pub fn last_index(&self) -> LogIndex {
        todo!()
    }
    pub fn hard_state(&self) -> HardState {
        todo!()
    }
    pub fn membership(&self) -> &Membership {
        todo!()
    }
    /// The snapshot the log starts after (index 0 when never compacted).
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        todo!()
    }
    /// The term of the entry at `index`, if raft still holds it (or it is the snapshot's last).
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        todo!()
    }
    /// Entries in `[low, high)` still held in memory.
    pub fn entries(&self, low: LogIndex, high: LogIndex) -> &[Entry] {
        todo!()
    }
    /// Panics if an internal invariant is broken. The simulator calls it after every step.
    pub fn check_invariants(&self) {
        todo!()
    }
}
