//! The client's settings; every bound named, units last.

use std::time::Duration;

/// How a [`Client`](crate::Client) connects and retries.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` or `http://host:port`, tried in order, moving on after a failure.
    pub endpoints: Vec<String>,
    /// The whole budget of one call, retries included (a watch or keep-alive uses it for each
    /// reconnection).
    pub call_timeout: Duration,
    /// The longest one connection attempt may take.
    pub connect_timeout: Duration,
    /// The first delay between attempts; it doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The largest response accepted (a big range can be large; etcd's clients accept 2 GiB).
    pub response_bytes_max: usize,
    /// Whether writes go in a client session (retried safely, applied once) when the server
    /// offers sessions.
    pub sessions: bool,
    /// The session's time to live without writes or keep-alives (whole seconds).
    pub session_ttl: Duration,
    /// The longest one attempt of a write in a session waits before it is sent to the next
    /// endpoint (the cluster applies it once however often it is sent). Above the server's
    /// request timeout (7 s), so a member that is slow but working answers first.
    pub attempt_timeout: Duration,
    /// How [`Client::get`](crate::Client::get) reads: linearizable (the default) or from the
    /// nearest member with a version stamp ([`crate::ReadPolicy`]).
    pub read_policy: crate::ReadPolicy,
}

impl ClientConfig {
    /// The defaults for `endpoints`: 10 s per call, 2 s per connection, backoff from 50 ms to
    /// 1 s, responses up to 512 MiB, writes in a session of 60 s.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            response_bytes_max: 512 * 1024 * 1024,
            sessions: true,
            session_ttl: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(8),
            read_policy: crate::ReadPolicy::Linearizable,
        }
    }
}
