//! Test support for real `chorus server` processes: a three-member cluster, optionally with its
//! peer links going through fault-injecting proxies ([`proxy`]) and with admin ports, process
//! control (SIGKILL, SIGSTOP, SIGCONT, SIGTERM, restart), the real `etcdctl` (API v3) to look
//! at it and a tiny HTTP/1.1 GET for the admin pages. Every wait is bounded; the processes are
//! killed when the cluster is dropped, however the test ends.
//!
//! Shared by every real-process test of the crate (tests/etcdctl.rs, etcdctl_lease.rs,
//! etcdctl_member.rs, etcdctl_maintenance.rs, cli_client.rs, admin.rs, dashboard.rs,
//! faults.rs, linearizability.rs and bench.rs); each compiles it separately and uses part of
//! it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proxy::{Faults, Proxy};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a single etcdctl run may take.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest the cluster may take to elect a leader, take a write or converge.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Timing flags that make elections quick (a 500 ms election timeout).
pub const FAST_TIMING: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];
/// The longest one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Response bodies read at most (the pages are small).
const HTTP_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// Whether etcdctl is installed. Without it the tests say so and pass, except under CI.
/// A two-thread runtime for a test's library clients (the servers are other processes).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

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

/// The loopback ports tests use: below Linux's ephemeral range, so no outgoing connection takes
/// one.
const PORTS_FIRST: u16 = 20_000;
const PORT_BLOCKS: u16 = 120;
const PORTS_PER_BLOCK: u16 = 100;

/// The ports this process owns: blocks of [`PORTS_PER_BLOCK`], each held through an exclusive
/// lock on its file in the temporary directory (released when the process ends), and the next
/// port not yet handed out. Why: a test stops a cluster and starts it again on the same ports,
/// and checks they are free in between; the test processes run in parallel, and a port that
/// is merely free at the time of the check could be picked by another process meanwhile (they
/// were spread by process id, which overlapped when one process used more than its share).
struct OwnedPorts {
    locks: Vec<std::fs::File>,
    next: u16,
    end: u16,
}

static OWNED_PORTS: std::sync::Mutex<OwnedPorts> = std::sync::Mutex::new(OwnedPorts {
    locks: Vec::new(),
    next: 0,
    end: 0,
});

/// `count` consecutive ports of this process's own, never handed out before.
fn own_ports(count: u16) -> u16 {
    assert!(count <= PORTS_PER_BLOCK, "{count} ports in one piece");
    let mut owned = OWNED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    if owned.end - owned.next < count {
        let directory = std::env::temp_dir().join("chorus-test-ports");
        std::fs::create_dir_all(&directory).unwrap();
        let start = u16::try_from(std::process::id() % u32::from(PORT_BLOCKS)).unwrap();
        let block = (0..PORT_BLOCKS)
            .map(|step| (start + step) % PORT_BLOCKS)
            .find_map(|block| {
                let file = std::fs::File::create(directory.join(format!("{block}.lock"))).ok()?;
                file.try_lock().ok()?;
                Some((block, file))
            });
        let Some((block, file)) = block else {
            panic!("every block of test ports is held by another process");
        };
        owned.locks.push(file);
        owned.next = PORTS_FIRST + block * PORTS_PER_BLOCK;
        owned.end = owned.next + PORTS_PER_BLOCK;
    }
    let first = owned.next;
    owned.next += count;
    first
}

/// A listener on a loopback port of this process's own ([`OwnedPorts`]).
pub fn listen_on_free_port() -> TcpListener {
    loop {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", own_ports(1))) {
            return listener;
        }
    }
}

/// `count` consecutive loopback ports of this process's own ([`OwnedPorts`]), never handed out
/// twice, and free right now (bound and released). Returns the first.
pub fn free_ports(count: u16) -> u16 {
    loop {
        let first = own_ports(count);
        if (first..first + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return first;
        }
    }
}

/// A free loopback port (bound and released: the server binds it next).
pub fn free_port() -> u16 {
    listen_on_free_port().local_addr().unwrap().port()
}

/// One member's own view: its store revision and every key with its value.
pub type LocalContents = (i64, Vec<(String, String)>);

pub struct Member {
    pub name: String,
    /// `host:port` of the gRPC API.
    pub client: String,
    /// `host:port` the member listens on for peers; only its proxy connects there.
    pub peer_listen: String,
    /// `host:port` of the proxy in front of it: its peer URL in `--initial-cluster`. Without
    /// proxies, the same as `peer_listen`.
    pub peer_proxy: String,
    /// `host:port` of its admin port (`--listen-admin-urls`); empty without admin ports.
    pub admin: String,
    /// The `--initial-cluster` it is started with, if not the cluster's ([`Cluster::new_member`]).
    pub initial_cluster: Option<String>,
    /// Started with `--initial-cluster-state existing` (it joins).
    pub joins: bool,
    pub process: Option<Child>,
    /// Whether it is stopped with SIGSTOP.
    pub stopped: bool,
}

