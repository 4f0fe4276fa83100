//! Lease.LeaseLeases: every lease this member has applied (as etcd, from the local state, on
//! any member).

use super::ServerState;
use chorus_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

pub async fn lease_leases(
    state: &ServerState,
    _request: Request<pb::LeaseLeasesRequest>,
) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
    let (ids, header) = state.group.leases().await?;
    Ok(Response::new(pb::LeaseLeasesResponse {
        header: Some(state.header(header)),
        leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
    }))
}
