//! Revisions, puts, deletes and ranges, checked against etcd's documented behaviour
//! (api/etcdserverpb/rpc.proto field meanings; the mvcc store's revision rules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{
    prefix_range_end, DeleteRangeRequest, Error, KeyRange, KeyValue, PutRequest, RangeRequest,
    SortOrder, SortTarget,
};
use common::{keys, kv, memory};

#[test]
fn empty_store_is_at_revision_one_and_the_first_write_makes_revision_two() {
    let mut h = memory();
    assert_eq!(h.store.current_revision(), 1);
    assert_eq!(h.store.compact_revision(), None);
    assert_eq!(h.put("a", "1"), 2);
    assert_eq!(h.store.current_revision(), 2);
}

#[test]
fn each_put_makes_one_revision_and_tracks_create_mod_and_version() {
    let mut h = memory();
    h.put("a", "1");
    h.put("b", "1");
    h.put("a", "2");
    assert_eq!(h.get("a"), Some(kv("a", "2", 2, 4, 2)));
    assert_eq!(h.get("b"), Some(kv("b", "1", 3, 3, 1)));
}

#[test]
fn a_put_after_a_delete_gets_a_new_create_revision_and_version_one() {
    let mut h = memory();
    h.put("a", "1");
    h.put("a", "2");
    assert_eq!(h.delete("a"), 1);
    assert_eq!(h.get("a"), None);
    assert_eq!(h.put("a", "3"), 5);
    assert_eq!(h.get("a"), Some(kv("a", "3", 5, 5, 1)));
}

#[test]
fn a_delete_makes_a_revision_and_deleting_nothing_makes_none() {
    let mut h = memory();
    h.put("a", "1");
    let applied = h.try_delete(DeleteRangeRequest::key("a")).unwrap();
    assert_eq!(
        (applied.response.deleted, applied.response.revision),
        (1, 3)
    );
    let applied = h.try_delete(DeleteRangeRequest::key("a")).unwrap();
    assert_eq!(
        (applied.response.deleted, applied.response.revision),
        (0, 3)
    );
    assert!(applied.events.is_empty());
    assert_eq!(h.store.current_revision(), 3);
}

#[test]
fn a_range_delete_removes_every_key_in_one_revision_and_returns_prev_kvs_when_asked() {
    let mut h = memory();
    for key in ["a", "b", "c", "d"] {
        h.put(key, "v");
    }
    let request = DeleteRangeRequest {
        key: b"b".to_vec(),
        range_end: b"d".to_vec(),
        prev_kv: true,
    };
    let applied = h.try_delete(request).unwrap();
    assert_eq!(applied.response.deleted, 2);
    assert_eq!(applied.response.revision, 6);
    assert_eq!(keys(&applied.response.prev_kvs), ["b", "c"]);
    assert_eq!(applied.response.prev_kvs[0], kv("b", "v", 3, 3, 1));
    assert_eq!(
        keys(&h.range(RangeRequest::range(&KeyRange::all())).unwrap().kvs),
        ["a", "d"]
    );
    let without = h.try_delete(DeleteRangeRequest::key("a")).unwrap();
    assert!(without.response.prev_kvs.is_empty());
}

