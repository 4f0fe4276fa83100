//! Maintenance.Defragment: answers without doing anything (the redb database reuses its free
//! pages; there is nothing to defragment yet).

use super::ServerState;
use crate::group::HeaderInfo;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn defragment(
    state: &ServerState,
    _request: Request<pb::DefragmentRequest>,
) -> Result<Response<pb::DefragmentResponse>, Status> {
    let status = state.group.status().await?;
    let header = HeaderInfo {
        revision: status.revision,
        raft_term: status.term,
        answered_as: None,
    };
    Ok(Response::new(pb::DefragmentResponse {
        header: Some(state.header(header)),
    }))
}
