//! The watch hub against etcd v3's Watch semantics, over a `chorus_mvcc::Store` written to
//! directly: future and historical watches, ranges, filters, `prev_kv`, compaction, slow
//! consumers that fall back to catch-up, cancel, progress, and a property test of exactly-once,
//! in-order delivery.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{
    Config, DeleteRangeRequest, Event, EventKind, MemoryBackend, PutRequest, RequestOp, Store,
    TxnRequest,
};
use chorus_replica::WatchResponse;
use chorus_replica::{StreamId, WatchConfig, WatchCreate, WatchError, WatchHub, WatchId};
use proptest::prelude::*;

const STREAM: StreamId = StreamId(1);

/// A store and a hub, fed the way the replica's driver feeds them.
struct Fixture {
    store: Store<MemoryBackend>,
    hub: WatchHub,
    applied_index: u64,
}

impl Fixture {
    fn new(config: WatchConfig) -> Fixture {
        let store = Store::open(MemoryBackend::new(), Config::default()).unwrap();
        let hub = WatchHub::new(config, store.current_revision());
        Fixture {
            store,
            hub,
            applied_index: 0,
        }
    }

    fn with_buffer(watch_events_buffered_max: usize) -> Fixture {
        Fixture::new(WatchConfig {
            watch_events_buffered_max,
            ..WatchConfig::default()
        })
    }

    fn next_index(&mut self) -> u64 {
        self.applied_index += 1;
        self.applied_index
    }

    fn feed(&mut self, events: Vec<Event>) -> Vec<Event> {
        let revision = self.store.current_revision();
        self.hub.on_applied(&events, revision);
        self.hub.check_invariants();
        events
    }

    fn put(&mut self, key: &str, value: &str) -> Vec<Event> {
        let index = self.next_index();
        let applied = self.store.put(index, PutRequest::new(key, value)).unwrap();
        self.feed(applied.events)
    }

    fn delete(&mut self, request: DeleteRangeRequest) -> Vec<Event> {
        let index = self.next_index();
        let applied = self.store.delete_range(index, request).unwrap();
        self.feed(applied.events)
    }

    /// Puts every `(key, value)` in one transaction: one revision.
    fn put_all(&mut self, pairs: &[(&str, &str)]) -> Vec<Event> {
        let index = self.next_index();
        let request = TxnRequest {
            success: pairs
                .iter()
                .map(|(key, value)| RequestOp::Put(PutRequest::new(*key, *value)))
                .collect(),
            ..TxnRequest::default()
        };
        let applied = self.store.txn(index, request).unwrap();
        self.feed(applied.events)
    }

    fn compact(&mut self, revision: i64) {
        let index = self.next_index();
        self.store.compact(index, revision).unwrap();
    }

    fn create(&mut self, request: WatchCreate) -> WatchId {
        let watch_id = self.hub.create(request, STREAM, &self.store).unwrap();
        self.hub.check_invariants();
        watch_id
    }

    fn sync(&mut self, events_max: usize) {
        self.hub.sync_unsynced(&self.store, events_max).unwrap();
        self.hub.check_invariants();
    }

    fn poll(&mut self) -> Vec<WatchResponse> {
        let responses = self.hub.poll(STREAM);
        self.hub.check_invariants();
        responses
    }

    /// Polls and returns the events of `watch_id`'s responses, checking that each response holds
    /// whole revisions in order.
    fn poll_events(&mut self, watch_id: WatchId) -> Vec<Event> {
        self.poll()
            .into_iter()
            .filter(|response| response.watch_id == watch_id)
            .flat_map(|response| response.events)
            .collect()
    }
}

fn created(watch_id: WatchId, revision: i64) -> WatchResponse {
    WatchResponse {
        watch_id,
        created: true,
        revision,
        ..WatchResponse::default()
    }
}

fn keys(events: &[Event]) -> Vec<(EventKind, String, i64)> {
    events
        .iter()
        .map(|event| {
            (
                event.kind,
                String::from_utf8_lossy(&event.kv.key).into_owned(),
                event.kv.mod_revision,
            )
        })
        .collect()
}

