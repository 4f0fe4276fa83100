//! Lease.LeaseGrant: proposed through raft on the leader (a follower forwards it). A TTL
//! shorter than the minimum is raised to it by the replica; the answer has the TTL granted.

use super::lease_forward::leader_lease_client;
use super::session_metadata::{forward_write, sessioned};
use super::{forwarded_status, ServerState};
use crate::error::ServerError;
use chorus_proto::etcdserverpb as pb;
use chorus_replica::{Command, CommandResponse, LEASE_TTL_SECONDS_MAX};
use prost::Message as _;
use tonic::{Request, Response, Status};

pub async fn lease_grant(
    state: &ServerState,
    request: Request<pb::LeaseGrantRequest>,
) -> Result<Response<pb::LeaseGrantResponse>, Status> {
    state.check_size(request.get_ref().encoded_len())?;
    let message = request.get_ref();
    // etcd refuses before proposing; the replica would refuse on apply anyway.
    if message.ttl > LEASE_TTL_SECONDS_MAX {
        return Err(ServerError::Mvcc(chorus_mvcc::Error::LeaseTtlTooLarge).into());
    }
    let command = Command::LeaseGrant {
        id: message.id,
        ttl_seconds: message.ttl,
    };
    match state.group.propose(sessioned(&request, command)?).await {
        Ok((
            CommandResponse::LeaseGrant {
                id, ttl_seconds, ..
            },
            header,
        )) => Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(state.header(header)),
            id,
            ttl: ttl_seconds,
            error: String::new(),
        })),
        Ok(_) => Err(Status::internal(
            "a lease grant answered as another command",
        )),
        Err(error @ ServerError::NotLeader { .. }) => {
            let mut leader = leader_lease_client(state, &request, error)?;
            leader
                .lease_grant(forward_write(request))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}
