//! Cluster.MemberPromote: a learner whose log is close to the leader's becomes a voter.

use super::cluster_member_change::{pb_members, propose};
use super::{forwarded, forwarded_status, ServerState};
use crate::group_members::MemberChange;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn member_promote(
    state: &ServerState,
    request: Request<pb::MemberPromoteRequest>,
) -> Result<Response<pb::MemberPromoteResponse>, Status> {
    let change = MemberChange::Promote {
        id: request.get_ref().id,
    };
    match propose(state, &request, change).await {
        Ok((changed, header)) => Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(header),
            members: pb_members(&changed),
        })),
        Err(Ok(mut leader)) => leader
            .member_promote(forwarded(request.into_inner()))
            .await
            .map_err(forwarded_status),
        Err(Err(error)) => Err(error.into()),
    }
}
