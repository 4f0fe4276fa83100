//! Lease.LeaseTimeToLive: answered by the leader (its clock says what remains); a follower
//! forwards it. An unknown lease is not an error: TTL -1, as etcd answers.

use super::lease_forward::leader_lease_client;
use super::{forwarded, forwarded_status, ServerState};
use crate::error::ServerError;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn lease_time_to_live(
    state: &ServerState,
    request: Request<pb::LeaseTimeToLiveRequest>,
) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
    let message = request.get_ref();
    match state
        .group
        .lease_time_to_live(message.id, message.keys)
        .await
    {
        Ok((Some(lease), header)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: Some(state.header(header)),
            id: lease.id,
            ttl: lease.remaining_ttl_seconds,
            granted_ttl: lease.granted_ttl_seconds,
            keys: lease.keys.into_iter().map(bytes::Bytes::from).collect(),
        })),
        Ok((None, header)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: Some(state.header(header)),
            id: message.id,
            ttl: -1,
            ..pb::LeaseTimeToLiveResponse::default()
        })),
        Err(error @ ServerError::NotLeader { .. }) => {
            let mut leader = leader_lease_client(state, &request, error)?;
            leader
                .lease_time_to_live(forwarded(request.into_inner()))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}
