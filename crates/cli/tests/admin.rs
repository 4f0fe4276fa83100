//! The admin port of real `chorus server` processes: Prometheus metrics, health and readiness,
//! the JSON status every member agrees on, and a graceful SIGTERM of the leader (it hands over
//! leadership and exits 0).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::{etcdctl_put, get_json, http_get, Cluster, FAST_TIMING, READY_TIMEOUT};

/// The value of an unlabelled sample line `name value` in a Prometheus text page.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn metrics_health_and_status_agree_across_a_three_member_cluster() {
    let cluster = Cluster::builder().admin().args(&FAST_TIMING).start();
    let leader = cluster.agreed_leader();
    let leader_admin = cluster.members[leader].admin.clone();

    // Writes through the leader (when etcdctl is installed) so the request counters move.
    let wrote =
        (0..5).all(|n| etcdctl_put(&cluster.members[leader].client, &format!("admin/k{n}"), "v"));

    for (index, member) in cluster.members.iter().enumerate() {
        let (status, body) = http_get(&member.admin, "/healthz").unwrap();
        assert_eq!((status, body.trim()), (200, "ok"), "{}", member.name);
        // Readiness: a leader is known and applied caught up; allow a moment after election.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let (status, body) = http_get(&member.admin, "/readyz").unwrap();
            if status == 200 {
                assert_eq!(body.trim(), "ok");
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert!(
                Instant::now() < deadline,
                "{} never ready: {body}",
                member.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = get_json(&member.admin, "/api/status").unwrap();
        assert_eq!(status["name"], member.name.as_str());
        let expected_role = if index == leader {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(status["role"], expected_role, "{status}");
        assert_eq!(status["leader_name"], cluster.members[leader].name.as_str());
        assert!(status["term"].as_u64().unwrap() >= 1);
        assert!(!status["leader_changes"].as_array().unwrap().is_empty());
    }

    // Give the poller a round to refresh the gauges.
    std::thread::sleep(Duration::from_millis(1200));
    let (status, text) = http_get(&leader_admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "chorus_has_leader",
        "chorus_is_leader",
        "chorus_leader_changes_total",
        "chorus_term",
        "chorus_commit_index",
        "chorus_applied_index",
        "chorus_proposals_committed_total",
        "chorus_proposals_failed_total",
        "chorus_writes_held_for_leader_total",
        "chorus_writes_no_leader_total",
        "chorus_forwarded_writes_resent_total",
        "chorus_proposals_pending",
        "chorus_persist_apply_duration_seconds_count",
        "chorus_ready_begin_duration_seconds_count",
        "chorus_disk_append_duration_seconds_count",
        "chorus_disk_fsync_duration_seconds_count",
        "chorus_backend_commit_duration_seconds_count",
        "chorus_backend_durable_commit_duration_seconds_count",
        "chorus_peer_sent_bytes_total",
        "chorus_peer_received_bytes_total",
        "chorus_snapshots_taken_total",
        "chorus_watchers",
        "chorus_watch_streams",
        "chorus_leases",
        "chorus_sessions",
        "chorus_db_size_bytes",
        "chorus_db_quota_bytes",
    ] {
        assert!(sample(&text, name).is_some(), "{name} missing:\n{text}");
    }
    assert_eq!(sample(&text, "chorus_has_leader"), Some(1.0));
    assert_eq!(sample(&text, "chorus_is_leader"), Some(1.0));
    assert!(sample(&text, "chorus_leader_changes_total").unwrap() >= 1.0);
    assert!(sample(&text, "chorus_term").unwrap() >= 1.0);
    let commit = sample(&text, "chorus_commit_index").unwrap();
    assert!(commit >= 1.0);
    assert!(sample(&text, "chorus_applied_index").unwrap() <= commit);
    assert!(sample(&text, "chorus_persist_apply_duration_seconds_count").unwrap() >= 1.0);
    assert!(sample(&text, "chorus_db_size_bytes").unwrap() > 0.0);
    assert!(sample(&text, "chorus_disk_fsync_duration_seconds_count").unwrap() >= 1.0);
    assert!(sample(&text, "chorus_peer_sent_bytes_total").unwrap() > 0.0);
    assert!(
        text.contains("# TYPE chorus_persist_apply_duration_seconds histogram"),
        "{text}"
    );
    // The default quota (2 GiB) is reported.
    assert_eq!(
        sample(&text, "chorus_db_quota_bytes"),
        Some(2.0 * 1024.0 * 1024.0 * 1024.0)
    );
    // The leader reports each follower's lag, by name, and its traffic and heartbeat round
    // trips with each, by member id.
    for family in [
        "# TYPE chorus_network_peer_sent_bytes_total counter",
        "# TYPE chorus_network_peer_received_bytes_total counter",
        "# TYPE chorus_network_peer_round_trip_time_seconds histogram",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    for (index, member) in cluster.members.iter().enumerate() {
        if index != leader {
            let id = get_json(&member.admin, "/api/status").unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            for name in [
                "chorus_network_peer_sent_bytes_total",
                "chorus_network_peer_received_bytes_total",
                "chorus_network_peer_round_trip_time_seconds_count",
            ] {
                let series = format!("{name}{{peer=\"{id}\"}}");
                assert!(
                    sample(&text, &series).is_some_and(|value| value > 0.0),
                    "{series} missing or 0:\n{text}"
                );
            }
            let line = format!(
                "chorus_follower_lag_entries{{follower=\"{}\"}}",
                member.name
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }
    if wrote {
        assert!(sample(&text, "chorus_proposals_committed_total").unwrap() >= 5.0);
        assert!(
            text.contains(
                "chorus_grpc_requests_total{method=\"/etcdserverpb.KV/Put\",code=\"OK\"}"
            ),
            "{text}"
        );
        let keys = get_json(
            &cluster.members[(leader + 1) % 3].admin,
            "/api/keys?prefix=admin/",
        )
        .unwrap();
        assert_eq!(keys["keys"].as_array().unwrap().len(), 5, "{keys}");
        let key = get_json(&leader_admin, "/api/key?key=admin/k0").unwrap();
        assert_eq!(key["value"]["value"], "v", "{key}");
    } else {
        eprintln!("etcdctl not found: the request metrics were not exercised");
    }

    // Every member lists every member, with a status from each.
    let members = get_json(&cluster.members[(leader + 1) % 3].admin, "/api/members").unwrap();
    let rows = members["members"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{members}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let members = get_json(&cluster.members[(leader + 2) % 3].admin, "/api/members").unwrap();
        let statuses = members["members"].as_array().unwrap();
        if statuses.iter().all(|row| !row["status"].is_null()) {
            break;
        }
        assert!(Instant::now() < deadline, "members unreachable: {members}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_to_the_leader_hands_over_leadership_and_exits_zero() {
    let mut cluster = Cluster::builder().admin().args(&FAST_TIMING).start();
    let leader = cluster.agreed_leader();
    let old_term = get_json(&cluster.members[leader].admin, "/api/status").unwrap()["term"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    let status = cluster.terminate(leader);
    assert!(status.success(), "exit status {status}\n{}", cluster.logs());
    assert!(
        cluster.log(leader).contains("leadership handed over"),
        "{}",
        cluster.log(leader)
    );
    let new_leader = cluster.agreed_leader();
    assert_ne!(new_leader, leader);
    let status = get_json(&cluster.members[new_leader].admin, "/api/status").unwrap();
    assert!(status["term"].as_u64().unwrap() > old_term, "{status}");
    eprintln!(
        "new leader {} agreed {:?} after SIGTERM to {}",
        cluster.members[new_leader].name,
        started.elapsed(),
        cluster.members[leader].name
    );
}
