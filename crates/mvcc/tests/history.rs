//! Compaction and the event feed for watches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{
    DeleteRangeRequest, Error, Event, EventKind, KeyRange, KeyValue, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use common::{kv, memory};

#[test]
fn compaction_keeps_every_read_at_or_above_the_compact_revision() {
    let mut h = memory();
    h.put("a", "1"); // 2
    h.put("a", "2"); // 3
    h.put("b", "1"); // 4
    h.put("a", "3"); // 5
    let before: Vec<_> = (4..=5)
        .map(|revision| h.get_at("a", revision).unwrap())
        .collect();
    assert_eq!(
        h.try_compact(4).unwrap(),
        5,
        "compaction answers the current revision"
    );
    let after: Vec<_> = (4..=5)
        .map(|revision| h.get_at("a", revision).unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(h.get_at("a", 4).unwrap(), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(h.store.compact_revision(), Some(4));
    assert_eq!(
        h.store.current_revision(),
        5,
        "compaction makes no revision"
    );
    assert_eq!(h.store.revision_count(), 3, "a@3, b@4, a@5");
}

#[test]
fn a_read_below_the_compact_revision_is_compacted() {
    let mut h = memory();
    h.put("a", "1");
    h.put("a", "2");
    h.try_compact(3).unwrap();
    let error = h.get_at("a", 2).unwrap_err();
    assert_eq!(
        error,
        Error::Compacted {
            compact_revision: 3
        }
    );
    assert_eq!(
        error.to_string(),
        "mvcc: required revision has been compacted"
    );
    assert!(h.get_at("a", 3).unwrap().is_some());
}

#[test]
fn compaction_drops_keys_deleted_at_or_below_it() {
    let mut h = memory();
    h.put("a", "1"); // 2
    h.delete("a"); // 3
    h.put("b", "1"); // 4
    h.delete("b"); // 5
    h.try_compact(3).unwrap();
    assert_eq!(h.store.key_count(), 1, "only b is left");
    assert_eq!(h.get_at("b", 4).unwrap(), Some(kv("b", "1", 4, 4, 1)));
    h.try_compact(5).unwrap();
    assert_eq!(h.store.key_count(), 0);
    assert_eq!(h.store.backend().len(), 0);
    assert_eq!(
        h.put("a", "2"),
        6,
        "revisions go on after everything was compacted"
    );
}

#[test]
fn compacting_at_or_below_the_last_compaction_or_in_the_future_is_refused() {
    let mut h = memory();
    h.put("a", "1");
    h.put("a", "2");
    assert_eq!(
        h.try_compact(4).unwrap_err(),
        Error::FutureRevision {
            current_revision: 3
        }
    );
    h.try_compact(2).unwrap();
    assert_eq!(
        h.try_compact(2).unwrap_err(),
        Error::Compacted {
            compact_revision: 2
        }
    );
    assert_eq!(
        h.try_compact(1).unwrap_err(),
        Error::Compacted {
            compact_revision: 2
        }
    );
    h.try_compact(3).unwrap();
    assert_eq!(h.store.compact_revision(), Some(3));
}

#[test]
fn a_version_survives_compaction_of_the_puts_before_it() {
    let mut h = memory();
    for value in ["1", "2", "3"] {
        h.put("a", value);
    }
    h.try_compact(4).unwrap();
    h.put("a", "4");
    assert_eq!(h.get("a"), Some(kv("a", "4", 2, 5, 4)));
}

fn put_event(kv: KeyValue, prev_kv: Option<KeyValue>) -> Event {
    Event {
        kind: EventKind::Put,
        kv,
        prev_kv,
    }
}

fn delete_event(key: &str, revision: i64, prev_kv: KeyValue) -> Event {
    let kv = KeyValue {
        key: key.into(),
        mod_revision: revision,
        ..KeyValue::default()
    };
    Event {
        kind: EventKind::Delete,
        kv,
        prev_kv: Some(prev_kv),
    }
}

#[test]
fn writes_return_their_events_with_the_versions_they_replaced() {
    let mut h = memory();
    let first = h.try_put(PutRequest::new("a", "1")).unwrap();
    assert_eq!(first.events, [put_event(kv("a", "1", 2, 2, 1), None)]);
    let second = h.try_put(PutRequest::new("a", "2")).unwrap();
    assert_eq!(
        second.events,
        [put_event(
            kv("a", "2", 2, 3, 2),
            Some(kv("a", "1", 2, 2, 1))
        )]
    );
    let deleted = h.try_delete(DeleteRangeRequest::key("a")).unwrap();
    assert_eq!(
        deleted.events,
        [delete_event("a", 4, kv("a", "2", 2, 3, 2))]
    );
}

#[test]
fn events_since_replays_what_the_writes_returned() {
    let mut h = memory();
    let mut returned = Vec::new();
    returned.extend(h.try_put(PutRequest::new("a", "1")).unwrap().events);
    returned.extend(h.try_put(PutRequest::new("b", "1")).unwrap().events);
    let request = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new("c", "1")),
            RequestOp::DeleteRange(DeleteRangeRequest::key("a")),
            RequestOp::Put(PutRequest::new("b", "2")),
        ],
        ..TxnRequest::default()
    };
    returned.extend(h.txn(request).events);
    returned.extend(h.try_delete(DeleteRangeRequest::key("c")).unwrap().events);
    assert_eq!(
        h.store.events_since(1, &KeyRange::all(), 100).unwrap(),
        returned
    );
    assert_eq!(
        h.store.events_since(4, &KeyRange::all(), 100).unwrap(),
        returned[2..]
    );
    let only_b = h
        .store
        .events_since(0, &KeyRange::Key(b"b".to_vec()), 100)
        .unwrap();
    assert_eq!(only_b, vec![returned[1].clone(), returned[4].clone()]);
    assert!(
        h.store
            .events_since(6, &KeyRange::all(), 100)
            .unwrap()
            .is_empty(),
        "future: none"
    );
}

