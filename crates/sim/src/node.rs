//! One replica: `chorus_replica::Replica` — the replica code the server drives: raft, the real
//! WAL, hard state file and snapshot store (`chorus-storage`) on a simulated disk (`SimFs`), and
//! the real MVCC store (`chorus-mvcc`) — plus the client requests waiting on it.
//!
//! The `Ready` cycle is split around the disk's latency: `begin_ready` gives the messages that
//! may go at once; the fsync completes later, as an event, and only then does `finish_ready`
//! persist (durable when it returns), apply, and give the messages that had to wait, the
//! commands applied and the reads that may be served. While a `Ready` is in flight the replica
//! keeps ticking and stepping messages, and takes the next `Ready` only after `finish_ready`.
//!
//! A crash drops the `Replica` and cuts the power of its `SimFs` (`SimFs::crash`, choices from
//! the disk stream): a `Ready` in flight is lost whole, or — in `torn_write_percent` of such
//! crashes — the power is cut in the middle of its persist (`SimFs::halt_after_operations`), so
//! the WAL, the hard state file and the snapshot store are torn at every step. A restart opens
//! a new `Replica` on the same disk with what the crash left of its MVCC backend: the backend
//! commits durably only every few writes (`MemoryBackend::with_durable_every`, as the redb one
//! does) and keeps only what it had made durable (`MemoryBackend::crashed`); the replica replays
//! the rest from its WAL. The backend holds the state a compaction's snapshot leaves out.

use crate::checkers::{payload_hash, Checkers, DurableStateSurvives, Violation};
use crate::durable_log::{DurableLog, Written};
use crate::kv::{Command, CommandResult};
use crate::prng::Prng;
use crate::time::Nanos;
use crate::trace::{RoleName, Trace, TraceEvent};
use crate::workload::{Request, Response};
use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, MemoryBackend, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use chorus_raft::{Config, Entry, Faults, LogIndex, NodeId, Role, Term};
use chorus_replica::{CommandResponse, ProposeError, Replica, ReplicaConfig, ReplicaError};
use chorus_storage::SimFs;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

/// The replica the simulator drives: the server's, over the simulated disk and the in-memory
/// MVCC backend.
pub type SimReplica = Replica<SimFs, MemoryBackend>;

/// Where a replica keeps its data on its own `SimFs`.
const DATA_DIR: &str = "/data";
/// The largest encoded WAL record the simulator's replicas accept (commands are small).
const RECORD_BYTES_MAX: u64 = 4096;
/// Restarts whose recovery is itself cut by a power loss, in percent, at most this many times
/// in a row.
const RECOVERY_CRASH_PERCENT: u32 = 10;
const RECOVERY_CRASHES_MAX: u32 = 3;
/// `Replica::check_invariants` (which reads the whole store) runs after every this many
/// `Ready` cycles of a replica, and after each snapshot, restart and at the end; raft's own
/// invariants are checked after every call.
pub const REPLICA_CHECK_INTERVAL_CYCLES: u64 = 64;

/// The TTL a client session is opened with, in the replica's seconds (10 ticks each; a tick is
/// 10 ms of the replica's clock, so 6 s simulated). Every sessioned write and every new leader
/// restart it; a client that thinks less than that between writes keeps its session.
pub const SESSION_TTL_SECONDS: i64 = 60;

/// The most open client sessions the leader allows: well above the clients (at most 8), so an
/// opening answered too late (the client opens another) never starves the others.
pub const SESSIONS_MAX: u32 = 64;

thread_local! {
    static PHASE: Cell<(&'static str, u64)> = const { Cell::new(("idle", 0)) };
}

/// Notes what the simulator is doing, so a panic can be attributed (`Raft::check_invariants` on
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
    /// [`chorus_replica::ReplicaConfig::log_entries_kept`].
    pub log_entries_kept: u64,
    /// The MVCC backend commits durably every this many writes (and at a persist).
    pub backend_durable_every: u64,
    /// WAL segment size: small, so segments roll over and whole segments are compacted away.
    pub segment_bytes_max: u64,
    pub raft_seed: u64,
    pub faults: Faults,
    /// Client requests waiting for their entry or read index, at most.
    pub requests_waiting_max: usize,
    /// A read still unanswered after this long is dropped (its client has timed out).
    pub read_expiry_ns: Nanos,
    /// Leader-lease reads with this drift bound (ppm); `None`: every read confirmed by a round.
    pub read_lease_ppm: Option<u32>,
    /// Followers hand writes to the leader through raft (as the server does) instead of
    /// answering "not leader".
    pub forward_writes: bool,
    /// A deliberately broken variant: forwarded writes are reported lost too early.
    pub break_forward_loss: bool,
}

