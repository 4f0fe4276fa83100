//! Client sessions: every write carries (session id, sequence, acknowledged), so a write whose
//! outcome is unknown can be sent again and the cluster applies it once (the idempotent
//! receiver; `proto/chorus/session.proto`).
//!
//! The session is opened on the first write and kept alive in the background at a third of its
//! time to live. Against a server without chorus's `Session` service (etcd) the client writes
//! without one, as before: such a write whose outcome is unknown is reported, not retried.
//!
//! The bookkeeping ([`SessionBook`]) is pure and unit-tested: sequences are handed out in
//! order, and the acknowledged watermark is one below the oldest write still waiting for its
//! answer, so the cluster drops a stored response only once its write has been answered.

use crate::error::CallKind;
use crate::lease::keep_alive_interval;
use crate::{Client, Error};
use chorus_proto::session as spb;
use chorus_proto::session::session_client::SessionClient;
use chorus_proto::session_metadata;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Writes a session may have waiting for their answers; more wait for a slot. The server keeps
/// at most this many unacknowledged responses per session (its `SESSION_RESPONSES_MAX`).
pub const SESSION_WRITES_IN_FLIGHT_MAX: usize = 1024;

/// Where the client is with its session.
#[derive(Debug, Default)]
pub(crate) enum SessionBook {
    /// No session yet (or the last one ended): the next write opens one.
    #[default]
    Unopened,
    /// The server does not serve sessions (an etcd endpoint): writes go without one.
    Unsupported,
    Open(OpenSession),
}

/// An open session's numbering.
///
/// # Invariants
/// - Every sequence in `waiting` is below `next_sequence`, and none is 0.
#[derive(Debug)]
pub(crate) struct OpenSession {
    pub id: u64,
    next_sequence: u64,
    /// Sequences sent and not yet answered to the caller.
    waiting: BTreeSet<u64>,
}

/// One write's place in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub session: u64,
    pub sequence: u64,
}

impl OpenSession {
    pub fn new(id: u64) -> OpenSession {
        OpenSession {
            id,
            next_sequence: 1,
            waiting: BTreeSet::new(),
        }
    }

    /// A new sequence for a write; it waits until [`OpenSession::answered`].
    pub fn issue(&mut self) -> Ticket {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.waiting.insert(sequence);
        Ticket {
            session: self.id,
            sequence,
        }
    }

    /// The write was answered to the caller (or given up): its response may be forgotten.
    pub fn answered(&mut self, sequence: u64) {
        self.waiting.remove(&sequence);
    }

    /// Every sequence at or below this one has been answered.
    pub fn acknowledged(&self) -> u64 {
        match self.waiting.first() {
            Some(oldest) => oldest - 1,
            None => self.next_sequence - 1,
        }
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}

/// The metadata of a write sent under `ticket` with `acknowledged`.
pub(crate) fn session_metadata(ticket: Ticket, acknowledged: u64) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert(session_metadata::ID, MetadataValue::from(ticket.session));
    metadata.insert(
        session_metadata::SEQUENCE,
        MetadataValue::from(ticket.sequence),
    );
    metadata.insert(
        session_metadata::ACKNOWLEDGED,
        MetadataValue::from(acknowledged),
    );
    metadata
}

/// `message` as a request with `metadata`.
pub(crate) fn with_metadata<T>(message: T, metadata: MetadataMap) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata;
    request
}

/// Whether the cluster refused a write because its session is gone.
fn is_session_gone(error: &Error) -> bool {
    matches!(error, Error::Server { message, .. }
        if message.starts_with(session_metadata::NOT_FOUND_MESSAGE))
}

/// The shared session state of a client and its clones.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    book: Mutex<SessionBook>,
    /// Serializes opening, so concurrent first writes share one session.
    opening: tokio::sync::Mutex<()>,
    /// Bounds the writes waiting in the session.
    slots: SlotCount,
}

#[derive(Debug)]
struct SlotCount(tokio::sync::Semaphore);

impl Default for SlotCount {
    fn default() -> SlotCount {
        SlotCount(tokio::sync::Semaphore::new(SESSION_WRITES_IN_FLIGHT_MAX))
    }
}

impl Client {
    fn session_client(&self, channel: Channel) -> SessionClient<Channel> {
        SessionClient::new(channel).max_decoding_message_size(self.config().response_bytes_max)
    }

