//! Watches that survive a lost member: the watcher remembers the revision it needs next and,
//! when its stream breaks, creates the watch again on another endpoint from that revision, so
//! no event is lost or repeated.

use crate::error::{classify, is_transport_failure, Failure};
use crate::kv::KeyRange;
use crate::{Client, Error};
use bytes::Bytes;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::watch_client::WatchClient;
use chorus_proto::mvccpb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Requests queued to one watch stream (the create, then nothing: one watch per stream).
const WATCH_REQUESTS_BUFFERED_MAX: usize = 4;

/// The message etcd's clients show for a watch canceled by compaction.
const COMPACTED_MESSAGE: &str = "etcdserver: mvcc: required revision has been compacted";

/// What to watch (etcd's `WatchCreateRequest`).
///
/// ```
/// use chorus_client::Watch;
/// let watch = Watch::key("jobs/").prefix().start_revision(42).prev_kv();
/// assert_eq!(&watch.into_request().range_end[..], b"jobs0");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Watch {
    range: KeyRange,
    start_revision: i64,
    prev_kv: bool,
}

impl Watch {
    pub fn key(key: impl Into<Vec<u8>>) -> Watch {
        Watch::range(KeyRange::key(key))
    }

    pub fn range(range: KeyRange) -> Watch {
        Watch {
            range,
            ..Watch::default()
        }
    }

    /// Every key starting with this key.
    pub fn prefix(mut self) -> Watch {
        self.range = KeyRange::prefix(std::mem::take(&mut self.range.key));
        self
    }

    /// Every key from this key on.
    pub fn from_key(mut self) -> Watch {
        self.range = KeyRange::from_key(std::mem::take(&mut self.range.key));
        self
    }

    /// Replay history from `revision` first (0: only changes after the watch is created).
    pub fn start_revision(mut self, revision: i64) -> Watch {
        self.start_revision = revision;
        self
    }

    /// Each event carries the key's previous value.
    pub fn prev_kv(mut self) -> Watch {
        self.prev_kv = true;
        self
    }

    pub fn into_request(self) -> pb::WatchCreateRequest {
        pb::WatchCreateRequest {
            key: Bytes::from(self.range.key),
            range_end: Bytes::from(self.range.range_end),
            start_revision: self.start_revision,
            prev_kv: self.prev_kv,
            ..pb::WatchCreateRequest::default()
        }
    }
}

/// Events of one or more revisions, in revision order.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchBatch {
    /// The revision of the response header (the store's revision when it was sent).
    pub revision: i64,
    pub events: Vec<mvccpb::Event>,
}

/// Where a watcher is in the history. Pure: the resume rule lives here.
///
/// # Invariants
/// `next_revision` only grows once known (non-zero); every event handed out has a mod revision
/// of at least the `next_revision` before it, so none is handed out twice.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    /// The first revision not yet handed out; 0 until the first watch is created when no
    /// start revision was given.
    next_revision: i64,
}

impl Progress {
    fn new(start_revision: i64) -> Progress {
        Progress {
            next_revision: start_revision.max(0),
        }
    }

    /// A watch was created; `header_revision` is the store's revision then. Without a start
    /// revision, the events wanted are those after it.
    fn on_created(&mut self, header_revision: i64) {
        if self.next_revision == 0 {
            self.next_revision = header_revision + 1;
        }
    }

    /// An empty, non-created response: a progress notice saying every event up to
    /// `header_revision` was sent.
    fn on_progress(&mut self, header_revision: i64) {
        if self.next_revision != 0 {
            self.next_revision = self.next_revision.max(header_revision + 1);
        }
    }

    /// Keeps the events not handed out yet (a resumed watch may replay some) and moves past
    /// them.
    fn on_events(&mut self, events: Vec<mvccpb::Event>) -> Vec<mvccpb::Event> {
        let fresh: Vec<mvccpb::Event> = events
            .into_iter()
            .filter(|event| event_revision(event) >= self.next_revision)
            .collect();
        if let Some(last) = fresh.iter().map(event_revision).max() {
            self.next_revision = last + 1;
        }
        fresh
    }

