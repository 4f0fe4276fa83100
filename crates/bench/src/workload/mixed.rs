//! Reads and puts of random keys from a loaded key space, `read_percent` of them reads.

use super::range::get;
use super::{preload, run_clients, timed, KEY_PREFIX};
use crate::keys::{self, Rng};
use crate::options::{BenchArgs, Consistency};
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use std::time::Instant;
use tonic::transport::Channel;

pub async fn run(
    args: &BenchArgs,
    channels: &[Channel],
    read_percent: u8,
    consistency: Consistency,
) -> anyhow::Result<Report> {
    preload(args, channels).await?;
    let window = Window::starting_now(args.warmup, args.duration);
    let recorder = run_clients(args, channels, window, |client, channel| {
        let mut kv = KvClient::new(channel);
        let mut rng = Rng::for_client(args.seed, client);
        let (key_size, key_space, timeout) = (args.key_size, args.key_space, args.request_timeout);
        let value = keys::value(0, args.val_size);
        async move {
            let mut recorder = Recorder::new(window);
            while !window.is_over() {
                let key = keys::key(KEY_PREFIX, rng.below(key_space), key_size);
                let read = rng.below(100) < u64::from(read_percent);
                let started = Instant::now();
                let result = if read {
                    get(&mut kv, key, consistency, timeout).await
                } else {
                    let request = pb::PutRequest {
                        key,
                        value: value.clone(),
                        ..Default::default()
                    };
                    timed(timeout, kv.put(request)).await.map(drop)
                };
                recorder.record(started, result);
            }
            recorder
        }
    })
    .await?;
    let mut report = Report::new(args, &recorder);
    report
        .extra
        .insert("read_percent".into(), u64::from(read_percent).into());
    Ok(report)
}
