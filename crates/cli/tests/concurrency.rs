//! The lock and election recipes of chorus-client (`chorus_client::concurrency`) against a
//! real cluster of three `chorus server` processes: mutual exclusion under contention, a dead
//! holder's lock released by its lease, interplay with the real `etcdctl lock` and
//! `etcdctl elect` (Debian's etcd-client 3.4), elections, and a leader killed while a lock is
//! held and waited for.
//!
//! Every wait is bounded; the processes are killed when a test ends, however it ends. The
//! tests that need `etcdctl` say so and pass without it, except under CI (`CI` set).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use chorus_client::concurrency::{ConcurrencyError, Election, LeaseSession, Mutex};
use chorus_client::{Client, ClientConfig, Get, Put, Txn, TxnOp};
use std::future::Future;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use support::{etcdctl_available, Cluster, FAST_TIMING};

/// The longest any one step may take (a lock to pass on, a process to print, a leader to be
/// elected).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a waiter is watched to make sure it does not get what someone else holds.
const STILL_WAITING: Duration = Duration::from_millis(1500);

/// A cluster with quick elections (so the shortest lease is 1 s).
fn start_cluster() -> Cluster {
    Cluster::builder().args(&FAST_TIMING).start()
}

fn client_of(endpoints: Vec<String>) -> Client {
    Client::new(ClientConfig::new(endpoints)).unwrap()
}

/// A client of every member, in order.
fn client(cluster: &Cluster) -> Client {
    client_of(cluster.live_endpoints())
}

/// Retries a put until the cluster takes it (a leader is elected).
async fn wait_writable(client: &Client) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while client.put(Put::new("ready", "yes")).await.is_err() {
        assert!(Instant::now() < deadline, "the cluster took no write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `future`'s output, failing the test if it takes longer than [`STEP_TIMEOUT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not happen within {STEP_TIMEOUT:?}"),
    }
}

/// The keys under `prefix`, in key order.
async fn keys_under(client: &Client, prefix: &str) -> Vec<String> {
    let response = client.get(Get::key(prefix).prefix()).await.unwrap();
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[test]
fn mutexes_on_one_name_exclude_each_other() {
    const TASKS: usize = 4;
    const INCREMENTS_PER_TASK: usize = 5;
    let cluster = start_cluster();
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        client.put(Put::new("counter", "0")).await.unwrap();
        let inside = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            // Each task its own client (connections) and session, starting on its own member.
            let mut endpoints = cluster.live_endpoints();
            endpoints.rotate_left(task % 3);
            let client = client_of(endpoints);
            let inside = Arc::clone(&inside);
            tasks.push(tokio::spawn(async move {
                let session = LeaseSession::new(&client, 10).await.unwrap();
                let mut mutex = Mutex::new(&session, "counter-lock");
                let mut tokens = Vec::new();
                for _ in 0..INCREMENTS_PER_TASK {
                    let token = mutex.lock().await.unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    let read = client.get(Get::key("counter")).await.unwrap();
                    let count: u64 = String::from_utf8_lossy(&read.kvs[0].value).parse().unwrap();
                    tokio::task::yield_now().await;
                    let write = Txn::new()
                        .when([mutex.is_owner()])
                        .and_then([TxnOp::Put(Put::new("counter", (count + 1).to_string()))]);
                    assert!(client.txn(write).await.unwrap().succeeded);
                    inside.store(false, Ordering::SeqCst);
                    mutex.unlock().await.unwrap();
                    assert_eq!(mutex.revision(), None);
                    tokens.push(token);
                }
                session.close().await.unwrap();
                tokens
            }));
        }
        let mut tokens = Vec::new();
        for task in tasks {
            tokens.extend(within("a task's increments", task).await.unwrap());
        }
        let read = client.get(Get::key("counter")).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read.kvs[0].value),
            (TASKS * INCREMENTS_PER_TASK).to_string()
        );
        // Every holding had its own fencing token.
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), TASKS * INCREMENTS_PER_TASK);
        assert!(keys_under(&client, "counter-lock/").await.is_empty());
    });
}