/// How a [`Cluster`] is set up: [`Cluster::builder`].
#[derive(Default)]
pub struct Builder {
    proxies: bool,
    admin: bool,
    extra_args: Vec<String>,
}

impl Builder {
    /// Every peer link goes through a fault-injecting proxy ([`Cluster::faults`]).
    pub fn proxies(mut self) -> Builder {
        self.proxies = true;
        self
    }

    /// Every member gets an admin port ([`Member::admin`]).
    pub fn admin(mut self) -> Builder {
        self.admin = true;
        self
    }

    /// Flags given to every member besides the cluster's own (e.g. [`FAST_TIMING`]); appended.
    pub fn args(mut self, args: &[&str]) -> Builder {
        self.extra_args
            .extend(args.iter().map(|arg| arg.to_string()));
        self
    }

    /// The cluster with its ports and directory chosen, no member started yet (to seed their
    /// data directories first; then [`Cluster::start_all`]).
    pub fn prepare(self) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::default());
        let names: Vec<String> = (1..=3).map(|n| format!("n{n}")).collect();
        let member_ids: Vec<u64> = names
            .iter()
            .map(|name| chorus_server::config::member_id(name).0)
            .collect();
        let mut members = Vec::new();
        let mut proxies = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let peer_listen = format!("127.0.0.1:{}", free_port());
            let peer_proxy = if self.proxies {
                let proxy_listener = listen_on_free_port();
                let peer_proxy = proxy_listener.local_addr().unwrap().to_string();
                proxies.push(Proxy::start(
                    proxy_listener,
                    peer_listen.clone(),
                    index,
                    member_ids.clone(),
                    faults.clone(),
                ));
                peer_proxy
            } else {
                peer_listen.clone()
            };
            let admin = if self.admin {
                format!("127.0.0.1:{}", free_port())
            } else {
                String::new()
            };
            members.push(Member {
                name: name.clone(),
                client: format!("127.0.0.1:{}", free_port()),
                peer_listen,
                peer_proxy,
                admin,
                initial_cluster: None,
                joins: false,
                process: None,
                stopped: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://{}", member.name, member.peer_proxy))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            dir,
            members,
            initial_cluster,
            extra_args: self.extra_args,
            faults,
            _proxies: proxies,
        }
    }

    /// The cluster with every member started.
    pub fn start(self) -> Cluster {
        let mut cluster = self.prepare();
        cluster.start_all();
        cluster
    }
}

/// Three members; the processes are killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub initial_cluster: String,
    /// Flags given to every member besides the cluster's own.
    pub extra_args: Vec<String>,
    /// The faults on the peer links, by member index.
    pub faults: Arc<Faults>,
    _proxies: Vec<Proxy>,
}

