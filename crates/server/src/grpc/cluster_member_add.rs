//! Cluster.MemberAdd: a voter or a learner with the given peer URLs; its id is the hash of
//! its peer URLs (`config::peer_member_id`), which the new member computes too when it
//! starts with `--initial-cluster-state existing`.

use super::cluster_member_change::{pb_member, pb_members, propose};
use super::{forwarded, forwarded_status, ServerState};
use crate::group_members::MemberChange;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn member_add(
    state: &ServerState,
    request: Request<pb::MemberAddRequest>,
) -> Result<Response<pb::MemberAddResponse>, Status> {
    let change = MemberChange::Add {
        peer_urls: request.get_ref().peer_ur_ls.clone(),
        is_learner: request.get_ref().is_learner,
    };
    match propose(state, &request, change).await {
        Ok((changed, header)) => Ok(Response::new(pb::MemberAddResponse {
            header: Some(header),
            member: Some(pb_member(&changed.member)),
            members: pb_members(&changed),
        })),
        Err(Ok(mut leader)) => leader
            .member_add(forwarded(request.into_inner()))
            .await
            .map_err(forwarded_status),
        Err(Err(error)) => Err(error.into()),
    }
}
