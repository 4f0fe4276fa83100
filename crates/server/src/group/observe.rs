//! What the group task tells the outside about itself: a snapshot of its state for the admin
//! port ([`GroupObservation`]), the per-cycle metrics and log lines (leader changes, elections,
//! snapshots, lost proposals), and the leadership hand-over a graceful shutdown asks for.
//!
//! Kept out of the cycle's logic: `run_cycles` calls [`GroupTask::observe_cycle`] once per
//! cycle and nothing here changes the replica's state except [`GroupTask::handle_transfer`].

use super::{GroupHandle, GroupInput, GroupTask};
use crate::error::ServerError;
use crate::metrics::metrics;
use chorus_raft::{NodeId, Role};
use chorus_replica::Outcome;
use std::time::Duration;
use tokio::sync::oneshot;

/// The group's state for monitoring, read in one pass of the task.
#[derive(Clone, Debug)]
pub struct GroupObservation {
    pub id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub revision: i64,
    /// On the leader: each follower's match index.
    pub follower_match: Vec<(NodeId, u64)>,
    pub proposals_pending: usize,
    pub reads_pending: usize,
    pub watchers: usize,
    pub watch_streams: usize,
    pub leases: usize,
    /// Client sessions open.
    pub sessions: usize,
}

impl GroupObservation {
    /// On the leader: each follower and how many entries its log is behind the leader's.
    pub fn follower_lag(&self) -> Vec<(NodeId, u64)> {
        self.follower_match
            .iter()
            .map(|(id, matched)| (*id, self.last_index.saturating_sub(*matched)))
            .collect()
    }
}

/// Where a leadership hand-over went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Not the leader: nothing to hand over.
    NotLeader,
    /// A single-member group: nobody to hand over to.
    NoFollower,
    /// The transfer to this follower started.
    Started(NodeId),
}

impl GroupHandle {
    /// The group's state for monitoring.
    pub async fn observe(&self) -> Result<GroupObservation, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.call(GroupInput::Observe { reply }, answer).await
    }

    /// On the leader, starts handing leadership to the most caught-up follower.
    pub async fn transfer_leadership(&self) -> Result<Transfer, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.call(GroupInput::TransferLeadership { reply }, answer)
            .await?
    }
}

impl GroupTask {
    pub(super) fn handle_observe(&self, reply: oneshot::Sender<GroupObservation>) {
        let raft = self.replica.raft();
        let observation = GroupObservation {
            id: raft.id(),
            role: raft.role(),
            leader: raft.leader(),
            term: raft.term().0,
            commit_index: raft.commit_index().0,
            applied_index: self.replica.applied_index().0,
            last_index: raft.last_index().0,
            snapshot_index: raft.snapshot_meta().last_index.0,
            revision: self.replica.store().current_revision(),
            follower_match: raft
                .follower_match_indexes()
                .into_iter()
                .map(|(id, index)| (id, index.0))
                .collect(),
            proposals_pending: self.waiters.len(),
            reads_pending: self.reads.len(),
            watchers: self.watchers.watcher_count(),
            watch_streams: self.watchers.stream_count(),
            leases: self.replica.leases().len(),
            sessions: self.replica.sessions().len(),
        };
        let _ = reply.send(observation);
    }

    pub(super) fn handle_transfer(
        &mut self,
        reply: oneshot::Sender<Result<Transfer, ServerError>>,
    ) {
        let raft = self.replica.raft();
        if raft.role() != Role::Leader {
            let _ = reply.send(Ok(Transfer::NotLeader));
            return;
        }
        // The most caught-up follower becomes leader soonest (it needs the fewest entries).
        let target = raft
            .follower_match_indexes()
            .into_iter()
            .max_by_key(|(id, index)| (*index, std::cmp::Reverse(*id)))
            .map(|(id, _)| id);
        let Some(target) = target else {
            let _ = reply.send(Ok(Transfer::NoFollower));
            return;
        };
        let answer = match self.replica.transfer_leadership(target) {
            Ok(()) => {
                tracing::info!("handing leadership to {:x} before stopping", target.0);
                Ok(Transfer::Started(target))
            }
            Err(error) => {
                tracing::warn!("leadership transfer to {:x} refused: {error}", target.0);
                Err(ServerError::LeaderChanged)
            }
        };
        let _ = reply.send(answer);
    }