fn strip_prev(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .map(|event| Event {
            prev_kv: None,
            ..event.clone()
        })
        .collect()
}

#[test]
fn a_watch_from_now_sees_only_later_events() {
    let mut fixture = Fixture::with_buffer(16);
    fixture.put("a", "1");
    let watch_id = fixture.create(WatchCreate::key("a"));
    assert_eq!(watch_id, WatchId(0), "etcd picks ids from 0");
    assert_eq!(fixture.poll(), vec![created(watch_id, 2)]);
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), Some(true));

    let put = fixture.put("a", "2");
    fixture.put("b", "x");
    assert_eq!(
        fixture.poll(),
        vec![WatchResponse {
            watch_id,
            events: strip_prev(&put),
            revision: 3,
            ..WatchResponse::default()
        }]
    );
}

#[test]
fn a_watch_from_a_future_revision_waits_for_it() {
    let mut fixture = Fixture::with_buffer(16);
    let watch_id = fixture.create(WatchCreate {
        start_revision: 4,
        ..WatchCreate::key("a")
    });
    fixture.poll();
    fixture.put("a", "2"); // revision 2
    fixture.put("a", "3"); // revision 3
    let put = fixture.put("a", "4");
    assert_eq!(fixture.poll_events(watch_id), strip_prev(&put));
}

#[test]
fn a_historical_watch_catches_up_in_batches_then_goes_live_without_gap_or_duplicate() {
    let mut fixture = Fixture::with_buffer(16);
    let mut all = Vec::new();
    for value in 0..10 {
        all.extend(fixture.put("k", &value.to_string())); // revisions 2..=11
    }
    let watch_id = fixture.create(WatchCreate {
        start_revision: 4,
        ..WatchCreate::key("k")
    });
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), Some(false));
    assert_eq!(fixture.poll(), vec![created(watch_id, 11)]);

    let mut seen = Vec::new();
    // Catch-up 3 events at a time, with writes landing between the batches.
    for value in 10..13 {
        fixture.sync(3);
        seen.extend(fixture.poll_events(watch_id));
        all.extend(fixture.put("k", &value.to_string()));
    }
    while fixture.hub.unsynced_count() > 0 {
        fixture.sync(3);
        seen.extend(fixture.poll_events(watch_id));
    }
    all.extend(fixture.put("k", "live"));
    seen.extend(fixture.poll_events(watch_id));

    let expected: Vec<Event> = strip_prev(&all)
        .into_iter()
        .filter(|event| event.kv.mod_revision >= 4)
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn catch_up_never_goes_past_the_revision_the_hub_was_told_of() {
    let mut fixture = Fixture::with_buffer(16);
    fixture.put("k", "1");
    let watch_id = fixture.create(WatchCreate {
        start_revision: 1,
        ..WatchCreate::key("k")
    });
    fixture.poll();
    // A write applied but not yet passed to the hub: the catch-up stops before it ...
    let applied = fixture.store.put(99, PutRequest::new("k", "2")).unwrap();
    fixture.sync(100);
    assert_eq!(
        keys(&fixture.poll_events(watch_id)),
        [(EventKind::Put, "k".into(), 2)]
    );
    // ... and it comes live.
    fixture.hub.on_applied(&applied.events, 3);
    assert_eq!(
        keys(&fixture.poll_events(watch_id)),
        [(EventKind::Put, "k".into(), 3)]
    );
}

