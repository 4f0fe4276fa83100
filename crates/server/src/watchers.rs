//! The watchers of one group, kept by the group task. Each watcher has a key range and the
//! next revision it needs; after every cycle that moved the store's revision (and on ticks, for
//! watchers that were blocked), the task reads the events since that revision from the store
//! ([`chorus_mvcc::Store::events_since`]) and offers them to the watcher's stream.
//!
//! Bounds: a stream's channel holds [`WATCH_STREAM_NOTICES_MAX`] notices; when it is full the
//! watcher's revision does not move and the events are read again later, so a slow watcher
//! costs no memory beyond its channel. One read takes at most [`WATCH_EVENTS_PER_NOTICE_MAX`]
//! events (never splitting a revision). At most [`WATCHERS_MAX`] watchers per group.
//!
//! Watchers of the same range waiting for the same revision share one read per delivery pass
//! (each gets a copy of the events): a thousand watchers of one prefix cost one index scan and
//! one record read per new revision, not a thousand.

use chorus_mvcc::{Backend, Event, EventKind, KeyRange, Store};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;

/// Notices queued for one watch stream before its watchers wait.
pub const WATCH_STREAM_NOTICES_MAX: usize = 256;
/// Events in one notice (a revision is never split, so a notice may hold a few more).
pub const WATCH_EVENTS_PER_NOTICE_MAX: usize = 1000;
/// Watchers in one group; more are refused with "too many requests".
pub const WATCHERS_MAX: usize = 100_000;
/// Notices one watcher may take in one delivery pass, so one busy watcher does not starve the
/// group task.
const NOTICES_PER_PASS_MAX: usize = 16;
/// Bytes of keys and values one delivery pass keeps to share between watchers; reads past it
/// are not kept (each watcher that needs them reads again).
const SHARED_READ_BYTES_MAX: usize = 16 * 1024 * 1024;

/// What a watch stream receives from the group task, in order.
#[derive(Debug)]
pub enum WatchNotice {
    Created {
        watch_id: i64,
        revision: i64,
        raft_term: u64,
    },
    Events {
        watch_id: i64,
        events: Vec<Event>,
        revision: i64,
        raft_term: u64,
    },
    /// The watcher ended: cancelled by the client, or its start revision was compacted.
    Canceled {
        watch_id: i64,
        compact_revision: i64,
        reason: String,
        revision: i64,
        raft_term: u64,
    },
    /// Every watcher of the stream has every event up to `revision`.
    Progress { revision: i64, raft_term: u64 },
    /// A periodic progress notice (`progress_notify`): this watcher has every event up to
    /// `revision`.
    WatcherProgress {
        watch_id: i64,
        revision: i64,
        raft_term: u64,
    },
}

/// A request to watch, as the group task takes it.
#[derive(Debug)]
pub struct WatchCreate {
    pub stream: u64,
    pub watch_id: i64,
    pub range: KeyRange,
    /// 0: from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub notices: mpsc::Sender<WatchNotice>,
}

struct Watcher {
    range: KeyRange,
    next_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    notices: mpsc::Sender<WatchNotice>,
}

/// Every watcher of the group, by (stream, watch id).
#[derive(Default)]
pub struct Watchers {
    watchers: BTreeMap<(u64, i64), Watcher>,
}

/// Why a watch could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateError {
    TooMany,
    DuplicateId,
    StreamFull,
}

impl Watchers {
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// How many watchers, over every stream (for monitoring).
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// How many streams have at least one watcher (for monitoring).
    pub fn stream_count(&self) -> usize {
        let mut streams = 0;
        let mut last = None;
        for (stream, _) in self.watchers.keys() {
            if last != Some(*stream) {
                streams += 1;
                last = Some(*stream);
            }
        }
        streams
    }

