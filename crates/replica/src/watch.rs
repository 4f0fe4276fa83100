//! The watch hub: etcd v3's Watch service as a pure state machine.
//!
//! [`WatchHub`] keeps the watchers of every watch stream and routes the store's events to them.
//! It does no I/O, reads no clock and runs no task: the server's async shell feeds it requests
//! ([`WatchHub::create`], [`WatchHub::cancel`], [`WatchHub::progress`],
//! [`WatchHub::remove_stream`]), the events of each applied write ([`WatchHub::on_applied`]),
//! ticks ([`WatchHub::tick`]) and periodic catch-up calls ([`WatchHub::sync_unsynced`]), and
//! sends what [`WatchHub::poll`] / [`WatchHub::take_ready`] hand back, in order.
//!
//! A watcher is **synced** when it has been given every event of its range up to the revision
//! the hub was last told of: it is then fed live by `on_applied`. Otherwise it is **unsynced** and
//! `sync_unsynced` catches it up from the store's history ([`chorus_mvcc::Store::events_since`])
//! in bounded batches. Which of the two a watcher is follows from one number, the next revision
//! it needs (`next_revision`): synced exactly when that is above the hub's revision.
//!
//! Memory is bounded per watcher: at most `watch_events_buffered_max` events wait for the
//! consumer (or one revision's events, if that revision alone is larger). A watcher whose
//! consumer is slow stops being fed live when its buffer is full; it becomes unsynced, and is
//! caught up from the history once the consumer has drained its buffer, losing nothing (or is
//! canceled with `compact_revision` if the history it needs was compacted meanwhile, as etcd
//! does).

use chorus_mvcc::{Backend, Event, EventKind, KeyRange, Store};
use std::collections::{BTreeMap, VecDeque};
use thiserror::Error;

/// A watch stream (one gRPC `Watch` call): the caller's identity for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// A watcher's id, unique within its stream (etcd's `watch_id`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub i64);

impl WatchId {
    /// The id of responses that belong to no watcher: progress responses for a whole stream and
    /// refused creations (etcd's `clientv3.InvalidWatchID`).
    pub const NONE: WatchId = WatchId(-1);
    /// A create request's `watch_id` that lets the hub pick one (etcd's `AutoWatchID`).
    pub const AUTO: i64 = 0;
}

/// Limits and timing of a [`WatchHub`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// The most events a watcher may have waiting for its consumer (queued for the stream and not
    /// yet polled). A revision is never split, so one revision larger than this is queued whole
    /// into an empty buffer. A live event that does not fit makes the watcher unsynced.
    pub watch_events_buffered_max: usize,
    /// The most watchers one stream may hold; a create past it is refused.
    pub watchers_per_stream_max: usize,
    /// How often, in ticks, a watcher created with `progress_notify` that was sent nothing during
    /// the interval gets an empty response carrying the current revision (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes by default).
    pub progress_notify_interval_ticks: u64,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            watch_events_buffered_max: 1024,
            watchers_per_stream_max: 4096,
            // 10 minutes at 10 ticks a second.
            progress_notify_interval_ticks: 6000,
        }
    }
}

/// A request to create a watcher: etcd's `WatchCreateRequest`, field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCreate {
    /// The key, or the start of the range. Empty means `"\0"`, as etcd.
    pub key: Vec<u8>,
    /// etcd's conventions: empty for the single `key`, `"\0"` for every key `>= key`, otherwise
    /// the end of `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// The first revision to report: 0 for "from now" (the next revision); a revision already
    /// made starts from the history.
    pub start_revision: i64,
    /// Events carry the key's previous version.
    pub prev_kv: bool,
    /// Filter out put events (etcd's `NOPUT`).
    pub no_put: bool,
    /// Filter out delete events (etcd's `NODELETE`).
    pub no_delete: bool,
    /// Send an empty response with the current revision when idle for an interval.
    pub progress_notify: bool,
    /// The id the client wants, or [`WatchId::AUTO`] (0) to let the hub pick.
    pub watch_id: i64,
    /// Accepted and ignored: the server's gRPC layer fragments large responses.
    pub fragment: bool,
}

impl WatchCreate {
    /// A watch of `key` alone from now.
    pub fn key(key: impl Into<Vec<u8>>) -> WatchCreate {
        WatchCreate {
            key: key.into(),
            ..WatchCreate::default()
        }
    }

    /// A watch of every key starting with `prefix`, from now.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> WatchCreate {
        let key = prefix.into();
        let range_end = chorus_mvcc::prefix_range_end(&key);
        WatchCreate {
            key,
            range_end,
            ..WatchCreate::default()
        }
    }
}