#[test]
fn a_dead_holders_lock_passes_on_after_its_lease_expires() {
    let cluster = start_cluster();
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        let holder_session = LeaseSession::new(&client, 2).await.unwrap();
        let mut holder = Mutex::new(&holder_session, "expiring");
        let holder_token = holder.lock().await.unwrap();
        let holder_key = String::from_utf8(holder.key().to_vec()).unwrap();
        assert_eq!(
            holder_key,
            format!("expiring/{:x}", holder_session.lease_id())
        );

        let waiter_session = LeaseSession::new(&client, 10).await.unwrap();
        let mut waiter = Mutex::new(&waiter_session, "expiring");
        assert_eq!(waiter.try_lock().await, Err(ConcurrencyError::Locked));
        assert_eq!(
            keys_under(&client, "expiring/").await,
            vec![holder_key.clone()]
        );
        let waiting = tokio::spawn(async move {
            let token = waiter.lock().await;
            (waiter, waiter_session, token)
        });

        // The holder's process "dies": its session stops renewing without revoking.
        drop(holder_session);
        // Still there until its lease runs out (keys sort by lease id, not by age).
        assert!(keys_under(&client, "expiring/").await.contains(&holder_key));
        let (waiter, waiter_session, token) = within("the waiter's lock", waiting).await.unwrap();
        let token = token.unwrap();
        assert!(token > holder_token);
        assert!(!keys_under(&client, "expiring/").await.contains(&holder_key));

        // The stale holder still believes it holds the lock; its fenced write fails.
        assert_eq!(holder.revision(), Some(holder_token));
        let stale = Txn::new()
            .when([holder.is_owner()])
            .and_then([TxnOp::Put(Put::new("fenced", "stale"))]);
        assert!(!client.txn(stale).await.unwrap().succeeded);
        let fresh = Txn::new()
            .when([waiter.is_owner()])
            .and_then([TxnOp::Put(Put::new("fenced", "fresh"))]);
        assert!(client.txn(fresh).await.unwrap().succeeded);
        waiter_session.close().await.unwrap();
        assert!(keys_under(&client, "expiring/").await.is_empty());
    });
}

#[test]
fn a_lock_given_up_deletes_its_key_and_a_lost_session_fails_the_waiter() {
    let cluster = start_cluster();
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        let holder_session = LeaseSession::new(&client, 10).await.unwrap();
        let mut holder = Mutex::new(&holder_session, "patience");
        holder.lock().await.unwrap();

        let waiter_session = LeaseSession::new(&client, 10).await.unwrap();
        let mut waiter = Mutex::new(&waiter_session, "patience");
        let timeout = Duration::from_millis(500);
        assert_eq!(
            waiter.lock_timeout(timeout).await,
            Err(ConcurrencyError::TimedOut { after: timeout })
        );
        assert_eq!(keys_under(&client, "patience/").await.len(), 1);
        let cancel = tokio::time::sleep(Duration::from_millis(300));
        assert_eq!(
            waiter.lock_until(cancel).await,
            Err(ConcurrencyError::Cancelled)
        );
        assert_eq!(keys_under(&client, "patience/").await.len(), 1);

        // A waiter whose lease is revoked behind its back learns that its session ended.
        let waiting = tokio::spawn(async move { waiter.lock().await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .lease_revoke(waiter_session.lease_id())
            .await
            .unwrap();
        let ended = within("the waiter's failure", waiting).await.unwrap();
        assert!(
            matches!(ended, Err(ConcurrencyError::SessionExpired { lease_id, .. })
                if lease_id == waiter_session.lease_id()),
            "{ended:?}"
        );
        assert!(waiter_session.ended().is_some());
        holder.unlock().await.unwrap();
        holder_session.close().await.unwrap();
    });
}

/// A long-running etcdctl (`lock`, `elect`) whose standard output is collected as it comes;
/// killed on drop.
struct Etcdctl {
    child: Child,
    output: Arc<StdMutex<String>>,
}