    /// Adds a watcher and sends its `Created` notice first (before any event).
    pub fn create(
        &mut self,
        create: WatchCreate,
        current_revision: i64,
        raft_term: u64,
    ) -> Result<(), CreateError> {
        if self.watchers.len() >= WATCHERS_MAX {
            return Err(CreateError::TooMany);
        }
        let key = (create.stream, create.watch_id);
        if self.watchers.contains_key(&key) {
            return Err(CreateError::DuplicateId);
        }
        let created = WatchNotice::Created {
            watch_id: create.watch_id,
            revision: current_revision,
            raft_term,
        };
        if create.notices.try_send(created).is_err() {
            return Err(CreateError::StreamFull);
        }
        let next_revision = if create.start_revision <= 0 {
            current_revision + 1
        } else {
            create.start_revision
        };
        let watcher = Watcher {
            range: create.range,
            next_revision,
            prev_kv: create.prev_kv,
            no_put: create.no_put,
            no_delete: create.no_delete,
            notices: create.notices,
        };
        self.watchers.insert(key, watcher);
        Ok(())
    }

    /// Removes a watcher and tells its stream; false if there was none.
    pub fn cancel(&mut self, stream: u64, watch_id: i64, revision: i64, raft_term: u64) -> bool {
        let Some(watcher) = self.watchers.remove(&(stream, watch_id)) else {
            return false;
        };
        let _ = watcher.notices.try_send(WatchNotice::Canceled {
            watch_id,
            compact_revision: 0,
            reason: String::new(),
            revision,
            raft_term,
        });
        true
    }

    /// Sends a progress notice to the stream if all its watchers are caught up.
    pub fn progress(
        &self,
        stream: u64,
        notices: &mpsc::Sender<WatchNotice>,
        revision: i64,
        raft_term: u64,
    ) {
        let synced = self
            .watchers
            .range((stream, i64::MIN)..=(stream, i64::MAX))
            .all(|(_, watcher)| watcher.next_revision > revision);
        if synced {
            let _ = notices.try_send(WatchNotice::Progress {
                revision,
                raft_term,
            });
        }
    }

    /// Sends a `WatcherProgress` notice to each of the watchers `watch_ids` of `stream` that is
    /// caught up with `revision`; one whose channel is full, or that is behind, gets none
    /// (etcd's progress notify skips unsynced watchers too).
    pub fn progress_notify(&self, stream: u64, watch_ids: &[i64], revision: i64, raft_term: u64) {
        for watch_id in watch_ids {
            let Some(watcher) = self.watchers.get(&(stream, *watch_id)) else {
                continue;
            };
            if watcher.next_revision > revision {
                let _ = watcher.notices.try_send(WatchNotice::WatcherProgress {
                    watch_id: *watch_id,
                    revision,
                    raft_term,
                });
            }
        }
    }

    /// Offers every watcher behind the store's revision its events; drops watchers whose
    /// stream is gone, and cancels those whose revision was compacted.
    pub fn deliver<B: Backend>(&mut self, store: &Store<B>, raft_term: u64) {
        let current = store.current_revision();
        let mut finished = Vec::new();
        // The events read in this pass, by (start revision, range): the store does not change
        // during the pass, so the same read gives the same events.
        let mut read: HashMap<(i64, KeyRange), Vec<Event>> = HashMap::new();
        let mut read_bytes = 0;
        for (key, watcher) in &mut self.watchers {
            if watcher.notices.is_closed() {
                finished.push(*key);
                continue;
            }
            for _ in 0..NOTICES_PER_PASS_MAX {
                if watcher.next_revision > current {
                    break;
                }
                let Ok(permit) = watcher.notices.try_reserve() else {
                    break;
                };
                let from = (watcher.next_revision, watcher.range.clone());
                let events = match read.get(&from) {
                    Some(events) => Ok(events.clone()),
                    None => store
                        .events_since(from.0, &from.1, WATCH_EVENTS_PER_NOTICE_MAX)
                        .inspect(|events| {
                            let bytes: usize = events.iter().map(event_bytes).sum();
                            if read_bytes + bytes <= SHARED_READ_BYTES_MAX {
                                read_bytes += bytes;
                                read.insert(from, events.clone());
                            }
                        }),
                };
                match events {
                    Ok(events) => {
                        let complete = events.len() < WATCH_EVENTS_PER_NOTICE_MAX;
                        let next = match (complete, events.last()) {
                            (false, Some(last)) => last.kv.mod_revision + 1,
                            _ => current + 1,
                        };
                        watcher.next_revision = next.max(watcher.next_revision + 1);
                        let events: Vec<Event> = events
                            .into_iter()
                            .filter(|event| match event.kind {
                                EventKind::Put => !watcher.no_put,
                                EventKind::Delete => !watcher.no_delete,
                            })
                            .map(|mut event| {
                                if !watcher.prev_kv {
                                    event.prev_kv = None;
                                }
                                event
                            })
                            .collect();
                        if !events.is_empty() {
                            permit.send(WatchNotice::Events {
                                watch_id: key.1,
                                events,
                                revision: current,
                                raft_term,
                            });
                        }
                    }
                    Err(chorus_mvcc::Error::Compacted { compact_revision }) => {
                        permit.send(WatchNotice::Canceled {
                            watch_id: key.1,
                            compact_revision,
                            reason: "mvcc: required revision has been compacted".to_string(),
                            revision: current,
                            raft_term,
                        });
                        finished.push(*key);
                        break;
                    }
                    Err(error) => {
                        permit.send(WatchNotice::Canceled {
                            watch_id: key.1,
                            compact_revision: 0,
                            reason: error.to_string(),
                            revision: current,
                            raft_term,
                        });
                        finished.push(*key);
                        break;
                    }
                }
            }
        }
        for key in finished {
            self.watchers.remove(&key);
        }
    }
}

