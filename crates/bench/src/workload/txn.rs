//! Compare-and-swap increments of a few hot counters: each client reads a counter (its value
//! and mod revision), then sends a Txn that writes value + 1 only if the mod revision is still
//! the one it read. At the end the counters must add up to the swaps that succeeded: a store
//! that loses or repeats a write fails the check.

use super::{run_clients, timed};
use crate::keys::{self, Rng};
use crate::options::BenchArgs;
use crate::recorder::{Recorder, Window};
use crate::report::Report;
use chorus_proto::etcdserverpb as pb;
use pb::kv_client::KvClient;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The letter every counter key starts with.
const COUNTER_PREFIX: u8 = b't';

#[derive(Default)]
struct Outcomes {
    swapped: AtomicU64,
    conflicted: AtomicU64,
    /// Txns that failed or timed out: they may or may not have been applied.
    unknown: AtomicU64,
}

pub async fn run(
    args: &BenchArgs,
    channels: &[Channel],
    hot_keys: usize,
) -> anyhow::Result<Report> {
    let hot_keys = hot_keys.max(1) as u64;
    let mut kv = KvClient::new(channels[0].clone());
    for index in 0..hot_keys {
        let request = pb::PutRequest {
            key: keys::key(COUNTER_PREFIX, index, args.key_size),
            value: bytes::Bytes::from_static(b"0"),
            ..Default::default()
        };
        timed(args.request_timeout, kv.put(request))
            .await
            .map_err(|error| anyhow::anyhow!("resetting the counters: {error}"))?;
    }
    let outcomes = Arc::new(Outcomes::default());
    let window = Window::starting_now(args.warmup, args.duration);
    let recorder = run_clients(args, channels, window, |client, channel| {
        let mut kv = KvClient::new(channel);
        let mut rng = Rng::for_client(args.seed, client);
        let outcomes = Arc::clone(&outcomes);
        let (key_size, timeout) = (args.key_size, args.request_timeout);
        async move {
            let mut recorder = Recorder::new(window);
            while !window.is_over() {
                let key = keys::key(COUNTER_PREFIX, rng.below(hot_keys), key_size);
                let started = Instant::now();
                let result = increment(&mut kv, key, timeout, &outcomes).await;
                recorder.record(started, result);
            }
            recorder
        }
    })
    .await?;

    let mut total = 0u64;
    for index in 0..hot_keys {
        let (value, _) = read_counter(
            &mut kv,
            keys::key(COUNTER_PREFIX, index, args.key_size),
            args.request_timeout,
        )
        .await
        .map_err(|error| anyhow::anyhow!("reading the counters: {error}"))?;
        total += value;
    }
    let swapped = outcomes.swapped.load(Ordering::Relaxed);
    let unknown = outcomes.unknown.load(Ordering::Relaxed);
    let verified = total >= swapped && total <= swapped + unknown;
    let mut report = Report::new(args, &recorder);
    let extra = &mut report.extra;
    extra.insert("hot_keys".into(), hot_keys.into());
    extra.insert("swapped".into(), swapped.into());
    extra.insert(
        "conflicted".into(),
        outcomes.conflicted.load(Ordering::Relaxed).into(),
    );
    extra.insert("unknown".into(), unknown.into());
    extra.insert("counters_total".into(), total.into());
    extra.insert("verified".into(), verified.into());
    anyhow::ensure!(
        verified,
        "the counters add up to {total}, but {swapped} swaps succeeded and {unknown} are unknown: \
         a write was lost or applied twice\n{}",
        report.json()
    );
    Ok(report)
}

/// One read and one compare-and-swap. A conflict (someone else swapped first) is a finished
/// operation, not an error.
async fn increment(
    kv: &mut KvClient<Channel>,
    key: bytes::Bytes,
    timeout: Duration,
    outcomes: &Outcomes,
) -> Result<(), String> {
    let (value, mod_revision) = read_counter(kv, key.clone(), timeout).await?;
    let request = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(mod_revision)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key,
                value: (value + 1).to_string().into_bytes().into(),
                ..Default::default()
            })),
        }],
        failure: Vec::new(),
    };
    match timed(timeout, kv.txn(request)).await {
        Ok(response) if response.succeeded => {
            outcomes.swapped.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(_) => {
            outcomes.conflicted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(error) => {
            outcomes.unknown.fetch_add(1, Ordering::Relaxed);
            Err(error)
        }
    }
}

async fn read_counter(
    kv: &mut KvClient<Channel>,
    key: bytes::Bytes,
    timeout: Duration,
) -> Result<(u64, i64), String> {
    let request = pb::RangeRequest {
        key,
        ..Default::default()
    };
    let response = timed(timeout, kv.range(request)).await?;
    let kv = response.kvs.first().ok_or("a counter is missing")?;
    let value = std::str::from_utf8(&kv.value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or("a counter holds something that is not a number")?;
    Ok((value, kv.mod_revision))
}