#[test]
fn prefix_and_range_watches_see_only_their_keys() {
    let mut fixture = Fixture::with_buffer(16);
    let prefix = fixture.create(WatchCreate::prefix("app/"));
    let range = fixture.create(WatchCreate {
        range_end: b"c".to_vec(),
        ..WatchCreate::key("b")
    });
    let from = fixture.create(WatchCreate {
        range_end: vec![0],
        ..WatchCreate::key("b")
    });
    let all = fixture.create(WatchCreate {
        range_end: vec![0],
        ..WatchCreate::key("")
    });
    fixture.poll();
    fixture.put_all(&[
        ("app/x", "1"),
        ("apq", "2"),
        ("b", "3"),
        ("bz", "4"),
        ("c", "5"),
    ]);
    let responses = fixture.poll();
    let of = |watch_id: WatchId| -> Vec<String> {
        responses
            .iter()
            .filter(|response| response.watch_id == watch_id)
            .flat_map(|response| &response.events)
            .map(|event| String::from_utf8_lossy(&event.kv.key).into_owned())
            .collect()
    };
    assert_eq!(of(prefix), ["app/x"]);
    assert_eq!(of(range), ["b", "bz"]);
    assert_eq!(of(from), ["b", "bz", "c"]);
    assert_eq!(of(all), ["app/x", "apq", "b", "bz", "c"]);
    assert_eq!(
        responses.len(),
        4,
        "one response per watcher for the one revision"
    );
}

#[test]
fn filters_drop_puts_or_deletes() {
    let mut fixture = Fixture::with_buffer(16);
    let no_put = fixture.create(WatchCreate {
        no_put: true,
        ..WatchCreate::key("k")
    });
    let no_delete = fixture.create(WatchCreate {
        no_delete: true,
        ..WatchCreate::key("k")
    });
    fixture.poll();
    fixture.put("k", "1");
    fixture.delete(DeleteRangeRequest::key("k"));
    let responses = fixture.poll();
    let kinds = |watch_id: WatchId| -> Vec<EventKind> {
        responses
            .iter()
            .filter(|response| response.watch_id == watch_id)
            .flat_map(|response| &response.events)
            .map(|event| event.kind)
            .collect()
    };
    assert_eq!(kinds(no_put), [EventKind::Delete]);
    assert_eq!(kinds(no_delete), [EventKind::Put]);
    assert_eq!(responses.len(), 2, "a filtered-out revision sends nothing");
}

#[test]
fn prev_kv_is_sent_only_when_asked_live_and_from_history() {
    let mut fixture = Fixture::with_buffer(16);
    fixture.put("k", "1");
    let with = fixture.create(WatchCreate {
        prev_kv: true,
        ..WatchCreate::key("k")
    });
    let without = fixture.create(WatchCreate::key("k"));
    let historical = fixture.create(WatchCreate {
        prev_kv: true,
        start_revision: 2,
        ..WatchCreate::key("k")
    });
    fixture.poll();
    let events = fixture.put("k", "2");
    fixture.sync(100);
    let responses = fixture.poll();
    let of = |watch_id: WatchId| -> Vec<Event> {
        responses
            .iter()
            .filter(|response| response.watch_id == watch_id)
            .flat_map(|response| response.events.clone())
            .collect()
    };
    assert_eq!(of(with), events);
    assert_eq!(of(with)[0].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(of(without), strip_prev(&events));
    let history = of(historical);
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].prev_kv, None, "the first put replaced nothing");
    assert_eq!(history[1], events[0]);
}

#[test]
fn a_compacted_start_revision_is_created_then_canceled_with_the_compact_revision() {
    let mut fixture = Fixture::with_buffer(16);
    for value in 0..5 {
        fixture.put("k", &value.to_string()); // revisions 2..=6
    }
    fixture.compact(4);
    let watch_id = fixture.create(WatchCreate {
        start_revision: 3,
        ..WatchCreate::key("k")
    });
    assert_eq!(
        fixture.poll(),
        vec![
            created(watch_id, 6),
            WatchResponse {
                watch_id,
                canceled: true,
                compact_revision: 4,
                revision: 6,
                ..WatchResponse::default()
            }
        ]
    );
    assert_eq!(fixture.hub.watcher_count(STREAM), 0);
    // At the compaction point itself the history is still there (etcd: `minRev < compactRev`).
    let at_compaction = fixture.create(WatchCreate {
        start_revision: 4,
        ..WatchCreate::key("k")
    });
    fixture.sync(100);
    let revisions: Vec<i64> = fixture
        .poll_events(at_compaction)
        .iter()
        .map(|event| event.kv.mod_revision)
        .collect();
    assert_eq!(revisions, [4, 5, 6]);
}