/// The bytes of keys and values an event holds.
fn event_bytes(event: &Event) -> usize {
    let kv_bytes = |kv: &chorus_mvcc::KeyValue| kv.key.len() + kv.value.len();
    kv_bytes(&event.kv) + event.prev_kv.as_ref().map_or(0, kv_bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chorus_mvcc::{Config, MemoryBackend, PutRequest};

    fn store_with_puts(count: u64) -> Store<MemoryBackend> {
        let mut store = Store::open(MemoryBackend::new(), Config::default()).unwrap();
        for index in 1..=count {
            store
                .put(index, PutRequest::new(format!("k{index}"), "v"))
                .unwrap();
        }
        store
    }

    fn create(
        notices: mpsc::Sender<WatchNotice>,
        watch_id: i64,
        start_revision: i64,
    ) -> WatchCreate {
        WatchCreate {
            stream: 1,
            watch_id,
            range: KeyRange::prefix(b"k"),
            start_revision,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            notices,
        }
    }

    fn event_count(notice: WatchNotice) -> usize {
        match notice {
            WatchNotice::Events { events, .. } => events.len(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn a_slow_stream_holds_its_watcher_back_instead_of_buffering() {
        let mut store = store_with_puts(3);
        let (sender, mut receiver) = mpsc::channel(2);
        let mut watchers = Watchers::default();
        watchers
            .create(create(sender, 7, 1), store.current_revision(), 1)
            .unwrap();
        assert!(matches!(
            receiver.try_recv().unwrap(),
            WatchNotice::Created { watch_id: 7, .. }
        ));
        watchers.deliver(&store, 1);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 3);

        // Nobody reads: one notice fits, the next writes wait in the store, not in memory.
        store.put(4, PutRequest::new("k4", "v")).unwrap();
        watchers.deliver(&store, 1);
        store.put(5, PutRequest::new("k5", "v")).unwrap();
        watchers.deliver(&store, 1);
        store.put(6, PutRequest::new("k6", "v")).unwrap();
        watchers.deliver(&store, 1);
        assert_eq!(receiver.len(), 2);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 1);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 1);
        // Once read, the rest comes, nothing lost.
        watchers.deliver(&store, 1);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 1);
        assert!(receiver.try_recv().is_err());
    }

    #[test]
    fn a_compacted_start_revision_cancels_with_the_compact_revision() {
        let mut store = store_with_puts(5);
        store.compact(6, 4).unwrap();
        let (sender, mut receiver) = mpsc::channel(4);
        let mut watchers = Watchers::default();
        watchers
            .create(create(sender, 1, 2), store.current_revision(), 1)
            .unwrap();
        watchers.deliver(&store, 1);
        assert!(matches!(
            receiver.try_recv().unwrap(),
            WatchNotice::Created { .. }
        ));
        match receiver.try_recv().unwrap() {
            WatchNotice::Canceled {
                compact_revision, ..
            } => assert_eq!(compact_revision, 4),
            other => panic!("expected a cancel, got {other:?}"),
        }
        assert!(watchers.is_empty());
    }

    #[test]
    fn progress_notify_reaches_only_caught_up_watchers_that_were_named() {
        let mut store = store_with_puts(2);
        let (sender, mut receiver) = mpsc::channel(8);
        let mut watchers = Watchers::default();
        let current = store.current_revision();
        watchers
            .create(create(sender.clone(), 1, 0), current, 1)
            .unwrap();
        watchers.create(create(sender, 2, 1), current, 1).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                receiver.try_recv().unwrap(),
                WatchNotice::Created { .. }
            ));
        }
        // Watcher 2 replays from revision 1: behind, no progress for it; 3 does not exist.
        watchers.progress_notify(1, &[1, 2, 3], current, 1);
        match receiver.try_recv().unwrap() {
            WatchNotice::WatcherProgress {
                watch_id, revision, ..
            } => assert_eq!((watch_id, revision), (1, current)),
            other => panic!("expected progress, got {other:?}"),
        }
        assert!(receiver.try_recv().is_err());
        // Once watcher 2 has its events it is caught up too.
        watchers.deliver(&store, 1);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 2);
        store.put(3, PutRequest::new("k3", "v")).unwrap();
        watchers.deliver(&store, 1);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 1);
        assert_eq!(event_count(receiver.try_recv().unwrap()), 1);
        watchers.progress_notify(1, &[2], store.current_revision(), 1);
        assert!(matches!(
            receiver.try_recv().unwrap(),
            WatchNotice::WatcherProgress { watch_id: 2, .. }
        ));
    }

    /// The events of a notice, as (kind, key, whether it carries prev_kv).
    fn events_of(notice: WatchNotice) -> Vec<(EventKind, String, bool)> {
        match notice {
            WatchNotice::Events { events, .. } => events
                .into_iter()
                .map(|event| {
                    let key = String::from_utf8(event.kv.key).unwrap();
                    (event.kind, key, event.prev_kv.is_some())
                })
                .collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn watchers_sharing_a_read_each_get_their_own_filters_and_start() {
        let mut store = store_with_puts(2);
        let first = store.current_revision();
        store.put(3, PutRequest::new("k1", "again")).unwrap();
        store
            .delete_range(4, chorus_mvcc::DeleteRangeRequest::key("k2"))
            .unwrap();
        let current = store.current_revision();
        let (sender, mut receiver) = mpsc::channel(16);
        let mut watchers = Watchers::default();
        // Watch ids in delivery order: the plain one reads first and strips prev_kv from its
        // copy; the later ones of the same range and start must still see the store's events.
        let plain = create(sender.clone(), 1, first);
        let with_prev = WatchCreate {
            prev_kv: true,
            ..create(sender.clone(), 2, first)
        };
        let deletes_only = WatchCreate {
            no_put: true,
            ..create(sender.clone(), 3, first)
        };
        let later = create(sender, 4, current);
        for watch in [plain, with_prev, deletes_only, later] {
            watchers.create(watch, current, 1).unwrap();
            assert!(matches!(
                receiver.try_recv().unwrap(),
                WatchNotice::Created { .. }
            ));
        }
        watchers.deliver(&store, 1);
        use EventKind::{Delete, Put};
        let k = |key: &str| key.to_string();
        assert_eq!(
            events_of(receiver.try_recv().unwrap()),
            [
                (Put, k("k2"), false),
                (Put, k("k1"), false),
                (Delete, k("k2"), false)
            ]
        );
        assert_eq!(
            events_of(receiver.try_recv().unwrap()),
            [
                (Put, k("k2"), false),
                (Put, k("k1"), true),
                (Delete, k("k2"), true)
            ]
        );
        assert_eq!(
            events_of(receiver.try_recv().unwrap()),
            [(Delete, k("k2"), false)]
        );
        assert_eq!(
            events_of(receiver.try_recv().unwrap()),
            [(Delete, k("k2"), false)]
        );
        assert!(receiver.try_recv().is_err());
    }

    #[test]
    fn a_closed_stream_drops_its_watchers_and_duplicate_ids_are_refused() {
        let store = store_with_puts(1);
        let (sender, receiver) = mpsc::channel(4);
        let mut watchers = Watchers::default();
        watchers.create(create(sender.clone(), 1, 0), 1, 1).unwrap();
        assert_eq!(
            watchers.create(create(sender, 1, 0), 1, 1),
            Err(CreateError::DuplicateId)
        );
        drop(receiver);
        watchers.deliver(&store, 1);
        assert!(watchers.is_empty());
    }
}
