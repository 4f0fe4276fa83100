//! A 3-replica cluster in memory: elections, writes through the leader, convergence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use chorus_raft::NodeId;
use chorus_replica::{Command, CommandResponse};
use common::{Cluster, TestConfig};

#[test]
fn a_put_through_the_leader_reaches_every_replica() {
    let mut cluster = Cluster::new(1, TestConfig::default());
    cluster.put("greeting", "hello");
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        let response = cluster
            .replica(id)
            .range(&RangeRequest::key("greeting"))
            .expect("range");
        assert_eq!(response.kvs[0].value, b"hello", "on {id}");
        assert_eq!(response.kvs[0].mod_revision, 2);
    }
}

#[test]
fn txn_and_delete_apply_the_same_everywhere() {
    let mut cluster = Cluster::new(2, TestConfig::default());
    cluster.put("a", "1");
    cluster.put("b", "2");
    let leader = cluster.wait_for_leader();
    let txn = TxnRequest {
        compare: vec![Compare::new(
            "a",
            CompareResult::Equal,
            CompareTarget::Value(b"1".to_vec()),
        )],
        success: vec![
            RequestOp::Put(PutRequest::new("c", "3")),
            RequestOp::DeleteRange(DeleteRangeRequest::key("b")),
        ],
        failure: vec![],
    };
    let (index, term) = cluster
        .propose_on(leader, Command::Txn(txn))
        .expect("proposed");
    cluster.settle();
    assert_eq!(cluster.applied_terms.get(&index), Some(&term));
    let delete = Command::DeleteRange(DeleteRangeRequest::key("a"));
    cluster.propose_on(leader, delete).expect("proposed");
    cluster.heartbeats();
    cluster.assert_converged();
    let keys: Vec<Vec<u8>> = cluster
        .range_all(NodeId(1))
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, vec![b"c".to_vec()]);
    assert_eq!(cluster.replica(NodeId(3)).store().current_revision(), 5);
}

#[test]
fn a_follower_refuses_proposals_and_names_the_leader() {
    let mut cluster = Cluster::new(3, TestConfig::default());
    let leader = cluster.wait_for_leader();
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let refused = cluster
        .replica_mut(follower)
        .propose(&Command::Put(PutRequest::new("k", "v")));
    assert_eq!(
        refused,
        Err(chorus_replica::ProposeError::Raft(
            chorus_raft::ProposeError::NotLeader {
                leader: Some(leader)
            }
        ))
    );
}

#[test]
fn a_linearizable_read_is_served_once_applied() {
    let mut cluster = Cluster::new(4, TestConfig::default());
    cluster.put("k", "v");
    let leader = cluster.wait_for_leader();
    cluster
        .replica_mut(leader)
        .read_index(7)
        .expect("read accepted");
    let mut served = false;
    for _ in 0..100 {
        let outcome = cluster.replica_mut(leader).handle_ready().expect("cycle");
        cluster.queue.extend(outcome.messages_now);
        cluster.queue.extend(outcome.messages_after_persist);
        if outcome.read_states.iter().any(|read| read.id == 7) {
            served = true;
            break;
        }
        cluster.deliver_all();
        for id in cluster.ids() {
            if id != leader && cluster.replica(id).has_ready() {
                let outcome = cluster.replica_mut(id).handle_ready().expect("cycle");
                cluster.queue.extend(outcome.messages_now);
                cluster.queue.extend(outcome.messages_after_persist);
            }
        }
        cluster.deliver_all();
    }
    assert!(served, "the read was never confirmed");
    let response = cluster
        .replica(leader)
        .range(&RangeRequest::key("k"))
        .expect("range");
    assert_eq!(response.kvs[0].value, b"v");
}

#[test]
fn a_compaction_is_replicated_and_old_revisions_go() {
    let mut cluster = Cluster::new(5, TestConfig::default());
    cluster.put("k", "1");
    cluster.put("k", "2");
    let leader = cluster.wait_for_leader();
    let (index, _) = cluster
        .propose_on(leader, Command::Compact { revision: 3 })
        .expect("proposed");
    cluster.heartbeats();
    assert!(cluster.applied_terms.contains_key(&index));
    for id in cluster.ids() {
        let old = RangeRequest {
            revision: 2,
            ..RangeRequest::key("k")
        };
        assert!(matches!(
            cluster.replica(id).range(&old),
            Err(chorus_mvcc::Error::Compacted { .. })
        ));
        assert_eq!(cluster.replica(id).store().compact_revision(), Some(3));
    }
    let _ = CommandResponse::Compact { revision: 0 };
}

