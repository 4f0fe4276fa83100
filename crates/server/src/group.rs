//! The group task: the only owner of one group's [`Replica`] (a singular update queue).
//! Everything that touches the replica arrives as a [`GroupInput`] on one bounded channel;
//! ticks come from a monotonic `tokio::time::interval`.
//!
//! Each pass takes the inputs waiting (up to [`INPUTS_PER_PASS_MAX`], so proposals that arrive
//! together share one `Ready` and one fsync), then runs the `Ready` cycles: the messages that
//! need no persist go out first, the WAL append and fsync run while they travel
//! (on the group's own thread, node.rs), then the messages that waited for the persist, then the
//! answers. A leader answers the committed entries its WAL already holds before the fsync.
//!
//! The waiting list: a proposal waits at its (index, term); the applied command at that index
//! answers it if the term matches, otherwise it fails with "leader changed", as does every
//! waiter at or below the applied index that nothing answered (docs/replica.md).

mod clock;
mod leaderless;
mod lease;
mod observe;
mod progress_notify;
mod session;

pub use lease::LeaseInput;
pub use observe::{GroupObservation, Transfer};
pub use session::SessionKeepAlive;

use crate::error::ServerError;
use crate::transport::PeerSender;
use crate::watchers::{CreateError, WatchCreate, WatchNotice, Watchers};
use chorus_mvcc::{RangeRequest, RangeResponse, RedbBackend};
use chorus_raft::{NodeId, ProposeError as RaftProposeError, Role};
use chorus_replica::{
    is_forwardable, AppliedCommand, Command, CommandResponse, Outcome, ProposeError, Replica,
    ReplicaError, WrittenSnapshot,
};
use chorus_storage::RealFs;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Inputs queued for the group task before senders wait (clients) or drop (peer messages).
pub const GROUP_QUEUE_INPUTS_MAX: usize = 8192;
/// Inputs taken in one pass before running a cycle.
pub const INPUTS_PER_PASS_MAX: usize = 512;
/// Proposals and reads waiting for an answer; more are refused with "too many requests".
pub const WAITERS_MAX: usize = 16_384;

/// What a response header needs from the group: the store's revision and raft's term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    pub revision: i64,
    pub raft_term: u64,
    /// The member the header names when not this one: the leader, for a write this follower
    /// handed to it (clients learn the leader from write answers, docs/client.md).
    pub answered_as: Option<u64>,
}

/// An answer to a client request, with what its header needs.
pub type Answer<T> = Result<(T, HeaderInfo), ServerError>;

/// The group's state for `Status`.
#[derive(Clone, Debug, Default)]
pub struct GroupStatus {
    pub leader: Option<NodeId>,
    pub role_is_leader: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
}

/// Everything the group task does, as data.
#[derive(Debug)]
pub enum GroupInput {
    /// A raft message from a peer.
    Step(chorus_raft::Message),
    /// A write, answered once applied (or refused at once if this node is not the leader).
    Propose {
        command: Command,
        reply: oneshot::Sender<Answer<CommandResponse>>,
    },
    /// A read; linearizable ones go through ReadIndex first.
    Range {
        request: RangeRequest,
        linearizable: bool,
        reply: oneshot::Sender<Answer<RangeResponse>>,
    },
    Status {
        reply: oneshot::Sender<GroupStatus>,
    },
    /// A new watcher; its `Created` notice goes to its stream before any event.
    WatchCreate {
        create: WatchCreate,
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// Ends a watcher (its stream gets a `Canceled` notice); answers whether it existed.
    WatchCancel {
        stream: u64,
        watch_id: i64,
        reply: oneshot::Sender<bool>,
    },
    /// A progress notice for the stream, if all its watchers are caught up.
    WatchProgress {
        stream: u64,
        notices: mpsc::Sender<WatchNotice>,
    },
    /// A lease keep-alive, time-to-live or list (grants and revokes are proposals).
    Lease(LeaseInput),
    /// A session keep-alive (opening and closing are proposals).
    SessionKeepAlive(SessionKeepAlive),
    /// Periodic progress notices for these watchers of the stream, those caught up.
    WatchProgressNotify {
        stream: u64,
        watch_ids: Vec<i64>,
    },
    /// Maintenance and read-only txn requests (`group_maintenance.rs`).
    Maintenance(crate::group_maintenance::MaintenanceInput),
    /// A membership change (etcd's Cluster service), answered once its member command applies.
    Member {
        change: crate::group_members::MemberChange,
        reply: oneshot::Sender<Answer<CommandResponse>>,
    },
    /// The group's state for monitoring (the admin port).
    Observe {
        reply: oneshot::Sender<GroupObservation>,
    },
    /// On the leader, hand leadership to the most caught-up follower (graceful shutdown).
    TransferLeadership {
        reply: oneshot::Sender<Result<Transfer, ServerError>>,
    },
}

/// The client side of the group task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupHandle {
    pub sender: mpsc::Sender<GroupInput>,
    pub request_timeout: Duration,
}

