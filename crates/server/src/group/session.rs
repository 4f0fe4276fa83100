//! The session request the group task answers without going through raft: a keep-alive,
//! which restarts the session's deadline on the leader's clock (a follower refuses with the
//! leader it knows, and the gRPC layer forwards). Opening and closing are proposals.

use super::{GroupHandle, GroupInput, GroupTask, HeaderInfo};
use crate::error::ServerError;
use tokio::sync::oneshot;

/// A keep-alive of session `id`: its TTL in seconds.
#[derive(Debug)]
pub struct SessionKeepAlive {
    pub id: u64,
    pub reply: oneshot::Sender<Result<(i64, HeaderInfo), ServerError>>,
}

impl GroupHandle {
    /// One keep-alive of session `id`: its TTL in seconds. `NotLeader` on a follower; the
    /// session table's refusal for a session that does not exist.
    pub async fn session_keep_alive(&self, id: u64) -> Result<(i64, HeaderInfo), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.call(
            GroupInput::SessionKeepAlive(SessionKeepAlive { id, reply }),
            answer,
        )
        .await?
    }
}

impl GroupTask {
    pub(super) fn handle_session_keep_alive(&mut self, input: SessionKeepAlive) {
        let header = self.header();
        let answer = self
            .replica
            .session_keep_alive(input.id)
            .map(|ttl_seconds| (ttl_seconds, header))
            .map_err(ServerError::from);
        let _ = input.reply.send(answer);
    }
}
