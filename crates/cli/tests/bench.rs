//! `chorus bench` against real `chorus server` processes: every workload runs briefly, exits 0
//! and reports operations without errors in its JSON line (the txn workload also checks that
//! its counters add up, and fails the run if not). Speed is never asserted here: numbers are
//! for people and for bench/compare-etcd.sh (docs/performance.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;
use support::Cluster;

/// The longest one short bench run may take (preloading included).
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `chorus bench` with the shared options and `workload`; returns its JSON report.
fn bench(cluster: &Cluster, threads: &str, workload: &[&str]) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
    command
        .args(["bench", "--endpoints", &cluster.endpoints()])
        .args(["--clients", "8", "--conns", "3", "--threads", threads])
        .args([
            "--duration",
            "400ms",
            "--warmup",
            "100ms",
            "--key-space",
            "200",
        ])
        .args(workload);
    let output = support::run_bounded(command, None, BENCH_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chorus bench {workload:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(json).unwrap_or_else(|error| panic!("{error}: {json}"))
}

#[test]
fn every_workload_runs_and_reports_operations_without_errors() {
    let cluster = Cluster::start(&support::FAST_TIMING);
    cluster.wait_writable();
    let workloads: [&[&str]; 8] = [
        &["put"],
        &["range", "--consistency", "l"],
        &["range", "--consistency", "s"],
        &["txn", "--hot-keys", "2"],
        &["mixed", "--read-percent", "50"],
        &[
            "watch",
            "--watchers",
            "20",
            "--streams",
            "2",
            "--putters",
            "2",
        ],
        &["lease-keepalive"],
        &["follower-reads"],
    ];
    for (index, workload) in workloads.iter().enumerate() {
        // One I/O thread and several: the clients and their connections share threads either way.
        let threads = if index % 2 == 0 { "1" } else { "3" };
        let report = bench(&cluster, threads, workload);
        let ops = report["ops"].as_u64().unwrap();
        let errors = report["errors"].as_u64().unwrap();
        assert!(ops > 0, "{workload:?}: no operations: {report}");
        assert_eq!(errors, 0, "{workload:?}: errors: {report}");
    }
}
