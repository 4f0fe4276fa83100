//! gRPC connections to the endpoints, round-robin, each on one of the generator's I/O threads.
//!
//! Why threads of their own: the generator shares the machine with the servers it measures, so
//! every microsecond it spends per request is taken from them. On one multi-thread runtime a
//! request went from its client task to the channel's buffer task to the connection task, each
//! hand-over a wake-up of another thread more often than not. Here each connection, its tasks
//! and the clients that use it run on one single-threaded runtime, so a request and its answer
//! never change threads; there are as many such threads as `--threads` (default: the CPUs).

use crate::options::BenchArgs;
use anyhow::Context;
use std::sync::OnceLock;
use tokio::runtime::Handle;
use tonic::transport::{Channel, Endpoint};

/// The I/O threads' runtimes, started on first use.
static IO_THREADS: OnceLock<Result<Vec<Handle>, String>> = OnceLock::new();

/// The I/O threads, as many as `args` asks for started by the first call (later calls get
/// those).
pub fn io_threads(args: &BenchArgs) -> anyhow::Result<&'static [Handle]> {
    let threads = IO_THREADS.get_or_init(|| {
        (0..args.io_thread_count().max(1))
            .map(start_io_thread)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("starting the generator's I/O threads: {error}"))
    });
    threads
        .as_deref()
        .map_err(|error| anyhow::anyhow!("{error}"))
}

/// The thread where connection number `connection` and the clients using it run.
pub fn io_thread_of(threads: &[Handle], connection: usize) -> &Handle {
    &threads[connection % threads.len()]
}

/// A single-threaded runtime driven forever by a thread of its own; its tasks end with the
/// process.
fn start_io_thread(index: usize) -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("bench-io-{index}"))
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Opens `conns` HTTP/2 connections, connection i to endpoint i mod the number of endpoints and
/// on I/O thread i mod the number of threads (`io_threads`). Each one multiplexes the requests
/// of every client that shares it.
pub async fn channels(
    args: &BenchArgs,
    endpoints: &[String],
    conns: usize,
) -> anyhow::Result<Vec<Channel>> {
    let threads = io_threads(args)?;
    let mut channels = Vec::with_capacity(conns);
    for index in 0..conns {
        let endpoint = &endpoints[index % endpoints.len()];
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("http://{endpoint}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad endpoint `{endpoint}`"))?
            .tcp_nodelay(true);
        // Connected on its thread: the channel's tasks are spawned where it connects.
        let channel = io_thread_of(threads, index)
            .spawn(async move { endpoint.connect().await })
            .await
            .context("the connecting task stopped")?
            .with_context(|| format!("cannot connect to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}