    /// The start revision to ask for when (re)creating the watch.
    fn resume_from(&self) -> i64 {
        self.next_revision
    }
}

fn event_revision(event: &mvccpb::Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

struct Connection {
    /// Kept so the request stream stays open (dropping it ends the watch).
    _requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
    index: usize,
}

/// A running watch; [`next`](Watcher::next) gives its events. Dropping it ends the watch.
///
/// ```no_run
/// # async fn example(client: chorus_client::Client) -> Result<(), chorus_client::Error> {
/// use chorus_client::Watch;
/// let mut watcher = client.watch(Watch::key("config/").prefix()).await?;
/// loop {
///     let batch = watcher.next().await?;
///     for event in batch.events {
///         println!("{:?}", event);
///     }
/// }
/// # }
/// ```
pub struct Watcher {
    client: Client,
    request: pb::WatchCreateRequest,
    progress: Progress,
    connection: Option<Connection>,
}

impl Client {
    /// Starts a watch; returns once a member has created it.
    pub async fn watch(&self, watch: Watch) -> Result<Watcher, Error> {
        let request = watch.into_request();
        let mut watcher = Watcher {
            client: self.clone(),
            progress: Progress::new(request.start_revision),
            request,
            connection: None,
        };
        watcher.connect().await?;
        Ok(watcher)
    }
}

impl Watcher {
    /// The first revision whose events have not been handed out yet (0 before the watch was
    /// first created without a start revision).
    pub fn next_revision(&self) -> i64 {
        self.progress.next_revision
    }

    /// The next events. On a broken stream the watch is created again on another endpoint
    /// from [`next_revision`](Watcher::next_revision), retrying for the call timeout; fails
    /// with [`Error::WatchCanceled`] when the server cancels it (e.g. that revision was
    /// compacted).
    pub async fn next(&mut self) -> Result<WatchBatch, Error> {
        loop {
            let Some(connection) = self.connection.as_mut() else {
                self.connect().await?;
                continue;
            };
            let index = connection.index;
            match connection.responses.message().await {
                Ok(Some(response)) => {
                    if let Some(batch) = self.handle(response)? {
                        return Ok(batch);
                    }
                }
                Ok(None) => self.disconnect(index, false),
                Err(status) => {
                    if classify(&status) == Failure::Final {
                        self.connection = None;
                        return Err(status.into());
                    }
                    self.disconnect(index, is_transport_failure(&status));
                }
            }
        }
    }

    fn handle(&mut self, response: pb::WatchResponse) -> Result<Option<WatchBatch>, Error> {
        self.client.observe(response.header.as_ref());
        let header_revision = response.header.as_ref().map_or(0, |header| header.revision);
        if response.canceled {
            self.connection = None;
            return Err(canceled(&response));
        }
        if response.created {
            self.progress.on_created(header_revision);
            return Ok(None);
        }
        if response.events.is_empty() {
            self.progress.on_progress(header_revision);
            return Ok(None);
        }
        let events = self.progress.on_events(response.events);
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(WatchBatch {
            revision: header_revision,
            events,
        }))
    }

    fn disconnect(&mut self, index: usize, transport_failure: bool) {
        self.connection = None;
        if transport_failure {
            self.client.drop_channel(index);
        }
        self.client.advance(index);
    }

    /// Creates the watch from the resume revision on the current endpoint, moving on after
    /// failures, until the call timeout.
    async fn connect(&mut self) -> Result<(), Error> {
        let timeout = self.client.config().call_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = self.client.backoff();
        let mut last_failure = String::from("no attempt finished");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Unavailable {
                    message: format!(
                        "no endpoint created the watch within {timeout:?}; last failure: \
                         {last_failure}"
                    ),
                });
            }
            let index = self.client.current();
            let name = self.client.endpoint_name(index).to_string();
            match tokio::time::timeout(remaining, self.try_connect(index, remaining)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(Attempt::Final(error))) => return Err(error),
                Ok(Err(Attempt::Retry(message))) => last_failure = format!("{name}: {message}"),
                Err(_) => last_failure = format!("{name}: no answer"),
            }
            self.client.advance(index);
            let delay = backoff
                .next_delay()
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_connect(
        &mut self,
        index: usize,
        budget: std::time::Duration,
    ) -> Result<(), Attempt> {
        let channel = self
            .client
            .channel(index, budget)
            .await
            .map_err(Attempt::Retry)?;
        let (requests, receiver) = mpsc::channel(WATCH_REQUESTS_BUFFERED_MAX);
        let create = pb::WatchCreateRequest {
            start_revision: self.progress.resume_from(),
            ..self.request.clone()
        };
        let _ = requests.try_send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        });
        let mut client = WatchClient::new(channel)
            .max_decoding_message_size(self.client.config().response_bytes_max);
        let failed = |status: tonic::Status, client: &Client| {
            if is_transport_failure(&status) {
                client.drop_channel(index);
            }
            match classify(&status) {
                Failure::Final => Attempt::Final(status.into()),
                _ => Attempt::Retry(status.message().to_string()),
            }
        };
        let mut responses = match client.watch(ReceiverStream::new(receiver)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(failed(status, &self.client)),
        };
        match responses.message().await {
            Ok(Some(response)) => {
                self.connection = Some(Connection {
                    _requests: requests,
                    responses,
                    index,
                });
                // The created answer (or a cancel) is handled like any other response.
                match self.handle(response) {
                    Ok(None) => Ok(()),
                    Ok(Some(_)) => Err(Attempt::Retry("events before created".to_string())),
                    Err(error) => Err(Attempt::Final(error)),
                }
            }
            Ok(None) => Err(Attempt::Retry("the stream ended".to_string())),
            Err(status) => Err(failed(status, &self.client)),
        }
    }
}

