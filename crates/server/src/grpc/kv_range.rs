//! KV.Range: linearizable by default (ReadIndex, which works on followers too), or from this
//! member's applied state when `serializable` is set.

use super::ServerState;
use crate::convert;
use chorus_proto::etcdserverpb as pb;
use prost::Message as _;
use tonic::{Request, Response, Status};

pub async fn range(
    state: &ServerState,
    request: Request<pb::RangeRequest>,
) -> Result<Response<pb::RangeResponse>, Status> {
    let message = request.get_ref();
    state.check_size(message.encoded_len())?;
    let range = convert::range_request(message);
    let (response, header) = state.group.range(range, !message.serializable).await?;
    Ok(Response::new(convert::range_response(
        response,
        state.header(header),
    )))
}