impl Cluster {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts three members whose peer links go through proxies, with `extra_args` (e.g.
    /// [`FAST_TIMING`]).
    pub fn start(extra_args: &[&str]) -> Cluster {
        Cluster::builder().proxies().args(extra_args).start()
    }

    /// Starts every member.
    pub fn start_all(&mut self) {
        for index in 0..self.members.len() {
            self.start_member(index);
        }
    }

    /// Where member `index` keeps its data.
    pub fn data_dir(&self, index: usize) -> std::path::PathBuf {
        self.dir.path().join(&self.members[index].name)
    }

    /// Starts (or restarts, with its data) member `index`.
    pub fn start_member(&mut self, index: usize) {
        let member = &self.members[index];
        let log_path = self.dir.path().join(format!("{}.log", member.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
        command
            .arg("server")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.data_dir(index))
            .args(["--listen-client-urls", &format!("http://{}", member.client)])
            .args([
                "--listen-peer-urls",
                &format!("http://{}", member.peer_listen),
            ]);
        if !member.admin.is_empty() {
            command.args(["--listen-admin-urls", &format!("http://{}", member.admin)]);
        }
        let initial_cluster = member
            .initial_cluster
            .as_deref()
            .unwrap_or(&self.initial_cluster);
        command.args(["--initial-cluster", initial_cluster]);
        if member.joins {
            command.args(["--initial-cluster-state", "existing"]);
        }
        let child = command
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[index].process = Some(child);
        self.members[index].stopped = false;
    }

    /// A new member `name` with fresh ports (peers linked directly), not started: its
    /// `--initial-cluster` is the founding members' and its own, and it joins.
    pub fn new_member(&mut self, name: &str) -> usize {
        let peer = format!("127.0.0.1:{}", free_port());
        self.members.push(Member {
            name: name.to_string(),
            client: format!("127.0.0.1:{}", free_port()),
            initial_cluster: Some(format!("{},{name}=http://{peer}", self.initial_cluster)),
            peer_listen: peer.clone(),
            peer_proxy: peer,
            admin: String::new(),
            joins: true,
            process: None,
            stopped: false,
        });
        self.members.len() - 1
    }

    /// Waits for member `index`'s process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, index: usize, timeout: Duration) -> ExitStatus {
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

    fn pid(&self, index: usize) -> Pid {
        let child = self.members[index]
            .process
            .as_ref()
            .expect("member running");
        Pid::from_raw(i32::try_from(child.id()).unwrap())
    }

    /// Kills member `index` with SIGKILL and reaps it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[index].stopped = false;
    }

    /// Sends SIGTERM to member `index` and waits (bounded) for it to exit.
    pub fn terminate(&mut self, index: usize) -> ExitStatus {
        let pid = self.pid(index);
        let mut child = self.members[index].process.take().unwrap();
        kill(pid, Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("member {index} did not exit after SIGTERM\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes member `index` with SIGSTOP.
    pub fn stop(&mut self, index: usize) {
        kill(self.pid(index), Signal::SIGSTOP).unwrap();
        self.members[index].stopped = true;
    }

    /// Resumes member `index` with SIGCONT.
    pub fn cont(&mut self, index: usize) {
        kill(self.pid(index), Signal::SIGCONT).unwrap();
        self.members[index].stopped = false;
    }

    /// The client endpoints of the running members, comma-separated.
    pub fn endpoints(&self) -> String {
        self.live_endpoints().join(",")
    }

    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.process.is_some() && !member.stopped)
            .map(|member| member.client.clone())
            .collect()
    }

    /// The client endpoints of the members `indexes`, comma-separated.
    pub fn endpoints_of(&self, indexes: &[usize]) -> String {
        indexes
            .iter()
            .map(|index| self.members[*index].client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn member_id(&self, index: usize) -> u64 {
        chorus_server::config::member_id(&self.members[index].name).0
    }

    /// Member `index`'s log (its standard output and error).
    pub fn log(&self, index: usize) -> String {
        let path = self
            .dir
            .path()
            .join(format!("{}.log", self.members[index].name));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|index| {
                format!(
                    "--- {} ---\n{}\n",
                    self.members[index].name,
                    self.log(index)
                )
            })
            .collect()
    }

    /// The indexes of the members whose process runs (stopped ones included).
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].process.is_some())
            .collect()
    }

