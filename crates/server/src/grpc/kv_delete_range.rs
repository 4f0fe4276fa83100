//! KV.DeleteRange: proposed through raft on the leader; a follower forwards it to the leader.

use super::session_metadata::{forward_write, sessioned};
use super::{forwarded_status, ServerState};
use crate::convert;
use crate::error::ServerError;
use chorus_proto::etcdserverpb as pb;
use chorus_replica::{Command, CommandResponse};
use prost::Message as _;
use tonic::{Request, Response, Status};

pub async fn delete_range(
    state: &ServerState,
    request: Request<pb::DeleteRangeRequest>,
) -> Result<Response<pb::DeleteRangeResponse>, Status> {
    state.check_size(request.get_ref().encoded_len())?;
    let command = Command::DeleteRange(convert::delete_range_request(request.get_ref()));
    match state.group.propose(sessioned(&request, command)?).await {
        Ok((CommandResponse::DeleteRange(response), header)) => Ok(Response::new(
            convert::delete_range_response(response, state.header(header)),
        )),
        Ok(_) => Err(Status::internal("a delete answered as another command")),
        Err(error @ ServerError::NotLeader { .. }) => {
            let mut leader = state.leader_client(&request, error)?;
            leader
                .delete_range(forward_write(request))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}