/// What a stream is sent: etcd's `WatchResponse` (the header reduced to its `revision`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The watcher this is about, or [`WatchId::NONE`] for a stream-wide progress response or a
    /// refused creation.
    pub watch_id: WatchId,
    /// The answer to a create request.
    pub created: bool,
    /// The watcher is gone: canceled by the client, refused at creation (`cancel_reason`), or
    /// ended because the history it needed was compacted (`compact_revision`).
    pub canceled: bool,
    /// Non-zero when the watcher was canceled because it needed history below this revision;
    /// the client may watch again from here after re-reading the state.
    pub compact_revision: i64,
    /// Why a creation was refused (etcd's message).
    pub cancel_reason: String,
    /// Whole revisions, in revision order. Empty for control and progress responses.
    pub events: Vec<Event>,
    /// The header revision: for live events their revision; otherwise the revision the hub was
    /// last told of. A progress response promises that every event up to it has been sent.
    pub revision: i64,
}

impl Default for WatchId {
    fn default() -> WatchId {
        WatchId::NONE
    }
}

/// Why a request was refused. The response the client must see (etcd's created-and-canceled
/// answer, with its `cancel_reason`) is already queued for the stream when this is returned.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WatchError {
    /// A create named a `watch_id` the stream already uses.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateWatchId,
    /// A create's key range holds no key (`range_end <= key`).
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The stream already holds `watchers_per_stream_max` watchers.
    #[error("chorus: too many watchers on the stream (at most {watchers_per_stream_max})")]
    TooManyWatchers { watchers_per_stream_max: usize },
    /// A cancel named a watcher the stream does not have (etcd then sends nothing).
    #[error("mvcc: watcher does not exist")]
    NotFound,
}

#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    /// The first revision this watcher has not been given yet; synced when above the hub's
    /// revision.
    next_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// Events queued for this watcher in its stream's outbox, not yet polled.
    queued_events: usize,
    /// Responses queued for this watcher, not yet polled.
    queued_responses: usize,
    /// Events were queued for it during the current progress interval.
    active_in_interval: bool,
}

