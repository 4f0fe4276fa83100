//! Scenario tests: faults placed by hand, read as a story.

use chorus_sim::cluster::Cluster;
use chorus_sim::faults::FaultSwitch;
use chorus_sim::runner::final_checks;
use chorus_sim::scenario::{RunOptions, Scenario};
use chorus_sim::time::{MILLISECOND, SECOND};

fn calm_cluster(seed: u64, nodes: usize, fault: Option<FaultSwitch>) -> Cluster {
    let options = RunOptions {
        fault,
        duration_ns: 8 * SECOND,
        ..RunOptions::new(seed, nodes)
    };
    let mut cluster = Cluster::new(Scenario::calm(options), false);
    cluster.start();
    cluster
}

fn others(nodes: u64, leader: u64) -> Vec<u64> {
    (1..=nodes).filter(|id| *id != leader).collect()
}

#[test]
fn a_cut_off_leader_is_replaced_and_nothing_acknowledged_is_lost() {
    let mut cluster = calm_cluster(1, 3, None);
    assert!(cluster.run_for(SECOND));
    let Some(old_leader) = cluster.leader() else {
        panic!("no leader after a second")
    };

    cluster.partition(&[old_leader], &others(3, old_leader));
    assert!(cluster.run_for(2 * SECOND));
    let Some(new_leader) = cluster.leader() else {
        panic!("the majority elected no leader")
    };
    assert_ne!(new_leader, old_leader);

    cluster.heal();
    assert!(cluster.run_to_end(), "{:?}", cluster.violation());
    let (violation, _) = final_checks(&mut cluster);
    assert_eq!(violation, None);
}

#[test]
fn a_cut_off_leader_that_commits_alone_is_caught() {
    let mut cluster = calm_cluster(1, 3, Some(FaultSwitch::CommitWithoutMajority));
    assert!(cluster.run_for(SECOND) || cluster.violation().is_some());
    if let Some(old_leader) = cluster.leader() {
        cluster.partition(&[old_leader], &others(3, old_leader));
        cluster.run_for(2 * SECOND);
        cluster.heal();
    }
    cluster.run_to_end();
    let violation = cluster
        .violation()
        .cloned()
        .or_else(|| final_checks(&mut cluster).0);
    let Some(violation) = violation else {
        panic!("commit without majority went unnoticed")
    };
    assert!(
        [
            "state-machine-safety",
            "acked-writes-survive",
            "log-matching",
            "linearizability"
        ]
        .contains(&violation.checker),
        "{violation}"
    );
}

#[test]
fn every_replica_crashing_together_loses_no_acknowledged_write() {
    let mut cluster = calm_cluster(2, 5, None);
    for _ in 0..3 {
        assert!(cluster.run_for(1500 * MILLISECOND));
        for id in 1..=5 {
            cluster.crash(id);
        }
        assert!(cluster.run_for(50 * MILLISECOND));
        for id in 1..=5 {
            cluster.restart(id);
        }
    }
    assert!(cluster.run_to_end(), "{:?}", cluster.violation());
    assert_eq!(final_checks(&mut cluster).0, None);
    assert!(cluster.checkers().acked_writes.acknowledged() > 50);
}

#[test]
fn a_paused_leader_steps_down_when_it_resumes() {
    let mut cluster = calm_cluster(3, 3, None);
    assert!(cluster.run_for(SECOND));
    let Some(old_leader) = cluster.leader() else {
        panic!("no leader after a second")
    };
    cluster.pause(old_leader);
    assert!(cluster.run_for(SECOND));
    assert!(cluster.leader().is_some_and(|leader| leader != old_leader));
    cluster.resume(old_leader);
    assert!(cluster.run_for(100 * MILLISECOND));
    assert_eq!(
        cluster.node(old_leader).leader_term(),
        None,
        "the old leader still leads"
    );
    assert!(cluster.run_to_end(), "{:?}", cluster.violation());
    assert_eq!(final_checks(&mut cluster).0, None);
}

#[test]
fn a_one_way_partition_from_a_follower_heals() {
    let mut cluster = calm_cluster(4, 3, None);
    assert!(cluster.run_for(SECOND));
    let Some(leader) = cluster.leader() else {
        panic!("no leader after a second")
    };
    let follower = others(3, leader)[0];
    cluster.block_one_way(leader, follower);
    assert!(cluster.run_for(2 * SECOND));
    cluster.heal();
    assert!(cluster.run_to_end(), "{:?}", cluster.violation());
    assert_eq!(final_checks(&mut cluster).0, None);
}

#[test]
fn a_leader_losing_power_in_the_middle_of_each_persist_loses_no_acknowledged_write() {
    let mut cluster = calm_cluster(4, 3, None);
    for _ in 0..5 {
        assert!(cluster.run_for(SECOND));
        let Some(leader) = cluster.leader() else {
            panic!("no leader")
        };
        cluster.crash_during_next_persist(leader);
        // Its next persist comes with the next write (clients on followers forward theirs).
        for _ in 0..10 {
            assert!(cluster.run_for(100 * MILLISECOND));
            if !cluster.node(leader).is_up() {
                break;
            }
        }
        assert!(
            !cluster.node(leader).is_up(),
            "the leader persisted nothing in a second"
        );
        cluster.restart(leader);
    }
    assert!(cluster.run_to_end(), "{:?}", cluster.violation());
    assert_eq!(final_checks(&mut cluster).0, None);
    assert!(cluster.checkers().acked_writes.acknowledged() > 50);
}