#[test]
fn events_since_never_splits_a_revision() {
    let mut h = memory();
    h.put("a", "1"); // 2
    let ops = ["x", "y", "z"]
        .map(|key| RequestOp::Put(PutRequest::new(key, "1")))
        .to_vec();
    h.txn(TxnRequest {
        success: ops,
        ..TxnRequest::default()
    }); // 3, three events
    h.put("b", "1"); // 4
    let revisions =
        |events: Vec<Event>| events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>();
    assert_eq!(
        revisions(h.store.events_since(2, &KeyRange::all(), 1).unwrap()),
        [2]
    );
    assert_eq!(
        revisions(h.store.events_since(2, &KeyRange::all(), 2).unwrap()),
        [2, 3, 3, 3]
    );
    assert_eq!(
        revisions(h.store.events_since(3, &KeyRange::all(), 1).unwrap()),
        [3, 3, 3]
    );
    assert_eq!(
        revisions(h.store.events_since(4, &KeyRange::all(), 1).unwrap()),
        [4]
    );
}

#[test]
fn events_below_the_compact_revision_are_compacted_and_at_it_only_puts_remain() {
    let mut h = memory();
    h.put("a", "1"); // 2
    h.put("b", "1"); // 3
    h.txn(TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new("a", "2")),
            RequestOp::DeleteRange(DeleteRangeRequest::key("b")),
        ],
        ..TxnRequest::default()
    }); // 4
    h.put("a", "3"); // 5
    h.try_compact(4).unwrap();
    let error = h.store.events_since(3, &KeyRange::all(), 100).unwrap_err();
    assert_eq!(
        error,
        Error::Compacted {
            compact_revision: 4
        }
    );
    let events = h.store.events_since(4, &KeyRange::all(), 100).unwrap();
    assert_eq!(
        events,
        [
            put_event(kv("a", "2", 2, 4, 2), None),
            put_event(kv("a", "3", 2, 5, 3), Some(kv("a", "2", 2, 4, 2))),
        ],
        "the delete of b at 4 was compacted away, and so were the versions before 4"
    );
}

#[test]
fn a_range_at_the_compact_revision_after_deleting_there_finds_nothing() {
    let mut h = memory();
    h.put("a", "1");
    h.delete("a");
    h.try_compact(3).unwrap();
    let response = h
        .range(RangeRequest {
            revision: 3,
            ..RangeRequest::key("a")
        })
        .unwrap();
    assert_eq!((response.kvs.len(), response.count), (0, 0));
}
