//! The group task's part of the Maintenance service and of read-only transactions: HashKV, the
//! state snapshot, the alarm table, MoveLeader, the backend quota, and read-only Txn served
//! through ReadIndex. `impl GroupTask` blocks over the task's state, so that `group.rs` only
//! dispatches to them.
//!
//! The backend quota (etcd's `--quota-backend-bytes`): the database file's size is sampled
//! every tick. On the leader, a write that grows the database (put, txn with a put, lease grant)
//! is refused with "etcdserver: mvcc: database space exceeded" when the size plus the write's
//! cost passes the quota, or when a NOSPACE alarm is raised; in the first case the leader also
//! proposes raising NOSPACE for itself (at most once every [`ALARM_PROPOSAL_TICKS_MIN`] ticks
//! while it is not raised). The alarm is replicated state: every replica then refuses those
//! writes at apply time too (`chorus_replica::alarm`), until `etcdctl alarm disarm`.

use crate::error::ServerError;
use crate::group::{Answer, GroupHandle, GroupInput, GroupTask, HeaderInfo, WAITERS_MAX};
use chorus_mvcc::{HashKv, RequestOp, TxnRequest, TxnResponse};
use chorus_raft::{NodeId, Role};
use chorus_replica::alarm::{AlarmAction, AlarmMember, AlarmType};
use chorus_replica::{grows_database, Command};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

/// etcd's default backend quota: 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// The leader proposes raising NOSPACE at most this often (in ticks) while it is not raised.
pub const ALARM_PROPOSAL_TICKS_MIN: u64 = 10;
/// How long a MoveLeader waits for the new leader before failing (below the request timeout,
/// so the client gets etcd's message rather than a generic timeout).
pub const MOVE_LEADER_WAIT: Duration = Duration::from_secs(5);
/// MoveLeader requests waiting at once; more are refused with "too many requests".
pub const MOVE_LEADERS_WAITING_MAX: usize = 64;

/// Maintenance requests for the group task.
#[derive(Debug)]
pub enum MaintenanceInput {
    /// etcd's HashKV over this member's applied state (0: the current revision).
    HashKv {
        revision: i64,
        reply: oneshot::Sender<Answer<HashKv>>,
    },
    /// The whole applied state as a replica snapshot blob.
    Snapshot {
        reply: oneshot::Sender<Answer<Vec<u8>>>,
    },
    /// The raised alarms, as applied here.
    Alarms {
        reply: oneshot::Sender<(Vec<AlarmMember>, HeaderInfo)>,
    },
    /// Hands leadership to `target`; answered once it leads.
    MoveLeader {
        target: NodeId,
        reply: oneshot::Sender<Result<HeaderInfo, MoveLeaderError>>,
    },
    /// A read-only transaction, linearizable: ReadIndex, then evaluated on the applied state.
    ReadTxn {
        request: TxnRequest,
        reply: oneshot::Sender<Answer<TxnResponse>>,
    },
    /// A read-only transaction on this member's applied state, at once (a stamped follower
    /// read, `crate::follower_read`).
    LocalReadTxn {
        request: TxnRequest,
        reply: oneshot::Sender<Answer<TxnResponse>>,
    },
}

/// Why a MoveLeader failed, as etcd says it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveLeaderError {
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TimedOut,
    #[error("{0}")]
    Server(ServerError),
}

/// The backend quota: where the database file is and how large it may grow.
#[derive(Clone, Debug)]
struct Quota {
    database_path: PathBuf,
    bytes_max: u64,
}

struct PendingMove {
    target: NodeId,
    deadline_tick: u64,
    reply: oneshot::Sender<Result<HeaderInfo, MoveLeaderError>>,
}

struct PendingTxnRead {
    request: TxnRequest,
    reply: oneshot::Sender<Answer<TxnResponse>>,
}

/// The group task's maintenance state.
#[derive(Default)]
pub struct MaintenanceState {
    quota: Option<Quota>,
    /// The database file's size at the last tick.
    database_bytes: u64,
    /// The tick of the last NOSPACE proposal.
    last_alarm_proposal_tick: Option<u64>,
    moves: Vec<PendingMove>,
    /// Read-only transactions waiting for raft to confirm their read, by read id.
    read_txns: BTreeMap<u64, PendingTxnRead>,
}

impl GroupTask {
    /// Enforces the backend quota on the database file at `database_path` (0: etcd's default,
    /// 2 GiB).
    pub fn set_quota(&mut self, database_path: PathBuf, quota_backend_bytes: u64) {
        let bytes_max = if quota_backend_bytes == 0 {
            QUOTA_BACKEND_BYTES_DEFAULT
        } else {
            quota_backend_bytes
        };
        crate::metrics::metrics().db_quota_bytes.set_u64(bytes_max);
        self.maintenance.database_bytes = file_bytes(&database_path);
        self.maintenance.quota = Some(Quota {
            database_path,
            bytes_max,
        });
    }

