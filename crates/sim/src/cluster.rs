//! The simulated world: replicas, network, disks' fsyncs, clients and faults, driven by one
//! event queue. Scenario tests use it directly (`cluster.crash(2)`, `cluster.partition(&[1],
//! &[2, 3])`, `cluster.heal()`, `cluster.run_for(..)`); the runner drives a whole seeded run.

use crate::checkers::{Checkers, Violation};
use crate::faults::{node_set, Fault, Target};
use crate::history::History;
use crate::network::{DropReason, Network, Quality, Route};
use crate::node::{Node, NodeConfig, NodeContext, Outbox};
use crate::prng::Prng;
use crate::scenario::Scenario;
use crate::time::{EventQueue, Nanos, MILLISECOND};
use crate::trace::{MessageSummary, Trace, TraceEvent};
use crate::workload::{describe_request, describe_response, Client, Request, Response};
use chorus_raft::{Message, MessageBody};
use std::collections::VecDeque;

/// How many trace events are kept for the report.
pub const TRACE_EVENTS_KEPT_MAX: usize = 128;
/// Events a paused replica buffers at most; later ones are dropped, like a full socket buffer
/// (disk completions are never dropped).
pub const PAUSED_BACKLOG_EVENTS_MAX: usize = 4096;
/// After a power loss, how long every replica stays armed to crash right after granting a vote.
const POWER_BACK_ARMED_NS: Nanos = 2_000 * MILLISECOND;
/// While draining, how often the cluster checks whether every replica caught up.
const DRAIN_CHECK_INTERVAL_NS: Nanos = 100 * MILLISECOND;

/// Everything that can happen, in the queue until its time.
enum Event {
    Tick {
        node: u64,
        incarnation: u64,
    },
    Deliver(Message),
    FsyncDone {
        node: u64,
        incarnation: u64,
    },
    ClientRequest {
        node: u64,
        client: u64,
        request: u64,
        body: Request,
    },
    ClientResponse {
        node: u64,
        client: u64,
        request: u64,
        response: Response,
    },
    ClientWake {
        client: u64,
    },
    ClientTimeout {
        client: u64,
        request: u64,
    },
    EpisodeStart(usize),
    EpisodeEnd(Undo),
    HealAll,
    LivenessDeadline,
    WorkloadStop,
    DrainCheck,
}

/// How an episode is undone.
#[derive(Clone, Copy, Debug)]
enum Undo {
    Restart(u64),
    HealNetwork,
    NormalQuality,
    NormalClock(u64),
    Disarm(u64),
    DisarmAll,
    Resume(u64),
    /// The end of a power loss: restart every replica, and arm crash-after-vote for a while.
    PowerBack {
        restart_after_ns: Nanos,
    },
    StaleLeaderReturns(u64),
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    pub crashes: u64,
    pub events: u64,
}

/// One simulated cluster and everything around it.
///
/// # Invariants
/// - the per-replica vectors (`nodes`, `clock_rate_percent`, `crash_after_vote`,
///   `crash_during_next_persist`, `paused`, `backlog`) have one element per replica, at position id - 1;
/// - a replica that is down is never paused and has an empty backlog;
/// - `outbox` is empty between events (drained by `flush_outbox` after every replica call).
pub struct Cluster {
    scenario: Scenario,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    queue: EventQueue<Event>,
    network: Network,
    checkers: Checkers,
    trace: Trace,
    history: History,
    outbox: Outbox,
    disk_prng: Prng,
    fault_prng: Prng,
    /// Per replica: its clock rate in percent of its drifted rate (100 unless slowed).
    clock_rate_percent: Vec<u32>,
    /// Per replica: crash right after each vote it grants, restarting this much later.
    crash_after_vote: Vec<Option<Nanos>>,
    /// Per replica: lose power in the middle of the next persist (when its fsync completes).
    crash_during_next_persist: Vec<bool>,
    /// Per replica: stalled (see `Fault::Pause`), and what waits for it meanwhile.
    paused: Vec<bool>,
    backlog: Vec<VecDeque<Event>>,
    /// Per replica: the ticks its clock would have given while it was paused.
    missed_ticks: Vec<u64>,
    workload_running: bool,
    finished: bool,
    stats: Stats,
}