impl NodeConfig {
    fn replica_config(&self, incarnation: u64) -> ReplicaConfig {
        let mut raft = Config::new(NodeId(self.id), self.voters.iter().map(|v| NodeId(*v)));
        raft.election_timeout_ticks = self.election_timeout_ticks;
        raft.heartbeat_interval_ticks = self.heartbeat_interval_ticks;
        raft.pre_vote = true;
        raft.check_quorum = true;
        // A restarted node draws new election timeouts, as a real process would (mixed, so one
        // life's sequence is not the previous life's shifted by one).
        let mut mixed = self.raft_seed ^ incarnation.rotate_left(32);
        raft.seed = crate::prng::splitmix64(&mut mixed);
        raft.faults = self.faults;
        raft.lease = self
            .read_lease_ppm
            .map(|clock_drift_bound_ppm| chorus_raft::LeaseConfig {
                clock_drift_bound_ppm,
            });
        let mut config = ReplicaConfig::new(raft);
        config.snapshot_every_entries = self.snapshot_interval_entries;
        config.log_entries_kept = self.log_entries_kept;
        config.durable.wal.record_bytes_max = RECORD_BYTES_MAX;
        config.durable.wal.segment_bytes_max = self.segment_bytes_max;
        config.durable.wal.index_stride_bytes = 1024;
        config
    }
}

/// What a crash did to the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CrashLoss {
    /// A `Ready` was waiting for its fsync.
    pub in_flight: bool,
    /// The power was cut during its persist, after this many disk operations of it.
    pub cut_after_operations: Option<u64>,
}

