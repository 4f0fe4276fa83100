//! Leases and watch progress notifications against a real cluster of three `chorus server`
//! processes, driven by the real `etcdctl` (Debian's etcd-client 3.4, API v3): `lease grant`,
//! `put --lease`, `lease timetolive --keys`, `lease list`, `lease keep-alive`, `lease revoke`,
//! expiry, every command on a follower, etcd's error messages, `lock` and `elect`. etcdctl 3.4
//! has no `watch --progress-notify`, so that one is checked with a gRPC client of chorus-proto.
//!
//! Every wait is bounded; the processes are killed when a test ends, however it ends. Without
//! `etcdctl` on the PATH these tests say so and pass, except under CI (`CI` set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::etcdctl_available;

/// The longest a background etcdctl may take to print what it must.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(20);

/// The shared three-member cluster ([`support::Cluster`], peers linked directly) with what
/// these tests add: members named by their client endpoint, and etcdctl helpers.
struct Cluster(support::Cluster);

impl Deref for Cluster {
    type Target = support::Cluster;

    fn deref(&self) -> &support::Cluster {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut support::Cluster {
        &mut self.0
    }
}

impl Cluster {
    /// Heartbeat 50 ms, election timeout 1 s: 20 ticks, so the shortest lease is 2 s (1.5
    /// election timeouts, rounded up). Returns once a write succeeds.
    fn start(extra_args: &[&str]) -> Cluster {
        let cluster = support::Cluster::builder()
            .args(&["--heartbeat-interval", "50", "--election-timeout", "1000"])
            .args(extra_args)
            .start();
        cluster.wait_writable();
        Cluster(cluster)
    }

    /// The client endpoint of the leader and of one follower, as the members agree.
    fn leader_and_follower(&self) -> (String, String) {
        let leader = self.0.leader();
        let follower = self
            .live()
            .into_iter()
            .find(|index| *index != leader)
            .expect("a live follower");
        (
            self.members[leader].client.clone(),
            self.members[follower].client.clone(),
        )
    }

    /// Kills (SIGKILL) the member serving `endpoint`.
    fn kill(&mut self, endpoint: &str) {
        let index = self
            .members
            .iter()
            .position(|member| member.client == endpoint)
            .unwrap();
        self.0.kill(index);
    }

    /// Runs etcdctl and returns its standard output, failing the test if it fails.
    fn ok(&self, endpoints: &str, args: &[&str]) -> String {
        support::ok(&self.0, endpoints, args)
    }

