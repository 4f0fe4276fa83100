//! Refreshes the gauges that describe the group (term, indexes, lag, watchers, leases, database
//! size) from a periodic [`GroupHandle::observe`](crate::group::GroupHandle::observe), so the
//! group task needs no metrics code in its inputs' paths.

use super::{AdminState, POLL_INTERVAL};
use crate::group::GroupObservation;
use crate::metrics::{lock, metrics};
use chorus_raft::Role;

pub(super) async fn run(state: AdminState) {
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Ok(observation) = state.group.observe().await {
            record(&state, &observation);
        }
        metrics().db_size_bytes.set_u64(state.database_bytes());
    }
}

fn record(state: &AdminState, observation: &GroupObservation) {
    let metrics = metrics();
    metrics
        .has_leader
        .set(i64::from(observation.leader.is_some()));
    metrics
        .is_leader
        .set(i64::from(observation.role == Role::Leader));
    metrics.term.set_u64(observation.term);
    metrics.commit_index.set_u64(observation.commit_index);
    metrics.applied_index.set_u64(observation.applied_index);
    metrics.revision.set(observation.revision);
    metrics
        .proposals_pending
        .set_u64(observation.proposals_pending as u64);
    metrics
        .reads_pending
        .set_u64(observation.reads_pending as u64);
    metrics.watchers.set_u64(observation.watchers as u64);
    metrics
        .watch_streams
        .set_u64(observation.watch_streams as u64);
    metrics.leases.set_u64(observation.leases as u64);
    metrics.sessions.set_u64(observation.sessions as u64);
    let names = state.members.list();
    let lag = observation
        .follower_lag()
        .into_iter()
        .map(|(id, lag)| {
            let name = names
                .iter()
                .find(|member| member.id == id)
                .map_or_else(|| format!("{:x}", id.0), |member| member.name.clone());
            (name, lag)
        })
        .collect();
    *lock(&metrics.follower_lag_entries) = lag;
}
