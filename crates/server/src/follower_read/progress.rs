//! What a member knows about its own lag, published by the group task after every pass so
//! that reads can be admitted (or made to wait) without a trip through the group task.
//!
//! The group task notes each message from the leader it follows (its arrival time on the
//! server's monotonic clock, and the commit index it carries), and after each pass publishes a
//! [`ReadProgress`] on a `tokio::sync::watch` channel. The pure crates never see the clock:
//! this is the server's bookkeeping around them.

use crate::group::GroupTask;
use chorus_raft::{Message, MessageBody, Role};
use std::time::Instant;
use tokio::sync::watch;

/// A member's applied state and lag, as of the group task's last pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadProgress {
    /// The store's current revision: what a serializable read answers from.
    pub revision: i64,
    /// The highest commit index known here: raft's own, or a higher one the leader announced.
    pub commit_index: u64,
    pub applied_index: u64,
    /// A leader is never stale: it is where commits come from.
    pub is_leader: bool,
    /// When a message of the current leader last arrived (`None`: none since this member
    /// started, or since the leader changed).
    pub leader_contact: Option<Instant>,
}

impl ReadProgress {
    /// Entries committed but not applied here.
    pub fn lag_entries(&self) -> u64 {
        self.commit_index.saturating_sub(self.applied_index)
    }
}

/// The group task's side: notes leader contact and publishes [`ReadProgress`].
#[derive(Debug)]
pub struct ProgressPublisher {
    sender: watch::Sender<ReadProgress>,
    /// The highest commit index a leader's append or heartbeat carried.
    leader_commit_seen: u64,
    leader_contact: Option<Instant>,
}

impl Default for ProgressPublisher {
    fn default() -> ProgressPublisher {
        let (sender, _) = watch::channel(ReadProgress::default());
        ProgressPublisher {
            sender,
            leader_commit_seen: 0,
            leader_contact: None,
        }
    }
}

impl ProgressPublisher {
    /// A receiver of every published [`ReadProgress`].
    pub fn subscribe(&self) -> watch::Receiver<ReadProgress> {
        self.sender.subscribe()
    }
}

/// The commit index a leader's message announces, for the messages only a leader sends.
fn announced_commit(message: &Message) -> Option<u64> {
    match &message.body {
        MessageBody::AppendEntries(append) => Some(append.leader_commit.0),
        MessageBody::Heartbeat(heartbeat) => Some(heartbeat.commit.0),
        MessageBody::InstallSnapshot(_) => Some(0),
        _ => None,
    }
}

impl GroupTask {
    /// Steps a peer's message into raft, noting it as leader contact when it comes from the
    /// leader this member now follows, in its current term.
    pub(crate) fn step_peer(&mut self, message: Message) {
        let from = message.from;
        let term = message.term;
        let commit = announced_commit(&message);
        self.replica.step(message);
        let Some(commit) = commit else { return };
        if self.replica.leader() == Some(from) && self.replica.term() == term {
            let publisher = &mut self.read_progress;
            publisher.leader_contact = Some(Instant::now());
            publisher.leader_commit_seen = publisher.leader_commit_seen.max(commit);
        }
    }

    /// Publishes this member's progress; receivers wake only when it changed.
    pub(crate) fn publish_read_progress(&mut self) {
        let raft = self.replica.raft();
        let is_leader = raft.role() == Role::Leader;
        let publisher = &mut self.read_progress;
        if raft.leader().is_none() {
            publisher.leader_contact = None;
        }
        let progress = ReadProgress {
            revision: self.replica.store().current_revision(),
            commit_index: raft.commit_index().0.max(publisher.leader_commit_seen),
            applied_index: self.replica.applied_index().0,
            is_leader,
            leader_contact: publisher.leader_contact,
        };
        publisher.sender.send_if_modified(|current| {
            let changed = *current != progress;
            *current = progress;
            changed
        });
    }
}
