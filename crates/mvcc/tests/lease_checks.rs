//! What the lessor needs from the store: puts checked against the leases that exist, and the
//! keys of a revoked lease deleted in one revision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, Error, EventKind, PutRequest, RequestOp, TxnRequest,
};
use common::memory;

fn leased(key: &str, lease: i64) -> PutRequest {
    PutRequest {
        lease,
        ..PutRequest::new(key, "v")
    }
}

#[test]
fn a_put_with_an_unknown_lease_is_refused_and_changes_nothing() {
    let mut h = memory();
    let refused = h
        .store
        .put_checking_leases(1, leased("a", 7), &|lease| lease == 5);
    assert_eq!(refused.unwrap_err(), Error::LeaseNotFound);
    assert_eq!(
        Error::LeaseNotFound.to_string(),
        "etcdserver: requested lease not found"
    );
    assert_eq!(h.store.current_revision(), 1);
    assert_eq!(h.store.applied_index(), 1);
    let put = h
        .store
        .put_checking_leases(2, leased("a", 5), &|lease| lease == 5);
    assert_eq!(put.unwrap().events[0].kv.lease, 5);
    // No lease, or ignore_lease: nothing to check.
    let plain = h
        .store
        .put_checking_leases(3, PutRequest::new("b", "1"), &|_| false);
    assert!(plain.is_ok());
    h.store.check_invariants();
}

#[test]
fn a_put_with_ignore_value_on_a_missing_key_says_key_not_found_first() {
    let mut h = memory();
    let request = PutRequest {
        ignore_value: true,
        value: Vec::new(),
        ..leased("absent", 7)
    };
    let refused = h.store.put_checking_leases(1, request, &|_| false);
    assert_eq!(refused.unwrap_err(), Error::KeyNotFound);
}

#[test]
fn a_txn_checks_leases_only_on_the_branch_taken() {
    let mut h = memory();
    h.put("a", "1");
    let txn = TxnRequest {
        compare: vec![Compare::new(
            "a",
            CompareResult::Equal,
            CompareTarget::Value(b"1".to_vec()),
        )],
        success: vec![RequestOp::Put(leased("b", 5))],
        failure: vec![RequestOp::Put(leased("c", 9))],
    };
    let applied = h
        .store
        .txn_checking_leases(2, txn.clone(), &|lease| lease == 5)
        .unwrap();
    assert!(applied.response.succeeded);
    let refused = h.store.txn_checking_leases(3, txn, &|lease| lease == 9);
    assert_eq!(refused.unwrap_err(), Error::LeaseNotFound);
    h.store.check_invariants();
}

#[test]
fn delete_keys_deletes_many_keys_in_one_revision_past_the_txn_limit() {
    let mut h = memory();
    let count = h.store.config().txn_ops_max + 10;
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("k{i:04}");
        h.put(&key, "v");
        keys.push(key.into_bytes());
    }
    let before = h.store.current_revision();
    keys.push(b"never-written".to_vec());
    keys.push(keys[0].clone());
    let index = h.next_index;
    let applied = h.store.delete_keys(index, &keys).unwrap();
    assert_eq!(applied.response.deleted, count as i64);
    assert_eq!(applied.response.revision, before + 1);
    assert_eq!(h.store.current_revision(), before + 1);
    assert_eq!(applied.events.len(), count);
    assert!(applied
        .events
        .iter()
        .all(|event| event.kind == EventKind::Delete && event.kv.mod_revision == before + 1));
    assert_eq!(h.store.key_count(), count);
    h.store.check_invariants();
    // Nothing to delete: no revision, but the index is applied.
    let none = h
        .store
        .delete_keys(index + 1, &[b"absent".to_vec()])
        .unwrap();
    assert_eq!(none.response.deleted, 0);
    assert_eq!(none.response.revision, before + 1);
    assert_eq!(h.store.applied_index(), index + 1);
    h.store.check_invariants();
}
