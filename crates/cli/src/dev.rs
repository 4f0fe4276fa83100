//! `chorus dev`: a local cluster of `chorus server` child processes (this same binary), data
//! under one directory, logs beside it. Ctrl-C (or SIGTERM) sends SIGTERM to every child and
//! waits for them; running it again resumes with the same data.

use anyhow::Context;
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long the children get to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for every member's data and log (one subdirectory per member).
    #[arg(long, default_value = "chorus-dev")]
    pub dir: PathBuf,
    /// How many members.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// The first member serves clients on this port and peers on the next; member i uses
    /// base + 2i and base + 2i + 1, and its admin port (metrics, dashboard) is
    /// base + 2 * nodes + i.
    #[arg(long, default_value_t = 2379)]
    pub base_port: u16,
}

struct DevMember {
    name: String,
    client_url: String,
    peer_url: String,
    admin_url: String,
}

fn members(args: &DevArgs) -> anyhow::Result<Vec<DevMember>> {
    anyhow::ensure!(
        (1..=9).contains(&args.nodes),
        "--nodes must be between 1 and 9"
    );
    (0..args.nodes)
        .map(|i| {
            let client_port = args
                .base_port
                .checked_add(2 * i)
                .and_then(|port| port.checked_add(1).map(|peer| (port, peer)))
                .context("--base-port too high")?;
            let admin_port = args
                .base_port
                .checked_add(2 * args.nodes + i)
                .context("--base-port too high")?;
            Ok(DevMember {
                name: format!("n{}", i + 1),
                admin_url: format!("http://127.0.0.1:{admin_port}"),
                client_url: format!("http://127.0.0.1:{}", client_port.0),
                peer_url: format!("http://127.0.0.1:{}", client_port.1),
            })
        })
        .collect()
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let members = members(&args)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let initial_cluster = members
        .iter()
        .map(|member| format!("{}={}", member.name, member.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    let program = std::env::current_exe().context("finding the chorus binary")?;
    let resumed = args.dir.join("n1").exists();
    let mut children: Vec<(String, Child)> = Vec::new();
    for member in &members {
        let log_path = args.dir.join(format!("{}.log", member.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log file")?;
        let child = Command::new(&program)
            .arg("server")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(args.dir.join(&member.name))
            .args(["--listen-client-urls", &member.client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--listen-admin-urls", &member.admin_url])
            .args(["--initial-cluster", &initial_cluster])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("starting {}", member.name));
        match child {
            Ok(child) => children.push((member.name.clone(), child)),
            Err(error) => {
                stop_all(&mut children).await;
                return Err(error);
            }
        }
    }
    print_banner(&args, &members, resumed);
    wait_for_stop(&mut children).await;
    stop_all(&mut children).await;
    println!(
        "chorus dev: stopped; run again to resume with the data in {}",
        args.dir.display()
    );
    Ok(())
}

fn print_banner(args: &DevArgs, members: &[DevMember], resumed: bool) {
    let verb = if resumed { "resumed" } else { "started" };
    println!(
        "chorus dev: {verb} a cluster of {} members, data in {}",
        members.len(),
        args.dir.display()
    );
    for member in members {
        println!(
            "  {}  client {}  peer {}  admin {}  log {}",
            member.name,
            member.client_url,
            member.peer_url,
            member.admin_url,
            args.dir.join(format!("{}.log", member.name)).display()
        );
    }
    // host:port without the scheme: etcdctl 3.4 sends a scheme-prefixed endpoint as the HTTP/2
    // authority for `endpoint status`, which the server's HTTP/2 stack refuses.
    let endpoints = members
        .iter()
        .map(|member| member.client_url.trim_start_matches("http://"))
        .collect::<Vec<_>>()
        .join(",");
    println!();
    println!("Try:");
    println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} put foo bar");
    println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} get foo");
    println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} endpoint status -w table");
    if let Some(first) = members.first() {
        println!();
        println!(
            "Dashboard: {}/  (metrics: {}/metrics)",
            first.admin_url, first.admin_url
        );
    }
    println!();
    println!("Ctrl-C stops every member.");
}

/// Returns on Ctrl-C or SIGTERM; reports children that exit meanwhile.
async fn wait_for_stop(children: &mut [(String, Child)]) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut reported = vec![false; children.len()];
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = async {
                match terminate.as_mut() {
                    Some(terminate) => { terminate.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => return,
            _ = poll.tick() => {
                for (index, (name, child)) in children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = child.try_wait() {
                        if !reported[index] {
                            reported[index] = true;
                            eprintln!("chorus dev: {name} exited ({status}); see its log");
                        }
                    }
                }
            }
        }
    }
}

/// SIGTERM to every child, then waits for each (SIGKILL after the timeout).
async fn stop_all(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (name, child) in children.iter_mut() {
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("chorus dev: {name} did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
