//! Maintenance.MoveLeader (`etcdctl move-leader`): on the leader, hands leadership to the target
//! (raft's transfer: the target is brought up to date, then told to campaign at once) and
//! answers once the target leads, or "etcdserver: request timed out, leader transfer took too
//! long". As etcd: a target that is not a voting member is "etcdserver: bad leader transferee",
//! and a member that is not the leader answers "etcdserver: not leader" (etcdctl sends the
//! request to the leader it finds among its endpoints).

use super::ServerState;
use crate::group_maintenance::MoveLeaderError;
use chorus_proto::etcdserverpb as pb;
use chorus_raft::NodeId;
use tonic::{Code, Request, Response, Status};

pub async fn move_leader(
    state: &ServerState,
    request: Request<pb::MoveLeaderRequest>,
) -> Result<Response<pb::MoveLeaderResponse>, Status> {
    let target = NodeId(request.get_ref().target_id);
    match state.group.move_leader(target).await {
        Ok(header) => Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(state.header(header)),
        })),
        Err(error) => Err(move_leader_status(error)),
    }
}

/// etcd's codes: FailedPrecondition for "not leader" and "bad leader transferee", Unavailable
/// for the transfer timeout.
fn move_leader_status(error: MoveLeaderError) -> Status {
    let message = error.to_string();
    match error {
        MoveLeaderError::NotLeader | MoveLeaderError::BadTransferee => {
            Status::new(Code::FailedPrecondition, message)
        }
        MoveLeaderError::TimedOut => Status::new(Code::Unavailable, message),
        MoveLeaderError::Server(error) => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_etcds_codes_and_messages() {
        let status = move_leader_status(MoveLeaderError::BadTransferee);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "etcdserver: bad leader transferee");
        let status = move_leader_status(MoveLeaderError::NotLeader);
        assert_eq!(status.message(), "etcdserver: not leader");
        let status = move_leader_status(MoveLeaderError::TimedOut);
        assert_eq!(status.code(), Code::Unavailable);
    }
}
