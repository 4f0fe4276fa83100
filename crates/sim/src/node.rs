//! One replica: raft, its disk, the key-value state machine and the requests waiting on it.
//!
//! This is the driver the server will also be: it carries out each `Ready` in the documented
//! order — send `messages`; persist (the disk's fsync completes later, as an event); only then
//! send `messages_after_persist`, apply, answer reads, `advance`. While a `Ready` is being
//! persisted the replica keeps ticking and stepping messages, and takes the next `Ready` only
//! after `advance`.

use crate::checkers::Checkers;
use crate::disk::{CrashLoss, Disk, PendingWrite};
use crate::kv::{Command, Kv};
use crate::prng::Prng;
use crate::time::Nanos;
use crate::trace::{RoleName, Trace, TraceEvent};
use crate::workload::{Request, Response};
use bytes::Bytes;
use chorus_raft::{
    Config, Entry, EntryPayload, Faults, LogIndex, Message, NodeId, ProposeError, Raft, Ready,
    Role, Snapshot, Term,
};
use std::cell::Cell;
use std::collections::BTreeMap;

thread_local! {
    static PHASE: Cell<(&'static str, u64)> = const { Cell::new(("idle", 0)) };
}

/// Notes what the simulator is doing, so a panic can be attributed (`raft.check_invariants` on
/// n2, say) by the runner.
pub fn enter_phase(phase: &'static str, node: u64) {
    PHASE.with(|cell| cell.set((phase, node)));
}

pub fn current_phase() -> (&'static str, u64) {
    PHASE.with(Cell::get)
}

/// How a replica is set up; all of it derived from the seed.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    pub election_timeout_ticks: u32,
    pub heartbeat_interval_ticks: u32,
    /// Take a snapshot and compact the log every this many applied entries.
    pub snapshot_interval_entries: u64,
    pub raft_seed: u64,
    pub faults: Faults,
    /// Client requests waiting for their entry or read index, at most.
    pub requests_waiting_max: usize,
    /// A read still unanswered after this long is dropped (its client has timed out).
    pub read_expiry_ns: Nanos,
}

impl NodeConfig {
    fn raft_config(&self, incarnation: u64) -> Config {
        let mut config = Config::new(NodeId(self.id), self.voters.iter().map(|v| NodeId(*v)));
        config.election_timeout_ticks = self.election_timeout_ticks;
        config.heartbeat_interval_ticks = self.heartbeat_interval_ticks;
        config.pre_vote = true;
        config.check_quorum = true;
        // A restarted node draws new election timeouts, as a real process would (mixed, so one
        // life's sequence is not the previous life's shifted by one).
        let mut mixed = self.raft_seed ^ incarnation.rotate_left(32);
        config.seed = crate::prng::splitmix64(&mut mixed);
        config.faults = self.faults;
        config
    }
}

/// What a replica wants done outside itself; the cluster drains it after every call.
#[derive(Default)]
pub struct Outbox {
    pub messages: Vec<Message>,
    pub replies: Vec<Reply>,
    /// A write was handed to the disk: the cluster schedules its fsync.
    pub fsync_started: bool,
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub client: u64,
    pub request: u64,
    pub response: Response,
}

/// What a replica's calls need from the world around it.
pub struct NodeContext<'a> {
    pub now: Nanos,
    pub outbox: &'a mut Outbox,
    pub checkers: &'a mut Checkers,
    pub trace: &'a mut Trace,
}

#[derive(Clone, Copy, Debug)]
struct WaitingWrite {
    term: u64,
    client: u64,
    request: u64,
}

#[derive(Clone, Debug)]
struct WaitingRead {
    client: u64,
    request: u64,
    key: String,
    arrived: Nanos,
}

/// One replica.
///
/// # Invariants
/// - `raft` is `None` exactly while the replica is crashed; so are the volatile parts empty;
/// - `in_flight` is `Some` exactly while the disk has a write in flight;
/// - `applied` is the last index applied to `kv`.
pub struct Node {
    config: NodeConfig,
    raft: Option<Raft>,
    disk: Disk,
    kv: Kv,
    applied: u64,
    in_flight: Option<Ready>,
    waiting_writes: BTreeMap<u64, WaitingWrite>,
    reads_pending: BTreeMap<u64, WaitingRead>,
    reads_confirmed: Vec<(u64, WaitingRead)>,
    next_read_id: u64,
    observed: Option<(Role, Term, Option<NodeId>)>,
    /// Bumped at every start, so events of a former life (ticks, fsyncs) are recognised.
    incarnation: u64,
}

