//! Linearizability of a real cluster under faults, checked with the simulator's checker.
//!
//! Three `chorus server` processes, their peer links behind the fault proxies of tests/support;
//! five concurrent clients (tonic `KvClient`s, each on one member, moving to the next member
//! after an error) put, get, compare-and-swap (a `Txn`) and delete a few keys while the test
//! kills the leader with SIGKILL and restarts it, freezes the new leader with SIGSTOP and
//! resumes it, cuts the leader off from both followers and heals it, and cuts one link one way
//! while delaying another. Then the members must converge, and a final read of every key on
//! every member joins the history. Every operation is recorded with its call and return times (one
//! monotonic clock: nanoseconds since the test began) and its outcome, written as JSON Lines
//! (docs/history.md) under the cargo target directory, and checked by
//! `chorus_sim::linearizability::check`.
//!
//! Outcomes: an answer is recorded as it came (a read's value, a cas's `succeeded`). A write
//! that fails or times out is *unknown*: it may have been applied (a forwarded proposal may
//! commit after the client gave up), so the checker may place it anywhere after its call, or
//! nowhere. A read that fails is refused (it changed nothing); one that times out is unknown.
//!
//! Inconclusive results: with unique values per write, three keys and a few hundred operations
//! per key, the checker decides in milliseconds; running out of its default budget would mean
//! something unusual, so the test checks again with ten times the budget and fails if it is
//! still inconclusive. It has not been seen to happen; if it ever flakes, the history file says
//! which key and why.
//!
//! Without `etcdctl` on the PATH (used to find the leader) the real-cluster test says so and
//! passes, except under CI (`CI` set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chorus_proto::etcdserverpb::{
    compare, kv_client::KvClient, request_op, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use chorus_sim::history::{Call, History, Nanos, Operation, Outcome};
use chorus_sim::history_json::{read_history, write_history};
use chorus_sim::linearizability::{check, check_with_budget, Verdict, DEFAULT_SEARCH_STEPS_MAX};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{etcdctl_available, Cluster, FAST_TIMING};
use tonic::transport::Channel;

/// The keys the clients work on: few, so that operations collide.
const KEYS: [&str; 3] = ["x", "y", "z"];
/// Concurrent clients.
const CLIENTS: u64 = 5;
/// How long a client waits for an answer before recording the operation as unknown.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// One monotonic clock for every client: nanoseconds since the test began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> Nanos {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap()
    }
}

/// A small xorshift generator: each client's choices, reproducible from its id.
struct Choices(u64);

impl Choices {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn kv_client(endpoint: &str) -> KvClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect_lazy();
    KvClient::new(channel)
}

/// Runs one operation against `client`; `None` when it did not answer in time.
async fn perform(
    client: &mut KvClient<Channel>,
    call: &Call,
) -> Option<Result<Outcome, tonic::Status>> {
    let request = async {
        match call {
            Call::Get { key } => client
                .range(RangeRequest {
                    key: key.clone().into(),
                    ..RangeRequest::default()
                })
                .await
                .map(|response| {
                    Outcome::Read(
                        response
                            .into_inner()
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                    )
                }),
            Call::Put { key, value } => client
                .put(PutRequest {
                    key: key.clone().into(),
                    value: value.clone().into(),
                    ..PutRequest::default()
                })
                .await
                .map(|_| Outcome::Ok),
            Call::Delete { key } => client
                .delete_range(DeleteRangeRequest {
                    key: key.clone().into(),
                    ..DeleteRangeRequest::default()
                })
                .await
                .map(|_| Outcome::Ok),
            Call::Cas { key, expect, value } => {
                let compare = match expect {
                    Some(expected) => Compare {
                        result: compare::CompareResult::Equal.into(),
                        target: compare::CompareTarget::Value.into(),
                        key: key.clone().into(),
                        target_union: Some(compare::TargetUnion::Value(expected.clone().into())),
                        ..Compare::default()
                    },
                    // Absent: created at revision 0, as etcd clients spell it.
                    None => Compare {
                        result: compare::CompareResult::Equal.into(),
                        target: compare::CompareTarget::Create.into(),
                        key: key.clone().into(),
                        target_union: Some(compare::TargetUnion::CreateRevision(0)),
                        ..Compare::default()
                    },
                };
                client
                    .txn(TxnRequest {
                        compare: vec![compare],
                        success: vec![RequestOp {
                            request: Some(request_op::Request::RequestPut(PutRequest {
                                key: key.clone().into(),
                                value: value.clone().into(),
                                ..PutRequest::default()
                            })),
                        }],
                        failure: Vec::new(),
                    })
                    .await
                    .map(|response| Outcome::Cas(response.into_inner().succeeded))
            }
        }
    };
    tokio::time::timeout(OPERATION_TIMEOUT, request).await.ok()
}

