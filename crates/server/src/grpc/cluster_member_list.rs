//! Cluster.MemberList: the static membership from `--initial-cluster`, with the client URLs
//! each member announced on its peer connection.

use super::ServerState;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn member_list(
    state: &ServerState,
    _request: Request<pb::MemberListRequest>,
) -> Result<Response<pb::MemberListResponse>, Status> {
    let status = state.group.status().await?;
    let header = crate::group::HeaderInfo {
        revision: status.revision,
        raft_term: status.term,
    };
    let members = state
        .members
        .list()
        .into_iter()
        .map(|member| pb::Member {
            id: member.id.0,
            name: member.name,
            peer_ur_ls: vec![member.peer_url],
            client_ur_ls: member.client_urls,
            is_learner: false,
        })
        .collect();
    Ok(Response::new(pb::MemberListResponse {
        header: Some(state.header(header)),
        members,
    }))
}
