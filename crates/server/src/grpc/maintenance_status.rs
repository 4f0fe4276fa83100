//! Maintenance.Status: this member's view: version, database size, leader, raft index and term;
//! `errors` lists the raised alarms, as etcd's (`etcdctl endpoint status` shows them).

use super::ServerState;
use crate::group::HeaderInfo;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

/// The etcd API version chorus speaks (what `etcdctl endpoint status` shows).
pub const ETCD_API_VERSION: &str = "3.5.0";

pub async fn status(
    state: &ServerState,
    _request: Request<pb::StatusRequest>,
) -> Result<Response<pb::StatusResponse>, Status> {
    let status = state.group.status().await?;
    let (alarms, _) = state.group.alarms().await?;
    let errors = alarms
        .iter()
        .map(|alarm| {
            let name = match alarm.alarm {
                chorus_replica::alarm::AlarmType::NoSpace => "NOSPACE",
                chorus_replica::alarm::AlarmType::Corrupt => "CORRUPT",
            };
            format!("memberID:{} alarm:{name}", alarm.member_id)
        })
        .collect();
    let database_bytes =
        std::fs::metadata(&state.database_path).map_or(0, |metadata| metadata.len());
    let database_bytes = i64::try_from(database_bytes).unwrap_or(i64::MAX);
    let header = HeaderInfo {
        revision: status.revision,
        raft_term: status.term,
        answered_as: None,
    };
    Ok(Response::new(pb::StatusResponse {
        header: Some(state.header(header)),
        version: ETCD_API_VERSION.to_string(),
        db_size: database_bytes,
        leader: status.leader.map_or(0, |leader| leader.0),
        raft_index: status.commit_index,
        raft_term: status.term,
        raft_applied_index: status.applied_index,
        errors,
        db_size_in_use: database_bytes,
        // From this member's copy of the replicated member table.
        is_learner: state
            .members
            .get(state.members.local_id)
            .is_some_and(|member| member.is_learner),
        storage_version: String::new(),
    }))
}