impl Etcdctl {
    fn start(endpoints: &str, args: &[&str]) -> Etcdctl {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["--dial-timeout=2s", "--command-timeout=8s"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl");
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new(StdMutex::new(String::new()));
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stdout.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                collected.lock().unwrap().push_str(&text);
            }
        });
        Etcdctl { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output satisfies `done`; returns it.
    async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let output = self.output();
            if done(&output) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl did not print {what}; it printed {output:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGINT, as Ctrl-C: `lock` and `elect` release what they hold, then exit.
    fn interrupt(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    }

    async fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "etcdctl did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Etcdctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcdctl_lock_and_a_chorus_mutex_exclude_each_other() {
    if !etcdctl_available() {
        return;
    }
    let cluster = start_cluster();
    let endpoints = cluster.endpoints();
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        let session = LeaseSession::new(&client, 10).await.unwrap();
        let mut mutex = Mutex::new(&session, "shared");

        // etcdctl holds the lock: chorus waits until etcdctl lets go.
        let mut etcdctl = Etcdctl::start(&endpoints, &["lock", "shared"]);
        let printed = etcdctl
            .wait_for("its lock key", |output| output.ends_with('\n'))
            .await;
        let etcdctl_key = printed.trim().to_string();
        assert!(etcdctl_key.starts_with("shared/"), "{printed:?}");
        assert_eq!(mutex.try_lock().await, Err(ConcurrencyError::Locked));
        assert_eq!(
            mutex.lock_timeout(STILL_WAITING).await,
            Err(ConcurrencyError::TimedOut {
                after: STILL_WAITING
            })
        );
        let waiting = tokio::spawn(async move {
            let token = mutex.lock().await;
            (mutex, token)
        });
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!waiting.is_finished(), "chorus took a lock etcdctl holds");
        etcdctl.interrupt();
        assert!(etcdctl.wait_exit().await);
        let (mut mutex, token) = within("chorus's lock", waiting).await.unwrap();
        token.unwrap();
        let our_key = format!("shared/{:x}", session.lease_id());
        assert_eq!(keys_under(&client, "shared/").await, vec![our_key]);

        // chorus holds the lock: etcdctl waits until chorus lets go.
        let mut etcdctl = Etcdctl::start(&endpoints, &["lock", "shared", "echo", "etcdctl got it"]);
        tokio::time::sleep(STILL_WAITING).await;
        assert_eq!(etcdctl.output(), "", "etcdctl took a lock chorus holds");
        mutex.unlock().await.unwrap();
        etcdctl
            .wait_for("its command's output", |output| {
                output == "etcdctl got it\n"
            })
            .await;
        assert!(etcdctl.wait_exit().await);
        assert!(keys_under(&client, "shared/").await.is_empty());
        session.close().await.unwrap();
    });
}

