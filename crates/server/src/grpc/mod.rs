//! The etcd v3 gRPC services. One method per file; the service impls here only dispatch.
//! Implemented: KV (Range, Put, DeleteRange, Txn, Compact), Watch, Lease (Grant, Revoke,
//! KeepAlive, TimeToLive, Leases; a follower forwards grants, revokes and time-to-live to the
//! leader and relays keep-alive streams to it), Maintenance (Status, Alarm, Defragment as a
//! no-op, Hash, HashKV, Snapshot, MoveLeader), Cluster (MemberAdd, MemberRemove, MemberUpdate,
//! MemberPromote, MemberList). The other methods of these services answer `UNIMPLEMENTED`; the
//! Auth service is not served yet (gRPC answers `UNIMPLEMENTED` for it too).

mod cluster_member_add;
mod cluster_member_change;
mod cluster_member_list;
mod cluster_member_promote;
mod cluster_member_remove;
mod cluster_member_update;
mod kv_compact;
mod kv_delete_range;
mod kv_put;
mod kv_range;
mod kv_txn;
mod lease_forward;
mod lease_grant;
mod lease_keep_alive;
mod lease_leases;
mod lease_revoke;
mod lease_time_to_live;
mod maintenance_alarm;
mod maintenance_defragment;
mod maintenance_hash;
mod maintenance_hash_kv;
mod maintenance_move_leader;
mod maintenance_snapshot;
mod maintenance_status;
mod session;
pub(crate) mod session_metadata;
mod watch;

pub(crate) use maintenance_status::ETCD_API_VERSION;
pub use session::SessionService;

use crate::error::ServerError;
use crate::group::{GroupHandle, HeaderInfo};
use crate::members::Members;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::kv_client::KvClient;
use chorus_raft::NodeId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Metadata key marking a request a follower forwarded to the leader: a forwarded request is
/// never forwarded again (no loops while leadership moves).
pub const FORWARDED_METADATA_KEY: &str = "chorus-forwarded";

/// etcd's default interval of watch progress notifications: 10 minutes.
pub const WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT: std::time::Duration =
    std::time::Duration::from_secs(600);

/// Forwarded connections to one leader, at most this many cached.
const FORWARD_CHANNELS_MAX: usize = 64;

/// The client sessions' settings of this member, used when it leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// The TTL of a session opened without one.
    pub ttl_default_seconds: i64,
    /// Sessions open at once; more are refused ("too many sessions").
    pub sessions_max: u32,
}

/// The TTL of a session opened without one: 60 s.
pub const SESSION_TTL_SECONDS_DEFAULT: i64 = 60;
/// Sessions open at once by default.
pub const SESSIONS_MAX_DEFAULT: u32 = 10_000;

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            ttl_default_seconds: SESSION_TTL_SECONDS_DEFAULT,
            sessions_max: SESSIONS_MAX_DEFAULT,
        }
    }
}

/// What every service needs. Cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    pub group: GroupHandle,
    pub members: Members,
    pub request_bytes_max: usize,
    /// The key-value database file, for its size in `Status`.
    pub database_path: PathBuf,
    /// How often a watcher created with `progress_notify` gets a progress response when it
    /// had no events (etcd's default: [`WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT`]).
    pub watch_progress_notify_interval: std::time::Duration,
    /// What the Session service puts in the commands it proposes.
    pub sessions: SessionSettings,
    /// Admission of version-stamped follower reads (`crate::follower_read`).
    pub follower_reads: crate::follower_read::FollowerReads,
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
}

impl ServerState {
    pub fn new(
        group: GroupHandle,
        members: Members,
        request_bytes_max: usize,
        database_path: PathBuf,
    ) -> ServerState {
        ServerState {
            group,
            members,
            request_bytes_max,
            database_path,
            watch_progress_notify_interval: WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT,
            sessions: SessionSettings::default(),
            follower_reads: crate::follower_read::FollowerReads::detached(
                crate::follower_read::FollowerReadConfig::new(std::time::Duration::from_secs(1)),
            ),
            channels: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// etcd's response header for this member.
    pub fn header(&self, info: HeaderInfo) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.members.cluster_id(),
            member_id: info.answered_as.unwrap_or(self.members.local_id.0),
            revision: info.revision,
            raft_term: info.raft_term,
        }
    }

    /// Refuses a request larger than the limit, with etcd's error.
    pub fn check_size(&self, encoded_bytes: usize) -> Result<(), ServerError> {
        if encoded_bytes > self.request_bytes_max {
            return Err(ServerError::TooLarge);
        }
        Ok(())
    }