impl Watcher {
    /// The events of `events` this watcher reports, as it reports them.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|event| self.range.contains(&event.kv.key))
            .filter(|event| match event.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            })
            .map(|event| Event {
                kind: event.kind,
                kv: event.kv.clone(),
                prev_kv: if self.prev_kv {
                    event.prev_kv.clone()
                } else {
                    None
                },
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Stream {
    watchers: BTreeMap<WatchId, Watcher>,
    outbox: VecDeque<WatchResponse>,
    /// Where the search for the next id the hub picks starts (etcd's `nextID`).
    next_watch_id: i64,
    /// A progress request waits until every watcher of the stream is synced.
    progress_requested: bool,
}

impl Stream {
    fn push(&mut self, response: WatchResponse) {
        if let Some(watcher) = self.watchers.get_mut(&response.watch_id) {
            watcher.queued_events += response.events.len();
            watcher.queued_responses += 1;
            if !response.events.is_empty() {
                watcher.active_in_interval = true;
            }
        }
        self.outbox.push_back(response);
    }

    fn all_synced(&self, revision: i64) -> bool {
        self.watchers
            .values()
            .all(|watcher| watcher.next_revision > revision)
    }

    /// Sends a deferred progress response once every watcher is synced.
    fn maybe_send_progress(&mut self, revision: i64) -> bool {
        if !self.progress_requested || !self.all_synced(revision) {
            return false;
        }
        self.progress_requested = false;
        self.push(WatchResponse {
            watch_id: WatchId::NONE,
            revision,
            ..WatchResponse::default()
        });
        true
    }
}

/// The watchers of every stream and the routing of events to them.
///
/// # Invariants
/// - A watcher is synced exactly when its `next_revision` is above `revision`: it has been
///   given every event of its range below `next_revision` and none at or above it.
/// - A watcher's queued events are at most `watch_events_buffered_max`, or they are the events
///   of one response holding one revision (a revision is never split).
/// - The events queued for a stream's watchers add up to at most the events in its outbox (a
///   canceled watcher's events stay queued).
/// - A stream waits with a progress request only while some watcher of it is unsynced.
/// - No stream holds more than `watchers_per_stream_max` watchers.
#[derive(Debug)]
pub struct WatchHub {
    config: WatchConfig,
    /// The store revision the hub was last told of: every event up to it was offered to the
    /// synced watchers.
    revision: i64,
    ticks: u64,
    streams: BTreeMap<StreamId, Stream>,
    /// Where the last `sync_unsynced` stopped, so the next one starts after it (round robin).
    sync_cursor: Option<(StreamId, WatchId)>,
}

impl WatchHub {
    /// A hub with no watchers over a store at `current_revision` (its events up to there are
    /// history; `on_applied` is called for each later revision).
    pub fn new(config: WatchConfig, current_revision: i64) -> WatchHub {
        assert!(
            config.watch_events_buffered_max >= 1,
            "watch_events_buffered_max of 0"
        );
        assert!(
            config.watchers_per_stream_max >= 1,
            "watchers_per_stream_max of 0"
        );
        assert!(
            config.progress_notify_interval_ticks >= 1,
            "progress_notify_interval_ticks of 0"
        );
        assert!(current_revision >= 1, "store revision {current_revision}");
        WatchHub {
            config,
            revision: current_revision,
            ticks: 0,
            streams: BTreeMap::new(),
            sync_cursor: None,
        }
    }

    /// The store revision the hub was last told of.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Creates a watcher on `stream_id` (opening the stream if new), as etcd's
    /// `WatchCreateRequest`. Queues the `created` response; if `start_revision` is below the
    /// store's compaction point, the watcher is then at once canceled (a second response with
    /// `compact_revision`), as etcd answers. A start revision of 0 means the next revision; one
    /// the store has made starts an unsynced watcher that [`WatchHub::sync_unsynced`] catches up.
    ///
    /// Refused (with etcd's created-and-canceled response, `watch_id` -1, queued): a duplicate
    /// `watch_id`, an empty range, a full stream.
    pub fn create<B: Backend>(
        &mut self,
        request: WatchCreate,
        stream_id: StreamId,
        store: &Store<B>,
    ) -> Result<WatchId, WatchError> {
        let revision = self.revision;
        let stream = self.streams.entry(stream_id).or_default();
        let result = create_in(stream, &request, revision, &self.config);
        let watch_id = match result {
            Ok(watch_id) => watch_id,
            Err(error) => {
                stream.push(WatchResponse {
                    watch_id: WatchId::NONE,
                    created: true,
                    canceled: true,
                    cancel_reason: error.to_string(),
                    revision,
                    ..WatchResponse::default()
                });
                return Err(error);
            }
        };
        stream.push(WatchResponse {
            watch_id,
            created: true,
            revision,
            ..WatchResponse::default()
        });
        let next_revision = stream.watchers[&watch_id].next_revision;
        if let Some(compact_revision) = store.compact_revision() {
            if next_revision < compact_revision {
                cancel_compacted(stream, watch_id, compact_revision, revision);
            }
        }
        Ok(watch_id)
    }

    /// Cancels a watcher, as etcd's `WatchCancelRequest`: queues a `canceled` response. An
    /// unknown watcher is [`WatchError::NotFound`] and nothing is queued (etcd sends nothing).
    pub fn cancel(&mut self, stream_id: StreamId, watch_id: WatchId) -> Result<(), WatchError> {
        let revision = self.revision;
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(WatchError::NotFound)?;
        if stream.watchers.remove(&watch_id).is_none() {
            return Err(WatchError::NotFound);
        }
        stream.push(WatchResponse {
            watch_id,
            canceled: true,
            revision,
            ..WatchResponse::default()
        });
        stream.maybe_send_progress(revision);
        Ok(())
    }

    /// Forgets a stream, its watchers and everything queued for it (the client went away).
    /// Says whether there was such a stream.
    pub fn remove_stream(&mut self, stream_id: StreamId) -> bool {
        self.streams.remove(&stream_id).is_some()
    }

    /// A progress request for the whole stream (etcd's `WatchProgressRequest`): queues a response
    /// with `watch_id` -1 and the current revision once every watcher of the stream is synced
    /// (at once if they are), so the revision promises that nothing up to it is still to come.
    pub fn progress(&mut self, stream_id: StreamId) {
        let revision = self.revision;
        let stream = self.streams.entry(stream_id).or_default();
        stream.progress_requested = true;
        stream.maybe_send_progress(revision);
    }

    /// Feeds the events of one applied write at `revision` to the synced watchers whose range
    /// they touch; call it after each apply, in apply order, for every write that made a
    /// revision. `events` all carry `revision`, the one after the hub's. An apply with no events
    /// (a refused request, a read, a compaction, a lease grant) changes nothing: passing it is
    /// allowed and does nothing, whatever `revision` says. Each watcher gets one response for the
    /// revision. A watcher whose buffer cannot take them becomes unsynced and will read them back
    /// from the store. Events at or below the hub's revision are ignored: an
    /// [`WatchHub::on_restored`] already covered them (the watchers read them from the history).
    pub fn on_applied(&mut self, events: &[Event], revision: i64) {
        if events.is_empty() || revision <= self.revision {
            return;
        }
        assert!(
            revision == self.revision + 1,
            "events at revision {revision}, the hub is at {}: a revision was skipped",
            self.revision
        );
        for event in events {
            assert!(
                event.kv.mod_revision == revision,
                "an event at {} among events at {revision}",
                event.kv.mod_revision
            );
        }
        let buffered_max = self.config.watch_events_buffered_max;
        for stream in self.streams.values_mut() {
            let mut responses = Vec::new();
            for (watch_id, watcher) in stream.watchers.iter_mut() {
                if watcher.next_revision != revision {
                    // Unsynced (below), or waiting for a later start revision (above).
                    continue;
                }
                let selected = watcher.select(events);
                if !selected.is_empty()
                    && watcher.queued_events > 0
                    && watcher.queued_events + selected.len() > buffered_max
                {
                    // Slow consumer: stays at `revision`, so it is now unsynced.
                    continue;
                }
                watcher.next_revision = revision + 1;
                if !selected.is_empty() {
                    responses.push(WatchResponse {
                        watch_id: *watch_id,
                        events: selected,
                        revision,
                        ..WatchResponse::default()
                    });
                }
            }
            for response in responses {
                stream.push(response);
            }
        }
        self.revision = revision;
    }

    /// The store was replaced by a snapshot (a follower that fell behind): no events came for
    /// the revisions skipped, so every watcher below `revision` becomes unsynced and is caught up
    /// from the new history (or canceled, if it was compacted). Pass the store's current
    /// revision after the whole apply that installed the snapshot; the events of that apply's
    /// later entries may then be passed to `on_applied` or not (they are ignored).
    pub fn on_restored(&mut self, revision: i64) {
        assert!(
            revision >= self.revision,
            "restored to {revision}, below the hub's {}",
            self.revision
        );
        self.revision = revision;
    }

    /// Catches unsynced watchers up from the store's history, reading about `events_max` events
    /// in all (a revision is never split), round robin across calls so that no watcher starves
    /// the others. A watcher is read for only when its buffer has room; it becomes synced once
    /// it reaches the hub's revision. One that needs history the store compacted is canceled
    /// with `compact_revision`. Call it periodically (every tick). Fails only if the store does
    /// ([`chorus_mvcc::Error::Fatal`]).
    pub fn sync_unsynced<B: Backend>(
        &mut self,
        store: &Store<B>,
        events_max: usize,
    ) -> Result<(), chorus_mvcc::Error> {
        assert!(events_max >= 1, "events_max of 0");
        assert!(
            store.current_revision() >= self.revision,
            "the store at {} is behind the hub at {}",
            store.current_revision(),
            self.revision
        );
        let revision = self.revision;
        let mut unsynced: Vec<(StreamId, WatchId)> = Vec::new();
        for (stream_id, stream) in &self.streams {
            for (watch_id, watcher) in &stream.watchers {
                if watcher.next_revision <= revision {
                    unsynced.push((*stream_id, *watch_id));
                }
            }
        }
        // Round robin: start after the watcher the last call stopped at.
        let start = match self.sync_cursor {
            Some(cursor) => unsynced.partition_point(|entry| *entry <= cursor),
            None => 0,
        };
        unsynced.rotate_left(start);
        let mut budget = events_max;
        for (stream_id, watch_id) in unsynced {
            if budget == 0 {
                break;
            }
            let Some(stream) = self.streams.get_mut(&stream_id) else {
                continue;
            };
            let buffered_max = self.config.watch_events_buffered_max;
            let read = catch_up(stream, watch_id, store, revision, buffered_max, budget)?;
            budget = budget.saturating_sub(read);
            self.sync_cursor = Some((stream_id, watch_id));
        }
        for stream in self.streams.values_mut() {
            stream.maybe_send_progress(revision);
        }
        Ok(())
    }

    /// One tick of the caller's clock: every `progress_notify_interval_ticks`, each synced
    /// watcher created with `progress_notify` that was queued no events during the interval and
    /// has nothing waiting gets an empty response with the current revision.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if !self
            .ticks
            .is_multiple_of(self.config.progress_notify_interval_ticks)
        {
            return;
        }
        let revision = self.revision;
        for stream in self.streams.values_mut() {
            let mut notify = Vec::new();
            for (watch_id, watcher) in stream.watchers.iter_mut() {
                if watcher.progress_notify
                    && watcher.next_revision > revision
                    && !watcher.active_in_interval
                    && watcher.queued_responses == 0
                {
                    notify.push(*watch_id);
                }
                watcher.active_in_interval = false;
            }
            for watch_id in notify {
                stream.push(WatchResponse {
                    watch_id,
                    revision,
                    ..WatchResponse::default()
                });
            }
        }
    }

    /// Takes what `stream_id` should be sent, in order (empty for an unknown stream). The
    /// caller polls when the stream can take more: until then its watchers' buffers fill.
    pub fn poll(&mut self, stream_id: StreamId) -> Vec<WatchResponse> {
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return Vec::new();
        };
        for watcher in stream.watchers.values_mut() {
            watcher.queued_events = 0;
            watcher.queued_responses = 0;
        }
        stream.outbox.drain(..).collect()
    }

    /// [`WatchHub::poll`] for every stream with something to send, in stream order.
    pub fn take_ready(&mut self) -> Vec<(StreamId, Vec<WatchResponse>)> {
        let ready: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, stream)| !stream.outbox.is_empty())
            .map(|(stream_id, _)| *stream_id)
            .collect();
        ready
            .into_iter()
            .map(|stream_id| (stream_id, self.poll(stream_id)))
            .collect()
    }

    /// The responses queued for `stream_id` and not yet polled. Event responses are bounded by
    /// the watchers' buffers; control responses (created, canceled, progress) are one per client
    /// request, so the shell stops reading a stream's requests while this is above its limit
    /// (as etcd's `recvLoop` blocks on its control channel).
    pub fn queued_responses(&self, stream_id: StreamId) -> usize {
        self.streams
            .get(&stream_id)
            .map_or(0, |stream| stream.outbox.len())
    }

    /// The number of watchers on `stream_id`.
    pub fn watcher_count(&self, stream_id: StreamId) -> usize {
        self.streams
            .get(&stream_id)
            .map_or(0, |stream| stream.watchers.len())
    }

    /// Whether the watcher exists and is synced (fed live); `None` if it does not exist.
    pub fn is_synced(&self, stream_id: StreamId, watch_id: WatchId) -> Option<bool> {
        let watcher = self.streams.get(&stream_id)?.watchers.get(&watch_id)?;
        Some(watcher.next_revision > self.revision)
    }

    /// The number of unsynced watchers, over every stream.
    pub fn unsynced_count(&self) -> usize {
        self.streams
            .values()
            .flat_map(|stream| stream.watchers.values())
            .filter(|watcher| watcher.next_revision <= self.revision)
            .count()
    }

    /// Panics if an invariant (see the type's doc) does not hold.
    pub fn check_invariants(&self) {
        for (stream_id, stream) in &self.streams {
            assert!(
                stream.watchers.len() <= self.config.watchers_per_stream_max,
                "{stream_id:?} holds {} watchers",
                stream.watchers.len()
            );
            let outbox_events: usize = stream.outbox.iter().map(|r| r.events.len()).sum();
            let queued_events: usize = stream.watchers.values().map(|w| w.queued_events).sum();
            assert!(
                queued_events <= outbox_events,
                "{stream_id:?}: watchers count {queued_events} queued events, the outbox has \
                 {outbox_events}"
            );
            if stream.progress_requested {
                assert!(
                    !stream.all_synced(self.revision),
                    "{stream_id:?} holds a progress request with every watcher synced"
                );
            }
            for (watch_id, watcher) in &stream.watchers {
                if watcher.queued_events > self.config.watch_events_buffered_max {
                    let responses: Vec<&WatchResponse> = stream
                        .outbox
                        .iter()
                        .filter(|r| r.watch_id == *watch_id && !r.events.is_empty())
                        .collect();
                    assert!(
                        responses.len() == 1
                            && responses[0].events.iter().all(
                                |e| e.kv.mod_revision == responses[0].events[0].kv.mod_revision
                            ),
                        "{stream_id:?}/{watch_id:?} holds {} events over its buffer",
                        watcher.queued_events
                    );
                }
            }
        }
    }
}

