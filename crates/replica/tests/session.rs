//! Client sessions in the replicated state machine: a retry is answered from the session's
//! table and not applied twice, sequences may come out of order, acknowledged answers are
//! dropped, the limits hold at and past them, expiry is the leader's, and the table survives
//! restarts (backend kept ahead of the snapshot, or lost), snapshot installations and a real
//! redb backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{PutRequest, RangeRequest, RedbBackend, RedbConfig, RequestOp, TxnRequest};
use chorus_raft::NodeId;
use chorus_replica::response::encode_response;
use chorus_replica::{
    Command, CommandResponse, Replica, ReplicaConfig, SessionError, SESSION_RESPONSES_MAX,
    SESSION_RESPONSE_BYTES_MAX,
};
use chorus_storage::RealFs;
use common::{BackendOnCrash, Cluster, Prng, TestConfig};
use std::path::Path;

const TICKS_PER_SECOND: u64 = 10;

type Answer = Result<CommandResponse, chorus_mvcc::Error>;

/// Proposes `command` on the leader, runs the cluster until it is applied, returns its answer.
fn answer(cluster: &mut Cluster, command: Command) -> Answer {
    let leader = cluster.wait_for_leader();
    let (index, _) = cluster.propose_on(leader, command).expect("proposed");
    cluster.settle();
    cluster
        .answers
        .remove(&(leader, index))
        .expect("the proposal was answered")
}

fn open(cluster: &mut Cluster, ttl_seconds: i64) -> u64 {
    match answer(
        cluster,
        Command::SessionOpen {
            ttl_seconds,
            sessions_max: 100,
        },
    ) {
        Ok(CommandResponse::SessionOpened { id, .. }) => id,
        other => panic!("open answered {other:?}"),
    }
}

fn sessioned(session: u64, sequence: u64, acknowledged: u64, command: Command) -> Command {
    Command::Sessioned {
        session,
        sequence,
        acknowledged,
        command: Box::new(command),
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest::new(key, value))
}

/// The key's version on `id`: how many puts it took since its creation.
fn version(cluster: &Cluster, id: NodeId, key: &str) -> i64 {
    let response = cluster.replica(id).range(&RangeRequest::key(key)).unwrap();
    response.kvs.first().map_or(0, |kv| kv.version)
}

fn put_revision(answer: &Answer) -> i64 {
    match answer {
        Ok(CommandResponse::Put(put)) => put.revision,
        other => panic!("not a put answer: {other:?}"),
    }
}

fn check_all(cluster: &Cluster) {
    for id in cluster.live_ids() {
        cluster.replica(id).check_invariants();
    }
}

fn one_node() -> TestConfig {
    TestConfig {
        size: 1,
        ..TestConfig::default()
    }
}

#[test]
fn a_retry_is_answered_from_the_table_and_not_applied_twice() {
    let mut cluster = Cluster::new(201, TestConfig::default());
    let session = open(&mut cluster, 60);
    let first = answer(&mut cluster, sessioned(session, 1, 0, put("k", "v")));
    let revision = put_revision(&first);
    // The retry of the same (session, sequence), e.g. at a new leader after a timeout.
    let retry = answer(&mut cluster, sessioned(session, 1, 0, put("k", "v")));
    assert_eq!(retry, first);
    cluster.heartbeats();
    cluster.assert_converged();
    for id in cluster.ids() {
        assert_eq!(version(&cluster, id, "k"), 1, "applied twice on {id}");
        assert_eq!(cluster.replica(id).store().current_revision(), revision);
        assert_eq!(cluster.replica(id).sessions(), vec![session]);
    }
    // A refusal is stored too: the retry of a refused put gets the same refusal.
    let ignore = Command::Put(PutRequest {
        ignore_value: true,
        ..PutRequest::new("absent", "")
    });
    let refused = answer(&mut cluster, sessioned(session, 2, 1, ignore.clone()));
    assert_eq!(refused, Err(chorus_mvcc::Error::KeyNotFound));
    assert_eq!(
        answer(&mut cluster, sessioned(session, 2, 1, ignore)),
        refused
    );
    check_all(&cluster);
}

