//! Lease clients to the leader, for a follower to forward lease requests (grants and revokes
//! are proposals only the leader makes; keep-alives and time-to-live need the leader's clock).

use super::{ServerState, FORWARDED_METADATA_KEY};
use crate::error::ServerError;
use chorus_proto::etcdserverpb::lease_client::LeaseClient;
use chorus_raft::NodeId;
use tonic::transport::Channel;
use tonic::Request;

/// A Lease client to the leader named by `error`; `error` itself is answered when it does not
/// name one, and "leader changed" when the request was already forwarded once.
pub fn leader_lease_client<T>(
    state: &ServerState,
    request: &Request<T>,
    error: ServerError,
) -> Result<LeaseClient<Channel>, ServerError> {
    let ServerError::NotLeader {
        leader: Some(leader),
    } = error
    else {
        return Err(error);
    };
    if request.metadata().contains_key(FORWARDED_METADATA_KEY) {
        return Err(ServerError::LeaderChanged);
    }
    lease_client(state, leader)
}

/// A Lease client to member `leader`'s client URL.
pub fn lease_client(
    state: &ServerState,
    leader: NodeId,
) -> Result<LeaseClient<Channel>, ServerError> {
    let channel = state.channel_to(leader)?;
    Ok(LeaseClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}