    /// The index of the member every live member's `/api/status` (on its admin port) names
    /// as leader.
    pub fn agreed_leader(&self) -> usize {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let leaders: Vec<Option<String>> = self
                .live()
                .iter()
                .map(|index| {
                    get_json(&self.members[*index].admin, "/api/status")
                        .and_then(|status| status["leader_name"].as_str().map(str::to_string))
                })
                .collect();
            if let Some(Some(first)) = leaders.first() {
                if leaders.iter().all(|leader| leader.as_ref() == Some(first)) {
                    if let Some(index) = self.members.iter().position(|m| m.name == *first) {
                        if self.members[index].process.is_some() {
                            return index;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader: {leaders:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Member `index`'s `etcdctl endpoint status` as JSON, or `None` if it does not answer.
    pub fn status(&self, index: usize) -> Option<Value> {
        let output = etcdctl_with_timeout(
            &self.members[index].client,
            &["endpoint", "status", "-w", "json"],
            "2s",
        );
        if !output.status.success() {
            return None;
        }
        let statuses: Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(statuses.as_array()?.first()?["Status"].clone())
    }

    /// The member that every one of `among` names as leader, once they agree on one of them.
    pub fn leader_among(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let leaders: Vec<u64> = among
                .iter()
                .map(|index| {
                    self.status(*index)
                        .and_then(|status| status["leader"].as_u64())
                        .unwrap_or(0)
                })
                .collect();
            if leaders.iter().all(|leader| *leader == leaders[0]) {
                if let Some(leader) = among
                    .iter()
                    .find(|index| self.member_id(**index) == leaders[0])
                {
                    return *leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "members {among:?} agree on no leader among them: {leaders:x?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader of the whole (running) cluster.
    pub fn leader(&self) -> usize {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|index| self.members[*index].process.is_some() && !self.members[*index].stopped)
            .collect();
        self.leader_among(&running)
    }

    /// Retries a put of `ready` through the live members until it succeeds (a leader is
    /// elected and reachable).
    pub fn wait_writable(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = etcdctl_with_input(&self.endpoints(), &["put", "ready", "yes"], None);
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

    /// Retries a put through `endpoints` until one is acknowledged; panics after `timeout`.
    /// Each attempt may take at most a second, so a member that waits for a leader does not
    /// hold the retry loop up.
    pub fn put_until_acknowledged(
        &self,
        endpoints: &str,
        key: &str,
        value: &str,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let output = etcdctl_with_timeout(endpoints, &["put", key, value], "1s");
            if output.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no put of {key} through {endpoints} within {timeout:?}: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Member `index`'s own view (a serializable read): its store revision and every key with
    /// its value. `None` if it does not answer.
    pub fn local_contents(&self, index: usize) -> Option<LocalContents> {
        let output = etcdctl_with_timeout(
            &self.members[index].client,
            &["get", "", "--from-key", "--consistency=s", "-w", "json"],
            "2s",
        );
        if !output.status.success() {
            return None;
        }
        let json: Value = serde_json::from_slice(&output.stdout).ok()?;
        let revision = json["header"]["revision"].as_i64()?;
        let kvs = json["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (decode_base64(&kv["key"]), decode_base64(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default();
        Some((revision, kvs))
    }

    /// Waits until every member answers with the same revision and the same keys and values;
    /// returns those keys and values.
    pub fn wait_converged(&self) -> Vec<(String, String)> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let views: Vec<Option<LocalContents>> = (0..self.members.len())
                .map(|index| self.local_contents(index))
                .collect();
            if let Some(Some(first)) = views.first() {
                if views.iter().all(|view| view.as_ref() == Some(first)) {
                    return first.1.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the members did not converge: {:?}\n{}",
                views
                    .iter()
                    .map(|view| view.as_ref().map(|(revision, kvs)| (*revision, kvs.len())))
                    .collect::<Vec<_>>(),
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

/// Runs etcdctl (API v3) against `endpoints` with etcdctl's `--dial-timeout` and
/// `--command-timeout` set as given, `stdin` (if any) written to its standard input; killed
/// after [`ETCDCTL_TIMEOUT`] whatever happens.
pub fn etcdctl_full(
    endpoints: &str,
    args: &[&str],
    dial_timeout: &str,
    command_timeout: &str,
    stdin: Option<&str>,
) -> Output {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--dial-timeout={dial_timeout}"))
        .arg(format!("--command-timeout={command_timeout}"))
        .args(args);
    run_bounded(command, stdin, ETCDCTL_TIMEOUT)
}

/// Runs `command` with `stdin` (if any) written to its standard input and its output
/// collected; killed after `timeout` whatever happens.
pub fn run_bounded(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{:?}: {error}", command.get_program()));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Runs etcdctl with a 1 s dial timeout and `--command-timeout` set to `command_timeout`.
pub fn etcdctl_with_timeout(endpoints: &str, args: &[&str], command_timeout: &str) -> Output {
    etcdctl_full(endpoints, args, "1s", command_timeout, None)
}

/// Runs etcdctl with an 8 s command timeout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    etcdctl_with_timeout(endpoints, args, "8s")
}

/// Runs etcdctl with a 2 s dial timeout and an 8 s command timeout, `stdin` (if any) written
/// to its standard input (the flavour of tests/etcdctl_maintenance.rs).
pub fn etcdctl_with_input(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    etcdctl_full(endpoints, args, "2s", "8s", stdin)
}

/// The standard output of a successful etcdctl run; fails the test (with the cluster's logs)
/// if it failed.
pub fn expect_success(cluster: &Cluster, args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs etcdctl and returns its standard output, failing the test (with the cluster's logs)
/// if it fails.
pub fn etcdctl_ok(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    expect_success(cluster, args, etcdctl(endpoints, args))
}

/// As [`etcdctl_ok`] with [`etcdctl_with_input`]'s timeouts and no input.
pub fn ok(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    expect_success(cluster, args, etcdctl_with_input(endpoints, args, None))
}

/// Runs `etcdctl put` (5 s command timeout, etcdctl's default dial timeout) if it is
/// installed; whether it ran and succeeded.
pub fn etcdctl_put(endpoint: &str, key: &str, value: &str) -> bool {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--command-timeout=5s",
            "put",
            key,
            value,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `GET path` from `address` (host:port): the status code and the body.
pub fn http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.take(HTTP_BYTES_MAX).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` as JSON, if it answers 200 with JSON.
pub fn get_json(address: &str, path: &str) -> Option<Value> {
    let (status, body) = http_get(address, path).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Decodes a base64 JSON string (etcdctl's `-w json` form of keys and values) as UTF-8.
fn decode_base64(value: &Value) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text = value.as_str().unwrap_or_default();
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut bytes = Vec::new();
    for symbol in text.bytes().filter(|symbol| *symbol != b'=') {
        let Some(digit) = ALPHABET.iter().position(|a| *a == symbol) else {
            break;
        };
        bits = (bits << 6) | u32::try_from(digit).unwrap();
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            bytes.push(u8::try_from((bits >> bit_count) & 0xff).unwrap());
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
