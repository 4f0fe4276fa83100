//! The node: its state, the input dispatch, and the `Ready` hand-off. Elections, replication,
//! reads and membership live in their own modules as further `impl Raft` blocks.

use crate::config::Config;
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::ready::{Ready, SoftState};
use crate::rng::SplitMix64;
use crate::types::{
    Entry, EntryPayload, HardState, LogIndex, Membership, NodeId, ReadState, Role, Snapshot,
    SnapshotMeta, Term,
};
use std::collections::{BTreeMap, BTreeSet};

/// What a node had on stable storage when it (re)started.
#[derive(Clone, Debug, Default)]
pub struct RestoreState {
    pub hard_state: HardState,
    /// The latest snapshot, if the log was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// The persisted log after the snapshot, in order, contiguous.
    pub entries: Vec<Entry>,
}

/// A read waiting for the leader to confirm it still leads.
#[derive(Debug)]
pub(crate) struct PendingRead {
    pub(crate) id: u64,
    pub(crate) index: LogIndex,
    /// The heartbeat round whose majority acknowledgement confirms the read.
    pub(crate) sequence: u64,
    /// The follower that asked, or `None` for a local read.
    pub(crate) requester: Option<NodeId>,
}

/// A snapshot arriving in chunks from the leader.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) total_bytes: u64,
    pub(crate) data: Vec<u8>,
}

/// One raft node. See the crate documentation for the driving contract.
///
/// # Invariants
/// - A leader's term is the term it voted for itself in; it has a progress entry per member.
/// - `log`'s invariants (see [`RaftLog`]).
pub struct Raft {
    pub(crate) config: Config,
    pub(crate) rng: SplitMix64,
    pub(crate) role: Role,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) membership: Membership,
    /// Membership after each committed-but-not-compacted conf change, to know the membership at
    /// any index a snapshot may be taken at.
    pub(crate) membership_history: Vec<(LogIndex, Membership)>,
    /// The latest snapshot, kept to send to followers that are too far behind.
    pub(crate) snapshot: Option<Snapshot>,
    /// `snapshot`'s data was released ([`Raft::release_snapshot_data`]): the driver holds it
    /// durably and hands it back when a follower needs it.
    pub(crate) snapshot_data_released: bool,
    /// A follower needs the released data ([`Raft::snapshot_data_wanted`]).
    pub(crate) snapshot_data_wanted: bool,

    /// Ticks since this node started: the unit of leases and retransmission.
    pub(crate) ticks: u64,
    pub(crate) election_elapsed_ticks: u32,
    pub(crate) randomized_election_timeout_ticks: u32,
    pub(crate) heartbeat_elapsed_ticks: u32,

    // Candidate state.
    pub(crate) votes: BTreeMap<NodeId, bool>,

    // Leader state.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) transfer_target: Option<NodeId>,
    pub(crate) transfer_elapsed_ticks: u32,
    /// The index of the last conf change proposed; no other may be proposed until it commits.
    pub(crate) pending_conf_index: LogIndex,
    pub(crate) uncommitted_bytes: usize,
    /// The heartbeat round; each broadcast increments it.
    pub(crate) heartbeat_sequence: u64,
    /// `heartbeat_sequence` when this node last became leader: rounds up to it belong to an
    /// earlier leadership and are never waited for.
    pub(crate) leader_first_sequence: u64,
    /// A leader has something for its followers — proposals not sent yet, an acknowledgement
    /// that opens a follower's window, a new commit index: the next `ready` sends it, so one
    /// cycle's proposals and commit go out in one AppendEntries per follower (and get one
    /// response each, one fsync on each follower) rather than one per proposal or event.
    pub(crate) appends_due: bool,
    /// The first heartbeat round of each recent tick and that tick, for leases (kept only when
    /// leases are on).
    pub(crate) heartbeat_sent_ticks: BTreeMap<u64, u64>,
    /// A leader serves lease reads while `ticks < lease_expiry_tick`.
    pub(crate) lease_expiry_tick: u64,
    pub(crate) pending_reads: Vec<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its own term.
    pub(crate) reads_awaiting_commit: Vec<(u64, Option<NodeId>)>,

    // Follower state.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,

    // Output, collected until the next `ready`.
    pub(crate) messages: Vec<Message>,
    pub(crate) messages_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) failed_reads: Vec<u64>,
    pub(crate) snapshot_to_install: Option<Snapshot>,
    pub(crate) last_soft_state: SoftState,
    pub(crate) last_hard_state: HardState,
    /// The last entry of the `Ready` handed out and not yet advanced.
    pub(crate) ready_in_flight: Option<LogIndex>,
}