impl Cluster {
    /// Builds the world of `scenario`; nothing runs until [`Cluster::start`].
    pub fn new(scenario: Scenario, stream_trace: bool) -> Cluster {
        let seed = scenario.options.seed;
        let node_count = scenario.options.nodes;
        let faults = crate::faults::FaultSwitch::raft_faults(scenario.options.fault);
        let mut raft_prng = Prng::stream(seed, "raft");
        let nodes = (1..=node_count as u64)
            .map(|id| {
                Node::new(NodeConfig {
                    id,
                    voters: scenario.voters(),
                    election_timeout_ticks: scenario.election_timeout_ticks,
                    heartbeat_interval_ticks: scenario.heartbeat_interval_ticks,
                    snapshot_interval_entries: scenario.snapshot_interval_entries,
                    log_entries_kept: scenario.log_entries_kept,
                    backend_durable_every: scenario.backend_durable_every,
                    segment_bytes_max: scenario.segment_bytes_max,
                    raft_seed: raft_prng.next_u64(),
                    faults,
                    requests_waiting_max: scenario.requests_waiting_max,
                    read_expiry_ns: 2 * scenario.workload.request_timeout_ns,
                    read_lease_ppm: scenario
                        .options
                        .leases_on()
                        .then_some(crate::scenario::READ_LEASE_DRIFT_BOUND_PPM),
                    forward_writes: scenario.options.forward_writes,
                    break_forward_loss: scenario.options.break_forward_loss,
                })
            })
            .collect();
        let mut client_prng = Prng::stream(seed, "clients");
        let clients = (1..=scenario.workload.clients as u64)
            .map(|id| Client::new(id, node_count as u64, Prng::new(client_prng.next_u64())))
            .collect();
        Cluster {
            nodes,
            clients,
            queue: EventQueue::new(scenario.events_pending_max),
            network: Network::new(node_count, scenario.network, Prng::stream(seed, "network")),
            checkers: Checkers::new(node_count, scenario.liveness_ticks_max, scenario.tick_ns),
            trace: Trace::new(TRACE_EVENTS_KEPT_MAX, stream_trace),
            history: History::default(),
            outbox: Outbox::default(),
            disk_prng: Prng::stream(seed, "disk"),
            fault_prng: Prng::stream(seed, "fault-targets"),
            clock_rate_percent: vec![100; node_count],
            crash_after_vote: vec![None; node_count],
            crash_during_next_persist: vec![false; node_count],
            paused: vec![false; node_count],
            backlog: (0..node_count).map(|_| VecDeque::new()).collect(),
            missed_ticks: vec![0; node_count],
            workload_running: false,
            finished: false,
            stats: Stats::default(),
            scenario,
        }
    }

