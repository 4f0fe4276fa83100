//! Graceful shutdown: before a leader stops serving, it hands leadership to its most caught-up
//! follower, so the cluster does not sit an election timeout without a leader; then the node
//! stops taking requests and gives those in flight a bounded time to finish.

use crate::group::{GroupHandle, Transfer};
use chorus_raft::Role;
use std::time::Duration;
use tokio::time::Instant;

/// How often the hand-over is checked.
const TRANSFER_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// On the leader: starts a leadership transfer and waits (at most `wait`) until this member is
/// no longer the leader. Returns whether leadership moved; does nothing on a follower.
pub async fn hand_over_leadership(group: &GroupHandle, wait: Duration) -> bool {
    let target = match group.transfer_leadership().await {
        Ok(Transfer::Started(target)) => target,
        Ok(Transfer::NotLeader | Transfer::NoFollower) => return false,
        Err(error) => {
            tracing::warn!("shutdown: no leadership transfer: {error}");
            return false;
        }
    };
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(observation) = group.observe().await {
            if observation.role != Role::Leader {
                let new_leader = observation
                    .leader
                    .map_or_else(|| "not known yet".to_string(), |id| format!("{:x}", id.0));
                tracing::info!(
                    "shutdown: leadership handed over (target {:x}, leader {new_leader})",
                    target.0
                );
                return true;
            }
        }
        tokio::time::sleep(TRANSFER_POLL_INTERVAL).await;
    }
    tracing::warn!(
        "shutdown: leadership transfer to {:x} did not finish within {wait:?}; stopping anyway",
        target.0
    );
    false
}