impl Node {
    /// A brand-new replica, not yet started.
    pub fn new(config: NodeConfig) -> Node {
        Node {
            config,
            raft: None,
            disk: Disk::new(),
            kv: Kv::new(),
            applied: 0,
            in_flight: None,
            waiting_writes: BTreeMap::new(),
            reads_pending: BTreeMap::new(),
            reads_confirmed: Vec::new(),
            next_read_id: 1,
            observed: None,
            incarnation: 0,
        }
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }

    pub fn raft(&self) -> Option<&Raft> {
        self.raft.as_ref()
    }

    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// Whether it leads, and in which term.
    pub fn leader_term(&self) -> Option<u64> {
        let raft = self.raft.as_ref()?;
        (raft.role() == Role::Leader).then(|| raft.term().0)
    }

    pub fn commit_index(&self) -> u64 {
        self.raft
            .as_ref()
            .map_or(self.disk.durable().hard_state.commit.0, |r| {
                r.commit_index().0
            })
    }

    /// (Re)starts from what is on disk.
    pub fn start(&mut self, ctx: &mut NodeContext<'_>) {
        assert!(self.raft.is_none(), "n{} started twice", self.config.id);
        self.incarnation += 1;
        let restore = self.disk.restore_state();
        let snapshot_index = restore.snapshot.as_ref().map_or(0, |s| s.meta.last_index.0);
        self.kv = match &restore.snapshot {
            Some(snapshot) => match Kv::restore(&snapshot.data) {
                Ok(kv) => kv,
                Err(error) => panic!(
                    "n{}: snapshot on disk does not decode: {error}",
                    self.config.id
                ),
            },
            None => Kv::new(),
        };
        self.applied = snapshot_index;
        if self.incarnation > 1 {
            let durable = self.disk.durable();
            ctx.trace.record(
                ctx.now,
                TraceEvent::Restart {
                    node: self.config.id,
                    term: durable.hard_state.term.0,
                    commit: durable.hard_state.commit.0,
                    last_index: self.disk.last_index().0,
                },
            );
        }
        enter_phase("Raft::new", self.config.id);
        self.raft = Some(Raft::new(
            self.config.raft_config(self.incarnation),
            restore,
        ));
        self.after_input(ctx);
    }

    /// Power loss: everything volatile is gone; the disk keeps what was fsynced (and maybe a
    /// torn prefix of the write in flight).
    pub fn crash(
        &mut self,
        prng: &mut Prng,
        torn_percent: u32,
        ctx: &mut NodeContext<'_>,
    ) -> CrashLoss {
        assert!(
            self.raft.is_some(),
            "n{} crashed while down",
            self.config.id
        );
        self.raft = None;
        self.in_flight = None;
        let (loss, written) = self.disk.crash(prng, torn_percent);
        ctx.checkers
            .on_durable_write(self.config.id, &self.disk, &written, ctx.now);
        self.kv = Kv::new();
        self.applied = 0;
        self.waiting_writes.clear();
        self.reads_pending.clear();
        self.reads_confirmed.clear();
        self.observed = None;
        ctx.trace.record(
            ctx.now,
            TraceEvent::Crash {
                node: self.config.id,
                loss,
            },
        );
        loss
    }

    pub fn tick(&mut self, ctx: &mut NodeContext<'_>) {
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        enter_phase("Raft::tick", self.config.id);
        raft.tick();
        self.after_input(ctx);
    }

    pub fn step(&mut self, message: Message, ctx: &mut NodeContext<'_>) {
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        enter_phase("Raft::step", self.config.id);
        raft.step(message);
        self.after_input(ctx);
    }

