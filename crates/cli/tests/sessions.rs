//! Client sessions (the idempotent receiver) against a real cluster of three `chorus server`
//! processes: a write sent twice in one session is applied once, also through a follower; an
//! acknowledged sequence and a gone session are refused with clear errors; and the Rust client,
//! writing through a leader that is killed mid-request, lands every write exactly once.
//!
//! "Exactly once" is counted with the key's version, which etcd's data model increments on
//! every put: after N acknowledged transactions each putting the key once, its version is N.
//! The last test is shown to catch a client without sessions: run it with
//! `CHORUS_TEST_WITHOUT_SESSIONS=1` and it fails with `etcdserver: leader changed (the outcome
//! is unknown ...)` for the writes in flight when the leader died.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chorus_client::{Client, ClientConfig, Get, Put, Txn, TxnOp};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::kv_client::KvClient;
use chorus_proto::session as spb;
use chorus_proto::session::session_client::SessionClient;
use chorus_proto::session_metadata::{ACKNOWLEDGED, ID, NOT_FOUND_MESSAGE, SEQUENCE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Cluster, FAST_TIMING};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// The longest the killed-leader run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

async fn channel(endpoint: &str) -> Channel {
    let uri = chorus_client::endpoint_uri(endpoint).unwrap();
    Channel::from_shared(uri).unwrap().connect().await.unwrap()
}

fn sessioned<T>(message: T, session: u64, sequence: u64, acknowledged: u64) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(ID, session.into());
    metadata.insert(SEQUENCE, sequence.into());
    metadata.insert(ACKNOWLEDGED, acknowledged.into());
    request
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

