//! When a replica takes its snapshots: every `snapshot_every_entries` entries, and, with
//! `snapshot_log_percent_of_state`, not before the log since the last snapshot holds that share
//! of the snapshot's bytes (a snapshot copies the whole state), nor after it holds
//! `snapshot_log_bytes_max`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{MemoryBackend, PutRequest};
use chorus_raft::{LogIndex, NodeId, Role};
use chorus_replica::{Command, Replica, ReplicaConfig};
use chorus_storage::SimFs;
use std::path::Path;

const EVERY_ENTRIES: u64 = 5;
const VALUE_BYTES: usize = 100;

fn open(fs: &SimFs, percent_of_state: u64, log_bytes_max: u64) -> Replica<SimFs, MemoryBackend> {
    let mut config = ReplicaConfig::new(chorus_raft::Config::new(NodeId(1), [NodeId(1)]));
    config.snapshot_every_entries = EVERY_ENTRIES;
    config.snapshot_log_percent_of_state = percent_of_state;
    config.snapshot_log_bytes_max = log_bytes_max;
    let mut replica =
        Replica::open(config, fs.clone(), Path::new("/raft"), MemoryBackend::new()).expect("open");
    for _ in 0..100 {
        if replica.role() == Role::Leader {
            return replica;
        }
        replica.tick();
        run_until_idle(&mut replica);
    }
    panic!("a single voter did not elect itself");
}

fn run_until_idle(replica: &mut Replica<SimFs, MemoryBackend>) {
    while replica.has_ready() {
        replica.handle_ready().expect("cycle");
    }
}

/// Puts `count` keys of `VALUE_BYTES`-byte values (the store keeps every one: nothing is
/// compacted, so the state grows with the log); returns the applied index after each put
/// where the snapshot index moved.
fn put_and_watch_snapshots(
    replica: &mut Replica<SimFs, MemoryBackend>,
    count: usize,
) -> Vec<LogIndex> {
    let mut snapshots = Vec::new();
    let mut last = replica.durable().snapshot_index();
    for n in 0..count {
        let put = Command::Put(PutRequest::new(
            format!("key{n:05}"),
            vec![b'v'; VALUE_BYTES],
        ));
        replica.propose(&put).expect("propose");
        run_until_idle(replica);
        let now = replica.durable().snapshot_index();
        if now != last {
            snapshots.push(now);
            last = now;
        }
    }
    snapshots
}

fn gaps(snapshots: &[LogIndex]) -> Vec<u64> {
    snapshots.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

/// A fresh single-voter replica with this size rule, `puts` puts: where it snapshotted, and
/// the gaps between.
fn snapshots_of(
    percent_of_state: u64,
    log_bytes_max: u64,
    puts: usize,
) -> (Vec<LogIndex>, Vec<u64>) {
    let mut replica = open(&SimFs::new(), percent_of_state, log_bytes_max);
    let snapshots = put_and_watch_snapshots(&mut replica, puts);
    let gaps = gaps(&snapshots);
    (snapshots, gaps)
}

#[test]
fn without_the_size_rule_a_snapshot_comes_every_snapshot_every_entries() {
    let (snapshots, gaps) = snapshots_of(0, u64::MAX, 200);
    assert!(gaps.len() >= 30, "snapshots at {snapshots:?}");
    assert!(
        gaps.iter().all(|&gap| gap == EVERY_ENTRIES),
        "gaps {gaps:?}"
    );
}

#[test]
fn with_the_size_rule_snapshots_space_out_as_the_state_grows() {
    let (snapshots, gaps) = snapshots_of(100, u64::MAX, 400);
    // Each put adds about as many bytes to the state as to the log: the log must grow as
    // large as the whole state before the next snapshot, so the gaps roughly double.
    assert!(gaps.len() >= 3, "snapshots at {snapshots:?}");
    assert!(
        gaps.iter().all(|&gap| gap >= EVERY_ENTRIES),
        "gaps {gaps:?}"
    );
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "gaps {gaps:?}");
    assert!(gaps[gaps.len() - 1] >= 4 * gaps[0], "gaps {gaps:?}");
    assert!(snapshots.len() < 20, "snapshots at {snapshots:?}");
}

#[test]
fn the_log_bytes_bound_caps_the_spacing() {
    // About 125 payload bytes a put (a 100-byte value, its key and the command's framing).
    let log_bytes_max = 3_000;
    let (snapshots, gaps) = snapshots_of(100, log_bytes_max, 400);
    assert!(gaps.len() >= 10, "snapshots at {snapshots:?}");
    let widest = *gaps.iter().max().unwrap();
    assert!(
        widest > EVERY_ENTRIES && widest <= log_bytes_max / VALUE_BYTES as u64 + 1,
        "gaps {gaps:?}"
    );
    assert!(
        gaps[gaps.len() - 1] == gaps[gaps.len() - 2],
        "gaps {gaps:?}"
    );
}

#[test]
fn a_restarted_replica_keeps_spacing_by_the_snapshot_it_recovered() {
    let fs = SimFs::new();
    let mut replica = open(&fs, 100, u64::MAX);
    let before = put_and_watch_snapshots(&mut replica, 300);
    let last_gap = *gaps(&before).last().unwrap();
    drop(replica);
    let mut replica = open(&fs, 100, u64::MAX);
    // The next gap is wider than the last (the state grew): it comes within three times it.
    let after = put_and_watch_snapshots(&mut replica, 3 * last_gap as usize);
    let next = after.first().expect("a snapshot after the restart");
    assert!(
        next.0 - before.last().unwrap().0 >= last_gap,
        "before the restart {before:?}, after it {after:?}"
    );
}