impl Raft {
    /// A node restored from `restore` (empty for a brand-new node).
    pub fn new(config: Config, restore: RestoreState) -> Raft {
        config.validate();
        #[allow(unused_mut)]
        let mut hard_state = restore.hard_state;
        #[cfg(feature = "fault-injection")]
        if config.faults.forget_vote_on_restart {
            hard_state.vote = None;
        }
        let (snapshot_meta, snapshot) = match restore.snapshot {
            Some(snapshot) => (snapshot.meta.clone(), Some(snapshot)),
            None => {
                let mut membership = Membership::new(config.initial_voters.iter().copied());
                membership.learners = config.initial_learners.iter().copied().collect();
                (
                    SnapshotMeta {
                        membership,
                        ..SnapshotMeta::default()
                    },
                    None,
                )
            }
        };
        let membership = snapshot_meta.membership.clone();
        let log = RaftLog::restore(snapshot_meta, restore.entries, hard_state.commit);
        let mut raft = Raft {
            rng: SplitMix64::new(config.seed),
            role: Role::Follower,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            membership,
            membership_history: Vec::new(),
            snapshot,
            snapshot_data_released: false,
            snapshot_data_wanted: false,
            ticks: 0,
            election_elapsed_ticks: 0,
            randomized_election_timeout_ticks: config.election_timeout_ticks,
            heartbeat_elapsed_ticks: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            transfer_target: None,
            transfer_elapsed_ticks: 0,
            pending_conf_index: LogIndex(0),
            uncommitted_bytes: 0,
            heartbeat_sequence: 0,
            leader_first_sequence: 0,
            appends_due: false,
            heartbeat_sent_ticks: BTreeMap::new(),
            lease_expiry_tick: 0,
            pending_reads: Vec::new(),
            reads_awaiting_commit: Vec::new(),
            incoming_snapshot: None,
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            read_states: Vec::new(),
            failed_reads: Vec::new(),
            snapshot_to_install: None,
            last_soft_state: SoftState {
                role: Role::Follower,
                term: hard_state.term,
                leader: None,
            },
            last_hard_state: HardState {
                commit: LogIndex(0),
                ..hard_state
            },
            ready_in_flight: None,
            log,
            config,
        };
        // Conf changes committed before the crash take effect again, in order.
        let committed = raft
            .log
            .slice(raft.log.first_index(), raft.log.commit.next(), usize::MAX);
        for entry in &committed {
            if let EntryPayload::ConfChange(change) = &entry.payload {
                raft.apply_conf_change(entry.index, change);
            }
        }
        raft.last_hard_state.commit = raft.log.commit;
        raft.reset_randomized_election_timeout();
        raft.check_invariants();
        raft
    }

    /// Advances the logical clock by one tick: elections and heartbeats are due in ticks.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Handles a message from a peer. Messages for another group or node, or from a stale term,
    /// are ignored or answered with the current term: the network may deliver anything.
    pub fn step(&mut self, message: Message) {
        if message.group != self.config.group || message.to != self.config.id {
            return;
        }
        if message.from == self.config.id || message.from.0 == 0 {
            return;
        }
        if message.term > self.term {
            if !self.step_higher_term(&message) {
                return;
            }
        } else if message.term < self.term {
            self.step_lower_term(message);
            return;
        }
        self.step_current_term(message);
    }