#[test]
fn put_returns_the_previous_version_only_when_asked() {
    let mut h = memory();
    h.put("a", "1");
    let plain = h.try_put(PutRequest::new("a", "2")).unwrap();
    assert_eq!(plain.response.prev_kv, None);
    let request = PutRequest {
        prev_kv: true,
        ..PutRequest::new("a", "3")
    };
    let asked = h.try_put(request).unwrap();
    assert_eq!(asked.response.prev_kv, Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(asked.response.revision, 4);
    let request = PutRequest {
        prev_kv: true,
        ..PutRequest::new("new", "1")
    };
    assert_eq!(h.try_put(request).unwrap().response.prev_kv, None);
}

#[test]
fn a_lease_is_stored_with_the_key_and_ignore_lease_keeps_it() {
    let mut h = memory();
    h.try_put(PutRequest {
        lease: 42,
        ..PutRequest::new("a", "1")
    })
    .unwrap();
    assert_eq!(h.get("a").unwrap().lease, 42);
    h.try_put(PutRequest {
        ignore_lease: true,
        ..PutRequest::new("a", "2")
    })
    .unwrap();
    let a = h.get("a").unwrap();
    assert_eq!((a.value.as_slice(), a.lease, a.version), (&b"2"[..], 42, 2));
    h.put("a", "3");
    assert_eq!(
        h.get("a").unwrap().lease,
        0,
        "a plain put detaches the lease"
    );
}

#[test]
fn ignore_value_keeps_the_value_and_takes_the_new_lease() {
    let mut h = memory();
    h.put("a", "keep");
    let request = PutRequest {
        ignore_value: true,
        lease: 7,
        ..PutRequest::new("a", "")
    };
    h.try_put(request).unwrap();
    assert_eq!(
        h.get("a"),
        Some(KeyValue {
            lease: 7,
            ..kv("a", "keep", 2, 3, 2)
        })
    );
}

#[test]
fn ignore_value_or_ignore_lease_on_a_missing_key_is_key_not_found_and_writes_nothing() {
    let mut h = memory();
    let applied_before = h.store.applied_index();
    let request = PutRequest {
        ignore_value: true,
        ..PutRequest::new("a", "")
    };
    assert_eq!(h.try_put(request).unwrap_err(), Error::KeyNotFound);
    let request = PutRequest {
        ignore_lease: true,
        ..PutRequest::new("a", "v")
    };
    assert_eq!(h.try_put(request).unwrap_err(), Error::KeyNotFound);
    assert_eq!(h.store.current_revision(), 1);
    assert_eq!(
        h.store.applied_index(),
        applied_before + 2,
        "refused entries are still applied"
    );
    assert_eq!(Error::KeyNotFound.to_string(), "etcdserver: key not found");
}

#[test]
fn ignore_value_with_a_value_and_ignore_lease_with_a_lease_are_refused() {
    let mut h = memory();
    h.put("a", "1");
    let request = PutRequest {
        ignore_value: true,
        ..PutRequest::new("a", "x")
    };
    assert_eq!(h.try_put(request).unwrap_err(), Error::ValueProvided);
    let request = PutRequest {
        ignore_lease: true,
        lease: 3,
        ..PutRequest::new("a", "x")
    };
    assert_eq!(h.try_put(request).unwrap_err(), Error::LeaseProvided);
    assert_eq!(
        Error::ValueProvided.to_string(),
        "etcdserver: value is provided"
    );
    assert_eq!(
        Error::LeaseProvided.to_string(),
        "etcdserver: lease is provided"
    );
    assert_eq!(h.store.current_revision(), 2);
}

#[test]
fn an_empty_key_is_refused() {
    let mut h = memory();
    assert_eq!(
        h.try_put(PutRequest::new("", "v")).unwrap_err(),
        Error::EmptyKey
    );
    assert_eq!(
        h.try_delete(DeleteRangeRequest::key("")).unwrap_err(),
        Error::EmptyKey
    );
    assert_eq!(h.range(RangeRequest::key("")).unwrap_err(), Error::EmptyKey);
    assert_eq!(
        Error::EmptyKey.to_string(),
        "etcdserver: key is not provided"
    );
}

#[test]
fn prefix_range_end_increments_the_last_byte_below_0xff() {
    assert_eq!(prefix_range_end(b"abc"), b"abd");
    assert_eq!(prefix_range_end(b"a\xff"), b"b");
    assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
    assert_eq!(
        prefix_range_end(b"\xff\xff"),
        b"\0",
        "no end: every key >= the prefix"
    );
    assert_eq!(prefix_range_end(b""), b"\0");
}

fn range(key: &str, range_end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.to_vec(),
        ..RangeRequest::default()
    }
}

#[test]
fn range_end_follows_etcds_conventions() {
    let mut h = memory();
    for key in ["a", "ab", "abc", "b", "c"] {
        h.put(key, "v");
    }
    let read = |request| keys(&h.range(request).unwrap().kvs);
    assert_eq!(
        read(range("ab", b"")),
        ["ab"],
        "empty range_end: the one key"
    );
    assert_eq!(
        read(range("ab", b"\0")),
        ["ab", "abc", "b", "c"],
        "\\0: every key >= key"
    );
    assert_eq!(
        read(range("\0", b"\0")),
        ["a", "ab", "abc", "b", "c"],
        "all keys"
    );
    assert_eq!(
        read(range("a", b"b")),
        ["a", "ab", "abc"],
        "[key, range_end)"
    );
    assert_eq!(
        read(range("ab", &prefix_range_end(b"ab"))),
        ["ab", "abc"],
        "prefix"
    );
    assert!(read(range("b", b"a")).is_empty(), "range_end below key");
    assert!(read(range("b", b"b")).is_empty(), "range_end equal to key");
    assert!(read(range("zz", b"")).is_empty(), "absent key");
}

