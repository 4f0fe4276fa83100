//! Lease.LeaseRevoke: proposed through raft on the leader (a follower forwards it); the keys
//! attached are deleted in one revision. An unknown lease is etcd's "requested lease not found".

use super::lease_forward::leader_lease_client;
use super::session_metadata::{forward_write, sessioned};
use super::{forwarded_status, ServerState};
use crate::error::ServerError;
use chorus_proto::etcdserverpb as pb;
use chorus_replica::{Command, CommandResponse};
use tonic::{Request, Response, Status};

pub async fn lease_revoke(
    state: &ServerState,
    request: Request<pb::LeaseRevokeRequest>,
) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
    let command = Command::LeaseRevoke {
        id: request.get_ref().id,
    };
    match state.group.propose(sessioned(&request, command)?).await {
        Ok((CommandResponse::LeaseRevoke { .. }, header)) => {
            Ok(Response::new(pb::LeaseRevokeResponse {
                header: Some(state.header(header)),
            }))
        }
        Ok(_) => Err(Status::internal(
            "a lease revoke answered as another command",
        )),
        Err(error @ ServerError::NotLeader { .. }) => {
            let mut leader = leader_lease_client(state, &request, error)?;
            leader
                .lease_revoke(forward_write(request))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}
