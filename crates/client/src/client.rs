//! [`Client`]: the endpoint list, one lazily made connection per endpoint, the retry loop every
//! unary call goes through, and the highest revision seen.

use crate::backoff::Backoff;
use crate::endpoint::endpoint_uri;
use crate::error::{classify, is_transport_failure, may_retry, CallKind, Failure};
use crate::header::HasHeader;
use crate::session::Sessions;
use crate::{ClientConfig, Error};
use chorus_proto::etcdserverpb as pb;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// How often an idle connection is pinged, and how long a ping may go unanswered before the
/// connection counts as broken (so a watch on a vanished member moves on).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of a chorus (or etcd) cluster. Cheap to clone: clones share the connections and
/// the revision seen.
///
/// Nothing connects until the first call. A call goes to the current endpoint; when that
/// fails in a way that is safe to retry (see [`crate::error`]) the call moves to the next
/// endpoint after a backoff, until [`ClientConfig::call_timeout`].
///
/// ```no_run
/// # async fn example() -> Result<(), chorus_client::Error> {
/// use chorus_client::{Client, Get, Put};
/// let client = Client::connect(["127.0.0.1:2379", "127.0.0.1:2381"])?;
/// client.put(Put::new("greeting", "hello")).await?;
/// let response = client.get(Get::key("greeting")).await?;
/// assert_eq!(&response.kvs[0].value[..], b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: ClientConfig,
    endpoints: Vec<Slot>,
    /// Index into `endpoints` of the one calls go to first.
    current: AtomicUsize,
    /// The highest revision seen in any response header.
    revision: AtomicI64,
    /// The session writes go in ([`crate::session`]).
    sessions: Sessions,
    /// Which endpoint leads, as write answers name it (`crate::leader`).
    leader: Mutex<crate::leader::LeaderHint>,
    /// Round-trip times per endpoint, for follower reads (`crate::read_policy`).
    nearest: Mutex<crate::nearest::Nearest>,
}

#[derive(Debug)]
struct Slot {
    /// As the user gave it.
    name: String,
    uri: String,
    channel: Mutex<Option<Channel>>,
}

impl Client {
    /// A client with the default [`ClientConfig`] for these endpoints.
    pub fn connect<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
    ) -> Result<Client, Error> {
        Client::new(ClientConfig::new(endpoints))
    }

    /// A client with `config`. Checks the endpoints; connects nothing yet.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|name| {
                Ok(Slot {
                    name: name.trim().to_string(),
                    uri: endpoint_uri(name)?,
                    channel: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                current: AtomicUsize::new(0),
                revision: AtomicI64::new(0),
                sessions: Sessions::default(),
                leader: Mutex::new(crate::leader::LeaderHint::default()),
                nearest: Mutex::new(crate::nearest::Nearest::new(endpoints.len())),
                endpoints,
            }),
        })
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .iter()
            .map(|slot| slot.name.clone())
            .collect()
    }

    /// The highest revision any response header carried so far (0 before the first).
    pub fn revision(&self) -> i64 {
        self.inner.revision.load(Ordering::Relaxed)
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// A handle that does not keep the client alive (for its background tasks).
    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(inner: &Weak<Inner>) -> Option<Client> {
        inner.upgrade().map(|inner| Client { inner })
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn observe(&self, header: Option<&pb::ResponseHeader>) {
        if let Some(header) = header {
            self.inner
                .revision
                .fetch_max(header.revision, Ordering::Relaxed);
        }
    }

    /// Runs `f` on the endpoints' round-trip times (a short critical section).
    pub(crate) fn nearest<T>(&self, f: impl FnOnce(&mut crate::nearest::Nearest) -> T) -> T {
        f(&mut lock(&self.inner.nearest))
    }

    pub(crate) fn endpoint_count(&self) -> usize {
        self.inner.endpoints.len()
    }

    pub(crate) fn endpoint_name(&self, index: usize) -> &str {
        &self.inner.endpoints[index].name
    }

    /// The endpoint calls go to first.
    pub(crate) fn current(&self) -> usize {
        self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len()
    }

    /// Moves on from `index` (unless another call already did).
    pub(crate) fn advance(&self, index: usize) {
        let next = (index + 1) % self.inner.endpoints.len();
        let _ =
            self.inner
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(
            self.inner.config.backoff_initial,
            self.inner.config.backoff_max,
        )
    }

    /// The connection to endpoint `index`, made now if there is none; an error means the
    /// connection could not be established, so nothing was sent.
    pub(crate) async fn channel(&self, index: usize, budget: Duration) -> Result<Channel, String> {
        let slot = &self.inner.endpoints[index];
        if let Some(channel) = lock(&slot.channel).clone() {
            return Ok(channel);
        }
        let endpoint = Endpoint::from_shared(slot.uri.clone())
            .map_err(|error| error_chain(&error))?
            .connect_timeout(self.inner.config.connect_timeout.min(budget))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = match tokio::time::timeout(budget, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => return Err(error_chain(&error)),
            Err(_) => return Err("connection timed out".to_string()),
        };
        *lock(&slot.channel) = Some(channel.clone());
        Ok(channel)
    }

    /// Forgets endpoint `index`'s connection (the next call makes a new one).
    pub(crate) fn drop_channel(&self, index: usize) {
        *lock(&self.inner.endpoints[index].channel) = None;
    }

    /// Runs `attempt` on the current endpoint, moving to the next one with a backoff after a
    /// failure that [`may_retry`] allows for `kind`, until the call timeout.
    pub(crate) async fn call<T, F, Fut>(&self, kind: CallKind, mut attempt: F) -> Result<T, Error>
    where
        T: HasHeader,
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let timeout = self.inner.config.call_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = self.backoff();
        let mut last_failure = String::from("no attempt finished");
        let writes = matches!(kind, CallKind::Write | CallKind::SessionWrite);
        let mut first_attempt = true;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Unavailable {
                    message: format!(
                        "no endpoint answered within {timeout:?}; last failure: {last_failure}"
                    ),
                });
            }
            let leader = if writes && first_attempt {
                lock(&self.inner.leader).leader_endpoint()
            } else {
                None
            };
            first_attempt = false;
            let index = leader.unwrap_or_else(|| self.current());
            let name = self.endpoint_name(index).to_string();
            match self.channel(index, remaining).await {
                Err(message) => last_failure = format!("{name}: {message}"),
                Ok(channel) => match tokio::time::timeout(
                    self.attempt_budget(kind, remaining),
                    attempt(channel),
                )
                .await
                {
                    Ok(Ok(response)) => {
                        let response = response.into_inner();
                        self.observe(response.header());
                        if writes {
                            self.note_leader(response.header());
                        }
                        return Ok(response);
                    }
                    Ok(Err(status)) => {
                        if is_transport_failure(&status) {
                            self.drop_channel(index);
                        }
                        let failure = classify(&status);
                        if !may_retry(kind, failure) {
                            return Err(final_error(failure, status));
                        }
                        last_failure = format!("{name}: {}", status.message());
                    }
                    Err(_) if kind == CallKind::SessionWrite && Instant::now() < deadline => {
                        // A write in a session may be sent again anywhere: leave a member that
                        // hangs (frozen, cut off) for the next one.
                        self.drop_channel(index);
                        last_failure = format!(
                            "{name} did not answer within {:?}",
                            self.inner.config.attempt_timeout
                        );
                    }
                    Err(_) => {
                        let message = format!("{name} did not answer within {timeout:?}");
                        return Err(match kind {
                            CallKind::Read => Error::Unavailable { message },
                            CallKind::Write | CallKind::SessionWrite => Error::OutcomeUnknown {
                                code: tonic::Code::DeadlineExceeded,
                                message,
                            },
                        });
                    }
                },
            }
            if leader.is_some() {
                lock(&self.inner.leader).forget_leader();
            } else {
                self.advance(index);
            }
            let delay = backoff
                .next_delay()
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(delay).await;
        }
    }
}