fn create_in(
    stream: &mut Stream,
    request: &WatchCreate,
    revision: i64,
    config: &WatchConfig,
) -> Result<WatchId, WatchError> {
    // etcd: an empty key is "\0", the smallest key.
    let key: &[u8] = if request.key.is_empty() {
        &[0]
    } else {
        &request.key
    };
    let range = KeyRange::from_etcd(key, &request.range_end);
    if range.is_empty() {
        return Err(WatchError::EmptyRange);
    }
    if stream.watchers.len() >= config.watchers_per_stream_max {
        return Err(WatchError::TooManyWatchers {
            watchers_per_stream_max: config.watchers_per_stream_max,
        });
    }
    let watch_id = if request.watch_id == WatchId::AUTO {
        while stream.watchers.contains_key(&WatchId(stream.next_watch_id)) {
            stream.next_watch_id += 1;
        }
        let picked = WatchId(stream.next_watch_id);
        stream.next_watch_id += 1;
        picked
    } else if stream.watchers.contains_key(&WatchId(request.watch_id)) {
        return Err(WatchError::DuplicateWatchId);
    } else {
        WatchId(request.watch_id)
    };
    // etcd: 0 is "from the next revision"; any other start is kept as asked (one above the
    // current revision waits for it, one at or below reads the history).
    let next_revision = if request.start_revision == 0 {
        revision + 1
    } else {
        request.start_revision
    };
    let watcher = Watcher {
        range,
        next_revision,
        prev_kv: request.prev_kv,
        no_put: request.no_put,
        no_delete: request.no_delete,
        progress_notify: request.progress_notify,
        queued_events: 0,
        queued_responses: 0,
        active_in_interval: false,
    };
    stream.watchers.insert(watch_id, watcher);
    Ok(watch_id)
}