/// What a replica wants done outside itself; the cluster drains it after every call.
#[derive(Default)]
pub struct Outbox {
    pub messages: Vec<chorus_raft::Message>,
    pub replies: Vec<Reply>,
    /// A `Ready` waits for the disk: the cluster schedules its fsync.
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

/// A write this follower handed to the leader through raft (`Replica::forward`), by its id.
#[derive(Clone, Debug)]
struct ForwardedWrite {
    /// The term it was forwarded in: it is appended in that term or never.
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
/// - `replica` is `None` exactly while the replica is crashed; so are the volatile parts empty;
/// - `in_flight` is true only while `replica` has a `Ready` between `begin_ready` and
///   `finish_ready`;
/// - `durable` is what the replica's disk holds, as far as the checkers know.
pub struct Node {
    config: NodeConfig,
    fs: SimFs,
    replica: Option<SimReplica>,
    in_flight: bool,
    waiting_writes: BTreeMap<u64, WaitingWrite>,
    forwarded_writes: BTreeMap<u64, ForwardedWrite>,
    next_forward_id: u64,
    reads_pending: BTreeMap<u64, WaitingRead>,
    next_read_id: u64,
    observed: Option<(Role, Term, Option<NodeId>)>,
    durable: DurableLog,
    /// Disk operations the last persist took: where a power cut during a persist may fall.
    persist_operations: u64,
    persist_operations_max: u64,
    /// The last crash cut a persist in the middle (recovery may find part of it).
    cut_during_persist: bool,
    /// Bumped at every start, so events of a former life (ticks, fsyncs) are recognised.
    incarnation: u64,
    /// What the last crash left of the MVCC backend (None before the first start).
    backend: Option<MemoryBackend>,
    /// `Ready` cycles finished, for `REPLICA_CHECK_INTERVAL_CYCLES`.
    cycles: u64,
}

impl Node {
    /// A brand-new replica with an empty disk, not yet started.
    pub fn new(config: NodeConfig) -> Node {
        Node {
            config,
            fs: SimFs::new(),
            replica: None,
            in_flight: false,
            waiting_writes: BTreeMap::new(),
            forwarded_writes: BTreeMap::new(),
            next_forward_id: 1,
            reads_pending: BTreeMap::new(),
            next_read_id: 1,
            observed: None,
            durable: DurableLog::default(),
            persist_operations: 8,
            persist_operations_max: 8,
            cut_during_persist: false,
            incarnation: 0,
            backend: None,
            cycles: 0,
        }
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    pub fn replica(&self) -> Option<&SimReplica> {
        self.replica.as_ref()
    }

    /// Its disk.
    pub fn fs(&self) -> &SimFs {
        &self.fs
    }

    /// What its disk holds, as the checkers follow it.
    pub fn durable_log(&self) -> &DurableLog {
        &self.durable
    }

    pub fn is_persisting(&self) -> bool {
        self.in_flight
    }

    pub fn applied_index(&self) -> u64 {
        self.replica.as_ref().map_or(0, |r| r.applied_index().0)
    }

    /// Whether it leads, and in which term.
    pub fn leader_term(&self) -> Option<u64> {
        let replica = self.replica.as_ref()?;
        (replica.role() == Role::Leader).then(|| replica.term().0)
    }

    pub fn commit_index(&self) -> u64 {
        self.replica
            .as_ref()
            .map_or(self.durable.commit, |r| r.raft().commit_index().0)
    }

    /// (Re)starts from what is on disk. Sometimes (from the disk stream) the power fails again
    /// during recovery, and recovery starts over.
    pub fn start(&mut self, prng: &mut Prng, ctx: &mut NodeContext<'_>) {
        assert!(self.replica.is_none(), "n{} started twice", self.config.id);
        self.incarnation += 1;
        // Each life numbers its forwarded writes apart from the last one's.
        self.next_forward_id = (self.incarnation << 40) + 1;
        let id = self.config.id;
        let mut recovery_crashes = 0;
        let replica = loop {
            let cut = recovery_crashes < RECOVERY_CRASHES_MAX
                && self.incarnation > 1
                && prng.chance_percent(RECOVERY_CRASH_PERCENT);
            if cut {
                self.fs
                    .halt_after_operations(Some(prng.range_inclusive(0, 6)));
            }
            enter_phase("Replica::open", id);
            let backend = self.backend.clone().unwrap_or_else(|| {
                MemoryBackend::with_durable_every(self.config.backend_durable_every)
            });
            let opened = Replica::open(
                self.config.replica_config(self.incarnation),
                self.fs.clone(),
                Path::new(DATA_DIR),
                backend,
            );
            let halted = self.fs.is_halted();
            self.fs.halt_after_operations(None);
            match opened {
                Ok(replica) if !halted => break replica,
                Err(error) if !halted => {
                    ctx.checkers.record(Err(Violation {
                        checker: DurableStateSurvives::NAME,
                        at: ctx.now,
                        message: format!("n{id} does not recover from its disk: {error}"),
                    }));
                    return;
                }
                other => {
                    // An open cut short may have restored the backend from the snapshot.
                    if let Ok(replica) = other {
                        self.backend = Some(replica.into_backend().crashed());
                    }
                    recovery_crashes += 1;
                    ctx.trace.record(
                        ctx.now,
                        TraceEvent::Note {
                            what: format!("n{id}: power cut during recovery; recovery again"),
                        },
                    );
                    // What was durable before must survive this too: `cut_during_persist`
                    // stays as the crash before left it.
                    self.fs.crash(|n| prng.below(n.max(1)));
                }
            }
        };
        self.fs.halt_after_operations(None);
        let recovered = recovered_log(&replica);
        if self.incarnation > 1 {
            let checked = DurableStateSurvives::check_recovered(
                id,
                &self.durable,
                &recovered,
                self.cut_during_persist,
                ctx.now,
            );
            ctx.checkers.record(checked);
            ctx.trace.record(
                ctx.now,
                TraceEvent::Restart {
                    node: id,
                    term: recovered.term,
                    commit: recovered.commit,
                    last_index: recovered.last_index(),
                },
            );
        }
        enter_phase("Replica::check_invariants", id);
        replica.check_invariants();
        record_log(ctx, id, &recovered);
        self.durable = recovered;
        self.cut_during_persist = false;
        self.replica = Some(replica);
        self.after_input(ctx);
    }

    /// Power loss: everything volatile is gone; the disk keeps what was fsynced, and what a
    /// persist cut in the middle left (torn as the disk stream chooses).
    pub fn crash(
        &mut self,
        prng: &mut Prng,
        torn_percent: u32,
        ctx: &mut NodeContext<'_>,
    ) -> CrashLoss {
        let id = self.config.id;
        let Some(mut replica) = self.replica.take() else {
            panic!("n{id} crashed while down");
        };
        let mut loss = CrashLoss {
            in_flight: self.in_flight,
            cut_after_operations: None,
        };
        if self.in_flight && prng.chance_percent(torn_percent) {
            // Anywhere in a persist like the last one, or like the longest yet (a snapshot's).
            let operations = if prng.chance_percent(50) {
                self.persist_operations
            } else {
                self.persist_operations_max
            };
            let cut_after = prng.below(operations.max(1));
            self.fs.halt_after_operations(Some(cut_after));
            let before = self.fs.stats().operations;
            enter_phase("Replica::finish_ready (power cut)", id);
            // What it returns is never seen: the power is gone.
            let _ = replica.finish_ready();
            loss.cut_after_operations = Some(self.fs.stats().operations - before);
            self.cut_during_persist = true;
        }
        self.backend = Some(replica.into_backend().crashed());
        self.fs.crash(|n| prng.below(n.max(1)));
        self.in_flight = false;
        self.waiting_writes.clear();
        self.forwarded_writes.clear();
        self.reads_pending.clear();
        self.observed = None;
        ctx.trace
            .record(ctx.now, TraceEvent::Crash { node: id, loss });
        loss
    }

    pub fn tick(&mut self, ctx: &mut NodeContext<'_>) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        enter_phase("Replica::tick", self.config.id);
        replica.tick();
        self.after_input(ctx);
    }

    pub fn step(&mut self, message: chorus_raft::Message, ctx: &mut NodeContext<'_>) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        enter_phase("Replica::step", self.config.id);
        replica.step(message);
        self.after_input(ctx);
    }

    pub fn handle_request(
        &mut self,
        client: u64,
        request: u64,
        body: Request,
        ctx: &mut NodeContext<'_>,
    ) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        // A read whose ReadIndex exchange was lost is never answered; its client gave up long
        // ago. Forget such reads rather than fill up.
        let expired_before = ctx.now.saturating_sub(self.config.read_expiry_ns);
        self.reads_pending
            .retain(|_, read| read.arrived >= expired_before);
        let waiting =
            self.waiting_writes.len() + self.forwarded_writes.len() + self.reads_pending.len();
        if waiting >= self.config.requests_waiting_max {
            ctx.outbox.replies.push(Reply {
                client,
                request,
                response: Response::Busy,
            });
            return;
        }
        match body {
            Request::Write(_) | Request::SessionWrite { .. } | Request::OpenSession => {
                let Some(command) = write_command(&body) else {
                    unreachable!("a write request has a command")
                };
                enter_phase("Replica::propose", self.config.id);
                match replica.propose(&command) {
                    Ok((index, term)) => {
                        let replaced = self.waiting_writes.insert(
                            index.0,
                            WaitingWrite {
                                term: term.0,
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
                    Err(ProposeError::Raft(chorus_raft::ProposeError::NotLeader {
                        leader: Some(_),
                    })) if self.config.forward_writes
                        && chorus_replica::is_forwardable(&command) =>
                    {
                        // As the server does: the leader gets it through raft, and this
                        // replica answers when it applies it.
                        let id = self.next_forward_id;
                        self.next_forward_id += 1;
                        enter_phase("Replica::forward", self.config.id);
                        let response = match replica.forward(id, &command) {
                            Ok(term) => {
                                let write = ForwardedWrite {
                                    term: term.0,
                                    client,
                                    request,
                                };
                                self.forwarded_writes.insert(id, write);
                                None
                            }
                            Err(ProposeError::Raft(chorus_raft::ProposeError::NotLeader {
                                leader,
                            })) => Some(Response::NotLeader {
                                hint: leader.map(|l| l.0),
                            }),
                            Err(_) => Some(Response::Busy),
                        };
                        if let Some(response) = response {
                            ctx.outbox.replies.push(Reply {
                                client,
                                request,
                                response,
                            });
                        }
                    }
                    Err(ProposeError::Raft(chorus_raft::ProposeError::NotLeader { leader })) => {
                        ctx.outbox.replies.push(Reply {
                            client,
                            request,
                            response: Response::NotLeader {
                                hint: leader.map(|l| l.0),
                            },
                        });
                    }
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
                enter_phase("Replica::read_index", self.config.id);
                match replica.read_index(id) {
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
                    Err(ProposeError::Raft(chorus_raft::ProposeError::NotLeader { leader })) => {
                        ctx.outbox.replies.push(Reply {
                            client,
                            request,
                            response: Response::ReadFailed {
                                hint: leader.map(|l| l.0),
                            },
                        });
                    }
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

    /// The fsync of the `Ready` in flight completed: persist it, apply, answer.
    pub fn fsync_done(&mut self, ctx: &mut NodeContext<'_>) {
        assert!(
            self.in_flight,
            "n{}: fsync completed with no Ready in flight",
            self.config.id
        );
        self.in_flight = false;
        self.finish_ready(ctx);
        self.after_input(ctx);
    }

    /// After every input: check raft, watch its role, and start the next `Ready` if the disk is
    /// free.
    fn after_input(&mut self, ctx: &mut NodeContext<'_>) {
        let id = self.config.id;
        loop {
            let Some(replica) = self.replica.as_mut() else {
                return;
            };
            enter_phase("Raft::check_invariants", id);
            replica.raft().check_invariants();
            let observed = (replica.role(), replica.term(), replica.leader());
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
            if self.in_flight || !replica.has_ready() {
                return;
            }
            let must_persist = must_persist(replica);
            enter_phase("Replica::begin_ready", id);
            match replica.begin_ready() {
                Ok(messages) => ctx.outbox.messages.extend(messages),
                Err(error) => {
                    self.replica_failed(error, ctx);
                    return;
                }
            }
            if must_persist {
                self.in_flight = true;
                ctx.outbox.fsync_started = true;
                self.apply_early(ctx);
                return;
            }
            self.finish_ready(ctx);
        }
    }

    /// A replica answers the committed entries its WAL already holds for good now, while the
    /// fsync of the `Ready` in flight is still to complete (as the server does,
    /// `Replica::apply_durable_committed`): a crash before that fsync must not lose them.
    fn apply_early(&mut self, ctx: &mut NodeContext<'_>) {
        let id = self.config.id;
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let before = replica.applied_index().0;
        let entries = held_entries(replica, before, replica.raft().applied_index().0);
        enter_phase("Replica::apply_durable_committed", id);
        let commands = match replica.apply_durable_committed() {
            Ok(commands) => commands,
            Err(error) => {
                self.replica_failed(error, ctx);
                return;
            }
        };
        enter_phase("Replica::check_applied_is_durable", id);
        replica.check_applied_is_durable();
        if commands.is_empty() && replica.applied_index().0 == before {
            return;
        }
        let index = replica.applied_index().0;
        let leader_term = (replica.role() == Role::Leader).then(|| replica.term().0);
        self.note_applied(
            Applied {
                before,
                entries: &entries,
                commands: &commands,
                index,
                snapshot_installed: false,
                leader_term,
            },
            ctx,
        );
    }

    /// Follows what the replica applied (the trace, the apply checkers) and answers the writes
    /// waiting for it: at the end of a cycle, or a leader's early answers before its fsync.
    fn note_applied(&mut self, applied: Applied<'_>, ctx: &mut NodeContext<'_>) {
        let id = self.config.id;
        if !applied.snapshot_installed && applied.index > applied.before {
            ctx.trace.record(
                ctx.now,
                TraceEvent::Apply {
                    node: id,
                    first: applied.before + 1,
                    last: applied.index,
                },
            );
            let mut by_index: BTreeMap<u64, Term> = BTreeMap::new();
            for command in applied.commands {
                by_index.insert(command.index.0, command.term);
            }
            for entry in applied.entries {
                if entry.index.0 > applied.index {
                    break;
                }
                let mut entry = entry.clone();
                // The term the store applied wins over raft's memory (which a broken raft may
                // have overwritten meanwhile).
                if let Some(term) = by_index.get(&entry.index.0) {
                    entry.term = *term;
                }
                ctx.checkers
                    .on_apply(id, &entry, applied.leader_term, ctx.now);
            }
        }
        answer_forwarded(
            &mut self.forwarded_writes,
            &self.config,
            applied.commands,
            applied.snapshot_installed,
            ctx,
        );
        for applied in applied.commands {
            let Some(waiting) = self.waiting_writes.remove(&applied.index.0) else {
                continue;
            };
            let response = match (&applied.result, waiting.term == applied.term.0) {
                (Ok(answer), true) => {
                    session_response(answer).unwrap_or_else(|| Response::Written {
                        result: command_result(answer),
                        index: applied.index.0,
                        term: applied.term.0,
                    })
                }
                _ => Response::Unknown,
            };
            ctx.outbox.replies.push(Reply {
                client: waiting.client,
                request: waiting.request,
                response,
            });
        }
    }

    /// The `Ready` taken by `begin_ready` is persisted (durable when `finish_ready` returns):
    /// follow the disk, send what had to wait, check and answer what was applied.
    fn finish_ready(&mut self, ctx: &mut NodeContext<'_>) {
        let id = self.config.id;
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let applied_before = replica.applied_index().0;
        let to_apply = held_entries(replica, applied_before, replica.raft().applied_index().0);
        let snapshot_before = replica.durable().snapshot_index().0;
        let hard_state_before = replica.durable().hard_state();
        let operations_before = self.fs.stats().operations;
        enter_phase("Replica::finish_ready", id);
        let outcome = match replica.finish_ready() {
            Ok(outcome) => outcome,
            Err(error) => {
                self.replica_failed(error, ctx);
                return;
            }
        };
        let operations = self.fs.stats().operations - operations_before;
        if operations > 0 {
            self.persist_operations = operations;
            self.persist_operations_max = self.persist_operations_max.max(operations);
        }
        let written = follow_persist(
            &mut self.durable,
            replica,
            outcome.snapshot_installed.map(|i| i.0),
            ctx,
        );
        // The whole replica's invariants read the whole store: after every snapshot install
        // and compaction, and every `REPLICA_CHECK_INTERVAL_CYCLES` cycles.
        // (Not while raft holds a snapshot not yet installed: `Replica::check_invariants`
        // then fails although nothing is wrong — crates/sim/BUGS.md, 3.)
        self.cycles += 1;
        let due = self.cycles.is_multiple_of(REPLICA_CHECK_INTERVAL_CYCLES)
            || outcome.snapshot_installed.is_some()
            || replica.durable().snapshot_index().0 != snapshot_before;
        if due && !snapshot_pending(replica) {
            enter_phase("Replica::check_invariants", id);
            replica.check_invariants();
        }
        let hard_state = replica.durable().hard_state();
        if written != Written::default()
            || hard_state != hard_state_before
            || outcome.snapshot_installed.is_some()
        {
            ctx.trace.record(
                ctx.now,
                TraceEvent::Fsync {
                    node: id,
                    entries: written.entries,
                    hard_state: (hard_state != hard_state_before).then(|| {
                        (
                            hard_state.term.0,
                            hard_state.vote.map(|v| v.0),
                            hard_state.commit.0,
                        )
                    }),
                    snapshot: outcome.snapshot_installed.map(|i| i.0),
                },
            );
        }
        ctx.checkers.on_durable_write(id, &written, ctx.now);
        ctx.outbox.messages.extend(outcome.messages_after_persist);
        if let Some(index) = outcome.snapshot_installed {
            ctx.trace.record(
                ctx.now,
                TraceEvent::SnapshotRestored {
                    node: id,
                    index: index.0,
                },
            );
        }
        let applied_index = outcome.applied_index.0;
        let leader_term = (replica.role() == Role::Leader).then(|| replica.term().0);
        self.note_applied(
            Applied {
                before: applied_before,
                entries: &to_apply,
                commands: &outcome.applied,
                index: applied_index,
                snapshot_installed: outcome.snapshot_installed.is_some(),
                leader_term,
            },
            ctx,
        );
        let Some(replica) = self.replica.as_ref() else {
            return;
        };
        // Waiters at or below the applied index that nothing answered: overwritten, or covered
        // by a snapshot from the leader.
        let unanswered: Vec<u64> = self
            .waiting_writes
            .range(..=applied_index)
            .map(|(index, _)| *index)
            .collect();
        for index in unanswered {
            if let Some(waiting) = self.waiting_writes.remove(&index) {
                ctx.outbox.replies.push(Reply {
                    client: waiting.client,
                    request: waiting.request,
                    response: Response::Unknown,
                });
            }
        }
        for read_state in &outcome.read_states {
            let Some(waiting) = self.reads_pending.remove(&read_state.id) else {
                continue;
            };
            let request = RangeRequest {
                key: waiting.key.as_bytes().to_vec(),
                ..RangeRequest::default()
            };
            let response = match replica.range(&request) {
                Ok(found) => Response::Read {
                    value: found
                        .kvs
                        .first()
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                },
                Err(_) => Response::ReadFailed { hint: None },
            };
            ctx.outbox.replies.push(Reply {
                client: waiting.client,
                request: waiting.request,
                response,
            });
        }
        let hint = replica.leader().map(|l| l.0);
        for read in &outcome.failed_reads {
            if let Some(waiting) = self.reads_pending.remove(read) {
                ctx.outbox.replies.push(Reply {
                    client: waiting.client,
                    request: waiting.request,
                    response: Response::ReadFailed { hint },
                });
            }
        }
        let snapshot_after = replica.durable().snapshot_index().0;
        if outcome.snapshot_installed.is_none() && snapshot_after > snapshot_before {
            ctx.trace.record(
                ctx.now,
                TraceEvent::Compact {
                    node: id,
                    index: snapshot_after,
                },
            );
        }
    }

    /// The replica refused a cycle on a healthy disk: a bug in the replica or the storage.
    fn replica_failed(&mut self, error: ReplicaError, ctx: &mut NodeContext<'_>) {
        ctx.checkers.record(Err(Violation {
            checker: "replica-error",
            at: ctx.now,
            message: format!("n{}: {error}", self.config.id),
        }));
    }
}

/// Whether the next `Ready` has anything to make durable (else it needs no fsync): the term or
/// vote differs from the one on disk (a commit-only change is not written, see
/// `Durable::persist`), or raft holds entries not yet persisted.
/// Answers the forwarded writes this cycle applied; fails, as never applied, those
/// forwarded in a term older than the last entry applied (a forwarded write is appended in
/// its own term or never, and entries of a term all come before any of a later one); and
/// makes unknown those a snapshot from the leader may have covered.
fn answer_forwarded(
    forwarded_writes: &mut BTreeMap<u64, ForwardedWrite>,
    config: &NodeConfig,
    applied_commands: &[chorus_replica::AppliedCommand],
    snapshot: bool,
    ctx: &mut NodeContext<'_>,
) {
    let id = config.id;
    for applied in applied_commands {
        let Some(tag) = applied.forwarded.filter(|tag| tag.origin == id) else {
            continue;
        };
        // Appended in the term it was forwarded in, or never: another term means an entry of
        // an earlier life of this replica that reused the id.
        if (forwarded_writes.get(&tag.id)).is_none_or(|write| write.term != applied.term.0) {
            continue;
        }
        let Some(write) = forwarded_writes.remove(&tag.id) else {
            continue;
        };
        let response = match &applied.result {
            Ok(answer) => session_response(answer).unwrap_or_else(|| Response::Written {
                result: command_result(answer),
                index: applied.index.0,
                term: applied.term.0,
            }),
            Err(_) => Response::Unknown,
        };
        ctx.outbox.replies.push(Reply {
            client: write.client,
            request: write.request,
            response,
        });
    }
    let last_term = applied_commands.last().map(|applied| applied.term.0);
    let ended: Vec<u64> = (forwarded_writes.iter())
        .filter(|(_, write)| snapshot || last_term.is_some_and(|last| write.term < last))
        .map(|(id, _)| *id)
        .collect();
    for forward_id in ended {
        let Some(write) = forwarded_writes.remove(&forward_id) else {
            continue;
        };
        let response = if snapshot {
            Response::Unknown
        } else {
            Response::NotLeader { hint: None }
        };
        ctx.outbox.replies.push(Reply {
            client: write.client,
            request: write.request,
            response,
        });
    }
    if config.break_forward_loss {
        // Deliberately wrong (`--break-forward-loss`): every forwarded write still waiting
        // is declared lost, though it may yet be applied.
        for (_, write) in std::mem::take(forwarded_writes) {
            ctx.outbox.replies.push(Reply {
                client: write.client,
                request: write.request,
                response: Response::NotLeader { hint: None },
            });
        }
    }
}

fn must_persist(replica: &SimReplica) -> bool {
    let raft = replica.raft();
    let (wanted, durable) = (raft.hard_state(), replica.durable().hard_state());
    (wanted.term, wanted.vote) != (durable.term, durable.vote)
        || raft.persisted_index() < raft.last_index()
        || raft.snapshot_meta().last_index != replica.durable().snapshot_index()
}

/// What one apply step did, for [`Node::note_applied`].
struct Applied<'a> {
    /// The replica's applied index before it.
    before: u64,
    /// The entries raft handed to apply, from `before + 1`.
    entries: &'a [Entry],
    /// The commands applied, with their answers.
    commands: &'a [chorus_replica::AppliedCommand],
    /// The replica's applied index after it.
    index: u64,
    snapshot_installed: bool,
    /// The term, if the replica is leader.
    leader_term: Option<u64>,
}

/// Raft's entries in `(after, up_to]`, copied.
fn held_entries(replica: &SimReplica, after: u64, up_to: u64) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut next = after + 1;
    while next <= up_to {
        let held = replica.raft().entries(LogIndex(next), LogIndex(up_to + 1));
        if held.is_empty() {
            break;
        }
        next += held.len() as u64;
        entries.extend_from_slice(held);
    }
    entries
}

/// The durable state recovery just read back: raft's log and hard state right after `open`.
fn recovered_log(replica: &SimReplica) -> DurableLog {
    let raft = replica.raft();
    let meta = raft.snapshot_meta();
    let hard_state = replica.durable().hard_state();
    let mut log = DurableLog {
        snapshot_index: meta.last_index.0,
        snapshot_term: meta.last_term.0,
        term: hard_state.term.0,
        vote: hard_state.vote.map(|v| v.0),
        commit: hard_state.commit.0,
        ..DurableLog::default()
    };
    for entry in held_entries(replica, meta.last_index.0, raft.last_index().0) {
        log.push(entry.term.0, payload_hash(&entry.payload));
    }
    log
}

/// Tells log matching about every entry of a recovered log.
fn record_log(ctx: &mut NodeContext<'_>, node: u64, log: &DurableLog) {
    for index in (log.snapshot_index + 1)..=log.last_index() {
        let (term, hash) = log.entry(index).unwrap_or_default();
        let previous = log.term_at(index - 1).unwrap_or(u64::MAX);
        ctx.checkers
            .on_durable_entry(node, index, term, hash, previous, ctx.now);
    }
}

/// Follows one persist that returned: the snapshot (the leader's, or this node's own
/// compaction), the entries now durable up to raft's persisted index, the hard state. Returns
/// what changed, for the checkers.
fn follow_persist(
    durable: &mut DurableLog,
    replica: &SimReplica,
    installed: Option<u64>,
    ctx: &mut NodeContext<'_>,
) -> Written {
    let raft = replica.raft();
    let node = raft.id().0;
    let mut written = Written::default();
    let commit_before = durable.commit;
    let meta = raft.snapshot_meta();
    let hard_state = replica.durable().hard_state();
    durable.term = hard_state.term.0;
    durable.vote = hard_state.vote.map(|v| v.0);
    if snapshot_pending(replica) {
        // Raft took a snapshot from the leader while this persist ran: its log is the snapshot
        // now, the disk still the old log (plus what this persist appended) until the next
        // persist installs it. Follow the disk again then.
        durable.commit = hard_state.commit.0;
        return written;
    }
    if let Some(index) = installed {
        if index < commit_before {
            written.snapshot_behind_commit = Some((index, commit_before));
        }
        durable.start_after_snapshot(meta.last_index.0, meta.last_term.0);
        durable.entries.clear();
    } else if meta.last_index.0 > durable.snapshot_index {
        durable.start_after_snapshot(meta.last_index.0, meta.last_term.0);
    }
    let persisted = raft.persisted_index().0;
    let mut agreed = durable.last_index().min(persisted);
    while agreed > durable.snapshot_index
        && durable.term_at(agreed) != raft.log_term(LogIndex(agreed)).map(|t| t.0)
    {
        agreed -= 1;
    }
    if agreed < durable.last_index() {
        if agreed < commit_before {
            written.committed_overwritten = Some(agreed + 1);
        }
        durable.truncate_after(agreed);
    }
    let new_entries = held_entries(replica, agreed, persisted);
    if let (Some(first), Some(last)) = (new_entries.first(), new_entries.last()) {
        written.entries = Some((first.index.0, last.index.0));
    }
    for entry in &new_entries {
        let hash = payload_hash(&entry.payload);
        let previous = durable.term_at(entry.index.0 - 1).unwrap_or(u64::MAX);
        ctx.checkers
            .on_durable_entry(node, entry.index.0, entry.term.0, hash, previous, ctx.now);
        durable.push(entry.term.0, hash);
    }
    durable.commit = hard_state.commit.0;
    written
}

/// Whether raft holds a snapshot from the leader that the next `Ready` has yet to install.
/// Until then raft's log starts after it but the disk and the store do not.
fn snapshot_pending(replica: &SimReplica) -> bool {
    replica.raft().snapshot_meta().last_index != replica.durable().snapshot_index()
}

/// A client's write as an MVCC command: put → `Put`; delete → `DeleteRange` of the one key;
/// cas → a `Txn` comparing the value (or, when the key must be absent, its version with 0: the
/// etcd idiom) and putting on success.
pub fn to_replica_command(command: &Command) -> chorus_replica::Command {
    let put = |key: &str, value: &str| PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease: 0,
        prev_kv: false,
        ignore_value: false,
        ignore_lease: false,
    };
    match command {
        Command::Put { key, value } => chorus_replica::Command::Put(put(key, value)),
        Command::Count { key, value } => chorus_replica::Command::Put(PutRequest {
            prev_kv: true,
            ..put(key, value)
        }),
        Command::Delete { key } => chorus_replica::Command::DeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: Vec::new(),
            prev_kv: false,
        }),
        Command::Cas { key, expect, value } => {
            let target = match expect {
                Some(expected) => CompareTarget::Value(expected.as_bytes().to_vec()),
                None => CompareTarget::Version(0),
            };
            chorus_replica::Command::Txn(TxnRequest {
                compare: vec![Compare::new(key.as_bytes(), CompareResult::Equal, target)],
                success: vec![RequestOp::Put(put(key, value))],
                failure: Vec::new(),
            })
        }
    }
}

fn command_result(response: &CommandResponse) -> CommandResult {
    match response {
        CommandResponse::Txn(txn) => CommandResult::Cas {
            swapped: txn.succeeded,
        },
        // Only a counter put asks for the previous key-value.
        CommandResponse::Put(chorus_mvcc::PutResponse {
            prev_kv: Some(prev),
            ..
        }) => CommandResult::Counted {
            prev_version: prev.version,
        },
        _ => CommandResult::Done,
    }
}

/// What a session command's answer tells the client; `None` for the other commands.
fn session_response(response: &CommandResponse) -> Option<Response> {
    match response {
        CommandResponse::SessionOpened { id, .. } => Some(Response::SessionOpened { id: *id }),
        CommandResponse::SessionRefused(error) => Some(Response::SessionRefused(error.clone())),
        _ => None,
    }
}

/// The replica command of a client request that writes: a key-value write, alone or in a
/// session, or a session's opening.
fn write_command(request: &Request) -> Option<chorus_replica::Command> {
    Some(match request {
        Request::Write(command) => to_replica_command(command),
        Request::SessionWrite {
            session,
            sequence,
            acknowledged,
            command,
        } => chorus_replica::Command::Sessioned {
            session: *session,
            sequence: *sequence,
            acknowledged: *acknowledged,
            command: Box::new(to_replica_command(command)),
        },
        Request::OpenSession => chorus_replica::Command::SessionOpen {
            ttl_seconds: SESSION_TTL_SECONDS,
            sessions_max: SESSIONS_MAX,
        },
        Request::Read { .. } => return None,
    })
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
            log_entries_kept: 0,
            backend_durable_every: 1,
            segment_bytes_max: 8192,
            raft_seed: 7,
            faults: Faults::default(),
            requests_waiting_max,
            read_expiry_ns: 2_000_000_000,
            read_lease_ppm: None,
            forward_writes: true,
            break_forward_loss: false,
        })
    }

