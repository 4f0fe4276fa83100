//! Compaction copies nothing: the backend holds the state (every table), so a compaction's
//! snapshot is its metadata alone, and a snapshot of the state is written only when a follower
//! is behind the compacted log — taken at the leader's applied index, then sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{MemoryBackend, PutRequest};
use chorus_raft::NodeId;
use chorus_replica::{Command, Replica, ReplicaConfig};
use chorus_storage::SimFs;
use common::{lead_alone, run_alone, Cluster, TestConfig};
use std::path::Path;

fn open(fs: &SimFs, backend: MemoryBackend, kept: u64) -> Replica<SimFs, MemoryBackend> {
    let mut config = ReplicaConfig::new(chorus_raft::Config::new(NodeId(1), [NodeId(1)]));
    config.snapshot_every_entries = 5;
    config.log_entries_kept = kept;
    Replica::open(config, fs.clone(), Path::new("/raft"), backend).expect("open")
}

#[test]
fn a_compaction_writes_no_state_and_a_restart_reads_it_from_the_backend() {
    for kept in [0, 3] {
        let fs = SimFs::new();
        let mut replica = open(&fs, MemoryBackend::with_durable_every(7), kept);
        lead_alone(&mut replica);
        for n in 0..23 {
            let put = Command::Put(PutRequest::new(format!("k{n:02}"), format!("v{n}")));
            replica.propose(&put).expect("propose");
            run_alone(&mut replica);
        }
        let applied = replica.applied_index();
        let snapshot = replica
            .durable()
            .read_snapshot()
            .unwrap()
            .expect("compacted");
        assert!(snapshot.data.is_empty(), "a compaction copied the state");
        // Compacted at the applied index of the compaction's cycle, less the entries kept.
        let index = snapshot.meta.last_index;
        assert!(
            index.0 + kept.max(1) + 5 > applied.0 && index.0 + kept.max(1) <= applied.0,
            "kept {kept}: compacted to {index} with {applied} applied"
        );
        // A crash keeps what the backend made durable, at least up to the compaction.
        let backend = replica.into_backend().crashed();
        let mut replica = open(&fs, backend, kept);
        assert!(replica.applied_index() >= index);
        lead_alone(&mut replica);
        assert!(replica.applied_index() >= applied);
        let all = chorus_mvcc::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        assert_eq!(replica.range(&all).unwrap().kvs.len(), 23);
        replica.check_invariants();
    }
}

#[test]
fn a_follower_behind_the_compacted_log_gets_a_snapshot_of_the_leaders_state() {
    for background_snapshots in [false, true] {
        let config = TestConfig {
            snapshot_every_entries: 5,
            background_snapshots,
            ..TestConfig::default()
        };
        let mut cluster = Cluster::new(7, config);
        let leader = cluster.wait_for_leader();
        let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        cluster.cut_off = Some(follower);
        for n in 0..30 {
            cluster.put(&format!("k{n:02}"), "v");
        }
        let compacted = cluster.replica(leader).durable().read_snapshot().unwrap();
        let compacted = compacted.expect("the leader compacted");
        assert!(compacted.data.is_empty(), "a compaction copied the state");
        let applied = cluster.replica(leader).applied_index();
        assert!(
            cluster.replica(follower).raft().last_index() < compacted.meta.last_index,
            "the follower is behind the compacted log"
        );
        cluster.cut_off = None;
        cluster.heartbeats();
        cluster.assert_converged();
        let installed = cluster.replica(follower).raft().snapshot_meta().last_index;
        assert!(
            installed >= applied,
            "background {background_snapshots}: the follower installed {installed}, taken \
             before the leader's applied {applied}"
        );
        let sent = cluster
            .replica(leader)
            .durable()
            .read_snapshot()
            .unwrap()
            .unwrap();
        assert!(
            !sent.data.is_empty(),
            "the leader's snapshot holds the state"
        );
        assert_eq!(cluster.range_all(follower).kvs.len(), 30);
        cluster.assert_acknowledged_writes_kept();
    }
}

#[test]
fn a_backend_from_before_the_tables_moved_in_is_refused_not_emptied() {
    // An older chorus's backend: applied entries, but no tables and no format entry.
    let mut store = chorus_mvcc::Store::open(MemoryBackend::new(), Default::default()).unwrap();
    store
        .put(1, PutRequest::new("k", "v"))
        .expect("a write at index 1");
    let backend = store.into_backend();
    let config = ReplicaConfig::new(chorus_raft::Config::new(NodeId(1), [NodeId(1)]));
    let opened = Replica::open(config, SimFs::new(), Path::new("/raft"), backend);
    let error = opened.err().expect("refused").to_string();
    assert!(error.contains("written by an older chorus"), "{error}");
    // A new backend is given the format entry with its first write, and reopens.
    let fs = SimFs::new();
    let mut replica = open(&fs, MemoryBackend::new(), 0);
    lead_alone(&mut replica);
    let backend = replica.into_backend();
    open(&fs, backend, 0).check_invariants();
}