/// Ends a watcher that needs history below `compact_revision`, as etcd does.
fn cancel_compacted(stream: &mut Stream, watch_id: WatchId, compact_revision: i64, revision: i64) {
    stream.push(WatchResponse {
        watch_id,
        canceled: true,
        compact_revision,
        revision,
        ..WatchResponse::default()
    });
    stream.watchers.remove(&watch_id);
}

/// Catches one unsynced watcher up by one batch read from the store, never past the hub's
/// `revision` (the store may be ahead by writes not yet passed to `on_applied`; those come
/// live). Returns how many events it read.
fn catch_up<B: Backend>(
    stream: &mut Stream,
    watch_id: WatchId,
    store: &Store<B>,
    revision: i64,
    buffered_max: usize,
    budget: usize,
) -> Result<usize, chorus_mvcc::Error> {
    let Some(watcher) = stream.watchers.get(&watch_id) else {
        return Ok(0);
    };
    let room = buffered_max.saturating_sub(watcher.queued_events);
    if room == 0 {
        return Ok(0);
    }
    let wanted = room.min(budget);
    let read = match store.events_since(watcher.next_revision, &watcher.range, wanted) {
        Ok(read) => read,
        Err(chorus_mvcc::Error::Compacted { compact_revision }) => {
            cancel_compacted(stream, watch_id, compact_revision, revision);
            return Ok(0);
        }
        Err(error) => return Err(error),
    };
    let read_count = read.len();
    // Every event of the range below `covered + 1` (from `next_revision`) is in `read`.
    let mut covered = if read.len() < wanted {
        store.current_revision()
    } else {
        read.last()
            .map_or(store.current_revision(), |e| e.kv.mod_revision)
    };
    covered = covered.min(revision);
    let mut events: Vec<Event> = read
        .into_iter()
        .take_while(|event| event.kv.mod_revision <= covered)
        .collect();
    if events.len() > room {
        // Keep whole revisions that fit; into an empty buffer, at least the first revision.
        let mut end = room;
        while end > 0 && events[end].kv.mod_revision == events[end - 1].kv.mod_revision {
            end -= 1;
        }
        if end == 0 {
            if watcher.queued_events > 0 {
                return Ok(read_count);
            }
            let first = events[0].kv.mod_revision;
            end = events
                .iter()
                .take_while(|e| e.kv.mod_revision == first)
                .count();
        }
        events.truncate(end);
        covered = events[end - 1].kv.mod_revision;
    }
    let selected = watcher.select(&events);
    if let Some(watcher) = stream.watchers.get_mut(&watch_id) {
        watcher.next_revision = covered + 1;
    }
    if !selected.is_empty() {
        stream.push(WatchResponse {
            watch_id,
            events: selected,
            revision,
            ..WatchResponse::default()
        });
    }
    Ok(read_count)
}