#[test]
fn a_slow_watcher_falls_back_to_catch_up_and_loses_nothing() {
    let mut fixture = Fixture::with_buffer(3);
    let watch_id = fixture.create(WatchCreate::key("k"));
    fixture.poll();
    let mut all = Vec::new();
    // At the limit: three events fit the buffer, the watcher stays synced.
    for value in 0..3 {
        all.extend(fixture.put("k", &value.to_string()));
    }
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), Some(true));
    // One past it: the fourth does not fit, the watcher becomes unsynced.
    for value in 3..8 {
        all.extend(fixture.put("k", &value.to_string()));
    }
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), Some(false));
    // A full buffer is not read for.
    fixture.sync(100);
    let mut seen = fixture.poll_events(watch_id);
    assert_eq!(seen.len(), 3, "only the buffer's worth was queued");
    while fixture.hub.unsynced_count() > 0 {
        fixture.sync(100);
        let batch = fixture.poll_events(watch_id);
        assert!(
            batch.len() <= 3,
            "a catch-up batch is bounded by the buffer"
        );
        seen.extend(batch);
    }
    all.extend(fixture.put("k", "live"));
    seen.extend(fixture.poll_events(watch_id));
    assert_eq!(seen, strip_prev(&all));
}

#[test]
fn a_revision_larger_than_the_buffer_is_queued_whole_into_an_empty_buffer() {
    let mut fixture = Fixture::with_buffer(2);
    let live = fixture.create(WatchCreate::prefix(""));
    let historical = fixture.create(WatchCreate {
        start_revision: 1,
        ..WatchCreate::prefix("")
    });
    fixture.poll();
    let events = fixture.put_all(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    fixture.sync(1);
    let responses = fixture.poll();
    assert_eq!(responses.len(), 2, "{responses:?}");
    for response in responses {
        assert!(response.watch_id == live || response.watch_id == historical);
        assert_eq!(
            response.events,
            strip_prev(&events),
            "one revision, not split"
        );
    }
    assert_eq!(fixture.hub.unsynced_count(), 0);
}

#[test]
fn a_slow_watcher_whose_history_was_compacted_is_canceled() {
    let mut fixture = Fixture::with_buffer(2);
    let watch_id = fixture.create(WatchCreate::key("k"));
    fixture.poll();
    for value in 0..6 {
        fixture.put("k", &value.to_string()); // revisions 2..=7
    }
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), Some(false));
    let seen = fixture.poll_events(watch_id);
    assert_eq!(
        keys(&seen).last().unwrap().2,
        3,
        "revisions 2 and 3 were buffered"
    );
    fixture.compact(6);
    fixture.sync(100);
    assert_eq!(
        fixture.poll(),
        vec![WatchResponse {
            watch_id,
            canceled: true,
            compact_revision: 6,
            revision: 7,
            ..WatchResponse::default()
        }]
    );
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), None);
}

#[test]
fn cancel_and_remove_stream() {
    let mut fixture = Fixture::with_buffer(16);
    let watch_id = fixture.create(WatchCreate::key("k"));
    fixture.poll();
    fixture.hub.cancel(STREAM, watch_id).unwrap();
    assert_eq!(
        fixture.poll(),
        vec![WatchResponse {
            watch_id,
            canceled: true,
            revision: 1,
            ..WatchResponse::default()
        }]
    );
    fixture.put("k", "1");
    assert!(fixture.poll().is_empty());
    assert_eq!(
        fixture.hub.cancel(STREAM, watch_id),
        Err(WatchError::NotFound)
    );
    assert!(
        fixture.poll().is_empty(),
        "etcd answers an unknown cancel with nothing"
    );

    let other = StreamId(2);
    fixture
        .hub
        .create(WatchCreate::key("k"), other, &fixture.store)
        .unwrap();
    fixture.put("k", "2");
    assert!(fixture.hub.remove_stream(other));
    assert!(fixture.hub.poll(other).is_empty());
    assert!(!fixture.hub.remove_stream(other));
    fixture.put("k", "3");
    assert!(fixture.hub.take_ready().is_empty());
}

