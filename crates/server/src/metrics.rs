//! The node's metrics and their Prometheus text rendering (exposition format 0.0.4), written
//! here rather than pulled from a crate: counters, gauges and duration histograms over atomics,
//! a few label sets behind a mutex, and one `render` that the admin port serves at `/metrics`.
//!
//! One node per process (the binary's model), so the metrics live in one process-wide
//! [`Metrics`] ([`metrics`]); writers are the group task (cycle timings, proposals, leader
//! changes), the gRPC layer (requests) and the admin poller (gauges read from the group).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Bucket upper bounds (seconds) of every duration histogram: 100 µs to 10 s.
pub const DURATION_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];
/// Leader changes remembered for `/api/status` and the dashboard's timeline.
pub const LEADER_HISTORY_MAX: usize = 32;
/// Distinct (method, code) pairs of client requests tracked; more share one "other" series, so
/// a client cannot grow the label set without bound.
pub const REQUEST_SERIES_MAX: usize = 256;
/// Peers whose traffic is tracked by member id; more (only a joining member hears from ids it
/// does not know yet) go untracked, so peers cannot grow the label set without bound.
pub const PEER_SERIES_MAX: usize = 64;
/// Heartbeats per peer remembered until their response, to time the round trip.
pub const HEARTBEATS_IN_FLIGHT_MAX: usize = 16;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn set_u64(&self, value: u64) {
        self.set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Durations in [`DURATION_BUCKETS_SECONDS`] buckets (non-cumulative counts; rendering sums).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS_SECONDS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in DURATION_BUCKETS_SECONDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{}le=\"{bound}\"}} {cumulative}",
                comma(labels)
            );
        }
        let count = self.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{}le=\"+Inf\"}} {count}",
            comma(labels)
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

