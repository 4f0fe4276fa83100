//! A real cluster of three `chorus server` processes on loopback ports, driven by the real
//! `etcdctl` (Debian's etcd-client, API v3). Every wait is bounded; the processes are killed
//! when a test ends, however it ends.
//!
//! Without `etcdctl` on the PATH these tests say so and pass, except under CI (`CI` set), where
//! scripts/test.sh installs it and they fail instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a single etcdctl run may take.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest the cluster may take to elect a leader and take a write.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn etcdctl_available() -> bool {
    let found = Command::new("etcdctl")
        .arg("version")
        .env("ETCDCTL_API", "3")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcdctl is missing; scripts/test.sh installs it (apt-get install etcd-client)"
        );
        eprintln!("etcdctl not found: skipping (apt-get install etcd-client)");
    }
    found
}

/// `count` consecutive ports below Linux's ephemeral range (so no outgoing connection takes
/// one meanwhile), spread by process id so parallel test processes pick different ones, never
/// handed out twice in one process, and free right now. Returns the first.
fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let spread = u16::try_from(std::process::id() % 500).unwrap() * 20;
    loop {
        let offset = NEXT.fetch_add(count, Ordering::Relaxed);
        let first = 20_000 + (spread + offset) % 12_000;
        if (first..first + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return first;
        }
    }
}

fn free_port() -> u16 {
    free_ports(1)
}

struct Member {
    name: String,
    client: String,
    peer: String,
    process: Option<Child>,
}

