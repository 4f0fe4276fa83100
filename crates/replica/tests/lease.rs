//! Leases in the replicated state machine, as etcd's Lease service: grant, put with a lease,
//! revoke (the keys go in one revision), expiry by the leader after the TTL in ticks,
//! keep-alive, a leader change that restarts every deadline, and leases that survive a restart
//! and a snapshot installation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use chorus_raft::{NodeId, Role};
use chorus_replica::{Command, CommandResponse, LeaseError, LEASE_TTL_SECONDS_MAX};
use common::{BackendOnCrash, Cluster, Prng, TestConfig};

/// The default test config ticks 10 times a second.
const TICKS_PER_SECOND: u64 = 10;

/// Proposes `command` on `id`, runs the cluster until it is applied, returns its answer there.
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

fn grant(cluster: &mut Cluster, id: i64, ttl_seconds: i64) -> i64 {
    let leader = cluster.wait_for_leader();
    match answer(cluster, leader, Command::LeaseGrant { id, ttl_seconds }) {
        Ok(CommandResponse::LeaseGrant { id, .. }) => id,
        other => panic!("grant answered {other:?}"),
    }
}

fn put_leased(cluster: &mut Cluster, key: &str, lease: i64) {
    let leader = cluster.wait_for_leader();
    let put = PutRequest {
        lease,
        ..PutRequest::new(key, "v")
    };
    match answer(cluster, leader, Command::Put(put)) {
        Ok(CommandResponse::Put(_)) => {}
        other => panic!("put {key} with lease {lease} answered {other:?}"),
    }
}

/// `count` ticks of every node's clock, the cluster settling after each.
fn ticks(cluster: &mut Cluster, count: u64) {
    for _ in 0..count {
        cluster.tick_all();
        cluster.settle();
    }
}

fn has_key(cluster: &Cluster, id: NodeId, key: &str) -> bool {
    let response = cluster.replica(id).range(&RangeRequest::key(key)).unwrap();
    !response.kvs.is_empty()
}

fn check_all(cluster: &Cluster) {
    for id in cluster.live_ids() {
        cluster.replica(id).check_invariants();
    }
}

#[test]
fn revoke_deletes_every_attached_key_in_one_revision_on_every_replica() {
    let mut cluster = Cluster::new(101, TestConfig::default());
    let lease = grant(&mut cluster, 0, 100);
    assert!(lease > 0, "a picked id is positive");
    put_leased(&mut cluster, "a", lease);
    put_leased(&mut cluster, "b", lease);
    cluster.put("plain", "1");
    let leader = cluster.wait_for_leader();
    let before = cluster.replica(leader).store().current_revision();
    let ttl = cluster
        .replica(leader)
        .lease_time_to_live(lease, true)
        .unwrap();
    assert_eq!(ttl.granted_ttl_seconds, 100);
    assert_eq!(ttl.keys, vec![b"a".to_vec(), b"b".to_vec()]);

    let revoked = answer(&mut cluster, leader, Command::LeaseRevoke { id: lease });
    assert_eq!(
        revoked,
        Ok(CommandResponse::LeaseRevoke {
            id: lease,
            revision: before + 1,
            deleted: 2
        })
    );
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        let replica = cluster.replica(id);
        assert_eq!(replica.store().current_revision(), before + 1, "on {id}");
        assert!(!has_key(&cluster, id, "a") && !has_key(&cluster, id, "b"));
        assert!(has_key(&cluster, id, "plain"));
        assert_eq!(replica.leases(), Vec::<i64>::new(), "on {id}");
    }
    check_all(&cluster);
    // Revoking it again: not found.
    let again = answer(&mut cluster, leader, Command::LeaseRevoke { id: lease });
    assert_eq!(again, Err(chorus_mvcc::Error::LeaseNotFound));
}

