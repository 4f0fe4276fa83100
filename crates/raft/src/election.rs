//! Elections: timeouts, pre-vote, votes, role changes and check-quorum (Raft §5.2, thesis §9.6).

use crate::message::{
    AppendEntriesResponse, Message, MessageBody, RequestVote, RequestVoteResponse,
};
use crate::progress::Progress;
use crate::raft::Raft;
use crate::types::{EntryPayload, LogIndex, NodeId, Role, Term};

impl Raft {
    /// A follower or candidate tick: campaign when the election timeout passes.
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.randomized_election_timeout_ticks
            && self.is_promotable()
        {
            self.election_elapsed_ticks = 0;
            self.start_election(false);
        }
    }

    /// A leader tick: heartbeats, check-quorum, and giving up a stalled transfer.
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed_ticks += 1;
        self.election_elapsed_ticks += 1;
        if self.config.check_quorum && !self.quorum_recently_active() {
            self.become_follower(self.term, None);
            return;
        }
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks {
            self.election_elapsed_ticks = 0;
            self.transfer_target = None;
        }
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Whether a majority (counting this node) was heard from within an election timeout.
    fn quorum_recently_active(&self) -> bool {
        let id = self.config.id;
        let window = u64::from(self.config.election_timeout_ticks);
        let ticks = self.ticks;
        let progress = &self.progress;
        self.membership.is_quorum(|node| {
            node == id
                || progress
                    .get(&node)
                    .is_some_and(|p| ticks - p.last_heard_tick < window)
        })
    }

    /// Starts an election now (tests, and operators forcing an election).
    pub fn campaign(&mut self) {
        if self.role != Role::Leader && self.is_promotable() {
            self.start_election(false);
        }
    }

    /// `transfer`: started by the leader's TimeoutNow, so skip the pre-vote and ask voters to
    /// disregard the leader they know.
    pub(crate) fn start_election(&mut self, transfer: bool) {
        if self.config.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(transfer);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.reset_randomized_election_timeout();
        self.request_votes(true, false);
    }

    fn become_candidate(&mut self, transfer: bool) {
        self.reset_leader_state();
        self.role = Role::Candidate;
        self.term = self.term.next();
        self.vote = Some(self.config.id);
        self.leader = None;
        self.votes.clear();
        self.election_elapsed_ticks = 0;
        self.reset_randomized_election_timeout();
        self.request_votes(false, transfer);
    }

    fn request_votes(&mut self, pre_vote: bool, transfer: bool) {
        let id = self.config.id;
        self.votes.insert(id, true);
        if self.membership.is_quorum(|node| node == id) {
            // A single voter wins at once.
            self.win_election(pre_vote, transfer);
            return;
        }
        let term = if pre_vote {
            self.term.next()
        } else {
            self.term
        };
        let request = RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        let voters: Vec<NodeId> = self
            .membership
            .members()
            .into_iter()
            .filter(|node| *node != id && self.membership.is_voter(*node))
            .collect();
        for voter in voters {
            self.send_with_term(voter, term, MessageBody::RequestVote(request.clone()));
        }
    }

    fn win_election(&mut self, pre_vote: bool, transfer: bool) {
        if pre_vote {
            self.become_candidate(transfer);
        } else {
            self.become_leader();
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role == Role::Leader {
            self.fail_pending_reads();
        }
        self.reset_leader_state();
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.election_elapsed_ticks = 0;
        self.reset_randomized_election_timeout();
    }

    /// A message from the leader of our term arrived.
    pub(crate) fn become_follower_of(&mut self, leader: NodeId) {
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(self.term, Some(leader));
        }
        self.election_elapsed_ticks = 0;
    }

    fn reset_leader_state(&mut self) {
        self.progress.clear();
        self.transfer_target = None;
        self.transfer_elapsed_ticks = 0;
        self.uncommitted_bytes = 0;
        self.heartbeat_sent_ticks.clear();
        self.lease_expiry_tick = 0;
        self.heartbeat_elapsed_ticks = 0;
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        self.reset_leader_state();
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.leader_first_sequence = self.heartbeat_sequence;
        self.election_elapsed_ticks = 0;
        let next = self.log.last_index().next();
        for member in self.membership.members() {
            self.progress
                .insert(member, Progress::new(next, self.ticks));
        }
        let persisted = self.log.persisted;
        if let Some(own) = self.progress.get_mut(&self.config.id) {
            own.maybe_update(persisted);
            own.become_replicate();
        }
        // Conservatively treat any conf change in the uncommitted tail as pending.
        self.pending_conf_index = self.log.last_index();
        self.append_entry(EntryPayload::Noop);
        self.maybe_leave_joint();
        self.broadcast_append();
        self.maybe_commit();
    }

    /// A message with a higher term. Returns whether to go on handling it in the new term.
    pub(crate) fn step_higher_term(&mut self, message: &Message) -> bool {
        if let MessageBody::RequestVote(request) = &message.body {
            // A node that heard from a leader within the minimum election timeout disregards
            // votes (unless the leader itself asked for the election): this keeps a node that
            // rejoins from deposing a healthy leader, and is what leader leases rely on.
            // With leases, a node that just (re)started may have acknowledged a leader before it
            // crashed: it waits one election timeout too, or a restart could cut a lease short.
            let timeout = self.config.election_timeout_ticks;
            let just_started = self.config.lease.is_some() && self.ticks < u64::from(timeout);
            let leader_recent = self.config.check_quorum
                && (self.leader.is_some() || just_started)
                && self.election_elapsed_ticks < timeout;
            if leader_recent && !request.transfer {
                return false;
            }
            if request.pre_vote {
                // A pre-vote changes no state here.
                return true;
            }
            self.become_follower(message.term, None);
            return true;
        }
        if let MessageBody::RequestVoteResponse(response) = &message.body {
            if response.pre_vote && response.granted {
                // Granted pre-votes carry the term we would campaign in.
                return true;
            }
        }
        let leader = match message.body {
            MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_) => Some(message.from),
            _ => None,
        };
        self.become_follower(message.term, leader);
        true
    }

    /// A message with a lower term: stale, but the sender may need to learn our term.
    pub(crate) fn step_lower_term(&mut self, message: Message) {
        match &message.body {
            MessageBody::AppendEntries(_) | MessageBody::Heartbeat(_) => {
                #[cfg(feature = "fault-injection")]
                if self.config.faults.accept_stale_append {
                    if let MessageBody::AppendEntries(_) = &message.body {
                        let leader = message.from;
                        self.leader = Some(leader);
                        self.role = Role::Follower;
                        self.step_current_term(Message {
                            term: self.term,
                            ..message
                        });
                        return;
                    }
                }
                // Tell the stale leader about the new term, so it steps down (with check-quorum it
                // would otherwise keep its followers from electing anyone).
                let response = AppendEntriesResponse {
                    index: LogIndex(0),
                    rejected: true,
                    hint_index: LogIndex(0),
                    hint_term: Term(0),
                };
                self.send_with_term(
                    message.from,
                    self.term,
                    MessageBody::AppendEntriesResponse(response),
                );
            }
            MessageBody::RequestVote(request) if request.pre_vote => {
                let response = RequestVoteResponse {
                    pre_vote: true,
                    granted: false,
                };
                self.send_with_term(
                    message.from,
                    self.term,
                    MessageBody::RequestVoteResponse(response),
                );
            }
            _ => {}
        }
    }

    pub(crate) fn handle_request_vote(&mut self, from: NodeId, term: Term, request: RequestVote) {
        let can_vote = if request.pre_vote {
            // A pre-vote is granted to a would-be term above ours (the recent-leader check was
            // made in `step_higher_term`).
            term > self.term
        } else {
            self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none())
        };
        let granted = can_vote
            && self
                .log
                .is_up_to_date(request.last_log_index, request.last_log_term);
        if granted && !request.pre_vote {
            self.vote = Some(from);
            self.election_elapsed_ticks = 0;
        }
        let response_term = if request.pre_vote && granted {
            term
        } else {
            self.term
        };
        let response = RequestVoteResponse {
            pre_vote: request.pre_vote,
            granted,
        };
        self.send_with_term(
            from,
            response_term,
            MessageBody::RequestVoteResponse(response),
        );
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        response: RequestVoteResponse,
    ) {
        let campaigning = match self.role {
            // Granted pre-votes carry the would-be term; refusals carry the voter's own.
            Role::PreCandidate => {
                response.pre_vote && (term == self.term.next() || !response.granted)
            }
            Role::Candidate => !response.pre_vote && term == self.term,
            _ => false,
        };
        if !campaigning {
            return;
        }
        self.votes.entry(from).or_insert(response.granted);
        let votes = &self.votes;
        if self
            .membership
            .is_quorum(|node| votes.get(&node) == Some(&true))
        {
            self.win_election(response.pre_vote, false);
        } else if self
            .membership
            .is_quorum(|node| votes.get(&node) == Some(&false))
        {
            self.become_follower(self.term, None);
        }
    }

    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.role != Role::Leader && self.is_promotable() && self.leader == Some(from) {
            self.start_election(true);
        }
    }
}
