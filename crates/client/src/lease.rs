//! Leases: grant, revoke, time-to-live, list, and keep-alive (once, or a background task).

use crate::error::CallKind;
use crate::session::with_metadata;
use crate::{Client, Error};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::lease_client::LeaseClient;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Renewals a [`KeepAlive`] holds for a reader that has not taken them (newer ones are dropped
/// while it is full; the lease is renewed regardless).
const KEEP_ALIVE_RESPONSES_BUFFERED_MAX: usize = 16;
/// The shortest pause between two renewals.
const KEEP_ALIVE_INTERVAL_MIN: Duration = Duration::from_millis(500);

/// etcd's message for a lease that does not exist (or expired).
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// The pause between renewals of a lease whose time-to-live is `ttl_seconds`: a third of it,
/// so two renewals may fail before the lease expires.
pub fn keep_alive_interval(ttl_seconds: i64) -> Duration {
    let third_millis = u64::try_from(ttl_seconds.max(0))
        .unwrap_or(0)
        .saturating_mul(1000)
        / 3;
    Duration::from_millis(third_millis).max(KEEP_ALIVE_INTERVAL_MIN)
}

impl Client {
    fn lease_client(&self, channel: Channel) -> LeaseClient<Channel> {
        LeaseClient::new(channel).max_decoding_message_size(self.config().response_bytes_max)
    }

    /// Grants a lease of `ttl_seconds`; `id` 0 lets the server choose it. A write: retried
    /// only after failures that prove nothing was granted.
    pub async fn lease_grant(
        &self,
        ttl_seconds: i64,
        id: i64,
    ) -> Result<pb::LeaseGrantResponse, Error> {
        let request = pb::LeaseGrantRequest {
            ttl: ttl_seconds,
            id,
        };
        self.write(|channel, metadata| {
            let mut lease = self.lease_client(channel);
            let request = with_metadata(request, metadata);
            async move { lease.lease_grant(request).await }
        })
        .await
    }

    /// Revokes a lease, deleting its keys. A write.
    pub async fn lease_revoke(&self, id: i64) -> Result<pb::LeaseRevokeResponse, Error> {
        let request = pb::LeaseRevokeRequest { id };
        self.write(|channel, metadata| {
            let mut lease = self.lease_client(channel);
            let request = with_metadata(request, metadata);
            async move { lease.lease_revoke(request).await }
        })
        .await
    }

    /// A lease's remaining and granted time-to-live, with its keys if `keys`.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<pb::LeaseTimeToLiveResponse, Error> {
        let request = pb::LeaseTimeToLiveRequest { id, keys };
        self.call(CallKind::Read, |channel| {
            let mut lease = self.lease_client(channel);
            async move { lease.lease_time_to_live(request).await }
        })
        .await
    }

    /// Every lease.
    pub async fn leases(&self) -> Result<pb::LeaseLeasesResponse, Error> {
        self.call(CallKind::Read, |channel| {
            let mut lease = self.lease_client(channel);
            async move { lease.lease_leases(pb::LeaseLeasesRequest {}).await }
        })
        .await
    }

    /// Renews a lease once; fails with `etcdserver: requested lease not found` when it does
    /// not exist (any more). Idempotent, so retried like a read.
    pub async fn lease_keep_alive_once(
        &self,
        id: i64,
    ) -> Result<pb::LeaseKeepAliveResponse, Error> {
        let response = self
            .call(CallKind::Read, |channel| {
                let mut lease = self.lease_client(channel);
                async move {
                    let (requests, receiver) = mpsc::channel(1);
                    let _ = requests.try_send(pb::LeaseKeepAliveRequest { id });
                    let mut responses = lease
                        .lease_keep_alive(ReceiverStream::new(receiver))
                        .await?
                        .into_inner();
                    let answer = responses.message().await?;
                    drop(requests);
                    answer.map(tonic::Response::new).ok_or_else(|| {
                        tonic::Status::unavailable("the keep-alive stream ended without an answer")
                    })
                }
            })
            .await?;
        if response.ttl <= 0 {
            return Err(Error::Server {
                code: tonic::Code::NotFound,
                message: LEASE_NOT_FOUND.to_string(),
            });
        }
        Ok(response)
    }

    /// Keeps a lease alive in a background task until the returned handle is dropped. The
    /// first renewal happens before this returns, so a missing lease fails here.
    ///
    /// ```no_run
    /// # async fn example(client: chorus_client::Client) -> Result<(), chorus_client::Error> {
    /// let lease = client.lease_grant(10, 0).await?;
    /// let mut keep_alive = client.lease_keep_alive(lease.id).await?;
    /// while let Some(ttl) = keep_alive.next().await {
    ///     println!("lease {:x} renewed, ttl {}s", keep_alive.id(), ttl?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lease_keep_alive(&self, id: i64) -> Result<KeepAlive, Error> {
        let first = self.lease_keep_alive_once(id).await?;
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_RESPONSES_BUFFERED_MAX);
        let _ = sender.try_send(Ok(first.ttl));
        let client = self.clone();
        let task = tokio::spawn(async move {
            let mut ttl = first.ttl;
            loop {
                tokio::time::sleep(keep_alive_interval(ttl)).await;
                match client.lease_keep_alive_once(id).await {
                    Ok(response) => {
                        ttl = response.ttl;
                        let _ = sender.try_send(Ok(ttl));
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        Ok(KeepAlive {
            id,
            responses: receiver,
            task,
        })
    }
}

/// A lease kept alive by a background task; dropping the handle stops the renewals (the lease
/// then expires after its time-to-live unless revoked).
pub struct KeepAlive {
    id: i64,
    responses: mpsc::Receiver<Result<i64, Error>>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The time-to-live (seconds) of the next renewal; an error once renewing failed (the task
    /// has stopped then), `None` after that.
    pub async fn next(&mut self) -> Option<Result<i64, Error>> {
        self.responses.recv().await
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn renewals_come_every_third_of_the_ttl_but_not_too_often() {
        assert_eq!(keep_alive_interval(30), Duration::from_secs(10));
        assert_eq!(keep_alive_interval(1), KEEP_ALIVE_INTERVAL_MIN);
        assert_eq!(keep_alive_interval(0), KEEP_ALIVE_INTERVAL_MIN);
        assert_eq!(keep_alive_interval(-5), KEEP_ALIVE_INTERVAL_MIN);
        assert!(keep_alive_interval(i64::MAX) > Duration::from_secs(1_000_000));
    }
}