impl Client {
    /// A write was answered with `header`: its member is the leader. When its endpoint is not
    /// known, the member list is asked for in the background (the write is not held up).
    fn note_leader(&self, header: Option<&pb::ResponseHeader>) {
        let Some(header) = header else {
            return;
        };
        let list_now = lock(&self.inner.leader).note_leader(header.member_id, Instant::now());
        if !list_now {
            return;
        }
        let weak = self.downgrade();
        tokio::spawn(async move {
            let Some(client) = Client::upgrade(&weak) else {
                return;
            };
            let Ok(list) = client.member_list().await else {
                return;
            };
            let members: Vec<(u64, Vec<String>)> = list
                .members
                .into_iter()
                .map(|member| (member.id, member.client_ur_ls))
                .collect();
            let uris: Vec<String> = client
                .inner
                .endpoints
                .iter()
                .map(|slot| slot.uri.clone())
                .collect();
            lock(&client.inner.leader).learn_members(&members, &uris);
        });
    }

    /// How long one attempt of a call of `kind` may take: a write in a session moves on after
    /// [`ClientConfig::attempt_timeout`]; other calls keep their whole remaining budget (a read
    /// may be large; a plain write must not be sent twice).
    fn attempt_budget(&self, kind: CallKind, remaining: Duration) -> Duration {
        match kind {
            CallKind::SessionWrite => remaining.min(self.inner.config.attempt_timeout),
            CallKind::Read | CallKind::Write => remaining,
        }
    }
}

fn final_error(failure: Failure, status: Status) -> Error {
    match failure {
        Failure::Final => Error::from(status),
        Failure::NotApplied | Failure::MaybeApplied => Error::OutcomeUnknown {
            code: status.code(),
            message: crate::error::status_message(&status),
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// An error with its sources, `outer: inner: ...` (tonic's own message is only "transport
/// error").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors already print their source; say each part once.
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoints_and_bad_endpoints_are_refused_before_connecting() {
        assert_eq!(
            Client::connect(Vec::<String>::new()).unwrap_err(),
            Error::NoEndpoints
        );
        assert!(matches!(
            Client::connect(["https://a:1"]).unwrap_err(),
            Error::InvalidEndpoint { .. }
        ));
    }

    #[test]
    fn the_revision_seen_only_grows() {
        let client = Client::connect(["127.0.0.1:1"]).unwrap();
        let header = |revision| pb::ResponseHeader {
            revision,
            ..Default::default()
        };
        client.observe(Some(&header(7)));
        client.observe(Some(&header(3)));
        client.observe(None);
        assert_eq!(client.revision(), 7);
    }

    #[test]
    fn advancing_wraps_and_is_not_repeated_by_a_stale_caller() {
        let client = Client::connect(["a:1", "b:2", "c:3"]).unwrap();
        assert_eq!(client.current(), 0);
        client.advance(0);
        client.advance(0);
        assert_eq!(client.current(), 1);
        client.advance(1);
        client.advance(2);
        assert_eq!(client.current(), 0);
    }

    #[tokio::test]
    async fn a_call_with_nothing_listening_fails_within_its_timeout() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut config = ClientConfig::new([format!("127.0.0.1:{port}")]);
        config.call_timeout = Duration::from_millis(300);
        let client = Client::new(config).unwrap();
        let error = client.get(crate::Get::key("k")).await.unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        assert!(error.to_string().contains("Connection refused"), "{error}");
        // A write is retried after refused connections too (nothing was sent), and fails the
        // same way.
        let error = client.put(crate::Put::new("k", "v")).await.unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
    }
}