    /// Handles a message whose term is our own (or was adopted just now).
    pub(crate) fn step_current_term(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(from, message.term, request)
            }
            MessageBody::RequestVoteResponse(response) => {
                self.handle_vote_response(from, message.term, response)
            }
            MessageBody::AppendEntries(append) => {
                self.become_follower_of(from);
                self.handle_append(from, append);
            }
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(from, response)
            }
            MessageBody::Heartbeat(heartbeat) => {
                self.become_follower_of(from);
                self.handle_heartbeat(from, heartbeat);
            }
            MessageBody::HeartbeatResponse(response) => {
                self.handle_heartbeat_response(from, response)
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.become_follower_of(from);
                self.handle_snapshot_chunk(from, chunk);
            }
            MessageBody::InstallSnapshotResponse(response) => {
                self.handle_snapshot_response(from, response)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndexRequest(request) => self.handle_read_index_request(from, request),
            MessageBody::ReadIndexResponse(response) => self.handle_read_index_response(response),
            MessageBody::Propose(propose) => self.handle_forwarded_proposals(propose),
        }
    }

    /// Whether [`Raft::ready`] has anything to do.
    pub fn has_ready(&self) -> bool {
        self.read_round_wanted()
            || self.appends_due
            || self.commit_unannounced()
            || self.soft_state() != self.last_soft_state
            || self.hard_state() != self.last_hard_state
            || self.snapshot_to_install.is_some()
            || self.log.unpersisted_from <= self.log.last_index()
            || !self.messages.is_empty()
            || !self.messages_after_persist.is_empty()
            || self.log.has_committed_to_apply()
            || !self.read_states.is_empty()
            || !self.failed_reads.is_empty()
    }

    /// A leader with a follower that holds entries committed since it was last sent the commit
    /// index: the next `ready` announces it with a heartbeat round. Otherwise the follower
    /// learns it only with the next append or heartbeat tick, and a write it forwarded waits
    /// that long to be applied and answered there.
    fn commit_unannounced(&self) -> bool {
        self.role == Role::Leader
            && self.progress.iter().any(|(id, progress)| {
                *id != self.config.id
                    && self.log.commit.min(progress.match_index) > progress.commit_sent
            })
    }

    /// Takes the work to be done. Call [`Raft::advance`] once it is durable and applied, before
    /// calling `ready` again.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.ready_in_flight.is_none(),
            "ready() called before advance()"
        );
        if std::mem::take(&mut self.appends_due) && self.role == Role::Leader {
            self.broadcast_append();
        }
        if self.read_round_wanted() || self.commit_unannounced() {
            self.broadcast_heartbeat();
        }
        let soft_state = self.soft_state();
        let hard_state = self.hard_state();
        let snapshot = self.snapshot_to_install.take();
        let entries = self.log.take_unpersisted();
        // Entries are applied only once durable here; the driver persists before it applies.
        let committed_entries = if snapshot.is_some() {
            Vec::new()
        } else {
            self.log.take_committed()
        };
        self.ready_in_flight = Some(self.log.last_index());
        let ready = Ready {
            soft_state: (soft_state != self.last_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.last_hard_state).then_some(hard_state),
            snapshot,
            entries,
            messages: std::mem::take(&mut self.messages),
            messages_after_persist: std::mem::take(&mut self.messages_after_persist),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            failed_reads: std::mem::take(&mut self.failed_reads),
        };
        self.last_soft_state = soft_state;
        self.last_hard_state = hard_state;
        ready
    }

    /// The last `Ready` is persisted and its committed entries applied.
    pub fn advance(&mut self) {
        let Some(last) = self.ready_in_flight.take() else {
            panic!("advance() without a ready() in flight");
        };
        self.log.mark_persisted(last);
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(own) = self.progress.get_mut(&self.config.id) {
                own.maybe_update(persisted);
            }
            self.maybe_commit();
        }
    }

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            term: self.term,
            leader: self.leader,
        }
    }

    /// Queues a message to a peer. Messages that promise something this node must remember (votes,
    /// acknowledgements) wait for the persist; a leader's replication does not.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let message = Message {
            group: self.config.group,
            from: self.config.id,
            to,
            term: self.term,
            body,
        };
        if self.role == Role::Leader {
            self.messages.push(message);
        } else {
            self.messages_after_persist.push(message);
        }
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            group: self.config.group,
            from: self.config.id,
            to,
            term,
            body,
        };
        self.messages_after_persist.push(message);
    }

    pub(crate) fn reset_randomized_election_timeout(&mut self) {
        let base = self.config.election_timeout_ticks;
        self.randomized_election_timeout_ticks = base + self.rng.below(u64::from(base)) as u32;
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn commit_index(&self) -> LogIndex {
        self.log.commit
    }

    /// The last entry handed out for applying.
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }

    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The last entry known to be durable on this node.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// On a leader, each other member's match index (the last entry known to be in its log),
    /// in id order; empty on followers and candidates. For monitoring (replication lag).
    pub fn follower_match_indexes(&self) -> Vec<(NodeId, LogIndex)> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        self.progress
            .iter()
            .filter(|(id, _)| **id != self.config.id)
            .map(|(id, progress)| (*id, progress.match_index))
            .collect()
    }

    /// The snapshot the log starts after (index 0 when never compacted).
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.log.snapshot
    }

    /// The term of the entry at `index`, if raft still holds it (or it is the snapshot's last).
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// Entries in `[low, high)` still held in memory (those compacted into the snapshot are not).
    pub fn entries(&self, low: LogIndex, high: LogIndex) -> &[Entry] {
        self.log.held(low, high)
    }

    /// Whether this node is a voter, and so may campaign.
    pub(crate) fn is_promotable(&self) -> bool {
        self.membership.is_voter(self.config.id)
    }

    /// Peers that receive the log: every member but this node.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        let mut members: BTreeSet<NodeId> = self.membership.members();
        members.remove(&self.config.id);
        members.into_iter().collect()
    }

    /// Panics if an internal invariant is broken. The simulator calls it after every step.
    pub fn check_invariants(&self) {
        self.log.check_invariants();
        self.membership.check_invariants();
        if let Some(vote) = self.vote {
            assert!(vote.0 != 0, "voted for node 0");
        }
        match self.role {
            Role::Leader => {
                assert_eq!(
                    self.leader,
                    Some(self.config.id),
                    "leader does not know it leads"
                );
                assert_eq!(
                    self.vote,
                    Some(self.config.id),
                    "leader did not vote for itself"
                );
                for (id, progress) in &self.progress {
                    assert!(
                        self.membership.contains(*id),
                        "progress for non-member {id}"
                    );
                    progress.check_invariants();
                }
                for id in self.membership.members() {
                    assert!(
                        self.progress.contains_key(&id),
                        "no progress for member {id}"
                    );
                }
            }
            Role::Candidate => assert_eq!(self.vote, Some(self.config.id), "candidate vote"),
            Role::Follower | Role::PreCandidate => {}
        }
    }
}
