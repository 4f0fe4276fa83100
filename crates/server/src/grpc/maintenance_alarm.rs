//! Maintenance.Alarm: GET lists the raised alarms from this member's applied state (the alarm
//! table is replicated, so every member lists the same once caught up); ACTIVATE and DEACTIVATE
//! go through raft as a `Command::Alarm` (a follower forwards them to the leader) and answer
//! the alarm that changed, as etcd does (`etcdctl alarm disarm` deactivates each listed alarm).

use super::{forwarded, forwarded_status, ServerState};
use crate::error::ServerError;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use chorus_replica::alarm::{AlarmAction as ReplicaAction, AlarmMember, AlarmType};
use chorus_replica::{Command, CommandResponse};
use pb::alarm_request::AlarmAction;
use tonic::{Request, Response, Status};

pub async fn alarm(
    state: &ServerState,
    request: Request<pb::AlarmRequest>,
) -> Result<Response<pb::AlarmResponse>, Status> {
    let message = request.get_ref();
    let action = match AlarmAction::try_from(message.action) {
        Ok(AlarmAction::Get) => {
            let (alarms, header) = state.group.alarms().await?;
            return Ok(Response::new(pb::AlarmResponse {
                header: Some(state.header(header)),
                alarms: alarms.iter().map(alarm_member).collect(),
            }));
        }
        Ok(AlarmAction::Activate) => ReplicaAction::Activate,
        Ok(AlarmAction::Deactivate) => ReplicaAction::Deactivate,
        Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
    };
    let Some(alarm) = AlarmType::from_code(message.alarm) else {
        // etcd stores nothing for NONE either: answer no alarm changed.
        let (_, header) = state.group.alarms().await?;
        return Ok(Response::new(pb::AlarmResponse {
            header: Some(state.header(header)),
            alarms: Vec::new(),
        }));
    };
    let command = Command::Alarm {
        action,
        alarm: AlarmMember {
            member_id: message.member_id,
            alarm,
        },
    };
    match state.group.propose(command).await {
        Ok((CommandResponse::Alarm { alarms, .. }, header)) => {
            Ok(Response::new(pb::AlarmResponse {
                header: Some(state.header(header)),
                alarms: alarms.iter().map(alarm_member).collect(),
            }))
        }
        Ok(_) => Err(Status::internal("an alarm answered as another command")),
        Err(error @ ServerError::NotLeader { .. }) => {
            let channel = state.leader_channel(&request, error)?;
            MaintenanceClient::new(channel)
                .alarm(forwarded(request.into_inner()))
                .await
                .map_err(forwarded_status)
        }
        Err(error) => Err(error.into()),
    }
}

fn alarm_member(alarm: &AlarmMember) -> pb::AlarmMember {
    pb::AlarmMember {
        member_id: alarm.member_id,
        alarm: i32::from(alarm.alarm.code()),
    }
}
