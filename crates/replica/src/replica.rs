//! One replica of one group: raft, its durable state and the mvcc store, driven through whole
//! `Ready` cycles.

use crate::alarm::{AlarmAction, AlarmMember, AlarmType, Alarms};
use crate::command::{
    check_encodable, decode_command, decode_forward_tag, encode_command, encode_forwarded,
    is_forwardable, Command, ForwardTag, NotEncodable, TXN_DEPTH_MAX,
};
use crate::durable::{Durable, DurableConfig};
use crate::error::{LeaseError, ProposeError, ReplicaError, SessionError};
use crate::lease::{LeaseTimeToLive, Lessor};
use crate::members::{MemberError, MemberRecord, MemberTable};
use crate::response::StoredResult;
use crate::session::{Begin, Sessions};
use crate::snapshot::{
    decode_state_snapshot, encode_state_snapshot_tail, encode_state_snapshot_with_sessions,
    LeaseRecord,
};
use crate::snapshot_job::{SnapshotJob, WrittenSnapshot};
use crate::tables::{
    decode_side_tables, encode_side_tables, format_entry, lease_entry, lease_key, members_entry,
    stage_alarm, SideTables,
};
use bytes::Bytes;
use chorus_mvcc::{
    Backend, DeleteRangeResponse, Event, PutResponse, RangeRequest, RangeResponse, SideChanges,
    Store, TxnResponse,
};
use chorus_raft::{
    ConfChange, Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Raft, ReadState,
    Ready, Role, SoftState, Term,
};
use chorus_storage::Fs;
use std::collections::BTreeMap;
use std::path::Path;

/// How a replica behaves.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub raft: chorus_raft::Config,
    pub durable: DurableConfig,
    pub mvcc: chorus_mvcc::Config,
    /// Compact the log once this many entries were applied since the last compaction; 0
    /// never compacts. A compaction copies nothing: the backend, made durable first, holds the
    /// state (every table, crate::tables), so the compaction's snapshot is its metadata alone.
    /// The state is copied into a snapshot file only when a follower needs one.
    pub snapshot_every_entries: u64,
    /// Entries a compaction keeps before the applied index (at least one), so that a follower
    /// a little behind catches up from the log instead of needing a snapshot (etcd keeps
    /// 5,000). One at least: a snapshot a follower needs is then always taken at a later
    /// index than the compaction's.
    pub log_entries_kept: u64,
    /// Whether the driver writes snapshots itself, off the replica's thread
    /// ([`Replica::take_snapshot_job`], [`crate::snapshot_job`]); otherwise the replica writes
    /// each one in the cycle that takes it.
    pub background_snapshots: bool,
    /// Ticks of the caller's clock per second: lease TTLs (seconds) become deadlines in ticks.
    /// The server ticks every 100 ms: 10.
    pub ticks_per_second: u64,
    /// The most expired leases a leader proposes to revoke in one tick; the rest wait for the
    /// next ticks (etcd revokes at most 1,000 a second).
    pub lease_revokes_per_tick_max: usize,
    /// The shortest TTL a lease is granted, in seconds: a shorter one is raised to it when
    /// proposed (etcd's minimum TTL: 1.5 election timeouts, rounded up to a second).
    pub lease_ttl_seconds_min: i64,
    /// The most expired client sessions a leader proposes to expire in one tick; the rest wait
    /// for the next ticks. (Session TTLs are bounded below by `lease_ttl_seconds_min` too.)
    pub session_expires_per_tick_max: usize,
    /// The member table of a brand-new group (the initial cluster); empty for a member that
    /// joins an existing cluster (it gets the table with the leader's snapshot). Ignored once a
    /// snapshot carries a table.
    pub initial_members: MemberTable,
}

impl ReplicaConfig {
    /// The defaults we run with around `raft`: a snapshot every 10,000 entries.
    /// Leases: 10 ticks a second, at most 100 revokes a tick, and the minimum TTL from the
    /// election timeout at that tick rate.
    pub fn new(raft: chorus_raft::Config) -> ReplicaConfig {
        let ticks_per_second = 10;
        let lease_ttl_seconds_min =
            lease_ttl_seconds_min(raft.election_timeout_ticks, ticks_per_second);
        ReplicaConfig {
            raft,
            durable: DurableConfig::default(),
            mvcc: chorus_mvcc::Config::default(),
            snapshot_every_entries: 10_000,
            log_entries_kept: 0,
            background_snapshots: false,
            ticks_per_second,
            lease_revokes_per_tick_max: 100,
            lease_ttl_seconds_min,
            session_expires_per_tick_max: 100,
            initial_members: MemberTable::default(),
        }
    }
}

/// etcd's minimum lease TTL: one and a half election timeouts, in whole seconds rounded up, at
/// least 1.
pub fn lease_ttl_seconds_min(election_timeout_ticks: u32, ticks_per_second: u64) -> i64 {
    let ticks = 3 * u64::from(election_timeout_ticks);
    let seconds = ticks.div_ceil(2 * ticks_per_second.max(1));
    i64::try_from(seconds).unwrap_or(i64::MAX).max(1)
}

/// What the state machine answered to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// A compaction; `revision` is the store's current revision.
    Compact {
        revision: i64,
    },
    /// A lease granted: its id (picked by the replica if the command said 0) and TTL;
    /// `revision` is the store's current revision (for the response header).
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
        revision: i64,
    },
    /// A lease revoked: its `deleted` keys went in one revision, `revision` (the current one if
    /// no key was attached).
    LeaseRevoke {
        id: i64,
        revision: i64,
        deleted: i64,
    },
    /// An alarm raised or cleared: the alarm that changed (none if it was already so), and the
    /// store's current revision.
    Alarm {
        alarms: Vec<AlarmMember>,
        revision: i64,
    },
    /// A member command: the member it concerned and the whole table after it, or the table's
    /// refusal (the same on every replica).
    Member(Result<MemberChanged, MemberError>),
    /// A client session opened: its id (the entry's index), its TTL, the store's revision.
    SessionOpened {
        id: u64,
        ttl_seconds: i64,
        revision: i64,
    },
    /// A client session closed or expired.
    SessionClosed {
        id: u64,
        revision: i64,
    },
    /// The session table refused a session command (the same on every replica); a sessioned
    /// command refused was not applied.
    SessionRefused(SessionError),
}

/// A member command the table took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChanged {
    /// The member added, removed, updated, promoted or published.
    pub member: MemberRecord,
    /// Every member after the change, by id.
    pub members: Vec<MemberRecord>,
}

/// A command applied to the state machine, with its answer. The request waiting for it is the
/// one proposed at `index` in `term`: a waiter at `index` with another term was overwritten by
/// a new leader and fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCommand {
    pub index: LogIndex,
    pub term: Term,
    /// The answer; an error here is the client's answer too (every replica gives the same one).
    pub result: Result<CommandResponse, chorus_mvcc::Error>,
    /// The changes it made, in order, for watchers.
    pub events: Vec<Event>,
    /// Who proposed it, if a follower forwarded it ([`Replica::forward`]).
    pub forwarded: Option<ForwardTag>,
}

