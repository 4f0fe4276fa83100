//! Maintenance.Hash: etcd hashes its whole backend file; chorus answers the HashKV hash at the
//! current revision (every record held), which serves the same purpose (compare members at the
//! same applied state) but is not comparable with etcd's value.

use super::ServerState;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn hash(
    state: &ServerState,
    _request: Request<pb::HashRequest>,
) -> Result<Response<pb::HashResponse>, Status> {
    let (hash, header) = state.group.hash_kv(0).await?;
    Ok(Response::new(pb::HashResponse {
        header: Some(state.header(header)),
        hash: hash.hash,
    }))
}