    /// After a Ready cycle, before its outcome answers anyone: the metrics and log lines of
    /// what the cycle did. `begin` and `finish` are how long the two halves took.
    pub(super) fn observe_cycle(&self, begin: Duration, finish: Duration, outcome: &Outcome) {
        let metrics = metrics();
        metrics.ready_begin_duration.observe(begin);
        metrics.persist_apply_duration.observe(finish);
        if let Some(soft) = &outcome.soft_state {
            log_soft_state(soft);
        }
        let snapshot_index = self.replica.raft().snapshot_meta().last_index.0;
        let mut observed = crate::metrics::lock(&metrics.observed);
        if let Some(installed) = outcome.snapshot_installed {
            metrics.snapshots_installed.add(1);
            metrics.snapshot_cycle_duration.observe(finish);
            tracing::info!(
                "snapshot installed from the leader, up to index {}",
                installed.0
            );
        } else if snapshot_index > observed.snapshot_index && observed.snapshot_index != 0 {
            metrics.snapshots_taken.add(1);
            metrics.snapshot_cycle_duration.observe(finish);
            tracing::info!(
                "snapshot taken at index {snapshot_index} (cycle {} ms); log compacted before it",
                finish.as_millis()
            );
        }
        observed.snapshot_index = snapshot_index.max(1);
    }

    /// A snapshot of our own was written off the group task (in `took`) and installed, the log
    /// compacted up to it; or dropped, a snapshot from the leader having got there first.
    pub(super) fn observe_snapshot_written(
        &self,
        index: u64,
        bytes: u64,
        installed: bool,
        took: Duration,
    ) {
        let metrics = metrics();
        if !installed {
            tracing::info!("snapshot at index {index} dropped: the leader's newer one came first");
            return;
        }
        metrics.snapshots_taken.add(1);
        metrics.snapshot_write_duration.observe(took);
        let mut observed = crate::metrics::lock(&metrics.observed);
        observed.snapshot_index = observed.snapshot_index.max(index);
        tracing::info!(
            "snapshot taken at index {index} ({:.1} MiB written in {} ms, off the group task); \
             log compacted before it",
            bytes as f64 / (1024.0 * 1024.0),
            took.as_millis()
        );
    }
}

/// The info line for a change of role, term or leader, and the leader-change metrics.
fn log_soft_state(soft: &chorus_raft::SoftState) {
    let metrics = metrics();
    let campaigning = matches!(soft.role, Role::Candidate | Role::PreCandidate);
    let was_campaigning = {
        let mut observed = crate::metrics::lock(&metrics.observed);
        std::mem::replace(&mut observed.campaigning, campaigning)
    };
    let term = soft.term.0;
    if campaigning && !was_campaigning {
        tracing::debug!("campaigning in term {term} ({:?})", soft.role);
    }
    if !metrics.observe_leader(term, soft.leader.map(|id| id.0)) {
        if was_campaigning && soft.role == Role::Follower && soft.leader.is_none() {
            tracing::debug!("election lost in term {term}: no leader yet");
        }
        return;
    }
    match (soft.role, soft.leader) {
        (Role::Leader, _) => tracing::info!("election won: leader for term {term}"),
        (_, Some(leader)) if was_campaigning => {
            tracing::info!("election lost: {:x} leads term {term}", leader.0)
        }
        (_, Some(leader)) => tracing::info!("leader changed: {:x} leads term {term}", leader.0),
        (_, None) => tracing::info!("leader lost in term {term}: election under way"),
    }
}
