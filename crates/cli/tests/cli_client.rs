//! The `chorus` client commands (`put`, `get`, `del`, `txn`, `watch`, `lease`, `member`,
//! `status`) against a real cluster of three `chorus server` processes on loopback ports:
//! human and `--json` output, failover when a member is killed, errors and exit codes. Every
//! wait is bounded; the processes are killed when a test ends, however it ends.
//!
//! The harness (ports, cluster) is tests/support, driven with `chorus` instead of `etcdctl`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, FAST_TIMING, READY_TIMEOUT};

/// The longest a single `chorus` client command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a watch may take to print what was written.
const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The shared three-member cluster ([`support::Cluster`], quick elections, peers linked
/// directly), looked at with `chorus` itself instead of etcdctl.
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
    fn start() -> Cluster {
        Cluster(support::Cluster::builder().args(&FAST_TIMING).start())
    }

    /// Every member's client endpoint, live or not, in order.
    fn all_endpoints(&self) -> String {
        self.members
            .iter()
            .map(|member| member.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Retries a put until it succeeds (a leader is elected and reachable).
    fn wait_writable(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = chorus(&self.all_endpoints(), &["put", "ready", "yes"], None);
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

    /// The index of the member every member names as leader, from `chorus --json status`.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = chorus(&self.all_endpoints(), &["--json", "status"], None);
            let statuses: Vec<Value> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            let leaders: Vec<&str> = statuses
                .iter()
                .filter_map(|status| status["leader"].as_str())
                .collect();
            if output.status.success()
                && leaders.len() == 3
                && leaders[0] != "0"
                && leaders.iter().all(|leader| *leader == leaders[0])
            {
                let index = statuses
                    .iter()
                    .position(|status| status["is_leader"] == Value::Bool(true));
                if let Some(index) = index {
                    return index;
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

/// Runs `chorus --endpoints ENDPOINTS ARGS`, killed after [`COMMAND_TIMEOUT`].
fn chorus(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
    command
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .env_remove("CHORUS_ENDPOINTS");
    support::run_bounded(command, stdin, COMMAND_TIMEOUT)
}

/// Runs a client command and returns its standard output, failing the test if it fails.
fn ok(cluster: &Cluster, args: &[&str]) -> String {
    ok_stdin(cluster, args, None)
}

fn ok_stdin(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let output = chorus(&cluster.all_endpoints(), args, stdin);
    assert!(
        output.status.success(),
        "chorus {args:?} failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text:?}"))
}

/// The exit code and standard error of a command expected to fail.
fn failure(endpoints: &str, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let output = chorus(endpoints, args, stdin);
    assert!(!output.status.success(), "chorus {args:?} succeeded");
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A `chorus watch` running in the background, its output going to a file.
struct WatchProcess {
    child: Child,
    output: std::path::PathBuf,
}

impl WatchProcess {
    fn start(dir: &Path, name: &str, endpoints: &str, args: &[&str]) -> WatchProcess {
        let output = dir.join(format!("{name}.out"));
        let file = std::fs::File::create(&output).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg(format!("--endpoints={endpoints}"))
            .arg("watch")
            .args(args)
            .env_remove("CHORUS_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        WatchProcess { child, output }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits until the output is exactly `expected` (failing on anything else once the time
    /// is up).
    fn wait_for(&self, expected: &str, cluster: &Cluster) {
        let deadline = Instant::now() + WATCH_TIMEOUT;
        while self.text() != expected {
            assert!(
                Instant::now() < deadline,
                "watch printed {:?}, expected {expected:?}\n{}",
                self.text(),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kv_commands_print_like_etcdctl_and_as_json() {
    let cluster = Cluster::start();
    cluster.wait_writable();

    assert_eq!(ok(&cluster, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(ok(&cluster, &["get", "foo"]), "foo\nbar\n");
    assert_eq!(
        ok(&cluster, &["put", "foo", "baz", "--prev-kv"]),
        "OK\nfoo\nbar\n"
    );
    // Every member takes writes and serves reads (followers forward writes).
    for (n, member) in cluster.members.iter().enumerate() {
        let output = chorus(
            &member.client,
            &["put", &format!("key{n}"), &format!("value{n}")],
            None,
        );
        assert!(output.status.success(), "{output:?}");
    }
    assert_eq!(
        ok(&cluster, &["get", "key", "--prefix"]),
        "key0\nvalue0\nkey1\nvalue1\nkey2\nvalue2\n"
    );
    assert_eq!(
        ok(&cluster, &["get", "key", "--prefix", "--keys-only"]),
        "key0\n\nkey1\n\nkey2\n\n"
    );
    assert_eq!(
        ok(&cluster, &["get", "key", "--prefix", "--limit", "1"]),
        "key0\nvalue0\n"
    );
    assert_eq!(
        ok(&cluster, &["get", "key1", "--from-key", "--serializable"])
            .lines()
            .next(),
        Some("key1")
    );
    assert_eq!(
        ok(&cluster, &["get", "key", "--prefix", "--count-only"]),
        "3\n"
    );
    assert_eq!(
        ok(&cluster, &["get", "key0", "key2"]),
        "key0\nvalue0\nkey1\nvalue1\n"
    );
    assert_eq!(ok(&cluster, &["get", "missing"]), "");

    // --json: one object, with the header and the key-values as text.
    let range = json(&ok(&cluster, &["--json", "get", "key", "--prefix"]));
    assert_eq!(range["count"], 3);
    assert_eq!(range["kvs"][1]["key"], "key1");
    assert_eq!(range["kvs"][1]["value"], "value1");
    assert!(range["header"]["revision"].as_i64().unwrap() >= 6);
    assert_ne!(range["header"]["member_id"].as_u64().unwrap(), 0);
    let put = json(&ok(&cluster, &["put", "foo", "qux", "--json", "--prev-kv"]));
    assert_eq!(put["prev_kv"]["value"], "baz");
    let new_revision = put["header"]["revision"].as_i64().unwrap();

    // An old revision stays readable.
    let old = json(&ok(&cluster, &["--json", "get", "foo"]))["kvs"][0]["create_revision"]
        .as_i64()
        .unwrap();
    assert_eq!(
        ok(&cluster, &["get", "foo", "--rev", &old.to_string()]),
        "foo\nbar\n"
    );
    assert_eq!(
        ok(
            &cluster,
            &["get", "foo", "--rev", &new_revision.to_string()]
        ),
        "foo\nqux\n"
    );

    // Transactions in etcdctl's format, both branches, printed as etcdctl prints them.
    let txn = "value(\"key0\") = \"value0\"\nmod(\"foo\") > \"0\"\n\nput txn yes\nget foo\n\nput txn no\n";
    assert_eq!(
        ok_stdin(&cluster, &["txn"], Some(txn)),
        "SUCCESS\n\nOK\n\nfoo\nqux\n"
    );
    assert_eq!(ok(&cluster, &["get", "txn"]), "txn\nyes\n");
    let txn = "value(\"key0\") = \"other\"\n\nput txn yes\n\nput txn no\ndel key0 --prev-kv\n";
    assert_eq!(
        ok_stdin(&cluster, &["txn"], Some(txn)),
        "FAILURE\n\nOK\n\n1\nkey0\nvalue0\n"
    );
    assert_eq!(ok(&cluster, &["get", "txn"]), "txn\nno\n");
    let txn_json = json(&ok_stdin(
        &cluster,
        &["--json", "txn"],
        Some("version(\"txn\") = \"2\"\n\nget txn\n"),
    ));
    assert_eq!(txn_json["succeeded"], true);
    assert_eq!(txn_json["responses"][0]["range"]["kvs"][0]["value"], "no");

    // Deletes.
    assert_eq!(ok(&cluster, &["del", "foo"]), "1\n");
    assert_eq!(ok(&cluster, &["get", "foo"]), "");
    assert_eq!(
        ok(&cluster, &["del", "key", "--prefix", "--prev-kv"]),
        "2\nkey1\nvalue1\nkey2\nvalue2\n"
    );
    let deleted = json(&ok(&cluster, &["--json", "del", "txn"]));
    assert_eq!(deleted["deleted"], 1);

    // Status: a table with a row per member (found through MemberList, even when only one
    // endpoint is given), one leader, and each member's lag; --json: an object each.
    let one_endpoint = cluster.members[0].client.clone();
    let output = chorus(&one_endpoint, &["status"], None);
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("ENDPOINT"), "{table}");
    for column in [
        "NAME",
        "ROLE",
        "RAFT INDEX",
        "APPLIED INDEX",
        "LAG",
        "DB SIZE",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    for member in &cluster.members {
        let line = lines[1..]
            .iter()
            .find(|line| line.starts_with(&format!("http://{}", member.client)))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", member.client));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[2], member.name, "{table}");
        assert!(["leader", "follower"].contains(&cells[3]), "{table}");
        assert!(cells[7].parse::<u64>().is_ok(), "lag: {table}");
        assert!(line.contains("3.5.0"), "{table}");
    }
    let leaders = lines[1..]
        .iter()
        .filter(|line| line.split_whitespace().nth(3) == Some("leader"))
        .count();
    assert_eq!(leaders, 1, "{table}");
    let statuses: Vec<Value> = ok(&cluster, &["--json", "status"])
        .lines()
        .map(json)
        .collect();
    assert_eq!(statuses.len(), 3);
    assert_eq!(
        statuses
            .iter()
            .filter(|status| status["is_leader"] == true && status["role"] == "leader")
            .count(),
        1
    );
    assert!(statuses.iter().all(|status| status["lag"].is_u64()));

    // Member list: etcdctl's simple lines.
    let members = ok(&cluster, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    for member in &cluster.members {
        assert!(
            members.contains(&format!(
                ", started, {}, http://{}, http://{}, false",
                member.name, member.peer_listen, member.client
            )),
            "{members}"
        );
    }
    let list = json(&ok(&cluster, &["member", "list", "--json"]));
    assert_eq!(list["members"].as_array().unwrap().len(), 3);

    // The same output as etcdctl, where it is installed.
    let etcdctl = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", cluster.all_endpoints()))
        .args(["get", "", "--prefix"])
        .output();
    if let Ok(etcdctl) = etcdctl {
        if etcdctl.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&etcdctl.stdout),
                ok(&cluster, &["get", "", "--prefix"])
            );
        }
    }
}

#[test]
fn errors_print_one_line_and_exit_with_their_code() {
    let cluster = Cluster::start();
    cluster.wait_writable();
    let all = cluster.all_endpoints();

    // 1: the cluster refused.
    let (code, stderr) = failure(&all, &["get", "foo", "--rev", "1000000"], None);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "Error: mvcc: required revision is a future revision\n"
    );
    let (code, stderr) = failure(&all, &["get", ""], None);
    assert_eq!(
        (code, stderr.as_str()),
        (1, "Error: etcdserver: key is not provided\n")
    );

    // 2: usage, found before anything is sent.
    let (code, stderr) = failure(&all, &["get"], None);
    assert_eq!(code, 2, "{stderr}");
    let (code, stderr) = failure(&all, &["txn"], Some("size(\"k\") = \"1\"\n\nput k v\n"));
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("Error: malformed comparison"),
        "{stderr}"
    );
    let (code, stderr) = failure("https://127.0.0.1:1", &["get", "k"], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("https is not supported"), "{stderr}");
    let (code, _) = failure(&all, &["get", "k", "--timeout", "soon"], None);
    assert_eq!(code, 2);

    // 3: nothing answers within the timeout.
    let nobody = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = failure(&nobody, &["put", "k", "v", "--timeout", "1s"], None);
    assert_eq!(code, 3);
    assert!(
        stderr.starts_with("Error: no endpoint answered within 1s"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // The server's refusals come back as etcd's messages, exit 1.
    let (code, stderr) = failure(&all, &["lease", "revoke", "1234"], None);
    assert_eq!(code, 1);
    assert_eq!(stderr, "Error: etcdserver: requested lease not found\n");
    let (code, stderr) = failure(&all, &["member", "remove", "1234"], None);
    assert_eq!(code, 1);
    assert_eq!(stderr, "Error: etcdserver: member not found\n");
}

#[test]
fn calls_move_to_another_endpoint_when_a_member_is_killed() {
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    assert_eq!(ok(&cluster, &["put", "before", "1"]), "OK\n");
    cluster.kill(follower);

    // The dead member first in the list: the client retries on the next endpoint.
    let others: Vec<String> = (0..3)
        .filter(|index| *index != follower)
        .map(|index| cluster.members[index].client.clone())
        .collect();
    let dead_first = format!("{},{}", cluster.members[follower].client, others.join(","));
    for n in 0..5 {
        let output = chorus(&dead_first, &["put", &format!("after{n}"), "2"], None);
        assert!(
            output.status.success(),
            "put {n}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
    }
    let output = chorus(
        &dead_first,
        &["get", "after", "--prefix", "--count-only"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "5\n", "{output:?}");
    let output = chorus(&dead_first, &["get", "before"], None);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "before\n1\n");

    // Status: a row per member, the dead one with its error; exit 3.
    let output = chorus(&dead_first, &["status"], None);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), 4, "{table}");
    let dead_url = dead_first.split(',').next().unwrap();
    let dead_row = table
        .lines()
        .find(|line| line.starts_with(&format!("http://{dead_url}")))
        .unwrap();
    assert!(dead_row.contains("Connection refused"), "{table}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("Error: "), "{stderr}");
}

#[test]
fn a_watch_follows_writes_and_resumes_on_another_member_when_its_member_is_killed() {
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let leader = cluster.leader();
    // The watch talks to a follower first (so the cluster keeps its leader when it dies).
    let watched = (leader + 1) % 3;
    let order: Vec<String> = [watched, (watched + 1) % 3, (watched + 2) % 3]
        .iter()
        .map(|index| cluster.members[*index].client.clone())
        .collect();
    let endpoints = order.join(",");
    let survivors = order[1..].join(",");

    assert_eq!(ok(&cluster, &["put", "job/0", "zero"]), "OK\n");
    let first = json(&ok(&cluster, &["--json", "get", "job/0"]))["kvs"][0]["mod_revision"]
        .as_i64()
        .unwrap();
    let live = WatchProcess::start(
        cluster.dir.path(),
        "live",
        &endpoints,
        &["job/", "--prefix"],
    );
    let replay = WatchProcess::start(
        cluster.dir.path(),
        "replay",
        &endpoints,
        &["job/", "--prefix", "--rev", &first.to_string(), "--json"],
    );
    // The replaying watch prints the history first: once it has, both watches are created.
    let deadline = Instant::now() + WATCH_TIMEOUT;
    while !replay.text().contains("zero") {
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            replay.text(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A watch created before the put may or may not be in place yet for the live one: write
    // until it has seen a first event, then compare from there.
    let deadline = Instant::now() + WATCH_TIMEOUT;
    while live.text().is_empty() {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        ok(&cluster, &["put", "job/warmup", "w"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut expected = live.text();
    assert!(expected.starts_with("PUT\njob/warmup\nw\n"), "{expected}");

    assert_eq!(ok(&cluster, &["put", "job/1", "one"]), "OK\n");
    assert_eq!(ok(&cluster, &["put", "other", "x"]), "OK\n");
    assert_eq!(ok(&cluster, &["del", "job/0"]), "1\n");
    expected.push_str("PUT\njob/1\none\nDELETE\njob/0\n\n");
    live.wait_for(&expected, &cluster);

    // The watches' member dies; writes go on through the others; the watches carry on from
    // the next revision on another member: every event once, in order.
    cluster.kill(watched);
    for n in 2..6 {
        let output = chorus(
            &survivors,
            &["put", &format!("job/{n}"), &n.to_string()],
            None,
        );
        assert!(output.status.success(), "{output:?}\n{}", cluster.logs());
        expected.push_str(&format!("PUT\njob/{n}\n{n}\n"));
    }
    live.wait_for(&expected, &cluster);

    // The replaying watch printed JSON: its events' revisions are strictly increasing and
    // cover the same writes (no event lost or repeated across the move).
    let deadline = Instant::now() + WATCH_TIMEOUT;
    loop {
        let text = replay.text();
        let revisions: Vec<i64> = text
            .lines()
            .map(json)
            .flat_map(|batch| {
                batch["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|event| event["kv"]["mod_revision"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        if revisions.len() >= expected.matches("PUT\n").count() + 2 {
            assert!(
                revisions.windows(2).all(|pair| pair[0] < pair[1]),
                "{revisions:?}\n{text}"
            );
            assert_eq!(revisions[0], first, "{text}");
            assert!(text.contains("\"key\":\"job/5\""), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn writes_resume_after_the_leader_is_killed_and_acknowledged_ones_are_kept() {
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let leader = cluster.leader();
    assert_eq!(ok(&cluster, &["put", "before", "1"]), "OK\n");
    cluster.kill(leader);
    // Until a new leader is elected a write waits (a member that knows no leader holds it) or
    // fails: exit 3 with `no endpoint answered` (every member said `no leader`: retried,
    // nothing applied) or `outcome is unknown` (a follower still forwarded to the dead leader:
    // `leader changed`, which is not retried). Afterwards writes succeed again; every
    // acknowledged one is there.
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut acknowledged = Vec::new();
    let mut attempt = 0;
    while acknowledged.len() < 5 {
        let key = format!("after{attempt}");
        let output = chorus(
            &cluster.all_endpoints(),
            &["put", &key, "x", "--timeout", "3s"],
            None,
        );
        attempt += 1;
        if output.status.success() {
            acknowledged.push(key);
            continue;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains("no endpoint answered") || stderr.contains("outcome is unknown"),
            "{stderr}"
        );
        assert!(Instant::now() < deadline, "{stderr}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    for key in acknowledged
        .iter()
        .chain(std::iter::once(&"before".to_string()))
    {
        let value = ok(&cluster, &["get", key]);
        assert!(value.starts_with(&format!("{key}\n")), "{key}: {value:?}");
    }
}

/// The library itself (the commands above run one call per process): a long-lived client
/// whose cached connection's member dies moves on, for writes too (the dead member's
/// connection cannot be made again, so nothing was sent); the revision it tracks grows; the
/// builders round-trip through a real server; the Lease service answers UNIMPLEMENTED today.
#[test]
fn a_long_lived_library_client_moves_on_when_its_member_dies() {
    use chorus_client::{
        Client, ClientConfig, Compare, CompareOp, Error, Get, Put, Txn, TxnOp, Watch,
    };
    let mut cluster = Cluster::start();
    cluster.wait_writable();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let endpoints = vec![
        cluster.members[follower].client.clone(),
        cluster.members[other].client.clone(),
        cluster.members[leader].client.clone(),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(ClientConfig::new(endpoints)).unwrap();
        let first = client.put(Put::new("lib/a", "1")).await.unwrap();
        let first_revision = first.header.unwrap().revision;
        assert_eq!(client.revision(), first_revision);
        let mut watcher = client
            .watch(Watch::key("lib/").prefix().start_revision(first_revision))
            .await
            .unwrap();
        let batch = watcher.next().await.unwrap();
        assert_eq!(&batch.events[0].kv.as_ref().unwrap().key[..], b"lib/a");

        // The first endpoint (whose connection is cached) dies between calls. (Given a moment,
        // the connection notices; a write racing the death itself may be answered
        // OutcomeUnknown, correctly: it was sent on a connection that then broke.)
        cluster.kill(follower);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = client.put(Put::new("lib/b", "2")).await.unwrap();
        assert!(second.header.unwrap().revision > first_revision);
        let batch = watcher.next().await.unwrap();
        assert_eq!(&batch.events[0].kv.as_ref().unwrap().key[..], b"lib/b");
        assert_eq!(watcher.next_revision(), client.revision() + 1);

        let txn = Txn::new()
            .when([Compare::value("lib/b", CompareOp::Equal, "2")])
            .and_then([TxnOp::Put(Put::new("lib/c", "3"))])
            .or_else([TxnOp::Get(Get::key("lib/b"))]);
        assert!(client.txn(txn).await.unwrap().succeeded);
        let range = client.get(Get::key("lib/").prefix()).await.unwrap();
        assert_eq!(range.count, 3);
        let batch = watcher.next().await.unwrap();
        assert_eq!(&batch.events[0].kv.as_ref().unwrap().key[..], b"lib/c");

        // Leases, through the surviving members: grant, keep alive, time to live, revoke.
        let granted = client.lease_grant(10, 0).await.unwrap();
        assert!(granted.ttl >= 10, "{granted:?}");
        let kept = client.lease_keep_alive_once(granted.id).await.unwrap();
        assert!(kept.ttl > 0, "{kept:?}");
        let ttl = client.lease_time_to_live(granted.id, true).await.unwrap();
        assert_eq!(ttl.granted_ttl, granted.ttl);
        client.lease_revoke(granted.id).await.unwrap();
        match client.lease_revoke(granted.id).await {
            Err(Error::Server { code, message }) => {
                assert_eq!(code, chorus_client::error::Code::NotFound);
                assert_eq!(message, "etcdserver: requested lease not found");
            }
            other => panic!("second revoke: {other:?}"),
        }
        let members = client.member_list().await.unwrap();
        assert_eq!(members.members.len(), 3);
        let statuses = client.status_all().await;
        assert!(statuses[0].status.is_err());
        assert!(statuses[1].status.is_ok() && statuses[2].status.is_ok());
    });
}
