//! KV.Compact: a compaction is a replicated command; a follower forwards it to the leader.
//! `physical` is accepted: the answer comes once the compaction is applied on the leader.

use super::session_metadata::{forward_write, sessioned};
use super::{forwarded_status, ServerState};
use crate::error::ServerError;
use crate::group::HeaderInfo;
use chorus_proto::etcdserverpb as pb;
use chorus_replica::{Command, CommandResponse};
use tonic::{Request, Response, Status};

pub async fn compact(
    state: &ServerState,
    request: Request<pb::CompactionRequest>,
) -> Result<Response<pb::CompactionResponse>, Status> {
    let command = Command::Compact {
        revision: request.get_ref().revision,
    };
    match state.group.propose(sessioned(&request, command)?).await {
        Ok((CommandResponse::Compact { revision }, header)) => {
            let header = HeaderInfo { revision, ..header };
            Ok(Response::new(pb::CompactionResponse {
                header: Some(state.header(header)),
            }))
        }
        Ok(_) => Err(Status::internal("a compaction answered as another command")),
        Err(error @ ServerError::NotLeader { .. }) => {
            let mut leader = state.leader_client(&request, error)?;
            leader
                .compact(forward_write(request))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}
