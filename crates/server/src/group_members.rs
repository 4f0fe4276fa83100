//! Membership changes in the group task (etcd's Cluster service): the leader checks a request
//! against the replicated member table and raft's view of the peers, proposes it as a member
//! [`Command`], and — on every tick — brings raft's membership to the table's by joint
//! consensus (one conf change at a time; raft leaves the joint configuration by itself).
//!
//! Why the table leads and raft follows: a member command and its conf change are two log
//! entries; if a leader fails between them, the next leader sees the table and raft disagree
//! and finishes the change. Every member also follows the table: its transport connects to the
//! table's peers ([`crate::transport::PeerSender::set_peers`]), its [`Members`] (MemberList,
//! forwarding) is the table, and a member that is no longer in it stops.
//!
//! Names and client URLs: the leader records in the table what each member announced in its
//! peer hello (etcd's "publish"), so that `member list` shows them on every member.

use crate::config::{host_port, peer_member_id};
use crate::error::ServerError;
use crate::group::{Answer, GroupHandle, GroupInput, GroupTask};
use crate::members::Members;
use chorus_raft::{ConfChange, ConfChangeStep, NodeId, Role};
use chorus_replica::members::{MEMBER_STRING_BYTES_MAX, MEMBER_URLS_MAX};
use chorus_replica::{Command, CommandResponse, MemberError, MemberRecord, ReplicaError};
use std::collections::BTreeSet;
use tokio::sync::oneshot;

/// Ticks a member keeps running once the table no longer has it, so that the change it took
/// part in commits, its answer goes out, and — a removed leader — it can still vote while the
/// others, maybe unaware that leaving the joint configuration committed, elect a leader
/// (5 s at the default 100 ms tick: more than twice the default election timeout).
pub const REMOVED_STOP_TICKS: u64 = 50;
/// Ticks between the leader's checks of what the members announced (1 s at 100 ms).
pub const PUBLISH_EVERY_TICKS: u64 = 10;

/// A membership change a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Add {
        peer_urls: Vec<String>,
        is_learner: bool,
    },
    Remove {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    Promote {
        id: u64,
    },
}

/// What the group task keeps to follow the member table.
#[derive(Debug)]
pub struct MemberSync {
    members: Members,
    /// The table version last copied to `members` and the transport.
    seen_version: u64,
    /// Raft's members when the transport was last set: a member the table dropped keeps its
    /// connection while raft still has it (it must hear that the change committed).
    seen_raft_members: BTreeSet<NodeId>,
    /// The tick at which this member found itself out of the table.
    removed_at_tick: Option<u64>,
}

impl MemberSync {
    pub fn new(members: Members) -> MemberSync {
        MemberSync {
            members,
            seen_version: 0,
            seen_raft_members: BTreeSet::new(),
            removed_at_tick: None,
        }
    }
}

impl GroupHandle {
    /// Asks the leader's group task for a membership change; the answer is the applied member
    /// command's (`CommandResponse::Member`).
    pub async fn member_change(&self, change: MemberChange) -> Answer<CommandResponse> {
        let (reply, answer) = oneshot::channel();
        self.call_member(GroupInput::Member { change, reply }, answer)
            .await
    }

    async fn call_member(
        &self,
        input: GroupInput,
        answer: oneshot::Receiver<Answer<CommandResponse>>,
    ) -> Answer<CommandResponse> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        match tokio::time::timeout_at(deadline, self.sender.send(input)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ServerError::Stopped),
            Err(_) => return Err(ServerError::Timeout),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(value)) => value,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::Timeout),
        }
    }
}