/// Three members; killed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
    /// Flags given to every member besides the cluster's own.
    extra_args: Vec<String>,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    fn start_with(extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (1..=3)
            .map(|n| Member {
                name: format!("n{n}"),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://{}", member.name, member.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir,
            members,
            initial_cluster,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        for index in 0..cluster.members.len() {
            cluster.start_member(index);
        }
        cluster
    }

    fn start_member(&mut self, index: usize) {
        let member = &self.members[index];
        let log_path = self.dir.path().join(format!("{}.log", member.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg("server")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&member.name))
            .args(["--listen-client-urls", &format!("http://{}", member.client)])
            .args(["--listen-peer-urls", &format!("http://{}", member.peer)])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[index].process = Some(child);
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn endpoints(&self) -> String {
        self.live_endpoints().join(",")
    }

    fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.process.is_some())
            .map(|member| member.client.clone())
            .collect()
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for member in &self.members {
            let path = self.dir.path().join(format!("{}.log", member.name));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            all.push_str(&format!("--- {} ---\n{text}\n", member.name));
        }
        all
    }

    /// Retries a put until it succeeds (a leader is elected and reachable).
    fn wait_writable(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = etcdctl(&self.endpoints(), &["put", "ready", "yes"], None);
            if output.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no write succeeded within {READY_TIMEOUT:?}: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the member every live member names as leader.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = etcdctl(
                &self.endpoints(),
                &["endpoint", "status", "-w", "json"],
                None,
            );
            if output.status.success() {
                let statuses: Value = serde_json::from_slice(&output.stdout).unwrap();
                let leaders: Vec<u64> = statuses
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|status| status["Status"]["leader"].as_u64().unwrap_or(0))
                    .collect();
                let live = self.live_endpoints().len();
                if leaders.len() == live
                    && leaders[0] != 0
                    && leaders.iter().all(|l| *l == leaders[0])
                {
                    let leader = statuses
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|status| {
                            status["Status"]["header"]["member_id"].as_u64() == Some(leaders[0])
                        })
                        .map(|status| status["Endpoint"].as_str().unwrap().to_string());
                    if let Some(endpoint) = leader {
                        return self
                            .members
                            .iter()
                            .position(|member| member.client == endpoint)
                            .unwrap();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Runs etcdctl (API v3) against `endpoints`, killed after [`ETCDCTL_TIMEOUT`].
fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=2s", "--command-timeout=8s"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let deadline = Instant::now() + ETCDCTL_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs etcdctl and returns its standard output, failing the test if it fails.
fn ok(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    let output = etcdctl(endpoints, args, None);
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8(output.stdout).unwrap()
}

fn revision_of(cluster: &Cluster, key: &str) -> i64 {
    let json = ok(cluster, &cluster.endpoints(), &["get", key, "-w", "json"]);
    let value: Value = serde_json::from_str(&json).unwrap();
    value["kvs"][0]["mod_revision"].as_i64().unwrap()
}

#[test]
fn etcdctl_kv_commands_work_against_a_three_member_cluster() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start();
    cluster.wait_writable();
    let all = cluster.endpoints();

    assert_eq!(ok(&cluster, &all, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(ok(&cluster, &all, &["get", "foo"]), "foo\nbar\n");

    // Every member takes writes (followers forward them) and serves linearizable reads.
    for (n, member) in cluster.members.iter().enumerate() {
        let key = format!("key{n}");
        let value = format!("value{n}");
        assert_eq!(ok(&cluster, &member.client, &["put", &key, &value]), "OK\n");
    }
    for member in &cluster.members {
        assert_eq!(
            ok(&cluster, &member.client, &["get", "--prefix", "key"]),
            "key0\nvalue0\nkey1\nvalue1\nkey2\nvalue2\n"
        );
    }
    assert_eq!(
        ok(&cluster, &all, &["get", "--prefix", "key", "--keys-only"]),
        "key0\n\nkey1\n\nkey2\n\n"
    );
    let json = ok(&cluster, &all, &["get", "--prefix", "key", "-w", "json"]);
    let range: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(range["count"].as_i64(), Some(3));
    assert!(range["header"]["revision"].as_i64().unwrap() > 3);
    assert!(range["header"]["raft_term"].as_u64().unwrap() >= 1);
    assert_ne!(range["header"]["member_id"].as_u64().unwrap(), 0);
    assert_eq!(
        ok(
            &cluster,
            &all,
            &["get", "--prefix", "key", "--limit", "1", "--order", "DESCEND"]
        ),
        "key2\nvalue2\n"
    );

    // An old revision stays readable until it is compacted.
    let old = revision_of(&cluster, "foo");
    assert_eq!(ok(&cluster, &all, &["put", "foo", "baz"]), "OK\n");
    assert_eq!(
        ok(&cluster, &all, &["get", "foo", &format!("--rev={old}")]),
        "foo\nbar\n"
    );
    assert_eq!(ok(&cluster, &all, &["get", "foo"]), "foo\nbaz\n");

    // A transaction: the compare holds, so the success branch runs.
    let txn = "value(\"key0\") = \"value0\"\n\nput txn yes\n\nput txn no\n\n";
    let output = etcdctl(&all, &["txn", "--interactive=false"], Some(txn));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "SUCCESS\n\nOK\n");
    assert_eq!(ok(&cluster, &all, &["get", "txn"]), "txn\nyes\n");
    let txn = "value(\"key0\") = \"other\"\n\nput txn yes\n\nput txn no\n\n";
    let output = etcdctl(&all, &["txn", "--interactive=false"], Some(txn));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "FAILURE\n\nOK\n");
    assert_eq!(ok(&cluster, &all, &["get", "txn"]), "txn\nno\n");

    // Deletes: one key, then a prefix with the previous values.
    assert_eq!(ok(&cluster, &all, &["del", "foo"]), "1\n");
    assert_eq!(ok(&cluster, &all, &["get", "foo"]), "");
    assert_eq!(
        ok(&cluster, &all, &["del", "--prefix", "key", "--prev-kv"]),
        "3\nkey0\nvalue0\nkey1\nvalue1\nkey2\nvalue2\n"
    );

    // Compaction: the old revision is gone, with etcd's error.
    let current = revision_of(&cluster, "txn");
    assert_eq!(
        ok(&cluster, &all, &["compaction", &current.to_string()]),
        format!("compacted revision {current}\n")
    );
    let output = etcdctl(&all, &["get", "foo", &format!("--rev={old}")], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mvcc: required revision has been compacted"),
        "{stderr}"
    );

    // Status of each endpoint: one leader, the same term; member list: the three members.
    let json = ok(&cluster, &all, &["endpoint", "status", "-w", "json"]);
    let statuses: Value = serde_json::from_str(&json).unwrap();
    let statuses = statuses.as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let leader = statuses[0]["Status"]["leader"].as_u64().unwrap();
    assert_ne!(leader, 0);
    let mut cluster_ids = Vec::new();
    for status in statuses {
        assert_eq!(status["Status"]["leader"].as_u64(), Some(leader));
        assert_eq!(status["Status"]["version"].as_str(), Some("3.5.0"));
        cluster_ids.push(status["Status"]["header"]["cluster_id"].as_u64().unwrap());
    }
    assert!(cluster_ids.iter().all(|id| *id == cluster_ids[0]));
    let json = ok(&cluster, &all, &["member", "list", "-w", "json"]);
    let list: Value = serde_json::from_str(&json).unwrap();
    let mut names: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["n1", "n2", "n3"]);
    assert_eq!(ok(&cluster, &all, &["alarm", "list"]), "");
    let defrag = ok(&cluster, &all, &["defrag"]);
    assert_eq!(defrag.lines().count(), 3, "{defrag}");
    let table = ok(&cluster, &all, &["member", "list"]);
    assert!(
        table.contains(&format!("http://{}", cluster.members[0].client)),
        "{table}"
    );
}

#[test]
fn errors_come_back_with_etcds_messages() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start();
    cluster.wait_writable();
    let all = cluster.endpoints();
    // A value over the 1.5 MiB request limit and under etcdctl's own 2 MiB (given on standard
    // input: too long for argv).
    let big = "x".repeat(1900 * 1024);
    let output = etcdctl(&all, &["put", "big"], Some(&big));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("etcdserver: request is too large"),
        "{stderr}"
    );
    // Just under the limit is taken.
    let fits = "y".repeat(1024 * 1024);
    let output = etcdctl(&all, &["put", "fits"], Some(&fits));
    assert!(output.status.success(), "{output:?}");
    // A future revision.
    let output = etcdctl(&all, &["get", "ready", "--rev=1000000"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mvcc: required revision is a future revision"),
        "{stderr}"
    );
    // ignore_value on a key that does not exist.
    let output = etcdctl(&all, &["put", "missing", "--ignore-value"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("etcdserver: key not found"), "{stderr}");

    // Garbage on every peer port, and a frame that claims 4 GiB: the connections are dropped,
    // the members keep serving.
    for member in &cluster.members {
        for garbage in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0xff, 0xff, 0xff, 0xff, 1, 2, 3][..],
        ] {
            let mut stream = std::net::TcpStream::connect(&member.peer).unwrap();
            stream.write_all(garbage).unwrap();
        }
    }
    assert_eq!(ok(&cluster, &all, &["put", "after", "garbage"]), "OK\n");
    for member in &cluster.members {
        assert_eq!(
            ok(&cluster, &member.client, &["get", "after"]),
            "after\ngarbage\n"
        );
    }
}

