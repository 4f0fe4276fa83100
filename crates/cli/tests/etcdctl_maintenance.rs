//! The Maintenance service and read-only transactions against a real three-member cluster,
//! driven by the real `etcdctl`: `endpoint hashkv` agrees on every member, `snapshot save`
//! writes what etcdctl expects (the data then its SHA-256), `move-leader` moves leadership,
//! and `chorus snapshot restore` seeds a new cluster from that file; a read-only `txn` is served
//! on a follower without a log entry, and the backend quota raises NOSPACE, which `alarm list`
//! shows and `alarm disarm` clears.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use support::{
    etcdctl_available, etcdctl_with_input, ok, Builder, Cluster, FAST_TIMING, READY_TIMEOUT,
};

/// A cluster of three members with quick elections, peers linked directly.
fn quick_cluster() -> Builder {
    Cluster::builder().args(&FAST_TIMING)
}

/// Each member's id, by member index, from `endpoint status`.
fn member_ids(cluster: &Cluster) -> Vec<u64> {
    let json = ok(
        cluster,
        &cluster.endpoints(),
        &["endpoint", "status", "-w", "json"],
    );
    let statuses: Value = serde_json::from_str(&json).unwrap();
    cluster
        .members
        .iter()
        .map(|member| {
            statuses
                .as_array()
                .unwrap()
                .iter()
                .find(|status| status["Endpoint"].as_str() == Some(member.client.as_str()))
                .and_then(|status| status["Status"]["header"]["member_id"].as_u64())
                .unwrap()
        })
        .collect()
}

/// The raft index `endpoint status` reports for one endpoint.
fn raft_index(cluster: &Cluster, endpoint: &str) -> u64 {
    let json = ok(cluster, endpoint, &["endpoint", "status", "-w", "json"]);
    let statuses: Value = serde_json::from_str(&json).unwrap();
    statuses[0]["Status"]["raftIndex"].as_u64().unwrap()
}

/// `endpoint hashkv --rev` on every member, retried until all have applied the revision and
/// agree; returns the hash.
fn agreed_hash(cluster: &Cluster, revision: i64) -> u64 {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output = etcdctl_with_input(
            &cluster.endpoints(),
            &[
                "endpoint",
                "hashkv",
                "--rev",
                &revision.to_string(),
                "-w",
                "json",
            ],
            None,
        );
        if output.status.success() {
            let hashes: Value = serde_json::from_slice(&output.stdout).unwrap();
            let hashes: Vec<u64> = hashes
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["HashKV"]["hash"].as_u64().unwrap_or(0))
                .collect();
            if hashes.len() == 3 && hashes.iter().all(|hash| *hash == hashes[0]) {
                return hashes[0];
            }
        }
        assert!(
            Instant::now() < deadline,
            "members never agreed on the hash at {revision}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn revision(cluster: &Cluster) -> i64 {
    let json = ok(
        cluster,
        &cluster.endpoints(),
        &["get", "ready", "-w", "json"],
    );
    let value: Value = serde_json::from_str(&json).unwrap();
    value["header"]["revision"].as_i64().unwrap()
}

