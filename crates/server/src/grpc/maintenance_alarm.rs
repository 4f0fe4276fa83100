//! Maintenance.Alarm: chorus raises no alarms yet (no backend quota), so GET answers an empty
//! list; activating or deactivating an alarm is not supported yet.

use super::ServerState;
use crate::group::HeaderInfo;
use chorus_proto::etcdserverpb as pb;
use pb::alarm_request::AlarmAction;
use tonic::{Request, Response, Status};

pub async fn alarm(
    state: &ServerState,
    request: Request<pb::AlarmRequest>,
) -> Result<Response<pb::AlarmResponse>, Status> {
    if AlarmAction::try_from(request.get_ref().action) != Ok(AlarmAction::Get) {
        return Err(Status::unimplemented(
            "chorus: activating or deactivating alarms is not implemented yet",
        ));
    }
    let status = state.group.status().await?;
    let header = HeaderInfo {
        revision: status.revision,
        raft_term: status.term,
    };
    Ok(Response::new(pb::AlarmResponse {
        header: Some(state.header(header)),
        alarms: Vec::new(),
    }))
}