impl GroupHandle {
    /// Proposes `command` and waits for its answer, at most the request timeout.
    /// A refusal of the session table (a sessioned command whose session is gone, ...) is the
    /// error [`ServerError::Session`].
    pub async fn propose(&self, command: Command) -> Answer<CommandResponse> {
        let (reply, answer) = oneshot::channel();
        match self
            .call(GroupInput::Propose { command, reply }, answer)
            .await?
        {
            Ok((CommandResponse::SessionRefused(error), _)) => Err(ServerError::Session(error)),
            other => other,
        }
    }

    /// Reads a range, linearizably or from this node's applied state.
    pub async fn range(&self, request: RangeRequest, linearizable: bool) -> Answer<RangeResponse> {
        let (reply, answer) = oneshot::channel();
        let input = GroupInput::Range {
            request,
            linearizable,
            reply,
        };
        self.call(input, answer).await?
    }

    /// Registers a watcher; its notices go to `create.notices`.
    pub async fn watch(&self, create: WatchCreate) -> Result<(), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.call(GroupInput::WatchCreate { create, reply }, answer)
            .await?
    }

    /// Cancels a watcher; whether it existed.
    pub async fn cancel_watch(&self, stream: u64, watch_id: i64) -> Result<bool, ServerError> {
        let (reply, answer) = oneshot::channel();
        let input = GroupInput::WatchCancel {
            stream,
            watch_id,
            reply,
        };
        self.call(input, answer).await
    }

    /// Asks for a progress notice on the stream.
    pub async fn watch_progress(
        &self,
        stream: u64,
        notices: mpsc::Sender<WatchNotice>,
    ) -> Result<(), ServerError> {
        let input = GroupInput::WatchProgress { stream, notices };
        match tokio::time::timeout(self.request_timeout, self.sender.send(input)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::Timeout),
        }
    }

    pub async fn status(&self) -> Result<GroupStatus, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.call(GroupInput::Status { reply }, answer).await
    }

    pub(crate) async fn call<T>(
        &self,
        input: GroupInput,
        answer: oneshot::Receiver<T>,
    ) -> Result<T, ServerError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        match tokio::time::timeout_at(deadline, self.sender.send(input)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ServerError::Stopped),
            Err(_) => return Err(ServerError::Timeout),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::Timeout),
        }
    }
}

pub(crate) struct Waiter {
    term: chorus_raft::Term,
    reply: oneshot::Sender<Answer<CommandResponse>>,
}

/// A write this follower handed to the leader through raft, waiting for its own apply of it.
pub(crate) struct ForwardedWaiter {
    /// The term it was forwarded in: it can only be appended in that term, so once an entry of
    /// a later term is applied it never will be.
    term: chorus_raft::Term,
    reply: oneshot::Sender<Answer<CommandResponse>>,
}

pub(crate) struct PendingRead {
    request: RangeRequest,
    reply: oneshot::Sender<Answer<RangeResponse>>,
}