#[test]
fn grants_pick_the_same_ids_everywhere_and_refuse_duplicates_and_huge_ttls() {
    let mut cluster = Cluster::new(102, TestConfig::default());
    let first = grant(&mut cluster, 0, 60);
    let second = grant(&mut cluster, 0, 60);
    let chosen = grant(&mut cluster, 7, 60);
    assert_ne!(first, second);
    assert_eq!(chosen, 7);
    let leader = cluster.wait_for_leader();
    let duplicate = answer(
        &mut cluster,
        leader,
        Command::LeaseGrant {
            id: 7,
            ttl_seconds: 60,
        },
    );
    assert_eq!(duplicate, Err(chorus_mvcc::Error::LeaseExists));
    let huge = answer(
        &mut cluster,
        leader,
        Command::LeaseGrant {
            id: 8,
            ttl_seconds: LEASE_TTL_SECONDS_MAX + 1,
        },
    );
    assert_eq!(huge, Err(chorus_mvcc::Error::LeaseTtlTooLarge));
    // A TTL below the minimum (1.5 election timeouts: 2 s here) is raised when proposed.
    let short = answer(
        &mut cluster,
        leader,
        Command::LeaseGrant {
            id: 9,
            ttl_seconds: 1,
        },
    );
    assert!(matches!(
        short,
        Ok(CommandResponse::LeaseGrant {
            id: 9,
            ttl_seconds: 2,
            ..
        })
    ));
    cluster.heartbeats();
    let mut expected = vec![first, second, 7, 9];
    expected.sort_unstable();
    for id in cluster.ids() {
        assert_eq!(cluster.replica(id).leases(), expected, "on {id}");
    }
    check_all(&cluster);
}

#[test]
fn a_put_with_an_unknown_lease_is_refused_with_etcds_message() {
    let mut cluster = Cluster::new(103, TestConfig::default());
    let leader = cluster.wait_for_leader();
    let put = PutRequest {
        lease: 12345,
        ..PutRequest::new("k", "v")
    };
    let refused = answer(&mut cluster, leader, Command::Put(put.clone())).unwrap_err();
    assert_eq!(refused, chorus_mvcc::Error::LeaseNotFound);
    assert_eq!(refused.to_string(), "etcdserver: requested lease not found");
    let txn = TxnRequest {
        success: vec![RequestOp::Put(put)],
        ..TxnRequest::default()
    };
    let refused = answer(&mut cluster, leader, Command::Txn(txn));
    assert_eq!(refused, Err(chorus_mvcc::Error::LeaseNotFound));
    cluster.heartbeats();
    for id in cluster.ids() {
        assert!(!has_key(&cluster, id, "k"));
        assert_eq!(cluster.replica(id).store().current_revision(), 1);
    }
}

#[test]
fn a_lease_expires_on_the_leader_after_its_ttl_and_its_keys_go_everywhere() {
    let mut cluster = Cluster::new(104, TestConfig::default());
    let lease = grant(&mut cluster, 0, 3);
    put_leased(&mut cluster, "ephemeral", lease);
    let leader = cluster.wait_for_leader();
    // put_leased's and our wait_for_leader ticked twice since the grant was applied.
    let deadline = 3 * TICKS_PER_SECOND;
    ticks(&mut cluster, deadline - 3);
    assert!(has_key(&cluster, leader, "ephemeral"), "expired early");
    assert_eq!(
        cluster
            .replica(leader)
            .lease_time_to_live(lease, false)
            .unwrap()
            .remaining_ttl_seconds,
        1
    );
    ticks(&mut cluster, 1);
    assert!(!has_key(&cluster, leader, "ephemeral"), "not expired");
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        assert!(!has_key(&cluster, id, "ephemeral"), "still on {id}");
        assert!(
            cluster.replica(id).leases().is_empty(),
            "lease left on {id}"
        );
    }
    check_all(&cluster);
}

