//! The process harness of the etcdctl tests (a copy of the one in tests/etcdctl.rs, which
//! stays as it is): a real cluster of three `chorus server` processes on loopback ports, driven
//! by the real `etcdctl` (API v3). Every wait is bounded; the processes are killed when the
//! cluster is dropped, however the test ends.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a single etcdctl run may take.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest the cluster may take to elect a leader and take a write.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn etcdctl_available() -> bool {
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
pub fn free_ports(count: u16) -> u16 {
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

pub fn free_port() -> u16 {
    free_ports(1)
}

pub struct Member {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub process: Option<Child>,
}

/// Three members; killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub initial_cluster: String,
    /// Flags given to every member besides the cluster's own.
    pub extra_args: Vec<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(extra_args);
        cluster.start_all();
        cluster
    }

    /// Starts every member.
    pub fn start_all(&mut self) {
        for index in 0..self.members.len() {
            self.start_member(index);
        }
    }

    /// A cluster with its ports and directory chosen, no member started yet (to seed their
    /// data directories first).
    pub fn prepare(extra_args: &[&str]) -> Cluster {
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
        Cluster {
            dir,
            members,
            initial_cluster,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    /// Where member `index` keeps its data.
    pub fn data_dir(&self, index: usize) -> std::path::PathBuf {
        self.dir.path().join(&self.members[index].name)
    }

    pub fn start_member(&mut self, index: usize) {
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
            .arg(self.data_dir(index))
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

    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn endpoints(&self) -> String {
        self.live_endpoints().join(",")
    }

    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.process.is_some())
            .map(|member| member.client.clone())
            .collect()
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for member in &self.members {
            let path = self.dir.path().join(format!("{}.log", member.name));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            all.push_str(&format!("--- {} ---\n{text}\n", member.name));
        }
        all
    }

    /// Retries a put until it succeeds (a leader is elected and reachable).
    pub fn wait_writable(&self) {
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
    pub fn leader(&self) -> usize {
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
pub fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
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
pub fn ok(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    let output = etcdctl(endpoints, args, None);
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn revision_of(cluster: &Cluster, key: &str) -> i64 {
    let json = ok(cluster, &cluster.endpoints(), &["get", key, "-w", "json"]);
    let value: Value = serde_json::from_str(&json).unwrap();
    value["kvs"][0]["mod_revision"].as_i64().unwrap()
}