/// What one `Ready` cycle did and what the caller must still do.
///
/// Waiters (keyed by index and term) are answered from `applied`; every waiter at or below
/// `applied_index` that no entry of `applied` answered (a no-op or another term took its index,
/// or a snapshot covered it) fails: overwritten, or outcome unknown after a snapshot.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages that did not have to wait for the persist (a leader's appends and heartbeats).
    /// [`Replica::handle_ready`] returns them here once the persist is done; with the split
    /// cycle, [`Replica::begin_ready`] returns them before it and this stays empty.
    pub messages_now: Vec<Message>,
    /// Send now: the persist they depended on is durable.
    pub messages_after_persist: Vec<Message>,
    /// Commands applied in this cycle, in log order.
    pub applied: Vec<AppliedCommand>,
    /// The last entry applied to the state machine after this cycle.
    pub applied_index: LogIndex,
    /// A snapshot from the leader replaced the state machine, up to this index.
    pub snapshot_installed: Option<LogIndex>,
    /// Linearizable reads that may now be served from the state machine ([`Replica::range`]).
    pub read_states: Vec<ReadState>,
    /// Reads raft could not confirm (leadership lost): fail them, the client retries.
    pub failed_reads: Vec<u64>,
    /// A change of role, term or known leader.
    pub soft_state: Option<SoftState>,
}

/// One replica of a group: [`Raft`] + [`Durable`] state + the mvcc [`Store`].
///
/// Driving it: feed [`Replica::tick`], [`Replica::step`], [`Replica::propose`],
/// [`Replica::read_index`]; then, while [`Replica::has_ready`], call [`Replica::handle_ready`]
/// and carry out the [`Outcome`] (send the messages, answer the waiters). Or split the cycle:
/// [`Replica::begin_ready`] gives the messages that may go out before the fsync, and
/// [`Replica::finish_ready`] persists, applies and gives the rest.
///
/// # Invariants
/// - The store's applied index is at least raft's snapshot index and at most raft's commit
///   index (after the entries raft re-hands after a restart are skipped).
/// - At most one `Ready` is in flight, between `begin_ready` and `finish_ready`.
/// - The lessor's table holds every lease a live key of the store names, and its attachments
///   are exactly the store's (key → lease of every live key with a lease).
pub struct Replica<F: Fs + Clone, B: Backend> {
    raft: Raft,
    durable: Durable<F>,
    store: Store<B>,
    lessor: Lessor,
    /// The replicated alarm table.
    alarms: Alarms,
    /// Whether raft was leader when last looked at: becoming leader restarts lease deadlines.
    was_leader: bool,
    lease_revokes_per_tick_max: usize,
    lease_ttl_seconds_min: i64,
    /// The replicated client session table (see [`crate::session`]), mirrored in the backend's
    /// side table.
    sessions: Sessions,
    session_expires_per_tick_max: usize,
    snapshot_every_entries: u64,
    log_entries_kept: u64,
    /// Whether the durable snapshot holds the state (taken for a follower, or installed from
    /// the leader), rather than only a compaction's metadata.
    snapshot_holds_state: bool,
    /// A follower needs a snapshot and the durable one is a compaction's: take one of the
    /// state at the next chance.
    state_snapshot_wanted: bool,
    /// The `Ready` taken by `begin_ready`, until `finish_ready`.
    in_flight: Option<Ready>,
    /// Whether [`Replica::persist_ready`] already made `in_flight` durable.
    in_flight_persisted: bool,
    /// Confirmed reads waiting for the state machine to reach their index, in arrival order.
    reads_waiting_apply: Vec<ReadState>,
    /// Set by the first error of a cycle; every later cycle fails with it.
    stopped: Option<String>,
    /// The replicated member table (see [`crate::members`]).
    members: MemberTable,
    /// Changes whenever `members` does (applied command or installed snapshot).
    members_version: u64,
    /// A member was added: compact at the next chance, so that the log starts after the add
    /// and a joining member (whose log is empty) is always sent a snapshot with the table.
    compaction_wanted: bool,
    background_snapshots: bool,
    /// Forwarded writes already handed to raft, so that a `Propose` the network delivers twice
    /// is appended once.
    forwarded_seen: ForwardedSeen,
    /// The snapshot being written, if any: at most one at a time.
    snapshot_job: SnapshotJobState<F>,
}

/// The forwarded writes a leader was handed in its term, by (origin, id), the most recent
/// [`FORWARDED_SEEN_MAX`]: a follower sends each once, so one seen again is a duplicate the
/// network made (appending it would apply the write twice). Ids are unique per origin and run
/// of it (the server starts them from the clock, the simulator from the replica's life).
#[derive(Debug, Default)]
struct ForwardedSeen {
    term: Term,
    seen: std::collections::BTreeSet<ForwardTag>,
    order: std::collections::VecDeque<ForwardTag>,
}

/// How many forwarded writes a leader remembers, per term, to drop duplicates.
const FORWARDED_SEEN_MAX: usize = 65_536;

impl ForwardedSeen {
    /// Whether the forwarded entry `data`, in a `Propose` of `term`, is seen for the first time
    /// (entries without a tag pass).
    fn first_time(&mut self, term: Term, data: &[u8]) -> bool {
        let Some(tag) = decode_forward_tag(data) else {
            return true;
        };
        if term != self.term {
            self.term = term;
            self.seen.clear();
            self.order.clear();
        }
        if !self.seen.insert(tag) {
            return false;
        }
        self.order.push_back(tag);
        if self.order.len() > FORWARDED_SEEN_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }
}

/// Where the replica's own snapshot is.
enum SnapshotJobState<F: Fs> {
    None,
    /// Taken, waiting for the driver to collect it ([`Replica::take_snapshot_job`]).
    Ready(Box<SnapshotJob<F>>),
    /// Being written by the driver, up to this index.
    Writing(LogIndex),
}

