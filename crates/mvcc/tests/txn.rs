//! Transactions: compares, branches, nesting, one revision per transaction, duplicate keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, Error, EventKind, PutRequest,
    RangeRequest, RequestOp, ResponseOp, Revision, TxnRequest,
};
use common::{keys, kv, memory};

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest::new(key, value))
}

fn delete(key: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest::key(key))
}

fn delete_range(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: false,
    })
}

fn get(key: &str) -> RequestOp {
    RequestOp::Range(RangeRequest::key(key))
}

fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare::new(key, result, target)
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

#[test]
fn a_txn_runs_success_when_every_compare_holds_and_failure_otherwise() {
    let mut h = memory();
    h.put("a", "1");
    let holds = compare(
        "a",
        CompareResult::Equal,
        CompareTarget::Value(b"1".to_vec()),
    );
    let fails = compare(
        "a",
        CompareResult::Equal,
        CompareTarget::Value(b"2".to_vec()),
    );
    let applied = h.txn(txn(
        vec![holds.clone()],
        vec![put("then", "x")],
        vec![put("else", "x")],
    ));
    assert!(applied.response.succeeded);
    let applied = h.txn(txn(
        vec![holds, fails],
        vec![put("then", "y")],
        vec![put("else", "y")],
    ));
    assert!(!applied.response.succeeded);
    assert_eq!(h.get("then").unwrap().value, b"x");
    assert_eq!(h.get("else").unwrap().value, b"y");
}

#[test]
fn compares_on_each_target_and_result() {
    let mut h = memory();
    h.put("x", "0");
    h.try_put(PutRequest {
        lease: 9,
        ..PutRequest::new("a", "m")
    })
    .unwrap(); // create 3
    h.try_put(PutRequest {
        lease: 9,
        ..PutRequest::new("a", "m")
    })
    .unwrap(); // mod 4, version 2
    let check = |h: &mut common::Harness<_>, result, target| {
        h.txn(txn(vec![compare("a", result, target)], vec![], vec![]))
            .response
            .succeeded
    };
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{CreateRevision, Lease, ModRevision, Value, Version};
    assert!(check(&mut h, Equal, Version(2)));
    assert!(check(&mut h, Greater, Version(1)));
    assert!(check(&mut h, Less, Version(3)));
    assert!(check(&mut h, NotEqual, Version(1)));
    assert!(!check(&mut h, NotEqual, Version(2)));
    assert!(check(&mut h, Equal, CreateRevision(3)));
    assert!(!check(&mut h, Greater, CreateRevision(3)));
    assert!(check(&mut h, Equal, ModRevision(4)));
    assert!(check(&mut h, Less, ModRevision(5)));
    assert!(check(&mut h, Equal, Lease(9)));
    assert!(check(&mut h, NotEqual, Lease(0)));
    assert!(check(&mut h, Equal, Value(b"m".to_vec())));
    assert!(check(&mut h, Greater, Value(b"l".to_vec())));
    assert!(check(&mut h, Less, Value(b"ma".to_vec())));
    assert!(!check(&mut h, Less, Value(b"m".to_vec())));
}

#[test]
fn a_compare_on_a_missing_key_sees_zeroes_but_a_value_compare_fails() {
    let mut h = memory();
    let check = |h: &mut common::Harness<_>, result, target| {
        h.txn(txn(vec![compare("absent", result, target)], vec![], vec![]))
            .response
            .succeeded
    };
    assert!(check(
        &mut h,
        CompareResult::Equal,
        CompareTarget::CreateRevision(0)
    ));
    assert!(check(
        &mut h,
        CompareResult::Equal,
        CompareTarget::Version(0)
    ));
    assert!(check(
        &mut h,
        CompareResult::Equal,
        CompareTarget::ModRevision(0)
    ));
    assert!(check(&mut h, CompareResult::Equal, CompareTarget::Lease(0)));
    assert!(!check(
        &mut h,
        CompareResult::Equal,
        CompareTarget::Value(Vec::new())
    ));
    assert!(!check(
        &mut h,
        CompareResult::NotEqual,
        CompareTarget::Value(b"x".to_vec())
    ));
}

#[test]
fn a_compare_over_a_range_needs_every_key_to_satisfy_it() {
    let mut h = memory();
    h.put("k1", "v");
    h.put("k2", "v");
    let over = |h: &mut common::Harness<_>, value: &str| {
        let mut c = compare(
            "k",
            CompareResult::Equal,
            CompareTarget::Value(value.into()),
        );
        c.range_end = b"l".to_vec();
        h.txn(txn(vec![c], vec![], vec![])).response.succeeded
    };
    assert!(over(&mut h, "v"));
    h.put("k3", "w");
    assert!(!over(&mut h, "v"));
    let mut empty = compare("z", CompareResult::Equal, CompareTarget::Version(0));
    empty.range_end = b"zz".to_vec();
    assert!(
        h.txn(txn(vec![empty], vec![], vec![])).response.succeeded,
        "empty range: zeroes"
    );
}