async fn version_of(kv: &mut KvClient<Channel>, key: &str) -> i64 {
    let response = kv
        .range(pb::RangeRequest {
            key: key.as_bytes().to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    response.kvs.first().map_or(0, |kv| kv.version)
}

#[test]
fn a_write_sent_twice_in_a_session_is_applied_once_even_through_a_follower() {
    let cluster = Cluster::builder().args(&FAST_TIMING).start();
    cluster.wait_writable();
    let leader = cluster.leader();
    let follower = (0..3).find(|&index| index != leader).unwrap();
    support::runtime().block_on(async {
        let mut sessions = SessionClient::new(channel(&cluster.members[follower].client).await);
        let opened = sessions
            .open(spb::OpenRequest { ttl_seconds: 30 })
            .await
            .unwrap()
            .into_inner();
        assert!(opened.id > 0);
        assert_eq!(opened.ttl_seconds, 30);
        let id = opened.id;

        let mut via_follower = KvClient::new(channel(&cluster.members[follower].client).await);
        let mut via_leader = KvClient::new(channel(&cluster.members[leader].client).await);
        let first = via_follower
            .put(sessioned(put("once", "a"), id, 1, 0))
            .await
            .unwrap()
            .into_inner();
        // The retry goes to the leader, as a client that lost the first answer would send it.
        let retry = via_leader
            .put(sessioned(put("once", "a"), id, 1, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            first.header.as_ref().unwrap().revision,
            retry.header.as_ref().unwrap().revision,
            "the retry is answered with the stored response"
        );
        assert_eq!(version_of(&mut via_leader, "once").await, 1);

        // A new sequence applies; acknowledging 1 drops its response, so a late copy of 1 (sent
        // before the acknowledgement, as a delayed retry would be) is refused.
        via_leader
            .put(sessioned(put("once", "b"), id, 2, 1))
            .await
            .unwrap();
        assert_eq!(version_of(&mut via_leader, "once").await, 2);
        let refused = via_leader
            .put(sessioned(put("once", "a"), id, 1, 0))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("acknowledged"), "{refused:?}");
        assert_eq!(version_of(&mut via_leader, "once").await, 2);

        // Half the metadata is a bad request, refused before anything is proposed.
        let mut partial = Request::new(put("once", "c"));
        partial.metadata_mut().insert(ID, id.into());
        let bad = via_leader.put(partial).await.unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        assert!(bad.message().starts_with("chorus: bad session metadata"));

        // A closed session is gone: its writes are refused, not applied.
        sessions.close(spb::CloseRequest { id }).await.unwrap();
        let gone = via_follower
            .put(sessioned(put("once", "d"), id, 3, 2))
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::FailedPrecondition, "{gone:?}");
        assert!(gone.message().starts_with(NOT_FOUND_MESSAGE), "{gone:?}");
        assert_eq!(version_of(&mut via_leader, "once").await, 2);
        // etcd's plain writes keep working without a session.
        via_follower.put(put("once", "plain")).await.unwrap();
        assert_eq!(version_of(&mut via_leader, "once").await, 3);
    });
}

#[test]
fn a_session_without_keep_alives_expires_and_the_client_opens_a_new_one() {
    let cluster = Cluster::builder()
        .args(&FAST_TIMING)
        .args(&["--session-ttl", "2"])
        .start();
    cluster.wait_writable();
    support::runtime().block_on(async {
        let mut sessions = SessionClient::new(channel(&cluster.members[0].client).await);
        let opened = sessions
            .open(spb::OpenRequest { ttl_seconds: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(opened.ttl_seconds, 2, "the server's --session-ttl");
        let id = opened.id;
        let mut kv = KvClient::new(channel(&cluster.members[0].client).await);
        kv.put(sessioned(put("expiring", "1"), id, 1, 0))
            .await
            .unwrap();
        // No keep-alive and no write: the leader proposes its expiry after the TTL.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let gone = kv
            .put(sessioned(put("expiring", "2"), id, 2, 1))
            .await
            .unwrap_err();
        assert!(gone.message().starts_with(NOT_FOUND_MESSAGE), "{gone:?}");
        let kept = sessions
            .keep_alive(spb::KeepAliveRequest { id })
            .await
            .unwrap_err();
        assert!(kept.message().starts_with(NOT_FOUND_MESSAGE), "{kept:?}");

        // The Rust client keeps its own session alive, and opens a new one when it is gone.
        let client = Client::connect(cluster.live_endpoints()).unwrap();
        client.put(Put::new("kept", "1")).await.unwrap();
        let first = client.session_id().expect("a write opens a session");
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.put(Put::new("kept", "2")).await.unwrap();
        assert_eq!(client.session_id(), Some(first), "keep-alives held it open");
        sessions
            .close(spb::CloseRequest { id: first })
            .await
            .unwrap();
        client.put(Put::new("kept", "3")).await.unwrap();
        let second = client.session_id().unwrap();
        assert_ne!(second, first);
        let kept = client.get(Get::key("kept")).await.unwrap();
        assert_eq!(kept.kvs[0].version, 3);
    });
}

#[test]
fn writes_through_a_killed_leader_land_exactly_once() {
    let mut cluster = Cluster::builder().args(&FAST_TIMING).start();
    cluster.wait_writable();
    let endpoints = cluster
        .members
        .iter()
        .map(|member| member.client.clone())
        .collect::<Vec<_>>();
    let runtime = support::runtime();
    let mut config = ClientConfig::new(endpoints);
    config.call_timeout = Duration::from_secs(30);
    config.sessions = std::env::var("CHORUS_TEST_WITHOUT_SESSIONS").is_err();
    let client = Client::new(config).unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let client = client.clone();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            runtime.spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let txn = Txn::new()
                        .and_then([TxnOp::Put(Put::new("counter", format!("writer {writer}")))]);
                    match client.txn(txn).await {
                        Ok(_) => {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => errors.push(error.to_string()),
                    }
                }
                errors
            })
        })
        .collect();
    let started = Instant::now();
    // Kill the leader twice while the writes flow, restarting it each time.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = cluster.leader();
        let before = acknowledged.load(Ordering::Relaxed);
        cluster.kill(leader);
        std::thread::sleep(Duration::from_secs(2));
        cluster.start_member(leader);
        assert!(started.elapsed() < RUN_TIMEOUT);
        assert!(before > 0, "writes flowed before the kill");
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = runtime.block_on(async {
        let mut all = Vec::new();
        for writer in writers {
            all.extend(writer.await.unwrap());
        }
        all
    });
    assert!(errors.is_empty(), "every write landed: {errors:?}");
    let total = acknowledged.load(Ordering::Relaxed);
    let version = runtime.block_on(async {
        let response = client.get(Get::key("counter")).await.unwrap();
        response.kvs[0].version
    });
    eprintln!("{total} transactions acknowledged; the counter's version is {version}");
    assert_eq!(
        u64::try_from(version).unwrap(),
        total,
        "every acknowledged write applied once, nothing applied twice"
    );
}