impl<F: Fs + Clone, B: Backend> Replica<F, B> {
    /// Opens the replica whose durable state is in `dir` (a new one if empty) over the mvcc
    /// `backend`. Recovery: the durable state gives raft its hard state, snapshot and log; the
    /// store reports the applied index its backend kept; if that is below the snapshot, the
    /// store is restored from the snapshot; the committed entries after it are applied again
    /// by the first cycles (the backend is not fsynced per apply: the WAL replays the tail).
    pub fn open(
        config: ReplicaConfig,
        fs: F,
        dir: &Path,
        backend: B,
    ) -> Result<Replica<F, B>, ReplicaError> {
        assert!(config.ticks_per_second >= 1, "ticks_per_second of 0");
        assert!(
            config.lease_revokes_per_tick_max >= 1,
            "lease_revokes_per_tick_max of 0"
        );
        assert!(
            config.session_expires_per_tick_max >= 1,
            "session_expires_per_tick_max of 0"
        );
        let (durable, restore) = Durable::open(fs, dir, &config.durable)?;
        let mut store = Store::open(backend, config.mvcc).map_err(ReplicaError::Store)?;
        let snapshot_index = restore
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |snapshot| snapshot.meta.last_index);
        if let Some(snapshot) = &restore.snapshot {
            if store.applied_index() < snapshot_index.0 {
                restore_store_from(&mut store, snapshot, "snapshot at")?;
            }
        }
        // Every table is in the backend's side table, exactly as of the store's applied index
        // (written in the same batches as the store's writes, crate::tables): nothing to replay.
        let side = store.side_entries().map_err(ReplicaError::Store)?;
        let tables = decode_side_tables(&side).map_err(|error| ReplicaError::Corrupt {
            reason: format!("the tables in the backend's side table: {error}"),
        })?;
        if !tables.has_format {
            if store.applied_index() > 0 {
                return Err(ReplicaError::Corrupt {
                    reason: format!(
                        "the key-value database has applied up to {} but keeps no lease, alarm \
                         or member table: it was written by an older chorus, which kept them \
                         only in its snapshots. Restore this member from a snapshot (etcdctl \
                         snapshot save against the old version, then chorus snapshot restore)",
                        store.applied_index()
                    ),
                });
            }
            // A new backend: the format entry goes with its first write.
            store.stage_side(SideChanges {
                puts: vec![format_entry()],
                removes: Vec::new(),
            });
        }
        let log_end = restore
            .entries
            .last()
            .map_or(snapshot_index, |entry| entry.index);
        // The commit index on disk may lag (it is saved only with a new term or vote), but
        // whatever the store applied was committed: start from the larger of the two.
        if store.applied_index() > log_end.0 {
            return Err(ReplicaError::Corrupt {
                reason: format!(
                    "the state machine applied up to {} but the log ends at {log_end}",
                    store.applied_index()
                ),
            });
        }
        let commit = restore
            .hard_state
            .commit
            .max(snapshot_index)
            .max(LogIndex(store.applied_index()))
            .min(log_end);
        let mut restore = restore;
        restore.hard_state.commit = commit;
        let mut lessor = Lessor::new(config.ticks_per_second);
        lessor.restore(&tables.leases);
        attach_keys(&store, &mut lessor)?;
        let mut alarms = Alarms::default();
        alarms.restore(&tables.alarms);
        let members = tables
            .members
            .unwrap_or_else(|| config.initial_members.clone());
        let mut sessions = Sessions::new(config.ticks_per_second);
        sessions
            .restore(&tables.sessions)
            .map_err(|error| ReplicaError::Corrupt {
                reason: format!("session table in the backend: {error}"),
            })?;
        let snapshot_holds_state = restore
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| !snapshot.data.is_empty());
        let mut raft = Raft::new(config.raft, restore);
        // The snapshot is on disk; raft asks for its data back when a follower needs it.
        raft.release_snapshot_data();
        let mut replica = Replica {
            raft,
            durable,
            store,
            lessor,
            alarms,
            was_leader: false,
            lease_revokes_per_tick_max: config.lease_revokes_per_tick_max,
            lease_ttl_seconds_min: config.lease_ttl_seconds_min.max(1),
            sessions,
            session_expires_per_tick_max: config.session_expires_per_tick_max,
            snapshot_every_entries: config.snapshot_every_entries,
            log_entries_kept: config.log_entries_kept,
            snapshot_holds_state,
            state_snapshot_wanted: false,
            in_flight: None,
            in_flight_persisted: false,
            reads_waiting_apply: Vec::new(),
            stopped: None,
            members,
            members_version: 1,
            compaction_wanted: false,
            background_snapshots: config.background_snapshots,
            forwarded_seen: ForwardedSeen::default(),
            snapshot_job: SnapshotJobState::None,
        };
        replica.observe_role();
        Ok(replica)
    }

    /// Advances raft's logical clock and the lease clock by one tick. A leader then proposes
    /// revokes for the leases that expired (at most `lease_revokes_per_tick_max`; the rest on
    /// the next ticks); they come back applied in [`Outcome::applied`] like any command.
    pub fn tick(&mut self) {
        self.raft.tick();
        self.lessor.tick();
        self.sessions.tick();
        self.observe_role();
        if self.was_leader && self.stopped.is_none() {
            self.propose_expired_revokes();
            self.propose_session_expiries();
        }
    }

    /// Hands raft a message from a peer.
    pub fn step(&mut self, mut message: Message) {
        if let MessageBody::Propose(propose) = &mut message.body {
            let term = message.term;
            propose
                .entries
                .retain(|data| self.forwarded_seen.first_time(term, data));
        }
        self.raft.step(message);
        self.observe_role();
    }

    /// Starts an election now (tests, and an operator's request).
    pub fn campaign(&mut self) {
        self.raft.campaign();
        self.observe_role();
    }

    /// Follows raft's role for the lessor: on becoming leader every lease's deadline restarts
    /// at `now + ttl` (no lease expires early because leadership moved); on losing it, the
    /// revokes it proposed are forgotten (a new leader decides again).
    fn observe_role(&mut self) {
        let leader = self.raft.role() == Role::Leader;
        if leader && !self.was_leader {
            self.lessor.restart_deadlines();
            self.sessions.restart_deadlines();
        }
        if !leader && self.was_leader {
            self.lessor.forget_revoking();
            self.sessions.forget_expiring();
        }
        self.was_leader = leader;
    }

    /// Proposes a revoke for each expired lease, up to the per-tick bound. A refused proposal
    /// (back-pressure, a transfer under way) ends the round; the lease is tried next tick.
    fn propose_expired_revokes(&mut self) {
        for id in self.lessor.expired(self.lease_revokes_per_tick_max) {
            let command = encode_command(&Command::LeaseRevoke { id });
            match self.raft.propose(Bytes::from(command)) {
                Ok(_) => self.lessor.mark_revoking(id),
                Err(_) => break,
            }
        }
    }

    /// Proposes `SessionExpire` for each expired session, up to the per-tick bound; as for
    /// lease revokes, a refused proposal ends the round.
    fn propose_session_expiries(&mut self) {
        for id in self.sessions.expired(self.session_expires_per_tick_max) {
            let command = encode_command(&Command::SessionExpire { id });
            match self.raft.propose(Bytes::from(command)) {
                Ok(_) => self.sessions.mark_expiring(id),
                Err(_) => break,
            }
        }
    }

    /// A client session's keep-alive, on the leader: the session's deadline restarts at now +
    /// its TTL, which is returned (seconds). Not replicated: a new leader restarts every
    /// deadline. A follower refuses with the leader it knows; an unknown or expiring session
    /// is `NotFound`.
    pub fn session_keep_alive(&mut self, id: u64) -> Result<i64, SessionError> {
        if self.stopped.is_some() {
            return Err(SessionError::Stopped);
        }
        if self.raft.role() != Role::Leader {
            return Err(SessionError::NotLeader {
                leader_hint: self.raft.leader(),
            });
        }
        self.sessions.keep_alive(id)
    }

    /// The ids of the open client sessions (applied state), increasing.
    pub fn sessions(&self) -> Vec<u64> {
        self.sessions.ids()
    }

    /// etcd's `LeaseKeepAlive`, one request: on the leader, the lease's deadline restarts at
    /// now + its TTL, which is returned (seconds). Not replicated (as etcd's): a new leader
    /// restarts every deadline anyway. A follower refuses with the leader it knows.
    pub fn lease_keep_alive(&mut self, id: i64) -> Result<i64, LeaseError> {
        self.check_lease_leader()?;
        self.lessor.keep_alive(id)
    }

    /// etcd's `LeaseTimeToLive`, on the leader: the granted TTL and the keys from the applied
    /// state, the remaining TTL from the leader's deadline. A follower refuses with the leader
    /// it knows.
    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLive, LeaseError> {
        self.check_lease_leader()?;
        self.lessor.time_to_live(id, keys)
    }

    /// etcd's `LeaseLeases`: the ids of every lease in the applied state, increasing.
    pub fn leases(&self) -> Vec<i64> {
        self.lessor.ids()
    }

    fn check_lease_leader(&self) -> Result<(), LeaseError> {
        if self.stopped.is_some() {
            return Err(LeaseError::Stopped);
        }
        if self.raft.role() != Role::Leader {
            return Err(LeaseError::NotLeader {
                leader_hint: self.raft.leader(),
            });
        }
        Ok(())
    }

    /// Proposes `command`. On success the command will be applied at the returned index if it
    /// is committed in the returned term; watch [`Outcome::applied`] for it. Panics on a
    /// [`Command::Sessioned`] around a command a session may not carry
    /// ([`crate::command::is_sessionable`]).
    pub fn propose(&mut self, command: &Command) -> Result<(LogIndex, Term), ProposeError> {
        self.check_proposable(command)?;
        // Raft's refusal before the encoding it would throw away: a follower forwards most
        // writes, and encodes them for that (`Replica::forward`).
        self.raft.check_can_propose(0)?;
        let bytes = match self.raise_ttl(command) {
            Some(raised) => encode_command(&raised),
            None => encode_command(command),
        };
        let index = self.raft.propose(Bytes::from(bytes))?;
        Ok((index, self.raft.term()))
    }

    /// On a follower: hands `command` (a key-value write, [`is_forwardable`]) to the leader
    /// through raft, tagged with this member's id and the caller's `id`. Its answer is the
    /// [`AppliedCommand`] with that [`ForwardTag`] when this replica applies it; if it is
    /// lost (the leader changed), no such entry is ever applied: the caller gives up once an
    /// entry of a later term than the returned one is applied. Returns that term.
    ///
    /// Errors: [`chorus_raft::ProposeError::NotLeader`] when no leader is known or this node
    /// leads (propose instead), and as [`Replica::propose`].
    pub fn forward(&mut self, id: u64, command: &Command) -> Result<Term, ProposeError> {
        self.check_proposable(command)?;
        assert!(
            is_forwardable(command),
            "forwarded a command that is not a key-value write"
        );
        let tag = ForwardTag {
            origin: self.raft.id().0,
            id,
        };
        let bytes = encode_forwarded(tag, command);
        self.raft.forward_proposal(Bytes::from(bytes))?;
        Ok(self.raft.term())
    }

    fn check_proposable(&self, command: &Command) -> Result<(), ProposeError> {
        if self.stopped.is_some() {
            return Err(ProposeError::Stopped);
        }
        match check_encodable(command) {
            Ok(()) => Ok(()),
            Err(NotEncodable::TooDeep { depth }) => Err(ProposeError::TooDeep {
                depth,
                depth_max: TXN_DEPTH_MAX,
            }),
            // The caller builds the command from the request's kind, not from its bytes: a
            // session around a command it may not carry is a programmer error.
            Err(NotEncodable::NotSessionable) => {
                panic!("proposed a session around a command a session may not carry")
            }
        }
    }

    /// `command` with a lease or session TTL below `lease_ttl_seconds_min` raised to it (etcd's
    /// minimum TTL: shorter ones could expire at an election), or `None` if it has none to
    /// raise (so a write's value is not copied).
    fn raise_ttl(&self, command: &Command) -> Option<Command> {
        let ttl_min = self.lease_ttl_seconds_min;
        match command {
            Command::LeaseGrant { id, ttl_seconds } if *ttl_seconds < ttl_min => {
                Some(Command::LeaseGrant {
                    id: *id,
                    ttl_seconds: ttl_min,
                })
            }
            Command::SessionOpen {
                ttl_seconds,
                sessions_max,
            } if *ttl_seconds < ttl_min => Some(Command::SessionOpen {
                ttl_seconds: ttl_min,
                sessions_max: *sessions_max,
            }),
            Command::Sessioned {
                session,
                sequence,
                acknowledged,
                command,
            } => self.raise_ttl(command).map(|raised| Command::Sessioned {
                session: *session,
                sequence: *sequence,
                acknowledged: *acknowledged,
                command: Box::new(raised),
            }),
            _ => None,
        }
    }

    /// Proposes a membership change (see [`Raft::propose_conf_change`]).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<LogIndex, ProposeError> {
        if self.stopped.is_some() {
            return Err(ProposeError::Stopped);
        }
        Ok(self.raft.propose_conf_change(change)?)
    }

    /// Hands leadership to `to` (see [`Raft::transfer_leadership`]).
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), ProposeError> {
        if self.stopped.is_some() {
            return Err(ProposeError::Stopped);
        }
        Ok(self.raft.transfer_leadership(to)?)
    }

    /// Starts a linearizable read identified by `id`: it comes back in
    /// [`Outcome::read_states`] once the state machine may serve it, or in
    /// [`Outcome::failed_reads`].
    pub fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        if self.stopped.is_some() {
            return Err(ProposeError::Stopped);
        }
        Ok(self.raft.read_index(id)?)
    }

    /// A range (serializable read) from the applied state.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, chorus_mvcc::Error> {
        self.store.range(request)
    }

    /// Whether a cycle has work to do.
    pub fn has_ready(&self) -> bool {
        self.raft.has_ready()
    }

    /// One whole `Ready` cycle, synchronously: send-now messages are returned in
    /// [`Outcome::messages_now`]; the snapshot, entries and hard state are persisted (durable
    /// when it returns); the snapshot and committed entries are applied (a leader's durable
    /// ones before the persist, [`Replica::apply_durable_committed`]); then raft advances, and
    /// the state machine is snapshotted if the policy says so.
    ///
    /// On error the replica stops: drop it and reopen.
    pub fn handle_ready(&mut self) -> Result<Outcome, ReplicaError> {
        let messages_now = self.begin_ready()?;
        let applied_early = self.apply_durable_committed()?;
        let sendable = self.persist_ready()?;
        let mut outcome = self.finish_ready()?;
        outcome.applied.splice(0..0, applied_early);
        outcome.messages_after_persist.splice(0..0, sendable);
        outcome.messages_now = messages_now;
        Ok(outcome)
    }

    /// The first half of a cycle: takes raft's `Ready` and returns the messages that may be
    /// sent at once, before (or while) [`Replica::finish_ready`] persists. Returns no messages
    /// and starts nothing if there is no work; call `finish_ready` anyway.
    pub fn begin_ready(&mut self) -> Result<Vec<Message>, ReplicaError> {
        self.check_running()?;
        assert!(self.in_flight.is_none(), "begin_ready() twice");
        if !self.raft.has_ready() {
            return Ok(Vec::new());
        }
        let mut ready = self.raft.ready();
        let messages = std::mem::take(&mut ready.messages);
        self.in_flight = Some(ready);
        self.in_flight_persisted = false;
        Ok(messages)
    }

    /// Between [`Replica::begin_ready`] and [`Replica::finish_ready`]: applies the committed
    /// entries of the `Ready` in flight that this replica's own WAL already holds for good
    /// (appended and fsynced by an earlier cycle, and not rewritten by this one), and returns
    /// them to be answered now, while the persist of the new entries is still to come.
    /// `finish_ready` applies the rest.
    ///
    /// Why: a leader's commit comes from its followers' acknowledgements, and the cycle that
    /// learns of it usually also carries the next proposals to persist; a follower learns of a
    /// commit from an append that usually carries new entries too. Answering only after that
    /// fsync would add a whole fsync to every write's latency — on a follower, to every write
    /// it forwarded. Applying an entry before the local persist is safe when the entry is
    /// committed (a majority holds it) and final here: in the WAL, and before the first entry
    /// this `Ready` writes (a follower's append may truncate its log from there), so the store
    /// never holds an entry this replica's WAL does not (recovery replays the WAL into the
    /// store, never the other way). A follower's acknowledgement waits for these applies (it
    /// goes out after the persist): measured, the forwarded answers gained more (16-client
    /// puts, six alternated pairs: medians about 10,200 → 11,100 puts/s).
    ///
    /// [`Replica::check_applied_is_durable`] checks the rule. Returns nothing when there is
    /// nothing such to apply (no `Ready` in flight, a snapshot to install). On error the
    /// replica stops, as in `finish_ready`.
    pub fn apply_durable_committed(&mut self) -> Result<Vec<AppliedCommand>, ReplicaError> {
        self.check_running()?;
        let durable_last = self.durable.last_index();
        let Some(ready) = self.in_flight.as_mut() else {
            return Ok(Vec::new());
        };
        if ready.snapshot.is_some() {
            return Ok(Vec::new());
        }
        // The WAL's entries from the first one this Ready writes are not final yet.
        let final_last = ready.entries.first().map_or(durable_last, |first| {
            durable_last.min(LogIndex(first.index.0.saturating_sub(1)))
        });
        let durable_count = ready
            .committed_entries
            .partition_point(|entry| entry.index <= final_last);
        let entries: Vec<Entry> = ready.committed_entries.drain(..durable_count).collect();
        let mut applied = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.apply_entry(entry) {
                Ok(Some(command)) => applied.push(command),
                Ok(None) => {}
                Err(error) => {
                    self.stopped = Some(error.to_string());
                    return Err(error);
                }
            }
        }
        Ok(applied)
    }

    /// Between [`Replica::begin_ready`] and [`Replica::finish_ready`]: persists the `Ready` in
    /// flight (durable when it returns) and returns the messages that waited for it, to be sent
    /// before `finish_ready` applies. Why: a follower's acknowledgement is what the leader's
    /// commit waits for, and it depends on the persist only, not on the apply of the entries
    /// committed before. `finish_ready` then does not persist again, and its outcome holds no
    /// `messages_after_persist`. On error the replica stops, as in `finish_ready`.
    pub fn persist_ready(&mut self) -> Result<Vec<Message>, ReplicaError> {
        self.check_running()?;
        if self.in_flight_persisted {
            return Ok(Vec::new());
        }
        let Some(ready) = self.in_flight.as_mut() else {
            return Ok(Vec::new());
        };
        if let Err(error) = self.durable.persist(ready) {
            let error = ReplicaError::from(error);
            self.stopped = Some(error.to_string());
            return Err(error);
        }
        self.in_flight_persisted = true;
        Ok(std::mem::take(&mut ready.messages_after_persist))
    }

    /// The second half of a cycle: persists what [`Replica::begin_ready`] took (durable when it
    /// returns), applies, advances raft, and snapshots if due. `messages_after_persist` in the
    /// outcome may be sent once it returns.
    pub fn finish_ready(&mut self) -> Result<Outcome, ReplicaError> {
        self.check_running()?;
        let Some(ready) = self.in_flight.take() else {
            return Ok(Outcome {
                applied_index: self.applied_index(),
                ..Outcome::default()
            });
        };
        let result = self.run_cycle(ready);
        if let Err(error) = &result {
            self.stopped = Some(error.to_string());
        }
        self.observe_role();
        result
    }

    fn run_cycle(&mut self, ready: Ready) -> Result<Outcome, ReplicaError> {
        if !std::mem::take(&mut self.in_flight_persisted) {
            self.durable.persist(&ready)?;
        }
        let Ready {
            soft_state,
            snapshot,
            messages_after_persist,
            committed_entries,
            read_states,
            failed_reads,
            ..
        } = ready;
        let mut outcome = Outcome {
            messages_after_persist,
            soft_state,
            failed_reads,
            ..Outcome::default()
        };
        if let Some(snapshot) = snapshot {
            let origin = "snapshot from the leader at";
            let tables = restore_store_from(&mut self.store, &snapshot, origin)?;
            self.sessions
                .restore(&tables.sessions)
                .map_err(|error| ReplicaError::Corrupt {
                    reason: format!("{origin} {}: {error}", snapshot.meta.last_index),
                })?;
            self.lessor.restore(&tables.leases);
            self.alarms.restore(&tables.alarms);
            if let Some(table) = tables.members {
                self.members = table;
                self.members_version += 1;
            }
            attach_keys(&self.store, &mut self.lessor)?;
            outcome.snapshot_installed = Some(snapshot.meta.last_index);
            self.snapshot_holds_state = true;
            // Durable since the persist above; raft asks for it back if it must send it.
            self.raft.release_snapshot_data();
        }
        for entry in committed_entries {
            if let Some(applied) = self.apply_entry(entry)? {
                outcome.applied.push(applied);
            }
        }
        // One backend commit for the cycle's entries (not a durability point: the WAL is).
        self.store.flush().map_err(ReplicaError::Store)?;
        self.raft.advance();
        self.reads_waiting_apply.extend(read_states);
        let applied = self.store.applied_index();
        let (ready_reads, waiting) = self
            .reads_waiting_apply
            .drain(..)
            .partition(|read| read.index.0 <= applied);
        self.reads_waiting_apply = waiting;
        outcome.read_states = ready_reads;
        self.maybe_provide_snapshot_data()?;
        self.maybe_snapshot_for_follower()?;
        self.maybe_compact()?;
        outcome.applied_index = self.applied_index();
        Ok(outcome)
    }

    /// Reads the latest snapshot back from disk when raft wants its data (a follower is too far
    /// behind): raft holds no copy of it between transfers. A compaction's snapshot holds no
    /// state: then a snapshot of the state is taken instead ([`Replica::maybe_snapshot_for_follower`]),
    /// and raft asks for that one when it next tries the follower.
    fn maybe_provide_snapshot_data(&mut self) -> Result<(), ReplicaError> {
        let Some(index) = self.raft.snapshot_data_wanted() else {
            return Ok(());
        };
        if !self.snapshot_holds_state {
            self.state_snapshot_wanted = true;
            return Ok(());
        }
        let Some(snapshot) = self.durable.read_snapshot()? else {
            return Err(ReplicaError::Corrupt {
                reason: format!("raft wants snapshot {index}, none is on disk"),
            });
        };
        if snapshot.meta.last_index != index {
            return Err(ReplicaError::Corrupt {
                reason: format!(
                    "raft wants snapshot {index}, the one on disk is at {}",
                    snapshot.meta.last_index
                ),
            });
        }
        self.raft.provide_snapshot_data(index, snapshot.data);
        Ok(())
    }

    /// Applies one committed entry; entries the store already has (replayed after a restart)
    /// are skipped. Commands answer; no-ops and membership changes only move the applied index.
    fn apply_entry(&mut self, entry: Entry) -> Result<Option<AppliedCommand>, ReplicaError> {
        let index = entry.index.0;
        if index <= self.store.applied_index() {
            return Ok(None);
        }
        let data = match entry.payload {
            EntryPayload::Noop | EntryPayload::ConfChange(_) => {
                self.store
                    .record_applied_index(index)
                    .map_err(ReplicaError::Store)?;
                return Ok(None);
            }
            EntryPayload::Normal(data) => data,
        };
        let command = decode_command(&data).map_err(|error| ReplicaError::Corrupt {
            reason: format!("committed entry {index}: {error}"),
        })?;
        let (result, events) = self.apply_command(index, command)?;
        Ok(Some(AppliedCommand {
            index: entry.index,
            term: entry.term,
            result,
            events,
            forwarded: decode_forward_tag(&data),
        }))
    }

    /// Applies one decoded command at raft `index`: its answer and its events. Every path
    /// writes one store batch with `index` (so a restart resumes after it).
    fn apply_command(
        &mut self,
        index: u64,
        command: Command,
    ) -> Result<(StoredResult, Vec<Event>), ReplicaError> {
        let sessioned = matches!(command, Command::Sessioned { .. });
        if !sessioned && self.alarms.is_raised(AlarmType::NoSpace) && grows_database(&command) {
            // etcd's capped applier: the same refusal on every replica. (A sessioned command
            // is refused inside its session, so that the refusal is its stored answer.)
            self.store
                .record_applied_index(index)
                .map_err(ReplicaError::Store)?;
            return Ok((Err(chorus_mvcc::Error::NoSpace), Vec::new()));
        }
        let lessor = &self.lessor;
        let lease_exists = |id: i64| lessor.contains(id);
        let mut revoked = None;
        let (result, events) = match command {
            Command::Put(put) => split(
                self.store.put_checking_leases(index, put, &lease_exists),
                CommandResponse::Put,
            ),
            Command::DeleteRange(delete) => split(
                self.store.delete_range(index, delete),
                CommandResponse::DeleteRange,
            ),
            Command::Txn(txn) => split(
                self.store.txn_checking_leases(index, txn, &lease_exists),
                CommandResponse::Txn,
            ),
            Command::Compact { revision } => (
                self.store
                    .compact(index, revision)
                    .map(|revision| CommandResponse::Compact { revision }),
                Vec::new(),
            ),
            Command::LeaseGrant { id, ttl_seconds } => {
                (self.apply_lease_grant(index, id, ttl_seconds)?, Vec::new())
            }
            Command::Alarm { action, alarm } => {
                let alarms = self.alarms.apply(action, alarm);
                let mut side = SideChanges::default();
                for changed in &alarms {
                    stage_alarm(&mut side, *changed, action == AlarmAction::Activate);
                }
                self.store.stage_side(side);
                self.store
                    .record_applied_index(index)
                    .map_err(ReplicaError::Store)?;
                let revision = self.store.current_revision();
                (Ok(CommandResponse::Alarm { alarms, revision }), Vec::new())
            }
            Command::LeaseRevoke { id } => {
                let (result, events) = self.apply_lease_revoke(index, id)?;
                if result.is_ok() {
                    revoked = Some(id);
                }
                (result, events)
            }
            command @ (Command::MemberAdd(_)
            | Command::MemberRemove { .. }
            | Command::MemberUpdate { .. }
            | Command::MemberPromote { .. }
            | Command::MemberPublish { .. }) => {
                let added = matches!(command, Command::MemberAdd(_));
                let result = apply_member_command(&mut self.members, command);
                if result.is_ok() {
                    self.members_version += 1;
                    self.compaction_wanted |= added;
                    self.store.stage_side(SideChanges {
                        puts: vec![members_entry(&self.members)],
                        removes: Vec::new(),
                    });
                }
                self.store
                    .record_applied_index(index)
                    .map_err(ReplicaError::Store)?;
                (Ok(CommandResponse::Member(result)), Vec::new())
            }
            command @ (Command::SessionOpen { .. }
            | Command::SessionClose { .. }
            | Command::SessionExpire { .. }) => {
                (Ok(self.apply_session_command(index, command)?), Vec::new())
            }
            Command::Sessioned {
                session,
                sequence,
                acknowledged,
                command,
            } => {
                return self.apply_sessioned(index, session, sequence, acknowledged, *command);
            }
        };
        if let Err(error @ chorus_mvcc::Error::Fatal(_)) = result {
            return Err(ReplicaError::Store(error));
        }
        self.lessor.apply_events(&events);
        if let Some(id) = revoked {
            self.lessor.remove(id);
        }
        Ok((result, events))
    }

    /// Opens, closes or expires a session; the side table follows in the same batch.
    fn apply_session_command(
        &mut self,
        index: u64,
        command: Command,
    ) -> Result<CommandResponse, ReplicaError> {
        let mut side = SideChanges::default();
        let answer = match command {
            Command::SessionOpen {
                ttl_seconds,
                sessions_max,
            } => self
                .sessions
                .open(index, ttl_seconds, sessions_max, &mut side)
                .map(|(id, ttl_seconds)| (id, Some(ttl_seconds))),
            Command::SessionClose { id } | Command::SessionExpire { id } => {
                self.sessions.close(id, &mut side).map(|()| (id, None))
            }
            other => panic!("not a session command: {other:?}"),
        };
        self.store.stage_side(side);
        self.store
            .record_applied_index(index)
            .map_err(ReplicaError::Store)?;
        let revision = self.store.current_revision();
        Ok(match answer {
            Ok((id, Some(ttl_seconds))) => CommandResponse::SessionOpened {
                id,
                ttl_seconds,
                revision,
            },
            Ok((id, None)) => CommandResponse::SessionClosed { id, revision },
            Err(error) => CommandResponse::SessionRefused(error),
        })
    }

    /// A command within a session: a retry gets its stored answer and nothing is applied; a
    /// new one is applied and its answer stored, in the same backend batch as its writes (the
    /// store defers the batch until the answer is known).
    fn apply_sessioned(
        &mut self,
        index: u64,
        session: u64,
        sequence: u64,
        acknowledged: u64,
        command: Command,
    ) -> Result<(StoredResult, Vec<Event>), ReplicaError> {
        assert!(
            crate::command::is_sessionable(&command),
            "the decoder admits only sessionable commands in a session"
        );
        let mut side = SideChanges::default();
        let begin = self
            .sessions
            .begin(session, sequence, acknowledged, &mut side);
        self.store.stage_side(side);
        let answer = match begin {
            Begin::Refused(error) => Ok(CommandResponse::SessionRefused(error)),
            Begin::Stored(result) => result,
            Begin::Apply => {
                self.store.defer_write();
                let (result, events) = self.apply_command(index, command)?;
                let mut side = SideChanges::default();
                self.sessions.record(session, sequence, &result, &mut side);
                self.store
                    .write_deferred(side)
                    .map_err(ReplicaError::Store)?;
                return Ok((result, events));
            }
        };
        self.store
            .record_applied_index(index)
            .map_err(ReplicaError::Store)?;
        Ok((answer, Vec::new()))
    }

    /// A grant: the lessor's answer; the store only records the applied index.
    fn apply_lease_grant(
        &mut self,
        index: u64,
        id: i64,
        ttl_seconds: i64,
    ) -> Result<Result<CommandResponse, chorus_mvcc::Error>, ReplicaError> {
        let result = self
            .lessor
            .grant(index, id, ttl_seconds)
            .map(|(id, ttl_seconds)| {
                self.store.stage_side(SideChanges {
                    puts: vec![lease_entry(LeaseRecord { id, ttl_seconds })],
                    removes: Vec::new(),
                });
                CommandResponse::LeaseGrant {
                    id,
                    ttl_seconds,
                    revision: self.store.current_revision(),
                }
            });
        self.store
            .record_applied_index(index)
            .map_err(ReplicaError::Store)?;
        Ok(result)
    }

    /// A revoke: every key attached is deleted in one revision (as etcd's). The lease leaves
    /// the table once the caller has followed the delete events.
    fn apply_lease_revoke(
        &mut self,
        index: u64,
        id: i64,
    ) -> Result<(Result<CommandResponse, chorus_mvcc::Error>, Vec<Event>), ReplicaError> {
        if !self.lessor.contains(id) {
            self.store
                .record_applied_index(index)
                .map_err(ReplicaError::Store)?;
            return Ok((Err(chorus_mvcc::Error::LeaseNotFound), Vec::new()));
        }
        let keys = self.lessor.keys(id);
        // The lease leaves the side table in the batch of its keys' delete (which fails only
        // fatally, stopping the replica).
        self.store.stage_side(SideChanges {
            puts: Vec::new(),
            removes: vec![lease_key(id)],
        });
        Ok(split(self.store.delete_keys(index, &keys), |response| {
            CommandResponse::LeaseRevoke {
                id,
                revision: response.revision,
                deleted: response.deleted,
            }
        }))
    }

    /// Compacts the log once `snapshot_every_entries` entries were applied since the last
    /// compaction (or at the next chance after a member was added), keeping `log_entries_kept`
    /// before the applied index. The store is made durable first — the log may be dropped only
    /// up to what the store keeps across a crash — and then the compaction's snapshot is its
    /// metadata alone: the state stays in the backend. Not while a snapshot is being written.
    fn maybe_compact(&mut self) -> Result<(), ReplicaError> {
        let applied = self.store.applied_index();
        let snapshot_index = self.raft.snapshot_meta().last_index.0;
        let due = self.snapshot_every_entries != 0
            && applied >= snapshot_index + self.snapshot_every_entries;
        // After a member was added the log must start after the add: a joining member (its log
        // is empty) is then sent a snapshot, which carries the member table.
        let kept = if self.compaction_wanted {
            1
        } else {
            self.log_entries_kept.max(1)
        };
        let index = applied.saturating_sub(kept);
        if !(due || self.compaction_wanted)
            || index <= snapshot_index
            || applied != self.raft.applied_index().0
            || !matches!(self.snapshot_job, SnapshotJobState::None)
        {
            return Ok(());
        }
        self.compaction_wanted = false;
        self.store.persist().map_err(ReplicaError::Store)?;
        let Some(meta) = self.raft.snapshot_meta_at(LogIndex(index)) else {
            return Err(ReplicaError::Corrupt {
                reason: format!("raft holds no entry at the compaction index {index}"),
            });
        };
        self.durable.compact(&meta, &[])?;
        if let Err(error) = self.raft.compact(LogIndex(index), Bytes::new()) {
            panic!("raft refused a compaction at {index} (applied {applied}): {error}");
        }
        self.raft.release_snapshot_data();
        self.snapshot_holds_state = false;
        Ok(())
    }

    /// Takes a snapshot of the state at the applied index when a follower needs one and the
    /// durable snapshot is a compaction's (no state). Written as any snapshot (in the cycle,
    /// or by the driver with `background_snapshots`); once installed, raft sends it. Waits
    /// while the applied index is not past raft's snapshot (raft compacts only to a later one).
    fn maybe_snapshot_for_follower(&mut self) -> Result<(), ReplicaError> {
        let applied = self.store.applied_index();
        if !self.state_snapshot_wanted
            || applied <= self.raft.snapshot_meta().last_index.0
            || applied != self.raft.applied_index().0
            || !matches!(self.snapshot_job, SnapshotJobState::None)
        {
            return Ok(());
        }
        self.state_snapshot_wanted = false;
        self.store.persist().map_err(ReplicaError::Store)?;
        let job = self.snapshot_job_at(LogIndex(applied))?;
        if self.background_snapshots {
            self.snapshot_job = SnapshotJobState::Ready(Box::new(job));
            return Ok(());
        }
        let written = job.write()?;
        self.install_written_snapshot(written).map(|_| ())
    }

    /// What a snapshot at `index` (the applied index) needs, taken now: cheap but for the
    /// small tables' encoding.
    fn snapshot_job_at(&mut self, index: LogIndex) -> Result<SnapshotJob<F>, ReplicaError> {
        let Some(meta) = self.raft.snapshot_meta_at(index) else {
            return Err(ReplicaError::Corrupt {
                reason: format!("raft holds no entry at the applied index {index}"),
            });
        };
        let mvcc = self.store.snapshot_source()?;
        let tail = encode_state_snapshot_tail(
            &self.lessor.records(),
            Some(&self.members),
            &self.alarms.list(),
            &self.sessions.entries(),
        );
        Ok(SnapshotJob {
            meta,
            mvcc,
            tail,
            file: self.durable.local_snapshot_file(),
        })
    }

    /// The snapshot to write, if one was taken (only with `background_snapshots`): write it
    /// ([`SnapshotJob::write`], on any thread), then hand the result to
    /// [`Replica::snapshot_job_done`]. No other snapshot is taken meanwhile.
    pub fn take_snapshot_job(&mut self) -> Option<SnapshotJob<F>> {
        match std::mem::replace(&mut self.snapshot_job, SnapshotJobState::None) {
            SnapshotJobState::Ready(job) => {
                self.snapshot_job = SnapshotJobState::Writing(job.index());
                Some(*job)
            }
            other => {
                self.snapshot_job = other;
                None
            }
        }
    }

    /// The driver wrote the snapshot [`Replica::take_snapshot_job`] gave it: install it and
    /// compact the log up to it (or drop it, if a snapshot from the leader overtook it). An
    /// error writing it stops the replica, as any storage error does.
    ///
    /// Durable when it returns Ok: the snapshot and the log's compaction. Ok(false): dropped,
    /// overtaken.
    pub fn snapshot_job_done(
        &mut self,
        written: Result<WrittenSnapshot<F>, ReplicaError>,
    ) -> Result<bool, ReplicaError> {
        self.check_running()?;
        let writing = std::mem::replace(&mut self.snapshot_job, SnapshotJobState::None);
        let result = written.and_then(|written| {
            assert!(
                matches!(writing, SnapshotJobState::Writing(index) if index == written.index()),
                "a snapshot job finished that was not taken"
            );
            self.install_written_snapshot(written)
        });
        if let Err(error) = &result {
            self.stopped = Some(error.to_string());
        }
        result
    }

    /// Installs our own snapshot's file, then lets raft drop its log up to it (raft holds the
    /// meta only; it reads the data back from disk when a follower needs it). Ok(false): a
    /// snapshot from the leader got here first, and this one is dropped.
    fn install_written_snapshot(
        &mut self,
        written: WrittenSnapshot<F>,
    ) -> Result<bool, ReplicaError> {
        let index = written.index();
        if self.raft.snapshot_meta().last_index >= index {
            written.file.abort()?;
            return Ok(false);
        }
        self.durable
            .install_local_snapshot(&written.meta, written.file)?;
        let meta = match self.raft.compact(index, Bytes::new()) {
            Ok(meta) => meta,
            Err(error) => panic!("raft refused a snapshot at applied index {index}: {error}"),
        };
        if meta != written.meta {
            return Err(ReplicaError::Corrupt {
                reason: format!(
                    "snapshot at {index} was written as {:?}, raft has {meta:?}",
                    written.meta
                ),
            });
        }
        self.raft.release_snapshot_data();
        self.snapshot_holds_state = true;
        Ok(true)
    }

    fn check_running(&self) -> Result<(), ReplicaError> {
        match &self.stopped {
            None => Ok(()),
            Some(reason) => Err(ReplicaError::Stopped {
                reason: reason.clone(),
            }),
        }
    }

    /// The whole applied state as one replica snapshot blob ([`crate::snapshot`]): the mvcc
    /// store, the lease table and the alarm table, as of the last applied entry. What raft ships
    /// to a lagging follower, and what the Maintenance `Snapshot` call streams.
    pub fn state_snapshot(&self) -> Result<Vec<u8>, ReplicaError> {
        let mvcc = self.store.snapshot_bytes()?;
        Ok(encode_state_snapshot_with_sessions(
            &mvcc,
            &self.lessor.records(),
            Some(&self.members),
            &self.alarms.list(),
            &self.sessions.entries(),
        ))
    }

    /// The raised alarms (replicated state, as applied here).
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.list()
    }

    /// Whether any member raised `alarm`, as applied here.
    pub fn alarm_raised(&self, alarm: AlarmType) -> bool {
        self.alarms.is_raised(alarm)
    }

    pub fn id(&self) -> NodeId {
        self.raft.id()
    }

    pub fn role(&self) -> Role {
        self.raft.role()
    }

    pub fn term(&self) -> Term {
        self.raft.term()
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader()
    }

    /// The last entry applied to the state machine.
    pub fn applied_index(&self) -> LogIndex {
        LogIndex(self.store.applied_index())
    }

    /// The replicated member table.
    pub fn members(&self) -> &MemberTable {
        &self.members
    }

    /// A number that changes whenever [`Replica::members`] does.
    pub fn members_version(&self) -> u64 {
        self.members_version
    }

    /// The raft core, to inspect.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine, to inspect.
    pub fn store(&self) -> &Store<B> {
        &self.store
    }

    /// The durable state, to inspect.
    pub fn durable(&self) -> &Durable<F> {
        &self.durable
    }

    /// Gives the store's backend back (a simulator keeps it across a simulated crash).
    pub fn into_backend(self) -> B {
        self.store.into_backend()
    }

    /// Panics if the state machine holds an entry this replica's WAL (or its snapshot) does not:
    /// the store must never get ahead of the local log (see [`Replica::apply_durable_committed`]).
    /// Cheap; a driver may call it between the early apply and the persist.
    pub fn check_applied_is_durable(&self) {
        let applied = self.store.applied_index();
        let durable_end = self.durable.last_index().max(self.durable.snapshot_index());
        assert!(
            applied <= durable_end.0,
            "state machine at {applied} beyond the local WAL's end {durable_end}"
        );
    }

    /// Panics unless every invariant of raft, the durable state and the store holds, and they
    /// agree. Reads the whole store: for tests and the simulator.
    pub fn check_invariants(&self) {
        self.raft.check_invariants();
        self.durable.check_invariants();
        self.store.check_invariants();
        // A snapshot raft has received but the next Ready has not installed yet puts raft's
        // snapshot ahead of the disk and the store; both catch up in that Ready.
        let applied = self.store.applied_index();
        let durable_snapshot = self.durable.snapshot_index();
        assert!(
            applied >= durable_snapshot.0,
            "state machine at {applied} below the durable snapshot at {durable_snapshot}"
        );
        assert!(
            durable_snapshot <= self.raft.snapshot_meta().last_index,
            "durable snapshot {durable_snapshot} ahead of raft's {}",
            self.raft.snapshot_meta().last_index
        );
        assert!(
            applied <= self.raft.commit_index().0,
            "state machine at {applied} beyond the commit index {}",
            self.raft.commit_index()
        );
        self.check_applied_is_durable();
        self.lessor.check_invariants();
        self.alarms.check_invariants();
        self.sessions.check_invariants();
        match self
            .store
            .side_entries()
            .map(|side| decode_side_tables(&side))
        {
            Ok(Ok(side)) => {
                assert!(
                    side.sessions == self.sessions.entries(),
                    "the backend's side table and the session table disagree"
                );
                assert_eq!(
                    side.leases,
                    self.lessor.records(),
                    "the backend's side table and the lease table disagree"
                );
                assert_eq!(
                    side.alarms,
                    self.alarms.list(),
                    "the backend's side table and the alarm table disagree"
                );
                if let Some(members) = side.members {
                    assert_eq!(
                        members, self.members,
                        "the backend's side table and the member table disagree"
                    );
                }
            }
            Ok(Err(error)) => panic!("decoding the side table: {error}"),
            Err(error) => panic!("reading the side table: {error}"),
        }
        match store_key_leases(&self.store) {
            Ok(in_store) => assert_eq!(
                &in_store,
                self.lessor.key_leases(),
                "the lessor's attachments and the store's disagree"
            ),
            Err(error) => panic!("reading the store's leases: {error}"),
        }
    }
}