/// The task's state: the replica, where messages go, and the waiting lists.
pub struct GroupTask {
    pub(crate) replica: Replica<RealFs, RedbBackend>,
    pub(crate) peers: PeerSender,
    inputs: mpsc::Receiver<GroupInput>,
    pub(crate) tick_interval: Duration,
    /// Proposals waiting for their entry to apply, by log index.
    pub(crate) waiters: BTreeMap<u64, Waiter>,
    /// Writes forwarded to the leader through raft, by request id.
    pub(crate) forwarded: BTreeMap<u64, ForwardedWaiter>,
    next_forward_id: u64,
    /// The term of the newest entry applied here (for `forwarded`).
    applied_term: chorus_raft::Term,
    /// Linearizable reads waiting for raft to confirm them, by read id.
    pub(crate) reads: BTreeMap<u64, PendingRead>,
    /// Writes that came while no leader was known (`group/leaderless.rs`).
    leaderless: Vec<leaderless::LeaderlessWrite>,
    /// How long a write waits for a leader before it fails with "no leader".
    pub leader_wait: Duration,
    watchers: Watchers,
    /// Read ids start from the wall clock at start, so a restarted node never takes an answer
    /// meant for a read of its previous run.
    pub(crate) next_read_id: u64,
    pub(crate) ticks: u64,
    /// With leader-lease reads: when tick 0 was, so raft's tick count is kept level with the
    /// monotonic clock (`group/clock.rs`); `None` otherwise.
    pub clock_origin: Option<std::time::Instant>,
    pub(crate) maintenance: crate::group_maintenance::MaintenanceState,
    /// Follows the replicated member table (`group_members`); `None` in tests without one.
    pub members: Option<crate::group_members::MemberSync>,
    pub(crate) events: crate::group_events::ClusterEvents,
    /// This member's applied revision and lag, for stamped follower reads (`follower_read`).
    pub(crate) read_progress: crate::follower_read::ProgressPublisher,
    /// Snapshots written on a blocking thread come back here (at most one at a time).
    snapshots_written: mpsc::UnboundedReceiver<SnapshotWritten>,
    snapshots_written_sender: mpsc::UnboundedSender<SnapshotWritten>,
}

/// A snapshot of our own, written off the group task, and how long that took.
struct SnapshotWritten {
    written: Result<WrittenSnapshot<RealFs>, ReplicaError>,
    took: Duration,
}