fn comma(labels: &str) -> &'static str {
    if labels.is_empty() {
        ""
    } else {
        ","
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// A label value escaped as the text format wants (backslash, quote, newline).
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One leader change as this member saw it. `at` is monotonic (for "leader since");
/// `wall` is for display only.
#[derive(Clone, Debug)]
pub struct LeaderChange {
    pub at: Instant,
    pub wall: SystemTime,
    pub term: u64,
    /// `None`: the member lost track of any leader (an election is under way).
    pub leader: Option<u64>,
}

/// Per-(method, code) client request numbers.
#[derive(Debug, Default)]
pub struct RequestSeries {
    pub count: u64,
    pub latency: Histogram,
}

/// What the group task remembers between cycles for its observations (the last leader, the
/// snapshot index), and the leader history.
#[derive(Debug, Default)]
pub struct ObservedState {
    pub leader: Option<u64>,
    pub snapshot_index: u64,
    /// Whether the member was a (pre-)candidate after the last change of role.
    pub campaigning: bool,
    pub leader_history: VecDeque<LeaderChange>,
}

/// Every metric of the node.
#[derive(Debug, Default)]
pub struct Metrics {
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
    pub term: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub revision: Gauge,
    pub proposals_committed: Counter,
    pub proposals_failed: Counter,
    /// Writes that came while this member knew no leader and were held for one
    /// (`group/leaderless.rs`), and those of them that waited in vain ("no leader").
    pub writes_held_for_leader: Counter,
    pub writes_no_leader: Counter,
    /// Forwarded writes sent again on a new peer connection, having surely not arrived on the
    /// last one (`transport.rs`).
    pub forwarded_writes_resent: Counter,
    pub proposals_pending: Gauge,
    pub reads_pending: Gauge,
    /// The second half of a Ready cycle: WAL append + fsync + hard state, then the apply.
    pub persist_apply_duration: Histogram,
    /// The first half: taking raft's Ready and the messages that need no persist.
    pub ready_begin_duration: Histogram,
    /// Appends and syncs of the raft files (WAL, hard state, snapshots) through `RealFs`.
    pub disk_append_duration: Histogram,
    pub disk_sync_duration: Histogram,
    /// Commits of the key-value database (redb), buffered and durable apart.
    pub backend_commit_duration: Histogram,
    pub backend_durable_commit_duration: Histogram,
    pub snapshots_taken: Counter,
    /// Bytes written to and read from peer connections, every peer together.
    pub peer_bytes_sent: Counter,
    pub peer_bytes_received: Counter,
    pub snapshots_installed: Counter,
    /// Stamped follower reads admitted and refused (behind or lagging), `crate::follower_read`.
    pub follower_reads_admitted: Counter,
    pub follower_reads_refused: Counter,
    /// The cycles that took or installed a snapshot.
    pub snapshot_cycle_duration: Histogram,
    /// Writing a snapshot of our own on a blocking thread (sized, written, fsynced).
    pub snapshot_write_duration: Histogram,
    pub watch_streams: Gauge,
    pub watchers: Gauge,
    pub leases: Gauge,
    pub sessions: Gauge,
    pub db_size_bytes: Gauge,
    /// The backend quota in force (`--quota-backend-bytes`, 0 meaning etcd's 2 GiB).
    pub db_quota_bytes: Gauge,
    /// 1 once SIGTERM arrived (readiness fails from then on).
    pub shutting_down: Gauge,
    /// Per follower name (on the leader): its match index behind the leader's last index.
    pub follower_lag_entries: Mutex<BTreeMap<String, u64>>,
    pub requests: Mutex<BTreeMap<(String, String), RequestSeries>>,
    pub observed: Mutex<ObservedState>,
    /// Per peer address: whether the outgoing connection is up, and how often it was made.
    pub peers: Mutex<BTreeMap<String, PeerConnection>>,
    /// Per peer member id: bytes each way and heartbeat round trips.
    pub peer_traffic: Mutex<BTreeMap<u64, PeerTraffic>>,
}

/// The traffic with one peer (by member id).
#[derive(Debug, Default)]
pub struct PeerTraffic {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// From writing a frame with a heartbeat to this peer to reading the peer's response to
    /// that heartbeat (same term and sequence): the network both ways, plus the time the peer
    /// takes to answer. Measured where heartbeats are sent, i.e. on the leader.
    pub round_trip: Histogram,
    /// Heartbeats written and not answered yet: (term, sequence, when written), oldest first.
    heartbeats: VecDeque<(u64, u64, Instant)>,
}

/// The outgoing connection to one peer.
#[derive(Debug, Default)]
pub struct PeerConnection {
    pub connected: bool,
    pub connects: u64,
}

/// Locks a metrics mutex; a panic elsewhere while holding it leaves numbers, not broken
/// invariants, so the poisoned data is used as is.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Feeds the disk histograms from `RealFs` (installed once by the node at start).
pub fn observe_disk(kind: chorus_storage::IoKind, duration: Duration) {
    match kind {
        chorus_storage::IoKind::Append => metrics().disk_append_duration.observe(duration),
        chorus_storage::IoKind::Sync => metrics().disk_sync_duration.observe(duration),
    }
}

/// Feeds the backend commit histograms from redb (installed once by the node at start).
pub fn observe_backend_commit(durable: bool, duration: Duration) {
    if durable {
        metrics().backend_durable_commit_duration.observe(duration);
    } else {
        metrics().backend_commit_duration.observe(duration);
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Counts one client request of `method` that ended with gRPC `code` after `latency`.
    pub fn observe_request(&self, method: &str, code: &str, latency: Duration) {
        let mut requests = lock(&self.requests);
        let mut key = (method.to_string(), code.to_string());
        if !requests.contains_key(&key) && requests.len() >= REQUEST_SERIES_MAX {
            key = ("other".to_string(), "other".to_string());
        }
        let series = requests.entry(key).or_default();
        series.count += 1;
        series.latency.observe(latency);
    }

    /// The outgoing connection to the peer at `address` came up (`true`) or was lost; logs a
    /// reconnection (the first connection is expected and logged at debug level).
    pub fn observe_peer_connection(&self, address: &str, connected: bool) {
        let mut peers = lock(&self.peers);
        let peer = peers.entry(address.to_string()).or_default();
        peer.connected = connected;
        if connected {
            peer.connects += 1;
            if peer.connects > 1 {
                tracing::info!("peer {address}: reconnected");
            } else {
                tracing::debug!("peer {address}: connected");
            }
        }
    }

    /// Runs `update` on the traffic of peer `id`, unless [`PEER_SERIES_MAX`] other peers are
    /// tracked already.
    fn with_peer(&self, id: u64, update: impl FnOnce(&mut PeerTraffic)) {
        let mut traffic = lock(&self.peer_traffic);
        if !traffic.contains_key(&id) && traffic.len() >= PEER_SERIES_MAX {
            return;
        }
        update(traffic.entry(id).or_default());
    }

    /// `bytes` were written to the connection to peer `id`.
    pub fn observe_peer_sent(&self, id: u64, bytes: u64) {
        self.with_peer(id, |peer| peer.sent_bytes += bytes);
    }

    /// `bytes` were read from a connection of peer `id`.
    pub fn observe_peer_received(&self, id: u64, bytes: u64) {
        self.with_peer(id, |peer| peer.received_bytes += bytes);
    }

    /// A heartbeat of `term` numbered `sequence` was written to peer `id` at `at`.
    pub fn observe_heartbeat_sent(&self, id: u64, term: u64, sequence: u64, at: Instant) {
        self.with_peer(id, |peer| {
            if peer.heartbeats.len() >= HEARTBEATS_IN_FLIGHT_MAX {
                peer.heartbeats.pop_front();
            }
            peer.heartbeats.push_back((term, sequence, at));
        });
    }

    /// Peer `id` answered the heartbeat of `term` numbered `sequence` at `at`: observes the
    /// round trip if that heartbeat is remembered, and forgets it and every older one (their
    /// answers were lost or will come late).
    pub fn observe_heartbeat_response(&self, id: u64, term: u64, sequence: u64, at: Instant) {
        let mut traffic = lock(&self.peer_traffic);
        let Some(peer) = traffic.get_mut(&id) else {
            return;
        };
        let Some(position) = peer
            .heartbeats
            .iter()
            .position(|(sent_term, sent_sequence, _)| {
                (*sent_term, *sent_sequence) == (term, sequence)
            })
        else {
            return;
        };
        let (_, _, sent) = peer.heartbeats[position];
        peer.round_trip.observe(at.saturating_duration_since(sent));
        peer.heartbeats.drain(..=position);
    }

    /// Forgets the traffic of peers not in `ids` (members removed from the cluster).
    pub fn retain_peers(&self, ids: &[u64]) {
        lock(&self.peer_traffic).retain(|id, _| ids.contains(id));
    }

    /// Every client request counted so far.
    pub fn requests_total(&self) -> u64 {
        lock(&self.requests)
            .values()
            .map(|series| series.count)
            .sum()
    }

    /// Records that the member now knows `leader` (or none) in `term`; returns whether it
    /// differs from the last one known. A change to a new leader counts in
    /// `leader_changes_total`.
    pub fn observe_leader(&self, term: u64, leader: Option<u64>) -> bool {
        let mut observed = lock(&self.observed);
        if observed.leader == leader {
            return false;
        }
        observed.leader = leader;
        if leader.is_some() {
            self.leader_changes.add(1);
        }
        if observed.leader_history.len() >= LEADER_HISTORY_MAX {
            observed.leader_history.pop_front();
        }
        observed.leader_history.push_back(LeaderChange {
            at: Instant::now(),
            wall: SystemTime::now(),
            term,
            leader,
        });
        true
    }

    /// The metrics in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauges: [(&str, &str, &Gauge); 15] = [
            (
                "chorus_shutting_down",
                "1 once the member is stopping (handing over, draining)",
                &self.shutting_down,
            ),
            (
                "chorus_has_leader",
                "1 if this member knows a leader",
                &self.has_leader,
            ),
            (
                "chorus_is_leader",
                "1 if this member is the leader",
                &self.is_leader,
            ),
            ("chorus_term", "the raft term", &self.term),
            (
                "chorus_commit_index",
                "the raft commit index",
                &self.commit_index,
            ),
            (
                "chorus_applied_index",
                "the last entry applied",
                &self.applied_index,
            ),
            (
                "chorus_revision",
                "the store's current revision",
                &self.revision,
            ),
            (
                "chorus_proposals_pending",
                "proposals waiting to apply",
                &self.proposals_pending,
            ),
            (
                "chorus_reads_pending",
                "linearizable reads waiting for ReadIndex",
                &self.reads_pending,
            ),
            (
                "chorus_watch_streams",
                "watch streams with a watcher",
                &self.watch_streams,
            ),
            (
                "chorus_watchers",
                "watchers over every stream",
                &self.watchers,
            ),
            (
                "chorus_leases",
                "leases granted and not revoked",
                &self.leases,
            ),
            (
                "chorus_sessions",
                "client sessions open (the idempotent receiver's table)",
                &self.sessions,
            ),
            (
                "chorus_db_size_bytes",
                "the key-value database file's size",
                &self.db_size_bytes,
            ),
            (
                "chorus_db_quota_bytes",
                "the backend quota in force (past it writes fail with NOSPACE)",
                &self.db_quota_bytes,
            ),
        ];
        for (name, help, gauge) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {}",
                gauge.get()
            );
        }
        let counters: [(&str, &str, &Counter); 12] = [
            (
                "chorus_writes_held_for_leader_total",
                "writes held because this member knew no leader when they came",
                &self.writes_held_for_leader,
            ),
            (
                "chorus_writes_no_leader_total",
                "held writes that failed with no leader after the wait",
                &self.writes_no_leader,
            ),
            (
                "chorus_forwarded_writes_resent_total",
                "forwarded writes sent again on a new peer connection (they surely missed the last)",
                &self.forwarded_writes_resent,
            ),
            (
                "chorus_peer_sent_bytes_total",
                "bytes written to peer connections (every peer)",
                &self.peer_bytes_sent,
            ),
            (
                "chorus_peer_received_bytes_total",
                "bytes read from peer connections (every peer)",
                &self.peer_bytes_received,
            ),
            (
                "chorus_leader_changes_total",
                "leaders this member has seen take over",
                &self.leader_changes,
            ),
            (
                "chorus_proposals_committed_total",
                "proposals of this member applied",
                &self.proposals_committed,
            ),
            (
                "chorus_proposals_failed_total",
                "proposals of this member lost to a leader change",
                &self.proposals_failed,
            ),
            (
                "chorus_snapshots_taken_total",
                "snapshots of the state machine taken",
                &self.snapshots_taken,
            ),
            (
                "chorus_snapshots_installed_total",
                "snapshots received from the leader and installed",
                &self.snapshots_installed,
            ),
            (
                "chorus_follower_reads_admitted_total",
                "reads stamped with chorus-min-revision this member served",
                &self.follower_reads_admitted,
            ),
            (
                "chorus_follower_reads_refused_total",
                "reads stamped with chorus-min-revision this member refused (behind or lagging)",
                &self.follower_reads_refused,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let histograms: [(&str, &str, &Histogram); 8] = [
            (
                "chorus_backend_commit_duration_seconds",
                "buffered (not fsynced) commits of the key-value database",
                &self.backend_commit_duration,
            ),
            (
                "chorus_backend_durable_commit_duration_seconds",
                "durable (fsynced) commits of the key-value database",
                &self.backend_durable_commit_duration,
            ),
            (
                "chorus_disk_append_duration_seconds",
                "appends to the raft files (WAL, hard state, snapshots)",
                &self.disk_append_duration,
            ),
            (
                "chorus_disk_fsync_duration_seconds",
                "fdatasync and directory fsync of the raft files",
                &self.disk_sync_duration,
            ),
            (
                "chorus_persist_apply_duration_seconds",
                "a Ready cycle's WAL append, fsync and apply",
                &self.persist_apply_duration,
            ),
            (
                "chorus_ready_begin_duration_seconds",
                "taking raft's Ready before the persist",
                &self.ready_begin_duration,
            ),
            (
                "chorus_snapshot_cycle_duration_seconds",
                "the Ready cycles that took or installed a snapshot",
                &self.snapshot_cycle_duration,
            ),
            (
                "chorus_snapshot_write_duration_seconds",
                "writing a snapshot of our own, off the group task",
                &self.snapshot_write_duration,
            ),
        ];
        for (name, help, histogram) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} histogram");
            histogram.render(&mut out, name, "");
        }
        let name = "chorus_follower_lag_entries";
        let _ = writeln!(
            out,
            "# HELP {name} on the leader, entries each follower's log is behind.\n# TYPE {name} gauge"
        );
        for (follower, lag) in lock(&self.follower_lag_entries).iter() {
            let _ = writeln!(
                out,
                "{name}{{follower=\"{}\"}} {lag}",
                escape_label(follower)
            );
        }
        let peers = lock(&self.peers);
        for (name, help) in [
            (
                "chorus_peer_connected",
                "1 while the connection to the peer is up",
            ),
            ("chorus_peer_connects_total", "connections made to the peer"),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
            for (peer, connection) in peers.iter() {
                let value = if kind == "counter" {
                    connection.connects
                } else {
                    u64::from(connection.connected)
                };
                let _ = writeln!(out, "{name}{{peer=\"{}\"}} {value}", escape_label(peer));
            }
        }
        drop(peers);
        self.render_peer_traffic(&mut out);
        let requests = lock(&self.requests);
        let name = "chorus_grpc_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} client gRPC requests by method and status code.\n# TYPE {name} counter"
        );
        for ((method, code), series) in requests.iter() {
            let _ = writeln!(
                out,
                "{name}{{method=\"{}\",code=\"{}\"}} {}",
                escape_label(method),
                escape_label(code),
                series.count
            );
        }
        let name = "chorus_grpc_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} client gRPC request latency until the response starts.\n# TYPE {name} histogram"
        );
        for ((method, code), series) in requests.iter() {
            let labels = format!(
                "method=\"{}\",code=\"{}\"",
                escape_label(method),
                escape_label(code)
            );
            series.latency.render(&mut out, name, &labels);
        }
        out
    }

    /// The per-peer series, labelled `peer="<member id in hex>"` as etcd's `member list`
    /// prints ids.
    fn render_peer_traffic(&self, out: &mut String) {
        let traffic = lock(&self.peer_traffic);
        for (name, help, value) in [
            (
                "chorus_network_peer_sent_bytes_total",
                "bytes written to the connection to each peer",
                (|peer: &PeerTraffic| peer.sent_bytes) as fn(&PeerTraffic) -> u64,
            ),
            (
                "chorus_network_peer_received_bytes_total",
                "bytes read from the connections of each peer",
                |peer: &PeerTraffic| peer.received_bytes,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter");
            for (id, peer) in traffic.iter() {
                let _ = writeln!(out, "{name}{{peer=\"{id:x}\"}} {}", value(peer));
            }
        }
        let name = "chorus_network_peer_round_trip_time_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} on the leader, from writing a heartbeat to a peer to reading its \
             response.\n# TYPE {name} histogram"
        );
        for (id, peer) in traffic.iter() {
            peer.round_trip
                .render(out, name, &format!("peer=\"{id:x}\""));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_a_sum_and_a_count() {
        let metrics = Metrics::default();
        metrics
            .persist_apply_duration
            .observe(Duration::from_micros(50));
        metrics
            .persist_apply_duration
            .observe(Duration::from_millis(3));
        metrics
            .persist_apply_duration
            .observe(Duration::from_secs(20));
        let text = metrics.render();
        let name = "chorus_persist_apply_duration_seconds";
        assert!(text.contains(&format!("# TYPE {name} histogram")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.0001\"}} 1\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.005\"}} 2\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"10\"}} 2\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 3\n")));
        assert!(text.contains(&format!("{name}_count 3\n")));
        assert!(text.contains(&format!("{name}_sum 20.00305\n")));
    }

    #[test]
    fn gauges_counters_and_labelled_series_render_with_escaped_labels() {
        let metrics = Metrics::default();
        metrics.has_leader.set(1);
        metrics.term.set_u64(7);
        metrics.leader_changes.add(2);
        lock(&metrics.follower_lag_entries).insert("n\"2".to_string(), 5);
        metrics.observe_request("/etcdserverpb.KV/Put", "OK", Duration::from_millis(2));
        metrics.observe_request("/etcdserverpb.KV/Put", "OK", Duration::from_millis(4));
        let text = metrics.render();
        assert!(text.contains("\nchorus_has_leader 1\n"));
        assert!(text.contains("\nchorus_term 7\n"));
        assert!(text.contains("\nchorus_leader_changes_total 2\n"));
        assert!(text.contains("chorus_follower_lag_entries{follower=\"n\\\"2\"} 5\n"));
        assert!(text.contains(
            "chorus_grpc_requests_total{method=\"/etcdserverpb.KV/Put\",code=\"OK\"} 2\n"
        ));
        assert!(text.contains(
            "chorus_grpc_request_duration_seconds_count{method=\"/etcdserverpb.KV/Put\",code=\"OK\"} 2\n"
        ));
        assert_eq!(metrics.requests_total(), 2);
        // Every sample line is `name{labels} value` or `name value`, and each family has a TYPE.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
        }
    }

    #[test]
    fn peer_traffic_renders_per_peer_bytes_and_heartbeat_round_trips() {
        let metrics = Metrics::default();
        metrics.db_quota_bytes.set_u64(1 << 31);
        metrics.observe_peer_sent(0xab, 100);
        metrics.observe_peer_sent(0xab, 20);
        metrics.observe_peer_received(0xab, 7);
        metrics.observe_peer_received(0x1c, 3);
        let start = Instant::now();
        metrics.observe_heartbeat_sent(0xab, 2, 1, start);
        metrics.observe_heartbeat_sent(0xab, 2, 2, start + Duration::from_millis(10));
        metrics.observe_heartbeat_sent(0xab, 2, 3, start + Duration::from_millis(20));
        // Another term's sequence 2 does not match; the answer to 2 drops 1 too.
        metrics.observe_heartbeat_response(0xab, 3, 2, start + Duration::from_millis(11));
        metrics.observe_heartbeat_response(0xab, 2, 2, start + Duration::from_millis(12));
        metrics.observe_heartbeat_response(0xab, 2, 1, start + Duration::from_millis(13));
        let text = metrics.render();
        assert!(text.contains("\nchorus_db_quota_bytes 2147483648\n"));
        assert!(text.contains("# TYPE chorus_network_peer_sent_bytes_total counter\n"));
        assert!(text.contains("chorus_network_peer_sent_bytes_total{peer=\"ab\"} 120\n"));
        assert!(text.contains("chorus_network_peer_received_bytes_total{peer=\"ab\"} 7\n"));
        assert!(text.contains("chorus_network_peer_received_bytes_total{peer=\"1c\"} 3\n"));
        let name = "chorus_network_peer_round_trip_time_seconds";
        assert!(text.contains(&format!("# TYPE {name} histogram\n")));
        assert!(text.contains(&format!("{name}_bucket{{peer=\"ab\",le=\"0.001\"}} 0\n")));
        assert!(text.contains(&format!("{name}_bucket{{peer=\"ab\",le=\"0.0025\"}} 1\n")));
        assert!(text.contains(&format!("{name}_count{{peer=\"ab\"}} 1\n")));
        assert!(text.contains(&format!("{name}_count{{peer=\"1c\"}} 0\n")));
        assert_eq!(lock(&metrics.peer_traffic)[&0xab].heartbeats.len(), 1);
        metrics.retain_peers(&[0x1c]);
        assert!(!metrics.render().contains("peer=\"ab\""));
    }

    #[test]
    fn peer_series_are_bounded() {
        let metrics = Metrics::default();
        for id in 0..PEER_SERIES_MAX as u64 + 10 {
            metrics.observe_peer_sent(id, 1);
            for sequence in 0..HEARTBEATS_IN_FLIGHT_MAX as u64 + 5 {
                metrics.observe_heartbeat_sent(id, 1, sequence, Instant::now());
            }
        }
        let traffic = lock(&metrics.peer_traffic);
        assert_eq!(traffic.len(), PEER_SERIES_MAX);
        assert!(traffic
            .values()
            .all(|peer| peer.heartbeats.len() == HEARTBEATS_IN_FLIGHT_MAX));
    }

    #[test]
    fn request_series_are_bounded() {
        let metrics = Metrics::default();
        for n in 0..REQUEST_SERIES_MAX + 10 {
            metrics.observe_request(&format!("/m{n}"), "OK", Duration::ZERO);
        }
        let requests = lock(&metrics.requests);
        assert_eq!(requests.len(), REQUEST_SERIES_MAX + 1);
        assert_eq!(
            requests[&("other".to_string(), "other".to_string())].count,
            10
        );
    }

    #[test]
    fn leader_changes_are_counted_once_each_and_the_history_is_bounded() {
        let metrics = Metrics::default();
        assert!(metrics.observe_leader(1, Some(1)));
        assert!(!metrics.observe_leader(1, Some(1)));
        assert!(metrics.observe_leader(2, None));
        assert!(metrics.observe_leader(3, Some(2)));
        assert_eq!(metrics.leader_changes.get(), 2);
        for term in 4..100 {
            metrics.observe_leader(term, Some(term % 2 + 1));
        }
        assert_eq!(
            lock(&metrics.observed).leader_history.len(),
            LEADER_HISTORY_MAX
        );
    }
}