/// One client: operations one at a time until `stop`, each recorded in `operations`.
async fn run_client(
    id: u64,
    endpoints: Vec<String>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    operations: Arc<Mutex<Vec<Operation>>>,
) {
    let mut choices = Choices(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let mut member = usize::try_from(id).unwrap() % endpoints.len();
    let mut client = kv_client(&endpoints[member]);
    // The last value this client saw per key: what its cas expects, so that some swap.
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS.len()];
    let mut written = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let key_index = usize::try_from(choices.below(KEYS.len() as u64)).unwrap();
        let key = KEYS[key_index].to_string();
        let mut fresh_value = || {
            written += 1;
            format!("c{id}-{written}")
        };
        let call = match choices.below(20) {
            0..=7 => Call::Get { key },
            8..=12 => Call::Put {
                key,
                value: fresh_value(),
            },
            13..=16 => Call::Cas {
                key,
                expect: last_seen[key_index].clone(),
                value: fresh_value(),
            },
            _ => Call::Delete { key },
        };
        let call_time = clock.now();
        let answer = perform(&mut client, &call).await;
        let return_time = clock.now();
        let (outcome, return_time, failed) = match answer {
            Some(Ok(outcome)) => (outcome, Some(return_time), false),
            // A read that failed changed nothing; a write that failed may yet be applied.
            Some(Err(_)) if matches!(call, Call::Get { .. }) => {
                (Outcome::Failed, Some(return_time), true)
            }
            Some(Err(_)) | None => (Outcome::Unknown, None, true),
        };
        match (&call, &outcome) {
            (Call::Get { .. }, Outcome::Read(value)) => last_seen[key_index] = value.clone(),
            (Call::Put { value, .. }, Outcome::Ok) => last_seen[key_index] = Some(value.clone()),
            (Call::Cas { value, .. }, Outcome::Cas(true)) => {
                last_seen[key_index] = Some(value.clone())
            }
            (Call::Delete { .. }, Outcome::Ok) => last_seen[key_index] = None,
            _ => {}
        }
        operations.lock().unwrap().push(Operation {
            client: id,
            call_time,
            return_time,
            call,
            outcome,
        });
        if failed {
            // Try the next member, as etcd clients do, after a short pause.
            member = (member + 1) % endpoints.len();
            client = kv_client(&endpoints[member]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads every key on every member, one after another, as clients `CLIENTS`, `CLIENTS + 1`,
/// ...; recorded like the clients' operations. A read that fails (an election may happen
/// under load even now) is recorded and tried again, up to ten times.
async fn final_reads(endpoints: &[String], clock: Clock, operations: &Mutex<Vec<Operation>>) {
    for (member, endpoint) in endpoints.iter().enumerate() {
        let mut client = kv_client(endpoint);
        for key in KEYS {
            let call = Call::Get {
                key: key.to_string(),
            };
            let mut answered = false;
            for _attempt in 0..10 {
                let call_time = clock.now();
                let answer = perform(&mut client, &call).await;
                let return_time = clock.now();
                let (outcome, return_time) = match answer {
                    Some(Ok(outcome)) => (outcome, Some(return_time)),
                    Some(Err(_)) => (Outcome::Failed, Some(return_time)),
                    None => (Outcome::Unknown, None),
                };
                answered = return_time.is_some() && outcome != Outcome::Failed;
                operations.lock().unwrap().push(Operation {
                    client: CLIENTS + u64::try_from(member).unwrap(),
                    call_time,
                    return_time,
                    call: call.clone(),
                    outcome,
                });
                if answered {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(answered, "no final read of {key} on {endpoint} succeeded");
        }
    }
}

/// The faults, one after another, while the clients run: SIGKILL and restart of the leader,
/// SIGSTOP and SIGCONT of the leader, the leader cut off from both followers and healed, and
/// a one-way cut with a delayed link.
fn nemesis(cluster: &mut Cluster) {
    let pause = |seconds: f64| std::thread::sleep(Duration::from_secs_f64(seconds));
    pause(2.0);
    let leader = cluster.leader();
    eprintln!("nemesis: kill -9 leader n{}", leader + 1);
    cluster.kill(leader);
    pause(3.0);
    cluster.start_member(leader);
    eprintln!("nemesis: n{} restarted", leader + 1);
    pause(2.0);

    let leader = cluster.leader();
    eprintln!("nemesis: SIGSTOP leader n{}", leader + 1);
    cluster.stop(leader);
    pause(2.5);
    cluster.cont(leader);
    eprintln!("nemesis: SIGCONT n{}", leader + 1);
    pause(2.0);

    let leader = cluster.leader();
    eprintln!(
        "nemesis: leader n{} cut off from both followers",
        leader + 1
    );
    cluster.faults.isolate(leader, 3);
    pause(3.0);
    cluster.faults.heal_all();
    eprintln!("nemesis: healed");
    pause(2.0);

    let leader = cluster.leader();
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    eprintln!(
        "nemesis: n{} -> n{} cut one way, n{} -> n{} delayed 100 ms",
        a + 1,
        leader + 1,
        leader + 1,
        b + 1
    );
    cluster.faults.cut(a, leader);
    cluster.faults.delay(leader, b, Duration::from_millis(100));
    pause(2.0);
    cluster.faults.heal(a, leader);
    eprintln!("nemesis: n{} -> n{} healed", a + 1, leader + 1);
    pause(1.0);
    cluster.faults.heal_all();
    eprintln!("nemesis: healed");
    pause(2.0);
}

/// Where the history is written: the cargo target directory's scratch space.
fn history_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(file)
}

/// Panics with the offending key's operations on a violation; checks again with ten times
/// the budget when the default one runs out, and panics if that is not enough either.
fn assert_linearizable(history: &History, path: &std::path::Path) {
    let verdict = match check(history) {
        Verdict::Inconclusive { key } => {
            eprintln!("key {key:?} inconclusive with the default budget; checking again with 10x");
            check_with_budget(history, DEFAULT_SEARCH_STEPS_MAX * 10)
        }
        verdict => verdict,
    };
    match verdict {
        Verdict::Linearizable => {}
        Verdict::Violation(violation) => {
            panic!(
                "the history in {} is not linearizable:\n{violation}",
                path.display()
            )
        }
        Verdict::Inconclusive { key } => panic!(
            "the checker could not decide key {key:?} of {} within its budget",
            path.display()
        ),
    }
}

#[test]
fn a_cluster_under_kills_pauses_and_partitions_stays_linearizable() {
    check_under_nemesis(&FAST_TIMING, "linearizability-history.jsonl");
}

/// The same with leader-lease reads: a leader paused by SIGSTOP must not serve reads from a
/// lease that ran out while it was stopped (its tick count catches up with the monotonic
/// clock before it answers anything).
#[test]
fn lease_reads_under_kills_pauses_and_partitions_stay_linearizable() {
    let mut args = FAST_TIMING.to_vec();
    args.push("--read-lease");
    check_under_nemesis(&args, "linearizability-lease-history.jsonl");
}

fn check_under_nemesis(args: &[&str], history_file: &str) {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(args);
    cluster.put_until_acknowledged(&cluster.endpoints(), "ready", "yes", support::READY_TIMEOUT);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client.clone()).collect();

    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let operations = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            runtime.spawn(run_client(
                id,
                endpoints.clone(),
                clock,
                stop.clone(),
                operations.clone(),
            ))
        })
        .collect();

    nemesis(&mut cluster);
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for client in clients {
            client.await.unwrap();
        }
    });
    // Once healed, the members agree on every key and revision, and a last read of every key
    // on every member goes into the history too, so each member's final state is checked.
    cluster.wait_converged();
    runtime.block_on(final_reads(&endpoints, clock, &operations));

    let mut operations = std::mem::take(&mut *operations.lock().unwrap());
    operations.sort_by_key(|operation| operation.call_time);
    let history = History { operations };
    let path = history_path(history_file);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_history(&history, &mut file).unwrap();
    drop(file);
    let count = |matches: fn(&Operation) -> bool| {
        history
            .operations
            .iter()
            .filter(|operation| matches(operation))
            .count()
    };
    eprintln!(
        "history: {} operations ({} answered, {} refused, {} unknown) in {}",
        history.operations.len(),
        count(|operation| !matches!(operation.outcome, Outcome::Failed | Outcome::Unknown)),
        count(|operation| operation.outcome == Outcome::Failed),
        count(|operation| operation.outcome == Outcome::Unknown),
        path.display()
    );
    // The file says what the checker saw.
    let reread = read_history(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(reread.operations, history.operations);
    let started = Instant::now();
    assert_linearizable(&history, &path);
    eprintln!("linearizable (checked in {:?})", started.elapsed());
    // Enough happened for the check to mean something: writes and reads both answered.
    assert!(count(|operation| matches!(operation.outcome, Outcome::Read(Some(_)))) > 50);
    assert!(count(|operation| operation.outcome == Outcome::Ok) > 50);
}