#[test]
fn a_txn_is_one_revision_with_its_changes_numbered_in_order() {
    let mut h = memory();
    h.put("old", "1");
    let applied = h.txn(txn(
        vec![],
        vec![put("a", "1"), delete("old"), put("b", "1")],
        vec![],
    ));
    assert_eq!(applied.response.revision, 3);
    assert_eq!(h.store.current_revision(), 3);
    let events: Vec<_> = applied
        .events
        .iter()
        .map(|e| (e.kind, e.kv.mod_revision))
        .collect();
    assert_eq!(
        events,
        [
            (EventKind::Put, 3),
            (EventKind::Delete, 3),
            (EventKind::Put, 3)
        ]
    );
    let written: Vec<Revision> = {
        let mut revisions = Vec::new();
        h.store.backend().clone().into_records(&mut revisions);
        revisions
    };
    assert_eq!(
        written,
        [
            Revision::new(2, 0),
            Revision::new(3, 0),
            Revision::new(3, 1),
            Revision::new(3, 2)
        ]
    );
    assert_eq!(h.get("a"), Some(kv("a", "1", 3, 3, 1)));
    assert_eq!(h.get("b"), Some(kv("b", "1", 3, 3, 1)));
}

/// Lists a memory backend's revisions (a test-side helper over the public trait).
trait IntoRecords {
    fn into_records(self, out: &mut Vec<Revision>);
}

impl IntoRecords for chorus_mvcc::MemoryBackend {
    fn into_records(self, out: &mut Vec<Revision>) {
        use chorus_mvcc::Backend;
        self.for_each(&mut |revision, _| {
            out.push(revision);
            Ok(())
        })
        .unwrap();
    }
}

