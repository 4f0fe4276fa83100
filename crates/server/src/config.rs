//! How a node is configured: its name, directories, URLs, the initial cluster and its timing.

use chorus_raft::NodeId;
use std::path::PathBuf;
use std::time::Duration;

/// etcd's default request size limit: 1.5 MiB.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 1536 * 1024;

/// etcd's `--initial-cluster-state`: whether this member founds a cluster or joins one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    /// Every member of `--initial-cluster` starts together; ids are hashes of the names.
    #[default]
    New,
    /// This member was added with `MemberAdd` (`etcdctl member add`) and joins the running
    /// cluster: its id is the hash of its peer URL ([`peer_member_id`]), it starts empty and
    /// learns the cluster (its id, members and data) from the leader's snapshot.
    Existing,
}

impl std::str::FromStr for ClusterState {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<ClusterState, ConfigError> {
        match text {
            "new" => Ok(ClusterState::New),
            "existing" => Ok(ClusterState::Existing),
            other => Err(ConfigError(format!(
                "initial cluster state {other:?} is neither \"new\" nor \"existing\""
            ))),
        }
    }
}

/// What one node needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This member's name; must appear in `initial_cluster`.
    pub name: String,
    /// Where the raft log, hard state, snapshots and the key-value database live.
    pub data_dir: PathBuf,
    /// Where clients connect (gRPC), e.g. `http://127.0.0.1:2379`.
    pub listen_client_url: String,
    /// The client URL other members and clients are told about; defaults to the listen URL.
    pub advertise_client_url: String,
    /// Where peers connect, e.g. `http://127.0.0.1:2380`.
    pub listen_peer_url: String,
    /// Every member's name and peer URL, the same list on every member.
    pub initial_cluster: Vec<(String, String)>,
    /// Whether this member founds the cluster with the others of `initial_cluster` or joins a
    /// running one.
    pub initial_cluster_state: ClusterState,
    /// One raft tick; the leader sends heartbeats every tick.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for this long (randomized by raft up to twice it)
    /// starts an election.
    pub election_timeout: Duration,
    /// The largest client request accepted (etcd's `--max-request-bytes`).
    pub request_bytes_max: usize,
    /// How long a client request may wait for its answer before failing with a timeout.
    pub request_timeout: Duration,
    /// Compact the log every this many applied entries (the state stays in the backend; a
    /// snapshot of it is written only when a follower needs one)...
    pub snapshot_every_entries: u64,
    /// ... keeping this many entries before the applied index, so that a follower a little
    /// behind catches up from the log (etcd's `SnapshotCatchUpEntries`: 5,000).
    pub snapshot_catch_up_entries: u64,
    /// How often a caught-up watcher created with `progress_notify` gets a progress response
    /// (etcd's default: 10 minutes).
    pub watch_progress_notify_interval: Duration,
    /// etcd's `--quota-backend-bytes`: past this database size the leader refuses writes that
    /// grow it and raises NOSPACE; 0 means the default (2 GiB).
    pub quota_backend_bytes: u64,
    /// Where the admin HTTP port (metrics, health, dashboard) listens; none when `None`.
    pub listen_admin_url: Option<String>,
    /// On SIGTERM: how long requests in flight may take to finish after a leader handed over
    /// (watch streams are cut after it).
    pub shutdown_drain_timeout: Duration,
    /// Leader-lease reads: `Some(drift bound in parts per million)` serves linearizable reads on
    /// the leader from its lease instead of a heartbeat round (`--read-lease`); `None` (the
    /// default) confirms every batch of reads with a heartbeat round (ReadIndex).
    pub read_lease: Option<u32>,
    /// The client sessions: default TTL and the most open at once (used while leading).
    pub sessions: crate::grpc::SessionSettings,
    /// The bounds of version-stamped follower reads (`--follower-read-*`).
    pub follower_reads: crate::follower_read::FollowerReadConfig,
}

