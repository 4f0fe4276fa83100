//! Single-key reads of random keys from a loaded key space.

use super::{preload, run_clients, timed, KEY_PREFIX};
use crate::keys::{self, Rng};
use crate::options::{BenchArgs, Consistency};
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub async fn run(
    args: &BenchArgs,
    channels: &[Channel],
    consistency: Consistency,
) -> anyhow::Result<Report> {
    preload(args, channels).await?;
    let window = Window::starting_now(args.warmup, args.duration);
    let recorder = run_clients(args, channels, window, |client, channel| {
        let mut kv = KvClient::new(channel);
        let mut rng = Rng::for_client(args.seed, client);
        let (key_size, key_space, timeout) = (args.key_size, args.key_space, args.request_timeout);
        async move {
            let mut recorder = Recorder::new(window);
            while !window.is_over() {
                let key = keys::key(KEY_PREFIX, rng.below(key_space), key_size);
                let started = Instant::now();
                let result = get(&mut kv, key, consistency, timeout).await;
                recorder.record(started, result);
            }
            recorder
        }
    })
    .await?;
    Ok(Report::new(args, &recorder))
}

/// Reads one key that must exist (the key space was loaded).
pub async fn get(
    kv: &mut KvClient<Channel>,
    key: bytes::Bytes,
    consistency: Consistency,
    timeout: Duration,
) -> Result<(), String> {
    let request = pb::RangeRequest {
        key,
        serializable: consistency == Consistency::Serializable,
        ..Default::default()
    };
    let response = timed(timeout, kv.range(request)).await?;
    if response.kvs.is_empty() {
        return Err("a loaded key was not found".into());
    }
    Ok(())
}
