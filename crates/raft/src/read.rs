//! Linearizable reads: ReadIndex (Raft thesis §6.4) and leader leases (§6.4.1).

use crate::error::ProposeError;
use crate::message::{MessageBody, ReadIndexRequest, ReadIndexResponse};
use crate::raft::{PendingRead, Raft};
use crate::types::{LogIndex, NodeId, ReadState, Role};

impl Raft {
    /// Asks for a linearizable read. The answer arrives as a `ReadState` with this `id` (or in
    /// `failed_reads`) in a later `Ready`. Works on followers by asking the leader.
    pub fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        match self.role {
            Role::Leader => {
                self.leader_read(id, None);
                Ok(())
            }
            _ => match self.leader {
                Some(leader) => {
                    self.send(
                        leader,
                        MessageBody::ReadIndexRequest(ReadIndexRequest { id }),
                    );
                    Ok(())
                }
                None => Err(ProposeError::NotLeader { leader: None }),
            },
        }
    }

    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, request: ReadIndexRequest) {
        if self.role == Role::Leader {
            self.leader_read(request.id, Some(from));
        } else {
            let response = ReadIndexResponse {
                id: request.id,
                index: None,
            };
            self.send(from, MessageBody::ReadIndexResponse(response));
        }
    }

    pub(crate) fn handle_read_index_response(&mut self, response: ReadIndexResponse) {
        match response.index {
            Some(index) => self.read_states.push(ReadState {
                id: response.id,
                index,
            }),
            None => self.failed_reads.push(response.id),
        }
    }

    fn leader_read(&mut self, id: u64, requester: Option<NodeId>) {
        #[cfg(feature = "fault-injection")]
        if self.config.faults.read_without_quorum {
            let index = self.log.commit;
            self.answer_read(id, requester, Some(index));
            return;
        }
        // Until an entry of this term commits, the leader's commit index may lag the true one.
        if !self.committed_in_current_term() {
            self.reads_awaiting_commit.push((id, requester));
            return;
        }
        let index = self.log.commit;
        if self.lease_valid() {
            self.answer_read(id, requester, Some(index));
            return;
        }
        let id_self = self.config.id;
        if self.membership.is_quorum(|node| node == id_self) {
            self.answer_read(id, requester, Some(index));
            return;
        }
        // Confirm leadership with a fresh heartbeat round: the next one, sent at the latest by
        // the next `ready`, so every read that arrives before it shares that one round.
        let sequence = self.heartbeat_sequence + 1;
        self.pending_reads.push(PendingRead {
            id,
            index,
            sequence,
            requester,
        });
    }

    /// Whether a read waits for a heartbeat round not sent yet, and none is on its way. Reads
    /// are pushed with the next round's sequence, so the last one tells.
    ///
    /// At most one round is in flight for reads: the reads that arrive while one is out wait
    /// for a quorum to acknowledge it and then share the next. Under load that is one round
    /// per round trip, however many cycles the leader runs meanwhile (each round is a message
    /// to and from every follower); an idle leader sends at once. A round that is never
    /// acknowledged (a lost follower) holds reads only until the next heartbeat tick sends
    /// one anyway.
    pub(crate) fn read_round_wanted(&self) -> bool {
        self.role == Role::Leader
            && self
                .pending_reads
                .last()
                .is_some_and(|read| read.sequence > self.heartbeat_sequence)
            && !self.read_round_out()
    }

    /// A round of this leadership is out and a quorum has not acknowledged it yet.
    fn read_round_out(&self) -> bool {
        self.heartbeat_sequence > self.leader_first_sequence
            && self.quorum_acknowledged_sequence() < self.heartbeat_sequence
    }

    pub(crate) fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.commit) == Some(self.term)
    }

    fn answer_read(&mut self, id: u64, requester: Option<NodeId>, index: Option<LogIndex>) {
        match (requester, index) {
            (None, Some(index)) => self.read_states.push(ReadState { id, index }),
            (None, None) => self.failed_reads.push(id),
            (Some(follower), index) => {
                let response = ReadIndexResponse { id, index };
                self.send(follower, MessageBody::ReadIndexResponse(response));
            }
        }
    }

    /// The highest heartbeat round a quorum has acknowledged.
    fn quorum_acknowledged_sequence(&self) -> u64 {
        let half = |voters: &std::collections::BTreeSet<NodeId>| -> u64 {
            if voters.is_empty() {
                return u64::MAX;
            }
            let mut acknowledged: Vec<u64> = voters
                .iter()
                .map(|id| self.progress.get(id).map_or(0, |p| p.acknowledged_sequence))
                .collect();
            acknowledged.sort_unstable_by(|a, b| b.cmp(a));
            acknowledged[voters.len() / 2]
        };
        half(&self.membership.voters).min(half(&self.membership.voters_outgoing))
    }

    /// Answers the reads a quorum has confirmed, and extends the lease.
    pub(crate) fn maybe_release_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let confirmed = self.quorum_acknowledged_sequence();
        self.maybe_extend_lease(confirmed);
        if self.pending_reads.is_empty() {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_reads)
            .into_iter()
            .partition(|r| r.sequence <= confirmed);
        self.pending_reads = waiting;
        for read in ready {
            self.answer_read(read.id, read.requester, Some(read.index));
        }
    }

    /// A quorum acknowledged the round sent at tick `t`: none of them will vote for anyone else
    /// before its own election timeout, which is at least `election_timeout_ticks` of its clock.
    /// Allowing for clocks that drift apart, the leader keeps the lease until
    /// `t + election_timeout_ticks * (1 - drift)`.
    fn maybe_extend_lease(&mut self, confirmed_sequence: u64) {
        let Some(lease) = self.config.lease else {
            return;
        };
        // The first round of the tick `confirmed_sequence` went out at (one entry per tick).
        let Some(sent_tick) = self
            .heartbeat_sent_ticks
            .range(..=confirmed_sequence)
            .next_back()
            .map(|(_, sent)| *sent)
        else {
            return;
        };
        let timeout = u64::from(self.config.election_timeout_ticks);
        let drift_ticks = (timeout * u64::from(lease.clock_drift_bound_ppm)).div_ceil(1_000_000);
        // Two ticks of slack: a tick is each clock's resolution, on the leader and the follower.
        let expiry = sent_tick + timeout.saturating_sub(drift_ticks + 2);
        self.lease_expiry_tick = self.lease_expiry_tick.max(expiry);
    }

    fn lease_valid(&self) -> bool {
        self.config.lease.is_some()
            && self.transfer_target.is_none()
            && self.ticks < self.lease_expiry_tick
    }

    /// Reads waiting for the first commit of the term go on once it happens.
    pub(crate) fn on_leader_commit(&mut self) {
        if self.reads_awaiting_commit.is_empty() || !self.committed_in_current_term() {
            return;
        }
        for (id, requester) in std::mem::take(&mut self.reads_awaiting_commit) {
            self.leader_read(id, requester);
        }
    }

    /// The node lost leadership: every read it was confirming fails.
    pub(crate) fn fail_pending_reads(&mut self) {
        let pending = std::mem::take(&mut self.pending_reads);
        let awaiting = std::mem::take(&mut self.reads_awaiting_commit);
        let reads = pending
            .into_iter()
            .map(|r| (r.id, r.requester))
            .chain(awaiting);
        for (id, requester) in reads {
            self.answer_read(id, requester, None);
        }
    }
}