#[test]
fn keep_alive_postpones_expiry() {
    let mut cluster = Cluster::new(105, TestConfig::default());
    let lease = grant(&mut cluster, 0, 3);
    put_leased(&mut cluster, "kept", lease);
    let leader = cluster.wait_for_leader();
    ticks(&mut cluster, 20);
    assert_eq!(cluster.replica_mut(leader).lease_keep_alive(lease), Ok(3));
    ticks(&mut cluster, 29);
    assert!(
        has_key(&cluster, leader, "kept"),
        "expired despite keep-alive"
    );
    ticks(&mut cluster, 1);
    assert!(!has_key(&cluster, leader, "kept"));
    assert_eq!(
        cluster.replica_mut(leader).lease_keep_alive(lease),
        Err(LeaseError::NotFound)
    );
}

#[test]
fn a_follower_refuses_keep_alive_and_names_the_leader() {
    let mut cluster = Cluster::new(106, TestConfig::default());
    let lease = grant(&mut cluster, 0, 10);
    let leader = cluster.wait_for_leader();
    for id in cluster.ids().into_iter().filter(|id| *id != leader) {
        let refused = cluster.replica_mut(id).lease_keep_alive(lease);
        assert_eq!(
            refused,
            Err(LeaseError::NotLeader {
                leader_hint: Some(leader)
            })
        );
        assert_eq!(refused.unwrap_err().to_string(), "etcdserver: not leader");
        assert_eq!(
            cluster.replica(id).lease_time_to_live(lease, false),
            Err(LeaseError::NotLeader {
                leader_hint: Some(leader)
            })
        );
    }
    assert_eq!(
        cluster.replica_mut(leader).lease_keep_alive(999),
        Err(LeaseError::NotFound)
    );
}

#[test]
fn a_leader_change_restarts_every_deadline() {
    let mut cluster = Cluster::new(107, TestConfig::default());
    let lease = grant(&mut cluster, 0, 3);
    put_leased(&mut cluster, "held", lease);
    let old = cluster.wait_for_leader();
    ticks(&mut cluster, 25);
    let new = cluster.ids().into_iter().find(|id| *id != old).unwrap();
    cluster.replica_mut(old).transfer_leadership(new).unwrap();
    cluster.settle();
    let mut waited = 0;
    while cluster.leader() != Some(new) {
        ticks(&mut cluster, 1);
        waited += 1;
        assert!(waited < 5, "the transfer did not complete");
    }
    assert_eq!(cluster.replica(new).role(), Role::Leader);
    // Past the old deadline (30 ticks after the grant), well within the new one.
    ticks(&mut cluster, 28 - waited);
    assert!(
        has_key(&cluster, new, "held"),
        "expired early after the change"
    );
    assert_eq!(cluster.replica(new).leases(), vec![lease]);
    ticks(&mut cluster, 3);
    assert!(!has_key(&cluster, new, "held"), "never expired");
    cluster.heartbeats();
    cluster.assert_converged();
    check_all(&cluster);
}

#[test]
fn revokes_per_tick_are_bounded() {
    let config = TestConfig {
        lease_revokes_per_tick_max: 2,
        ..TestConfig::default()
    };
    let mut cluster = Cluster::new(108, config);
    let leader = cluster.wait_for_leader();
    for id in 1..=5 {
        cluster
            .propose_on(leader, Command::LeaseGrant { id, ttl_seconds: 2 })
            .unwrap();
    }
    cluster.settle();
    assert_eq!(cluster.replica(leader).leases().len(), 5);
    ticks(&mut cluster, 2 * TICKS_PER_SECOND - 1);
    assert_eq!(cluster.replica(leader).leases().len(), 5);
    let mut left = Vec::new();
    for _ in 0..3 {
        ticks(&mut cluster, 1);
        left.push(cluster.replica(leader).leases().len());
    }
    assert_eq!(left, vec![3, 1, 0]);
}

