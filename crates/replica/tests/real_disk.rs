//! The same replica on a real directory (`RealFs`) over the persistent `RedbBackend`: a
//! single-voter group writes, snapshots, and reopens with its data intact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{PutRequest, RangeRequest, RedbBackend, RedbConfig};
use chorus_raft::NodeId;
use chorus_replica::{Command, Replica, ReplicaConfig};
use chorus_storage::RealFs;
use common::{lead_alone, run_alone};
use std::path::Path;

fn open(dir: &Path) -> Replica<RealFs, RedbBackend> {
    let mut config = ReplicaConfig::new(chorus_raft::Config::new(NodeId(1), [NodeId(1)]));
    config.snapshot_every_entries = 25;
    let backend = RedbBackend::open(&dir.join("mvcc.redb"), RedbConfig::default()).expect("redb");
    Replica::open(config, RealFs, &dir.join("raft"), backend).expect("open")
}

#[test]
fn a_single_voter_group_on_a_real_disk_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replica = open(dir.path());
    lead_alone(&mut replica);
    for n in 0..60 {
        let put = Command::Put(PutRequest::new(format!("k{n:02}"), format!("v{n}")));
        replica.propose(&put).expect("propose");
        assert_eq!(run_alone(&mut replica), 1);
    }
    let snapshot_index = replica.durable().snapshot_index();
    // A compaction keeps at least one entry before the applied index.
    assert!(snapshot_index.0 >= 45, "snapshot at {snapshot_index}");
    let applied = replica.applied_index();
    drop(replica);

    let mut replica = open(dir.path());
    assert!(replica.applied_index() >= snapshot_index);
    lead_alone(&mut replica);
    assert!(replica.applied_index() >= applied);
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    let response = replica.range(&all).expect("range");
    assert_eq!(response.kvs.len(), 60);
    assert_eq!(response.kvs[59].value, b"v59");
    replica.check_invariants();
}