    /// Runs etcdctl, which must fail; returns its standard error.
    fn fails(&self, endpoints: &str, args: &[&str]) -> String {
        let output = etcdctl(endpoints, args);
        assert!(
            !output.status.success(),
            "etcdctl {args:?} succeeded: {output:?}"
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// `lease grant`: the lease id (hex, as etcdctl prints and takes it) and the TTL line.
    fn grant(&self, endpoints: &str, ttl: &str) -> (String, String) {
        let output = self.ok(endpoints, &["lease", "grant", ttl]);
        let id = output.split_whitespace().nth(1).unwrap().to_string();
        (id, output)
    }
}

/// etcdctl with a 2 s dial and an 8 s command timeout, as [`Background`] runs it.
fn etcdctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=2s", "--command-timeout=8s"])
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs etcdctl (API v3) against `endpoints` with the same timeouts, killed after
/// [`support::ETCDCTL_TIMEOUT`].
fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    support::etcdctl_with_input(endpoints, args, None)
}

/// A long-running etcdctl (`lock`, `elect`, `lease keep-alive`) whose standard output is
/// collected as it comes; killed on drop.
struct Background {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Background {
    fn start(endpoints: &str, args: &[&str]) -> Background {
        let mut child = etcdctl_command(endpoints, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl");
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stdout.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buffer[..read]).to_string();
                collected.lock().unwrap().push_str(&text);
            }
        });
        Background { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output satisfies `done`; returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + OUTPUT_TIMEOUT;
        loop {
            let output = self.output();
            if done(&output) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl did not print {what} within {OUTPUT_TIMEOUT:?}; it printed {output:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGINT, as Ctrl-C: `lock` and `elect` release what they hold, then exit.
    fn interrupt(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    }

    /// Waits for the process to exit; whether it succeeded.
    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + OUTPUT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "etcdctl did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds, at most [`OUTPUT_TIMEOUT`].
fn eventually(cluster: &Cluster, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + OUTPUT_TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lease_commands_work_on_the_leader_and_on_a_follower() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&[]);
    let (leader, follower) = cluster.leader_and_follower();
    for endpoint in [&leader, &follower] {
        let (id, granted) = cluster.grant(endpoint, "60");
        assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
        let key = format!("leased/{id}");
        assert_eq!(
            cluster.ok(endpoint, &["put", &key, "v", &format!("--lease={id}")]),
            "OK\n"
        );
        assert_eq!(
            cluster.ok(endpoint, &["lease", "timetolive", "--keys", &id]),
            format!("lease {id} granted with TTL(60s), remaining(60s), attached keys([{key}])\n")
        );
        let json = cluster.ok(endpoint, &["get", &key, "-w", "json"]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["kvs"][0]["lease"].as_i64(),
            Some(i64::from_str_radix(&id, 16).unwrap())
        );
        let list = cluster.ok(endpoint, &["lease", "list"]);
        assert!(list.starts_with("found "), "{list}");
        assert!(list.lines().any(|line| line == id), "{list}");
        assert_eq!(
            cluster.ok(endpoint, &["lease", "keep-alive", "--once", &id]),
            format!("lease {id} keepalived with TTL(60)\n")
        );
        assert_eq!(
            cluster.ok(endpoint, &["lease", "revoke", &id]),
            format!("lease {id} revoked\n")
        );
        // The revoke deleted the key, and the lease is gone (the linearizable get makes the
        // member apply the revoke before its own `lease list`).
        assert_eq!(cluster.ok(endpoint, &["get", &key]), "");
        assert_eq!(
            cluster.ok(endpoint, &["lease", "timetolive", &id]),
            format!("lease {id} already expired\n")
        );
        let list = cluster.ok(endpoint, &["lease", "list"]);
        assert!(!list.lines().any(|line| line == id), "{list}");
    }
}

#[test]
fn lease_errors_come_back_with_etcds_messages() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&[]);
    let (leader, follower) = cluster.leader_and_follower();
    for endpoint in [&leader, &follower] {
        let stderr = cluster.fails(endpoint, &["lease", "revoke", "1234"]);
        assert!(
            stderr
                .contains("Error: failed to revoke lease (etcdserver: requested lease not found)"),
            "{stderr}"
        );
        let stderr = cluster.fails(endpoint, &["lease", "keep-alive", "--once", "1234"]);
        assert!(
            stderr.contains("Error: etcdserver: requested lease not found"),
            "{stderr}"
        );
        let stderr = cluster.fails(endpoint, &["put", "k", "v", "--lease=1234"]);
        assert!(
            stderr.contains("Error: etcdserver: requested lease not found"),
            "{stderr}"
        );
        let stderr = cluster.fails(endpoint, &["lease", "grant", "9000000001"]);
        assert!(
            stderr.contains("Error: failed to grant lease (etcdserver: too large lease TTL)"),
            "{stderr}"
        );
        assert_eq!(
            cluster.ok(endpoint, &["lease", "timetolive", "1234"]),
            "lease 0000000000001234 already expired\n"
        );
    }
    // The largest TTL is taken.
    let (_, granted) = cluster.grant(&leader, "9000000000");
    assert!(
        granted.ends_with("granted with TTL(9000000000s)\n"),
        "{granted}"
    );
}

#[test]
fn a_short_lease_expires_unless_kept_alive_through_a_follower() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&[]);
    let (_, follower) = cluster.leader_and_follower();

