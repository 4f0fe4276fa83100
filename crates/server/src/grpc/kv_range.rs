//! KV.Range: linearizable by default (ReadIndex, which works on followers too), or from this
//! member's applied state when `serializable` is set. A serializable read stamped with
//! `chorus-min-revision` is admitted by `crate::follower_read` first (served at that revision
//! or later, by a member that is not lagging). Every answer carries `chorus-revision` and
//! `chorus-lag`.

use super::ServerState;
use crate::convert;
use crate::follower_read;
use chorus_proto::etcdserverpb as pb;
use prost::Message as _;
use tonic::{Request, Response, Status};

pub async fn range(
    state: &ServerState,
    request: Request<pb::RangeRequest>,
) -> Result<Response<pb::RangeResponse>, Status> {
    let message = request.get_ref();
    state.check_size(message.encoded_len())?;
    let linearizable = !message.serializable;
    if !linearizable {
        if let Some(requested) = follower_read::min_revision(request.metadata())? {
            state.follower_reads.admit(requested).await?;
        }
    }
    let range = convert::range_request(message);
    let (response, header) = state.group.range(range, linearizable).await?;
    let mut response = Response::new(convert::range_response(response, state.header(header)));
    state
        .follower_reads
        .stamp(response.metadata_mut(), header.revision);
    Ok(response)
}