    /// Starts the replicas, their clocks, the clients and the fault schedule.
    pub fn start(&mut self) {
        let mut tick_prng = Prng::stream(self.scenario.options.seed, "tick-phase");
        for id in 1..=self.nodes.len() as u64 {
            self.start_node(id, tick_prng.range_inclusive(0, self.scenario.tick_ns));
        }
        self.workload_running = true;
        for client in 0..self.clients.len() {
            let think = self.clients[client].think_time(&self.scenario.workload);
            self.queue.schedule_in(
                think,
                Event::ClientWake {
                    client: client as u64 + 1,
                },
            );
        }
        for (index, episode) in self.scenario.schedule.episodes.iter().enumerate() {
            self.queue
                .schedule_at(episode.start, Event::EpisodeStart(index));
        }
        if !self.scenario.schedule.episodes.is_empty() {
            self.queue
                .schedule_at(self.scenario.schedule.heal_at, Event::HealAll);
        }
        self.queue
            .schedule_at(self.scenario.options.duration_ns, Event::WorkloadStop);
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn now(&self) -> Nanos {
        self.queue.now()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn take_history(&mut self) -> History {
        std::mem::take(&mut self.history)
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn checkers(&self) -> &Checkers {
        &self.checkers
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.checkers.violation.as_ref()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The replica that leads in the highest term, if any does.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|node| node.leader_term().map(|term| (term, node.id())))
            .max()
            .map(|(_, id)| id)
    }

    /// Powers replica `id` off (no-op if it is down). A `Ready` waiting for its fsync is lost,
    /// or (`torn_write_percent`) the power is cut in the middle of its persist.
    pub fn crash(&mut self, id: u64) {
        self.crash_with(id, self.scenario.torn_write_percent);
    }

    /// Powers replica `id` off once its next persist is under way, in the middle of it.
    pub fn crash_during_next_persist(&mut self, id: u64) {
        if self.node(id).is_up() {
            self.crash_during_next_persist[(id - 1) as usize] = true;
        }
    }

    fn crash_with(&mut self, id: u64, torn_percent: u32) {
        self.crash_during_next_persist[(id - 1) as usize] = false;
        let node = &mut self.nodes[(id - 1) as usize];
        if !node.is_up() {
            return;
        }
        let mut ctx = NodeContext {
            now: self.queue.now(),
            outbox: &mut self.outbox,
            checkers: &mut self.checkers,
            trace: &mut self.trace,
        };
        node.crash(&mut self.disk_prng, torn_percent, &mut ctx);
        self.stats.crashes += 1;
        self.paused[(id - 1) as usize] = false;
        self.backlog[(id - 1) as usize].clear();
        self.missed_ticks[(id - 1) as usize] = 0;
    }

    /// Starts replica `id` again from its disk (no-op if it is up).
    pub fn restart(&mut self, id: u64) {
        if !self.nodes[(id - 1) as usize].is_up() {
            self.start_node(id, 0);
        }
    }

    /// Cuts every link between `left` and `right`.
    pub fn partition(&mut self, left: &[u64], right: &[u64]) {
        self.network.partition(left, right);
        self.note_fault(format!(
            "partition {} | {}",
            node_set(left),
            node_set(right)
        ));
    }

    /// Cuts `from → to` only.
    pub fn block_one_way(&mut self, from: u64, to: u64) {
        self.network.block_one_way(from, to);
        self.note_fault(format!("drop n{from} → n{to}"));
    }

    /// Cuts `id` off from every other replica.
    pub fn isolate(&mut self, id: u64) {
        self.network.isolate(id);
        self.note_fault(format!("isolate n{id}"));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.network.heal();
        self.note_fault("heal network".to_string());
    }

    fn note_fault(&mut self, what: String) {
        self.trace
            .record(self.queue.now(), TraceEvent::Fault { what });
    }

    /// Runs events up to and including time `until`; false once a checker found a violation.
    pub fn run_until(&mut self, until: Nanos) -> bool {
        while !self.finished && self.checkers.violation.is_none() {
            match self.queue.peek_time() {
                Some(at) if at <= until => {}
                _ => break,
            }
            let Some((_, event)) = self.queue.pop() else {
                break;
            };
            self.stats.events += 1;
            self.handle(event);
        }
        self.checkers.violation.is_none()
    }

    pub fn run_for(&mut self, duration: Nanos) -> bool {
        self.run_until(self.queue.now() + duration)
    }

    /// Runs until the drain ends (or a violation).
    pub fn run_to_end(&mut self) -> bool {
        self.run_until(Nanos::MAX)
    }

    /// The replica an event must be handled by, if it is one a paused replica has to wait for.
    fn waits_for(event: &Event) -> Option<u64> {
        match event {
            Event::Deliver(message) => Some(message.to.0),
            Event::FsyncDone { node, .. } | Event::ClientRequest { node, .. } => Some(*node),
            _ => None,
        }
    }

    fn handle(&mut self, event: Event) {
        if let Some(id) = Self::waits_for(&event) {
            let position = (id.max(1) - 1) as usize;
            if position < self.paused.len() && self.paused[position] {
                let backlog = &mut self.backlog[position];
                if backlog.len() < PAUSED_BACKLOG_EVENTS_MAX
                    || matches!(event, Event::FsyncDone { .. })
                {
                    backlog.push_back(event);
                }
                return;
            }
        }
        match event {
            Event::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Event::Deliver(message) => self.on_deliver(message),
            Event::FsyncDone { node, incarnation } => {
                if self.node(node).is_up() && self.node(node).incarnation() == incarnation {
                    if std::mem::take(&mut self.crash_during_next_persist[(node - 1) as usize]) {
                        self.note_fault(format!("n{node} loses power during its persist"));
                        self.crash_with(node, 100);
                    } else {
                        self.with_node(node, |node, ctx| node.fsync_done(ctx));
                    }
                }
            }
            Event::ClientRequest {
                node,
                client,
                request,
                body,
            } => {
                if self.node(node).is_up() {
                    self.with_node(node, |n, ctx| n.handle_request(client, request, body, ctx));
                }
            }
            Event::ClientResponse {
                node,
                client,
                request,
                response,
            } => {
                self.on_client_response(node, client, request, response);
            }
            Event::ClientWake { client } => self.on_client_wake(client),
            Event::ClientTimeout { client, request } => {
                if self.clients[(client - 1) as usize].on_timeout(request) {
                    self.trace.record(
                        self.queue.now(),
                        TraceEvent::ClientTimeout { client, request },
                    );
                    self.schedule_wake(client);
                }
            }
            Event::EpisodeStart(index) => self.start_episode(index),
            Event::EpisodeEnd(undo) => self.undo(undo),
            Event::HealAll => self.heal_all(),
            Event::LivenessDeadline => {
                let checked = self.checkers.liveness.check_deadline(self.queue.now());
                self.checkers.record(checked);
            }
            Event::WorkloadStop => {
                self.workload_running = false;
                self.trace.record(
                    self.queue.now(),
                    TraceEvent::Note {
                        what: "workload stops; draining".to_string(),
                    },
                );
                self.queue
                    .schedule_in(DRAIN_CHECK_INTERVAL_NS, Event::DrainCheck);
            }
            Event::DrainCheck => {
                let drained = self.all_caught_up();
                let deadline = self.scenario.options.duration_ns + self.scenario.drain_ns_max;
                if drained || self.queue.now() + DRAIN_CHECK_INTERVAL_NS > deadline {
                    self.finished = true;
                } else {
                    self.queue
                        .schedule_in(DRAIN_CHECK_INTERVAL_NS, Event::DrainCheck);
                }
            }
        }
    }

    /// Calls `f` on a replica with its context, then carries out what it asked for.
    fn with_node(&mut self, id: u64, f: impl FnOnce(&mut Node, &mut NodeContext<'_>)) {
        let node = &mut self.nodes[(id - 1) as usize];
        let mut ctx = NodeContext {
            now: self.queue.now(),
            outbox: &mut self.outbox,
            checkers: &mut self.checkers,
            trace: &mut self.trace,
        };
        f(node, &mut ctx);
        self.flush_outbox(id);
    }

    fn start_node(&mut self, id: u64, first_tick_in: Nanos) {
        let node = &mut self.nodes[(id - 1) as usize];
        let mut ctx = NodeContext {
            now: self.queue.now(),
            outbox: &mut self.outbox,
            checkers: &mut self.checkers,
            trace: &mut self.trace,
        };
        node.start(&mut self.disk_prng, &mut ctx);
        self.flush_outbox(id);
        let incarnation = self.node(id).incarnation();
        self.queue.schedule_in(
            first_tick_in,
            Event::Tick {
                node: id,
                incarnation,
            },
        );
    }

    fn on_tick(&mut self, id: u64, incarnation: u64) {
        let node = self.node(id);
        if !node.is_up() || node.incarnation() != incarnation {
            return;
        }
        if self.paused[(id - 1) as usize] {
            self.missed_ticks[(id - 1) as usize] += 1;
        } else {
            self.with_node(id, |node, ctx| node.tick(ctx));
        }
        let interval = self
            .scenario
            .tick_interval_ns(id, self.clock_rate_percent[(id - 1) as usize]);
        self.queue.schedule_in(
            interval,
            Event::Tick {
                node: id,
                incarnation,
            },
        );
    }

    fn on_deliver(&mut self, message: Message) {
        let to = message.to.0;
        if to == 0 || to > self.nodes.len() as u64 {
            return;
        }
        if !self.node(to).is_up() {
            self.stats.messages_dropped += 1;
            let message_summary = MessageSummary::of(&message);
            self.trace.record(
                self.queue.now(),
                TraceEvent::Drop {
                    from: message.from.0,
                    to,
                    message: message_summary,
                    reason: DropReason::Down,
                },
            );
            return;
        }
        self.stats.messages_delivered += 1;
        self.trace.record(
            self.queue.now(),
            TraceEvent::Deliver {
                from: message.from.0,
                to,
                message: MessageSummary::of(&message),
            },
        );
        self.with_node(to, |node, ctx| node.step(message, ctx));
    }

    /// Sends what a replica produced, starts its fsync, and fires an armed crash.
    fn flush_outbox(&mut self, id: u64) {
        let mut crash_then_restart = None;
        let mut messages = std::mem::take(&mut self.outbox.messages);
        for message in messages.drain(..) {
            if let Some(restart_after) = self.crash_after_vote[(id - 1) as usize] {
                if let MessageBody::RequestVoteResponse(vote) = &message.body {
                    if vote.granted && !vote.pre_vote {
                        crash_then_restart = Some(restart_after);
                    }
                }
            }
            let to = message.to.0;
            match self.network.route(id, to) {
                Route::Dropped(reason) => {
                    self.stats.messages_dropped += 1;
                    self.trace.record(
                        self.queue.now(),
                        TraceEvent::Drop {
                            from: id,
                            to,
                            message: MessageSummary::of(&message),
                            reason,
                        },
                    );
                }
                Route::Deliver { delay, duplicate } => {
                    if let Some(duplicate) = duplicate {
                        self.queue
                            .schedule_in(duplicate, Event::Deliver(message.clone()));
                    }
                    self.queue.schedule_in(delay, Event::Deliver(message));
                }
            }
        }
        self.outbox.messages = messages;
        let mut replies = std::mem::take(&mut self.outbox.replies);
        for reply in replies.drain(..) {
            if let Route::Deliver { delay, .. } = self.network.route_client() {
                self.queue.schedule_in(
                    delay,
                    Event::ClientResponse {
                        node: id,
                        client: reply.client,
                        request: reply.request,
                        response: reply.response,
                    },
                );
            }
        }
        self.outbox.replies = replies;
        if self.outbox.fsync_started {
            self.outbox.fsync_started = false;
            // Cubing a uniform draw: most fsyncs are quick, a few take up to the maximum.
            let unit = self.disk_prng.unit();
            let span = (self.scenario.fsync_max_ns - self.scenario.fsync_min_ns) as f64;
            let latency = self.scenario.fsync_min_ns + (span * unit * unit * unit) as Nanos;
            let incarnation = self.node(id).incarnation();
            self.queue.schedule_in(
                latency,
                Event::FsyncDone {
                    node: id,
                    incarnation,
                },
            );
        }
        if let Some(restart_after) = crash_then_restart {
            // Armed replicas stay armed for the episode: every vote they grant meanwhile is
            // followed by a crash.
            self.note_fault(format!(
                "n{id} granted a vote: crash it, restart in {restart_after} ns"
            ));
            self.crash(id);
            self.queue
                .schedule_in(restart_after, Event::EpisodeEnd(Undo::Restart(id)));
        }
    }

    fn on_client_wake(&mut self, client: u64) {
        if !self.workload_running {
            return;
        }
        let now = self.queue.now();
        let position = (client - 1) as usize;
        let outgoing =
            self.clients[position].start(now, &self.scenario.workload, &mut self.history);
        self.trace.record(
            now,
            TraceEvent::ClientCall {
                client,
                node: outgoing.node,
                request: outgoing.request_id,
                what: describe_request(&outgoing.request),
            },
        );
        if let Route::Deliver { delay, .. } = self.network.route_client() {
            self.queue.schedule_in(
                delay,
                Event::ClientRequest {
                    node: outgoing.node,
                    client,
                    request: outgoing.request_id,
                    body: outgoing.request,
                },
            );
        }
        self.queue.schedule_in(
            self.scenario.workload.request_timeout_ns,
            Event::ClientTimeout {
                client,
                request: outgoing.request_id,
            },
        );
    }

    fn on_client_response(&mut self, node: u64, client: u64, request: u64, response: Response) {
        let now = self.queue.now();
        let position = (client - 1) as usize;
        let Some(acknowledged) =
            self.clients[position].on_response(now, request, &response, &mut self.history)
        else {
            return;
        };
        if let Some(message) = self.clients[position].take_exactly_once_violation() {
            self.checkers.record(Err(Violation {
                checker: "exactly-once",
                at: now,
                message,
            }));
        }
        if let Some(acknowledged) = acknowledged {
            self.checkers.acked_writes.on_acknowledged(
                client,
                acknowledged.index,
                acknowledged.term,
                now,
            );
        }
        self.trace.record(
            now,
            TraceEvent::ClientReturn {
                client,
                node,
                request,
                what: describe_response(&response),
            },
        );
        self.schedule_wake(client);
    }

    fn schedule_wake(&mut self, client: u64) {
        if self.workload_running {
            let think = self.clients[(client - 1) as usize].think_time(&self.scenario.workload);
            self.queue.schedule_in(think, Event::ClientWake { client });
        }
    }

    fn resolve(&mut self, target: Target) -> u64 {
        match target {
            Target::Node(id) => id,
            Target::Any => self.fault_prng.range_inclusive(1, self.nodes.len() as u64),
            Target::Leader => match self.leader() {
                Some(id) => id,
                None => self.fault_prng.range_inclusive(1, self.nodes.len() as u64),
            },
        }
    }

    fn start_episode(&mut self, index: usize) {
        let episode = self.scenario.schedule.episodes[index].clone();
        let undo = match &episode.fault {
            Fault::Crash(target) => {
                let id = self.resolve(*target);
                // Half the crashes that would find the disk idle wait for the next persist and
                // cut it in the middle, so torn WAL appends, hard state and snapshot files
                // happen often.
                if self.node(id).is_up()
                    && !self.node(id).is_persisting()
                    && self.fault_prng.chance_percent(50)
                {
                    self.note_fault(format!(
                        "{} → crash n{id} during its next persist",
                        episode.fault
                    ));
                    self.crash_during_next_persist(id);
                } else {
                    self.note_fault(format!("{} → crash n{id}", episode.fault));
                    self.crash(id);
                }
                Undo::Restart(id)
            }
            Fault::CrashAfterVote {
                target: Target::Any,
                restart_after_ns,
            } => {
                self.note_fault(format!("{}", episode.fault));
                self.crash_after_vote
                    .iter_mut()
                    .for_each(|armed| *armed = Some(*restart_after_ns));
                Undo::DisarmAll
            }
            Fault::CrashAfterVote {
                target,
                restart_after_ns,
            } => {
                let id = self.resolve(*target);
                self.note_fault(format!(
                    "crash n{id} after each vote, restart {restart_after_ns} ns later"
                ));
                self.crash_after_vote[(id - 1) as usize] = Some(*restart_after_ns);
                Undo::Disarm(id)
            }
            Fault::Pause(target) => {
                let id = self.resolve(*target);
                self.note_fault(format!("pause n{id}"));
                if self.node(id).is_up() {
                    self.paused[(id - 1) as usize] = true;
                }
                Undo::Resume(id)
            }
            Fault::PowerLoss { restart_after_ns } => {
                self.note_fault(format!("{}", episode.fault));
                for id in 1..=self.nodes.len() as u64 {
                    self.crash(id);
                }
                Undo::PowerBack {
                    restart_after_ns: *restart_after_ns,
                }
            }
            Fault::StaleLeader { rate_percent } => {
                let id = self.resolve(Target::Leader);
                self.note_fault(format!(
                    "stale leader n{id}: isolated, clock at {rate_percent}%"
                ));
                self.network.isolate(id);
                self.clock_rate_percent[(id - 1) as usize] = *rate_percent;
                Undo::StaleLeaderReturns(id)
            }
            Fault::Partition { left, right } => {
                self.partition(left, right);
                Undo::HealNetwork
            }
            Fault::Isolate(target) => {
                let id = self.resolve(*target);
                self.isolate(id);
                Undo::HealNetwork
            }
            Fault::OneWay { from, to } => {
                let from = self.resolve(*from);
                // "The leader → n2" when n2 leads means the next replica.
                let to = if *to == from {
                    from % self.nodes.len() as u64 + 1
                } else {
                    *to
                };
                self.block_one_way(from, to);
                Undo::HealNetwork
            }
            Fault::Degrade(quality) => {
                self.network.set_quality(*quality);
                self.note_fault(format!("{}", episode.fault));
                Undo::NormalQuality
            }
            Fault::SlowClock {
                target,
                rate_percent,
            } => {
                let id = self.resolve(*target);
                self.clock_rate_percent[(id - 1) as usize] = *rate_percent;
                self.note_fault(format!("slow clock of n{id} to {rate_percent}%"));
                Undo::NormalClock(id)
            }
        };
        self.queue
            .schedule_in(episode.duration, Event::EpisodeEnd(undo));
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Restart(id) => {
                self.crash_during_next_persist[(id - 1) as usize] = false;
                self.restart(id);
            }
            Undo::HealNetwork => self.heal(),
            Undo::NormalQuality => {
                self.network.set_quality(Quality::normal());
                self.note_fault("network quality back to normal".to_string());
            }
            Undo::NormalClock(id) => {
                self.clock_rate_percent[(id - 1) as usize] = 100;
                self.note_fault(format!("clock of n{id} back to normal"));
            }
            Undo::Disarm(id) => self.crash_after_vote[(id - 1) as usize] = None,
            Undo::DisarmAll => self
                .crash_after_vote
                .iter_mut()
                .for_each(|armed| *armed = None),
            Undo::Resume(id) => self.resume(id),
            Undo::PowerBack { restart_after_ns } => {
                // The switch was power-cycled too: every link is up again.
                self.network.heal();
                self.note_fault("power back: links up, every replica restarts".to_string());
                for id in 1..=self.nodes.len() as u64 {
                    self.restart(id);
                }
                self.crash_after_vote
                    .iter_mut()
                    .for_each(|armed| *armed = Some(restart_after_ns));
                self.queue
                    .schedule_in(POWER_BACK_ARMED_NS, Event::EpisodeEnd(Undo::DisarmAll));
            }
            Undo::StaleLeaderReturns(id) => {
                self.heal();
                self.clock_rate_percent[(id - 1) as usize] = 100;
                self.note_fault(format!("clock of n{id} back to normal"));
            }
        }
    }

    /// A paused replica resumes: it works through its backlog, in arrival order, now.
    pub fn resume(&mut self, id: u64) {
        let position = (id - 1) as usize;
        if !self.paused[position] {
            return;
        }
        self.paused[position] = false;
        let backlog = std::mem::take(&mut self.backlog[position]);
        let missed = std::mem::take(&mut self.missed_ticks[position]);
        self.note_fault(format!(
            "n{id} resumes with {} events waiting, {missed} ticks missed",
            backlog.len()
        ));
        // With leases the server first ticks raft level with its monotonic clock (its
        // `group/clock.rs`), so a leader resumed from a pause never trusts a lease that ran out
        // meanwhile: the same here, before the backlog. Without leases it does not (a late tick
        // only delays), nor does this.
        if self.scenario.options.leases_on() {
            for _ in 0..missed {
                self.with_node(id, |node, ctx| node.tick(ctx));
            }
        }
        for event in backlog {
            self.handle(event);
        }
    }

    /// Stalls replica `id` until [`Cluster::resume`].
    pub fn pause(&mut self, id: u64) {
        if self.node(id).is_up() {
            self.paused[(id - 1) as usize] = true;
            self.note_fault(format!("pause n{id}"));
        }
    }

    /// The end of the fault window: everything healed for good, and liveness starts counting.
    fn heal_all(&mut self) {
        self.network.heal();
        self.network.set_quality(Quality::normal());
        self.clock_rate_percent
            .iter_mut()
            .for_each(|rate| *rate = 100);
        self.crash_after_vote
            .iter_mut()
            .for_each(|armed| *armed = None);
        self.crash_during_next_persist
            .iter_mut()
            .for_each(|armed| *armed = false);
        self.note_fault(
            "heal all: links, network quality, clocks; resume and restart every replica"
                .to_string(),
        );
        for id in 1..=self.nodes.len() as u64 {
            self.resume(id);
        }
        for id in 1..=self.nodes.len() as u64 {
            self.restart(id);
        }
        let commit = self.nodes.iter().map(Node::commit_index).max().unwrap_or(0);
        let deadline = self.checkers.liveness.on_healed(self.queue.now(), commit);
        self.queue.schedule_at(deadline, Event::LivenessDeadline);
    }

    /// The highest commit index any replica knows.
    pub fn commit_target(&self) -> u64 {
        self.nodes.iter().map(Node::commit_index).max().unwrap_or(0)
    }

    fn all_caught_up(&self) -> bool {
        let target = self.commit_target();
        self.nodes
            .iter()
            .all(|node| node.is_up() && node.applied_index() >= target)
    }
}