    // Asked for 1 s, granted the minimum: 1.5 election timeouts of 1 s, rounded up.
    let (short, granted) = cluster.grant(&follower, "1");
    assert_eq!(granted, format!("lease {short} granted with TTL(2s)\n"));
    cluster.ok(
        &follower,
        &["put", "short", "v", &format!("--lease={short}")],
    );

    // A 3 s lease kept alive through the follower (the keep-alive stream is relayed to the
    // leader) for longer than its TTL and than the 7 s request timeout.
    let (kept, _) = cluster.grant(&follower, "3");
    cluster.ok(&follower, &["put", "kept", "v", &format!("--lease={kept}")]);
    let keeper = Background::start(&follower, &["lease", "keep-alive", &kept]);
    keeper.wait_for("a keep-alive", |output| {
        output.contains(&format!("lease {kept} keepalived with TTL(3)"))
    });

    eventually(&cluster, "the short lease's key is still there", || {
        cluster
            .ok(&cluster.endpoints(), &["get", "short"])
            .is_empty()
    });
    assert_eq!(
        cluster.ok(&follower, &["lease", "timetolive", &short]),
        format!("lease {short} already expired\n")
    );
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(
        cluster.ok(&follower, &["get", "kept"]),
        "kept\nv\n",
        "the kept-alive lease expired"
    );
    let keepalives = keeper.output().matches("keepalived").count();
    assert!(keepalives >= 4, "{}", keeper.output());

    // Once nobody keeps it alive it expires too.
    drop(keeper);
    eventually(&cluster, "the kept lease's key is still there", || {
        cluster
            .ok(&cluster.endpoints(), &["get", "kept"])
            .is_empty()
    });
}

#[test]
fn a_keep_alive_through_a_follower_survives_the_leader_being_killed() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(&[]);
    let (leader, follower) = cluster.leader_and_follower();
    let (id, _) = cluster.grant(&follower, "6");
    cluster.ok(
        &follower,
        &["put", "survivor", "v", &format!("--lease={id}")],
    );
    let keeper = Background::start(&follower, &["lease", "keep-alive", &id]);
    keeper.wait_for("a keep-alive", |output| output.contains("keepalived"));

    cluster.kill(&leader);
    let before = keeper.output().matches("keepalived").count();
    // Longer than the TTL: the stream relayed to the dead leader is replaced, the new leader
    // restarts the lease's clock and takes the keep-alives.
    std::thread::sleep(Duration::from_secs(10));
    let (new_leader, _) = cluster.leader_and_follower();
    assert_ne!(new_leader, leader);
    assert_eq!(
        cluster.ok(&follower, &["get", "survivor"]),
        "survivor\nv\n",
        "the lease expired while kept alive; keep-alive printed {:?}",
        keeper.output()
    );
    let after = keeper.output().matches("keepalived").count();
    assert!(after >= before + 2, "{}", keeper.output());
    let ttl = cluster.ok(&new_leader, &["lease", "timetolive", &id]);
    assert!(ttl.contains("granted with TTL(6s)"), "{ttl}");
}

