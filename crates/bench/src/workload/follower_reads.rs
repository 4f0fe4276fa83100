//! Follower reads against leader reads, in one run with the same clients: phase 1 reads
//! random keys linearizably through the leader (every connection to the leader); phase 2
//! reads them serializably from every member, client i on member i mod members, each read
//! stamped with the gRPC metadata `chorus-min-revision` (the highest revision that client has
//! seen), moving to the next member when one refuses (UNAVAILABLE `chorus: replica ...`).
//! The report is phase 2's, with phase 1's throughput and percentiles and the ratio of the two
//! in its extra fields.
//!
//! A server that does not know the stamp (etcd) serves phase 2 as plain serializable reads;
//! an answer from before the revision the client has seen counts as an error.

use super::{preload, run_clients, timed, KEY_PREFIX};
use crate::connect;
use crate::keys::{self, Rng};
use crate::options::{BenchArgs, Consistency};
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The request metadata of a stamped read (chorus's follower reads).
pub const MIN_REVISION_METADATA_KEY: &str = "chorus-min-revision";

pub async fn run(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<Report> {
    preload(args, channels).await?;
    let leader = leader_endpoint(args).await?;
    let leader_channels =
        connect::channels(args, std::slice::from_ref(&leader), args.conns).await?;
    let leader_recorder = run_leader_phase(args, &leader_channels).await?;
    let leader_report = Report::new(args, &leader_recorder);

    let conns = spread_conns(args.conns, args.endpoints.len());
    let spread = connect::channels(args, &args.endpoints, conns).await?;
    let refusals = Arc::new(AtomicU64::new(0));
    let follower_recorder = run_stamped_phase(args, &spread, &refusals).await?;
    let mut report = Report::new(args, &follower_recorder);
    report.conns = conns;
    report.extra.insert("leader".into(), leader.clone().into());
    report.extra.insert(
        "refusals_retried".into(),
        refusals.load(Ordering::Relaxed).into(),
    );
    report.extra.insert(
        "leader_linearizable_ops_per_sec".into(),
        round(leader_report.ops_per_sec).into(),
    );
    report.extra.insert(
        "leader_linearizable_latency_ms".into(),
        serde_json::to_value(&leader_report.latency_ms)?,
    );
    report.extra.insert(
        "leader_linearizable_errors".into(),
        leader_report.errors.into(),
    );
    let ratio = if leader_report.ops_per_sec > 0.0 {
        report.ops_per_sec / leader_report.ops_per_sec
    } else {
        0.0
    };
    report
        .extra
        .insert("follower_to_leader_ratio".into(), round(ratio).into());
    Ok(report)
}

/// `conns` rounded up to a multiple of the member count (at least one each), so that
/// connection j goes to member j mod members and client i to member i mod members.
pub fn spread_conns(conns: usize, members: usize) -> usize {
    let members = members.max(1);
    conns.max(members).div_ceil(members) * members
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Phase 1: linearizable reads, every connection to the leader.
async fn run_leader_phase(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<Recorder> {
    let window = Window::starting_now(args.warmup, args.duration);
    run_clients(args, channels, window, |client, channel| {
        let mut kv = KvClient::new(channel);
        let mut rng = Rng::for_client(args.seed, client);
        let (key_size, key_space, timeout) = (args.key_size, args.key_space, args.request_timeout);
        async move {
            let mut recorder = Recorder::new(window);
            while !window.is_over() {
                let key = keys::key(KEY_PREFIX, rng.below(key_space), key_size);
                let started = Instant::now();
                let result =
                    super::range::get(&mut kv, key, Consistency::Linearizable, timeout).await;
                recorder.record(started, result);
            }
            recorder
        }
    })
    .await
}

/// Phase 2: stamped serializable reads, client i starting on member i mod members and moving
/// to the next member after a refusal.
async fn run_stamped_phase(
    args: &BenchArgs,
    channels: &[Channel],
    refusals: &Arc<AtomicU64>,
) -> anyhow::Result<Recorder> {
    let window = Window::starting_now(args.warmup, args.duration);
    let all: Vec<Channel> = channels.to_vec();
    run_clients(args, channels, window, |client, _| {
        let clients: Vec<KvClient<Channel>> = all.iter().cloned().map(KvClient::new).collect();
        let mut rng = Rng::for_client(args.seed, client);
        let (key_size, key_space, timeout) = (args.key_size, args.key_space, args.request_timeout);
        let members = args.endpoints.len();
        let refused = refusals.clone();
        async move {
            let mut clients = clients;
            let home = client % clients.len();
            let mut recorder = Recorder::new(window);
            let mut seen = 0;
            while !window.is_over() {
                let key = keys::key(KEY_PREFIX, rng.below(key_space), key_size);
                let started = Instant::now();
                let mut result = Err("no member tried".to_string());
                for step in 0..members {
                    let index = (home + step) % clients.len();
                    result = stamped_get(&mut clients[index], key.clone(), seen, timeout).await;
                    match &result {
                        Err(message) if message.contains("chorus: replica") => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                if let Ok(revision) = result {
                    seen = seen.max(revision);
                }
                recorder.record(started, result.map(drop));
            }
            recorder
        }
    })
    .await
}

/// A serializable read of one loaded key stamped with `seen`; its header revision.
async fn stamped_get(
    kv: &mut KvClient<Channel>,
    key: bytes::Bytes,
    seen: i64,
    timeout: Duration,
) -> Result<i64, String> {
    let mut request = tonic::Request::new(pb::RangeRequest {
        key,
        serializable: true,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert(MIN_REVISION_METADATA_KEY, seen.into());
    let response = timed(timeout, kv.range(request)).await?;
    if response.kvs.is_empty() {
        return Err("a loaded key was not found".into());
    }
    let revision = response.header.map_or(0, |header| header.revision);
    if revision < seen {
        return Err(format!(
            "an answer at revision {revision}, before the revision seen {seen}"
        ));
    }
    Ok(revision)
}

/// The endpoint whose member is the leader, by asking each for its status.
async fn leader_endpoint(args: &BenchArgs) -> anyhow::Result<String> {
    let channels = connect::channels(args, &args.endpoints, args.endpoints.len()).await?;
    for (endpoint, channel) in args.endpoints.iter().zip(channels) {
        let mut maintenance = MaintenanceClient::new(channel);
        let Ok(status) = timed(
            args.request_timeout,
            maintenance.status(pb::StatusRequest {}),
        )
        .await
        else {
            continue;
        };
        let member = status.header.as_ref().map_or(0, |header| header.member_id);
        if member != 0 && member == status.leader {
            return Ok(endpoint.clone());
        }
    }
    anyhow::bail!("no endpoint of {:?} is the leader", args.endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_a_multiple_of_the_members() {
        assert_eq!(spread_conns(8, 3), 9);
        assert_eq!(spread_conns(9, 3), 9);
        assert_eq!(spread_conns(1, 3), 3);
        assert_eq!(spread_conns(4, 1), 4);
        assert_eq!(spread_conns(4, 0), 4);
    }
}