impl GroupTask {
    /// A client's membership change: checked here on the leader, then proposed.
    pub(crate) fn handle_member_change(
        &mut self,
        change: MemberChange,
        reply: oneshot::Sender<Answer<CommandResponse>>,
    ) {
        match self.check_member_change(change) {
            Ok(command) => self.handle_propose(command, reply),
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn check_member_change(&self, change: MemberChange) -> Result<Command, ServerError> {
        let raft = self.replica.raft();
        if raft.role() != Role::Leader {
            return Err(ServerError::NotLeader {
                leader: raft.leader(),
            });
        }
        // Answers that depend only on the table (a URL in use, an unknown id) come first: they
        // hold whatever the cluster is doing; the rest waits until no change is under way.
        let settled = || {
            if self.membership_settled() {
                Ok(())
            } else {
                Err(ServerError::Unhealthy)
            }
        };
        let table = self.replica.members();
        let voters: Vec<u64> = table
            .members
            .values()
            .filter(|member| !member.is_learner)
            .map(|member| member.id)
            .collect();
        let started = |id: u64| {
            NodeId(id) == raft.id()
                || raft
                    .peer_progress(NodeId(id))
                    .is_some_and(|progress| progress.recently_active)
        };
        match change {
            MemberChange::Add {
                peer_urls,
                is_learner,
            } => {
                check_peer_urls(&peer_urls)?;
                let id = peer_member_id(&peer_urls).0;
                // Ids come from peer URLs: a URL in use is the more telling answer.
                if peer_urls.iter().any(|url| table.by_peer_url(url).is_some()) {
                    return Err(ServerError::Member(MemberError::PeerUrlExists));
                }
                if table.get(id).is_some() {
                    return Err(ServerError::Member(MemberError::IdExists));
                }
                settled()?;
                // etcd's strict check: with the new (not yet started) voter, the started
                // voters must still be a quorum.
                let started_voters = voters.iter().filter(|id| started(**id)).count();
                if !is_learner && started_voters < quorum(voters.len() + 1) {
                    return Err(ServerError::NotEnoughStartedMembers);
                }
                Ok(Command::MemberAdd(MemberRecord {
                    id,
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                    is_learner,
                }))
            }
            MemberChange::Remove { id } => {
                let member = table
                    .get(id)
                    .ok_or(ServerError::Member(MemberError::NotFound))?;
                settled()?;
                if !member.is_learner {
                    let remaining: Vec<u64> = voters
                        .iter()
                        .copied()
                        .filter(|other| *other != id)
                        .collect();
                    let started_remaining = remaining.iter().filter(|id| started(**id)).count();
                    if started_remaining < quorum(remaining.len()) {
                        return Err(ServerError::NotEnoughStartedMembers);
                    }
                }
                Ok(Command::MemberRemove { id })
            }
            MemberChange::Update { id, peer_urls } => {
                check_peer_urls(&peer_urls)?;
                if table.get(id).is_none() {
                    return Err(ServerError::Member(MemberError::NotFound));
                }
                let taken = peer_urls
                    .iter()
                    .filter_map(|url| table.by_peer_url(url))
                    .any(|owner| owner.id != id);
                if taken {
                    return Err(ServerError::Member(MemberError::PeerUrlExists));
                }
                settled()?;
                Ok(Command::MemberUpdate { id, peer_urls })
            }
            MemberChange::Promote { id } => {
                let member = table
                    .get(id)
                    .ok_or(ServerError::Member(MemberError::NotFound))?;
                if !member.is_learner {
                    return Err(ServerError::Member(MemberError::NotLearner));
                }
                settled()?;
                let caught_up = raft
                    .peer_progress(NodeId(id))
                    .is_some_and(|progress| progress.caught_up && progress.match_index.0 > 0);
                if !caught_up {
                    return Err(ServerError::LearnerNotReady);
                }
                Ok(Command::MemberPromote { id })
            }
        }
    }

    /// The steps that bring raft's membership to the table's: voters and learners added,
    /// learners promoted (once caught up), members not in the table removed.
    fn membership_steps(&self) -> Vec<ConfChangeStep> {
        let table = self.replica.members();
        let raft = self.replica.raft();
        let membership = raft.membership();
        let mut steps = Vec::new();
        if table.members.is_empty() {
            return steps;
        }
        for member in table.members.values() {
            let id = NodeId(member.id);
            if member.is_learner {
                if !membership.contains(id) {
                    steps.push(ConfChangeStep::AddLearner(id));
                }
            } else if !membership.voters.contains(&id) {
                let ready = !membership.learners.contains(&id)
                    || raft
                        .peer_progress(id)
                        .is_some_and(|progress| progress.caught_up);
                if ready {
                    steps.push(ConfChangeStep::AddVoter(id));
                }
            }
        }
        for id in membership.members() {
            if table.get(id.0).is_none() {
                steps.push(ConfChangeStep::Remove(id));
            }
        }
        steps
    }

    /// Whether raft's membership is the table's and no change is under way.
    fn membership_settled(&self) -> bool {
        !self.replica.raft().membership().is_joint() && self.membership_steps().is_empty()
    }

    /// Every tick: on the leader, one conf change toward the table (raft refuses it while
    /// another is pending) and, now and then, the names and client URLs members announced.
    pub(crate) fn tick_members(&mut self) {
        if self.members.is_none() || self.replica.raft().role() != Role::Leader {
            return;
        }
        if !self.replica.raft().membership().is_joint() {
            let steps = self.membership_steps();
            if !steps.is_empty() {
                let described = crate::group_events::describe_steps(&steps);
                match self.replica.propose_conf_change(ConfChange { steps }) {
                    Ok(index) => {
                        tracing::info!(
                            "raft membership change proposed at index {}: {described}",
                            index.0
                        )
                    }
                    Err(error) => tracing::debug!("membership change not proposed: {error}"),
                }
            }
        }
        if self.ticks.is_multiple_of(PUBLISH_EVERY_TICKS) {
            self.publish_announced();
        }
    }

    /// Proposes the name and client URLs of each member whose announcement differs from the
    /// table's record.
    fn publish_announced(&mut self) {
        let Some(sync) = &self.members else { return };
        let mut commands = Vec::new();
        for member in self.replica.members().members.values() {
            let Some(announced) = sync.members.announced(NodeId(member.id)) else {
                continue;
            };
            let within_bounds = announced.client_urls.len() <= MEMBER_URLS_MAX
                && announced.name.len() <= MEMBER_STRING_BYTES_MAX
                && announced
                    .client_urls
                    .iter()
                    .all(|url| url.len() <= MEMBER_STRING_BYTES_MAX);
            let differs =
                announced.name != member.name || announced.client_urls != member.client_urls;
            if within_bounds && differs {
                commands.push(Command::MemberPublish {
                    id: member.id,
                    name: announced.name,
                    client_urls: announced.client_urls,
                });
            }
        }
        for command in commands {
            if let Err(error) = self.replica.propose(&command) {
                tracing::debug!("member publish not proposed: {error}");
                break;
            }
        }
    }

    /// After every pass: copies a changed table to [`Members`] and the transport; stops the
    /// member ([`REMOVED_STOP_TICKS`] after) once the table no longer has it.
    pub(crate) fn sync_members(&mut self) -> Result<(), ReplicaError> {
        self.log_cluster_events();
        let Some(sync) = &mut self.members else {
            return Ok(());
        };
        let table = self.replica.members();
        let raft_members = self.replica.raft().membership().members();
        let table_changed = self.replica.members_version() != sync.seen_version;
        if (table_changed || raft_members != sync.seen_raft_members) && !table.members.is_empty() {
            let peers: Vec<(NodeId, String)> = table
                .members
                .values()
                .filter_map(|member| {
                    let url = member.peer_urls.first()?;
                    Some((NodeId(member.id), url.clone()))
                })
                .collect();
            let keep: Vec<NodeId> = raft_members.iter().copied().collect();
            self.peers.set_peers(&peers, &keep);
            sync.seen_raft_members = raft_members;
        }
        if table_changed {
            sync.seen_version = self.replica.members_version();
            if !table.members.is_empty() {
                sync.members.set_table(table);
            }
            let local = sync.members.local_id;
            let removed = !table.members.is_empty() && table.get(local.0).is_none();
            if removed && sync.removed_at_tick.is_none() {
                tracing::warn!(
                    "member {local} is no longer in the cluster's member table; stopping in \
                     {REMOVED_STOP_TICKS} ticks"
                );
                sync.removed_at_tick = Some(self.ticks);
            }
        }
        if let Some(at) = sync.removed_at_tick {
            if self.ticks >= at + REMOVED_STOP_TICKS {
                let reason = format!(
                    "member {:x} was removed from the cluster",
                    sync.members.local_id.0
                );
                tracing::error!("{reason}; stopping");
                return Err(ReplicaError::Stopped { reason });
            }
        }
        Ok(())
    }
}

/// A majority of `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Refuses peer URLs that are not `http://host:port`, or none.
fn check_peer_urls(peer_urls: &[String]) -> Result<(), ServerError> {
    if peer_urls.is_empty() {
        return Err(ServerError::BadPeerUrl("no peer URL given".to_string()));
    }
    for url in peer_urls {
        host_port(url).map_err(|error| ServerError::BadPeerUrl(error.0))?;
    }
    Ok(())
}