#[test]
fn a_progress_request_waits_until_every_watcher_of_the_stream_is_synced() {
    let mut fixture = Fixture::with_buffer(16);
    for value in 0..4 {
        fixture.put("k", &value.to_string()); // revisions 2..=5
    }
    fixture.hub.progress(STREAM);
    let progress = |revision| WatchResponse {
        watch_id: WatchId::NONE,
        revision,
        ..WatchResponse::default()
    };
    assert_eq!(
        fixture.poll(),
        vec![progress(5)],
        "no watcher: answered at once"
    );

    let watch_id = fixture.create(WatchCreate {
        start_revision: 2,
        ..WatchCreate::key("k")
    });
    fixture.poll();
    fixture.hub.progress(STREAM);
    assert!(
        fixture.poll().is_empty(),
        "deferred while a watcher is unsynced"
    );
    fixture.sync(2);
    let responses = fixture.poll();
    assert_eq!(responses.len(), 1, "{responses:?}");
    fixture.sync(100);
    let responses = fixture.poll();
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].watch_id, watch_id);
    assert_eq!(responses[1], progress(5), "after the events it vouches for");
}

#[test]
fn progress_notify_watchers_get_the_revision_when_idle() {
    let mut fixture = Fixture::new(WatchConfig {
        progress_notify_interval_ticks: 3,
        ..WatchConfig::default()
    });
    let notified = fixture.create(WatchCreate {
        progress_notify: true,
        ..WatchCreate::key("k")
    });
    let _quiet = fixture.create(WatchCreate::key("k"));
    fixture.poll();
    let notify = WatchResponse {
        watch_id: notified,
        revision: 1,
        ..WatchResponse::default()
    };
    fixture.hub.tick();
    fixture.hub.tick();
    assert!(fixture.poll().is_empty());
    fixture.hub.tick();
    assert_eq!(fixture.poll(), vec![notify.clone()]);

    // Not idle: events during the interval, no notification.
    fixture.put("k", "1");
    fixture.poll();
    for _ in 0..3 {
        fixture.hub.tick();
    }
    assert!(fixture.poll().is_empty());
    // Idle again, but the consumer does not poll: notifications do not pile up.
    for _ in 0..9 {
        fixture.hub.tick();
    }
    assert_eq!(
        fixture.poll(),
        vec![WatchResponse {
            revision: 2,
            ..notify
        }]
    );
}

#[test]
fn a_duplicate_watch_id_is_refused_as_etcd_refuses_it() {
    let mut fixture = Fixture::with_buffer(16);
    let chosen = fixture.create(WatchCreate {
        watch_id: 1,
        ..WatchCreate::key("k")
    });
    assert_eq!(chosen, WatchId(1));
    let refused = fixture.hub.create(
        WatchCreate {
            watch_id: 1,
            ..WatchCreate::key("other")
        },
        STREAM,
        &fixture.store,
    );
    assert_eq!(refused, Err(WatchError::DuplicateWatchId));
    // Picked ids skip the ones in use.
    assert_eq!(fixture.create(WatchCreate::key("k")), WatchId(0));
    assert_eq!(fixture.create(WatchCreate::key("k")), WatchId(2));
    let responses = fixture.poll();
    assert_eq!(
        responses[1],
        WatchResponse {
            watch_id: WatchId::NONE,
            created: true,
            canceled: true,
            cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
            revision: 1,
            ..WatchResponse::default()
        }
    );
    // Another stream may use the same id.
    let other = fixture
        .hub
        .create(
            WatchCreate {
                watch_id: 1,
                ..WatchCreate::key("k")
            },
            StreamId(2),
            &fixture.store,
        )
        .unwrap();
    assert_eq!(other, WatchId(1));
}

