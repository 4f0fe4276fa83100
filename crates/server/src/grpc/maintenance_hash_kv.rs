//! Maintenance.HashKV: a CRC-32C over this member's key-value history up to a revision
//! (`chorus_mvcc::Store::hash_kv`), with the compaction point and the revision hashed. Members
//! with the same applied state give the same hash for the same revision, which is what
//! `etcdctl endpoint hashkv` compares. Served from this member's applied state, as etcd does.

use super::ServerState;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn hash_kv(
    state: &ServerState,
    request: Request<pb::HashKvRequest>,
) -> Result<Response<pb::HashKvResponse>, Status> {
    let (hash, header) = state.group.hash_kv(request.get_ref().revision).await?;
    Ok(Response::new(pb::HashKvResponse {
        header: Some(state.header(header)),
        hash: hash.hash,
        compact_revision: hash.compact_revision,
        hash_revision: hash.hash_revision,
    }))
}