    pub(crate) fn handle_maintenance(&mut self, input: MaintenanceInput) {
        match input {
            MaintenanceInput::HashKv { revision, reply } => {
                let answer = self
                    .replica
                    .store()
                    .hash_kv(revision)
                    .map(|hash| (hash, self.header()))
                    .map_err(ServerError::Mvcc);
                let _ = reply.send(answer);
            }
            MaintenanceInput::Snapshot { reply } => {
                let answer = match self.replica.state_snapshot() {
                    Ok(bytes) => Ok((bytes, self.header())),
                    Err(error) => {
                        tracing::error!("snapshot for a client failed: {error}");
                        Err(ServerError::Stopped)
                    }
                };
                let _ = reply.send(answer);
            }
            MaintenanceInput::Alarms { reply } => {
                let _ = reply.send((self.replica.alarms(), self.header()));
            }
            MaintenanceInput::MoveLeader { target, reply } => {
                self.handle_move_leader(target, reply);
            }
            MaintenanceInput::ReadTxn { request, reply } => self.handle_read_txn(request, reply),
            MaintenanceInput::LocalReadTxn { request, reply } => {
                self.handle_local_read_txn(&request, reply)
            }
        }
    }

    fn handle_move_leader(
        &mut self,
        target: NodeId,
        reply: oneshot::Sender<Result<HeaderInfo, MoveLeaderError>>,
    ) {
        if self.replica.role() != Role::Leader {
            let _ = reply.send(Err(MoveLeaderError::NotLeader));
            return;
        }
        if !self.replica.raft().membership().is_voter(target) {
            let _ = reply.send(Err(MoveLeaderError::BadTransferee));
            return;
        }
        if target == self.replica.id() {
            let _ = reply.send(Ok(self.header()));
            return;
        }
        if self.maintenance.moves.len() >= MOVE_LEADERS_WAITING_MAX {
            let _ = reply.send(Err(MoveLeaderError::Server(ServerError::TooManyRequests)));
            return;
        }
        match self.replica.transfer_leadership(target) {
            Ok(()) => {
                let wait_ticks =
                    MOVE_LEADER_WAIT.as_millis() / self.tick_interval.as_millis().max(1);
                let wait_ticks = u64::try_from(wait_ticks).unwrap_or(u64::MAX).max(1);
                self.maintenance.moves.push(PendingMove {
                    target,
                    deadline_tick: self.ticks.saturating_add(wait_ticks),
                    reply,
                });
            }
            Err(error) => {
                let _ = reply.send(Err(MoveLeaderError::Server(crate::group::propose_error(
                    error,
                ))));
            }
        }
    }

    /// Answers the MoveLeader requests whose target now leads, and fails the ones past their
    /// deadline or whose client gave up.
    pub(crate) fn poll_move_leaders(&mut self) {
        if self.maintenance.moves.is_empty() {
            return;
        }
        let leader = self.replica.leader();
        let header = self.header();
        let ticks = self.ticks;
        let mut waiting = Vec::new();
        for pending in std::mem::take(&mut self.maintenance.moves) {
            if leader == Some(pending.target) {
                let _ = pending.reply.send(Ok(header));
            } else if ticks >= pending.deadline_tick {
                let _ = pending.reply.send(Err(MoveLeaderError::TimedOut));
            } else if !pending.reply.is_closed() {
                waiting.push(pending);
            }
        }
        self.maintenance.moves = waiting;
    }