#[test]
fn empty_ranges_and_full_streams_are_refused() {
    let mut fixture = Fixture::new(WatchConfig {
        watchers_per_stream_max: 2,
        ..WatchConfig::default()
    });
    let empty = WatchCreate {
        range_end: b"a".to_vec(),
        ..WatchCreate::key("b")
    };
    assert_eq!(
        fixture.hub.create(empty, STREAM, &fixture.store),
        Err(WatchError::EmptyRange)
    );
    fixture.create(WatchCreate::key("k")); // at the limit
    fixture.create(WatchCreate::key("k"));
    assert_eq!(
        fixture
            .hub
            .create(WatchCreate::key("k"), STREAM, &fixture.store),
        Err(WatchError::TooManyWatchers {
            watchers_per_stream_max: 2
        })
    );
    let responses = fixture.poll();
    assert_eq!(responses.len(), 4);
    assert_eq!(responses[0].cancel_reason, "mvcc: watcher range is empty");
    assert!(responses[3].canceled && responses[3].watch_id == WatchId::NONE);
}

#[test]
fn a_restored_store_makes_watchers_catch_up_from_its_history() {
    let mut fixture = Fixture::with_buffer(16);
    let watch_id = fixture.create(WatchCreate::key("k"));
    fixture.poll();
    // Writes the hub never saw one by one, as after a snapshot installation, then entries
    // applied in the same cycle whose events the driver passes on after the restore.
    let mut later = Vec::new();
    for value in 0..3 {
        let index = fixture.next_index();
        let applied = fixture
            .store
            .put(index, PutRequest::new("k", value.to_string()))
            .unwrap();
        later.push(applied.events);
    }
    fixture.hub.on_restored(fixture.store.current_revision());
    for (revision, events) in (2..).zip(&later) {
        fixture.hub.on_applied(events, revision); // covered by the restore: ignored
    }
    assert_eq!(fixture.hub.is_synced(STREAM, watch_id), Some(false));
    fixture.sync(100);
    let revisions: Vec<i64> = keys(&fixture.poll_events(watch_id))
        .iter()
        .map(|(_, _, revision)| *revision)
        .collect();
    assert_eq!(revisions, [2, 3, 4]);
}

// ---------------------------------------------------------------------------------------------
// The property: every watcher sees exactly the events of its range from its start revision, in
// order, each once, in whole revisions, never more than its buffer at a time (or is canceled for
// compaction, having seen a prefix of them).

#[derive(Clone, Debug)]
enum Op {
    Put(u8),
    Delete(u8),
    DeletePrefix(u8),
    PutMany(Vec<u8>),
    Compact(u8),
    Create {
        stream: u8,
        range: u8,
        start_back: u8,
        prev_kv: bool,
        filter: u8,
    },
    Poll(u8),
    Sync(u8),
    Cancel(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6).prop_map(Op::Put),
        1 => (0u8..6).prop_map(Op::Delete),
        1 => (0u8..2).prop_map(Op::DeletePrefix),
        2 => proptest::collection::vec(0u8..6, 1..5).prop_map(Op::PutMany),
        1 => (0u8..100).prop_map(Op::Compact),
        2 => (0u8..3, 0u8..4, 0u8..12, any::<bool>(), 0u8..4).prop_map(
            |(stream, range, start_back, prev_kv, filter)| Op::Create {
                stream,
                range,
                start_back,
                prev_kv,
                filter
            }
        ),
        3 => (0u8..3).prop_map(Op::Poll),
        2 => (1u8..8).prop_map(Op::Sync),
        1 => (0u8..40).prop_map(Op::Cancel),
    ]
}

fn key_name(key: u8) -> String {
    format!("{}{}", if key.is_multiple_of(2) { "a/" } else { "b/" }, key)
}

struct Model {
    request: WatchCreate,
    /// The first revision the watcher reports.
    start: i64,
    received: Vec<Event>,
    responses_last_revision: i64,
    /// The compact revision it was canceled with, if it was.
    compacted: Option<i64>,
    canceled_by_client: bool,
}

fn expected_for(model: &Model, history: &[Event]) -> Vec<Event> {
    let range = chorus_mvcc::KeyRange::from_etcd(&model.request.key, &model.request.range_end);
    history
        .iter()
        .filter(|event| event.kv.mod_revision >= model.start && range.contains(&event.kv.key))
        .filter(|event| match event.kind {
            EventKind::Put => !model.request.no_put,
            EventKind::Delete => !model.request.no_delete,
        })
        .map(|event| Event {
            prev_kv: if model.request.prev_kv {
                event.prev_kv.clone()
            } else {
                None
            },
            ..event.clone()
        })
        .collect()
}

