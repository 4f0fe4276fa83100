//! Lease keep-alives: each client grants a lease, then renews it on its own keep-alive stream as
//! fast as the answers come; the latency is one request to its answer.

use super::{run_clients, timed};
use crate::options::BenchArgs;
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use chorus_proto::etcdserverpb as pb;
use pb::lease_client::LeaseClient;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Long enough that no lease expires during a run, short enough that leftovers go away.
const LEASE_TTL_SECONDS: i64 = 120;

pub async fn run(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<Report> {
    let window = Window::starting_now(args.warmup, args.duration);
    let timeout = args.request_timeout;
    let recorder = run_clients(args, channels, window, |_, channel| async move {
        let mut recorder = Recorder::new(window);
        if let Err(error) = keep_alive_loop(channel, window, timeout, &mut recorder).await {
            recorder.record(Instant::now(), Err(error));
        }
        recorder
    })
    .await?;
    Ok(Report::new(args, &recorder))
}

async fn keep_alive_loop(
    channel: Channel,
    window: Window,
    timeout: Duration,
    recorder: &mut Recorder,
) -> Result<(), String> {
    let mut lease = LeaseClient::new(channel);
    let grant = pb::LeaseGrantRequest {
        ttl: LEASE_TTL_SECONDS,
        id: 0,
    };
    let id = timed(timeout, lease.lease_grant(grant)).await?.id;
    let (requests, receiver) = mpsc::channel(1);
    let mut answers = timed(
        timeout,
        lease.lease_keep_alive(ReceiverStream::new(receiver)),
    )
    .await?;
    while !window.is_over() {
        let started = Instant::now();
        if requests
            .send(pb::LeaseKeepAliveRequest { id })
            .await
            .is_err()
        {
            return Err("the keep-alive stream closed".into());
        }
        let result = match tokio::time::timeout(timeout, answers.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl > 0 => Ok(()),
            Ok(Ok(Some(_))) => Err("the lease was not found".to_string()),
            Ok(Ok(None)) => Err("the keep-alive stream ended".to_string()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Err(format!("timed out after {timeout:?}")),
        };
        let failed = result.is_err();
        recorder.record(started, result);
        if failed {
            break;
        }
    }
    drop(requests);
    let _ = timed(timeout, lease.lease_revoke(pb::LeaseRevokeRequest { id })).await;
    Ok(())
}
