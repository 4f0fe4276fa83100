//! `chorus server`: flags and an optional TOML file (flags win), then run the node until
//! SIGINT or SIGTERM.

use anyhow::Context;
use chorus_server::config::{parse_duration, REQUEST_BYTES_MAX_DEFAULT};
use chorus_server::follower_read::FollowerReadConfig;
use chorus_server::{parse_initial_cluster, ServerConfig};
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The clock drift bound assumed for leader-lease reads unless given: 1%, far above what
/// monotonic clocks drift (tens of ppm), to leave room for scheduling.
pub const CLOCK_DRIFT_BOUND_PPM_DEFAULT: u32 = 10_000;

/// Flags of `chorus server`. Every one may also be set in the TOML file given with `--config`
/// (same names, with `_` instead of `-`); a flag given on the command line wins.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServerArgs {
    /// A TOML file with any of these settings, e.g. `name = "n1"` and
    /// `initial_cluster = "n1=http://127.0.0.1:2380"`.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This member's name; must be one of the names in --initial-cluster. [default: default]
    #[arg(long)]
    pub name: Option<String>,
    /// Directory for this member's raft log, snapshots and key-value database; created if
    /// missing, reused on restart. [default: <name>.chorus]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// URL to serve the etcd v3 gRPC API on (plain http only for now).
    /// [default: http://127.0.0.1:2379]
    #[arg(long, value_name = "URL")]
    pub listen_client_urls: Option<String>,
    /// The client URL announced to the other members (used to forward writes to the leader).
    /// [default: the listen client URL]
    #[arg(long, value_name = "URL")]
    pub advertise_client_urls: Option<String>,
    /// URL to accept connections from the other members on. [default: http://127.0.0.1:2380]
    #[arg(long, value_name = "URL")]
    pub listen_peer_urls: Option<String>,
    /// Every member as name=peer-URL, comma-separated, the same on every member, e.g.
    /// n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2382,n3=http://127.0.0.1:2384.
    /// [default: <name>=<listen peer URL>, a cluster of one]
    #[arg(long, value_name = "NAME=URL,...")]
    pub initial_cluster: Option<String>,
    /// `new` to found the cluster with the members of --initial-cluster, `existing` to join a
    /// running cluster after `etcdctl member add` (the --initial-cluster then lists the
    /// cluster's members and this one). [default: new]
    #[arg(long, value_name = "new|existing")]
    pub initial_cluster_state: Option<String>,
    /// Milliseconds between the leader's heartbeats (one raft tick). [default: 100]
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval: Option<u64>,
    /// Milliseconds without a leader before a follower starts an election (randomized up to
    /// twice that); a multiple of the heartbeat interval. [default: 1000]
    #[arg(long, value_name = "MS")]
    pub election_timeout: Option<u64>,
    /// The largest client request accepted, in bytes. [default: 1572864 (1.5 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Compact the log every this many applied entries (the key-value database holds the
    /// state; a snapshot of it is written only when a follower needs one). [default: 100000,
    /// etcd's default]
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_count: Option<u64>,
    /// Entries a compaction keeps, so that a follower a little behind catches up from the log
    /// instead of a snapshot (etcd 3.5: --experimental-snapshot-catchup-entries). [default:
    /// 5000]
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_catchup_entries: Option<u64>,
    /// How often a caught-up watcher created with progress_notify gets a progress response,
    /// as Go writes durations (e.g. 500ms, 5s, 10m). [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub watch_progress_notify_interval: Option<String>,
    /// Past this database size (bytes) the leader refuses writes that grow it with
    /// "etcdserver: mvcc: database space exceeded" and raises the NOSPACE alarm (cleared with
    /// `etcdctl alarm disarm`); 0 means the default. [default: 2147483648 (2 GiB)]
    #[arg(long, value_name = "BYTES")]
    pub quota_backend_bytes: Option<u64>,
    /// URL of the admin HTTP port: Prometheus /metrics, /healthz, /readyz, a JSON API and the
    /// live dashboard at /. Also accepted as --listen-metrics-urls (etcd's name).
    /// [default: none, no admin port]
    #[arg(long, value_name = "URL", alias = "listen-metrics-urls")]
    #[serde(alias = "listen_metrics_urls")]
    pub listen_admin_urls: Option<String>,
    /// How long a serializable read stamped with chorus-min-revision waits for this member to
    /// apply that revision before it is refused (UNAVAILABLE, so the client tries another
    /// member), as Go writes durations. [default: 200ms]
    #[arg(long, value_name = "DURATION")]
    pub follower_read_wait: Option<String>,
    /// A member with more entries than this committed but not applied refuses stamped reads.
    /// [default: 1000]
    #[arg(long, value_name = "ENTRIES")]
    pub follower_read_max_lag_entries: Option<u64>,
    /// A follower that has not heard from a leader for this long refuses stamped reads (a
    /// leader is never stale), as Go writes durations. [default: the election timeout]
    #[arg(long, value_name = "DURATION")]
    pub follower_read_max_staleness: Option<String>,
    /// Log level or filter (error, warn, info, debug, trace, or tracing's filter syntax);
    /// the CHORUS_LOG environment variable wins when set. [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// The TTL of a client session opened without one (seconds); a session lives this long
    /// without writes or keep-alives. [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub session_ttl: Option<i64>,
    /// Client sessions open at once; more are refused until some close or expire.
    /// [default: 10000]
    #[arg(long, value_name = "SESSIONS")]
    pub max_sessions: Option<u32>,
    /// Serve linearizable reads on the leader from its lease (no heartbeat round per read),
    /// assuming no two members' monotonic clocks drift apart faster than
    /// --clock-drift-bound-ppm. Off: every batch of reads is confirmed by a heartbeat round.
    #[arg(long)]
    #[serde(default)]
    pub read_lease: bool,
    /// The largest rate, in parts per million, at which two members' clocks may drift apart;
    /// the leader's lease is shortened by it. Only with --read-lease. [default: 10000 (1%)]
    #[arg(long, value_name = "PPM")]
    pub clock_drift_bound_ppm: Option<u32>,
}

