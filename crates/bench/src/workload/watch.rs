//! Watch fan-out: `watchers` watchers of one prefix, spread over `streams` watch streams, and
//! `putters` clients writing keys under the prefix. Each value carries the time it was sent
//! (microseconds since the run began, from this process's monotonic clock), so every event
//! delivered gives one put-to-event latency; the throughput is events delivered per second.

use super::{run_clients, timed};
use crate::keys::{self, Rng};
use crate::options::BenchArgs;
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use anyhow::Context;
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::watch_client::WatchClient;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// The letter every watched key starts with.
const WATCH_PREFIX: u8 = b'w';

/// One watch stream with its watchers created. The request sender is kept so the stream stays
/// open.
struct OpenStream {
    _requests: mpsc::Sender<pb::WatchRequest>,
    responses: Streaming<pb::WatchResponse>,
}

pub async fn run(
    args: &BenchArgs,
    channels: &[Channel],
    watchers: usize,
    streams: usize,
    putters: usize,
) -> anyhow::Result<Report> {
    let origin = Instant::now();
    let mut open = Vec::with_capacity(streams);
    for stream in 0..streams {
        let share = watchers / streams + usize::from(stream < watchers % streams);
        let channel = channels[stream % channels.len()].clone();
        let opened = open_stream(channel, share, args.request_timeout)
            .await
            .with_context(|| format!("opening watch stream {stream}"))?;
        open.push(opened);
    }

    let window = Window::starting_now(args.warmup, args.duration);
    let mut receivers = JoinSet::new();
    for stream in open {
        receivers.spawn(receive(stream, origin, window));
    }
    let put_args = BenchArgs {
        clients: putters.max(1),
        ..args.clone()
    };
    let puts = run_clients(&put_args, channels, window, |client, channel| {
        let mut kv = KvClient::new(channel);
        let mut rng = Rng::for_client(args.seed, client);
        let (key_size, key_space, val_size) = (args.key_size, args.key_space, args.val_size);
        let timeout = args.request_timeout;
        async move {
            let mut recorder = Recorder::new(window);
            while !window.is_over() {
                let stamp = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
                let request = pb::PutRequest {
                    key: keys::key(WATCH_PREFIX, rng.below(key_space), key_size),
                    value: keys::value(stamp, val_size),
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

    let mut events = Recorder::new(window);
    while let Some(result) = receivers.join_next().await {
        events.merge(&result?);
    }
    let mut report = Report::new(&put_args, &events);
    let put_report = Report::new(&put_args, &puts);
    let extra = &mut report.extra;
    extra.insert("watchers".into(), watchers.into());
    extra.insert("streams".into(), streams.into());
    extra.insert("putters".into(), putters.into());
    extra.insert("puts_per_sec".into(), put_report.ops_per_sec.round().into());
    extra.insert("put_errors".into(), put_report.errors.into());
    extra.insert("put_p99_ms".into(), put_report.latency_ms.p99.into());
    Ok(report)
}

/// Opens a watch stream and creates `watchers` watchers of the prefix on it, waiting for each
/// to be confirmed.
async fn open_stream(
    channel: Channel,
    watchers: usize,
    timeout: Duration,
) -> anyhow::Result<OpenStream> {
    // The create requests are queued before the call: a server may send the response headers
    // only with its first answer (etcd does), so waiting for the call first would deadlock.
    let (requests, receiver) = mpsc::channel(watchers.max(1));
    for _ in 0..watchers {
        let create = pb::WatchCreateRequest {
            key: bytes::Bytes::from(vec![WATCH_PREFIX]),
            range_end: keys::prefix_end(WATCH_PREFIX),
            ..Default::default()
        };
        let request = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        };
        requests
            .send(request)
            .await
            .map_err(|_| anyhow::anyhow!("the watch stream closed"))?;
    }
    let mut client = WatchClient::new(channel);
    let mut responses = timed(timeout, client.watch(ReceiverStream::new(receiver)))
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let mut created = 0;
    while created < watchers {
        let response = tokio::time::timeout(timeout, responses.message())
            .await
            .context("waiting for watchers to be created")?
            .context("watch stream")?
            .context("the watch stream ended")?;
        anyhow::ensure!(
            !response.canceled,
            "a watcher was refused: {}",
            response.cancel_reason
        );
        if response.created {
            created += 1;
        }
    }
    Ok(OpenStream {
        _requests: requests,
        responses,
    })
}

/// Receives events until the window ends, recording each one's put-to-event latency.
async fn receive(mut stream: OpenStream, origin: Instant, window: Window) -> Recorder {
    let mut recorder = Recorder::new(window);
    let end = tokio::time::Instant::from_std(window.end);
    loop {
        let response = match tokio::time::timeout_at(end, stream.responses.message()).await {
            Err(_) => break,
            Ok(Ok(Some(response))) => response,
            Ok(Ok(None)) => {
                recorder.record(Instant::now(), Err("a watch stream ended early"));
                break;
            }
            Ok(Err(status)) => {
                let error = format!("{:?}: {}", status.code(), status.message());
                recorder.record(Instant::now(), Err(error));
                break;
            }
        };
        let now = Instant::now();
        if now < window.measure_from {
            continue;
        }
        for event in &response.events {
            let Some(stamp) = event.kv.as_ref().and_then(|kv| keys::stamp(&kv.value)) else {
                continue;
            };
            let sent = origin + Duration::from_micros(stamp);
            recorder.record_latency(now.saturating_duration_since(sent));
        }
    }
    recorder
}