#[test]
fn etcdctl_lock_and_elect_acquire_wait_and_release() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&[]);
    let (leader, follower) = cluster.leader_and_follower();
    let all = cluster.endpoints();

    // A lock taken and released around a command.
    assert_eq!(
        cluster.ok(&follower, &["lock", "mylock", "echo", "first"]),
        "first\n"
    );
    assert_eq!(cluster.ok(&all, &["get", "--prefix", "mylock"]), "");

    // A holder; a second locker waits until the holder lets go.
    let holder = Background::start(&leader, &["lock", "mylock"]);
    holder.wait_for("the lock's key", |output| output.starts_with("mylock/"));
    let mut waiter = Background::start(&follower, &["lock", "mylock", "echo", "second"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(waiter.output(), "", "the lock was taken twice");
    assert!(waiter.is_running());
    holder.interrupt();
    waiter.wait_for("second", |output| output == "second\n");
    assert!(waiter.wait_exit());
    assert_eq!(cluster.ok(&all, &["get", "--prefix", "mylock"]), "");

    // An election: alice leads, bob waits, an observer sees both in turn.
    let alice = Background::start(&follower, &["elect", "myelection", "alice"]);
    alice.wait_for("alice's proclamation", |output| {
        output.starts_with("myelection/") && output.ends_with("\nalice\n")
    });
    let observer = Background::start(&leader, &["elect", "--listen", "myelection"]);
    observer.wait_for("alice", |output| output.ends_with("\nalice\n"));
    let bob = Background::start(&leader, &["elect", "myelection", "bob"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bob.output(), "", "two leaders at once");
    alice.interrupt();
    bob.wait_for("bob's proclamation", |output| {
        output.starts_with("myelection/") && output.ends_with("\nbob\n")
    });
    observer.wait_for("bob", |output| output.ends_with("\nbob\n"));
}

#[test]
fn a_watcher_with_progress_notify_gets_progress_when_quiet() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&["--watch-progress-notify-interval", "300ms"]);
    let (_, follower) = cluster.leader_and_follower();
    cluster.ok(&follower, &["put", "p/1", "a"]);
    // A linearizable read on the follower: it has applied the put before the watch starts.
    assert_eq!(cluster.ok(&follower, &["get", "p/1"]), "p/1\na\n");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(progress_notify_on(&cluster, &follower));
}

async fn progress_notify_on(cluster: &Cluster, endpoint: &str) {
    use chorus_proto::etcdserverpb as pb;
    use pb::watch_request::RequestUnion;
    let mut client = pb::watch_client::WatchClient::connect(format!("http://{endpoint}"))
        .await
        .unwrap();
    let (requests, receiver) = tokio::sync::mpsc::channel(4);
    let mut responses = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let create = |key: &str, watch_id: i64, progress_notify: bool| pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.as_bytes().to_vec().into(),
            watch_id,
            progress_notify,
            ..pb::WatchCreateRequest::default()
        })),
    };
    requests.send(create("p/1", 7, true)).await.unwrap();
    requests.send(create("p/2", 8, false)).await.unwrap();
    let created = next(&mut responses).await;
    assert!(created.created && created.watch_id == 7, "{created:?}");
    let created = next(&mut responses).await;
    assert!(created.created && created.watch_id == 8, "{created:?}");
    let created_revision = created.header.unwrap().revision;

    // Quiet: progress for watcher 7 only, again and again (the follower may apply the last
    // put after the watch was created: the revision never goes back).
    let mut revision = created_revision;
    for _ in 0..3 {
        let progress = next(&mut responses).await;
        assert_eq!(progress.watch_id, 7, "{progress:?}");
        assert!(progress.events.is_empty() && !progress.created && !progress.canceled);
        let progress_revision = progress.header.unwrap().revision;
        assert!(
            progress_revision >= revision,
            "{progress_revision} < {revision}"
        );
        revision = progress_revision;
    }

    // A write: its event, then progress at its revision.
    let put = cluster.ok(endpoint, &["put", "p/1", "b", "-w", "json"]);
    let put: serde_json::Value = serde_json::from_str(&put).unwrap();
    let put_revision = put["header"]["revision"].as_i64().unwrap();
    let mut saw_event = false;
    loop {
        let response = next(&mut responses).await;
        assert_eq!(response.watch_id, 7, "{response:?}");
        if let Some(event) = response.events.first() {
            assert_eq!(event.kv.as_ref().unwrap().mod_revision, put_revision);
            saw_event = true;
            continue;
        }
        if saw_event {
            assert_eq!(response.header.unwrap().revision, put_revision);
            break;
        }
    }
}

async fn next(
    responses: &mut tonic::Streaming<chorus_proto::etcdserverpb::WatchResponse>,
) -> chorus_proto::etcdserverpb::WatchResponse {
    tokio::time::timeout(OUTPUT_TIMEOUT, responses.message())
        .await
        .expect("a watch response in time")
        .unwrap()
        .unwrap()
}
