//! Restoring from a saved state snapshot: a new member seeded with another cluster's snapshot
//! opens with its keys, leases and alarms, elects itself, and goes on writing after the
//! snapshot's revision; a directory with state already is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{MemoryBackend, PutRequest, RangeRequest};
use chorus_raft::{NodeId, Role};
use chorus_replica::alarm::{AlarmAction, AlarmMember, AlarmType};
use chorus_replica::seed::seed_from_state_snapshot;
use chorus_replica::{Command, DurableConfig, Replica, ReplicaConfig};
use chorus_storage::SimFs;
use std::path::Path;

fn single(id: NodeId, fs: &SimFs) -> Replica<SimFs, MemoryBackend> {
    let config = ReplicaConfig::new(chorus_raft::Config::new(id, [id]));
    Replica::open(config, fs.clone(), Path::new("/data"), MemoryBackend::new()).unwrap()
}

/// Runs cycles until there is nothing left to do (a single node needs no messages).
fn settle(replica: &mut Replica<SimFs, MemoryBackend>) {
    while replica.has_ready() {
        replica.handle_ready().unwrap();
    }
}

fn lead(replica: &mut Replica<SimFs, MemoryBackend>) {
    replica.campaign();
    settle(replica);
    assert_eq!(replica.role(), Role::Leader);
}

#[test]
fn a_seeded_member_serves_the_snapshot_and_goes_on() {
    let old_fs = SimFs::new();
    let mut old = single(NodeId(1), &old_fs);
    lead(&mut old);
    for i in 0..5 {
        old.propose(&Command::Put(PutRequest::new(format!("k{i}"), "v")))
            .unwrap();
    }
    old.propose(&Command::LeaseGrant {
        id: 77,
        ttl_seconds: 600,
    })
    .unwrap();
    let alarm = AlarmMember {
        member_id: 1,
        alarm: AlarmType::Corrupt,
    };
    old.propose(&Command::Alarm {
        action: AlarmAction::Activate,
        alarm,
    })
    .unwrap();
    settle(&mut old);
    let blob = old.state_snapshot().unwrap();
    let revision = old.store().current_revision();

    let fs = SimFs::new();
    let seeded = seed_from_state_snapshot(
        fs.clone(),
        Path::new("/data"),
        &DurableConfig::default(),
        &blob,
        [NodeId(9)],
    )
    .unwrap();
    assert_eq!(seeded.index, old.applied_index());
    assert_eq!(seeded.revision, revision);
    assert_eq!(seeded.leases, 1);

    let mut restored = single(NodeId(9), &fs);
    assert_eq!(restored.store().current_revision(), revision);
    assert_eq!(restored.leases(), vec![77]);
    assert_eq!(restored.alarms(), vec![alarm]);
    lead(&mut restored);
    restored
        .propose(&Command::Put(PutRequest::new("after", "v")))
        .unwrap();
    settle(&mut restored);
    let all = restored
        .range(&RangeRequest {
            range_end: vec![0],
            ..RangeRequest::key(vec![0])
        })
        .unwrap();
    assert_eq!(all.count, 6);
    assert_eq!(restored.store().current_revision(), revision + 1);
    restored.check_invariants();

    // Seeding again over state is refused.
    drop(restored);
    assert!(seed_from_state_snapshot(
        fs,
        Path::new("/data"),
        &DurableConfig::default(),
        &blob,
        [NodeId(9)],
    )
    .is_err());
}

#[test]
fn a_damaged_snapshot_is_refused_before_anything_is_written() {
    let fs = SimFs::new();
    let error = seed_from_state_snapshot(
        fs.clone(),
        Path::new("/data"),
        &DurableConfig::default(),
        b"chorusrs\x01garbage",
        [NodeId(1)],
    );
    assert!(error.is_err());
}