#[test]
fn the_split_cycle_sends_before_the_persist_and_acknowledges_after() {
    let mut cluster = Cluster::new(6, TestConfig::default());
    cluster.put("a", "1");
    let leader = cluster.wait_for_leader();
    let put = Command::Put(PutRequest::new("b", "2"));
    cluster.propose_on(leader, put).expect("proposed");

    // The leader's appends may leave before its own fsync.
    let replica = cluster.replica_mut(leader);
    let early = replica.begin_ready().expect("begin");
    assert!(
        !early.is_empty(),
        "the leader's appends go out before its persist"
    );
    let outcome = replica.finish_ready().expect("finish");
    assert!(outcome.messages_now.is_empty());
    cluster.queue.extend(early);
    cluster.queue.extend(outcome.messages_after_persist);
    cluster.deliver_all();

    // A follower's acknowledgement waits for its persist.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let replica = cluster.replica_mut(follower);
    let early = replica.begin_ready().expect("begin");
    assert!(
        early.is_empty(),
        "a follower sends nothing before its persist"
    );
    let outcome = replica.finish_ready().expect("finish");
    assert!(!outcome.messages_after_persist.is_empty());
    cluster.queue.extend(outcome.messages_after_persist);
    cluster.settle();
    cluster.heartbeats();
    cluster.assert_converged();
    assert_eq!(
        cluster.acknowledged.get(b"b".as_slice()),
        Some(&b"2".to_vec())
    );
}

#[test]
fn a_replica_stops_after_a_failed_fsync() {
    let mut cluster = Cluster::new(8, TestConfig::default());
    cluster.put("a", "1");
    let leader = cluster.wait_for_leader();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.node(follower).fs.set_syncs_fail(true);
    cluster
        .propose_on(leader, Command::Put(PutRequest::new("b", "2")))
        .expect("proposed");
    cluster.cycle(
        leader,
        &mut common::Prng::new(8),
        common::BackendOnCrash::Keep,
    );
    cluster.deliver_all();
    let replica = cluster.replica_mut(follower);
    let failed = replica.handle_ready();
    assert!(
        matches!(
            failed,
            Err(chorus_replica::ReplicaError::Storage(
                chorus_storage::StorageError::Fatal { .. }
            ))
        ),
        "{failed:?}"
    );
    replica.step(chorus_raft::Message {
        group: chorus_raft::GroupId(1),
        from: leader,
        to: follower,
        term: replica.term(),
        body: chorus_raft::MessageBody::Heartbeat(chorus_raft::Heartbeat {
            commit: chorus_raft::LogIndex(0),
            sequence: 99,
        }),
    });
    assert!(matches!(
        replica.handle_ready(),
        Err(chorus_replica::ReplicaError::Stopped { .. })
    ));
    assert_eq!(
        replica.propose(&Command::Compact { revision: 1 }),
        Err(chorus_replica::ProposeError::Stopped)
    );
}

#[test]
fn a_transaction_nested_too_deep_is_refused_before_it_reaches_the_log() {
    let mut cluster = Cluster::new(9, TestConfig::default());
    let leader = cluster.wait_for_leader();
    let mut txn = TxnRequest::default();
    for _ in 0..chorus_replica::command::TXN_DEPTH_MAX {
        txn = TxnRequest {
            success: vec![RequestOp::Txn(txn)],
            ..TxnRequest::default()
        };
    }
    let last_index = cluster.replica(leader).raft().last_index();
    let refused = cluster.replica_mut(leader).propose(&Command::Txn(txn));
    assert_eq!(
        refused,
        Err(chorus_replica::ProposeError::TooDeep {
            depth: chorus_replica::command::TXN_DEPTH_MAX + 1,
            depth_max: chorus_replica::command::TXN_DEPTH_MAX
        })
    );
    assert_eq!(cluster.replica(leader).raft().last_index(), last_index);
}

#[test]
fn a_state_machine_ahead_of_its_log_is_refused_on_open() {
    let mut store =
        chorus_mvcc::Store::open(chorus_mvcc::MemoryBackend::new(), Default::default()).unwrap();
    store.put(5, PutRequest::new("k", "v")).unwrap();
    let backend = store.into_backend();
    let config =
        chorus_replica::ReplicaConfig::new(chorus_raft::Config::new(NodeId(1), [NodeId(1)]));
    let opened = chorus_replica::Replica::open(
        config,
        chorus_storage::SimFs::new(),
        std::path::Path::new("/empty"),
        backend,
    );
    assert!(matches!(
        opened,
        Err(chorus_replica::ReplicaError::Corrupt { .. })
    ));
}
