//! Replication: proposals, appends, heartbeats, snapshots sent in chunks, and commit (Raft §5.3,
//! §5.4, §7).

use crate::error::{CompactError, ProposeError};
use crate::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, InstallSnapshot,
    InstallSnapshotResponse, MessageBody, Propose,
};
use crate::progress::{ReplicationState, SnapshotTransfer};
use crate::raft::{IncomingSnapshot, Raft};
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term};
use bytes::Bytes;

impl Raft {
    /// Proposes application data. Returns the index the entry will have; the entry is committed
    /// once it appears in `Ready::committed_entries` with this index and the current term.
    pub fn propose(&mut self, data: Bytes) -> Result<LogIndex, ProposeError> {
        self.check_can_propose(data.len())?;
        let index = self.append_entry(EntryPayload::Normal(data));
        self.appends_due = true;
        Ok(index)
    }

    /// A follower's proposal goes to the leader it knows, in a [`MessageBody::Propose`]: the
    /// leader appends it if it still leads in this term, else it is dropped silently (as a
    /// proposal to a leader that fails is). Nothing tells the follower the entry's index: the
    /// caller recognises its entry when applied (by an id inside the data). Returns the leader.
    ///
    /// Errors: [`ProposeError::NotLeader`] without a hint when no leader is known (or this node
    /// leads: propose instead), [`ProposeError::TooLarge`].
    pub fn forward_proposal(&mut self, data: Bytes) -> Result<NodeId, ProposeError> {
        let leader = match (self.role, self.leader) {
            (Role::Follower, Some(leader)) if leader != self.config.id => leader,
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: if self.role == Role::Leader {
                        Some(self.config.id)
                    } else {
                        None
                    },
                })
            }
        };
        if data.len() > self.config.proposal_bytes_max {
            return Err(ProposeError::TooLarge {
                size_bytes: data.len(),
                max_bytes: self.config.proposal_bytes_max,
            });
        }
        self.send(
            leader,
            MessageBody::Propose(Propose {
                entries: vec![data],
            }),
        );
        Ok(leader)
    }

    /// Proposals a follower forwarded: appended as the leader's own (each checked as
    /// [`Raft::propose`] checks it; one refused is dropped), in one append round.
    pub(crate) fn handle_forwarded_proposals(&mut self, propose: Propose) {
        let mut appended = false;
        for data in propose.entries {
            if self.check_can_propose(data.len()).is_ok() {
                self.append_entry(EntryPayload::Normal(data));
                appended = true;
            }
        }
        if appended {
            self.appends_due = true;
        }
    }

    /// Proposes many entries at once (one append round). Returns the index of the first.
    pub fn propose_batch(
        &mut self,
        batch: impl IntoIterator<Item = Bytes>,
    ) -> Result<LogIndex, ProposeError> {
        // Refused whole or taken whole: nothing is appended unless every entry is acceptable.
        let batch: Vec<Bytes> = batch.into_iter().collect();
        for data in &batch {
            self.check_can_propose(data.len())?;
        }
        let first = self.log.last_index().next();
        for data in batch {
            self.append_entry(EntryPayload::Normal(data));
        }
        self.appends_due = true;
        Ok(first)
    }

    /// Whether [`Raft::propose`] would take an entry of `size_bytes` now: the errors it would
    /// answer, without appending anything. A caller can ask before it encodes the entry.
    pub fn check_can_propose(&self, size_bytes: usize) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(to) = self.transfer_target {
            return Err(ProposeError::TransferInProgress { to });
        }
        if size_bytes > self.config.proposal_bytes_max {
            return Err(ProposeError::TooLarge {
                size_bytes,
                max_bytes: self.config.proposal_bytes_max,
            });
        }
        if self.uncommitted_bytes + size_bytes > self.config.uncommitted_bytes_max
            && self.uncommitted_bytes > 0
        {
            return Err(ProposeError::Backpressure {
                uncommitted_bytes: self.uncommitted_bytes,
                max_bytes: self.config.uncommitted_bytes_max,
            });
        }
        Ok(())
    }

    /// Appends an entry of the current term to the leader's log.
    pub(crate) fn append_entry(&mut self, payload: EntryPayload) -> LogIndex {
        assert_eq!(self.role, Role::Leader, "only a leader appends");
        let index = self.log.last_index().next();
        let entry = Entry {
            term: self.term,
            index,
            payload,
        };
        self.uncommitted_bytes += entry.size_bytes();
        self.log.append_new(entry);
        index
    }

    pub(crate) fn broadcast_append(&mut self) {
        for peer in self.peers() {
            self.send_appends(peer);
        }
        // A single voter commits on its own once the entry is durable (see `advance`).
    }

    /// Sends what the follower needs, as far as its window allows.
    pub(crate) fn send_appends(&mut self, to: NodeId) {
        loop {
            let Some(progress) = self.progress.get(&to) else {
                return;
            };
            if progress.is_paused(self.config.inflight_appends_max) {
                return;
            }
            let next = progress.next_index;
            let replicating = matches!(progress.state, ReplicationState::Replicate { .. });
            if next > self.log.last_index() && replicating {
                return;
            }
            let prev_index = next.prev();
            let Some(prev_term) = self.log.term(prev_index) else {
                self.start_snapshot_transfer(to);
                return;
            };
            let entries = self.log.slice(
                next,
                self.log.last_index().next(),
                self.config.append_bytes_max,
            );
            let last = entries.last().map_or(prev_index, |e| e.index);
            let append = AppendEntries {
                prev_log_index: prev_index,
                prev_log_term: prev_term,
                entries,
                leader_commit: self.log.commit,
            };
            let usable_commit = self.log.commit.min(last);
            self.send(to, MessageBody::AppendEntries(append));
            let Some(progress) = self.progress.get_mut(&to) else {
                return;
            };
            progress.on_append_sent(last);
            progress.commit_sent = progress.commit_sent.max(usable_commit);
            if !replicating {
                return;
            }
        }
    }

    fn start_snapshot_transfer(&mut self, to: NodeId) {
        if self.snapshot_data_released {
            // Asked of the driver; the transfer starts once it hands the data back.
            self.snapshot_data_wanted = true;
            return;
        }
        let Some(snapshot) = self.snapshot.clone() else {
            // The log was compacted by a snapshot we no longer hold: cannot happen, since
            // `compact` keeps the snapshot it compacts to.
            panic!(
                "log compacted to {} but no snapshot held",
                self.log.snapshot.last_index
            );
        };
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        progress.state = ReplicationState::Snapshot(SnapshotTransfer {
            meta: snapshot.meta,
            data: snapshot.data,
            acknowledged_bytes: 0,
            sent_tick: self.ticks,
        });
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes as u64;
        let ticks = self.ticks;
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        let ReplicationState::Snapshot(transfer) = &mut progress.state else {
            return;
        };
        transfer.sent_tick = ticks;
        let total = transfer.data.len() as u64;
        let offset = transfer.acknowledged_bytes.min(total);
        let end = (offset + chunk_bytes).min(total);
        let chunk = InstallSnapshot {
            meta: transfer.meta.clone(),
            offset,
            total_bytes: total,
            data: transfer.data.slice(offset as usize..end as usize),
        };
        self.send(to, MessageBody::InstallSnapshot(chunk));
    }

    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.heartbeat_sequence += 1;
        let sequence = self.heartbeat_sequence;
        if self.config.lease.is_some() {
            self.note_heartbeat_tick(sequence);
        }
        if let Some(own) = self.progress.get_mut(&self.config.id) {
            own.acknowledged_sequence = sequence;
        }
        for peer in self.peers() {
            let Some(progress) = self.progress.get(&peer) else {
                continue;
            };
            let commit = self.log.commit.min(progress.match_index);
            self.send(peer, MessageBody::Heartbeat(Heartbeat { commit, sequence }));
            if let Some(progress) = self.progress.get_mut(&peer) {
                progress.commit_sent = progress.commit_sent.max(commit);
            }
        }
        self.maybe_release_reads();
    }

    /// Remembers the tick round `sequence` went out at, for leases: only the first round of
    /// each tick (a busy leader sends a round per `ready`, thousands a second, and every round
    /// of one tick extends the lease alike), and only the ticks a lease could still be
    /// extended from, oldest dropped first. So the map holds a few dozen entries at most.
    fn note_heartbeat_tick(&mut self, sequence: u64) {
        let ticks = self.ticks;
        let new_tick = self
            .heartbeat_sent_ticks
            .last_key_value()
            .is_none_or(|(_, sent)| *sent < ticks);
        if new_tick {
            self.heartbeat_sent_ticks.insert(sequence, ticks);
        }
        let horizon = u64::from(self.config.election_timeout_ticks) * 2;
        while let Some(oldest) = self.heartbeat_sent_ticks.first_entry() {
            if ticks - *oldest.get() <= horizon {
                break;
            }
            oldest.remove();
        }
    }

    pub(crate) fn handle_append(&mut self, from: NodeId, mut append: AppendEntries) {
        if append.prev_log_index < self.log.commit {
            // Our log matches the leader's up to our commit: go on from there with what is new.
            let commit = self.log.commit;
            append.entries.retain(|e| e.index > commit);
            if append.entries.is_empty() {
                self.respond_append_accepted(from, commit);
                return;
            }
            append.prev_log_index = commit;
            append.prev_log_term = self.log.term(commit).unwrap_or_default();
        }
        if !self
            .log
            .matches(append.prev_log_index, append.prev_log_term)
        {
            let (hint_index, hint_term) =
                self.conflict_hint(append.prev_log_index, append.prev_log_term);
            let response = AppendEntriesResponse {
                index: append.prev_log_index,
                rejected: true,
                hint_index,
                hint_term,
            };
            self.send(from, MessageBody::AppendEntriesResponse(response));
            return;
        }
        let last_new = self.log.merge(append.prev_log_index, append.entries);
        self.advance_commit_to(append.leader_commit.min(last_new));
        self.respond_append_accepted(from, last_new);
    }

    fn respond_append_accepted(&mut self, to: NodeId, index: LogIndex) {
        let response = AppendEntriesResponse {
            index,
            rejected: false,
            hint_index: LogIndex(0),
            hint_term: Term(0),
        };
        self.send(to, MessageBody::AppendEntriesResponse(response));
    }

    /// Where the leader should probe next after a mismatch at (`index`, `term`): the last entry
    /// at or before `index` whose term is at most `term`, so whole terms are skipped at once.
    fn conflict_hint(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut probe = index.min(self.log.last_index());
        while probe > self.log.snapshot.last_index {
            match self.log.term(probe) {
                Some(t) if t <= term => return (probe, t),
                _ => probe = probe.prev(),
            }
        }
        (probe, self.log.term(probe).unwrap_or(Term(0)))
    }

    /// The last index at or before `index` whose term in our log is at most `term`.
    fn last_index_with_term_at_most(&self, index: LogIndex, term: Term) -> LogIndex {
        let mut probe = index.min(self.log.last_index());
        while probe > self.log.snapshot.last_index {
            match self.log.term(probe) {
                Some(t) if t <= term => return probe,
                _ => probe = probe.prev(),
            }
        }
        probe
    }

    pub(crate) fn handle_append_response(&mut self, from: NodeId, response: AppendEntriesResponse) {
        if self.role != Role::Leader {
            return;
        }
        let next_hint = if response.rejected {
            self.last_index_with_term_at_most(response.hint_index, response.hint_term)
                .next()
        } else {
            LogIndex(0)
        };
        let ticks = self.ticks;
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.last_heard_tick = ticks;
        if response.rejected {
            // Stale rejections (of an index already matched) are ignored.
            if response.index <= progress.match_index {
                return;
            }
            if let ReplicationState::Snapshot(_) = progress.state {
                return;
            }
            progress.next_index = next_hint
                .min(response.index)
                .max(progress.match_index.next());
            progress.state = ReplicationState::Probe { paused: false };
            self.send_appends(from);
            return;
        }
        let updated = progress.maybe_update(response.index);
        if let ReplicationState::Probe { .. } = progress.state {
            progress.become_replicate();
        }
        if updated {
            self.maybe_commit();
            self.maybe_finish_transfer(from);
        }
        // What the follower lacks goes out with this pass's `Ready`, in one append with the
        // entries proposed later in the pass and the commit index as it then stands (sent now
        // it would leave in the same `Ready` anyway, but as a second append for the rest).
        if self.role == Role::Leader {
            self.appends_due = true;
        }
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        self.advance_commit_to(heartbeat.commit);
        let response = HeartbeatResponse {
            sequence: heartbeat.sequence,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        self.send(from, MessageBody::HeartbeatResponse(response));
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, response: HeartbeatResponse) {
        if self.role != Role::Leader {
            return;
        }
        let ticks = self.ticks;
        let retransmit_ticks = u64::from(self.config.heartbeat_interval_ticks) * 2;
        let last_index = self.log.last_index();
        let follower_matches = self.log.matches(response.last_index, response.last_term);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.last_heard_tick = ticks;
        progress.acknowledged_sequence = progress.acknowledged_sequence.max(response.sequence);
        let mut updated = false;
        if follower_matches && !matches!(progress.state, ReplicationState::Snapshot(_)) {
            updated = progress.maybe_update(response.last_index);
        }
        let mut resend_chunk = false;
        match &mut progress.state {
            ReplicationState::Probe { paused } => *paused = false,
            ReplicationState::Replicate { inflight } => {
                // The follower's log ends before what we sent, or the window is stuck full:
                // appends were lost. Probe from what it matches (duplicates are harmless).
                let sent_last = progress.next_index.prev();
                if progress.match_index < sent_last
                    && (response.last_index < sent_last
                        || inflight.len() >= self.config.inflight_appends_max)
                {
                    progress.become_probe();
                }
            }
            ReplicationState::Snapshot(transfer) => {
                resend_chunk = ticks - transfer.sent_tick >= retransmit_ticks;
            }
        }
        if updated {
            self.maybe_commit();
            self.maybe_finish_transfer(from);
        }
        if resend_chunk {
            self.send_snapshot_chunk(from);
        } else if self
            .progress
            .get(&from)
            .is_some_and(|p| p.match_index < last_index)
        {
            self.send_appends(from);
        }
        self.maybe_release_reads();
    }

    pub(crate) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: InstallSnapshot) {
        if chunk.meta.last_index <= self.log.commit {
            // We have all of it already.
            self.respond_snapshot(from, self.log.commit, chunk.total_bytes, false);
            return;
        }
        let incoming = self
            .incoming_snapshot
            .get_or_insert_with(|| IncomingSnapshot {
                meta: chunk.meta.clone(),
                total_bytes: chunk.total_bytes,
                data: Vec::new(),
            });
        if incoming.meta != chunk.meta || incoming.total_bytes != chunk.total_bytes {
            if chunk.offset != 0 {
                let commit = self.log.commit;
                self.incoming_snapshot = None;
                self.respond_snapshot(from, commit, 0, true);
                return;
            }
            *incoming = IncomingSnapshot {
                meta: chunk.meta.clone(),
                total_bytes: chunk.total_bytes,
                data: Vec::new(),
            };
        }
        if chunk.offset == incoming.data.len() as u64
            && chunk.offset + chunk.data.len() as u64 <= incoming.total_bytes
        {
            incoming.data.extend_from_slice(&chunk.data);
        }
        let received = incoming.data.len() as u64;
        if received < incoming.total_bytes {
            // Only what is committed is known to match the leader: never our last index, which
            // may hold stale entries of an old term.
            self.respond_snapshot(from, self.log.commit, received, false);
            return;
        }
        let Some(incoming) = self.incoming_snapshot.take() else {
            return;
        };
        let meta = incoming.meta;
        let last_index = meta.last_index;
        self.install_snapshot(Snapshot {
            meta,
            data: Bytes::from(incoming.data),
        });
        self.respond_snapshot(from, last_index, received, false);
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.meta.clone();
        if self.log.matches(meta.last_index, meta.last_term) {
            // Our log already has the snapshot's last entry: keep the log, just commit to it.
            self.advance_commit_to(meta.last_index);
            return;
        }
        self.log.reset_to_snapshot(meta.clone());
        self.membership = meta.membership.clone();
        self.membership_history.clear();
        self.snapshot = Some(snapshot.clone());
        self.snapshot_data_released = false;
        self.snapshot_data_wanted = false;
        self.snapshot_to_install = Some(snapshot);
    }

    fn respond_snapshot(
        &mut self,
        to: NodeId,
        last_index: LogIndex,
        received: u64,
        rejected: bool,
    ) {
        let response = InstallSnapshotResponse {
            last_index,
            received_bytes: received,
            rejected,
        };
        self.send(to, MessageBody::InstallSnapshotResponse(response));
    }

    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        response: InstallSnapshotResponse,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let ticks = self.ticks;
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.last_heard_tick = ticks;
        let ReplicationState::Snapshot(transfer) = &mut progress.state else {
            return;
        };
        let total = transfer.data.len() as u64;
        if response.rejected {
            transfer.acknowledged_bytes = 0;
        } else if response.received_bytes >= total {
            // Installed (or not needed): `last_index` is the snapshot's or the follower's commit
            // index, both known to match our log.
            let matched = response.last_index.max(progress.match_index);
            progress.match_index = matched;
            progress.become_probe();
            progress.next_index = matched.next();
            self.maybe_commit();
            self.send_appends(from);
            return;
        } else {
            transfer.acknowledged_bytes = response.received_bytes;
        }
        self.send_snapshot_chunk(from);
    }

    /// Commits the highest index a quorum has durably, if it is of the current term (Raft §5.4.2:
    /// entries of earlier terms are committed only indirectly).
    pub(crate) fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let candidate = self.quorum_match_index();
        #[cfg(feature = "fault-injection")]
        let candidate = if self.config.faults.commit_without_majority {
            self.log.last_index()
        } else {
            candidate
        };
        if candidate > self.log.commit && self.log.term(candidate) == Some(self.term) {
            self.advance_commit_to(candidate);
            // Followers learn the new commit with this pass's `Ready`: in the append of what
            // they lack, or a heartbeat round (`commit_unannounced`) when they lack nothing.
            self.appends_due = true;
        }
    }

    /// The largest index that a majority of every half of the configuration has.
    fn quorum_match_index(&self) -> LogIndex {
        let half = |voters: &std::collections::BTreeSet<NodeId>| -> LogIndex {
            if voters.is_empty() {
                return LogIndex(u64::MAX);
            }
            let mut matched: Vec<LogIndex> = voters
                .iter()
                .map(|id| self.progress.get(id).map_or(LogIndex(0), |p| p.match_index))
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched[voters.len() / 2]
        };
        half(&self.membership.voters).min(half(&self.membership.voters_outgoing))
    }

    /// Moves the commit index forward (never back) and applies committed conf changes.
    pub(crate) fn advance_commit_to(&mut self, index: LogIndex) {
        let index = index.min(self.log.last_index());
        if index <= self.log.commit {
            return;
        }
        let old_commit = self.log.commit;
        self.log.commit = index;
        let newly = self.log.slice(old_commit.next(), index.next(), usize::MAX);
        for entry in &newly {
            if self.role == Role::Leader {
                self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(entry.size_bytes());
            }
            if let EntryPayload::ConfChange(change) = &entry.payload {
                let change = change.clone();
                self.apply_conf_change(entry.index, &change);
            }
        }
        if self.role == Role::Leader {
            self.on_leader_commit();
        }
    }

    /// What a snapshot up to `index` would say: its last term and the membership in force,
    /// while raft still holds the entry (`None` once compacted, or past the log). The driver
    /// writes a snapshot's file under this meta before [`Raft::compact`] (which gives the same).
    pub fn snapshot_meta_at(&self, index: LogIndex) -> Option<SnapshotMeta> {
        if index < self.log.snapshot.last_index {
            return None;
        }
        let last_term = self.log.term(index)?;
        Some(SnapshotMeta {
            last_index: index,
            last_term,
            membership: self.membership_at(index),
        })
    }

    /// The application has a snapshot of its state at `index` (which it has applied): raft drops
    /// the log up to it and sends the snapshot to followers that are too far behind. Returns the
    /// metadata the driver stores with the snapshot.
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<SnapshotMeta, CompactError> {
        if index > self.log.applied || index > self.log.persisted {
            return Err(CompactError::NotApplied {
                index: index.0,
                applied: self.log.applied.0,
            });
        }
        if index <= self.log.snapshot.last_index {
            return Err(CompactError::AlreadyCompacted {
                index: index.0,
                snapshot: self.log.snapshot.last_index.0,
            });
        }
        let Some(meta) = self.snapshot_meta_at(index) else {
            return Err(CompactError::NotApplied {
                index: index.0,
                applied: self.log.applied.0,
            });
        };
        self.log.compact(meta.clone());
        self.membership_history.retain(|(at, _)| *at > index);
        self.snapshot = Some(Snapshot {
            meta: meta.clone(),
            data,
        });
        self.snapshot_data_released = false;
        self.snapshot_data_wanted = false;
        Ok(meta)
    }

    /// Drops raft's copy of the latest snapshot's data, which the driver keeps durably: a
    /// snapshot of a large state machine then costs no memory until a follower needs it, when
    /// [`Raft::snapshot_data_wanted`] asks for it back. Transfers under way keep their copy.
    pub fn release_snapshot_data(&mut self) {
        if let Some(snapshot) = &mut self.snapshot {
            snapshot.data = Bytes::new();
            self.snapshot_data_released = true;
        }
    }

    /// The last index of the latest snapshot, when a follower needs its data and raft released
    /// it: the driver reads it back and calls [`Raft::provide_snapshot_data`].
    pub fn snapshot_data_wanted(&self) -> Option<LogIndex> {
        let snapshot = self.snapshot.as_ref()?;
        (self.snapshot_data_released && self.snapshot_data_wanted)
            .then_some(snapshot.meta.last_index)
    }

    /// Hands back the released data of the snapshot at `index` and starts the transfers that
    /// waited for it. Returns false, and changes nothing, for any other snapshot or when
    /// nothing was released.
    pub fn provide_snapshot_data(&mut self, index: LogIndex, data: Bytes) -> bool {
        let Some(snapshot) = &mut self.snapshot else {
            return false;
        };
        if !self.snapshot_data_released || snapshot.meta.last_index != index {
            return false;
        }
        snapshot.data = data;
        self.snapshot_data_released = false;
        self.snapshot_data_wanted = false;
        if self.role == Role::Leader {
            for peer in self.peers() {
                let behind = self.progress.get(&peer).is_some_and(|progress| {
                    !matches!(progress.state, ReplicationState::Snapshot(_))
                        && self.log.term(progress.next_index.prev()).is_none()
                });
                if behind {
                    self.send_appends(peer);
                }
            }
        }
        true
    }
}