#[test]
fn sequences_may_arrive_out_of_order() {
    let mut cluster = Cluster::new(202, TestConfig::default());
    let session = open(&mut cluster, 60);
    let third = answer(&mut cluster, sessioned(session, 3, 0, put("c", "3")));
    let first = answer(&mut cluster, sessioned(session, 1, 0, put("a", "1")));
    let second = answer(&mut cluster, sessioned(session, 2, 0, put("b", "2")));
    assert!(put_revision(&third) < put_revision(&first));
    assert!(put_revision(&first) < put_revision(&second));
    for (sequence, expected, key) in [(3, &third, "c"), (1, &first, "a"), (2, &second, "b")] {
        let retry = answer(
            &mut cluster,
            sessioned(session, sequence, 0, put(key, "again")),
        );
        assert_eq!(&retry, expected, "sequence {sequence}");
    }
    let leader = cluster.wait_for_leader();
    for key in ["a", "b", "c"] {
        assert_eq!(version(&cluster, leader, key), 1);
    }
    check_all(&cluster);
}

#[test]
fn acknowledged_answers_are_dropped_and_their_retries_refused() {
    let mut cluster = Cluster::new(203, TestConfig::default());
    let session = open(&mut cluster, 60);
    answer(&mut cluster, sessioned(session, 1, 0, put("a", "1"))).unwrap();
    answer(&mut cluster, sessioned(session, 2, 0, put("a", "2"))).unwrap();
    let third = answer(&mut cluster, sessioned(session, 3, 2, put("a", "3")));
    assert!(third.is_ok());
    for sequence in [1, 2] {
        assert_eq!(
            answer(&mut cluster, sessioned(session, sequence, 2, put("a", "x"))),
            Ok(CommandResponse::SessionRefused(
                SessionError::SequenceAcknowledged {
                    id: session,
                    sequence,
                    acknowledged: 2
                }
            ))
        );
    }
    // A lower acknowledged value later does not bring anything back.
    assert_eq!(
        answer(&mut cluster, sessioned(session, 3, 0, put("a", "x"))),
        third
    );
    let leader = cluster.wait_for_leader();
    assert_eq!(version(&cluster, leader, "a"), 3);
    // The side table holds the session and one answer (sequence 3): checked by the invariants.
    check_all(&cluster);
}

#[test]
fn an_unknown_or_closed_session_is_refused_and_nothing_applied() {
    let mut cluster = Cluster::new(204, TestConfig::default());
    assert_eq!(
        answer(&mut cluster, sessioned(77, 1, 0, put("k", "v"))),
        Ok(CommandResponse::SessionRefused(SessionError::NotFound {
            id: 77
        }))
    );
    let session = open(&mut cluster, 60);
    answer(&mut cluster, sessioned(session, 1, 0, put("k", "v"))).unwrap();
    assert!(matches!(
        answer(&mut cluster, Command::SessionClose { id: session }),
        Ok(CommandResponse::SessionClosed { id, .. }) if id == session
    ));
    assert_eq!(
        answer(&mut cluster, sessioned(session, 1, 0, put("k", "v"))),
        Ok(CommandResponse::SessionRefused(SessionError::NotFound {
            id: session
        }))
    );
    assert_eq!(
        answer(&mut cluster, Command::SessionClose { id: session }),
        Ok(CommandResponse::SessionRefused(SessionError::NotFound {
            id: session
        }))
    );
    let leader = cluster.wait_for_leader();
    assert_eq!(version(&cluster, leader, "k"), 1);
    assert!(cluster.replica(leader).sessions().is_empty());
    check_all(&cluster);
}