impl ServerArgs {
    /// The flags over the file's settings.
    fn merged(self) -> anyhow::Result<ServerArgs> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ServerArgs =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(ServerArgs {
            config: None,
            name: self.name.or(file.name),
            data_dir: self.data_dir.or(file.data_dir),
            listen_client_urls: self.listen_client_urls.or(file.listen_client_urls),
            advertise_client_urls: self.advertise_client_urls.or(file.advertise_client_urls),
            listen_peer_urls: self.listen_peer_urls.or(file.listen_peer_urls),
            initial_cluster: self.initial_cluster.or(file.initial_cluster),
            initial_cluster_state: self.initial_cluster_state.or(file.initial_cluster_state),
            heartbeat_interval: self.heartbeat_interval.or(file.heartbeat_interval),
            election_timeout: self.election_timeout.or(file.election_timeout),
            max_request_bytes: self.max_request_bytes.or(file.max_request_bytes),
            snapshot_count: self.snapshot_count.or(file.snapshot_count),
            snapshot_catchup_entries: self
                .snapshot_catchup_entries
                .or(file.snapshot_catchup_entries),
            watch_progress_notify_interval: self
                .watch_progress_notify_interval
                .or(file.watch_progress_notify_interval),
            quota_backend_bytes: self.quota_backend_bytes.or(file.quota_backend_bytes),
            listen_admin_urls: self.listen_admin_urls.or(file.listen_admin_urls),
            follower_read_wait: self.follower_read_wait.or(file.follower_read_wait),
            follower_read_max_lag_entries: self
                .follower_read_max_lag_entries
                .or(file.follower_read_max_lag_entries),
            follower_read_max_staleness: self
                .follower_read_max_staleness
                .or(file.follower_read_max_staleness),
            log_level: self.log_level.or(file.log_level),
            session_ttl: self.session_ttl.or(file.session_ttl),
            max_sessions: self.max_sessions.or(file.max_sessions),
            read_lease: self.read_lease || file.read_lease,
            clock_drift_bound_ppm: self.clock_drift_bound_ppm.or(file.clock_drift_bound_ppm),
        })
    }

    /// The node's configuration, with etcd's defaults where nothing was given.
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        let args = self.merged()?;
        let name = args.name.unwrap_or_else(|| "default".to_string());
        let data_dir = args
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{name}.chorus")));
        let mut config = ServerConfig::new(&name, data_dir);
        let first = |urls: String| {
            urls.split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        if let Some(urls) = args.listen_client_urls {
            config.listen_client_url = first(urls);
        }
        config.advertise_client_url = match args.advertise_client_urls {
            Some(urls) => first(urls),
            None => config.listen_client_url.clone(),
        };
        if let Some(urls) = args.listen_peer_urls {
            config.listen_peer_url = first(urls);
        }
        config.initial_cluster = match args.initial_cluster {
            Some(cluster) => parse_initial_cluster(&cluster)?,
            None => vec![(name.clone(), config.listen_peer_url.clone())],
        };
        if let Some(state) = args.initial_cluster_state {
            config.initial_cluster_state = state.parse()?;
        }
        if let Some(ms) = args.heartbeat_interval {
            anyhow::ensure!(ms >= 1, "--heartbeat-interval must be at least 1 ms");
            config.heartbeat_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = args.election_timeout {
            config.election_timeout = Duration::from_millis(ms);
        }
        anyhow::ensure!(
            config.election_timeout >= config.heartbeat_interval * 2,
            "--election-timeout must be at least twice --heartbeat-interval"
        );
        config.request_bytes_max = args.max_request_bytes.unwrap_or(REQUEST_BYTES_MAX_DEFAULT);
        if let Some(entries) = args.snapshot_count {
            config.snapshot_every_entries = entries;
        }
        if let Some(entries) = args.snapshot_catchup_entries {
            config.snapshot_catch_up_entries = entries;
        }
        if let Some(text) = args.watch_progress_notify_interval {
            let interval = parse_duration(&text)?;
            anyhow::ensure!(
                interval >= Duration::from_millis(1),
                "--watch-progress-notify-interval must be at least 1ms"
            );
            config.watch_progress_notify_interval = interval;
        }
        config.quota_backend_bytes = args.quota_backend_bytes.unwrap_or(0);
        if let Some(seconds) = args.session_ttl {
            anyhow::ensure!(seconds >= 1, "--session-ttl must be at least 1 second");
            config.sessions.ttl_default_seconds = seconds;
        }
        if let Some(sessions) = args.max_sessions {
            config.sessions.sessions_max = sessions;
        }
        let drift_ppm = args
            .clock_drift_bound_ppm
            .unwrap_or(CLOCK_DRIFT_BOUND_PPM_DEFAULT);
        anyhow::ensure!(
            drift_ppm < 1_000_000,
            "--clock-drift-bound-ppm must be below 1000000 (100%)"
        );
        config.read_lease = args.read_lease.then_some(drift_ppm);
        config.follower_reads = follower_read_config(
            config.election_timeout,
            args.follower_read_wait,
            args.follower_read_max_lag_entries,
            args.follower_read_max_staleness,
        )?;
        if let Some(urls) = args.listen_admin_urls {
            let url = first(urls);
            chorus_server::config::host_port(&url)?;
            config.listen_admin_url = Some(url);
        }
        Ok(config)
    }

    /// The log filter asked for by the flag or the file (the file read here too: logging
    /// starts before the configuration is checked; a bad file is reported by `into_config`).
    pub fn log_level(&self) -> Option<String> {
        if self.log_level.is_some() {
            return self.log_level.clone();
        }
        let text = std::fs::read_to_string(self.config.as_ref()?).ok()?;
        toml::from_str::<ServerArgs>(&text).ok()?.log_level
    }
}

