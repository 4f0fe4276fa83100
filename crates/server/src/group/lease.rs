//! The lease requests the group task answers from the replica without going through raft:
//! keep-alive and time-to-live (the leader's lease clock; a follower refuses with the leader it
//! knows, and the gRPC layer forwards) and the list of leases (the applied state, any member).
//! Grants and revokes are commands proposed like writes ([`GroupHandle::propose`]).

use super::{GroupHandle, GroupInput, GroupTask, HeaderInfo};
use crate::error::ServerError;
use chorus_replica::{LeaseError, LeaseTimeToLive};
use tokio::sync::oneshot;

/// A lease request for the group task.
#[derive(Debug)]
pub enum LeaseInput {
    /// Restarts the lease's deadline on the leader; answers its TTL in seconds, 0 for a lease
    /// that does not exist or expired (etcd's answer).
    KeepAlive {
        id: i64,
        reply: oneshot::Sender<Result<(i64, HeaderInfo), ServerError>>,
    },
    /// The leader's view of the lease, with its keys if `keys`; `None` if it does not exist.
    TimeToLive {
        id: i64,
        keys: bool,
        reply: oneshot::Sender<Result<(Option<LeaseTimeToLive>, HeaderInfo), ServerError>>,
    },
    /// Every lease id of the applied state, increasing.
    Leases {
        reply: oneshot::Sender<(Vec<i64>, HeaderInfo)>,
    },
}

impl GroupHandle {
    /// One keep-alive of lease `id`: its TTL in seconds (0: no such lease). `NotLeader` on a
    /// follower.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<(i64, HeaderInfo), ServerError> {
        let (reply, answer) = oneshot::channel();
        let input = GroupInput::Lease(LeaseInput::KeepAlive { id, reply });
        self.call(input, answer).await?
    }

    /// What the leader says of lease `id` (`None`: no such lease). `NotLeader` on a follower.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<(Option<LeaseTimeToLive>, HeaderInfo), ServerError> {
        let (reply, answer) = oneshot::channel();
        let input = GroupInput::Lease(LeaseInput::TimeToLive { id, keys, reply });
        self.call(input, answer).await?
    }

    /// The ids of every lease this member has applied.
    pub async fn leases(&self) -> Result<(Vec<i64>, HeaderInfo), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.call(GroupInput::Lease(LeaseInput::Leases { reply }), answer)
            .await
    }
}

impl GroupTask {
    pub(super) fn handle_lease(&mut self, input: LeaseInput) {
        let header = self.header();
        match input {
            LeaseInput::KeepAlive { id, reply } => {
                let answer = match self.replica.lease_keep_alive(id) {
                    Ok(ttl_seconds) => Ok((ttl_seconds, header)),
                    Err(LeaseError::NotFound) => Ok((0, header)),
                    Err(error) => Err(ServerError::from(error)),
                };
                let _ = reply.send(answer);
            }
            LeaseInput::TimeToLive { id, keys, reply } => {
                let answer = match self.replica.lease_time_to_live(id, keys) {
                    Ok(time_to_live) => Ok((Some(time_to_live), header)),
                    Err(LeaseError::NotFound) => Ok((None, header)),
                    Err(error) => Err(ServerError::from(error)),
                };
                let _ = reply.send(answer);
            }
            LeaseInput::Leases { reply } => {
                let _ = reply.send((self.replica.leases(), header));
            }
        }
    }
}
