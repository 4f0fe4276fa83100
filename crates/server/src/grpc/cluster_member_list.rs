//! Cluster.MemberList: this member's copy of the replicated member table (names and client
//! URLs as the members published them).

use super::cluster_member_change::{header_info, pb_member_of};
use super::ServerState;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn member_list(
    state: &ServerState,
    _request: Request<pb::MemberListRequest>,
) -> Result<Response<pb::MemberListResponse>, Status> {
    let status = state.group.status().await?;
    let header = header_info(status.revision, status.term);
    let members = state
        .members
        .list()
        .into_iter()
        .map(|mut member| {
            // Until the leader records what a member announced, show what it told us.
            if member.client_urls.is_empty() {
                if let Some(announced) = state.members.announced(member.id) {
                    member.client_urls = announced.client_urls;
                }
            }
            pb_member_of(member)
        })
        .collect();
    Ok(Response::new(pb::MemberListResponse {
        header: Some(state.header(header)),
        members,
    }))
}
