//! chorus-client's resuming watch, end to end: a watch on a prefix whose member is killed
//! (SIGKILL) while writes continue through the other members must hand out every event
//! exactly once, in revision order — the same events, in the same order, as a watch that
//! replays that history afterwards on a surviving member. Once with a follower killed, once
//! with the leader (writes stall until a new one is elected).
//!
//! The watch's client lists the doomed member first, so the watch is created there (a
//! client starts on its first endpoint). Every wait is bounded; the processes are killed when
//! a test ends, however it ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use chorus_client::{mvccpb, Client, ClientConfig, Error, Put, Watch, Watcher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Cluster, FAST_TIMING};

/// Puts written (each its own revision); the member dies after [`KILL_AFTER`] of them.
const WRITES: usize = 60;
const KILL_AFTER: usize = 20;
/// The key written last: once the watch has it, it has everything before.
const END_KEY: &str = "w/end";
/// The longest any one step may take (a write, an event, a leader election).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What an event says, compared between the resumed and the replaying watch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    kind: i32,
    key: String,
    value: String,
    mod_revision: i64,
}

impl Seen {
    fn of(event: &mvccpb::Event) -> Seen {
        let kv = event.kv.clone().unwrap_or_default();
        Seen {
            kind: event.r#type,
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            mod_revision: kv.mod_revision,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Victim {
    Follower,
    Leader,
}

#[test]
fn a_prefix_watch_survives_the_death_of_its_follower_exactly_once() {
    watch_survives(Victim::Follower);
}

#[test]
fn a_prefix_watch_survives_the_death_of_the_leader_exactly_once() {
    watch_survives(Victim::Leader);
}

fn client_of(endpoints: Vec<String>) -> Client {
    Client::new(ClientConfig::new(endpoints)).unwrap()
}

fn watch_survives(victim_role: Victim) {
    let mut cluster = Cluster::builder().args(&FAST_TIMING).start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let everyone = client_of(cluster.live_endpoints());
        let leader = agreed_leader(&cluster, &everyone).await;
        let victim = match victim_role {
            Victim::Leader => leader,
            Victim::Follower => (leader + 1) % 3,
        };
        let survivors: Vec<usize> = (0..3).filter(|index| *index != victim).collect();
        let survivor_endpoints: Vec<String> = survivors
            .iter()
            .map(|index| cluster.members[*index].client.clone())
            .collect();
        let mut watch_endpoints = vec![cluster.members[victim].client.clone()];
        watch_endpoints.extend(survivor_endpoints.iter().cloned());

        let watcher = client_of(watch_endpoints)
            .watch(Watch::key("w/").prefix())
            .await
            .unwrap();
        let first_revision = watcher.next_revision();
        assert!(first_revision > 0);
        let delivered = Arc::new(AtomicUsize::new(0));
        let collector = tokio::spawn(collect_until_end(watcher, Arc::clone(&delivered)));

        let acknowledged = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn(write_all(
            client_of(survivor_endpoints.clone()),
            Arc::clone(&acknowledged),
        ));
        let deadline = Instant::now() + STEP_TIMEOUT;
        while acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
            assert!(Instant::now() < deadline, "the writes did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.kill(victim);
        let delivered_before_kill = delivered.load(Ordering::SeqCst);
        let written = tokio::time::timeout(4 * STEP_TIMEOUT, writer)
            .await
            .expect("the writes finished")
            .unwrap();
        let resumed = tokio::time::timeout(STEP_TIMEOUT, collector)
            .await
            .expect("the watch delivered the last write")
            .unwrap();

        // In revision order, none twice.
        for pair in resumed.windows(2) {
            assert!(
                pair[0].mod_revision < pair[1].mod_revision,
                "out of order or repeated: {pair:?}"
            );
        }
        assert!(resumed[0].mod_revision >= first_revision);
        // Every acknowledged write, exactly once.
        for (key, revision) in &written {
            let matching = resumed
                .iter()
                .filter(|seen| &seen.key == key && seen.mod_revision == *revision)
                .count();
            assert_eq!(matching, 1, "{key} at {revision}: {resumed:?}");
        }
        // Nothing lost, nothing made up: the history as a new watch replays it.
        let replay = client_of(survivor_endpoints)
            .watch(Watch::key("w/").prefix().start_revision(first_revision))
            .await
            .unwrap();
        let replayed = collect_until_end(replay, Arc::new(AtomicUsize::new(0))).await;
        assert_eq!(resumed, replayed);
        assert!(resumed.len() > WRITES, "{} events", resumed.len());
        // The kill did cut the stream short: the rest came through the resumed watch.
        assert!(
            delivered_before_kill < resumed.len(),
            "{delivered_before_kill} of {} events before the kill",
            resumed.len()
        );
    });
}

/// The member every live member names as leader, asked with the client's Status calls.
async fn agreed_leader(cluster: &Cluster, client: &Client) -> usize {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let leaders: Vec<Option<u64>> = client
            .status_all()
            .await
            .into_iter()
            .map(|endpoint| endpoint.status.ok().map(|status| status.leader))
            .collect();
        if let Some(Some(first)) = leaders.first() {
            if *first != 0 && leaders.iter().all(|leader| *leader == Some(*first)) {
                if let Some(index) = (0..3).find(|index| cluster.member_id(*index) == *first) {
                    return index;
                }
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts `w/000`.. and then [`END_KEY`], each until acknowledged (one whose outcome is unknown
/// is sent again: the history, not this list, is what the watch is compared with); the key
/// and revision of each acknowledged put.
async fn write_all(client: Client, acknowledged: Arc<AtomicUsize>) -> Vec<(String, i64)> {
    let mut written = Vec::new();
    let keys = (0..WRITES)
        .map(|index| format!("w/{index:03}"))
        .chain([END_KEY.to_string()]);
    for key in keys {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let revision = loop {
            match client
                .put(Put::new(key.clone(), format!("value of {key}")))
                .await
            {
                Ok(response) => break response.header.unwrap().revision,
                Err(error @ (Error::OutcomeUnknown { .. } | Error::Unavailable { .. })) => {
                    assert!(Instant::now() < deadline, "put {key}: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("put {key}: {error}"),
            }
        };
        written.push((key, revision));
        acknowledged.fetch_add(1, Ordering::SeqCst);
    }
    written
}

/// Every event of `watcher` up to the first put of [`END_KEY`], counting them in `delivered`
/// as they come.
async fn collect_until_end(mut watcher: Watcher, delivered: Arc<AtomicUsize>) -> Vec<Seen> {
    let mut seen = Vec::new();
    loop {
        let batch = tokio::time::timeout(STEP_TIMEOUT, watcher.next())
            .await
            .expect("an event")
            .unwrap();
        for event in &batch.events {
            seen.push(Seen::of(event));
            delivered.fetch_add(1, Ordering::SeqCst);
            if seen.last().is_some_and(|last| last.key == END_KEY) {
                return seen;
            }
        }
    }
}