impl ServerConfig {
    /// A configuration with etcd's default timing (100 ms heartbeat, 1 s election timeout).
    pub fn new(name: &str, data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            name: name.to_string(),
            data_dir,
            listen_client_url: "http://127.0.0.1:2379".to_string(),
            advertise_client_url: "http://127.0.0.1:2379".to_string(),
            listen_peer_url: "http://127.0.0.1:2380".to_string(),
            initial_cluster: vec![(name.to_string(), "http://127.0.0.1:2380".to_string())],
            initial_cluster_state: ClusterState::New,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            request_timeout: Duration::from_secs(7),
            snapshot_every_entries: 100_000,
            snapshot_catch_up_entries: 5_000,
            watch_progress_notify_interval: Duration::from_secs(600),
            quota_backend_bytes: 0,
            listen_admin_url: None,
            shutdown_drain_timeout: Duration::from_secs(3),
            sessions: crate::grpc::SessionSettings::default(),
            read_lease: None,
            follower_reads: crate::follower_read::FollowerReadConfig::new(Duration::from_millis(
                1000,
            )),
        }
    }

    /// Raft ticks (heartbeat intervals) in one second, at least 1: lease TTLs are counted in
    /// them. Rounded up, so that a lease never expires before its TTL (a heartbeat that does
    /// not divide a second makes leases last a little longer instead).
    pub fn ticks_per_second(&self) -> u64 {
        let heartbeat_ms = self.heartbeat_interval.as_millis().max(1);
        u64::try_from(1000_u128.div_ceil(heartbeat_ms))
            .unwrap_or(1)
            .max(1)
    }

    /// The election timeout in raft ticks (at least 2: more than one heartbeat).
    pub fn election_timeout_ticks(&self) -> u32 {
        let heartbeat_ms = self.heartbeat_interval.as_millis().max(1);
        let ticks = self.election_timeout.as_millis() / heartbeat_ms;
        u32::try_from(ticks).unwrap_or(u32::MAX).max(2)
    }
}

/// A parse or validation error in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Parses etcd's `--initial-cluster` form: `n1=http://127.0.0.1:2380,n2=http://...`.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut members = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let Some((name, url)) = part.split_once('=') else {
            return Err(ConfigError(format!(
                "initial cluster entry {part:?} is not name=url"
            )));
        };
        host_port(url)?;
        if members
            .iter()
            .any(|(other, _): &(String, String)| other == name)
        {
            return Err(ConfigError(format!("member {name:?} is listed twice")));
        }
        members.push((name.to_string(), url.to_string()));
    }
    if members.is_empty() {
        return Err(ConfigError("the initial cluster is empty".to_string()));
    }
    Ok(members)
}

/// `host:port` of an `http://host:port` URL (the only scheme served for now).
pub fn host_port(url: &str) -> Result<String, ConfigError> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(ConfigError(format!(
            "URL {url:?} must start with http:// (TLS is not supported yet)"
        )));
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(rest.to_string())
        }
        _ => Err(ConfigError(format!("URL {url:?} has no host:port"))),
    }
}

/// Parses a duration as Go's `time.ParseDuration` writes them (etcd's flags): one or more
/// numbers, each with a unit of `ns`, `us`, `ms`, `s`, `m` or `h`, e.g. `500ms`, `5s`, `10m`,
/// `1m30s`, `1.5s`. At most 64 characters; the total must fit in a `Duration`.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    const TEXT_BYTES_MAX: usize = 64;
    let error = || {
        ConfigError(format!(
            "duration {text:?} is not like 500ms, 5s, 10m or 1m30s"
        ))
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() || text_trimmed.len() > TEXT_BYTES_MAX {
        return Err(error());
    }
    let mut rest = text_trimmed;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(error)?;
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_nanos: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(error()),
        };
        let value: f64 = number.parse().map_err(|_| error())?;
        let nanos = value * unit_nanos;
        if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
            return Err(error());
        }
        total_nanos += nanos.round() as u128;
        rest = after;
    }
    let total_nanos = u64::try_from(total_nanos).map_err(|_| error())?;
    Ok(Duration::from_nanos(total_nanos))
}

/// FNV-1a, 64 bits: stable ids from names, the same on every member and every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A member's id: a hash of its name (never 0, which raft reserves).
pub fn member_id(name: &str) -> NodeId {
    NodeId(fnv1a(name.as_bytes()).max(1))
}

