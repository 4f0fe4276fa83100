//! A real cluster of three `chorus server` processes on loopback ports, driven by the real
//! `etcdctl` (Debian's etcd-client, API v3). Every wait is bounded; the processes are killed
//! when a test ends, however it ends.
//!
//! Without `etcdctl` on the PATH these tests say so and pass, except under CI (`CI` set), where
//! scripts/test.sh installs it and they fail instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    etcdctl_available, etcdctl_with_input as etcdctl, free_ports, ok, Cluster, FAST_TIMING,
    READY_TIMEOUT,
};

/// Three members with quick elections, peers linked directly.
fn start_cluster() -> Cluster {
    Cluster::builder().args(&FAST_TIMING).start()
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
    let cluster = start_cluster();
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
    let cluster = start_cluster();
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
            let mut stream = std::net::TcpStream::connect(&member.peer_listen).unwrap();
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
    let mut cluster = start_cluster();
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
    let mut cluster = Cluster::builder()
        .args(&FAST_TIMING)
        .args(&["--snapshot-count", "20", "--snapshot-catchup-entries", "5"])
        .start();
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
    let cluster = start_cluster();
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
