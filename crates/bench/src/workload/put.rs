//! Puts: random keys from the key space, or every key once in order (`--sequential`).

use super::{run_clients, timed, KEY_PREFIX};
use crate::keys::{self, Rng};
use crate::options::BenchArgs;
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tonic::transport::Channel;

pub async fn run(
    args: &BenchArgs,
    channels: &[Channel],
    sequential: bool,
    total: Option<u64>,
) -> anyhow::Result<Report> {
    let window = Window::starting_now(args.warmup, args.duration);
    let issued = Arc::new(AtomicU64::new(0));
    let recorder = run_clients(args, channels, window, |client, channel| {
        let mut kv = KvClient::new(channel);
        let mut rng = Rng::for_client(args.seed, client);
        let issued = Arc::clone(&issued);
        let (key_size, key_space, timeout) = (args.key_size, args.key_space, args.request_timeout);
        let value = keys::value(0, args.val_size);
        async move {
            let mut recorder = Recorder::new(window);
            while !window.is_over() {
                let count = issued.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|total| count >= total) {
                    break;
                }
                let index = if sequential {
                    count
                } else {
                    rng.below(key_space)
                };
                let request = pb::PutRequest {
                    key: keys::key(KEY_PREFIX, index, key_size),
                    value: value.clone(),
                    ..Default::default()
                };
                let started = Instant::now();
                let result = timed(timeout, kv.put(request)).await.map(drop);
                recorder.record(started, result);
            }
            recorder
        }
    })
    .await?;
    Ok(Report::new(args, &recorder))
}