#[test]
fn an_election_hands_over_on_resignation_and_refuses_a_stale_leader() {
    let cluster = start_cluster();
    let etcdctl = etcdctl_available();
    let endpoints = cluster.endpoints();
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        let mut observer = Election::observe(&client, "office");
        let observed = tokio::spawn(async move {
            let mut values = Vec::new();
            while values.len() < 3 {
                let kv = observer.next().await.unwrap();
                values.push(String::from_utf8_lossy(&kv.value).into_owned());
            }
            values
        });
        let alice_session = LeaseSession::new(&client, 10).await.unwrap();
        let mut alice = Election::new(&alice_session, "office");
        let bob_session = LeaseSession::new(&client, 10).await.unwrap();
        let mut bob = Election::new(&bob_session, "office");
        assert_eq!(bob.proclaim("bob").await, Err(ConcurrencyError::NotLeader));
        assert_eq!(alice.leader().await, Err(ConcurrencyError::NoLeader));

        alice.campaign("alice").await.unwrap();
        let leader = alice.leader().await.unwrap();
        assert_eq!(&leader.value[..], b"alice");
        assert_eq!(&leader.key[..], alice.key());
        assert_eq!(
            String::from_utf8_lossy(alice.key()),
            format!("office/{:x}", alice_session.lease_id())
        );
        let listener =
            etcdctl.then(|| Etcdctl::start(&endpoints, &["elect", "--listen", "office"]));
        if let Some(listener) = &listener {
            listener
                .wait_for("alice", |output| output.ends_with("\nalice\n"))
                .await;
        }

        let campaigning = tokio::spawn(async move {
            let revision = bob.campaign("bob").await;
            (bob, revision)
        });
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!campaigning.is_finished(), "two leaders at once");
        alice.proclaim("alice, again").await.unwrap();
        assert_eq!(&alice.leader().await.unwrap().value[..], b"alice, again");

        alice.resign().await.unwrap();
        let (mut bob, revision) = within("bob's election", campaigning).await.unwrap();
        let revision = revision.unwrap();
        assert!(revision > 0);
        assert_eq!(&bob.leader().await.unwrap().value[..], b"bob");
        assert_eq!(
            alice.proclaim("alice is back").await,
            Err(ConcurrencyError::NotLeader)
        );
        if let Some(listener) = &listener {
            listener
                .wait_for("bob", |output| output.ends_with("\nbob\n"))
                .await;
        }
        assert_eq!(
            within("three leader values", observed).await.unwrap(),
            ["alice", "alice, again", "bob"]
        );

        // Bob's lease is revoked behind his back: he believes he leads, the cluster says no.
        client.lease_revoke(bob_session.lease_id()).await.unwrap();
        assert_eq!(bob.revision(), Some(revision));
        assert_eq!(
            bob.proclaim("bob rules").await,
            Err(ConcurrencyError::NotLeader)
        );
        assert_eq!(bob.leader().await, Err(ConcurrencyError::NoLeader));
        alice_session.close().await.unwrap();
    });
}

