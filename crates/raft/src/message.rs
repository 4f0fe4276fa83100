//! Peer messages: an enum of per-RPC structs, each carried in a [`Message`] envelope.

use crate::types::{Entry, GroupId, LogIndex, NodeId, SnapshotMeta, Term};
use bytes::Bytes;

/// A message between two members of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term. A receiver with a lower term adopts it (except for pre-votes).
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    RequestVote(RequestVote),
    RequestVoteResponse(RequestVoteResponse),
    AppendEntries(AppendEntries),
    AppendEntriesResponse(AppendEntriesResponse),
    Heartbeat(Heartbeat),
    HeartbeatResponse(HeartbeatResponse),
    InstallSnapshot(InstallSnapshot),
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// Sent by a leader transferring leadership: campaign now, without waiting for a timeout.
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of its client.
    ReadIndexRequest(ReadIndexRequest),
    ReadIndexResponse(ReadIndexResponse),
    /// A follower hands its clients' proposals to the leader ([`crate::Raft::forward_proposal`]):
    /// appended if the recipient still leads in this term, dropped otherwise.
    Propose(Propose),
}

impl MessageBody {
    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::RequestVote(v) if v.pre_vote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(v) if v.pre_vote => "PreVoteResp",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResp",
            MessageBody::AppendEntries(_) => "Append",
            MessageBody::AppendEntriesResponse(_) => "AppendResp",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResp",
            MessageBody::InstallSnapshot(_) => "Snapshot",
            MessageBody::InstallSnapshotResponse(_) => "SnapshotResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndexRequest(_) => "ReadIndex",
            MessageBody::ReadIndexResponse(_) => "ReadIndexResp",
            MessageBody::Propose(_) => "Propose",
        }
    }
}

/// A vote (or pre-vote) request. A pre-vote is sent with the term the candidate *would* have and
/// changes no state on the receiver (Raft thesis §9.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVote {
    pub pre_vote: bool,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
    /// Set when the campaign was started by a leadership transfer: receivers may grant it even
    /// though they heard from a leader recently.
    pub transfer: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVoteResponse {
    pub pre_vote: bool,
    pub granted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: Vec<Entry>,
    pub leader_commit: LogIndex,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntriesResponse {
    /// On success, the index of the last entry the follower now matches.
    /// On rejection, the `prev_log_index` that was rejected.
    pub index: LogIndex,
    pub rejected: bool,
    /// On rejection, where the leader should probe next: the follower's last index or the first
    /// index of the conflicting term (fast backtracking, Raft §5.3).
    pub hint_index: LogIndex,
    pub hint_term: Term,
}

/// Asserts leadership and carries the commit index; the `sequence` lets ReadIndex learn which
/// heartbeat round a majority has answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub commit: LogIndex,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub sequence: u64,
    /// The follower's last log entry. When the leader has the same entry, the logs match up to
    /// it (Log Matching), so a lost append acknowledgement is made good by the next heartbeat.
    pub last_index: LogIndex,
    pub last_term: Term,
}

/// One chunk of a snapshot. Chunks are sent in order; `offset` is where `data` starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub total_bytes: u64,
    pub data: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshotResponse {
    /// An index up to which the follower's log is known to match the leader's: the snapshot's
    /// last index once installed, else the follower's commit index.
    pub last_index: LogIndex,
    /// Bytes received so far; equal to the total once the snapshot is installed.
    pub received_bytes: u64,
    pub rejected: bool,
}

/// Entry payloads proposed through a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Propose {
    pub entries: Vec<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexRequest {
    pub id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexResponse {
    pub id: u64,
    /// `None` when the leader could not serve the read (it lost leadership, say); the follower
    /// reports the read as failed.
    pub index: Option<LogIndex>,
}