/// An answered operation on `key` between `call` and `ret` (milliseconds).
fn answered(client: u64, call: u64, ret: u64, op: Call, outcome: Outcome) -> Operation {
    Operation {
        client,
        call_time: call * 1_000_000,
        return_time: Some(ret * 1_000_000),
        call: op,
        outcome,
    }
}

fn put(key: &str, value: &str) -> Call {
    Call::Put {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn get(key: &str) -> Call {
    Call::Get {
        key: key.to_string(),
    }
}

/// The checker this file relies on does fail: a read of a value nobody wrote, and a stale read
/// after a newer write was acknowledged, are both violations, reported with the key's history.
#[test]
fn the_checker_finds_corrupted_histories_not_linearizable() {
    let read = |value: &str| Outcome::Read(Some(value.to_string()));
    let never_written = History {
        operations: vec![
            answered(0, 0, 10, put("x", "c0-1"), Outcome::Ok),
            answered(1, 20, 30, get("x"), read("c9-9")),
        ],
    };
    let stale = History {
        operations: vec![
            answered(0, 0, 10, put("y", "c0-1"), Outcome::Ok),
            answered(0, 20, 30, put("y", "c0-2"), Outcome::Ok),
            answered(1, 40, 50, get("y"), read("c0-1")),
        ],
    };
    // A lost write: acknowledged, then a later read finds the key absent.
    let lost = History {
        operations: vec![
            answered(0, 0, 10, put("z", "c0-1"), Outcome::Ok),
            answered(1, 20, 30, get("z"), Outcome::Read(None)),
        ],
    };
    for (what, history, key) in [
        ("a value never written", never_written, "x"),
        ("a stale read", stale, "y"),
        ("a lost write", lost, "z"),
    ] {
        // Through the file format too, as the real test's history goes.
        let mut bytes = Vec::new();
        write_history(&history, &mut bytes).unwrap();
        let history = read_history(std::str::from_utf8(&bytes).unwrap()).unwrap();
        match check(&history) {
            Verdict::Violation(violation) => {
                assert_eq!(violation.key, key, "{what}");
                let report = violation.to_string();
                assert!(
                    report.contains("linearizability violation"),
                    "{what}: {report}"
                );
                eprintln!("{what}:\n{report}");
            }
            verdict => panic!("{what}: expected a violation, got {verdict:?}"),
        }
    }
    // The same shapes with the read concurrent with the write are fine.
    let concurrent = History {
        operations: vec![
            answered(0, 0, 10, put("y", "c0-1"), Outcome::Ok),
            answered(0, 20, 40, put("y", "c0-2"), Outcome::Ok),
            answered(1, 30, 50, get("y"), read("c0-1")),
        ],
    };
    assert_eq!(check(&concurrent), Verdict::Linearizable);
}
