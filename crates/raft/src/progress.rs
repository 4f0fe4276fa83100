//! What the leader knows about each follower's log, and how it paces replication to it.

use crate::types::{LogIndex, SnapshotMeta};
use bytes::Bytes;
use std::collections::VecDeque;

/// How the leader is replicating to one follower.
#[derive(Debug)]
pub(crate) enum ReplicationState {
    /// The follower's log position is unknown: one append at a time, waiting for the answer.
    Probe { paused: bool },
    /// The follower accepts appends: up to `inflight_appends_max` in flight, optimistically.
    Replicate { inflight: VecDeque<LogIndex> },
    /// The follower needs entries the leader has compacted: a snapshot is sent in chunks.
    Snapshot(SnapshotTransfer),
}

#[derive(Debug)]
pub(crate) struct SnapshotTransfer {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Bytes,
    /// Bytes the follower has confirmed.
    pub(crate) acknowledged_bytes: u64,
    /// The tick the last chunk was sent, for retransmission after a loss.
    pub(crate) sent_tick: u64,
}

/// One follower (or learner) as the leader sees it.
///
/// # Invariants
/// - `match_index < next_index`.
#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: LogIndex,
    pub(crate) next_index: LogIndex,
    pub(crate) state: ReplicationState,
    /// The leader's tick when this follower last answered: check-quorum counts followers heard
    /// from within an election timeout.
    pub(crate) last_heard_tick: u64,
    /// The highest heartbeat sequence it has answered.
    pub(crate) acknowledged_sequence: u64,
    /// The highest commit index this follower was sent that it can use (capped at what it
    /// holds): once `min(commit, match_index)` passes it, the leader announces the commit
    /// (`Raft::commit_unannounced`).
    pub(crate) commit_sent: LogIndex,
}

impl Progress {
    pub(crate) fn new(next_index: LogIndex, now_tick: u64) -> Progress {
        Progress {
            last_heard_tick: now_tick,
            match_index: LogIndex(0),
            next_index,
            state: ReplicationState::Probe { paused: false },
            acknowledged_sequence: 0,
            commit_sent: LogIndex(0),
        }
    }

    pub(crate) fn is_paused(&self, inflight_max: usize) -> bool {
        match &self.state {
            ReplicationState::Probe { paused } => *paused,
            ReplicationState::Replicate { inflight } => inflight.len() >= inflight_max,
            ReplicationState::Snapshot(_) => true,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        let next = match &self.state {
            ReplicationState::Snapshot(transfer) => {
                self.match_index.max(transfer.meta.last_index).next()
            }
            _ => self.match_index.next(),
        };
        self.next_index = next;
        self.state = ReplicationState::Probe { paused: false };
    }

    pub(crate) fn become_replicate(&mut self) {
        self.next_index = self.match_index.next();
        self.state = ReplicationState::Replicate {
            inflight: VecDeque::new(),
        };
    }

    /// An append ending at `last` was sent.
    pub(crate) fn on_append_sent(&mut self, last: LogIndex) {
        match &mut self.state {
            ReplicationState::Probe { paused } => *paused = true,
            ReplicationState::Replicate { inflight } => {
                if last >= self.next_index {
                    self.next_index = last.next();
                    inflight.push_back(last);
                }
            }
            ReplicationState::Snapshot(_) => unreachable!("append sent during snapshot transfer"),
        }
    }

    /// The follower matches up to `index`. Returns whether that is news.
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index.next());
        if let ReplicationState::Replicate { inflight } = &mut self.state {
            while inflight.front().is_some_and(|last| *last <= index) {
                inflight.pop_front();
            }
        }
        if let ReplicationState::Probe { paused } = &mut self.state {
            *paused = false;
        }
        updated
    }

    pub(crate) fn check_invariants(&self) {
        assert!(
            self.match_index < self.next_index,
            "match {} not below next {}",
            self.match_index,
            self.next_index
        );
    }
}