impl GroupTask {
    pub fn new(
        replica: Replica<RealFs, RedbBackend>,
        peers: PeerSender,
        inputs: mpsc::Receiver<GroupInput>,
        tick_interval: Duration,
    ) -> GroupTask {
        let next_read_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX / 2)
            });
        let (snapshots_written_sender, snapshots_written) = mpsc::unbounded_channel();
        GroupTask {
            replica,
            peers,
            inputs,
            tick_interval,
            waiters: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            // From the clock too: an entry forwarded by this node's previous run, applied after
            // a restart, must not answer a request of this run.
            next_forward_id: next_read_id,
            applied_term: chorus_raft::Term(0),
            reads: BTreeMap::new(),
            leaderless: Vec::new(),
            // node.rs sets it from the election timeout.
            leader_wait: tick_interval * 20,
            watchers: Watchers::default(),
            next_read_id,
            ticks: 0,
            clock_origin: None,
            maintenance: Default::default(),
            members: None,
            events: Default::default(),
            read_progress: Default::default(),
            snapshots_written,
            snapshots_written_sender,
        }
    }

    /// Runs until every sender is gone (`Ok`) or the replica fails (`Err`: stop the node;
    /// recovery on the next start decides what is durable).
    pub async fn run(mut self) -> Result<(), ReplicaError> {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.on_ticker(),
                Some(done) = self.snapshots_written.recv() => {
                    if let Err(error) = self.snapshot_written(done) {
                        self.fail_all(ServerError::Stopped);
                        return Err(error);
                    }
                }
                input = self.inputs.recv() => {
                    let Some(input) = input else { return Ok(()) };
                    self.catch_up_ticks();
                    self.handle_input(input);
                    for _ in 1..INPUTS_PER_PASS_MAX {
                        match self.inputs.try_recv() {
                            Ok(input) => self.handle_input(input),
                            Err(_) => break,
                        }
                    }
                }
            }
            self.release_leaderless();
            if let Err(error) = self.run_cycles().and_then(|()| self.sync_members()) {
                self.fail_all(ServerError::Stopped);
                return Err(error);
            }
            self.start_snapshot_job();
            self.publish_read_progress();
            if !self.watchers.is_empty() {
                let raft_term = self.replica.term().0;
                self.watchers.deliver(self.replica.store(), raft_term);
            }
            // Under load `inputs` is never empty and the task would not yield until tokio's
            // budget runs out (128 passes, each with an fsync): its runtime polls the timer
            // driver only then, so the ticker — heartbeats, election and lease timing — would
            // fire up to 128 passes late (docs/server.md). Yielding each pass lets it run.
            tokio::task::yield_now().await;
        }
    }

    /// Hands a snapshot the replica took to a blocking thread; its result comes back on
    /// `snapshots_written`.
    fn start_snapshot_job(&mut self) {
        let Some(job) = self.replica.take_snapshot_job() else {
            return;
        };
        let sender = self.snapshots_written_sender.clone();
        tracing::debug!("writing a snapshot at index {}", job.index().0);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let written = job.write();
            let _ = sender.send(SnapshotWritten {
                written,
                took: started.elapsed(),
            });
        });
    }

    /// Installs a snapshot written off the task and compacts the log up to it.
    fn snapshot_written(&mut self, done: SnapshotWritten) -> Result<(), ReplicaError> {
        let summary = done
            .written
            .as_ref()
            .ok()
            .map(|written| (written.index(), written.data_bytes));
        let installed = self.replica.snapshot_job_done(done.written)?;
        if let Some((index, bytes)) = summary {
            self.observe_snapshot_written(index.0, bytes, installed, done.took);
        }
        Ok(())
    }

    fn on_ticker(&mut self) {
        if self.clock_origin.is_some() {
            self.catch_up_ticks();
        } else {
            self.handle_tick();
        }
    }

    fn handle_tick(&mut self) {
        self.replica.tick();
        self.ticks += 1;
        self.tick_members();
        if self.ticks.is_multiple_of(10) {
            // Clients that gave up (timed out) free their place.
            self.waiters.retain(|_, waiter| !waiter.reply.is_closed());
            self.forwarded.retain(|_, waiter| !waiter.reply.is_closed());
            self.reads.retain(|_, read| !read.reply.is_closed());
        }
        self.maintenance_tick();
        self.expire_leaderless();
    }

    pub(crate) fn header(&self) -> HeaderInfo {
        HeaderInfo {
            revision: self.replica.store().current_revision(),
            raft_term: self.replica.term().0,
            answered_as: None,
        }
    }

    fn handle_input(&mut self, input: GroupInput) {
        match input {
            GroupInput::Step(message) => self.step_peer(message),
            GroupInput::Propose { command, reply } => self.handle_propose(command, reply),
            GroupInput::Range {
                request,
                linearizable,
                reply,
            } => self.handle_range(request, linearizable, reply),
            GroupInput::Status { reply } => {
                let raft = self.replica.raft();
                let status = GroupStatus {
                    leader: raft.leader(),
                    role_is_leader: raft.role() == Role::Leader,
                    term: raft.term().0,
                    commit_index: raft.commit_index().0,
                    applied_index: self.replica.applied_index().0,
                    revision: self.replica.store().current_revision(),
                };
                let _ = reply.send(status);
            }
            GroupInput::WatchCreate { create, reply } => {
                let header = self.header();
                let answer = self
                    .watchers
                    .create(create, header.revision, header.raft_term)
                    .map_err(|error| match error {
                        CreateError::TooMany | CreateError::StreamFull => {
                            ServerError::TooManyRequests
                        }
                        CreateError::DuplicateId => ServerError::WatchIdExists,
                    });
                let _ = reply.send(answer);
            }
            GroupInput::WatchCancel {
                stream,
                watch_id,
                reply,
            } => {
                let header = self.header();
                let existed =
                    self.watchers
                        .cancel(stream, watch_id, header.revision, header.raft_term);
                let _ = reply.send(existed);
            }
            GroupInput::WatchProgress { stream, notices } => {
                let header = self.header();
                self.watchers
                    .progress(stream, &notices, header.revision, header.raft_term);
            }
            GroupInput::Lease(input) => self.handle_lease(input),
            GroupInput::SessionKeepAlive(input) => self.handle_session_keep_alive(input),
            GroupInput::WatchProgressNotify { stream, watch_ids } => {
                self.handle_watch_progress_notify(stream, &watch_ids)
            }
            GroupInput::Maintenance(input) => self.handle_maintenance(input),
            GroupInput::Member { change, reply } => self.handle_member_change(change, reply),
            GroupInput::Observe { reply } => self.handle_observe(reply),
            GroupInput::TransferLeadership { reply } => self.handle_transfer(reply),
        }
    }

    pub(crate) fn handle_propose(
        &mut self,
        command: Command,
        reply: oneshot::Sender<Answer<CommandResponse>>,
    ) {
        if self.waiting() >= WAITERS_MAX {
            let _ = reply.send(Err(ServerError::TooManyRequests));
            return;
        }
        if let Some(refusal) = self.quota_refusal(&command) {
            let _ = reply.send(Err(refusal));
            return;
        }
        match self.replica.propose(&command) {
            Ok((index, term)) => {
                if let Some(old) = self.waiters.insert(index.0, Waiter { term, reply }) {
                    // A new leader term reused the index: the old entry was overwritten.
                    let _ = old.reply.send(Err(ServerError::LeaderChanged));
                }
            }
            Err(ProposeError::Raft(RaftProposeError::NotLeader { leader: Some(_) }))
                if is_forwardable(&command) =>
            {
                self.forward(command, reply);
            }
            Err(ProposeError::Raft(RaftProposeError::NotLeader { leader: None })) => {
                self.hold_until_leader(command, reply);
            }
            Err(error) => {
                let _ = reply.send(Err(propose_error(error)));
            }
        }
    }

    /// On a follower: hands a key-value write to the leader through raft (as etcd does); this
    /// member answers it when it applies it.
    fn forward(&mut self, command: Command, reply: oneshot::Sender<Answer<CommandResponse>>) {
        let id = self.next_forward_id;
        self.next_forward_id += 1;
        match self.replica.forward(id, &command) {
            Ok(term) => {
                self.forwarded.insert(id, ForwardedWaiter { term, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(propose_error(error)));
            }
        }
    }

    /// Requests waiting for an answer from the group.
    fn waiting(&self) -> usize {
        self.waiters.len() + self.forwarded.len() + self.reads.len() + self.leaderless.len()
    }

    fn handle_range(
        &mut self,
        request: RangeRequest,
        linearizable: bool,
        reply: oneshot::Sender<Answer<RangeResponse>>,
    ) {
        if !linearizable {
            let answer = self
                .replica
                .range(&request)
                .map(|response| (response, self.header()))
                .map_err(ServerError::Mvcc);
            let _ = reply.send(answer);
            return;
        }
        if self.waiting() >= WAITERS_MAX {
            let _ = reply.send(Err(ServerError::TooManyRequests));
            return;
        }
        let id = self.next_read_id;
        self.next_read_id = self.next_read_id.wrapping_add(1);
        match self.replica.read_index(id) {
            Ok(()) => {
                self.reads.insert(id, PendingRead { request, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(propose_error(error)));
            }
        }
    }

    fn run_cycles(&mut self) -> Result<(), ReplicaError> {
        while self.replica.has_ready() {
            let started = std::time::Instant::now();
            // Written to the peers' sockets now (`peer_direct.rs`): the followers persist these
            // entries while this node does.
            self.peers.send_all(self.replica.begin_ready()?);
            // What was just committed and is already in the WAL is answered before this
            // cycle's fsync (a leader's writes, a follower's forwarded ones).
            let applied_early = self.replica.apply_durable_committed()?;
            if !applied_early.is_empty() {
                let header = self.header();
                self.answer_applied(applied_early, false, header);
            }
            let begun = started.elapsed();
            // The fsync blocks this thread, which is the group's own (node.rs). What waited for
            // it goes out before the apply (a follower's acknowledgement: the leader's commit).
            self.peers.send_all(self.replica.persist_ready()?);
            let outcome = self.replica.finish_ready()?;
            self.observe_cycle(begun, started.elapsed() - begun, &outcome);
            self.handle_outcome(outcome);
        }
        Ok(())
    }

    fn handle_outcome(&mut self, outcome: Outcome) {
        let mut messages = outcome.messages_now;
        messages.extend(outcome.messages_after_persist);
        self.peers.send_all(messages);
        let header = self.header();
        self.answer_applied(
            outcome.applied,
            outcome.snapshot_installed.is_some(),
            header,
        );
        // Waiters at or below the applied index that nothing answered were overwritten.
        let later = self.waiters.split_off(&(outcome.applied_index.0 + 1));
        let overwritten = std::mem::replace(&mut self.waiters, later);
        crate::metrics::metrics()
            .proposals_failed
            .add(overwritten.len() as u64);
        for (_, waiter) in overwritten {
            let _ = waiter.reply.send(Err(ServerError::LeaderChanged));
        }
        self.answer_read_txns(&outcome.read_states, &outcome.failed_reads);
        self.poll_move_leaders();
        for state in outcome.read_states {
            if let Some(read) = self.reads.remove(&state.id) {
                let answer = self
                    .replica
                    .range(&read.request)
                    .map(|response| (response, header))
                    .map_err(ServerError::Mvcc);
                let _ = read.reply.send(answer);
            }
        }
        for id in outcome.failed_reads {
            if let Some(read) = self.reads.remove(&id) {
                let _ = read.reply.send(Err(ServerError::LeaderChanged));
            }
        }
    }

    /// Answers the waiters of the commands just applied, and fails the forwarded writes that a
    /// newer term (or a snapshot from the leader, `snapshot`) shows were lost.
    fn answer_applied(&mut self, applied: Vec<AppliedCommand>, snapshot: bool, header: HeaderInfo) {
        let (mut committed, mut failed) = (0, 0);
        let local_id = self.replica.id().0;
        let last_applied_term = applied.last().map(|applied| applied.term);
        for applied in applied {
            if let Some(tag) = applied.forwarded.filter(|tag| tag.origin == local_id) {
                // Appended in the term it was forwarded in, or never: another term means an
                // entry of an earlier run of this node that reused the id.
                let waiter = match self.forwarded.entry(tag.id) {
                    Entry::Occupied(found) if found.get().term == applied.term => {
                        Some(found.remove())
                    }
                    _ => None,
                };
                if let Some(waiter) = waiter {
                    let header = HeaderInfo {
                        answered_as: self.replica.leader().map(|leader| leader.0),
                        ..header
                    };
                    let _ = waiter.reply.send(applied_answer(applied.result, header));
                }
                continue;
            }
            let Some(waiter) = self.waiters.remove(&applied.index.0) else {
                continue;
            };
            let answer = if waiter.term == applied.term {
                committed += 1;
                applied_answer(applied.result, header)
            } else {
                failed += 1;
                Err(ServerError::LeaderChanged)
            };
            let _ = waiter.reply.send(answer);
        }
        let metrics = crate::metrics::metrics();
        metrics.proposals_committed.add(committed);
        metrics.proposals_failed.add(failed);
        // Forwarded writes of an earlier term than the last entry applied were lost; after a
        // snapshot from the leader, any still waiting may be inside it (outcome unknown). A
        // waiter's term is never below the applied term when it is registered, so only a cycle
        // that applies a newer term (or installs a snapshot) can end any: the others skip the
        // scan of every waiter.
        let term_rose = last_applied_term.filter(|term| *term > self.applied_term);
        if let Some(term) = term_rose {
            self.applied_term = term;
        }
        if snapshot || term_rose.is_some() {
            let applied_term = self.applied_term;
            let lost: Vec<u64> = (self.forwarded.iter())
                .filter(|(_, waiter)| snapshot || waiter.term < applied_term)
                .map(|(id, _)| *id)
                .collect();
            for id in lost {
                if let Some(waiter) = self.forwarded.remove(&id) {
                    let _ = waiter.reply.send(Err(ServerError::LeaderChanged));
                }
            }
        }
    }

    fn fail_all(&mut self, error: ServerError) {
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        for (_, waiter) in std::mem::take(&mut self.forwarded) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        for (_, read) in std::mem::take(&mut self.reads) {
            let _ = read.reply.send(Err(error.clone()));
        }
        self.fail_leaderless(&error);
    }
}

/// The revision a write's response header carries, for the commands this server proposes.
fn response_revision(response: &CommandResponse) -> Option<i64> {
    match response {
        CommandResponse::Put(put) => Some(put.revision),
        CommandResponse::DeleteRange(delete) => Some(delete.revision),
        CommandResponse::Txn(txn) => Some(txn.revision),
        CommandResponse::Compact { revision } => Some(*revision),
        _ => None,
    }
}

/// The client's answer to an applied write, its header at the write's own revision.
fn applied_answer(
    result: Result<CommandResponse, chorus_mvcc::Error>,
    header: HeaderInfo,
) -> Answer<CommandResponse> {
    let revision = match &result {
        Ok(response) => response_revision(response).unwrap_or(header.revision),
        Err(_) => header.revision,
    };
    result
        .map(|response| (response, HeaderInfo { revision, ..header }))
        .map_err(ServerError::Mvcc)
}

pub(crate) fn propose_error(error: ProposeError) -> ServerError {
    match error {
        ProposeError::Raft(RaftProposeError::NotLeader { leader }) => {
            ServerError::NotLeader { leader }
        }
        ProposeError::Raft(RaftProposeError::TransferInProgress { .. }) => {
            ServerError::LeaderChanged
        }
        ProposeError::Raft(RaftProposeError::TooLarge { .. }) => ServerError::TooLarge,
        ProposeError::Raft(RaftProposeError::Backpressure { .. }) => ServerError::TooManyRequests,
        ProposeError::Raft(_) => ServerError::LeaderChanged,
        ProposeError::TooDeep { .. } => ServerError::TooDeep,
        ProposeError::Stopped => ServerError::Stopped,
    }
}