/// A fenced put of `key` = `value` under `mutex`, sent again while the cluster cannot say
/// whether it was applied (it is idempotent); whether the fence held.
async fn fenced_put(client: &Client, mutex: &Mutex, key: &str, value: &str) -> bool {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let txn = Txn::new()
            .when([mutex.is_owner()])
            .and_then([TxnOp::Put(Put::new(key, value))]);
        match client.txn(txn).await {
            Ok(response) => return response.succeeded,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "no fenced put went through: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[test]
fn the_recipes_carry_on_when_the_cluster_leader_is_killed() {
    if !etcdctl_available() {
        return;
    }
    const TTL_SECONDS: i64 = 3;
    let mut cluster = start_cluster();
    cluster.wait_writable();
    let leader = cluster.leader();
    // Every client starts on the leader, so its death breaks every connection they have.
    let mut endpoints = cluster.live_endpoints();
    endpoints.rotate_left(leader);
    support::runtime().block_on(async {
        let client = client_of(endpoints.clone());
        let holder_session = LeaseSession::new(&client, TTL_SECONDS).await.unwrap();
        let mut holder = Mutex::new(&holder_session, "failover");
        let holder_token = holder.lock().await.unwrap();
        let waiter_client = client_of(endpoints.clone());
        let waiter_session = LeaseSession::new(&waiter_client, TTL_SECONDS)
            .await
            .unwrap();
        let mut waiter = Mutex::new(&waiter_session, "failover");
        let waiting = tokio::spawn(async move {
            let token = waiter.lock().await;
            (waiter, token)
        });
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!waiting.is_finished(), "two holders at once");

        cluster.kill(leader);
        // Longer than the leases' time-to-live: both sessions must renew on the new leader.
        tokio::time::sleep(Duration::from_secs(2 * TTL_SECONDS.unsigned_abs())).await;
        assert_eq!(holder_session.ended(), None);
        assert_eq!(waiter_session.ended(), None);
        assert!(!waiting.is_finished(), "the lock passed on while held");
        assert!(fenced_put(&client, &holder, "failover-owner", "holder").await);

        // The waiter's watch moved to a surviving member and sees the release.
        holder.unlock().await.unwrap();
        let (waiter, token) = within("the waiter's lock", waiting).await.unwrap();
        assert!(token.unwrap() > holder_token);
        assert!(!fenced_put(&client, &holder, "failover-owner", "stale").await);
        assert!(fenced_put(&waiter_client, &waiter, "failover-owner", "waiter").await);

        // An election through the same clients, their first endpoint dead.
        let mut candidate = Election::new(&holder_session, "failover-election");
        candidate.campaign("survivor").await.unwrap();
        let mut observer = Election::observe(&waiter_client, "failover-election");
        let seen = within("the observed leader", observer.next())
            .await
            .unwrap();
        assert_eq!(&seen.value[..], b"survivor");
        candidate.resign().await.unwrap();
        holder_session.close().await.unwrap();
        waiter_session.close().await.unwrap();
        assert!(keys_under(&client, "failover/").await.is_empty());
        assert!(keys_under(&client, "failover-election/").await.is_empty());
    });
}

#[test]
fn etcdctl_elect_and_a_chorus_election_agree_on_the_leader() {
    if !etcdctl_available() {
        return;
    }
    let cluster = start_cluster();
    let endpoints = cluster.endpoints();
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        let mut etcdctl = Etcdctl::start(&endpoints, &["elect", "board", "from-etcdctl"]);
        etcdctl
            .wait_for("its proclamation", |output| {
                output.ends_with("\nfrom-etcdctl\n")
            })
            .await;
        let session = LeaseSession::new(&client, 10).await.unwrap();
        let mut election = Election::new(&session, "board");
        assert_eq!(&election.leader().await.unwrap().value[..], b"from-etcdctl");
        let mut observer = Election::observe(&client, "board");
        assert_eq!(&observer.next().await.unwrap().value[..], b"from-etcdctl");
        assert_eq!(
            election
                .campaign_timeout("from-chorus", STILL_WAITING)
                .await,
            Err(ConcurrencyError::TimedOut {
                after: STILL_WAITING
            })
        );
        let campaigning = tokio::spawn(async move {
            let revision = election.campaign("from-chorus").await;
            (election, revision)
        });
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!campaigning.is_finished(), "two leaders at once");
        etcdctl.interrupt();
        assert!(etcdctl.wait_exit().await);
        let (election, revision) = within("chorus's election", campaigning).await.unwrap();
        revision.unwrap();
        assert_eq!(&election.leader().await.unwrap().value[..], b"from-chorus");
        let seen = within("the new leader", observer.next()).await.unwrap();
        assert_eq!(&seen.value[..], b"from-chorus");
        session.close().await.unwrap();
    });
}

#[test]
fn a_session_that_cannot_renew_ends_within_its_ttl_and_its_lock_passes_on() {
    let mut cluster = start_cluster();
    let only_member_0 = vec![cluster.members[0].client.clone()];
    let others = vec![
        cluster.members[1].client.clone(),
        cluster.members[2].client.clone(),
    ];
    support::runtime().block_on(async {
        let client = client(&cluster);
        wait_writable(&client).await;
        // The holder can reach member 0 only; the waiter the two others.
        let cut_off = client_of(only_member_0);
        let holder_session = LeaseSession::new(&cut_off, 2).await.unwrap();
        let mut holder = Mutex::new(&holder_session, "cut-off");
        holder.lock().await.unwrap();
        let waiter_session = LeaseSession::new(&client_of(others), 10).await.unwrap();
        let mut waiter = Mutex::new(&waiter_session, "cut-off");
        let waiting = tokio::spawn(async move {
            let token = waiter.lock().await;
            (waiter, token)
        });

        cluster.kill(0);
        let end = within("the holder's session end", holder_session.done()).await;
        assert!(
            matches!(
                end,
                chorus_client::concurrency::SessionEnd::KeepAliveFailed { .. }
            ),
            "{end:?}"
        );
        assert!(matches!(
            holder.lock().await,
            Err(ConcurrencyError::SessionExpired { .. })
        ));
        let (_waiter, token) = within("the waiter's lock", waiting).await.unwrap();
        token.unwrap();
        assert_eq!(waiter_session.ended(), None);
        waiter_session.close().await.unwrap();
    });
}
