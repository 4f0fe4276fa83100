//! Cluster.MemberRemove: the member leaves the table, then raft's membership (a joint
//! configuration, left by itself); the removed member stops.

use super::cluster_member_change::{pb_members, propose};
use super::{forwarded, forwarded_status, ServerState};
use crate::group_members::MemberChange;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn member_remove(
    state: &ServerState,
    request: Request<pb::MemberRemoveRequest>,
) -> Result<Response<pb::MemberRemoveResponse>, Status> {
    let change = MemberChange::Remove {
        id: request.get_ref().id,
    };
    match propose(state, &request, change).await {
        Ok((changed, header)) => Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(header),
            members: pb_members(&changed),
        })),
        Err(Ok(mut leader)) => leader
            .member_remove(forwarded(request.into_inner()))
            .await
            .map_err(forwarded_status),
        Err(Err(error)) => Err(error.into()),
    }
}
