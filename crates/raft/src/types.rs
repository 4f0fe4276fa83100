//! Newtypes and plain data that every other module speaks in.

use bytes::Bytes;
use std::collections::BTreeSet;
use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

newtype_u64!(
    /// A Raft term: a logical clock that increases with every election.
    Term,
    "t"
);
newtype_u64!(
    /// A position in the replicated log; the first entry has index 1, 0 means "none".
    LogIndex,
    "i"
);
newtype_u64!(
    /// A member of the cluster. 0 is never a valid id.
    NodeId,
    "n"
);
newtype_u64!(
    /// A consensus group. Every peer message carries one, even while there is only one group.
    GroupId,
    "g"
);

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Term {
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// Appended by every new leader so it can commit an entry of its own term (Raft §5.4.2, §8).
    Noop,
    /// Application data, opaque to raft.
    Normal(Bytes),
    /// A membership change; takes effect when the entry is committed.
    ConfChange(ConfChange),
}

impl EntryPayload {
    /// Approximate size in bytes, for batching limits.
    pub fn size_bytes(&self) -> usize {
        match self {
            EntryPayload::Noop => 0,
            EntryPayload::Normal(data) => data.len(),
            EntryPayload::ConfChange(change) => 16 * change.steps.len() + 8,
        }
    }
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: EntryPayload,
}

impl Entry {
    /// Approximate size in bytes: the payload plus a fixed header.
    pub fn size_bytes(&self) -> usize {
        self.payload.size_bytes() + 24
    }
}

/// The state raft must have on stable storage before it answers any message that depends on it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeStep {
    /// Add a voter, or promote a learner to voter.
    AddVoter(NodeId),
    /// Add a learner (receives the log, does not vote), or demote a voter to learner.
    AddLearner(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
}

/// A membership change. A change with steps enters a joint configuration (old and new voters must
/// both agree, Raft thesis §4.3); the leader then proposes the empty change, which leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfChange {
    /// Empty means "leave the joint configuration".
    pub steps: Vec<ConfChangeStep>,
}

impl ConfChange {
    pub fn leave_joint() -> ConfChange {
        ConfChange { steps: Vec::new() }
    }

    pub fn is_leave_joint(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The members of a group.
///
/// # Invariants
/// - `voters`, `voters_outgoing` and `learners` are disjoint except that a node may be in both
///   `voters` and `voters_outgoing`; a learner is in neither.
/// - `voters` is non-empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters of the configuration in force (the new one, while joint).
    pub voters: BTreeSet<NodeId>,
    /// The old voters while in a joint configuration; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            voters_outgoing: BTreeSet::new(),
            learners: BTreeSet::new(),
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member: voters of both halves and learners, in order, without repeats.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// Whether `granted` forms a majority of every half of the configuration in force.
    pub fn is_quorum(&self, granted: impl Fn(NodeId) -> bool) -> bool {
        fn majority(set: &BTreeSet<NodeId>, granted: &impl Fn(NodeId) -> bool) -> bool {
            set.is_empty() || set.iter().filter(|id| granted(**id)).count() * 2 > set.len()
        }
        majority(&self.voters, &granted) && majority(&self.voters_outgoing, &granted)
    }

    pub fn check_invariants(&self) {
        assert!(
            !self.voters.is_empty(),
            "membership without voters: {self:?}"
        );
        for learner in &self.learners {
            assert!(
                !self.is_voter(*learner),
                "learner {learner} is also a voter: {self:?}"
            );
        }
    }
}

/// Identifies a snapshot: the last log entry it covers and the membership at that entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub last_index: LogIndex,
    pub last_term: Term,
    pub membership: Membership,
}

/// A snapshot of the application's state machine, opaque to raft.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// A linearizable read that raft has confirmed: once the application has applied `index`, it may
/// answer the read identified by `id` from its state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub id: u64,
    pub index: LogIndex,
}

/// The role a node plays in its group.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}