    /// A write: inside the session when the server has sessions (retried after any transient
    /// failure, applied once), else a plain write ([`CallKind::Write`]). `attempt` sends the
    /// request with the metadata it is given.
    pub(crate) async fn write<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        T: crate::HasHeader,
        F: FnMut(Channel, MetadataMap) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        if !self.config().sessions {
            return self
                .call(CallKind::Write, |channel| {
                    attempt(channel, MetadataMap::new())
                })
                .await;
        }
        let sessions = self.sessions();
        let _slot = sessions
            .slots
            .0
            .acquire()
            .await
            .map_err(|_| Error::InvalidArgument("the client's session was shut".into()))?;
        // A refusal for a gone session proves the write was not applied, so it is sent once
        // more in a new session; a second refusal is the answer.
        for _ in 0..2 {
            let Some(ticket) = self.session_ticket().await? else {
                return self
                    .call(CallKind::Write, |channel| {
                        attempt(channel, MetadataMap::new())
                    })
                    .await;
            };
            let attempts = AtomicUsize::new(0);
            let result = self
                .call(CallKind::SessionWrite, |channel| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let acknowledged = self.session_acknowledged(ticket);
                    attempt(channel, session_metadata(ticket, acknowledged))
                })
                .await;
            self.session_answered(ticket);
            match result {
                Err(error) if is_session_gone(&error) => {
                    self.session_gone(ticket.session);
                    if attempts.load(Ordering::Relaxed) > 1 {
                        // An earlier attempt may have been applied before the session ended.
                        return Err(Error::OutcomeUnknown {
                            code: error.code(),
                            message: error.to_string(),
                        });
                    }
                }
                other => return other,
            }
        }
        Err(Error::Unavailable {
            message: "the cluster ended two new sessions before a write could be sent".into(),
        })
    }

    /// The session id the client's writes go in now, if one is open.
    pub fn session_id(&self) -> Option<u64> {
        match &*lock(&self.sessions().book) {
            SessionBook::Open(open) => Some(open.id),
            _ => None,
        }
    }

    /// Closes the client's session, if it has one (its stored responses are dropped; the next
    /// write opens a new one). A session not closed expires after its time to live.
    pub async fn close_session(&self) -> Result<(), Error> {
        let id = {
            let mut book = lock(&self.sessions().book);
            match &*book {
                SessionBook::Open(open) => {
                    let id = open.id;
                    *book = SessionBook::Unopened;
                    id
                }
                SessionBook::Unopened | SessionBook::Unsupported => return Ok(()),
            }
        };
        let request = spb::CloseRequest { id };
        let closed = self
            .call(CallKind::Write, |channel| {
                let mut session = self.session_client(channel);
                async move { session.close(request).await }
            })
            .await;
        match closed {
            Err(error) if is_session_gone(&error) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// A ticket in the open session, opening one first if needed; `None` when the server has
    /// no sessions.
    async fn session_ticket(&self) -> Result<Option<Ticket>, Error> {
        let sessions = self.sessions();
        if let Some(ticket) = issue(&sessions.book) {
            return Ok(ticket);
        }
        let _opening = sessions.opening.lock().await;
        if let Some(ticket) = issue(&sessions.book) {
            return Ok(ticket);
        }
        let ttl_seconds = i64::try_from(self.config().session_ttl.as_secs()).unwrap_or(i64::MAX);
        let request = spb::OpenRequest { ttl_seconds };
        let opened = self
            .call(CallKind::Write, |channel| {
                let mut session = self.session_client(channel);
                async move { session.open(request).await }
            })
            .await;
        let response = match opened {
            Ok(response) => response,
            Err(Error::Server {
                code: Code::Unimplemented,
                ..
            }) => {
                *lock(&sessions.book) = SessionBook::Unsupported;
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        *lock(&sessions.book) = SessionBook::Open(OpenSession::new(response.id));
        self.spawn_session_keep_alive(response.id, response.ttl_seconds);
        Ok(issue(&sessions.book).flatten())
    }

    fn session_acknowledged(&self, ticket: Ticket) -> u64 {
        match &*lock(&self.sessions().book) {
            SessionBook::Open(open) if open.id == ticket.session => open.acknowledged(),
            // The session ended meanwhile: the write will be refused whatever this says.
            _ => ticket.sequence - 1,
        }
    }

    fn session_answered(&self, ticket: Ticket) {
        if let SessionBook::Open(open) = &mut *lock(&self.sessions().book) {
            if open.id == ticket.session {
                open.answered(ticket.sequence);
            }
        }
    }

    /// The cluster says session `id` is gone: the next write opens a new one.
    fn session_gone(&self, id: u64) {
        let mut book = lock(&self.sessions().book);
        if matches!(&*book, SessionBook::Open(open) if open.id == id) {
            *book = SessionBook::Unopened;
        }
    }

    /// Keeps session `id` alive until it ends or every clone of the client is dropped.
    fn spawn_session_keep_alive(&self, id: u64, ttl_seconds: i64) {
        let weak: Weak<crate::client::Inner> = self.downgrade();
        let interval = keep_alive_interval(ttl_seconds);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(client) = Client::upgrade(&weak) else {
                    return;
                };
                if client.session_id() != Some(id) {
                    return;
                }
                let request = spb::KeepAliveRequest { id };
                let kept = client
                    .call(CallKind::Read, |channel| {
                        let mut session = client.session_client(channel);
                        async move { session.keep_alive(request).await }
                    })
                    .await;
                if let Err(error) = kept {
                    if is_session_gone(&error) {
                        client.session_gone(id);
                        return;
                    }
                    // Unreachable for now: the next round tries again; a write also keeps
                    // the session alive.
                }
            }
        });
    }
}

