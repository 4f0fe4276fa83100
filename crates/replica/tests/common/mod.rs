//! A cluster of replicas in one thread: one `SimFs` per node, a `MemoryBackend` each, messages
//! delivered directly in order. Scenario tests read as stories over it.

#![allow(dead_code)]

use chorus_mvcc::{MemoryBackend, RangeRequest, RangeResponse};
use chorus_raft::{HardState, LogIndex, Message, NodeId, Role, Term};
use chorus_replica::{
    AppliedCommand, Command, CommandResponse, DurableConfig, Outcome, Replica, ReplicaConfig,
    SnapshotJob,
};
use chorus_storage::{SimFs, WalConfig};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

pub const DATA_DIR: &str = "/data";

/// A seeded PRNG of our own (SplitMix64), so every choice of a run follows from its seed.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What to do with a node's state machine when it crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendOnCrash {
    /// The backend survives whole (a backend that made every write durable).
    Keep,
    /// The backend loses what it had not made durable (it commits durably only every few
    /// writes, as the redb one does): the replica replays the rest from its log.
    Lose,
}

/// A proposal waiting for its entry: the term it was proposed in, and for a put its key and
/// value.
pub type Waiter = (Term, Option<(Vec<u8>, Vec<u8>)>);

pub struct Node {
    pub id: NodeId,
    pub fs: SimFs,
    pub replica: Option<Replica<SimFs, MemoryBackend>>,
    /// Proposals made on this node and not yet answered.
    pub waiting: BTreeMap<LogIndex, Waiter>,
    pub restarts: u64,
    /// With background snapshots: the snapshot taken and not yet written.
    pub snapshot_job: Option<SnapshotJob<SimFs>>,
}

/// What became of a snapshot written in the background.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotJobEnd {
    Installed,
    /// A snapshot from the leader got there first.
    Overtaken,
    /// Writing it failed (a halted disk): the node crashed and restarted.
    Failed,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub queue: VecDeque<Message>,
    pub config: TestConfig,
    /// Puts acknowledged to their client (applied on the node that proposed them, in the term
    /// they were proposed in): key -> value.
    pub acknowledged: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every command applied anywhere, per index: the term it was applied in (all nodes must
    /// agree).
    pub applied_terms: BTreeMap<LogIndex, Term>,
    pub snapshots_installed: u64,
    /// The answers to proposals, on the node that proposed them and in their term.
    pub answers: BTreeMap<(NodeId, LogIndex), Result<CommandResponse, chorus_mvcc::Error>>,
    /// Lease revokes that succeeded, counted on every node that applied them.
    pub lease_revokes_applied: u64,
    pub log: Vec<String>,
    pub seed: u64,
    /// Print what happens (`CHORUS_REPLICA_TRACE=1`).
    pub trace: bool,
    /// Backends of crashed nodes, until they restart.
    parked: BTreeMap<NodeId, MemoryBackend>,
    /// A live node cut off from the others: every message to or from it is lost.
    pub cut_off: Option<NodeId>,
}

#[derive(Clone, Copy, Debug)]
pub struct TestConfig {
    pub size: u64,
    pub snapshot_every_entries: u64,
    /// `ReplicaConfig::log_entries_kept`.
    pub log_entries_kept: u64,
    pub segment_bytes_max: u64,
    pub lease_revokes_per_tick_max: usize,
    pub session_expires_per_tick_max: usize,
    /// Snapshots written by the harness at a step it picks ([`Cluster::finish_snapshot_job`]).
    pub background_snapshots: bool,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            size: 3,
            snapshot_every_entries: 0,
            log_entries_kept: 0,
            segment_bytes_max: 8 * 1024,
            lease_revokes_per_tick_max: 100,
            session_expires_per_tick_max: 100,
            background_snapshots: false,
        }
    }
}