#[test]
fn a_read_only_txn_makes_no_revision() {
    let mut h = memory();
    h.put("a", "1");
    let applied = h.txn(txn(vec![], vec![get("a")], vec![]));
    assert_eq!(applied.response.revision, 2);
    assert_eq!(h.store.current_revision(), 2);
    assert!(applied.events.is_empty());
    match &applied.response.responses[0] {
        ResponseOp::Range(range) => assert_eq!(range.kvs, vec![kv("a", "1", 2, 2, 1)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn later_ops_in_a_txn_see_the_writes_of_earlier_ones() {
    let mut h = memory();
    h.put("gone", "1");
    let applied = h.txn(txn(
        vec![],
        vec![
            get("a"),
            put("a", "1"),
            get("a"),
            delete("gone"),
            get("gone"),
        ],
        vec![],
    ));
    let ranges: Vec<_> = applied
        .response
        .responses
        .iter()
        .filter_map(|response| match response {
            ResponseOp::Range(range) => Some((keys(&range.kvs), range.revision)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ranges,
        [(vec![], 2), (vec!["a".to_string()], 3), (vec![], 3)],
        "a read before any write sees the old revision, after one the new"
    );
}

#[test]
fn nested_txn_compares_see_the_store_as_it_was_before_the_txn() {
    let mut h = memory();
    let nested = txn(
        vec![compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Version(0),
        )],
        vec![put("nested-saw-no-a", "1")],
        vec![put("nested-saw-a", "1")],
    );
    let applied = h.txn(txn(
        vec![],
        vec![put("a", "1"), RequestOp::Txn(nested)],
        vec![],
    ));
    assert!(h.get("nested-saw-no-a").is_some());
    assert!(h.get("nested-saw-a").is_none());
    match &applied.response.responses[1] {
        ResponseOp::Txn(response) => {
            assert!(response.succeeded);
            assert_eq!(response.responses.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_key_written_twice_in_a_txn_is_a_duplicate_key() {
    let mut h = memory();
    h.put("a", "0");
    let refused = [
        txn(vec![], vec![put("a", "1"), put("a", "2")], vec![]),
        txn(vec![], vec![delete("a"), put("a", "2")], vec![]),
        txn(vec![], vec![put("a", "2"), delete_range("a", "b")], vec![]),
        txn(
            vec![],
            vec![
                put("a", "1"),
                RequestOp::Txn(txn(vec![], vec![put("a", "2")], vec![])),
            ],
            vec![],
        ),
        txn(
            vec![],
            vec![
                RequestOp::Txn(txn(vec![], vec![delete("a")], vec![])),
                put("a", "2"),
            ],
            vec![],
        ),
        // etcd lets this one through; it would change "a" twice in one revision.
        txn(
            vec![],
            vec![
                RequestOp::Txn(txn(vec![], vec![put("a", "1")], vec![])),
                RequestOp::Txn(txn(vec![], vec![delete("a")], vec![])),
            ],
            vec![],
        ),
    ];
    for request in refused {
        assert_eq!(
            h.try_txn(request.clone()).unwrap_err(),
            Error::DuplicateKey,
            "{request:?}"
        );
    }
    assert_eq!(
        h.store.current_revision(),
        2,
        "refused transactions write nothing"
    );
    assert_eq!(
        Error::DuplicateKey.to_string(),
        "etcdserver: duplicate key given in txn request"
    );
}

#[test]
fn the_two_branches_of_a_nested_txn_may_put_the_same_key_and_deletes_may_overlap() {
    let mut h = memory();
    h.put("a", "0");
    h.put("b", "0");
    let nested = txn(vec![], vec![put("k", "then")], vec![put("k", "else")]);
    h.txn(txn(vec![], vec![RequestOp::Txn(nested)], vec![]));
    assert_eq!(h.get("k").unwrap().value, b"then");
    let applied = h.txn(txn(
        vec![],
        vec![delete_range("a", "c"), delete("a")],
        vec![],
    ));
    match &applied.response.responses[..] {
        [ResponseOp::DeleteRange(first), ResponseOp::DeleteRange(second)] => {
            assert_eq!((first.deleted, second.deleted), (2, 0));
        }
        other => panic!("{other:?}"),
    }
    let top_level_branches = txn(vec![], vec![put("x", "1")], vec![put("x", "2")]);
    h.txn(top_level_branches);
}

#[test]
fn a_branch_may_have_txn_ops_max_ops_and_no_more() {
    let mut h = memory();
    let ops_max = h.store.config().txn_ops_max;
    let ops = |count: usize| {
        (0..count)
            .map(|i| put(&format!("k{i}"), "v"))
            .collect::<Vec<_>>()
    };
    h.txn(txn(vec![], ops(ops_max), vec![]));
    assert_eq!(
        h.try_txn(txn(vec![], ops(ops_max + 1), vec![]))
            .unwrap_err(),
        Error::TooManyOps
    );
    let compares = vec![compare("k", CompareResult::Equal, CompareTarget::Version(0)); ops_max + 1];
    assert_eq!(
        h.try_txn(txn(compares, vec![], vec![])).unwrap_err(),
        Error::TooManyOps
    );
    // A nested transaction gets what its parent leaves: 128 - 1 here.
    let nested = txn(vec![], ops(ops_max), vec![]);
    let request = txn(vec![], vec![RequestOp::Txn(nested)], vec![]);
    assert_eq!(h.try_txn(request).unwrap_err(), Error::TooManyOps);
    assert_eq!(
        Error::TooManyOps.to_string(),
        "etcdserver: too many operations in txn request"
    );
}

#[test]
fn a_refused_txn_changes_nothing_but_the_applied_index() {
    let mut h = memory();
    h.put("a", "1");
    let ignore_missing = RequestOp::Put(PutRequest {
        ignore_value: true,
        ..PutRequest::new("b", "")
    });
    let request = txn(vec![], vec![put("c", "1"), ignore_missing], vec![]);
    assert_eq!(h.try_txn(request).unwrap_err(), Error::KeyNotFound);
    let future = RequestOp::Range(RangeRequest {
        revision: 9,
        ..RangeRequest::key("a")
    });
    assert_eq!(
        h.try_txn(txn(vec![], vec![put("c", "1"), future], vec![]))
            .unwrap_err(),
        Error::FutureRevision {
            current_revision: 2
        }
    );
    assert_eq!(h.store.current_revision(), 2);
    assert!(h.get("c").is_none());
    assert_eq!(h.store.applied_index(), 3);
    assert_eq!(h.store.backend().meta_applied_index(), 3);
}

trait MetaAppliedIndex {
    fn meta_applied_index(&self) -> u64;
}

impl MetaAppliedIndex for chorus_mvcc::MemoryBackend {
    fn meta_applied_index(&self) -> u64 {
        use chorus_mvcc::Backend;
        self.meta().unwrap().applied_index
    }
}

#[test]
fn ops_only_on_the_branch_not_taken_are_not_checked_against_the_store() {
    let mut h = memory();
    let ignore_missing = RequestOp::Put(PutRequest {
        ignore_value: true,
        ..PutRequest::new("b", "")
    });
    let applied = h.txn(txn(vec![], vec![put("a", "1")], vec![ignore_missing]));
    assert!(applied.response.succeeded);
}
