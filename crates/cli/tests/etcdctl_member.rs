//! Membership changes on a real cluster of `chorus server` processes, driven by the real
//! `etcdctl` (API v3): a learner added and started with `--initial-cluster-state existing`
//! catches up and is promoted; a member's peer URLs updated; members removed (they stop, the
//! cluster keeps serving); etcd's errors. The process harness is copied from tests/etcdctl.rs.
//!
//! Without `etcdctl` on the PATH these tests say so and pass, except under CI (`CI` set).

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
    /// The `--initial-cluster` it is started with.
    initial_cluster: String,
    /// Started with `--initial-cluster-state existing` (it joins).
    joins: bool,
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
                initial_cluster: String::new(),
                joins: false,
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://{}", member.name, member.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = members;
        for member in &mut members {
            member.initial_cluster = initial_cluster.clone();
        }
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
            .args(["--initial-cluster", &member.initial_cluster])
            .args(if member.joins {
                &["--initial-cluster-state", "existing"][..]
            } else {
                &[][..]
            })
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[index].process = Some(child);
    }

    /// A new member `name` with fresh ports, not started: its `--initial-cluster` is the
    /// founding members' and its own, and it joins.
    fn new_member(&mut self, name: &str) -> usize {
        let peer = format!("127.0.0.1:{}", free_port());
        self.members.push(Member {
            name: name.to_string(),
            client: format!("127.0.0.1:{}", free_port()),
            initial_cluster: format!("{},{name}=http://{peer}", self.initial_cluster),
            peer,
            joins: true,
            process: None,
        });
        self.members.len() - 1
    }

    /// Waits for a member's process to exit by itself; its exit status.
    fn wait_exit(&mut self, index: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.members[index].process.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.members[index].process = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "member {} did not exit\n{}",
                self.members[index].name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// The members as `member list -w json` shows them: (id, name, peer URLs, is_learner).
fn member_list(cluster: &Cluster, endpoints: &str) -> Vec<ListedMember> {
    let json = ok(cluster, endpoints, &["member", "list", "-w", "json"]);
    let list: Value = serde_json::from_str(&json).unwrap();
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| {
            (
                member["ID"].as_u64().unwrap(),
                member["name"].as_str().unwrap_or_default().to_string(),
                member["peerURLs"]
                    .as_array()
                    .map(|urls| {
                        urls.iter()
                            .map(|url| url.as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
                member["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

type ListedMember = (u64, String, Vec<String>, bool);

/// Polls `member list` until `done` holds for it (every member answers from its own applied
/// table, which may lag the leader's a little); the list.
fn wait_list(
    cluster: &Cluster,
    endpoints: &str,
    done: impl Fn(&[ListedMember]) -> bool,
) -> Vec<ListedMember> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let list = member_list(cluster, endpoints);
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "member list stuck at {list:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Retries `args` until etcdctl succeeds; its output.
fn eventually(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output = etcdctl(endpoints, args, None);
        if output.status.success() {
            return String::from_utf8(output.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "etcdctl {args:?} kept failing: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs etcdctl expecting failure; its standard error.
fn fails(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    let output = etcdctl(endpoints, args, None);
    assert!(
        !output.status.success(),
        "etcdctl {args:?} succeeded: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        cluster.logs()
    );
    String::from_utf8(output.stderr).unwrap()
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

#[test]
fn a_learner_joins_catches_up_is_promoted_updated_and_removed() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let founders = cluster.endpoints();
    for n in 0..30 {
        ok(&cluster, &founders, &["put", &format!("before{n:02}"), "v"]);
    }

    // Add n4 as a learner; etcdctl prints the lines to start it with.
    let n4 = cluster.new_member("n4");
    let peer_url = format!("http://{}", cluster.members[n4].peer);
    let added = ok(
        &cluster,
        &founders,
        &[
            "member",
            "add",
            "n4",
            "--learner",
            &format!("--peer-urls={peer_url}"),
        ],
    );
    assert!(added.contains("added to cluster"), "{added}");
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{added}"
    );
    let list = wait_list(&cluster, &founders, |list| list.len() == 4);
    let (id4, _, urls, learner) = list
        .iter()
        .find(|member| member.2.contains(&peer_url))
        .cloned()
        .unwrap();
    assert!(learner);
    assert_eq!(urls, vec![peer_url.clone()]);

    // Adding the same peer URL again is refused.
    let error = fails(
        &cluster,
        &founders,
        &["member", "add", "again", &format!("--peer-urls={peer_url}")],
    );
    assert!(
        error.contains("etcdserver: Peer URLs already exists"),
        "{error}"
    );

    // n4 starts empty, learns its id and the data from the leader, and serves reads.
    cluster.start_member(n4);
    let own = cluster.members[n4].client.clone();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output = etcdctl(
            &own,
            &[
                "get",
                "--prefix",
                "before",
                "--consistency=s",
                "--keys-only",
            ],
            None,
        );
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        if output.status.success() && text.lines().filter(|line| !line.is_empty()).count() == 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n4 did not catch up\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = ok(&cluster, &own, &["endpoint", "status", "-w", "json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status[0]["Status"]["header"]["member_id"].as_u64(),
        Some(id4)
    );
    assert_eq!(
        status[0]["Status"]["isLearner"].as_bool(),
        Some(true),
        "{status}"
    );

    // Promote it (retried while it is still catching up), then four voters.
    let promoted = eventually(&cluster, &founders, &["member", "promote", &hex(id4)]);
    assert!(promoted.contains("promoted"), "{promoted}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let list = member_list(&cluster, &own);
        let voters = list.iter().filter(|member| !member.3).count();
        let named = list
            .iter()
            .any(|member| member.0 == id4 && member.1 == "n4");
        if voters == 4 && named {
            break;
        }
        assert!(Instant::now() < deadline, "{list:?}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let error = fails(&cluster, &founders, &["member", "promote", &hex(id4)]);
    assert!(
        error.contains("etcdserver: can only promote a learner member"),
        "{error}"
    );
    let all = cluster.endpoints();
    ok(&cluster, &own, &["put", "after", "promote"]);
    assert_eq!(ok(&cluster, &all, &["get", "after"]), "after\npromote\n");
    assert_eq!(ok(&cluster, &own, &["get", "after"]), "after\npromote\n");

    // Update n4's peer URLs and back: the list follows, the cluster keeps serving.
    let moved = format!("http://127.0.0.1:{}", free_port());
    let updated = ok(
        &cluster,
        &own,
        &[
            "member",
            "update",
            &hex(id4),
            &format!("--peer-urls={moved}"),
        ],
    );
    assert!(updated.contains("updated"), "{updated}");
    wait_list(&cluster, &founders, |list| {
        list.iter()
            .any(|member| member.0 == id4 && member.2 == vec![moved.clone()])
    });
    ok(
        &cluster,
        &founders,
        &[
            "member",
            "update",
            &hex(id4),
            &format!("--peer-urls={peer_url}"),
        ],
    );
    eventually(&cluster, &all, &["put", "after", "update"]);

    // Errors: an unknown id.
    let error = fails(&cluster, &all, &["member", "remove", "abcdef"]);
    assert!(error.contains("etcdserver: member not found"), "{error}");
    let error = fails(&cluster, &all, &["member", "promote", "abcdef"]);
    assert!(error.contains("etcdserver: member not found"), "{error}");

    // Remove n4: it stops (non-zero, saying why); the others serve.
    let removed = ok(&cluster, &founders, &["member", "remove", &hex(id4)]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    let exit = cluster.wait_exit(n4, Duration::from_secs(30));
    assert!(!exit.success(), "{exit:?}");
    assert!(cluster.logs().contains("was removed from the cluster"));
    let all = cluster.endpoints();
    eventually(&cluster, &all, &["put", "after", "remove"]);
    wait_list(&cluster, &all, |list| list.len() == 3);

    // Remove a follower: two members remain and serve.
    let leader = cluster.leader();
    let follower = (0..3).find(|index| *index != leader).unwrap();
    let list = member_list(&cluster, &all);
    let follower_id = list
        .iter()
        .find(|member| member.1 == cluster.members[follower].name)
        .unwrap()
        .0;
    eventually(&cluster, &all, &["member", "remove", &hex(follower_id)]);
    let exit = cluster.wait_exit(follower, Duration::from_secs(30));
    assert!(!exit.success(), "{exit:?}");
    let rest = cluster.endpoints();
    eventually(&cluster, &rest, &["put", "last", "two"]);
    assert_eq!(ok(&cluster, &rest, &["get", "last"]), "last\ntwo\n");
    wait_list(&cluster, &rest, |list| list.len() == 2);
}

/// The id `member list` shows for the member with this peer address.
fn id_of(cluster: &Cluster, endpoints: &str, peer: &str) -> u64 {
    let url = format!("http://{peer}");
    wait_list(cluster, endpoints, |list| {
        list.iter().any(|member| member.2.contains(&url))
    })
    .into_iter()
    .find(|member| member.2.contains(&url))
    .unwrap()
    .0
}

/// Waits until `endpoint` serves `key` from its own state with `value`.
fn wait_local_value(cluster: &Cluster, endpoint: &str, key: &str, value: &str) {
    let expected = format!("{key}\n{value}\n");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output = etcdctl(endpoint, &["get", key, "--consistency=s"], None);
        if output.status.success() && String::from_utf8_lossy(&output.stdout) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} never served {key}={value}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_voter_joins_and_restarts_and_changes_that_would_lose_quorum_are_refused() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let founders = cluster.endpoints();

    // A voter straight away (no --learner): it joins and serves.
    let n4 = cluster.new_member("n4");
    let peer_url = format!("http://{}", cluster.members[n4].peer);
    ok(
        &cluster,
        &founders,
        &["member", "add", "n4", &format!("--peer-urls={peer_url}")],
    );
    cluster.start_member(n4);
    let own = cluster.members[n4].client.clone();
    wait_local_value(&cluster, &own, "ready", "yes");
    wait_list(&cluster, &own, |list| {
        list.len() == 4 && list.iter().all(|member| !member.3)
    });

    // Restarted, it resumes with its data and its id, and follows new writes.
    let id4 = id_of(&cluster, &founders, &cluster.members[n4].peer);
    cluster.kill(n4);
    eventually(&cluster, &founders, &["put", "while", "down"]);
    cluster.start_member(n4);
    wait_local_value(&cluster, &own, "while", "down");
    let status = ok(&cluster, &own, &["endpoint", "status", "-w", "json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status[0]["Status"]["header"]["member_id"].as_u64(),
        Some(id4)
    );

    eventually(&cluster, &founders, &["member", "remove", &hex(id4)]);
    let exit = cluster.wait_exit(n4, Duration::from_secs(30));
    assert!(!exit.success(), "{exit:?}");

    // One follower down: two of three voters answer. Another voter would need three; removing
    // the live follower would leave one of two.
    let leader = cluster.leader();
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let (down, up) = (followers[0], followers[1]);
    let all = cluster.endpoints();
    let down_id = id_of(&cluster, &all, &cluster.members[down].peer);
    let up_id = id_of(&cluster, &all, &cluster.members[up].peer);
    cluster.kill(down);
    // Long enough for the leader to see it silent (the election timeout is 500 ms).
    std::thread::sleep(Duration::from_millis(1500));
    let all = cluster.endpoints();
    let spare = format!("http://127.0.0.1:{}", free_port());
    let error = fails(
        &cluster,
        &all,
        &["member", "add", "n5", &format!("--peer-urls={spare}")],
    );
    assert!(
        error.contains("etcdserver: re-configuration failed due to not enough started members"),
        "{error}"
    );
    let error = fails(&cluster, &all, &["member", "remove", &hex(up_id)]);
    assert!(
        error.contains("etcdserver: re-configuration failed due to not enough started members"),
        "{error}"
    );
    // A learner is fine, and so is removing the member that is down.
    ok(
        &cluster,
        &all,
        &[
            "member",
            "add",
            "n5",
            "--learner",
            &format!("--peer-urls={spare}"),
        ],
    );
    let n5 = id_of(&cluster, &all, &spare[7..]);
    eventually(&cluster, &all, &["member", "remove", &hex(n5)]);
    eventually(&cluster, &all, &["member", "remove", &hex(down_id)]);
    eventually(&cluster, &all, &["put", "two", "left"]);
    wait_list(&cluster, &all, |list| list.len() == 2);

    // The leader removes itself: it stops, the last member leads alone and serves.
    let leader_id = id_of(&cluster, &all, &cluster.members[leader].peer);
    let last = cluster.members[up].client.clone();
    eventually(&cluster, &last, &["member", "remove", &hex(leader_id)]);
    let exit = cluster.wait_exit(leader, Duration::from_secs(30));
    assert!(!exit.success(), "{exit:?}");
    eventually(&cluster, &last, &["put", "one", "left"]);
    assert_eq!(ok(&cluster, &last, &["get", "one"]), "one\nleft\n");
    wait_list(&cluster, &last, |list| {
        list.len() == 1 && list[0].0 == up_id
    });
}
