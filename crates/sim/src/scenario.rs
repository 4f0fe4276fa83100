//! Everything a run is made of, derived from its seed and printable: the cluster's shape, the
//! timing, the workload and the fault schedule. Two runs of one scenario are the same run.

use crate::faults::{FaultSchedule, FaultSwitch, FaultWeights, ScheduleConfig};
use crate::network::NetworkConfig;
use crate::prng::Prng;
use crate::time::{Nanos, Time, MICROSECOND, MILLISECOND, SECOND};
use crate::workload::{ClientMode, WorkloadConfig};
use std::fmt;

/// The clock drift bound leaders assume for lease reads: above the largest drift apart of two
/// simulated clocks (each drifts within ±300 ppm, so two within 600 ppm).
pub const READ_LEASE_DRIFT_BOUND_PPM: u32 = 1_000;

/// What the user chose; the rest comes from the seed.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    pub nodes: usize,
    pub duration_ns: Nanos,
    pub fault: Option<FaultSwitch>,
    /// How clients send writes: plain, in sessions, or in sessions with deduplication broken.
    pub clients: ClientMode,
    /// Leaders serve linearizable reads from their lease ([`READ_LEASE_DRIFT_BOUND_PPM`]).
    pub read_lease: bool,
    /// Followers hand key-value writes to the leader through raft and answer them when they
    /// apply them (as the server does); otherwise they answer "not leader".
    pub forward_writes: bool,
    /// Break the forwarded writes' bookkeeping on purpose: reported lost while they may still
    /// be applied; the linearizability checker must report it.
    pub break_forward_loss: bool,
    /// Clients think at most a millisecond between operations instead of being paced over the
    /// run: proposals pile up on the leader while its fsync runs, so its cycles carry new
    /// entries and commits together (the load the server's early answers are for).
    pub busy_clients: bool,
}

impl RunOptions {
    pub fn new(seed: u64, nodes: usize) -> RunOptions {
        RunOptions {
            seed,
            nodes,
            duration_ns: 30 * SECOND,
            fault: None,
            clients: ClientMode::Plain,
            read_lease: false,
            forward_writes: true,
            break_forward_loss: false,
            busy_clients: false,
        }
    }

    /// Whether leaders serve reads from their lease: asked for, or needed by the fault.
    pub fn leases_on(&self) -> bool {
        self.read_lease || self.fault == Some(FaultSwitch::LeaseBeyondDriftBound)
    }
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub options: RunOptions,
    /// Nominal tick interval of every replica's clock.
    pub tick_ns: Nanos,
    /// Per replica (position id - 1): how fast its clock runs, in parts per million off true.
    pub clock_drift_ppm: Vec<i64>,
    pub election_timeout_ticks: u32,
    pub heartbeat_interval_ticks: u32,
    pub snapshot_interval_entries: u64,
    /// Entries a compaction keeps before the applied index (`ReplicaConfig::log_entries_kept`).
    pub log_entries_kept: u64,
    /// The MVCC backends commit durably every this many writes.
    pub backend_durable_every: u64,
    /// WAL segment size of every replica: small, so segments roll over and compaction removes
    /// whole segments.
    pub segment_bytes_max: u64,
    pub fsync_min_ns: Nanos,
    pub fsync_max_ns: Nanos,
    /// Of crashes that hit a write in flight, the percentage that tear it (keep a prefix).
    pub torn_write_percent: u32,
    pub network: NetworkConfig,
    pub workload: WorkloadConfig,
    pub schedule: FaultSchedule,
    /// After the heal, a leader must commit a new entry within this many ticks.
    pub liveness_ticks_max: u64,
    /// After the workload stops, replicas get at most this long to catch up.
    pub drain_ns_max: Nanos,
    pub requests_waiting_max: usize,
    pub events_pending_max: usize,
}

/// Client operations per simulated second, over all clients (about 1,000 in 30 s).
pub const OPERATIONS_PER_SECOND: u64 = 33;

