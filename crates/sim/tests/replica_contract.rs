//! What the simulator relies on from `chorus_replica::Replica`'s split cycle, shown directly over
//! three replicas on `SimFs` disks, without the simulator. One test keeps crates/sim/BUGS.md
//! entry 3 (fixed) from coming back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{MemoryBackend, PutRequest};
use chorus_raft::{Config, Message, MessageBody, NodeId, Role};
use chorus_replica::{Command, Replica, ReplicaConfig};
use chorus_storage::SimFs;
use std::collections::VecDeque;
use std::path::Path;

type SimReplica = Replica<SimFs, MemoryBackend>;

fn open(id: u64) -> SimReplica {
    let mut raft = Config::new(NodeId(id), [NodeId(1), NodeId(2), NodeId(3)]);
    raft.seed = id;
    let mut config = ReplicaConfig::new(raft);
    config.snapshot_every_entries = 5;
    Replica::open(
        config,
        SimFs::new(),
        Path::new("/data"),
        MemoryBackend::new(),
    )
    .unwrap()
}

/// Runs whole cycles and delivers messages, dropping those to or from `cut_off`, until quiet.
fn settle(replicas: &mut [SimReplica], network: &mut VecDeque<Message>, cut_off: Option<u64>) {
    for _ in 0..1000 {
        for replica in replicas.iter_mut() {
            while replica.has_ready() {
                let outcome = replica.handle_ready().unwrap();
                network.extend(outcome.messages_now);
                network.extend(outcome.messages_after_persist);
            }
        }
        let Some(message) = network.pop_front() else {
            return;
        };
        if Some(message.to.0) == cut_off || Some(message.from.0) == cut_off {
            continue;
        }
        replicas[(message.to.0 - 1) as usize].step(message);
    }
}

fn three_replicas_with_n3_behind_a_compacted_log() -> (Vec<SimReplica>, VecDeque<Message>) {
    let mut replicas: Vec<SimReplica> = (1..=3).map(open).collect();
    let mut network = VecDeque::new();
    replicas[0].campaign();
    settle(&mut replicas, &mut network, None);
    assert_eq!(replicas[0].role(), Role::Leader);
    for n in 0..20 {
        let put = Command::Put(PutRequest::new(format!("k{n}"), format!("v{n}")));
        replicas[0].propose(&put).unwrap();
        settle(&mut replicas, &mut network, Some(3));
    }
    assert!(replicas[0].raft().snapshot_meta().last_index.0 > replicas[2].applied_index().0);
    (replicas, network)
}

/// Heals n3: ticks the leader until it sends n3 a snapshot, delivering everything else.
fn next_snapshot_for_n3(replicas: &mut [SimReplica], network: &mut VecDeque<Message>) -> Message {
    for _ in 0..200 {
        replicas[0].tick();
        for _ in 0..100 {
            for replica in replicas.iter_mut() {
                if replica.id() != NodeId(3) {
                    while replica.has_ready() {
                        let outcome = replica.handle_ready().unwrap();
                        network.extend(outcome.messages_now);
                        network.extend(outcome.messages_after_persist);
                    }
                }
            }
            while replicas[2].has_ready() {
                let outcome = replicas[2].handle_ready().unwrap();
                network.extend(outcome.messages_now);
                network.extend(outcome.messages_after_persist);
            }
            let Some(message) = network.pop_front() else {
                break;
            };
            if matches!(message.body, MessageBody::InstallSnapshot(_)) && message.to == NodeId(3) {
                return message;
            }
            replicas[(message.to.0 - 1) as usize].step(message);
        }
    }
    panic!("the leader never sent n3 a snapshot");
}

/// A snapshot stepped between `begin_ready` and `finish_ready` is installed by the next cycle.
#[test]
fn a_snapshot_stepped_while_a_ready_is_in_flight_is_installed_by_the_next_cycle() {
    let (mut replicas, mut network) = three_replicas_with_n3_behind_a_compacted_log();
    let snapshot = next_snapshot_for_n3(&mut replicas, &mut network);
    let n3 = &mut replicas[2];
    n3.tick();
    n3.begin_ready().unwrap();
    n3.step(snapshot);
    n3.finish_ready().unwrap();
    while n3.has_ready() {
        n3.handle_ready().unwrap();
    }
    assert_eq!(
        n3.durable().snapshot_index(),
        n3.raft().snapshot_meta().last_index
    );
    n3.check_invariants();
}

/// BUGS.md 3: between that `finish_ready` and the next cycle, `check_invariants` fails although
/// the replica is right: raft's snapshot is ahead of the store and the durable snapshot.
#[test]
fn check_invariants_holds_while_a_snapshot_is_pending() {
    let (mut replicas, mut network) = three_replicas_with_n3_behind_a_compacted_log();
    let snapshot = next_snapshot_for_n3(&mut replicas, &mut network);
    let n3 = &mut replicas[2];
    n3.tick();
    n3.begin_ready().unwrap();
    n3.step(snapshot);
    n3.finish_ready().unwrap();
    n3.check_invariants();
}