#[test]
fn sessions_past_the_limit_are_refused_until_one_closes() {
    let mut cluster = Cluster::new(205, one_node());
    let open_max_2 = Command::SessionOpen {
        ttl_seconds: 60,
        sessions_max: 2,
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        match answer(&mut cluster, open_max_2.clone()) {
            Ok(CommandResponse::SessionOpened { id, .. }) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        answer(&mut cluster, open_max_2.clone()),
        Ok(CommandResponse::SessionRefused(
            SessionError::TooManySessions { max: 2 }
        ))
    );
    answer(&mut cluster, Command::SessionClose { id: ids[0] }).unwrap();
    assert!(matches!(
        answer(&mut cluster, open_max_2),
        Ok(CommandResponse::SessionOpened { .. })
    ));
    // Ids are the entries' indexes: unique and increasing.
    let leader = cluster.wait_for_leader();
    let sessions = cluster.replica(leader).sessions();
    assert_eq!(sessions.len(), 2);
    assert!(sessions[0] == ids[1] && sessions[1] > ids[1]);
    // TTLs: above the maximum refused, below the minimum raised.
    assert!(matches!(
        answer(
            &mut cluster,
            Command::SessionOpen {
                ttl_seconds: chorus_replica::SESSION_TTL_SECONDS_MAX + 1,
                sessions_max: 10
            }
        ),
        Ok(CommandResponse::SessionRefused(
            SessionError::TtlTooLarge { .. }
        ))
    ));
    let at_max = answer(
        &mut cluster,
        Command::SessionOpen {
            ttl_seconds: chorus_replica::SESSION_TTL_SECONDS_MAX,
            sessions_max: 10,
        },
    );
    let Ok(CommandResponse::SessionOpened {
        id, ttl_seconds, ..
    }) = at_max
    else {
        panic!("a TTL at the maximum was refused: {at_max:?}")
    };
    assert_eq!(ttl_seconds, chorus_replica::SESSION_TTL_SECONDS_MAX);
    answer(&mut cluster, Command::SessionClose { id }).unwrap();
    match answer(
        &mut cluster,
        Command::SessionOpen {
            ttl_seconds: 0,
            sessions_max: 10,
        },
    ) {
        Ok(CommandResponse::SessionOpened { ttl_seconds, .. }) => assert!(ttl_seconds >= 1),
        other => panic!("{other:?}"),
    }
    check_all(&cluster);
}

#[test]
fn stored_answers_are_bounded_in_count_at_and_past_the_limit() {
    let mut cluster = Cluster::new(206, one_node());
    let session = open(&mut cluster, 600);
    let leader = cluster.wait_for_leader();
    let limit = SESSION_RESPONSES_MAX as u64;
    let mut sequence = 0;
    while sequence < limit {
        for _ in 0..64 {
            sequence += 1;
            cluster
                .propose_on(leader, sessioned(session, sequence, 0, put("k", "v")))
                .expect("proposed");
        }
        cluster.settle();
    }
    assert_eq!(version(&cluster, leader, "k"), limit as i64);
    // At the limit: a new sequence is refused, not applied; a stored one is still answered.
    assert_eq!(
        answer(
            &mut cluster,
            sessioned(session, limit + 1, 0, put("k", "v"))
        ),
        Ok(CommandResponse::SessionRefused(
            SessionError::TooManyOutstanding
        ))
    );
    assert!(answer(&mut cluster, sessioned(session, limit, 0, put("k", "v"))).is_ok());
    assert_eq!(version(&cluster, leader, "k"), limit as i64);
    // Acknowledging one makes room for exactly one.
    assert!(answer(
        &mut cluster,
        sessioned(session, limit + 1, 1, put("k", "v"))
    )
    .is_ok());
    assert_eq!(
        answer(
            &mut cluster,
            sessioned(session, limit + 2, 1, put("k", "v"))
        ),
        Ok(CommandResponse::SessionRefused(
            SessionError::TooManyOutstanding
        ))
    );
    assert_eq!(version(&cluster, leader, "k"), limit as i64 + 1);
    check_all(&cluster);
}

#[test]
fn stored_answers_are_bounded_in_bytes_at_and_past_the_limit() {
    let mut cluster = Cluster::new(207, one_node());
    // 40 keys of about 3 KiB: a transaction that ranges over them answers about 120 KiB.
    for n in 0..40 {
        cluster.put(&format!("big{n:02}"), &"x".repeat(3 * 1024));
    }
    let session = open(&mut cluster, 600);
    let read_all = Command::Txn(TxnRequest {
        success: vec![RequestOp::Range(RangeRequest {
            key: b"big".to_vec(),
            range_end: b"bih".to_vec(),
            ..RangeRequest::default()
        })],
        ..TxnRequest::default()
    });
    let first = answer(&mut cluster, sessioned(session, 1, 0, read_all.clone()));
    let answer_bytes = encode_response(&first).len();
    assert!(answer_bytes > 120 * 1024);
    // Admitted while the stored bytes are below the limit: ceil(limit / answer) answers.
    let admitted = SESSION_RESPONSE_BYTES_MAX.div_ceil(answer_bytes) as u64;
    for sequence in 2..=admitted {
        let result = answer(
            &mut cluster,
            sessioned(session, sequence, 0, read_all.clone()),
        );
        assert!(
            matches!(result, Ok(CommandResponse::Txn(_))),
            "sequence {sequence}"
        );
    }
    assert_eq!(
        answer(
            &mut cluster,
            sessioned(session, admitted + 1, 0, read_all.clone())
        ),
        Ok(CommandResponse::SessionRefused(
            SessionError::TooManyOutstanding
        ))
    );
    assert!(matches!(
        answer(&mut cluster, sessioned(session, admitted + 1, 1, read_all)),
        Ok(CommandResponse::Txn(_))
    ));
    check_all(&cluster);
}

#[test]
fn a_session_expires_on_the_leaders_clock_and_keep_alive_is_the_leaders() {
    let mut cluster = Cluster::new(208, TestConfig::default());
    let session = open(&mut cluster, 3);
    let leader = cluster.wait_for_leader();
    // Followers' deadlines pass without a keep-alive; only the leader's counts.
    for _ in 0..2 {
        for _ in 0..2 * TICKS_PER_SECOND {
            cluster.tick_all();
            cluster.settle();
        }
        assert_eq!(
            cluster.replica_mut(leader).session_keep_alive(session),
            Ok(3)
        );
    }
    for id in cluster.ids() {
        assert_eq!(cluster.replica(id).sessions(), vec![session], "on {id}");
        if id != leader {
            assert_eq!(
                cluster.replica_mut(id).session_keep_alive(session),
                Err(SessionError::NotLeader {
                    leader_hint: Some(leader)
                })
            );
        }
    }
    // A sessioned command restarts the deadline too.
    for _ in 0..2 * TICKS_PER_SECOND {
        cluster.tick_all();
        cluster.settle();
    }
    answer(&mut cluster, sessioned(session, 1, 0, put("k", "v"))).unwrap();
    for _ in 0..3 * TICKS_PER_SECOND - 3 {
        cluster.tick_all();
        cluster.settle();
    }
    assert_eq!(cluster.replica(leader).sessions(), vec![session]);
    for _ in 0..3 {
        cluster.tick_all();
        cluster.settle();
    }
    cluster.heartbeats();
    for id in cluster.ids() {
        assert!(cluster.replica(id).sessions().is_empty(), "left on {id}");
    }
    assert_eq!(
        cluster.replica_mut(leader).session_keep_alive(session),
        Err(SessionError::NotFound { id: session })
    );
    assert_eq!(
        answer(&mut cluster, sessioned(session, 2, 1, put("k", "v"))),
        Ok(CommandResponse::SessionRefused(SessionError::NotFound {
            id: session
        }))
    );
    check_all(&cluster);
}

#[test]
fn stored_answers_survive_restarts_with_the_backend_kept_or_lost() {
    for backend_on_crash in [BackendOnCrash::Keep, BackendOnCrash::Lose] {
        // Snapshots every 4 entries: the kept backend is ahead of the last snapshot.
        let config = TestConfig {
            snapshot_every_entries: 4,
            ..TestConfig::default()
        };
        let mut cluster = Cluster::new(209, config);
        let mut rng = Prng::new(209);
        let session = open(&mut cluster, 60);
        let mut answers = Vec::new();
        for sequence in 1..=6 {
            answers.push(answer(
                &mut cluster,
                sessioned(session, sequence, 0, put("k", &sequence.to_string())),
            ));
        }
        cluster.heartbeats();
        for id in cluster.ids() {
            cluster.crash(id, &mut rng, backend_on_crash);
        }
        for id in cluster.ids() {
            cluster.restart(id);
            cluster.replica(id).check_invariants();
        }
        cluster.wait_for_leader();
        cluster.heartbeats();
        for (sequence, expected) in (1..=6).zip(&answers) {
            let retry = answer(
                &mut cluster,
                sessioned(session, sequence, 0, put("k", "again")),
            );
            assert_eq!(
                &retry, expected,
                "{backend_on_crash:?}, sequence {sequence}"
            );
        }
        cluster.heartbeats();
        for id in cluster.ids() {
            assert_eq!(
                version(&cluster, id, "k"),
                6,
                "{backend_on_crash:?} on {id}"
            );
        }
        check_all(&cluster);
    }
}

#[test]
fn a_lagging_follower_gets_the_sessions_with_a_snapshot_and_answers_as_leader() {
    let config = TestConfig {
        snapshot_every_entries: 4,
        ..TestConfig::default()
    };
    let mut cluster = Cluster::new(210, config);
    let mut rng = Prng::new(210);
    let leader = cluster.wait_for_leader();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging, &mut rng, BackendOnCrash::Lose);
    let session = open(&mut cluster, 60);
    let first = answer(&mut cluster, sessioned(session, 1, 0, put("k", "1")));
    for n in 0..10 {
        cluster.put(&format!("filler{n}"), "x");
    }
    cluster.restart(lagging);
    cluster.heartbeats();
    cluster.heartbeats();
    assert!(cluster.snapshots_installed > 0, "no snapshot was installed");
    cluster.assert_converged();
    assert_eq!(cluster.replica(lagging).sessions(), vec![session]);
    check_all(&cluster);
    // The lagging node leads now: it answers the retry from the table it got.
    cluster
        .replica_mut(leader)
        .transfer_leadership(lagging)
        .unwrap();
    cluster.settle();
    let new_leader = cluster.wait_for_leader();
    assert_eq!(new_leader, lagging);
    assert_eq!(
        answer(&mut cluster, sessioned(session, 1, 0, put("k", "1"))),
        first
    );
    assert_eq!(version(&cluster, lagging, "k"), 1);
    check_all(&cluster);
}

