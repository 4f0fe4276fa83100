//! The replicated alarm table: NOSPACE raised through the log refuses, on every replica, the
//! writes that grow the database (put, a txn that puts, lease grant) while deletes and
//! compaction go on; it is cleared the same way; and it survives a snapshot install and a
//! restart (from the snapshot, or from a backend that applied past it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use chorus_raft::NodeId;
use chorus_replica::alarm::{AlarmAction, AlarmMember, AlarmType};
use chorus_replica::{Command, CommandResponse};
use common::{BackendOnCrash, Cluster, Prng, TestConfig};

const NOSPACE: AlarmMember = AlarmMember {
    member_id: 42,
    alarm: AlarmType::NoSpace,
};

fn answer(
    cluster: &mut Cluster,
    id: NodeId,
    command: Command,
) -> Result<CommandResponse, chorus_mvcc::Error> {
    let (index, _) = cluster.propose_on(id, command).expect("proposed");
    cluster.settle();
    cluster
        .answers
        .remove(&(id, index))
        .expect("the proposal was answered")
}

fn alarm(
    cluster: &mut Cluster,
    action: AlarmAction,
) -> Result<CommandResponse, chorus_mvcc::Error> {
    let leader = cluster.wait_for_leader();
    answer(
        cluster,
        leader,
        Command::Alarm {
            action,
            alarm: NOSPACE,
        },
    )
}

fn put(cluster: &mut Cluster, key: &str) -> Result<CommandResponse, chorus_mvcc::Error> {
    let leader = cluster.wait_for_leader();
    answer(cluster, leader, Command::Put(PutRequest::new(key, "v")))
}

#[test]
fn nospace_refuses_growing_writes_everywhere_until_cleared() {
    let mut cluster = Cluster::new(7, TestConfig::default());
    let leader = cluster.wait_for_leader();
    assert!(put(&mut cluster, "before").is_ok());
    let raised = alarm(&mut cluster, AlarmAction::Activate);
    assert!(
        matches!(raised, Ok(CommandResponse::Alarm { ref alarms, .. }) if alarms == &[NOSPACE])
    );
    cluster.heartbeats();
    for id in cluster.ids() {
        assert_eq!(cluster.replica(id).alarms(), vec![NOSPACE], "{id}");
    }
    assert_eq!(
        put(&mut cluster, "during"),
        Err(chorus_mvcc::Error::NoSpace)
    );
    let txn_put = TxnRequest {
        failure: vec![RequestOp::Txn(TxnRequest {
            success: vec![RequestOp::Put(PutRequest::new("nested", "v"))],
            ..TxnRequest::default()
        })],
        ..TxnRequest::default()
    };
    assert_eq!(
        answer(&mut cluster, leader, Command::Txn(txn_put)),
        Err(chorus_mvcc::Error::NoSpace)
    );
    assert_eq!(
        answer(
            &mut cluster,
            leader,
            Command::LeaseGrant {
                id: 0,
                ttl_seconds: 60
            }
        ),
        Err(chorus_mvcc::Error::NoSpace)
    );
    let deleted = answer(
        &mut cluster,
        leader,
        Command::DeleteRange(DeleteRangeRequest::key("before")),
    );
    assert!(matches!(deleted, Ok(CommandResponse::DeleteRange(ref d)) if d.deleted == 1));
    assert!(answer(&mut cluster, leader, Command::Compact { revision: 2 }).is_ok());
    let cleared = alarm(&mut cluster, AlarmAction::Deactivate);
    assert!(
        matches!(cleared, Ok(CommandResponse::Alarm { ref alarms, .. }) if alarms == &[NOSPACE])
    );
    assert!(put(&mut cluster, "after").is_ok());
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        assert!(cluster.replica(id).alarms().is_empty(), "{id}");
        cluster.replica(id).check_invariants();
    }
}

#[test]
fn alarms_survive_a_snapshot_install_and_restarts() {
    let config = TestConfig {
        snapshot_every_entries: 4,
        ..TestConfig::default()
    };
    let mut cluster = Cluster::new(31, config);
    let mut rng = Prng::new(31);
    let leader = cluster.wait_for_leader();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging, &mut rng, BackendOnCrash::Lose);
    for i in 0..6 {
        assert!(put(&mut cluster, &format!("filler{i}")).is_ok());
    }
    assert!(alarm(&mut cluster, AlarmAction::Activate).is_ok());
    for i in 0..6 {
        let key = format!("delete{i}");
        let leader = cluster.wait_for_leader();
        let _ = answer(
            &mut cluster,
            leader,
            Command::DeleteRange(DeleteRangeRequest::key(key)),
        );
    }
    cluster.restart(lagging);
    cluster.heartbeats();
    cluster.heartbeats();
    assert!(cluster.snapshots_installed > 0, "no snapshot was installed");
    assert_eq!(cluster.replica(lagging).alarms(), vec![NOSPACE]);
    for (id, backend_on_crash) in cluster.ids().into_iter().zip([
        BackendOnCrash::Keep,
        BackendOnCrash::Lose,
        BackendOnCrash::Keep,
    ]) {
        cluster.crash(id, &mut rng, backend_on_crash);
        cluster.restart(id);
        assert_eq!(
            cluster.replica(id).alarms(),
            vec![NOSPACE],
            "{id} after restart"
        );
        cluster.replica(id).check_invariants();
    }
    cluster.wait_for_leader();
    cluster.heartbeats();
    assert_eq!(
        put(&mut cluster, "refused"),
        Err(chorus_mvcc::Error::NoSpace)
    );
}