#[test]
fn a_range_at_a_past_revision_sees_the_store_as_it_was() {
    let mut h = memory();
    h.put("a", "1"); // 2
    h.put("b", "1"); // 3
    h.put("a", "2"); // 4
    h.delete("b"); // 5
    assert_eq!(h.get_at("a", 2).unwrap(), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(h.get_at("a", 3).unwrap(), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(h.get_at("a", 4).unwrap(), Some(kv("a", "2", 2, 4, 2)));
    assert_eq!(h.get_at("b", 4).unwrap(), Some(kv("b", "1", 3, 3, 1)));
    assert_eq!(h.get_at("b", 5).unwrap(), None);
    assert_eq!(h.get_at("a", 1).unwrap(), None);
    assert_eq!(
        h.get_at("a", 0).unwrap(),
        Some(kv("a", "2", 2, 4, 2)),
        "0 reads the current one"
    );
    let response = h
        .range(RangeRequest {
            revision: 2,
            ..RangeRequest::key("a")
        })
        .unwrap();
    assert_eq!(
        response.revision, 5,
        "the header revision is the current one"
    );
}

#[test]
fn a_range_above_the_current_revision_is_a_future_revision() {
    let mut h = memory();
    h.put("a", "1");
    let error = h.get_at("a", 3).unwrap_err();
    assert_eq!(
        error,
        Error::FutureRevision {
            current_revision: 2
        }
    );
    assert_eq!(
        error.to_string(),
        "mvcc: required revision is a future revision"
    );
}

#[test]
fn limit_truncates_sets_more_and_count_counts_every_key_in_the_range() {
    let mut h = memory();
    for key in ["a", "b", "c", "d"] {
        h.put(key, "v");
    }
    let limited = h
        .range(RangeRequest {
            limit: 2,
            ..range("a", b"\0")
        })
        .unwrap();
    assert_eq!(
        (keys(&limited.kvs), limited.more, limited.count),
        (vec!["a".into(), "b".into()], true, 4)
    );
    let exact = h
        .range(RangeRequest {
            limit: 4,
            ..range("a", b"\0")
        })
        .unwrap();
    assert_eq!((exact.kvs.len(), exact.more, exact.count), (4, false, 4));
    let beyond = h
        .range(RangeRequest {
            limit: 9,
            ..range("a", b"\0")
        })
        .unwrap();
    assert_eq!((beyond.kvs.len(), beyond.more), (4, false));
    let negative = h
        .range(RangeRequest {
            limit: -1,
            ..range("a", b"\0")
        })
        .unwrap();
    assert_eq!(
        (negative.kvs.len(), negative.more),
        (4, false),
        "a negative limit is no limit"
    );
}

#[test]
fn count_only_returns_the_count_and_no_key_values() {
    let mut h = memory();
    for key in ["a", "b", "c"] {
        h.put(key, "v");
    }
    h.delete("b");
    let response = h
        .range(RangeRequest {
            count_only: true,
            ..range("a", b"\0")
        })
        .unwrap();
    assert_eq!(
        (response.kvs.len(), response.count, response.more),
        (0, 2, false)
    );
    let past = RangeRequest {
        count_only: true,
        revision: 4,
        ..range("a", b"\0")
    };
    assert_eq!(h.range(past).unwrap().count, 3);
}

#[test]
fn keys_only_drops_the_values() {
    let mut h = memory();
    h.put("a", "value");
    let response = h
        .range(RangeRequest {
            keys_only: true,
            ..RangeRequest::key("a")
        })
        .unwrap();
    assert_eq!(response.kvs, vec![kv("a", "", 2, 2, 1)]);
}

#[test]
fn sorting_orders_by_each_target_and_a_target_without_an_order_sorts_ascending() {
    let mut h = memory();
    h.put("c", "1"); // create 2
    h.put("a", "3"); // create 3
    h.put("b", "2"); // create 4
    h.put("a", "4"); // a: version 2, mod 5
    let sorted = |order, target| {
        let request = RangeRequest {
            sort_order: order,
            sort_target: target,
            ..range("a", b"\0")
        };
        keys(&h.range(request).unwrap().kvs).join("")
    };
    assert_eq!(sorted(SortOrder::None, SortTarget::Key), "abc");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Key), "abc");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Key), "cba");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Create), "cab");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Create), "bac");
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Create),
        "cab",
        "no order means ascending"
    );
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Mod), "cba");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Mod), "abc");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Value), "cba");
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Value), "abc");
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Version),
        "abc",
        "ties keep key order"
    );
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Version), "bca");
}