#[test]
fn chorus_dev_starts_stops_on_ctrl_c_and_resumes_with_its_data() {
    if !etcdctl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Client and peer ports, then the admin ports (base + 6, 7, 8).
    let base = free_ports(9);
    let endpoints = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        base,
        base + 2,
        base + 4
    );
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["dev", "--base-port", &base.to_string(), "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let stop = |mut child: Child| {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chorus dev did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let wait_for = |args: &[&str], expected: &str| {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = etcdctl(&endpoints, args, None);
            if output.status.success() && String::from_utf8_lossy(&output.stdout) == expected {
                return;
            }
            assert!(Instant::now() < deadline, "{args:?}: {output:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let dev = start();
    wait_for(&["put", "foo", "bar"], "OK\n");
    let banner = stop(dev);
    assert!(
        banner.contains("started a cluster of 3 members"),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("etcdctl --endpoints={endpoints} put foo bar")),
        "{banner}"
    );
    // Every member stopped: the client ports are free again.
    for port in [base, base + 2, base + 4] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken"
        );
    }

    let dev = start();
    wait_for(&["get", "foo"], "foo\nbar\n");
    let banner = stop(dev);
    assert!(
        banner.contains("resumed a cluster of 3 members"),
        "{banner}"
    );
}

#[test]
fn writes_continue_after_the_leader_is_killed_and_none_is_lost() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let key = format!("acked/{n:03}");
        if etcdctl(&cluster.endpoints(), &["put", &key, "v"], None)
            .status
            .success()
        {
            acknowledged.push(key);
        }
    }
    assert_eq!(acknowledged.len(), 10);

    let leader = cluster.leader();
    cluster.kill(leader);
    let killed_at = Instant::now();

    // A new leader takes writes within seconds; every acknowledged write is kept.
    let mut first_write_after = None;
    for n in 10..30 {
        let key = format!("acked/{n:03}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let output = etcdctl(&cluster.endpoints(), &["put", &key, "v"], None);
            if output.status.success() {
                acknowledged.push(key);
                first_write_after.get_or_insert(killed_at.elapsed());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no write after the leader died: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let first = first_write_after.unwrap();
    assert!(
        first < Duration::from_secs(10),
        "first write took {first:?}"
    );

    let survivors = cluster.live_endpoints();
    for endpoint in &survivors {
        let keys = ok(
            &cluster,
            endpoint,
            &["get", "--prefix", "acked/", "--keys-only"],
        );
        let keys: Vec<&str> = keys.lines().filter(|line| !line.is_empty()).collect();
        assert_eq!(keys, acknowledged, "on {endpoint}");
    }

    // The old leader comes back with its data and catches up.
    cluster.start_member(leader);
    let endpoint = cluster.members[leader].client.clone();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output = etcdctl(
            &endpoint,
            &[
                "get",
                "--prefix",
                "acked/",
                "--keys-only",
                "--consistency=s",
            ],
            None,
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let keys: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
        if output.status.success() && keys == acknowledged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted member did not catch up: {} keys",
            keys.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_member_that_missed_many_writes_catches_up_through_a_snapshot() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start_with(&["--snapshot-count", "20"]);
    cluster.wait_writable();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let mut acknowledged = Vec::new();
    for n in 0..120 {
        let key = format!("many/{n:03}");
        assert_eq!(
            ok(&cluster, &cluster.endpoints(), &["put", &key, "v"]),
            "OK\n"
        );
        acknowledged.push(key);
    }
    // The leader's log before its latest snapshot is gone: the follower needs the snapshot.
    cluster.start_member(follower);
    let endpoint = cluster.members[follower].client.clone();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output = etcdctl(
            &endpoint,
            &["get", "--prefix", "many/", "--keys-only", "--consistency=s"],
            None,
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let keys: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
        if output.status.success() && keys == acknowledged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the member did not catch up: {} keys\n{}",
            keys.len(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `etcdctl watch ...` until its output is `expected` (killed then) or the timeout.
fn watch_until(endpoints: &str, args: &[&str], expected: &str, during: impl FnOnce()) -> String {
    use std::io::Read;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("watch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    // Give the watch time to be created before the writes it must see live.
    std::thread::sleep(Duration::from_millis(500));
    during();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut output = Vec::new();
    while Instant::now() < deadline && String::from_utf8_lossy(&output) != expected {
        if let Ok(bytes) = receiver.recv_timeout(Duration::from_millis(100)) {
            output.extend(bytes);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    String::from_utf8_lossy(&output).to_string()
}

#[test]
fn etcdctl_watch_replays_history_follows_live_writes_and_reports_compaction() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start();
    cluster.wait_writable();
    let all = cluster.endpoints();
    assert_eq!(ok(&cluster, &all, &["put", "w/1", "a"]), "OK\n");
    let first = revision_of(&cluster, "w/1");
    assert_eq!(ok(&cluster, &all, &["put", "w/2", "b"]), "OK\n");

    // On a follower: the history from `first`, then live writes, with previous values.
    let follower = &cluster.members[(cluster.leader() + 1) % 3].client;
    let expected = "PUT\nw/1\na\nPUT\nw/2\nb\nPUT\nw/3\nc\nDELETE\nw/1\n\n";
    let output = watch_until(
        follower,
        &["--prefix", "w/", &format!("--rev={first}")],
        expected,
        || {
            assert_eq!(ok(&cluster, &all, &["put", "w/3", "c"]), "OK\n");
            assert_eq!(ok(&cluster, &all, &["put", "other", "x"]), "OK\n");
            assert_eq!(ok(&cluster, &all, &["del", "w/1"]), "1\n");
        },
    );
    assert_eq!(output, expected);
    // etcdctl prints the previous value first.
    let expected = "PUT\nw/2\nb\nw/2\nb2\n";
    let output = watch_until(&all, &["w/2", "--prev-kv"], expected, || {
        assert_eq!(ok(&cluster, &all, &["put", "w/2", "b2"]), "OK\n");
    });
    assert_eq!(output, expected);

    // A watch from a compacted revision is cancelled with etcd's error.
    let current = revision_of(&cluster, "w/2");
    ok(&cluster, &all, &["compaction", &current.to_string()]);
    // The compaction is answered once the leader applied it; wait until every member has (the
    // watch may go to any of them).
    let old_revision = format!("--rev={first}");
    for member in &cluster.members {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = etcdctl(
                &member.client,
                &["get", "w/1", "--consistency=s", &old_revision],
                None,
            );
            if String::from_utf8_lossy(&read.stderr)
                .contains("required revision has been compacted")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a member never applied the compaction: {read:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let output = etcdctl(&all, &["watch", "w/2", &old_revision], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
        ),
        "{output:?}"
    );
}
