//! Writes that reach a member while it knows no leader — it has just started, or an election is
//! under way — are held until it learns one, then proposed or forwarded as if they had just
//! arrived. After [`GroupTask::leader_wait`] with no leader they fail with etcd's "no leader".
//!
//! Why: without the hold, a write sent in the instant after an election to a member the new
//! leader's first message had not reached yet (its link was reconnecting, say) failed at once,
//! and the client saw "no leader" from a cluster that had one. Clients do not retry a write
//! that may have been applied; this one surely was not, so the member waits for it instead.

use super::{Answer, GroupTask};
use crate::error::ServerError;
use chorus_replica::{Command, CommandResponse};
use std::time::Instant;
use tokio::sync::oneshot;

/// A write held for a leader.
pub(crate) struct LeaderlessWrite {
    command: Command,
    reply: oneshot::Sender<Answer<CommandResponse>>,
    since: Instant,
}

impl GroupTask {
    /// Holds `command` until a leader is known (the caller found none).
    pub(super) fn hold_until_leader(
        &mut self,
        command: Command,
        reply: oneshot::Sender<Answer<CommandResponse>>,
    ) {
        crate::metrics::metrics().writes_held_for_leader.add(1);
        self.leaderless.push(LeaderlessWrite {
            command,
            reply,
            since: Instant::now(),
        });
    }

    /// Once a leader is known, hands every held write on as a new proposal (which proposes it
    /// here or forwards it). Cheap when nothing is held.
    pub(super) fn release_leaderless(&mut self) {
        if self.leaderless.is_empty() || self.replica.leader().is_none() {
            return;
        }
        for held in std::mem::take(&mut self.leaderless) {
            if !held.reply.is_closed() {
                self.handle_propose(held.command, held.reply);
            }
        }
    }

    /// Fails the writes held longer than `leader_wait` with "no leader", and forgets those
    /// whose client gave up.
    pub(super) fn expire_leaderless(&mut self) {
        if self.leaderless.is_empty() {
            return;
        }
        let wait = self.leader_wait;
        let (expired, kept) = std::mem::take(&mut self.leaderless)
            .into_iter()
            .filter(|held| !held.reply.is_closed())
            .partition(|held| held.since.elapsed() >= wait);
        self.leaderless = kept;
        crate::metrics::metrics()
            .writes_no_leader
            .add(expired.len() as u64);
        for held in expired {
            let _ = held
                .reply
                .send(Err(ServerError::NotLeader { leader: None }));
        }
    }

    /// Fails every held write with `error` (the group is stopping).
    pub(super) fn fail_leaderless(&mut self, error: &ServerError) {
        for held in std::mem::take(&mut self.leaderless) {
            let _ = held.reply.send(Err(error.clone()));
        }
    }
}
