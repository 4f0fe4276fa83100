//! Cluster.MemberUpdate: new peer URLs for a member (its id does not change); every member's
//! transport reconnects to the new URL.

use super::cluster_member_change::{pb_members, propose};
use super::{forwarded, forwarded_status, ServerState};
use crate::group_members::MemberChange;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn member_update(
    state: &ServerState,
    request: Request<pb::MemberUpdateRequest>,
) -> Result<Response<pb::MemberUpdateResponse>, Status> {
    let change = MemberChange::Update {
        id: request.get_ref().id,
        peer_urls: request.get_ref().peer_ur_ls.clone(),
    };
    match propose(state, &request, change).await {
        Ok((changed, header)) => Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(header),
            members: pb_members(&changed),
        })),
        Err(Ok(mut leader)) => leader
            .member_update(forwarded(request.into_inner()))
            .await
            .map_err(forwarded_status),
        Err(Err(error)) => Err(error.into()),
    }
}
