//! A cluster of three `chorus server` processes with admin ports, and a tiny HTTP/1.1 GET over
//! std's TcpStream (no client library needed for a few JSON and text pages). Every wait is
//! bounded; the processes are killed when the cluster is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The longest the cluster may take to elect a leader that every member agrees on.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Response bodies read at most (the pages are small).
const HTTP_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// Free loopback ports below the ephemeral range, spread by process id (as tests/etcdctl.rs).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let spread = u16::try_from(std::process::id() % 500).unwrap() * 20 + 7;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (spread + offset) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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

pub fn get_json(address: &str, path: &str) -> Option<Value> {
    let (status, body) = http_get(address, path).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

pub struct Member {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub admin: String,
    pub process: Option<Child>,
}

/// Three members with admin ports; killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (1..=3)
            .map(|n| Member {
                name: format!("n{n}"),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                admin: format!("127.0.0.1:{}", free_port()),
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://{}", member.name, member.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster { dir, members };
        for index in 0..3 {
            let member = &cluster.members[index];
            let log_path = cluster.dir.path().join(format!("{}.log", member.name));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
                .arg("server")
                .args(["--name", &member.name])
                .arg("--data-dir")
                .arg(cluster.dir.path().join(&member.name))
                .args(["--listen-client-urls", &format!("http://{}", member.client)])
                .args(["--listen-peer-urls", &format!("http://{}", member.peer)])
                .args(["--listen-admin-urls", &format!("http://{}", member.admin)])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            cluster.members[index].process = Some(child);
        }
        cluster
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].process.is_some())
            .collect()
    }

    /// The index of the member every live member's `/api/status` names as leader.
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

    /// Sends SIGTERM to the member and waits (bounded) for it to exit.
    pub fn terminate(&mut self, index: usize) -> ExitStatus {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let mut child = self.members[index].process.take().unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
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

    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

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

/// Runs etcdctl (API v3) if it is installed; whether it ran and succeeded.
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