/// Restores `store` from the replica snapshot `snapshot` (`origin` names it in errors): its
/// mvcc part, and every other table into the side table (crate::tables). Returns the tables.
fn restore_store_from<B: Backend>(
    store: &mut Store<B>,
    snapshot: &chorus_raft::Snapshot,
    origin: &str,
) -> Result<SideTables, ReplicaError> {
    let index = snapshot.meta.last_index;
    if snapshot.data.is_empty() {
        // A compaction's snapshot holds no state: the backend had it durably up to `index`.
        return Err(ReplicaError::Corrupt {
            reason: format!(
                "{origin} {index} holds no state (the log was compacted on the backend's \
                 word), but the backend holds only up to {}",
                store.applied_index()
            ),
        });
    }
    let state = decode_state_snapshot(&snapshot.data).map_err(|error| ReplicaError::Corrupt {
        reason: format!("{origin} {index}: {error}"),
    })?;
    let tables = SideTables {
        leases: state.leases,
        alarms: state.alarms,
        members: state.members,
        sessions: state.sessions,
        has_format: true,
    };
    store.restore_snapshot_with_side(state.mvcc, encode_side_tables(&tables))?;
    if store.applied_index() != index.0 {
        return Err(ReplicaError::Corrupt {
            reason: format!(
                "{origin} {index} restores the state machine to index {}",
                store.applied_index()
            ),
        });
    }
    Ok(tables)
}