/// The bounds of stamped follower reads: the flags over the defaults (the staleness bound
/// defaults to the election timeout).
fn follower_read_config(
    election_timeout: Duration,
    wait: Option<String>,
    lag_entries_max: Option<u64>,
    staleness_max: Option<String>,
) -> anyhow::Result<FollowerReadConfig> {
    let mut config = FollowerReadConfig::new(election_timeout);
    if let Some(text) = wait {
        config.wait = parse_duration(&text)?;
    }
    if let Some(entries) = lag_entries_max {
        config.lag_entries_max = entries;
    }
    if let Some(text) = staleness_max {
        config.staleness_max = parse_duration(&text)?;
    }
    Ok(config)
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    chorus_server::run(config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_toml_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chorus.toml");
        std::fs::write(
            &path,
            "name = \"n2\"\n\
             initial_cluster = \"n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2382\"\n\
             listen_peer_urls = \"http://127.0.0.1:2382\"\n\
             heartbeat_interval = 50\n\
             election_timeout = 700\n\
             initial_cluster_state = \"existing\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            election_timeout: Some(900),
            ..ServerArgs::default()
        };
        let config = args.into_config().unwrap();
        assert_eq!(config.name, "n2");
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.listen_peer_url, "http://127.0.0.1:2382");
        assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(config.election_timeout, Duration::from_millis(900));
        assert_eq!(config.election_timeout_ticks(), 18);
        assert_eq!(config.data_dir, PathBuf::from("n2.chorus"));
        assert_eq!(config.request_bytes_max, REQUEST_BYTES_MAX_DEFAULT);
        assert_eq!(
            config.watch_progress_notify_interval,
            Duration::from_secs(600)
        );
        assert_eq!(
            config.initial_cluster_state,
            chorus_server::config::ClusterState::Existing
        );
    }

    #[test]
    fn the_watch_progress_notify_interval_takes_go_durations() {
        let args = ServerArgs {
            watch_progress_notify_interval: Some("500ms".to_string()),
            ..ServerArgs::default()
        };
        let config = args.into_config().unwrap();
        assert_eq!(
            config.watch_progress_notify_interval,
            Duration::from_millis(500)
        );
        for bad in ["0s", "soon"] {
            let args = ServerArgs {
                watch_progress_notify_interval: Some(bad.to_string()),
                ..ServerArgs::default()
            };
            assert!(args.into_config().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_admin_port_takes_etcds_metrics_flag_name_and_the_log_level_comes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chorus.toml");
        std::fs::write(
            &path,
            "listen_metrics_urls = \"http://127.0.0.1:2381\"\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        assert_eq!(args.log_level().as_deref(), Some("debug"));
        let config = args.into_config().unwrap();
        assert_eq!(
            config.listen_admin_url.as_deref(),
            Some("http://127.0.0.1:2381")
        );
        let args = ServerArgs {
            listen_admin_urls: Some("https://x:1".to_string()),
            ..ServerArgs::default()
        };
        assert!(args.into_config().is_err());
    }

    #[test]
    fn unknown_settings_and_bad_timing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chorus.toml");
        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        assert!(args.into_config().is_err());
        let args = ServerArgs {
            heartbeat_interval: Some(100),
            election_timeout: Some(150),
            ..ServerArgs::default()
        };
        assert!(args.into_config().is_err());
        let args = ServerArgs {
            initial_cluster_state: Some("old".to_string()),
            ..ServerArgs::default()
        };
        assert!(args.into_config().is_err());
    }

    #[test]
    fn follower_read_bounds_default_to_200ms_1000_entries_and_the_election_timeout() {
        let args = ServerArgs {
            election_timeout: Some(700),
            ..ServerArgs::default()
        };
        let config = args.into_config().unwrap();
        assert_eq!(config.follower_reads.wait, Duration::from_millis(200));
        assert_eq!(config.follower_reads.lag_entries_max, 1000);
        assert_eq!(
            config.follower_reads.staleness_max,
            Duration::from_millis(700)
        );
        let args = ServerArgs {
            follower_read_wait: Some("1s".to_string()),
            follower_read_max_lag_entries: Some(5),
            follower_read_max_staleness: Some("250ms".to_string()),
            ..ServerArgs::default()
        };
        let config = args.into_config().unwrap();
        assert_eq!(config.follower_reads.wait, Duration::from_secs(1));
        assert_eq!(config.follower_reads.lag_entries_max, 5);
        assert_eq!(
            config.follower_reads.staleness_max,
            Duration::from_millis(250)
        );
        let args = ServerArgs {
            follower_read_wait: Some("soon".to_string()),
            ..ServerArgs::default()
        };
        assert!(args.into_config().is_err());
    }
}