    /// A KV client to the leader, for a follower to forward a write; `error` is answered when
    /// the request was already forwarded once or the leader's client URL is not known.
    pub fn leader_client<T>(
        &self,
        request: &Request<T>,
        error: ServerError,
    ) -> Result<KvClient<Channel>, ServerError> {
        let ServerError::NotLeader {
            leader: Some(leader),
        } = error
        else {
            return Err(error);
        };
        if request.metadata().contains_key(FORWARDED_METADATA_KEY) {
            return Err(ServerError::LeaderChanged);
        }
        let channel = self.channel_to(leader)?;
        Ok(KvClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// A channel to the leader, for a follower to forward a non-KV request; `error` as in
    /// [`ServerState::leader_client`].
    pub(crate) fn leader_channel<T>(
        &self,
        request: &Request<T>,
        error: ServerError,
    ) -> Result<Channel, ServerError> {
        let ServerError::NotLeader {
            leader: Some(leader),
        } = error
        else {
            return Err(error);
        };
        if request.metadata().contains_key(FORWARDED_METADATA_KEY) {
            return Err(ServerError::LeaderChanged);
        }
        self.channel_to(leader)
    }

    pub(crate) fn channel_to(&self, leader: NodeId) -> Result<Channel, ServerError> {
        let url = self
            .members
            .client_url(leader)
            .ok_or(ServerError::NotLeader { leader: None })?;
        let mut channels = match self.channels.lock() {
            Ok(channels) => channels,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(channel) = channels.get(&url) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|error| ServerError::Forward(error.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(self.group.request_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        if channels.len() >= FORWARD_CHANNELS_MAX {
            channels.clear();
        }
        channels.insert(url, channel.clone());
        Ok(channel)
    }
}

/// The leader's answer to a forwarded request, as the client should see it: etcd's own errors
/// pass through; a leader that could not be reached at all is "no leader" (nothing was sent);
/// one that failed during the request (it died) is etcd's "leader changed", which clients
/// retry.
pub fn forwarded_status(status: Status) -> Status {
    let message = status.message();
    if message.starts_with("etcdserver:") || message.starts_with("mvcc:") {
        return status;
    }
    // A connection that could not be made carried nothing: the write was certainly not
    // applied, so answer "no leader" (which clients retry as not applied) instead of "leader
    // changed" (which a careful client must treat as "maybe applied").
    if status.code() == tonic::Code::Unavailable && never_connected(&status) {
        return ServerError::NotLeader { leader: None }.into();
    }
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            ServerError::LeaderChanged.into()
        }
        tonic::Code::DeadlineExceeded => ServerError::Timeout.into(),
        _ => status,
    }
}

/// Whether a transport failure happened while connecting (nothing was sent).
fn never_connected(status: &Status) -> bool {
    let mut text = status.message().to_ascii_lowercase();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        text.push_str(&error.to_string().to_ascii_lowercase());
        source = error.source();
    }
    text.contains("tcp connect error")
        || text.contains("error trying to connect")
        || text.contains("connection refused")
}

/// The request, marked as forwarded, for the leader.
pub fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_METADATA_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

/// The KV service.
pub struct KvService(pub ServerState);

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        kv_range::range(&self.0, request).await
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        kv_put::put(&self.0, request).await
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        kv_delete_range::delete_range(&self.0, request).await
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        kv_txn::txn(&self.0, request).await
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        kv_compact::compact(&self.0, request).await
    }
}

/// The Watch service: one task per stream.
pub struct WatchService {
    pub state: ServerState,
    next_stream: std::sync::atomic::AtomicU64,
}

impl WatchService {
    pub fn new(state: ServerState) -> WatchService {
        WatchService {
            state,
            next_stream: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = watch::WatchStream;

    async fn watch(
        &self,
        request: Request<tonic::Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = self
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        watch::watch(&self.state, stream, request).await
    }
}

/// The Lease service.
pub struct LeaseService(pub ServerState);

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        lease_grant::lease_grant(&self.0, request).await
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        lease_revoke::lease_revoke(&self.0, request).await
    }

    type LeaseKeepAliveStream = lease_keep_alive::LeaseKeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<tonic::Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        lease_keep_alive::lease_keep_alive(&self.0, request).await
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        lease_time_to_live::lease_time_to_live(&self.0, request).await
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        lease_leases::lease_leases(&self.0, request).await
    }
}

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!("chorus: {method} is not implemented yet"))
}

/// The Maintenance service: Status, Alarm, Defragment (a no-op), Hash, HashKV, Snapshot,
/// MoveLeader; Downgrade is not served.
pub struct MaintenanceService(pub ServerState);

type SnapshotStream = maintenance_snapshot::SnapshotStream;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        maintenance_alarm::alarm(&self.0, request).await
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        maintenance_status::status(&self.0, request).await
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        maintenance_defragment::defragment(&self.0, request).await
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        maintenance_hash::hash(&self.0, request).await
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        maintenance_hash_kv::hash_kv(&self.0, request).await
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        maintenance_snapshot::snapshot(&self.0, request).await
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        maintenance_move_leader::move_leader(&self.0, request).await
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}

/// The Cluster service: membership changes through the replicated member table.
pub struct ClusterService(pub ServerState);

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        cluster_member_add::member_add(&self.0, request).await
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        cluster_member_remove::member_remove(&self.0, request).await
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        cluster_member_update::member_update(&self.0, request).await
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        cluster_member_list::member_list(&self.0, request).await
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        cluster_member_promote::member_promote(&self.0, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_out_of_reach_reads_as_no_leader_a_broken_call_as_leader_changed() {
        let unreachable = Status::unavailable("error trying to connect: connection refused");
        assert_eq!(
            forwarded_status(unreachable).message(),
            "etcdserver: no leader"
        );
        let broken = Status::unavailable("connection reset");
        assert_eq!(
            forwarded_status(broken).message(),
            "etcdserver: leader changed"
        );
        let compacted = Status::out_of_range("mvcc: required revision has been compacted");
        assert_eq!(
            forwarded_status(compacted).message(),
            "mvcc: required revision has been compacted"
        );
        let no_leader = Status::unavailable("etcdserver: no leader");
        assert_eq!(
            forwarded_status(no_leader).message(),
            "etcdserver: no leader"
        );
    }
}