    pub fn handle_request(
        &mut self,
        client: u64,
        request: u64,
        body: Request,
        ctx: &mut NodeContext<'_>,
    ) {
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        // A read whose ReadIndex exchange was lost is never answered; its client gave up long
        // ago. Forget such reads rather than fill up.
        let expired_before = ctx.now.saturating_sub(self.config.read_expiry_ns);
        self.reads_pending
            .retain(|_, read| read.arrived >= expired_before);
        self.reads_confirmed
            .retain(|(_, read)| read.arrived >= expired_before);
        let waiting =
            self.waiting_writes.len() + self.reads_pending.len() + self.reads_confirmed.len();
        if waiting >= self.config.requests_waiting_max {
            ctx.outbox.replies.push(Reply {
                client,
                request,
                response: Response::Busy,
            });
            return;
        }
        match body {
            Request::Write(command) => {
                enter_phase("Raft::propose", self.config.id);
                match raft.propose(command.encode()) {
                    Ok(index) => {
                        let term = raft.term().0;
                        let replaced = self.waiting_writes.insert(
                            index.0,
                            WaitingWrite {
                                term,
                                client,
                                request,
                            },
                        );
                        if let Some(old) = replaced {
                            ctx.outbox.replies.push(Reply {
                                client: old.client,
                                request: old.request,
                                response: Response::Unknown,
                            });
                        }
                    }
                    Err(ProposeError::NotLeader { leader }) => ctx.outbox.replies.push(Reply {
                        client,
                        request,
                        response: Response::NotLeader {
                            hint: leader.map(|l| l.0),
                        },
                    }),
                    Err(_) => ctx.outbox.replies.push(Reply {
                        client,
                        request,
                        response: Response::Busy,
                    }),
                }
            }
            Request::Read { key } => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                enter_phase("Raft::read_index", self.config.id);
                match raft.read_index(id) {
                    Ok(()) => {
                        self.reads_pending.insert(
                            id,
                            WaitingRead {
                                client,
                                request,
                                key,
                                arrived: ctx.now,
                            },
                        );
                    }
                    Err(ProposeError::NotLeader { leader }) => ctx.outbox.replies.push(Reply {
                        client,
                        request,
                        response: Response::ReadFailed {
                            hint: leader.map(|l| l.0),
                        },
                    }),
                    Err(_) => ctx.outbox.replies.push(Reply {
                        client,
                        request,
                        response: Response::ReadFailed { hint: None },
                    }),
                }
            }
        }
        self.after_input(ctx);
    }

    /// The fsync of the write in flight completed.
    pub fn fsync_done(&mut self, ctx: &mut NodeContext<'_>) {
        let Some(ready) = self.in_flight.take() else {
            panic!(
                "n{}: fsync completed with no write in flight",
                self.config.id
            );
        };
        let written = self.disk.complete_write();
        ctx.checkers
            .on_durable_write(self.config.id, &self.disk, &written, ctx.now);
        ctx.trace.record(
            ctx.now,
            TraceEvent::Fsync {
                node: self.config.id,
                entries: written.entries.map(|(first, last)| (first.0, last.0)),
                hard_state: ready
                    .hard_state
                    .map(|hs| (hs.term.0, hs.vote.map(|v| v.0), hs.commit.0)),
                snapshot: ready.snapshot.as_ref().map(|s| s.meta.last_index.0),
            },
        );
        self.finish_ready(ready, ctx);
        self.after_input(ctx);
    }

    /// After every input: check raft, watch its role, and take the next `Ready` if the disk is
    /// free.
    fn after_input(&mut self, ctx: &mut NodeContext<'_>) {
        let id = self.config.id;
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        enter_phase("Raft::check_invariants", id);
        raft.check_invariants();
        let observed = (raft.role(), raft.term(), raft.leader());
        if observed.0 == Role::Leader {
            ctx.checkers.on_leader(observed.1 .0, id, ctx.now);
        }
        if self.observed != Some(observed) {
            self.observed = Some(observed);
            ctx.trace.record(
                ctx.now,
                TraceEvent::Role {
                    node: id,
                    role: RoleName::from(observed.0),
                    term: observed.1 .0,
                    leader: observed.2.map(|l| l.0),
                },
            );
        }
        loop {
            if self.in_flight.is_some() {
                return;
            }
            let Some(raft) = self.raft.as_mut() else {
                return;
            };
            enter_phase("Raft::has_ready", id);
            if !raft.has_ready() {
                return;
            }
            enter_phase("Raft::ready", id);
            let mut ready = raft.ready();
            ctx.outbox.messages.append(&mut ready.messages);
            if ready.must_persist() {
                self.disk.begin_write(PendingWrite {
                    snapshot: ready.snapshot.clone(),
                    entries: std::mem::take(&mut ready.entries),
                    hard_state: ready.hard_state,
                });
                ctx.outbox.fsync_started = true;
                self.in_flight = Some(ready);
                return;
            }
            self.finish_ready(ready, ctx);
        }
    }

    /// The `Ready` is durable: send what had to wait, apply, answer, advance.
    fn finish_ready(&mut self, ready: Ready, ctx: &mut NodeContext<'_>) {
        let id = self.config.id;
        ctx.outbox.messages.extend(ready.messages_after_persist);
        if let Some(snapshot) = &ready.snapshot {
            self.restore_snapshot(snapshot, ctx);
        }
        let leader_term = self.leader_term();
        if let (Some(first), Some(last)) = (
            ready.committed_entries.first(),
            ready.committed_entries.last(),
        ) {
            ctx.trace.record(
                ctx.now,
                TraceEvent::Apply {
                    node: id,
                    first: first.index.0,
                    last: last.index.0,
                },
            );
        }
        for entry in &ready.committed_entries {
            self.apply(entry, leader_term, ctx);
        }
        for read_state in &ready.read_states {
            if let Some(waiting) = self.reads_pending.remove(&read_state.id) {
                self.reads_confirmed.push((read_state.index.0, waiting));
            }
        }
        let hint = self.raft.as_ref().and_then(|r| r.leader()).map(|l| l.0);
        for id in &ready.failed_reads {
            if let Some(waiting) = self.reads_pending.remove(id) {
                ctx.outbox.replies.push(Reply {
                    client: waiting.client,
                    request: waiting.request,
                    response: Response::ReadFailed { hint },
                });
            }
        }
        self.answer_reads(ctx);
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        enter_phase("Raft::advance", id);
        raft.advance();
        self.maybe_compact(ctx);
    }

    fn restore_snapshot(&mut self, snapshot: &Snapshot, ctx: &mut NodeContext<'_>) {
        let index = snapshot.meta.last_index.0;
        self.kv = match Kv::restore(&snapshot.data) {
            Ok(kv) => kv,
            Err(error) => panic!(
                "n{}: received snapshot does not decode: {error}",
                self.config.id
            ),
        };
        self.applied = index;
        let answered: Vec<u64> = self
            .waiting_writes
            .range(..=index)
            .map(|(i, _)| *i)
            .collect();
        for waiting_index in answered {
            if let Some(waiting) = self.waiting_writes.remove(&waiting_index) {
                ctx.outbox.replies.push(Reply {
                    client: waiting.client,
                    request: waiting.request,
                    response: Response::Unknown,
                });
            }
        }
        ctx.trace.record(
            ctx.now,
            TraceEvent::SnapshotRestored {
                node: self.config.id,
                index,
            },
        );
    }

    fn apply(&mut self, entry: &Entry, leader_term: Option<u64>, ctx: &mut NodeContext<'_>) {
        assert!(
            entry.index.0 == self.applied + 1,
            "n{}: committed entry i{} handed out after applied i{}",
            self.config.id,
            entry.index,
            self.applied
        );
        ctx.checkers
            .on_apply(self.config.id, entry, leader_term, ctx.now);
        let result = match &entry.payload {
            EntryPayload::Normal(data) => match Command::decode(data) {
                Ok(command) => Some(self.kv.apply(command)),
                Err(error) => panic!(
                    "n{}: entry i{} does not decode: {error}",
                    self.config.id, entry.index
                ),
            },
            EntryPayload::Noop | EntryPayload::ConfChange(_) => None,
        };
        self.applied = entry.index.0;
        if let Some(waiting) = self.waiting_writes.remove(&entry.index.0) {
            let response = match result {
                Some(result) if waiting.term == entry.term.0 => Response::Written {
                    result,
                    index: entry.index.0,
                    term: entry.term.0,
                },
                _ => Response::Unknown,
            };
            ctx.outbox.replies.push(Reply {
                client: waiting.client,
                request: waiting.request,
                response,
            });
        }
    }

    fn answer_reads(&mut self, ctx: &mut NodeContext<'_>) {
        let applied = self.applied;
        let kv = &self.kv;
        self.reads_confirmed.retain(|(index, waiting)| {
            if *index > applied {
                return true;
            }
            ctx.outbox.replies.push(Reply {
                client: waiting.client,
                request: waiting.request,
                response: Response::Read {
                    value: kv.get(&waiting.key).cloned(),
                },
            });
            false
        });
    }

    fn maybe_compact(&mut self, ctx: &mut NodeContext<'_>) {
        let snapshot_index = self.disk.snapshot_index().0;
        if self.applied < snapshot_index + self.config.snapshot_interval_entries {
            return;
        }
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let data: Bytes = self.kv.snapshot();
        enter_phase("Raft::compact", self.config.id);
        if let Ok(meta) = raft.compact(LogIndex(self.applied), data.clone()) {
            assert!(
                meta.last_index == LogIndex(self.applied),
                "n{}: compact({}) returned a snapshot at {}",
                self.config.id,
                self.applied,
                meta.last_index
            );
            self.disk.store_snapshot(Snapshot { meta, data });
            ctx.trace.record(
                ctx.now,
                TraceEvent::Compact {
                    node: self.config.id,
                    index: self.applied,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single_voter(requests_waiting_max: usize) -> Node {
        Node::new(NodeConfig {
            id: 1,
            voters: vec![1],
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            snapshot_interval_entries: 200,
            raft_seed: 7,
            faults: Faults::default(),
            requests_waiting_max,
            read_expiry_ns: 2_000_000_000,
        })
    }

    struct World {
        outbox: Outbox,
        checkers: Checkers,
        trace: Trace,
    }

    impl World {
        fn new() -> World {
            World {
                outbox: Outbox::default(),
                checkers: Checkers::new(1, 300, 1),
                trace: Trace::new(8, false),
            }
        }

        fn ctx(&mut self) -> NodeContext<'_> {
            NodeContext {
                now: 0,
                outbox: &mut self.outbox,
                checkers: &mut self.checkers,
                trace: &mut self.trace,
            }
        }
    }

    /// Ticks (completing fsyncs at once) until the single voter leads.
    fn elect(node: &mut Node, world: &mut World) {
        node.start(&mut world.ctx());
        for _ in 0..100 {
            node.tick(&mut world.ctx());
            while node.disk.is_busy() {
                node.fsync_done(&mut world.ctx());
            }
            if node.leader_term().is_some() {
                return;
            }
        }
        panic!("a single voter did not become leader in 100 ticks");
    }

    fn put(value: &str) -> Request {
        Request::Write(Command::Put {
            key: "k".to_string(),
            value: value.to_string(),
        })
    }

    #[test]
    fn a_write_is_answered_once_its_entry_is_applied() {
        let mut world = World::new();
        let mut node = single_voter(4);
        elect(&mut node, &mut world);
        node.handle_request(1, 1, put("a"), &mut world.ctx());
        assert!(
            world.outbox.replies.is_empty(),
            "answered before the entry was durable"
        );
        while node.disk.is_busy() {
            node.fsync_done(&mut world.ctx());
        }
        let replies: Vec<Response> = world.outbox.replies.drain(..).map(|r| r.response).collect();
        assert!(
            matches!(replies.as_slice(), [Response::Written { .. }]),
            "{replies:?}"
        );
        assert_eq!(node.kv().get("k").map(String::as_str), Some("a"));
        assert!(world.checkers.violation.is_none());
    }

    #[test]
    fn requests_past_requests_waiting_max_are_refused_as_busy() {
        let mut world = World::new();
        let mut node = single_voter(1);
        elect(&mut node, &mut world);
        // At the limit: one write waits for its entry.
        node.handle_request(1, 1, put("a"), &mut world.ctx());
        assert!(world.outbox.replies.is_empty());
        // One past it: refused at once, nothing proposed.
        let last_index = node.raft().map(|r| r.last_index());
        node.handle_request(2, 1, put("b"), &mut world.ctx());
        assert_eq!(world.outbox.replies.len(), 1);
        assert_eq!(world.outbox.replies[0].response, Response::Busy);
        assert_eq!(node.raft().map(|r| r.last_index()), last_index);
    }

    #[test]
    fn a_crash_forgets_everything_not_fsynced() {
        let mut world = World::new();
        let mut node = single_voter(4);
        elect(&mut node, &mut world);
        node.handle_request(1, 1, put("a"), &mut world.ctx());
        assert!(node.disk.is_busy());
        let loss = node.crash(&mut Prng::new(1), 0, &mut world.ctx());
        assert_eq!(loss.kept, 0);
        assert!(!node.is_up());
        node.start(&mut world.ctx());
        while node.disk.is_busy() {
            node.fsync_done(&mut world.ctx());
        }
        assert_eq!(
            node.kv().get("k"),
            None,
            "an unsynced write survived the crash"
        );
    }
}