/// A ticket from an open book; `Some(None)` when the server has no sessions; `None` when a
/// session must be opened first.
fn issue(book: &Mutex<SessionBook>) -> Option<Option<Ticket>> {
    match &mut *lock(book) {
        SessionBook::Open(open) => Some(Some(open.issue())),
        SessionBook::Unsupported => Some(None),
        SessionBook::Unopened => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_issued_in_order_and_never_reused() {
        let mut open = OpenSession::new(7);
        let tickets: Vec<Ticket> = (0..3).map(|_| open.issue()).collect();
        assert_eq!(
            tickets.iter().map(|t| t.sequence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(tickets.iter().all(|t| t.session == 7));
        open.answered(2);
        assert_eq!(open.issue().sequence, 4);
    }

    #[test]
    fn the_acknowledged_watermark_stays_below_the_oldest_unanswered_write() {
        let mut open = OpenSession::new(1);
        assert_eq!(open.acknowledged(), 0);
        let (a, b, c) = (open.issue(), open.issue(), open.issue());
        assert_eq!(open.acknowledged(), 0);
        open.answered(b.sequence);
        open.answered(c.sequence);
        // 1 is still waiting: 2 and 3 are answered but must not be acknowledged past it.
        assert_eq!(open.acknowledged(), 0);
        open.answered(a.sequence);
        assert_eq!(open.acknowledged(), 3);
        assert_eq!(open.in_flight(), 0);
        let d = open.issue();
        assert_eq!(open.acknowledged(), 3);
        open.answered(d.sequence);
        assert_eq!(open.acknowledged(), 4);
    }

    #[test]
    fn metadata_carries_the_three_numbers() {
        let metadata = session_metadata(
            Ticket {
                session: 42,
                sequence: 9,
            },
            8,
        );
        let get = |key| metadata.get(key).unwrap().to_str().unwrap().to_string();
        assert_eq!(get(session_metadata::ID), "42");
        assert_eq!(get(session_metadata::SEQUENCE), "9");
        assert_eq!(get(session_metadata::ACKNOWLEDGED), "8");
    }

    #[tokio::test]
    async fn closing_without_a_session_sends_nothing_and_returns() {
        let client = Client::connect(["127.0.0.1:1"]).unwrap();
        let closed =
            tokio::time::timeout(std::time::Duration::from_secs(5), client.close_session());
        assert_eq!(closed.await.expect("no wait"), Ok(()));
        assert_eq!(client.session_id(), None);
    }

    #[test]
    fn only_the_not_found_refusal_means_the_session_is_gone() {
        let gone = Error::Server {
            code: Code::FailedPrecondition,
            message: format!(
                "{} (expired or closed)",
                session_metadata::NOT_FOUND_MESSAGE
            ),
        };
        assert!(is_session_gone(&gone));
        let other = Error::Server {
            code: Code::FailedPrecondition,
            message: "etcdserver: key not found".into(),
        };
        assert!(!is_session_gone(&other));
    }
}
