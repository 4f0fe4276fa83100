//! Configuration of one raft node. Every bound is named, with its unit last.

use crate::types::{GroupId, NodeId};

/// How a node behaves. Timing is in ticks: the driver calls [`crate::Raft::tick`] at a fixed
/// interval of its monotonic clock, so raft itself never reads a clock.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    pub group: GroupId,
    /// The voters of a brand-new group. Ignored once a snapshot carries the membership.
    pub initial_voters: Vec<NodeId>,
    /// Learners of a brand-new group.
    pub initial_learners: Vec<NodeId>,
    /// A follower that hears nothing from a leader for a randomized timeout in
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` starts an election.
    pub election_timeout_ticks: u32,
    /// A leader sends heartbeats every this many ticks. Must be less than the election timeout.
    pub heartbeat_interval_ticks: u32,
    /// Run a pre-vote round before a real election, so a node returning from a partition cannot
    /// depose a healthy leader by bumping the term (Raft thesis §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority within an election timeout; a
    /// follower that heard from a leader within the minimum election timeout ignores votes.
    pub check_quorum: bool,
    /// Serve linearizable reads from a leader lease instead of a heartbeat round. Needs
    /// `check_quorum`; its safety rests on the drift bound.
    pub lease: Option<LeaseConfig>,
    /// Append requests in flight to one follower before the leader waits for acknowledgements.
    pub inflight_appends_max: usize,
    /// Bytes of entries in one append request (at least one entry is always sent).
    pub append_bytes_max: usize,
    /// The largest proposal accepted, in bytes; larger ones are refused with
    /// [`crate::ProposeError::TooLarge`].
    pub proposal_bytes_max: usize,
    /// Bytes of proposed but uncommitted entries a leader accepts before refusing proposals.
    pub uncommitted_bytes_max: usize,
    /// Bytes of snapshot data in one InstallSnapshot message.
    pub snapshot_chunk_bytes: usize,
    /// A learner is promoted only once its log is within this many entries of the leader's.
    pub learner_catch_up_entries_max: u64,
    /// Seeds the randomized election timeout; raft has no other source of randomness.
    pub seed: u64,
    /// Switches that break raft on purpose, to prove the simulator's checkers can fail.
    #[cfg(feature = "fault-injection")]
    pub faults: Faults,
}

/// Leader leases: a leader that a majority acknowledged at tick `t` serves reads locally until
/// `t + election_timeout_ticks * (1 - drift)`, because no follower that acknowledged it will vote
/// for another candidate within its (randomized, never shorter) election timeout.
#[derive(Clone, Copy, Debug)]
pub struct LeaseConfig {
    /// The largest rate at which two nodes' tick clocks may drift apart, in parts per million.
    pub clock_drift_bound_ppm: u32,
}

/// Ways to break raft on purpose (test only).
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The leader commits an entry as soon as it has it, without a majority.
    pub commit_without_majority: bool,
    /// On restart the node forgets whom it voted for in its current term.
    pub forget_vote_on_restart: bool,
    /// The leader answers ReadIndex at once, without confirming its leadership.
    pub read_without_quorum: bool,
    /// A follower accepts AppendEntries from a leader of a stale (lower) term.
    pub accept_stale_append: bool,
}

impl Config {
    /// A configuration with the defaults we run with: 100 ms ticks give a 1 s election timeout.
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Config {
        Config {
            id,
            group: GroupId(1),
            initial_voters: voters.into_iter().collect(),
            initial_learners: Vec::new(),
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            lease: None,
            inflight_appends_max: 256,
            append_bytes_max: 1024 * 1024,
            proposal_bytes_max: 1536 * 1024,
            uncommitted_bytes_max: 64 * 1024 * 1024,
            snapshot_chunk_bytes: 1024 * 1024,
            learner_catch_up_entries_max: 1000,
            seed: id.0,
            #[cfg(feature = "fault-injection")]
            faults: Faults::default(),
        }
    }

    /// Panics on a configuration that cannot work; called by [`crate::Raft::new`].
    pub fn validate(&self) {
        assert!(self.id.0 != 0, "node id 0 is reserved");
        assert!(
            self.heartbeat_interval_ticks >= 1,
            "heartbeat_interval_ticks must be >= 1"
        );
        assert!(
            self.election_timeout_ticks > self.heartbeat_interval_ticks,
            "election_timeout_ticks ({}) must exceed heartbeat_interval_ticks ({})",
            self.election_timeout_ticks,
            self.heartbeat_interval_ticks
        );
        assert!(
            self.inflight_appends_max >= 1,
            "inflight_appends_max must be >= 1"
        );
        assert!(
            self.snapshot_chunk_bytes >= 1,
            "snapshot_chunk_bytes must be >= 1"
        );
        assert!(
            self.lease.is_none() || self.check_quorum,
            "lease reads need check_quorum"
        );
    }
}
