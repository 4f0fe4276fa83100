//! chorus-bench: a load generator for any etcd v3 endpoint list.
//!
//! What it is: the same tool measures etcd and chorus (it speaks only the public etcd v3 gRPC
//! API, through the generated clients of `chorus-proto`), so numbers taken side by side on one
//! machine compare like with like. Each run is one [`Workload`] with a number of clients spread
//! over a number of gRPC connections; latencies go into HDR histograms, operations finished
//! during the warm-up are not counted, and the result is a [`Report`]: one human line and one
//! JSON line.
//!
//! What it is not: no server code, no assertions about speed (the numbers are for people and
//! for `bench/compare-etcd.sh`), and never a run with durability turned off: the servers decide
//! that, and both are run with fsync before acknowledging.

pub mod connect;
pub mod keys;
pub mod options;
pub mod recorder;
pub mod report;
pub mod workload;

pub use options::{BenchArgs, Consistency, Workload};
pub use report::Report;

/// Runs the workload `args` names and returns its report.
/// A run in which no operation succeeded is an error (with the first failure's message), so
/// scripts notice a cluster that is down.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    args.validate()?;
    let channels = connect::channels(args, &args.endpoints, args.conns).await?;
    let report = run_workload(args, &channels).await?;
    if report.ops == 0 && report.errors > 0 {
        anyhow::bail!(
            "every operation failed; the first: {}",
            report.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(report)
}

async fn run_workload(
    args: &BenchArgs,
    channels: &[tonic::transport::Channel],
) -> anyhow::Result<Report> {
    match &args.workload {
        Workload::Put { sequential, total } => {
            workload::put::run(args, channels, *sequential, *total).await
        }
        Workload::Range { consistency } => workload::range::run(args, channels, *consistency).await,
        Workload::Txn { hot_keys } => workload::txn::run(args, channels, *hot_keys).await,
        Workload::Mixed {
            read_percent,
            consistency,
        } => workload::mixed::run(args, channels, *read_percent, *consistency).await,
        Workload::Watch {
            watchers,
            streams,
            putters,
        } => workload::watch::run(args, channels, *watchers, *streams, *putters).await,
        Workload::LeaseKeepalive => workload::lease::run(args, channels).await,
        Workload::FollowerReads => workload::follower_reads::run(args, channels).await,
    }
}