enum Attempt {
    Final(Error),
    Retry(String),
}

fn canceled(response: &pb::WatchResponse) -> Error {
    let reason = if response.compact_revision != 0 {
        COMPACTED_MESSAGE.to_string()
    } else if response.cancel_reason.is_empty() {
        "canceled by the server".to_string()
    } else {
        response.cancel_reason.clone()
    };
    Error::WatchCanceled {
        reason,
        compact_revision: response.compact_revision,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn put_at(key: &str, revision: i64) -> mvccpb::Event {
        mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: Some(mvccpb::KeyValue {
                key: Bytes::from(key.to_string()),
                mod_revision: revision,
                ..mvccpb::KeyValue::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn a_watch_from_now_starts_after_the_created_revision() {
        let mut progress = Progress::new(0);
        progress.on_created(10);
        assert_eq!(progress.resume_from(), 11);
        // A second created (after a resume) does not move it back or forward.
        progress.on_created(20);
        assert_eq!(progress.resume_from(), 11);
    }

    #[test]
    fn a_resumed_watch_hands_out_replayed_events_once() {
        let mut progress = Progress::new(5);
        let first = progress.on_events(vec![put_at("a", 5), put_at("b", 6), put_at("c", 6)]);
        assert_eq!(first.len(), 3);
        assert_eq!(progress.resume_from(), 7);
        // The new member replays from 7, but suppose it sent 6 again: it is dropped.
        let replay = progress.on_events(vec![put_at("c", 6), put_at("d", 7)]);
        assert_eq!(replay, vec![put_at("d", 7)]);
        assert_eq!(progress.resume_from(), 8);
        assert!(progress.on_events(vec![put_at("d", 7)]).is_empty());
        assert_eq!(progress.resume_from(), 8);
    }

    #[test]
    fn progress_notices_move_the_resume_point_forward_only() {
        let mut progress = Progress::new(3);
        progress.on_progress(9);
        assert_eq!(progress.resume_from(), 10);
        progress.on_progress(4);
        assert_eq!(progress.resume_from(), 10);
        let mut unknown = Progress::new(0);
        unknown.on_progress(9);
        assert_eq!(unknown.resume_from(), 0);
    }

    #[test]
    fn a_compaction_cancel_says_so_like_etcd() {
        let response = pb::WatchResponse {
            canceled: true,
            compact_revision: 4,
            ..pb::WatchResponse::default()
        };
        let error = canceled(&response);
        assert_eq!(
            error.to_string(),
            "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
        );
    }
}