/// The id of a member added at runtime (`MemberAdd`): a hash of its peer URLs in sorted order
/// (etcd's request carries no name), never 0. The joining member computes the same id from
/// its own entry of `--initial-cluster`. Ids of founding members hash names, and this hashes
/// a different text (`peer:` and the URLs), so the two kinds do not collide by construction
/// of their inputs.
pub fn peer_member_id(peer_urls: &[String]) -> NodeId {
    let mut urls: Vec<&str> = peer_urls
        .iter()
        .map(|url| url.trim_end_matches('/'))
        .collect();
    urls.sort_unstable();
    urls.dedup();
    NodeId(fnv1a(format!("peer:{}", urls.join(",")).as_bytes()).max(1))
}

/// This member's id: the hash of its name when founding the cluster, of its peer URL when it
/// joins one ([`ClusterState`]).
pub fn local_member_id(config: &ServerConfig) -> NodeId {
    match config.initial_cluster_state {
        ClusterState::New => member_id(&config.name),
        ClusterState::Existing => {
            let own: Vec<String> = config
                .initial_cluster
                .iter()
                .filter(|(name, _)| *name == config.name)
                .map(|(_, url)| url.clone())
                .collect();
            peer_member_id(&own)
        }
    }
}

/// The cluster's id: a hash of the initial cluster, in name order.
pub fn cluster_id(initial_cluster: &[(String, String)]) -> u64 {
    let mut members: Vec<String> = initial_cluster
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect();
    members.sort();
    fnv1a(members.join(",").as_bytes()).max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_refuses_bad_entries() {
        let members =
            parse_initial_cluster("n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381").unwrap();
        assert_eq!(members.len(), 2);
        assert!(parse_initial_cluster("n1").is_err());
        assert!(parse_initial_cluster("n1=https://a:1").is_err());
        assert!(parse_initial_cluster("n1=http://a:1,n1=http://a:2").is_err());
        assert!(parse_initial_cluster("").is_err());
    }

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "5", "s", "5x", "-1s", "1..5s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration(&"1".repeat(100)).is_err());
    }

    #[test]
    fn lease_seconds_are_counted_in_heartbeats_never_shorter_than_a_second() {
        let mut config = ServerConfig::new("n1", PathBuf::from("d"));
        assert_eq!(config.ticks_per_second(), 10);
        config.heartbeat_interval = Duration::from_millis(50);
        assert_eq!(config.ticks_per_second(), 20);
        config.heartbeat_interval = Duration::from_millis(300);
        assert_eq!(config.ticks_per_second(), 4);
        config.heartbeat_interval = Duration::from_millis(1500);
        assert_eq!(config.ticks_per_second(), 1);
    }

    #[test]
    fn ids_do_not_depend_on_order() {
        let a = vec![
            ("a".to_string(), "http://h:1".to_string()),
            ("b".to_string(), "http://h:2".to_string()),
        ];
        let b = vec![a[1].clone(), a[0].clone()];
        assert_eq!(cluster_id(&a), cluster_id(&b));
        assert_ne!(member_id("a"), member_id("b"));
    }

    #[test]
    fn added_members_are_named_by_their_peer_urls() {
        let url = |text: &str| text.to_string();
        let one = peer_member_id(&[url("http://127.0.0.1:2390")]);
        assert_eq!(one, peer_member_id(&[url("http://127.0.0.1:2390/")]));
        assert_ne!(one, peer_member_id(&[url("http://127.0.0.1:2391")]));
        assert_eq!(
            peer_member_id(&[url("http://a:1"), url("http://b:2")]),
            peer_member_id(&[url("http://b:2"), url("http://a:1")])
        );
        assert_ne!(one, member_id("http://127.0.0.1:2390"));
        assert_ne!(one.0, 0);

        let mut config = ServerConfig::new("n4", PathBuf::from("n4"));
        config.initial_cluster = vec![
            (url("n1"), url("http://127.0.0.1:2380")),
            (url("n4"), url("http://127.0.0.1:2390")),
        ];
        assert_eq!(local_member_id(&config), member_id("n4"));
        config.initial_cluster_state = "existing".parse().unwrap();
        assert_eq!(local_member_id(&config), one);
        assert!("old".parse::<ClusterState>().is_err());
    }
}
