//! The command line: what every workload shares, and one subcommand per workload.

use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

/// Load an etcd v3 cluster (etcd or chorus) and report throughput and latency percentiles.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Endpoints as host:port, comma-separated; connections go round-robin over them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379,127.0.0.1:2381,127.0.0.1:2383"
    )]
    pub endpoints: Vec<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// gRPC connections (HTTP/2) the clients share; client i uses connection i mod conns.
    #[arg(long, default_value_t = 4)]
    pub conns: usize,
    /// The generator's I/O threads, each with connections i mod threads and their clients
    /// (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Key size in bytes (a one-letter prefix and a zero-padded number).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys written and read.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring; operations finished in it are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// A per-request timeout; a request that takes longer counts as an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Seed for the clients' key choices (each client derives its own stream).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A label copied into the report (e.g. "etcd" or "chorus").
    #[arg(long, default_value = "")]
    pub label: String,
    #[command(subcommand)]
    pub workload: Workload,
}

/// Linearizable reads go through the leader's read index; serializable ones are served from
/// whichever member the connection reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    #[value(name = "l", alias = "linearizable")]
    Linearizable,
    #[value(name = "s", alias = "serializable")]
    Serializable,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Workload {
    /// Puts of random keys from the key space (or every key once, in order, with --sequential).
    Put {
        /// Keys 0, 1, 2, ... instead of random ones (for loading a key space).
        #[arg(long)]
        sequential: bool,
        /// Stop after this many puts in all (with --sequential: load this many keys).
        #[arg(long)]
        total: Option<u64>,
    },
    /// Single-key reads of random keys (the key space is loaded first).
    Range {
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
    },
    /// Compare-and-swap increments of a few hot counters (read, then a Txn on mod_revision);
    /// the counters are checked against the successful swaps at the end.
    Txn {
        #[arg(long, default_value_t = 4)]
        hot_keys: usize,
    },
    /// Reads and puts of random keys, `read_percent` of them reads.
    Mixed {
        #[arg(long, default_value_t = 90)]
        read_percent: u8,
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
    },
    /// Events per second delivered to many watchers of one prefix, and put-to-event latency.
    Watch {
        /// Watchers of the prefix in all.
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        /// Watch streams the watchers are spread over.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Clients putting keys under the prefix, one put in flight each.
        #[arg(long, default_value_t = 1)]
        putters: usize,
    },
    /// Lease keep-alives: each client holds a lease and renews it as fast as answers come.
    LeaseKeepalive,
    /// Single-key reads, twice with the same clients: linearizable through the leader, then
    /// serializable from every member stamped with `chorus-min-revision` (chorus's follower
    /// reads); reports both and their ratio.
    FollowerReads,
}

impl Workload {
    pub fn name(&self) -> String {
        match self {
            Workload::Put {
                sequential: true, ..
            } => "put-sequential".into(),
            Workload::Put { .. } => "put".into(),
            Workload::Range { consistency } => format!("range-{}", consistency.name()),
            Workload::Txn { .. } => "txn".into(),
            Workload::Mixed { consistency, .. } => format!("mixed-{}", consistency.name()),
            Workload::Watch { .. } => "watch".into(),
            Workload::LeaseKeepalive => "lease-keepalive".into(),
            Workload::FollowerReads => "follower-reads".into(),
        }
    }
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Serializable => "serializable",
        }
    }
}

impl BenchArgs {
    /// The I/O threads to run: `--threads`, or one per CPU.
    pub fn io_thread_count(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// Refuses option combinations that cannot run, with a message that says why.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.endpoints.is_empty(), "--endpoints is empty");
        anyhow::ensure!(self.clients >= 1, "--clients must be at least 1");
        anyhow::ensure!(self.conns >= 1, "--conns must be at least 1");
        anyhow::ensure!(self.threads != Some(0), "--threads must be at least 1");
        anyhow::ensure!(self.key_space >= 1, "--key-space must be at least 1");
        let digits = self.key_size.saturating_sub(1).min(19);
        anyhow::ensure!(
            self.key_size >= 2 && 10u64.saturating_pow(digits as u32) >= self.key_space,
            "--key-size {} cannot number --key-space {} keys (one prefix byte, then digits)",
            self.key_size,
            self.key_space
        );
        anyhow::ensure!(
            self.val_size >= 8,
            "--val-size must be at least 8 (watch latency stamps live in the value)"
        );
        if let Workload::Mixed { read_percent, .. } = self.workload {
            anyhow::ensure!(read_percent <= 100, "--read-percent is at most 100");
        }
        if let Workload::Watch {
            watchers, streams, ..
        } = self.workload
        {
            anyhow::ensure!(
                streams >= 1 && watchers >= streams,
                "need watchers >= streams >= 1"
            );
        }
        Ok(())
    }
}

/// Parses "250ms", "10s", "2m", "1h" (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