#[test]
fn sorting_happens_before_the_limit() {
    let mut h = memory();
    for key in ["a", "b", "c"] {
        h.put(key, "v");
    }
    let request = RangeRequest {
        limit: 1,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Key,
        ..range("a", b"\0")
    };
    let response = h.range(request).unwrap();
    assert_eq!(
        (keys(&response.kvs), response.more, response.count),
        (vec!["c".into()], true, 3)
    );
}

#[test]
fn revision_filters_apply_after_counting_and_before_the_limit() {
    let mut h = memory();
    h.put("a", "1"); // 2
    h.put("b", "1"); // 3
    h.put("c", "1"); // 4
    h.put("a", "2"); // 5: a created 2, mod 5
    let filtered = |request: RangeRequest| {
        let response = h.range(request).unwrap();
        (keys(&response.kvs).join(""), response.count, response.more)
    };
    let all = range("a", b"\0");
    assert_eq!(
        filtered(RangeRequest {
            min_mod_revision: 4,
            ..all.clone()
        }),
        ("ac".into(), 3, false)
    );
    assert_eq!(
        filtered(RangeRequest {
            max_mod_revision: 4,
            ..all.clone()
        }),
        ("bc".into(), 3, false)
    );
    assert_eq!(
        filtered(RangeRequest {
            min_create_revision: 3,
            ..all.clone()
        }),
        ("bc".into(), 3, false)
    );
    assert_eq!(
        filtered(RangeRequest {
            max_create_revision: 3,
            ..all.clone()
        }),
        ("ab".into(), 3, false)
    );
    let request = RangeRequest {
        min_mod_revision: 3,
        limit: 1,
        ..all
    };
    assert_eq!(
        filtered(request),
        ("a".into(), 3, true),
        "more counts what the filter kept"
    );
}

#[test]
fn every_write_advances_the_applied_index() {
    let mut h = memory();
    h.put("a", "1");
    assert_eq!(h.store.applied_index(), 1);
    h.delete("nothing");
    assert_eq!(h.store.applied_index(), 2);
    h.store.record_applied_index(10).unwrap();
    assert_eq!(h.store.applied_index(), 10);
    h.store.check_invariants();
    assert_eq!(h.store.backend().len(), 1);
}

#[test]
#[should_panic(expected = "applied index goes back")]
fn an_applied_index_that_goes_back_is_a_programmer_error() {
    let mut h = memory();
    h.store.put(5, PutRequest::new("a", "1")).unwrap();
    let _ = h.store.put(4, PutRequest::new("a", "2"));
}

#[test]
fn without_prev_kv_in_events_a_put_still_answers_prev_kv_ignore_value_and_the_history() {
    let config = chorus_mvcc::Config {
        events_prev_kv: false,
        ..chorus_mvcc::Config::default()
    };
    let store = chorus_mvcc::Store::open(chorus_mvcc::MemoryBackend::new(), config).unwrap();
    let mut h = common::Harness::new(store);
    h.put("a", "1");
    let plain = h.try_put(PutRequest::new("a", "2")).unwrap();
    assert_eq!(plain.response.prev_kv, None);
    assert_eq!(
        plain.events[0].prev_kv, None,
        "the event carries no prev_kv"
    );
    assert_eq!(plain.events[0].kv, kv("a", "2", 2, 3, 2));
    let asked = h
        .try_put(PutRequest {
            prev_kv: true,
            ..PutRequest::new("a", "3")
        })
        .unwrap();
    assert_eq!(asked.response.prev_kv, Some(kv("a", "2", 2, 3, 2)));
    h.try_put(PutRequest {
        ignore_value: true,
        ..PutRequest::new("a", "")
    })
    .unwrap();
    assert_eq!(h.get("a"), Some(kv("a", "3", 2, 5, 4)));
    // Watchers reading the history still get every previous version.
    let history = h
        .store
        .events_since(3, &KeyRange::Key(b"a".to_vec()), 10)
        .unwrap();
    assert_eq!(history[0].prev_kv, Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(history[2].prev_kv, Some(kv("a", "3", 2, 4, 3)));
}