fn open_redb(dir: &Path) -> Replica<RealFs, RedbBackend> {
    let mut config = ReplicaConfig::new(chorus_raft::Config::new(NodeId(1), [NodeId(1)]));
    config.snapshot_every_entries = 5;
    let backend = RedbBackend::open(&dir.join("mvcc.redb"), RedbConfig::default()).unwrap();
    Replica::open(config, RealFs, &dir.join("raft"), backend).unwrap()
}

fn apply_alone(replica: &mut Replica<RealFs, RedbBackend>, command: &Command) -> Answer {
    for _ in 0..100 {
        if replica.role() == chorus_raft::Role::Leader {
            break;
        }
        replica.tick();
        while replica.has_ready() {
            replica.handle_ready().unwrap();
        }
    }
    let (index, _) = replica.propose(command).unwrap();
    let mut result = None;
    while replica.has_ready() {
        for applied in replica.handle_ready().unwrap().applied {
            if applied.index == index {
                result = Some(applied.result);
            }
        }
    }
    result.expect("applied")
}

#[test]
fn stored_answers_survive_a_reopen_on_redb_ahead_of_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = open_redb(dir.path());
    let session = match apply_alone(
        &mut replica,
        &Command::SessionOpen {
            ttl_seconds: 60,
            sessions_max: 10,
        },
    ) {
        Ok(CommandResponse::SessionOpened { id, .. }) => id,
        other => panic!("{other:?}"),
    };
    let mut answers = Vec::new();
    for sequence in 1..=7 {
        answers.push(apply_alone(
            &mut replica,
            &sessioned(session, sequence, 0, put("k", "v")),
        ));
    }
    replica.check_invariants();
    let snapshot_index = replica.durable().snapshot_index();
    assert!(
        replica.applied_index() > snapshot_index,
        "backend ahead of the snapshot"
    );
    drop(replica);

    let mut replica = open_redb(dir.path());
    replica.check_invariants();
    for (sequence, expected) in (1..=7).zip(&answers) {
        let retry = apply_alone(
            &mut replica,
            &sessioned(session, sequence, 0, put("k", "x")),
        );
        assert_eq!(&retry, expected, "sequence {sequence}");
    }
    let kv = replica.range(&RangeRequest::key("k")).unwrap();
    assert_eq!(kv.kvs[0].version, 7);
    assert_eq!(kv.kvs[0].value, b"v");
    replica.check_invariants();
}

