//! [`LeaseSession`]: a lease kept alive in the background for as long as its owner holds it,
//! the liveness that locks and elections hang on.

use super::error::{ConcurrencyError, SessionEnd};
use crate::{Client, Error, KeepAlive, LEASE_NOT_FOUND};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The time-to-live a session asks for when the caller has no preference (etcd's default).
pub const LEASE_SESSION_TTL_DEFAULT_SECONDS: i64 = 60;

/// Whether the session's lease is alive, as its keep-alive task last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Alive,
    Ended(SessionEnd),
}

/// A lease granted for a contender and renewed in the background (with the client's
/// [`KeepAlive`]) until [`close`](LeaseSession::close) or drop. Locks and elections made with
/// it write their keys with this lease, so they vanish when the session does.
///
/// Renewals that fail are retried until the time-to-live last granted has run out; then (or
/// as soon as the cluster says the lease is unknown) the session is lost:
/// [`done`](LeaseSession::done) resolves, and every lock or election of the session fails
/// with [`ConcurrencyError::SessionExpired`]. The time-to-live is counted from when a renewal's
/// answer arrives, so the session may learn of the loss a network delay after the cluster
/// expired the lease: fence writes ([`Mutex#fencing`](super::Mutex#fencing)) rather than trust
/// the timing.
///
/// Dropping the session stops the renewals without revoking: the lease, and every lock held
/// with it, ends after its time-to-live. [`close`](LeaseSession::close) revokes at once.
///
/// ```no_run
/// # async fn example(client: chorus_client::Client) -> Result<(), chorus_client::concurrency::ConcurrencyError> {
/// use chorus_client::concurrency::LeaseSession;
/// let session = LeaseSession::new(&client, 10).await?;
/// tokio::select! {
///     end = session.done() => println!("lease {:x} lost: {end}", session.lease_id()),
///     _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => session.close().await?,
/// }
/// # Ok(()) }
/// ```
pub struct LeaseSession {
    handle: SessionHandle,
    ttl_seconds: i64,
    state: watch::Sender<State>,
    task: JoinHandle<()>,
}

/// What a lock or an election keeps of its session: the client, the lease, and a view of
/// whether the lease is alive. It does not keep the lease alive.
#[derive(Clone, Debug)]
pub(crate) struct SessionHandle {
    pub(crate) client: Client,
    pub(crate) lease_id: i64,
    state: watch::Receiver<State>,
}

impl LeaseSession {
    /// Grants a lease of `ttl_seconds` (the server may raise it to its minimum) and starts
    /// keeping it alive.
    pub async fn new(client: &Client, ttl_seconds: i64) -> Result<LeaseSession, ConcurrencyError> {
        let granted = client.lease_grant(ttl_seconds, 0).await?;
        let session = LeaseSession::from_lease(client, granted.id).await;
        if session.is_err() {
            // Not kept alive, it would expire anyway; revoking frees it at once.
            let _ = client.lease_revoke(granted.id).await;
        }
        session
    }

    /// Keeps an existing lease alive as a session (its first renewal happens before this
    /// returns, so a lease that does not exist fails here).
    pub async fn from_lease(
        client: &Client,
        lease_id: i64,
    ) -> Result<LeaseSession, ConcurrencyError> {
        let keep_alive = client
            .lease_keep_alive(lease_id)
            .await
            .map_err(|error| session_error(lease_id, error))?;
        let time_to_live = client.lease_time_to_live(lease_id, false).await?;
        let ttl_seconds = time_to_live.granted_ttl;
        let (sender, receiver) = watch::channel(State::Alive);
        // Until the first renewal is read, the lease is known to last its granted time-to-live.
        let ttl = Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0));
        let task = tokio::spawn(keep_alive_task(
            client.clone(),
            keep_alive,
            ttl,
            sender.clone(),
        ));
        Ok(LeaseSession {
            handle: SessionHandle {
                client: client.clone(),
                lease_id,
                state: receiver,
            },
            ttl_seconds,
            state: sender,
            task,
        })
    }

    pub fn lease_id(&self) -> i64 {
        self.handle.lease_id
    }

    /// The time-to-live the lease was granted with, in seconds.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    pub fn client(&self) -> &Client {
        &self.handle.client
    }

    /// Why the session ended, or `None` while its lease is alive.
    pub fn ended(&self) -> Option<SessionEnd> {
        self.handle.ended()
    }

    /// Resolves once the session has ended (the lease lost, or the session closed).
    pub async fn done(&self) -> SessionEnd {
        self.handle.done().await
    }

    /// Stops the renewals and revokes the lease, deleting every key written with it (so every
    /// lock of the session is released, every candidacy resigned).
    pub async fn close(self) -> Result<(), ConcurrencyError> {
        self.task.abort();
        self.state.send_replace(State::Ended(SessionEnd::Closed));
        match self.handle.client.lease_revoke(self.handle.lease_id).await {
            Ok(_) => Ok(()),
            Err(error) if is_lease_not_found(&error) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }
}