impl Cluster {
    pub fn new(seed: u64, config: TestConfig) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            queue: VecDeque::new(),
            config,
            acknowledged: BTreeMap::new(),
            applied_terms: BTreeMap::new(),
            snapshots_installed: 0,
            answers: BTreeMap::new(),
            lease_revokes_applied: 0,
            log: Vec::new(),
            seed,
            parked: BTreeMap::new(),
            cut_off: None,
            trace: std::env::var_os("CHORUS_REPLICA_TRACE").is_some(),
        };
        for number in 1..=config.size {
            let id = NodeId(number);
            let fs = SimFs::new();
            let backend = MemoryBackend::with_durable_every(1 + (seed + number) % 5);
            let replica = cluster.open_replica(id, &fs, backend);
            cluster.nodes.push(Node {
                id,
                fs,
                replica: Some(replica),
                waiting: BTreeMap::new(),
                restarts: 0,
                snapshot_job: None,
            });
        }
        cluster
    }

    pub fn replica_config(&self, id: NodeId) -> ReplicaConfig {
        let voters: Vec<NodeId> = (1..=self.config.size).map(NodeId).collect();
        let mut raft = chorus_raft::Config::new(id, voters);
        raft.seed = self.seed.wrapping_mul(31).wrapping_add(id.0);
        raft.snapshot_chunk_bytes = 512;
        raft.append_bytes_max = 4 * 1024;
        let mut config = ReplicaConfig::new(raft);
        config.snapshot_every_entries = self.config.snapshot_every_entries;
        config.log_entries_kept = self.config.log_entries_kept;
        config.lease_revokes_per_tick_max = self.config.lease_revokes_per_tick_max;
        config.session_expires_per_tick_max = self.config.session_expires_per_tick_max;
        config.background_snapshots = self.config.background_snapshots;
        config.durable = DurableConfig {
            wal: WalConfig {
                segment_bytes_max: self.config.segment_bytes_max,
                record_bytes_max: 4 * 1024,
                index_stride_bytes: 1024,
                write_buffer_bytes_max: 4 * 1024,
                read_chunk_bytes: 1024,
                preallocate_bytes: 4096,
            },
            recovery_read_bytes_max: 2 * 1024,
            ..DurableConfig::default()
        };
        config
    }

    fn open_replica(
        &self,
        id: NodeId,
        fs: &SimFs,
        backend: MemoryBackend,
    ) -> Replica<SimFs, MemoryBackend> {
        match Replica::open(
            self.replica_config(id),
            fs.clone(),
            Path::new(DATA_DIR),
            backend,
        ) {
            Ok(replica) => replica,
            Err(error) => panic!("seed {}: {id} failed to open: {error}", self.seed),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[(id.0 - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[(id.0 - 1) as usize]
    }

    pub fn replica(&self, id: NodeId) -> &Replica<SimFs, MemoryBackend> {
        match &self.node(id).replica {
            Some(replica) => replica,
            None => panic!("{id} is down"),
        }
    }

    pub fn replica_mut(&mut self, id: NodeId) -> &mut Replica<SimFs, MemoryBackend> {
        match &mut self.node_mut(id).replica {
            Some(replica) => replica,
            None => panic!("{id} is down"),
        }
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.replica.is_some())
            .map(|node| node.id)
            .collect()
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).replica.is_some()
    }

    /// The live node that leads in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.live_ids()
            .into_iter()
            .filter(|id| self.replica(*id).role() == Role::Leader)
            .max_by_key(|id| self.replica(*id).term())
    }

    pub fn tick_all(&mut self) {
        for id in self.live_ids() {
            self.replica_mut(id).tick();
        }
    }

    /// One cycle on `id` if it has work; a failed cycle crashes the node (its disk already
    /// failed) and restarts it with `backend_on_crash`.
    pub fn cycle(&mut self, id: NodeId, rng: &mut Prng, backend_on_crash: BackendOnCrash) -> bool {
        let Some(replica) = self.node_mut(id).replica.as_mut() else {
            return false;
        };
        if !replica.has_ready() {
            return false;
        }
        match replica.handle_ready() {
            Ok(outcome) => {
                self.handle_outcome(id, outcome);
                let node = self.node_mut(id);
                if node.snapshot_job.is_none() {
                    node.snapshot_job = node.replica.as_mut().and_then(Replica::take_snapshot_job);
                }
                if cfg!(debug_assertions) {
                    self.replica(id).check_invariants();
                }
            }
            Err(error) => {
                if self.trace {
                    eprintln!("{id} failed a cycle: {error}");
                }
                self.log.push(format!("{id} failed a cycle: {error}"));
                self.crash(id, rng, backend_on_crash);
                self.restart(id);
            }
        }
        true
    }

    /// Writes the snapshot `id` took (background snapshots) and hands it back; a failure
    /// crashes and restarts the node, as a failed cycle does. Returns what became of it, if
    /// there was one.
    pub fn finish_snapshot_job(
        &mut self,
        id: NodeId,
        rng: &mut Prng,
        backend_on_crash: BackendOnCrash,
    ) -> Option<SnapshotJobEnd> {
        let node = self.node_mut(id);
        let (Some(job), Some(replica)) = (node.snapshot_job.take(), node.replica.as_mut()) else {
            return None;
        };
        let index = job.index();
        let end = match replica.snapshot_job_done(job.write()) {
            Ok(done) => {
                if self.trace {
                    eprintln!("{id} wrote its snapshot at {index}, installed: {done}");
                }
                if cfg!(debug_assertions) {
                    self.replica(id).check_invariants();
                }
                if done {
                    SnapshotJobEnd::Installed
                } else {
                    SnapshotJobEnd::Overtaken
                }
            }
            Err(error) => {
                self.log.push(format!("{id} failed its snapshot: {error}"));
                self.crash(id, rng, backend_on_crash);
                self.restart(id);
                SnapshotJobEnd::Failed
            }
        };
        Some(end)
    }

    fn handle_outcome(&mut self, id: NodeId, outcome: Outcome) {
        if self.trace {
            if let Some(soft) = outcome.soft_state {
                eprintln!("{id} soft {soft:?}");
            }
            for applied in &outcome.applied {
                eprintln!("{id} applied {} {}", applied.index, applied.term);
            }
            if let Some(index) = outcome.snapshot_installed {
                eprintln!("{id} installed snapshot {index}");
            }
        }
        self.queue.extend(outcome.messages_now);
        self.queue.extend(outcome.messages_after_persist);
        if outcome.snapshot_installed.is_some() {
            self.snapshots_installed += 1;
        }
        for applied in &outcome.applied {
            self.record_applied(id, applied);
        }
        // Waiters at or below the applied index not answered by their entry were overwritten.
        let node = self.node_mut(id);
        let unanswered: Vec<LogIndex> = node
            .waiting
            .range(..=outcome.applied_index)
            .map(|(index, _)| *index)
            .collect();
        for index in unanswered {
            node.waiting.remove(&index);
        }
    }

    fn record_applied(&mut self, id: NodeId, applied: &AppliedCommand) {
        if let Ok(CommandResponse::LeaseRevoke { .. }) = applied.result {
            self.lease_revokes_applied += 1;
        }
        let seed = self.seed;
        let term = *self
            .applied_terms
            .entry(applied.index)
            .or_insert(applied.term);
        assert_eq!(
            term, applied.term,
            "seed {seed}: {id} applied index {} in term {}, another node in term {term}",
            applied.index, applied.term
        );
        let node = self.node_mut(id);
        if let Some((waiting_term, put)) = node.waiting.remove(&applied.index) {
            if waiting_term == applied.term {
                self.answers
                    .insert((id, applied.index), applied.result.clone());
                if let (Some((key, value)), Ok(CommandResponse::Put(_))) = (put, &applied.result) {
                    self.acknowledged.insert(key, value);
                }
            }
        }
    }

    /// Delivers every queued message whose target is up (those to a down node are lost).
    pub fn deliver_all(&mut self) -> bool {
        let delivered = !self.queue.is_empty();
        while let Some(message) = self.queue.pop_front() {
            if self.trace && self.is_up(message.to) {
                let detail = match &message.body {
                    chorus_raft::MessageBody::AppendEntries(append) => format!(
                        "prev {}/{} entries {:?} commit {}",
                        append.prev_log_index,
                        append.prev_log_term,
                        append
                            .entries
                            .iter()
                            .map(|entry| (entry.index.0, entry.term.0))
                            .collect::<Vec<_>>(),
                        append.leader_commit
                    ),
                    chorus_raft::MessageBody::Heartbeat(heartbeat) => {
                        format!("commit {}", heartbeat.commit)
                    }
                    body => format!("{body:?}"),
                };
                eprintln!(
                    "  {} -> {} {} {} {detail}",
                    message.from,
                    message.to,
                    message.term,
                    message.body.kind()
                );
            }
            if self
                .cut_off
                .is_some_and(|id| id == message.to || id == message.from)
            {
                continue;
            }
            if let Some(replica) = self.node_mut(message.to).replica.as_mut() {
                replica.step(message);
            }
        }
        delivered
    }

    /// A lossy, reordering network: each queued message is dropped with probability
    /// `drop_percent`, and the rest are delivered in a shuffled order.
    pub fn deliver_lossy(&mut self, rng: &mut Prng, drop_percent: u64) {
        let mut messages: Vec<Message> = self.queue.drain(..).collect();
        messages.retain(|_| !rng.chance(drop_percent));
        for i in (1..messages.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            messages.swap(i, j);
        }
        self.queue.extend(messages);
        self.deliver_all();
    }

    /// Runs cycles and deliveries until nothing is left to do.
    pub fn settle(&mut self) {
        let mut rng = Prng::new(self.seed ^ 0x005e_771e);
        self.settle_with(&mut rng, BackendOnCrash::Keep);
    }

    pub fn settle_with(&mut self, rng: &mut Prng, backend_on_crash: BackendOnCrash) {
        for _ in 0..10_000 {
            let mut busy = false;
            for id in self.ids() {
                busy |= self.cycle(id, rng, backend_on_crash);
                // A leader serves a lagging follower only once its snapshot is written.
                busy |= self
                    .finish_snapshot_job(id, rng, backend_on_crash)
                    .is_some();
            }
            busy |= self.deliver_all();
            if !busy {
                return;
            }
        }
        panic!("seed {}: the cluster does not settle", self.seed);
    }

    /// A few heartbeat rounds, so that followers learn the leader's commit index and apply.
    pub fn heartbeats(&mut self) {
        for _ in 0..3 {
            self.tick_all();
            self.settle();
        }
    }

    /// Ticks until a live node leads and every live node follows it.
    pub fn wait_for_leader(&mut self) -> NodeId {
        for _ in 0..2_000 {
            self.tick_all();
            self.settle();
            if let Some(leader) = self.leader() {
                let term = self.replica(leader).term();
                let reachable = self
                    .live_ids()
                    .into_iter()
                    .filter(|id| Some(*id) != self.cut_off);
                let all_follow = reachable.into_iter().all(|id| {
                    self.replica(id).leader() == Some(leader) && self.replica(id).term() == term
                });
                if all_follow {
                    return leader;
                }
            }
        }
        panic!("seed {}: no leader elected", self.seed);
    }

    /// Proposes `command` on `id`; remembers it as a waiter (a put by its key and value).
    pub fn propose_on(&mut self, id: NodeId, command: Command) -> Option<(LogIndex, Term)> {
        let put = match &command {
            Command::Put(put) => Some((put.key.clone(), put.value.clone())),
            _ => None,
        };
        let proposed = self.replica_mut(id).propose(&command).ok()?;
        self.node_mut(id)
            .waiting
            .insert(proposed.0, (proposed.1, put));
        Some(proposed)
    }

    /// Proposes `command` on `id` without checking it later (a put whose key is later deleted).
    pub fn propose_untracked(&mut self, id: NodeId, command: Command) -> Option<(LogIndex, Term)> {
        let proposed = self.replica_mut(id).propose(&command).ok()?;
        self.node_mut(id)
            .waiting
            .insert(proposed.0, (proposed.1, None));
        Some(proposed)
    }

    /// Puts `key = value` through the leader and waits until it is acknowledged.
    pub fn put(&mut self, key: &str, value: &str) {
        let leader = self.wait_for_leader();
        let command = Command::Put(chorus_mvcc::PutRequest::new(key, value));
        let Some(_) = self.propose_on(leader, command) else {
            panic!("seed {}: leader {leader} refused a put", self.seed);
        };
        self.settle();
        assert_eq!(
            self.acknowledged.get(key.as_bytes()).map(Vec::as_slice),
            Some(value.as_bytes()),
            "seed {}: put {key} not acknowledged",
            self.seed
        );
    }

    /// Drops `id`'s replica and cuts its disk's power (unsynced writes kept, torn or lost as
    /// `rng` decides). The node stays down until [`Cluster::restart`].
    pub fn crash(&mut self, id: NodeId, rng: &mut Prng, backend_on_crash: BackendOnCrash) {
        self.crash_with(id, |n| rng.below(n.max(1)), backend_on_crash);
    }

    /// As [`Cluster::crash`], with the power cut's choices made by `choose`.
    pub fn crash_with(
        &mut self,
        id: NodeId,
        choose: impl FnMut(u64) -> u64,
        backend_on_crash: BackendOnCrash,
    ) {
        if self.trace {
            eprintln!("{id} crash {backend_on_crash:?}");
        }
        let node = self.node_mut(id);
        let Some(replica) = node.replica.take() else {
            return;
        };
        let backend = replica.into_backend();
        node.waiting.clear();
        node.snapshot_job = None;
        node.fs.crash(choose);
        node.fs.halt_after_operations(None);
        let backend = match backend_on_crash {
            BackendOnCrash::Keep => backend,
            BackendOnCrash::Lose => backend.crashed(),
        };
        self.parked.insert(id, backend);
    }

    pub fn restart(&mut self, id: NodeId) {
        let backend = self.parked.remove(&id).unwrap_or_default();
        let fs = self.node(id).fs.clone();
        let replica = self.open_replica(id, &fs, backend);
        if self.trace {
            eprintln!(
                "{id} restart: hard state {:?}, snapshot {}, last {}, applied {}",
                replica.raft().hard_state(),
                replica.raft().snapshot_meta().last_index,
                replica.raft().last_index(),
                replica.applied_index()
            );
        }
        let node = self.node_mut(id);
        node.replica = Some(replica);
        node.restarts += 1;
    }

    pub fn range_all(&self, id: NodeId) -> RangeResponse {
        let request = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..RangeRequest::default()
        };
        match self.replica(id).range(&request) {
            Ok(response) => response,
            Err(error) => panic!("seed {}: range on {id}: {error}", self.seed),
        }
    }

    /// Every live replica applied the same entries and holds the same keys at the same
    /// revisions.
    pub fn assert_converged(&self) {
        let ids = self.live_ids();
        let first = ids[0];
        let expected = self.range_all(first);
        for id in &ids[1..] {
            let replica = self.replica(*id);
            assert_eq!(
                replica.applied_index(),
                self.replica(first).applied_index(),
                "seed {}: {id} and {first} applied different indexes",
                self.seed
            );
            assert_eq!(
                replica.store().current_revision(),
                self.replica(first).store().current_revision(),
                "seed {}: {id} and {first} are at different revisions",
                self.seed
            );
            assert_eq!(
                self.range_all(*id).kvs,
                expected.kvs,
                "seed {}: {id} and {first} hold different keys",
                self.seed
            );
            assert_eq!(
                replica.leases(),
                self.replica(first).leases(),
                "seed {}: {id} and {first} hold different leases",
                self.seed
            );
        }
    }

    /// Every acknowledged put is on every live replica.
    pub fn assert_acknowledged_writes_kept(&self) {
        for id in self.live_ids() {
            let response = self.range_all(id);
            let held: BTreeMap<&[u8], &[u8]> = response
                .kvs
                .iter()
                .map(|kv| (kv.key.as_slice(), kv.value.as_slice()))
                .collect();
            for (key, value) in &self.acknowledged {
                assert_eq!(
                    held.get(key.as_slice()).copied(),
                    Some(value.as_slice()),
                    "seed {}: {id} lost the acknowledged put {}",
                    self.seed,
                    String::from_utf8_lossy(key)
                );
            }
        }
    }

    pub fn hard_state(&self, id: NodeId) -> HardState {
        self.replica(id).durable().hard_state()
    }
}

/// Runs a lone replica's cycles until it has nothing to do; returns the commands applied. A
/// single voter has no one to send to.
pub fn run_alone<F: chorus_storage::Fs + Clone, B: chorus_mvcc::Backend>(
    replica: &mut Replica<F, B>,
) -> usize {
    let mut applied = 0;
    while replica.has_ready() {
        let outcome = replica.handle_ready().expect("cycle");
        assert!(outcome.messages_now.is_empty() && outcome.messages_after_persist.is_empty());
        applied += outcome.applied.len();
    }
    applied
}

/// Ticks a single voter until it has elected itself.
pub fn lead_alone<F: chorus_storage::Fs + Clone, B: chorus_mvcc::Backend>(
    replica: &mut Replica<F, B>,
) {
    for _ in 0..100 {
        if replica.role() == Role::Leader {
            return;
        }
        replica.tick();
        run_alone(replica);
    }
    panic!("a single voter did not elect itself");
}