#[test]
fn lease_commands_in_sessions_survive_a_restart_ahead_of_the_snapshot() {
    for backend_on_crash in [BackendOnCrash::Keep, BackendOnCrash::Lose] {
        let config = TestConfig {
            snapshot_every_entries: 50,
            ..TestConfig::default()
        };
        let mut cluster = Cluster::new(211, config);
        let mut rng = Prng::new(211);
        let session = open(&mut cluster, 60);
        let grant = Command::LeaseGrant {
            id: 0,
            ttl_seconds: 60,
        };
        let granted = answer(&mut cluster, sessioned(session, 1, 0, grant.clone()));
        let Ok(CommandResponse::LeaseGrant { id: lease, .. }) = granted else {
            panic!("{granted:?}")
        };
        // A retry: answered from the table, no second lease (an id picked from another index).
        assert_eq!(
            answer(&mut cluster, sessioned(session, 1, 0, grant.clone())),
            granted
        );
        // A grant in an unknown session: refused, no lease.
        assert!(matches!(
            answer(&mut cluster, sessioned(999, 1, 0, grant)),
            Ok(CommandResponse::SessionRefused(
                SessionError::NotFound { .. }
            ))
        ));
        cluster.heartbeats();
        for id in cluster.ids() {
            cluster.crash(id, &mut rng, backend_on_crash);
        }
        for id in cluster.ids() {
            cluster.restart(id);
        }
        cluster.wait_for_leader();
        cluster.heartbeats();
        for id in cluster.ids() {
            assert_eq!(
                cluster.replica(id).leases(),
                vec![lease],
                "{backend_on_crash:?} on {id}"
            );
            assert_eq!(cluster.replica(id).sessions(), vec![session]);
        }
        assert_eq!(
            answer(
                &mut cluster,
                sessioned(
                    session,
                    1,
                    0,
                    Command::LeaseGrant {
                        id: 0,
                        ttl_seconds: 60
                    }
                )
            ),
            granted
        );
        check_all(&cluster);
    }
}

#[test]
fn session_expiries_per_tick_are_bounded() {
    let config = TestConfig {
        session_expires_per_tick_max: 2,
        ..TestConfig::default()
    };
    let mut cluster = Cluster::new(212, config);
    let leader = cluster.wait_for_leader();
    for _ in 0..5 {
        cluster
            .propose_on(
                leader,
                Command::SessionOpen {
                    ttl_seconds: 2,
                    sessions_max: 10,
                },
            )
            .unwrap();
    }
    cluster.settle();
    assert_eq!(cluster.replica(leader).sessions().len(), 5);
    for _ in 0..2 * TICKS_PER_SECOND - 1 {
        cluster.tick_all();
        cluster.settle();
    }
    assert_eq!(cluster.replica(leader).sessions().len(), 5);
    let mut left = Vec::new();
    for _ in 0..3 {
        cluster.tick_all();
        cluster.settle();
        left.push(cluster.replica(leader).sessions().len());
    }
    assert_eq!(left, vec![3, 1, 0]);
    check_all(&cluster);
}
