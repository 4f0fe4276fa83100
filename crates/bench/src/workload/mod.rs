//! The workloads, one module each, and what they share: running the clients and loading keys.

pub mod follower_reads;
pub mod lease;
pub mod mixed;
pub mod put;
pub mod range;
pub mod txn;
pub mod watch;

use crate::connect;
use crate::keys;
use crate::options::BenchArgs;
use crate::recorder::{Recorder, Window};
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// The letter every key of the put, range and mixed workloads starts with.
pub const KEY_PREFIX: u8 = b'k';

/// Runs one task per client (client i on connection i mod conns, and on that connection's I/O
/// thread) and merges their recorders.
pub async fn run_clients<F, Fut>(
    args: &BenchArgs,
    channels: &[Channel],
    window: Window,
    mut client: F,
) -> anyhow::Result<Recorder>
where
    F: FnMut(usize, Channel) -> Fut,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let threads = connect::io_threads(args)?;
    let mut tasks = JoinSet::new();
    for index in 0..args.clients {
        let connection = index % channels.len();
        let channel = channels[connection].clone();
        tasks.spawn_on(
            client(index, channel),
            connect::io_thread_of(threads, connection),
        );
    }
    let mut total = Recorder::new(window);
    while let Some(result) = tasks.join_next().await {
        total.merge(&result?);
    }
    Ok(total)
}

/// Awaits `call` at most `timeout`; a gRPC error or a timeout becomes a short message.
pub async fn timed<T>(
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// Puts every key of the key space once (the clients share the work), so reads find values.
pub async fn preload(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<()> {
    let threads = connect::io_threads(args)?;
    let mut tasks = JoinSet::new();
    let clients = args.clients as u64;
    for client in 0..clients {
        let connection = client as usize % channels.len();
        let mut kv = KvClient::new(channels[connection].clone());
        let (key_size, val_size, key_space) = (args.key_size, args.val_size, args.key_space);
        let timeout = args.request_timeout;
        let thread = connect::io_thread_of(threads, connection);
        tasks.spawn_on(
            async move {
                let mut index = client;
                while index < key_space {
                    let request = pb::PutRequest {
                        key: keys::key(KEY_PREFIX, index, key_size),
                        value: keys::value(index, val_size),
                        ..Default::default()
                    };
                    timed(timeout, kv.put(request)).await?;
                    index += clients;
                }
                Ok::<(), String>(())
            },
            thread,
        );
    }
    while let Some(result) = tasks.join_next().await {
        result?.map_err(|error| anyhow::anyhow!("loading the key space: {error}"))?;
    }
    Ok(())
}