/// Every live key of the store that has a lease, with it.
fn store_key_leases<B: Backend>(
    store: &Store<B>,
) -> Result<BTreeMap<Vec<u8>, i64>, chorus_mvcc::Error> {
    let request = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        keys_only: true,
        ..RangeRequest::default()
    };
    Ok(store
        .range(&request)?
        .kvs
        .into_iter()
        .filter(|kv| kv.lease != 0)
        .map(|kv| (kv.key, kv.lease))
        .collect())
}

/// Attaches every leased key of the store to its lease in `lessor` (after a restore).
fn attach_keys<B: Backend>(store: &Store<B>, lessor: &mut Lessor) -> Result<(), ReplicaError> {
    let key_leases = store_key_leases(store).map_err(ReplicaError::Store)?;
    for (key, lease) in key_leases {
        lessor
            .attach(key, lease)
            .map_err(|reason| ReplicaError::Corrupt { reason })?;
    }
    Ok(())
}

/// Whether `command` is one etcd's capped applier refuses while NOSPACE is raised: a put, a
/// transaction with a put on any branch at any depth, a lease grant. Deletes, compaction,
/// revokes and alarms go on (they free space, or clear the alarm).
pub fn grows_database(command: &Command) -> bool {
    match command {
        Command::Put(_) | Command::LeaseGrant { .. } => true,
        Command::Txn(txn) => txn_puts(txn),
        Command::Sessioned { command, .. } => grows_database(command),
        Command::DeleteRange(_)
        | Command::Compact { .. }
        | Command::LeaseRevoke { .. }
        | Command::Alarm { .. }
        | Command::MemberAdd(_)
        | Command::MemberRemove { .. }
        | Command::MemberUpdate { .. }
        | Command::MemberPromote { .. }
        | Command::MemberPublish { .. }
        | Command::SessionOpen { .. }
        | Command::SessionClose { .. }
        | Command::SessionExpire { .. } => false,
    }
}

