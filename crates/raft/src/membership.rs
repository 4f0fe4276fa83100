//! Membership changes by joint consensus (Raft thesis §4.3), learners, and leadership transfer
//! (§3.10).

use crate::error::ProposeError;
use crate::message::MessageBody;
use crate::progress::Progress;
use crate::raft::Raft;
use crate::types::{ConfChange, ConfChangeStep, EntryPayload, LogIndex, Membership, NodeId, Role};

/// What a leader knows of one peer's replication, for an operator's checks before a
/// membership change (etcd refuses to promote a learner that is behind, or to remove a member
/// when too few of the rest are up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The last entry the peer is known to hold.
    pub match_index: LogIndex,
    /// How many entries of the leader's log it lacks.
    pub behind_entries: u64,
    /// Whether it answered within the last election timeout.
    pub recently_active: bool,
    /// Whether it is close enough to be promoted from learner to voter.
    pub caught_up: bool,
}

impl Raft {
    /// On a leader, what it knows of `peer`'s replication; `None` on a follower or for a node
    /// that is not a peer.
    pub fn peer_progress(&self, peer: NodeId) -> Option<PeerProgress> {
        if self.role != Role::Leader {
            return None;
        }
        let progress = self.progress.get(&peer)?;
        let behind_entries = self
            .log
            .last_index()
            .0
            .saturating_sub(progress.match_index.0);
        let window = u64::from(self.config.election_timeout_ticks);
        Some(PeerProgress {
            match_index: progress.match_index,
            behind_entries,
            recently_active: self.ticks.saturating_sub(progress.last_heard_tick) < window,
            caught_up: behind_entries <= self.config.learner_catch_up_entries_max,
        })
    }

    /// Proposes a membership change. A change of voters enters a joint configuration, which the
    /// leader leaves by itself once it commits. Learners must have caught up to be promoted.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<LogIndex, ProposeError> {
        self.check_can_propose(0)?;
        if self.pending_conf_index > self.log.commit {
            return Err(ProposeError::ConfChangePending);
        }
        self.validate_conf_change(&change)?;
        let index = self.append_entry(EntryPayload::ConfChange(change));
        self.pending_conf_index = index;
        self.broadcast_append();
        Ok(index)
    }

    fn validate_conf_change(&self, change: &ConfChange) -> Result<(), ProposeError> {
        let invalid = |reason: &str| ProposeError::InvalidConfChange {
            reason: reason.into(),
        };
        if change.is_leave_joint() {
            return if self.membership.is_joint() {
                Ok(())
            } else {
                Err(invalid("not in a joint configuration"))
            };
        }
        if self.membership.is_joint() {
            return Err(invalid("a joint configuration must be left first"));
        }
        for step in &change.steps {
            match *step {
                ConfChangeStep::AddVoter(id) => {
                    if id.0 == 0 {
                        return Err(invalid("node id 0 is reserved"));
                    }
                    if self.membership.learners.contains(&id) {
                        let matched = self
                            .progress
                            .get(&id)
                            .map_or(LogIndex(0), |p| p.match_index);
                        let behind = self.log.last_index().0.saturating_sub(matched.0);
                        if behind > self.config.learner_catch_up_entries_max {
                            return Err(ProposeError::LearnerBehind {
                                learner: id,
                                behind_entries: behind,
                            });
                        }
                    }
                }
                ConfChangeStep::AddLearner(id) => {
                    if id.0 == 0 {
                        return Err(invalid("node id 0 is reserved"));
                    }
                    if self.membership.is_voter(id) {
                        return Err(invalid("a voter cannot become a learner; remove it first"));
                    }
                }
                ConfChangeStep::Remove(id) => {
                    if !self.membership.contains(id) {
                        return Err(invalid("removing a node that is not a member"));
                    }
                }
            }
        }
        let next = Self::membership_after(&self.membership, change);
        if next.voters.is_empty() {
            return Err(invalid("the change would leave no voters"));
        }
        Ok(())
    }

    /// The membership after `change` is applied to `current`.
    fn membership_after(current: &Membership, change: &ConfChange) -> Membership {
        let mut next = current.clone();
        if change.is_leave_joint() {
            next.voters_outgoing.clear();
            return next;
        }
        let mut voters = current.voters.clone();
        for step in &change.steps {
            match *step {
                ConfChangeStep::AddVoter(id) => {
                    next.learners.remove(&id);
                    voters.insert(id);
                }
                ConfChangeStep::AddLearner(id) => {
                    if !voters.contains(&id) {
                        next.learners.insert(id);
                    }
                }
                ConfChangeStep::Remove(id) => {
                    next.learners.remove(&id);
                    voters.remove(&id);
                }
            }
        }
        if voters != current.voters {
            next.voters_outgoing = current.voters.clone();
            next.voters = voters;
        }
        next
    }

    /// A committed conf change at `index` takes effect.
    pub(crate) fn apply_conf_change(&mut self, index: LogIndex, change: &ConfChange) {
        let next = Self::membership_after(&self.membership, change);
        next.check_invariants();
        self.membership = next.clone();
        self.membership_history.push((index, next));
        if self.role != Role::Leader {
            return;
        }
        let last_next = self.log.last_index().next();
        let ticks = self.ticks;
        for member in self.membership.members() {
            self.progress
                .entry(member)
                .or_insert_with(|| Progress::new(last_next, ticks));
        }
        let membership = &self.membership;
        self.progress.retain(|id, _| membership.contains(*id));
        if !self.membership.is_voter(self.config.id) && !self.membership.is_joint() {
            // Removed: stop leading; the remaining voters elect a leader among themselves.
            self.become_follower(self.term, None);
            return;
        }
        self.maybe_leave_joint();
    }

    /// A leader whose committed configuration is joint proposes leaving it, once.
    pub(crate) fn maybe_leave_joint(&mut self) {
        if self.role != Role::Leader || !self.membership.is_joint() {
            return;
        }
        if self.pending_conf_index > self.log.commit {
            // A conf change (perhaps the leave itself) is already in the uncommitted tail.
            let tail = self.log.slice(
                self.log.commit.next(),
                self.log.last_index().next(),
                usize::MAX,
            );
            if tail
                .iter()
                .any(|e| matches!(e.payload, EntryPayload::ConfChange(_)))
            {
                return;
            }
        }
        let index = self.append_entry(EntryPayload::ConfChange(ConfChange::leave_joint()));
        self.pending_conf_index = index;
        self.broadcast_append();
    }

    /// The membership in force after applying everything up to `index`.
    pub(crate) fn membership_at(&self, index: LogIndex) -> Membership {
        self.membership_history
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map_or_else(|| self.log.snapshot.membership.clone(), |(_, m)| m.clone())
    }

    /// Hands leadership to `to` once its log is up to date. Proposals are refused meanwhile; the
    /// transfer is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.config.id {
            return Ok(());
        }
        if !self.membership.is_voter(to) {
            return Err(ProposeError::InvalidConfChange {
                reason: format!("transfer target {to} is not a voter"),
            });
        }
        self.transfer_target = Some(to);
        self.election_elapsed_ticks = 0;
        self.maybe_finish_transfer(to);
        if self.transfer_target.is_some() {
            self.send_appends(to);
        }
        Ok(())
    }

    /// The transfer target has caught up: tell it to campaign now.
    pub(crate) fn maybe_finish_transfer(&mut self, peer: NodeId) {
        if self.transfer_target != Some(peer) {
            return;
        }
        let caught_up = self
            .progress
            .get(&peer)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send(peer, MessageBody::TimeoutNow);
        }
    }
}