impl Scenario {
    /// The scenario of a seed: the shape is drawn from a stream of its own, so it does not move
    /// when the schedule's drawing changes.
    pub fn from_seed(options: RunOptions) -> Scenario {
        assert!(options.nodes >= 1, "a cluster needs at least one replica");
        assert!(options.duration_ns >= SECOND, "runs last at least a second");
        let mut prng = Prng::stream(options.seed, "scenario");
        let nodes = options.nodes;
        let clock_drift_ppm = (0..nodes)
            .map(|_| prng.range_inclusive(0, 600) as i64 - 300)
            .collect();
        let snapshot_interval_entries = if prng.chance_percent(30) {
            prng.range_inclusive(8, 40)
        } else {
            200
        };
        let clients = prng.range_inclusive(5, 8) as usize;
        let keys = prng.range_inclusive(3, 6) as usize;
        let operations = (OPERATIONS_PER_SECOND * options.duration_ns / SECOND).max(1);
        let mut workload = WorkloadConfig::paced(clients, keys, operations, options.duration_ns);
        workload.mode = options.clients;
        if options.busy_clients {
            workload.think_time_max_ns = MILLISECOND;
        }
        // Drawn from a stream of its own, so the rest of the shape does not move with it.
        let mut kept = Prng::stream(options.seed, "log-kept");
        let log_entries_kept = if kept.chance_percent(50) {
            kept.range_inclusive(1, 20)
        } else {
            0
        };
        let backend_durable_every = kept.range_inclusive(1, 40);
        let heal_at_ns = options.duration_ns * 2 / 3;
        // Drawn from a stream of its own, so the rest of the shape does not move with it.
        let segment_bytes_max =
            Prng::stream(options.seed, "wal-segments").range_inclusive(4 * 1024 + 32, 64 * 1024);
        let schedule_config = ScheduleConfig {
            nodes: nodes as u64,
            quiet_start_ns: SECOND.min(heal_at_ns),
            heal_at_ns,
            gap_min_ns: 200 * MILLISECOND,
            gap_max_ns: 1500 * MILLISECOND,
            boot_storm_percent: 50,
            // Lease reads assume clocks within their drift bound: the slowed clocks stay out
            // unless the run means to break that assumption.
            weights: match (options.leases_on(), options.fault) {
                (_, Some(FaultSwitch::LeaseBeyondDriftBound)) => FaultWeights::beyond_drift_bound(),
                (true, _) => FaultWeights::within_drift_bound(),
                (false, _) => FaultWeights::default(),
            },
        };
        let schedule =
            FaultSchedule::generate(&schedule_config, &mut Prng::stream(options.seed, "faults"));
        Scenario {
            options,
            tick_ns: 10 * MILLISECOND,
            clock_drift_ppm,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            snapshot_interval_entries,
            log_entries_kept,
            backend_durable_every,
            segment_bytes_max,
            fsync_min_ns: 100 * MICROSECOND,
            fsync_max_ns: 3 * MILLISECOND,
            torn_write_percent: 50,
            network: NetworkConfig::default(),
            workload,
            schedule,
            liveness_ticks_max: 300,
            drain_ns_max: 5 * SECOND,
            requests_waiting_max: 1024,
            events_pending_max: 1 << 20,
        }
    }

    /// A scenario without scheduled faults, for scenario tests that inject their own.
    pub fn calm(options: RunOptions) -> Scenario {
        let mut scenario = Scenario::from_seed(options);
        scenario.schedule = FaultSchedule::none(0);
        scenario
    }

    /// The tick interval of replica `node` in true nanoseconds, given a clock rate in percent.
    pub fn tick_interval_ns(&self, node: u64, rate_percent: u32) -> Nanos {
        let drift = self.clock_drift_ppm[(node - 1) as usize];
        let rate_ppm = (1_000_000 + drift) as u128 * u128::from(rate_percent) / 100;
        (u128::from(self.tick_ns) * 1_000_000 / rate_ppm.max(1)) as Nanos
    }

    pub fn voters(&self) -> Vec<u64> {
        (1..=self.options.nodes as u64).collect()
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.options;
        writeln!(
            f,
            "scenario: seed {} | {} replicas | {} s | raft fault switch: {}",
            options.seed,
            options.nodes,
            options.duration_ns / SECOND,
            options.fault.map_or("none", |s| s.name())
        )?;
        writeln!(
            f,
            "  ticks {} ms, election timeout {} ticks, heartbeat {} ticks, clock drift (ppm) {:?}",
            self.tick_ns / MILLISECOND,
            self.election_timeout_ticks,
            self.heartbeat_interval_ticks,
            self.clock_drift_ppm
        )?;
        writeln!(
            f,
            "  log compacted every {} entries keeping {}, backend durable every {} writes, WAL segments of {} bytes, fsync {}..{} µs (skewed short), power cut during the persist in {}% of crashes with one in flight",
            self.snapshot_interval_entries,
            self.log_entries_kept,
            self.backend_durable_every,
            self.segment_bytes_max,
            self.fsync_min_ns / MICROSECOND,
            self.fsync_max_ns / MICROSECOND,
            self.torn_write_percent
        )?;
        writeln!(
            f,
            "  workload: {} clients ({:?}), {} keys, think 0..{} ms, timeout {} ms",
            self.workload.clients,
            self.workload.mode,
            self.workload.keys,
            self.workload.think_time_max_ns / MILLISECOND,
            self.workload.request_timeout_ns / MILLISECOND
        )?;
        writeln!(
            f,
            "  faults: {} episodes, all healed at {}; liveness_ticks_max {}",
            self.schedule.episodes.len(),
            Time(self.schedule.heal_at),
            self.liveness_ticks_max
        )?;
        for episode in &self.schedule.episodes {
            writeln!(
                f,
                "    {} for {} ms: {}",
                Time(episode.start),
                episode.duration / MILLISECOND,
                episode.fault
            )?;
        }
        Ok(())
    }
}