fn txn_puts(txn: &chorus_mvcc::TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        chorus_mvcc::RequestOp::Put(_) => true,
        chorus_mvcc::RequestOp::Txn(nested) => txn_puts(nested),
        chorus_mvcc::RequestOp::Range(_) | chorus_mvcc::RequestOp::DeleteRange(_) => false,
    })
}

/// One member command on the table; other commands leave it alone (and answer `NotFound`,
/// never seen: callers pass member commands only).
fn apply_member_command(
    members: &mut MemberTable,
    command: Command,
) -> Result<MemberChanged, MemberError> {
    let id = match command {
        Command::MemberAdd(member) => {
            let id = member.id;
            members.add(member)?;
            id
        }
        Command::MemberRemove { id } => {
            let removed = members.get(id).cloned().ok_or(MemberError::NotFound)?;
            members.remove(id)?;
            return Ok(MemberChanged {
                member: removed,
                members: members.members.values().cloned().collect(),
            });
        }
        Command::MemberUpdate { id, peer_urls } => {
            members.update(id, peer_urls)?;
            id
        }
        Command::MemberPromote { id } => {
            members.promote(id)?;
            id
        }
        Command::MemberPublish {
            id,
            name,
            client_urls,
        } => {
            members.publish(id, name, client_urls)?;
            id
        }
        _ => return Err(MemberError::NotFound),
    };
    let member = members.get(id).cloned().ok_or(MemberError::NotFound)?;
    Ok(MemberChanged {
        member,
        members: members.members.values().cloned().collect(),
    })
}

/// Splits a store write's result into the answer and its events.
fn split<R>(
    result: Result<chorus_mvcc::Applied<R>, chorus_mvcc::Error>,
    wrap: impl FnOnce(R) -> CommandResponse,
) -> (Result<CommandResponse, chorus_mvcc::Error>, Vec<Event>) {
    match result {
        Ok(applied) => (Ok(wrap(applied.response)), applied.events),
        Err(error) => (Err(error), Vec::new()),
    }
}