    struct World {
        outbox: Outbox,
        checkers: Checkers,
        trace: Trace,
        prng: Prng,
    }

    impl World {
        fn new() -> World {
            World {
                outbox: Outbox::default(),
                checkers: Checkers::new(1, 300, 1),
                trace: Trace::new(8, false),
                prng: Prng::new(1),
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

        fn start(&mut self, node: &mut Node) {
            let mut prng = Prng::new(self.prng.next_u64());
            node.start(&mut prng, &mut self.ctx());
        }
    }

    /// Ticks (completing fsyncs at once) until the single voter leads.
    fn elect(node: &mut Node, world: &mut World) {
        world.start(node);
        for _ in 0..100 {
            node.tick(&mut world.ctx());
            while node.is_persisting() {
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

    fn value_of(node: &Node, key: &str) -> Option<Vec<u8>> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        };
        let replica = node.replica()?;
        replica
            .range(&request)
            .ok()?
            .kvs
            .first()
            .map(|kv| kv.value.clone())
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
        while node.is_persisting() {
            node.fsync_done(&mut world.ctx());
        }
        let replies: Vec<Response> = world.outbox.replies.drain(..).map(|r| r.response).collect();
        assert!(
            matches!(replies.as_slice(), [Response::Written { .. }]),
            "{replies:?}"
        );
        assert_eq!(value_of(&node, "k"), Some(b"a".to_vec()));
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
        let last_index = node.replica().map(|r| r.raft().last_index());
        node.handle_request(2, 1, put("b"), &mut world.ctx());
        assert_eq!(world.outbox.replies.len(), 1);
        assert_eq!(world.outbox.replies[0].response, Response::Busy);
        assert_eq!(node.replica().map(|r| r.raft().last_index()), last_index);
    }

    #[test]
    fn a_crash_forgets_everything_not_fsynced_and_keeps_what_was() {
        let mut world = World::new();
        let mut node = single_voter(4);
        elect(&mut node, &mut world);
        node.handle_request(1, 1, put("a"), &mut world.ctx());
        while node.is_persisting() {
            node.fsync_done(&mut world.ctx());
        }
        node.handle_request(1, 2, put("b"), &mut world.ctx());
        assert!(node.is_persisting());
        let loss = node.crash(&mut Prng::new(1), 0, &mut world.ctx());
        assert!(loss.in_flight && loss.cut_after_operations.is_none());
        assert!(!node.is_up());
        world.start(&mut node);
        for _ in 0..100 {
            node.tick(&mut world.ctx());
            while node.is_persisting() {
                node.fsync_done(&mut world.ctx());
            }
        }
        assert_eq!(
            value_of(&node, "k"),
            Some(b"a".to_vec()),
            "the store was not rebuilt from the WAL as it was durable"
        );
        assert!(
            world.checkers.violation.is_none(),
            "{:?}",
            world.checkers.violation
        );
    }

    #[test]
    fn a_power_cut_at_every_step_of_a_persist_recovers() {
        for cut_after in 0..12 {
            let mut world = World::new();
            let mut node = single_voter(4);
            elect(&mut node, &mut world);
            node.handle_request(1, 1, put("a"), &mut world.ctx());
            assert!(node.is_persisting());
            node.persist_operations = cut_after;
            node.persist_operations_max = cut_after;
            // 100%: the cut falls inside the persist, before operation `cut_after` at the latest.
            node.crash(&mut Prng::new(cut_after), 100, &mut world.ctx());
            world.start(&mut node);
            assert!(node.is_up(), "{:?}", world.checkers.violation);
            assert!(
                world.checkers.violation.is_none(),
                "cut after {cut_after}: {:?}",
                world.checkers.violation
            );
        }
    }
}