#[test]
fn hashkv_agrees_snapshot_saves_move_leader_moves_and_read_only_txns_skip_the_log() {
    if !etcdctl_available() {
        return;
    }
    let cluster = quick_cluster().start();
    cluster.wait_writable();
    let endpoints = cluster.endpoints();
    for i in 0..20 {
        ok(
            &cluster,
            &endpoints,
            &["put", &format!("key{i}"), &format!("value{i}")],
        );
    }
    ok(&cluster, &endpoints, &["del", "key3"]);
    let middle = revision(&cluster);
    ok(&cluster, &endpoints, &["put", "key0", "changed"]);
    let compact_at = middle - 5;
    ok(
        &cluster,
        &endpoints,
        &["compaction", &compact_at.to_string()],
    );

    // HashKV: every member the same hash, at a past revision and the current one; the later
    // write changes the current hash, not the past one.
    let at_middle = agreed_hash(&cluster, middle);
    let current = revision(&cluster);
    let at_current = agreed_hash(&cluster, current);
    assert_ne!(at_middle, at_current);
    assert_eq!(agreed_hash(&cluster, middle), at_middle);
    let json = ok(
        &cluster,
        &cluster.members[0].client,
        &["endpoint", "hashkv", "-w", "json"],
    );
    let hashkv: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        hashkv[0]["HashKV"]["compact_revision"].as_i64(),
        Some(compact_at)
    );

    // Snapshot from a follower: etcdctl says it saved it; the file is the padded state
    // snapshot and its SHA-256.
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let path = cluster.dir.path().join("saved.snapshot");
    let path_text = path.to_str().unwrap();
    let output = etcdctl_with_input(
        &cluster.members[follower].client,
        &["snapshot", "save", path_text],
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("Snapshot saved at {path_text}")),
        "snapshot save: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.len() % 512, 32, "{} bytes", file.len());
    let (data, checksum) = file.split_at(file.len() - 32);
    assert_eq!(Sha256::digest(data).as_slice(), checksum);
    assert!(data.starts_with(b"chorusrs"));
    assert!(
        data.windows(b"value19".len()).any(|w| w == b"value19"),
        "the snapshot holds the data"
    );

    // `chorus snapshot restore` seeds a new cluster from the file: it serves the same keys
    // and goes on writing.
    let mut restored = quick_cluster().prepare();
    for index in 0..3 {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["snapshot", "restore", path_text])
            .args(["--name", &restored.members[index].name])
            .arg("--data-dir")
            .arg(restored.data_dir(index))
            .args(["--initial-cluster", &restored.initial_cluster])
            .output()
            .unwrap();
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("restored"),
            "restore: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    restored.start_all();
    restored.wait_writable();
    let restored_endpoints = restored.endpoints();
    assert_eq!(
        ok(
            &restored,
            &restored_endpoints,
            &["get", "key19", "--print-value-only"]
        ),
        "value19\n"
    );
    assert_eq!(ok(&restored, &restored_endpoints, &["get", "key3"]), "");
    let keys = ok(
        &restored,
        &restored_endpoints,
        &["get", "--prefix", "key", "--keys-only"],
    );
    assert_eq!(keys.lines().filter(|line| !line.is_empty()).count(), 19);
    agreed_hash(&restored, revision(&restored));
    drop(restored);

    // A read-only txn on a follower: the answer, and no log entry for it.
    let index_before = raft_index(&cluster, &cluster.members[leader].client);
    let txn = "value(\"key1\") = \"value1\"\n\nget key2\n\nget key4\n\n";
    let output = etcdctl_with_input(&cluster.members[follower].client, &["txn"], Some(txn));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "txn: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "SUCCESS\n\nkey2\nvalue2\n");
    let txn = "value(\"key1\") = \"other\"\n\nget key2\n\nget key4\n\n";
    let output = etcdctl_with_input(&cluster.members[follower].client, &["txn"], Some(txn));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "FAILURE\n\nkey4\nvalue4\n"
    );
    assert_eq!(
        raft_index(&cluster, &cluster.members[leader].client),
        index_before,
        "a read-only txn went through the log"
    );
    // A txn that writes still goes through raft.
    let txn = "value(\"key1\") = \"value1\"\n\nput written yes\n\n\n";
    let output = etcdctl_with_input(&cluster.members[follower].client, &["txn"], Some(txn));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "SUCCESS\n\nOK\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // move-leader: to a non-member is refused as etcd does; to a follower moves leadership.
    let ids = member_ids(&cluster);
    let output = etcdctl_with_input(&endpoints, &["move-leader", "abcdef"], None);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("etcdserver: bad leader transferee"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let target = (leader + 2) % 3;
    let stdout = ok(
        &cluster,
        &endpoints,
        &["move-leader", &format!("{:x}", ids[target])],
    );
    assert!(
        stdout.contains(&format!(
            "Leadership transferred from {:x} to {:x}",
            ids[leader], ids[target]
        )),
        "{stdout}"
    );
    assert_eq!(cluster.leader(), target);
    ok(&cluster, &endpoints, &["put", "after-move", "yes"]);
}

#[test]
fn the_backend_quota_raises_nospace_and_disarm_clears_it() {
    if !etcdctl_available() {
        return;
    }
    // The empty database is 72 KiB; a few dozen 3 KB values pass 160 KB.
    let mut cluster = quick_cluster()
        .args(&["--quota-backend-bytes", "160000"])
        .start();
    cluster.wait_writable();
    let endpoints = cluster.endpoints();
    let value = "x".repeat(3000);
    let mut refused = None;
    for i in 0..400 {
        let output = etcdctl_with_input(&endpoints, &["put", &format!("big{i}"), &value], None);
        if !output.status.success() {
            refused = Some(String::from_utf8_lossy(&output.stderr).to_string());
            break;
        }
    }
    let refused = refused.expect("no put was refused under the quota");
    assert!(
        refused.contains("etcdserver: mvcc: database space exceeded"),
        "{refused}"
    );

    // Every member lists the alarm (it is replicated) and refuses puts, forwarded or not.
    let deadline = Instant::now() + READY_TIMEOUT;
    for member in &cluster.members {
        loop {
            let listed = ok(&cluster, &member.client, &["alarm", "list"]);
            if listed.contains("alarm:NOSPACE") {
                assert!(listed.starts_with("memberID:"), "{listed}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} lists {listed:?}",
                member.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = etcdctl_with_input(&member.client, &["put", "small", "v"], None);
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("database space exceeded"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let status = ok(&cluster, &endpoints, &["endpoint", "status", "-w", "json"]);
    assert!(status.contains("alarm:NOSPACE"), "{status}");
    // A member restarted from its data still lists the alarm.
    let follower = (cluster.leader() + 1) % 3;
    cluster.kill(follower);
    cluster.start_member(follower);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let output =
            etcdctl_with_input(&cluster.members[follower].client, &["alarm", "list"], None);
        if String::from_utf8_lossy(&output.stdout).contains("alarm:NOSPACE") {
            break;
        }
        assert!(Instant::now() < deadline, "no alarm after a restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Deletes and reads still work.
    assert_eq!(ok(&cluster, &endpoints, &["del", "big0"]), "1\n");
    assert!(ok(&cluster, &endpoints, &["get", "big1"]).starts_with("big1\n"));

    // Disarm: the alarm is gone everywhere.
    let disarmed = ok(&cluster, &endpoints, &["alarm", "disarm"]);
    assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
    for member in &cluster.members {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let listed = ok(&cluster, &member.client, &["alarm", "list"]);
            if listed.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still lists {listed:?}",
                member.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