/// At a revision that was a compaction point, history read back has no deletes and no
/// `prev_kv` (etcd's behaviour too); elsewhere the events must be exactly what the writes made.
fn normalize(events: &[Event], compactions: &[i64]) -> Vec<Event> {
    events
        .iter()
        .filter(|event| {
            !(compactions.contains(&event.kv.mod_revision) && event.kind == EventKind::Delete)
        })
        .map(|event| Event {
            prev_kv: if compactions.contains(&event.kv.mod_revision) {
                None
            } else {
                event.prev_kv.clone()
            },
            ..event.clone()
        })
        .collect()
}

fn run(ops: Vec<Op>, buffered_max: usize) -> Result<(), TestCaseError> {
    let mut fixture = Fixture::with_buffer(buffered_max);
    let mut history: Vec<Event> = Vec::new();
    let mut compactions: Vec<i64> = Vec::new();
    let mut models: Vec<((StreamId, WatchId), Model)> = Vec::new();
    let mut largest_revision = 1;

    let deliver = |models: &mut Vec<((StreamId, WatchId), Model)>,
                   stream: StreamId,
                   responses: Vec<WatchResponse>,
                   largest_revision: usize|
     -> Result<(), TestCaseError> {
        let mut per_watcher: std::collections::BTreeMap<WatchId, usize> = Default::default();
        for response in responses {
            if response.watch_id == WatchId::NONE {
                continue;
            }
            let Some((_, model)) = models
                .iter_mut()
                .rev()
                .find(|((s, w), m)| *s == stream && *w == response.watch_id && !m.is_closed())
            else {
                continue;
            };
            if response.canceled {
                prop_assert!(
                    response.compact_revision > 0,
                    "only compaction cancels here"
                );
                model.compacted = Some(response.compact_revision);
                continue;
            }
            if let (Some(first), Some(last)) = (response.events.first(), response.events.last()) {
                prop_assert!(
                    first.kv.mod_revision > model.responses_last_revision,
                    "a revision split or repeated across responses"
                );
                model.responses_last_revision = last.kv.mod_revision;
            }
            *per_watcher.entry(response.watch_id).or_default() += response.events.len();
            model.received.extend(response.events);
        }
        for (watch_id, count) in per_watcher {
            prop_assert!(
                count <= buffered_max.max(largest_revision),
                "{watch_id:?} was queued {count} events between polls"
            );
        }
        Ok(())
    };

    for op in ops {
        match op {
            Op::Put(key) => history.extend(fixture.put(&key_name(key), "v")),
            Op::Delete(key) => {
                history.extend(fixture.delete(DeleteRangeRequest::key(key_name(key))))
            }
            Op::DeletePrefix(prefix) => {
                let prefix = if prefix == 0 { "a/" } else { "b/" };
                let request = DeleteRangeRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: chorus_mvcc::prefix_range_end(prefix.as_bytes()),
                    prev_kv: false,
                };
                let events = fixture.delete(request);
                largest_revision = largest_revision.max(events.len());
                history.extend(events);
            }
            Op::PutMany(mut keys) => {
                keys.sort_unstable();
                keys.dedup();
                let names: Vec<String> = keys.iter().map(|key| key_name(*key)).collect();
                let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "m")).collect();
                let events = fixture.put_all(&pairs);
                largest_revision = largest_revision.max(events.len());
                history.extend(events);
            }
            Op::Compact(at) => {
                let current = fixture.store.current_revision();
                let floor = fixture.store.compact_revision().unwrap_or(0);
                if current > floor {
                    let revision = floor + 1 + i64::from(at) % (current - floor);
                    fixture.compact(revision);
                    compactions.push(revision);
                }
            }
            Op::Create {
                stream,
                range,
                start_back,
                prev_kv,
                filter,
            } => {
                let (key, range_end) = match range {
                    0 => (key_name(0).into_bytes(), Vec::new()),
                    1 => (b"a/".to_vec(), b"a0".to_vec()),
                    2 => (b"a/3".to_vec(), vec![0]),
                    _ => (Vec::new(), vec![0]),
                };
                let current = fixture.store.current_revision();
                let start_revision = if start_back == 0 {
                    0
                } else {
                    (current + 3 - i64::from(start_back)).max(1)
                };
                let request = WatchCreate {
                    key: if key.is_empty() { vec![0] } else { key },
                    range_end,
                    start_revision,
                    prev_kv,
                    no_put: filter == 1,
                    no_delete: filter == 2,
                    ..WatchCreate::default()
                };
                let stream_id = StreamId(u64::from(stream));
                let watch_id = fixture
                    .hub
                    .create(request.clone(), stream_id, &fixture.store)
                    .unwrap();
                let start = if start_revision == 0 {
                    current + 1
                } else {
                    start_revision
                };
                models.push((
                    (stream_id, watch_id),
                    Model {
                        request,
                        start,
                        received: Vec::new(),
                        responses_last_revision: 0,
                        compacted: None,
                        canceled_by_client: false,
                    },
                ));
            }
            Op::Poll(stream) => {
                let stream = StreamId(u64::from(stream));
                let responses = fixture.hub.poll(stream);
                deliver(&mut models, stream, responses, largest_revision)?;
            }
            Op::Sync(events_max) => fixture.sync(usize::from(events_max)),
            Op::Cancel(which) => {
                let open: Vec<usize> = (0..models.len())
                    .filter(|i| !models[*i].1.is_closed())
                    .collect();
                if !open.is_empty() {
                    let index = open[usize::from(which) % open.len()];
                    let (stream, watch_id) = models[index].0;
                    let responses = fixture.hub.poll(stream);
                    deliver(&mut models, stream, responses, largest_revision)?;
                    if models[index].1.is_closed() {
                        continue; // canceled for compaction meanwhile
                    }
                    fixture.hub.cancel(stream, watch_id).unwrap();
                    let responses = fixture.hub.poll(stream);
                    prop_assert_eq!(responses.len(), 1);
                    prop_assert!(responses[0].canceled && responses[0].watch_id == watch_id);
                    prop_assert_eq!(responses[0].compact_revision, 0);
                    models[index].1.canceled_by_client = true;
                }
            }
        }
        fixture.hub.check_invariants();
    }

    // Drain: catch every watcher up and take everything.
    for _ in 0..10_000 {
        fixture.sync(5);
        for (stream, responses) in fixture.hub.take_ready() {
            deliver(&mut models, stream, responses, largest_revision)?;
        }
        if fixture.hub.unsynced_count() == 0 {
            break;
        }
    }
    prop_assert_eq!(fixture.hub.unsynced_count(), 0);

    for ((stream, watch_id), model) in &models {
        let expected = normalize(&expected_for(model, &history), &compactions);
        let received = normalize(&model.received, &compactions);
        if let Some(compact_revision) = model.compacted {
            prop_assert!(
                received.len() <= expected.len() && received[..] == expected[..received.len()],
                "{stream:?}/{watch_id:?} canceled at {compact_revision}: not a prefix"
            );
            let needed = model
                .received
                .last()
                .map_or(model.start, |e| e.kv.mod_revision + 1);
            prop_assert!(
                needed < compact_revision,
                "{stream:?}/{watch_id:?} canceled at {compact_revision} but needed {needed}"
            );
        } else if model.canceled_by_client {
            prop_assert!(received[..] == expected[..received.len()]);
        } else {
            prop_assert_eq!(
                &received,
                &expected,
                "{:?}/{:?} from {}",
                stream,
                watch_id,
                model.start
            );
        }
    }
    Ok(())
}

impl Model {
    fn is_closed(&self) -> bool {
        self.compacted.is_some() || self.canceled_by_client
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_watcher_sees_its_events_exactly_once_in_order(
        ops in proptest::collection::vec(op(), 1..120),
        buffered_max in 1usize..6,
    ) {
        run(ops, buffered_max)?;
    }
}