    fn handle_read_txn(
        &mut self,
        request: TxnRequest,
        reply: oneshot::Sender<Answer<TxnResponse>>,
    ) {
        assert!(request.is_read_only(), "a read txn that writes");
        let waiting = self.waiters.len() + self.reads.len() + self.maintenance.read_txns.len();
        if waiting >= WAITERS_MAX {
            let _ = reply.send(Err(ServerError::TooManyRequests));
            return;
        }
        let id = self.next_read_id;
        self.next_read_id = self.next_read_id.wrapping_add(1);
        match self.replica.read_index(id) {
            Ok(()) => {
                self.maintenance
                    .read_txns
                    .insert(id, PendingTxnRead { request, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(crate::group::propose_error(error)));
            }
        }
    }

    /// Serves the read-only transactions raft confirmed (`confirmed` read ids) from the applied
    /// state, and fails the ones it could not (`failed`).
    pub(crate) fn answer_read_txns(
        &mut self,
        confirmed: &[chorus_raft::ReadState],
        failed: &[u64],
    ) {
        if self.maintenance.read_txns.is_empty() {
            return;
        }
        for state in confirmed {
            if let Some(read) = self.maintenance.read_txns.remove(&state.id) {
                let answer = self
                    .replica
                    .store()
                    .txn_read_only(&read.request)
                    .map(|response| (response, self.header()))
                    .map_err(ServerError::Mvcc);
                let _ = read.reply.send(answer);
            }
        }
        for id in failed {
            if let Some(read) = self.maintenance.read_txns.remove(id) {
                let _ = read.reply.send(Err(ServerError::LeaderChanged));
            }
        }
    }

    /// Once a tick: samples the database size, drops reads whose client gave up, and expires
    /// MoveLeader requests.
    pub(crate) fn maintenance_tick(&mut self) {
        self.log_alarm_events();
        if let Some(quota) = &self.maintenance.quota {
            self.maintenance.database_bytes = file_bytes(&quota.database_path);
        }
        if self.ticks.is_multiple_of(10) {
            self.maintenance
                .read_txns
                .retain(|_, read| !read.reply.is_closed());
        }
        self.poll_move_leaders();
    }

    /// The leader's quota check before proposing `command`: a refusal, if the command grows
    /// the database and the quota is passed or NOSPACE is raised. Raises NOSPACE when the quota
    /// is passed.
    pub(crate) fn quota_refusal(&mut self, command: &Command) -> Option<ServerError> {
        let bytes_max = self.maintenance.quota.as_ref()?.bytes_max;
        if self.replica.role() != Role::Leader || !grows_database(command) {
            return None;
        }
        let over_quota = self
            .maintenance
            .database_bytes
            .saturating_add(command_cost(command))
            > bytes_max;
        if over_quota {
            self.maybe_raise_nospace();
        }
        if over_quota || self.replica.alarm_raised(AlarmType::NoSpace) {
            return Some(ServerError::Mvcc(chorus_mvcc::Error::NoSpace));
        }
        None
    }

    fn maybe_raise_nospace(&mut self) {
        let alarm = AlarmMember {
            member_id: self.replica.id().0,
            alarm: AlarmType::NoSpace,
        };
        if self.replica.alarms().contains(&alarm) {
            return;
        }
        let recently = self
            .maintenance
            .last_alarm_proposal_tick
            .is_some_and(|tick| self.ticks < tick.saturating_add(ALARM_PROPOSAL_TICKS_MIN));
        if recently {
            return;
        }
        self.maintenance.last_alarm_proposal_tick = Some(self.ticks);
        let command = Command::Alarm {
            action: AlarmAction::Activate,
            alarm,
        };
        match self.replica.propose(&command) {
            Ok(_) => tracing::warn!(
                "database of {} bytes passed the backend quota: raising NOSPACE",
                self.maintenance.database_bytes
            ),
            Err(error) => tracing::warn!("could not propose the NOSPACE alarm: {error}"),
        }
    }
}

/// What a write adds to the database, about: its keys and values (etcd counts the same).
fn command_cost(command: &Command) -> u64 {
    fn txn_cost(txn: &TxnRequest) -> u64 {
        txn.success
            .iter()
            .chain(&txn.failure)
            .map(|op| match op {
                RequestOp::Put(put) => (put.key.len() + put.value.len()) as u64,
                RequestOp::Txn(nested) => txn_cost(nested),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => 0,
            })
            .sum()
    }
    match command {
        Command::Put(put) => (put.key.len() + put.value.len()) as u64,
        Command::Txn(txn) => txn_cost(txn),
        Command::LeaseGrant { .. } => 16,
        _ => 0,
    }
}

fn file_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

impl GroupHandle {
    /// etcd's HashKV at `revision` (0: current) over this member's applied state.
    pub async fn hash_kv(&self, revision: i64) -> Answer<HashKv> {
        let (reply, answer) = oneshot::channel();
        let input = MaintenanceInput::HashKv { revision, reply };
        self.call(GroupInput::Maintenance(input), answer).await?
    }

    /// This member's applied state as one snapshot blob.
    pub async fn state_snapshot(&self) -> Answer<Vec<u8>> {
        let (reply, answer) = oneshot::channel();
        let input = MaintenanceInput::Snapshot { reply };
        self.call(GroupInput::Maintenance(input), answer).await?
    }

    /// The raised alarms, as applied on this member.
    pub async fn alarms(&self) -> Result<(Vec<AlarmMember>, HeaderInfo), ServerError> {
        let (reply, answer) = oneshot::channel();
        let input = MaintenanceInput::Alarms { reply };
        self.call(GroupInput::Maintenance(input), answer).await
    }

    /// Moves leadership to `target`; answers once it leads.
    pub async fn move_leader(&self, target: NodeId) -> Result<HeaderInfo, MoveLeaderError> {
        let (reply, answer) = oneshot::channel();
        let input = MaintenanceInput::MoveLeader { target, reply };
        self.call(GroupInput::Maintenance(input), answer)
            .await
            .map_err(MoveLeaderError::Server)?
    }

    /// A read-only transaction, linearizably (on any member).
    pub async fn read_txn(&self, request: TxnRequest) -> Answer<TxnResponse> {
        let (reply, answer) = oneshot::channel();
        let input = MaintenanceInput::ReadTxn { request, reply };
        self.call(GroupInput::Maintenance(input), answer).await?
    }
}
