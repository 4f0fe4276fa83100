//! chorus's Session service (`proto/chorus/session.proto`): open, keep alive and close the
//! client sessions a write names in its metadata. Open and close are proposed through raft on
//! the leader; a keep-alive needs the leader's clock. A follower forwards all three to the
//! leader.

use super::{forwarded_status, ServerState};
use crate::error::ServerError;
use chorus_proto::session as spb;
use chorus_proto::session::session_client::SessionClient;
use chorus_replica::{Command, CommandResponse};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The Session service.
pub struct SessionService(pub ServerState);

#[tonic::async_trait]
impl spb::session_server::Session for SessionService {
    async fn open(
        &self,
        request: Request<spb::OpenRequest>,
    ) -> Result<Response<spb::OpenResponse>, Status> {
        let state = &self.0;
        let requested = request.get_ref().ttl_seconds;
        if requested < 0 {
            return Err(Status::invalid_argument(
                "chorus: a session's ttl_seconds cannot be negative",
            ));
        }
        let command = Command::SessionOpen {
            ttl_seconds: if requested == 0 {
                state.sessions.ttl_default_seconds
            } else {
                requested
            },
            sessions_max: state.sessions.sessions_max,
        };
        match state.group.propose(command).await {
            Ok((
                CommandResponse::SessionOpened {
                    id, ttl_seconds, ..
                },
                header,
            )) => Ok(Response::new(spb::OpenResponse {
                header: Some(state.header(header)),
                id,
                ttl_seconds,
            })),
            Ok(_) => Err(Status::internal(
                "a session open answered as another command",
            )),
            Err(error @ ServerError::NotLeader { .. }) => {
                let mut leader = leader_session_client(state, &request, error)?;
                leader
                    .open(forwarded(request))
                    .await
                    .map_err(forwarded_status)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn keep_alive(
        &self,
        request: Request<spb::KeepAliveRequest>,
    ) -> Result<Response<spb::KeepAliveResponse>, Status> {
        let state = &self.0;
        let id = request.get_ref().id;
        match state.group.session_keep_alive(id).await {
            Ok((ttl_seconds, header)) => Ok(Response::new(spb::KeepAliveResponse {
                header: Some(state.header(header)),
                id,
                ttl_seconds,
            })),
            Err(error @ ServerError::NotLeader { .. }) => {
                let mut leader = leader_session_client(state, &request, error)?;
                leader
                    .keep_alive(forwarded(request))
                    .await
                    .map_err(forwarded_status)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn close(
        &self,
        request: Request<spb::CloseRequest>,
    ) -> Result<Response<spb::CloseResponse>, Status> {
        let state = &self.0;
        let command = Command::SessionClose {
            id: request.get_ref().id,
        };
        match state.group.propose(command).await {
            Ok((CommandResponse::SessionClosed { .. }, header)) => {
                Ok(Response::new(spb::CloseResponse {
                    header: Some(state.header(header)),
                }))
            }
            Ok(_) => Err(Status::internal(
                "a session close answered as another command",
            )),
            Err(error @ ServerError::NotLeader { .. }) => {
                let mut leader = leader_session_client(state, &request, error)?;
                leader
                    .close(forwarded(request))
                    .await
                    .map_err(forwarded_status)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The same message for the leader, marked forwarded.
fn forwarded<T>(request: Request<T>) -> Request<T> {
    super::forwarded(request.into_inner())
}

fn leader_session_client<T>(
    state: &ServerState,
    request: &Request<T>,
    error: ServerError,
) -> Result<SessionClient<Channel>, ServerError> {
    Ok(SessionClient::new(state.leader_channel(request, error)?))
}