#[test]
fn leases_survive_a_restart_with_the_backend_kept_or_lost() {
    for backend_on_crash in [BackendOnCrash::Keep, BackendOnCrash::Lose] {
        let mut cluster = Cluster::new(109, TestConfig::default());
        let mut rng = Prng::new(109);
        let lease = grant(&mut cluster, 0, 60);
        let other = grant(&mut cluster, 0, 60);
        put_leased(&mut cluster, "a", lease);
        put_leased(&mut cluster, "b", other);
        let leader = cluster.wait_for_leader();
        answer(&mut cluster, leader, Command::LeaseRevoke { id: other }).unwrap();
        cluster.heartbeats();
        for id in cluster.ids() {
            cluster.crash(id, &mut rng, backend_on_crash);
        }
        for id in cluster.ids() {
            cluster.restart(id);
        }
        let leader = cluster.wait_for_leader();
        cluster.heartbeats();
        for id in cluster.ids() {
            assert_eq!(
                cluster.replica(id).leases(),
                vec![lease],
                "{backend_on_crash:?} on {id}"
            );
        }
        check_all(&cluster);
        let ttl = cluster
            .replica(leader)
            .lease_time_to_live(lease, true)
            .unwrap();
        assert_eq!(ttl.keys, vec![b"a".to_vec()]);
        assert_eq!(ttl.granted_ttl_seconds, 60);
        let revoked = answer(&mut cluster, leader, Command::LeaseRevoke { id: lease });
        assert!(matches!(
            revoked,
            Ok(CommandResponse::LeaseRevoke { deleted: 1, .. })
        ));
    }
}

#[test]
fn leases_survive_a_snapshot_install_and_a_restart_from_a_snapshot() {
    let config = TestConfig {
        snapshot_every_entries: 4,
        ..TestConfig::default()
    };
    let mut cluster = Cluster::new(110, config);
    let mut rng = Prng::new(110);
    let leader = cluster.wait_for_leader();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging, &mut rng, BackendOnCrash::Lose);
    let lease = grant(&mut cluster, 0, 60);
    put_leased(&mut cluster, "a", lease);
    put_leased(&mut cluster, "b", lease);
    for i in 0..10 {
        cluster.put(&format!("filler{i}"), "x");
    }
    // A lease granted after the leader's last snapshot: in the log, not in the snapshot.
    let late = grant(&mut cluster, 0, 60);
    put_leased(&mut cluster, "c", late);
    cluster.restart(lagging);
    cluster.heartbeats();
    cluster.heartbeats();
    assert!(cluster.snapshots_installed > 0, "no snapshot was installed");
    cluster.assert_converged();
    let mut expected = vec![lease, late];
    expected.sort_unstable();
    assert_eq!(cluster.replica(lagging).leases(), expected);
    check_all(&cluster);

    // Every node restarts from its own snapshot and log, the backend kept or lost.
    for (id, backend_on_crash) in cluster.ids().into_iter().zip([
        BackendOnCrash::Keep,
        BackendOnCrash::Lose,
        BackendOnCrash::Keep,
    ]) {
        cluster.crash(id, &mut rng, backend_on_crash);
        cluster.restart(id);
        assert_eq!(cluster.replica(id).leases(), expected, "{id} after restart");
        cluster.replica(id).check_invariants();
    }
    let leader = cluster.wait_for_leader();
    cluster.heartbeats();
    let revoked = answer(&mut cluster, leader, Command::LeaseRevoke { id: lease });
    assert!(matches!(
        revoked,
        Ok(CommandResponse::LeaseRevoke { deleted: 2, .. })
    ));
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        assert!(!has_key(&cluster, id, "a") && has_key(&cluster, id, "c"));
        assert_eq!(cluster.replica(id).leases(), vec![late]);
    }
    check_all(&cluster);
}

