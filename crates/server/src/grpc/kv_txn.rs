//! KV.Txn: a transaction that writes is proposed through raft on the leader (a follower
//! forwards it to the leader). A read-only one (no put or delete on either branch, at any
//! depth) is served as a linearizable read, as etcd does: ReadIndex (on any member), then
//! evaluated on the applied state, without a log entry; or, stamped with
//! `chorus-min-revision` and made of serializable ranges only, as a follower read
//! (`crate::follower_read`).

use super::session_metadata::{forward_write, sessioned};
use super::{forwarded_status, ServerState};
use crate::convert;
use crate::error::ServerError;
use crate::follower_read;
use chorus_proto::etcdserverpb as pb;
use chorus_replica::command::TXN_DEPTH_MAX;
use chorus_replica::{Command, CommandResponse};
use prost::Message as _;
use tonic::{Request, Response, Status};

pub async fn txn(
    state: &ServerState,
    request: Request<pb::TxnRequest>,
) -> Result<Response<pb::TxnResponse>, Status> {
    state.check_size(request.get_ref().encoded_len())?;
    if convert::txn_depth_exceeds(request.get_ref(), TXN_DEPTH_MAX) {
        return Err(ServerError::TooDeep.into());
    }
    let txn = convert::txn_request(request.get_ref());
    if txn.is_read_only() {
        let stamp = follower_read::min_revision(request.metadata())?;
        if let Some(requested) =
            stamp.filter(|_| follower_read::is_serializable_txn(request.get_ref()))
        {
            state.follower_reads.admit(requested).await?;
            let (response, header) = state.group.local_read_txn(txn).await?;
            let mut response = Response::new(convert::txn_response(response, state.header(header)));
            state
                .follower_reads
                .stamp(response.metadata_mut(), header.revision);
            return Ok(response);
        }
        let (response, header) = state.group.read_txn(txn).await?;
        return Ok(Response::new(convert::txn_response(
            response,
            state.header(header),
        )));
    }
    let command = Command::Txn(txn);
    match state.group.propose(sessioned(&request, command)?).await {
        Ok((CommandResponse::Txn(response), header)) => Ok(Response::new(convert::txn_response(
            response,
            state.header(header),
        ))),
        Ok(_) => Err(Status::internal("a txn answered as another command")),
        Err(error @ ServerError::NotLeader { .. }) => {
            let mut leader = state.leader_client(&request, error)?;
            leader
                .txn(forward_write(request))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}