impl Drop for LeaseSession {
    fn drop(&mut self) {
        self.task.abort();
        self.state.send_replace(State::Ended(SessionEnd::Closed));
    }
}

impl SessionHandle {
    pub(crate) fn ended(&self) -> Option<SessionEnd> {
        match &*self.state.borrow() {
            State::Alive if self.state.has_changed().is_err() => Some(SessionEnd::Closed),
            State::Alive => None,
            State::Ended(end) => Some(end.clone()),
        }
    }

    pub(crate) async fn done(&self) -> SessionEnd {
        let mut state = self.state.clone();
        loop {
            if let State::Ended(end) = &*state.borrow_and_update() {
                return end.clone();
            }
            if state.changed().await.is_err() {
                return SessionEnd::Closed;
            }
        }
    }

    /// `SessionExpired` if the session has ended.
    pub(crate) fn check_alive(&self) -> Result<(), ConcurrencyError> {
        match self.ended() {
            None => Ok(()),
            Some(reason) => Err(self.expired(reason)),
        }
    }

    pub(crate) fn expired(&self, reason: SessionEnd) -> ConcurrencyError {
        ConcurrencyError::SessionExpired {
            lease_id: self.lease_id,
            reason,
        }
    }
}

/// A client error, with "lease not found" meaning the session expired.
pub(crate) fn session_error(lease_id: i64, error: Error) -> ConcurrencyError {
    if is_lease_not_found(&error) {
        ConcurrencyError::SessionExpired {
            lease_id,
            reason: SessionEnd::Expired,
        }
    } else {
        error.into()
    }
}

pub(crate) fn is_lease_not_found(error: &Error) -> bool {
    matches!(error, Error::Server { message, .. } if message == LEASE_NOT_FOUND)
}

/// Follows the renewals; when they fail, starts a new keep-alive until the lease's last known
/// deadline passes. Sets the state once the lease is lost.
async fn keep_alive_task(
    client: Client,
    mut keep_alive: KeepAlive,
    ttl: Duration,
    state: watch::Sender<State>,
) {
    let lease_id = keep_alive.id();
    let mut deadline = Instant::now() + ttl;
    let mut last_failure;
    loop {
        // A renewal stuck in its retries must not outlive the lease: at the deadline the
        // session counts as lost, whatever the renewal still waits for.
        let next = tokio::select! {
            next = keep_alive.next() => next,
            () = tokio::time::sleep_until(deadline) => {
                state.send_replace(State::Ended(SessionEnd::KeepAliveFailed {
                    message: "no renewal within the lease's time-to-live".to_string(),
                }));
                return;
            }
        };
        match next {
            Some(Ok(ttl_seconds)) => {
                let ttl = Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0));
                deadline = Instant::now() + ttl;
                continue;
            }
            Some(Err(error)) if is_lease_not_found(&error) => {
                state.send_replace(State::Ended(SessionEnd::Expired));
                return;
            }
            Some(Err(error)) => last_failure = error.to_string(),
            None => last_failure = "the keep-alive task stopped".to_string(),
        }
        let mut backoff = client.backoff();
        keep_alive = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                state.send_replace(State::Ended(SessionEnd::KeepAliveFailed {
                    message: last_failure,
                }));
                return;
            }
            match tokio::time::timeout(remaining, client.lease_keep_alive(lease_id)).await {
                Ok(Ok(renewed)) => break renewed,
                Ok(Err(error)) if is_lease_not_found(&error) => {
                    state.send_replace(State::Ended(SessionEnd::Expired));
                    return;
                }
                Ok(Err(error)) => last_failure = error.to_string(),
                Err(_) => last_failure = "no renewal answered in time".to_string(),
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        };
    }
}