#[test]
fn a_key_follows_its_latest_put_a_delete_detaches_it_and_revoke_events_feed_watchers() {
    let mut cluster = Cluster::new(111, TestConfig::default());
    let first = grant(&mut cluster, 0, 100);
    let second = grant(&mut cluster, 0, 100);
    put_leased(&mut cluster, "moved", first);
    put_leased(&mut cluster, "moved", second);
    put_leased(&mut cluster, "unleased", first);
    cluster.put("unleased", "plain");
    put_leased(&mut cluster, "deleted", first);
    put_leased(&mut cluster, "kept", first);
    let leader = cluster.wait_for_leader();
    // A transaction's put attaches too.
    let txn = TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            lease: first,
            ..PutRequest::new("in-txn", "v")
        })],
        ..TxnRequest::default()
    };
    answer(&mut cluster, leader, Command::Txn(txn)).unwrap();
    let delete = chorus_mvcc::DeleteRangeRequest::key("deleted");
    answer(&mut cluster, leader, Command::DeleteRange(delete)).unwrap();
    let keys = |cluster: &Cluster, lease| {
        cluster
            .replica(leader)
            .lease_time_to_live(lease, true)
            .unwrap()
            .keys
    };
    assert_eq!(
        keys(&cluster, first),
        vec![b"in-txn".to_vec(), b"kept".to_vec()]
    );
    assert_eq!(keys(&cluster, second), vec![b"moved".to_vec()]);
    check_all(&cluster);

    let (index, _) = cluster
        .propose_on(leader, Command::LeaseRevoke { id: first })
        .unwrap();
    let outcome_events = {
        // Run the leader's cycles by hand to see the events of the revoke.
        let mut events = Vec::new();
        for _ in 0..20 {
            let replica = cluster.replica_mut(leader);
            if replica.has_ready() {
                let outcome = replica.handle_ready().unwrap();
                for applied in &outcome.applied {
                    if applied.index == index {
                        events = applied.events.clone();
                    }
                }
                cluster.queue.extend(outcome.messages_now);
                cluster.queue.extend(outcome.messages_after_persist);
            }
            cluster.deliver_all();
            for id in cluster.ids().into_iter().filter(|id| *id != leader) {
                cluster.cycle(id, &mut Prng::new(1), BackendOnCrash::Keep);
            }
        }
        events
    };
    let deleted: Vec<&[u8]> = outcome_events
        .iter()
        .map(|event| event.kv.key.as_slice())
        .collect();
    assert_eq!(deleted, vec![b"in-txn".as_slice(), b"kept".as_slice()]);
    assert!(outcome_events
        .iter()
        .all(|event| event.kind == chorus_mvcc::EventKind::Delete
            && event.prev_kv.as_ref().map(|kv| kv.lease) == Some(first)));
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        assert!(has_key(&cluster, id, "moved") && has_key(&cluster, id, "unleased"));
        assert!(!has_key(&cluster, id, "kept") && !has_key(&cluster, id, "in-txn"));
        assert_eq!(cluster.replica(id).leases(), vec![second]);
    }
    check_all(&cluster);
}

#[test]
fn a_leader_elected_after_a_crash_gives_every_lease_its_whole_ttl_again() {
    let mut cluster = Cluster::new(112, TestConfig::default());
    let mut rng = Prng::new(112);
    let lease = grant(&mut cluster, 0, 3);
    put_leased(&mut cluster, "held", lease);
    let old = cluster.wait_for_leader();
    ticks(&mut cluster, 25);
    cluster.crash(old, &mut rng, BackendOnCrash::Keep);
    // The followers' own deadlines pass while they elect a new leader.
    let mut elapsed = 0;
    let new = loop {
        ticks(&mut cluster, 1);
        elapsed += 1;
        if let Some(leader) = cluster.leader() {
            break leader;
        }
        assert!(elapsed < 200, "no leader after the crash");
    };
    assert!(
        25 + elapsed > 3 * TICKS_PER_SECOND,
        "elected before the old deadline"
    );
    assert!(has_key(&cluster, new, "held"), "expired on election");
    ticks(&mut cluster, 3 * TICKS_PER_SECOND - 2);
    assert!(
        has_key(&cluster, new, "held"),
        "expired early on the new leader"
    );
    ticks(&mut cluster, 2);
    assert!(!has_key(&cluster, new, "held"), "never expired");
    cluster.restart(old);
    cluster.heartbeats();
    cluster.assert_converged();
    check_all(&cluster);
}
