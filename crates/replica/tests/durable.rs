//! The durable state on its own: what `persist` and `compact` write is what `open` recovers,
//! with the power cut at every disk operation of a snapshot installation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_raft::{
    Entry, EntryPayload, HardState, LogIndex, Membership, NodeId, Ready, RestoreState, Snapshot,
    SnapshotMeta, Term,
};
use chorus_replica::{Durable, DurableConfig};
use chorus_storage::{SimFs, WalConfig};
use std::path::Path;

const DIR: &str = "/node";

fn config() -> DurableConfig {
    DurableConfig {
        wal: WalConfig {
            segment_bytes_max: 1024,
            record_bytes_max: 512,
            index_stride_bytes: 128,
            write_buffer_bytes_max: 512,
            read_chunk_bytes: 256,
            preallocate_bytes: 512,
        },
        recovery_read_bytes_max: 300,
        ..DurableConfig::default()
    }
}

fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to)
        .map(|index| Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Normal(Bytes::from(format!("entry {index} of term {term}"))),
        })
        .collect()
}

fn open(fs: &SimFs) -> (Durable<SimFs>, RestoreState) {
    Durable::open(fs.clone(), Path::new(DIR), &config()).expect("open")
}

fn append(durable: &mut Durable<SimFs>, entries: Vec<Entry>, hard_state: Option<HardState>) {
    let ready = Ready {
        entries,
        hard_state,
        ..Ready::default()
    };
    durable.persist(&ready).expect("persist");
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(vote)),
        commit: LogIndex(commit),
    }
}

fn snapshot_at(index: u64, term: u64) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_index: LogIndex(index),
            last_term: Term(term),
            membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
        },
        data: Bytes::from(vec![7u8; 2000]),
    }
}

#[test]
fn what_is_persisted_is_recovered_after_a_crash() {
    let fs = SimFs::new();
    let (mut durable, restore) = open(&fs);
    assert!(restore.entries.is_empty() && restore.snapshot.is_none());
    append(&mut durable, entries(1, 40, 1), Some(hard_state(1, 2, 30)));
    drop(durable);
    fs.crash(|_| 0);
    let (durable, restore) = open(&fs);
    assert_eq!(restore.entries, entries(1, 40, 1));
    assert_eq!(restore.hard_state, hard_state(1, 2, 30));
    assert_eq!(durable.last_index(), LogIndex(40));
}

#[test]
fn entries_from_a_new_leader_replace_the_conflicting_suffix() {
    let fs = SimFs::new();
    let (mut durable, _) = open(&fs);
    append(&mut durable, entries(1, 20, 1), Some(hard_state(1, 1, 5)));
    append(&mut durable, entries(8, 10, 2), Some(hard_state(2, 3, 5)));
    drop(durable);
    fs.crash(|_| 0);
    let (_, restore) = open(&fs);
    let mut expected = entries(1, 7, 1);
    expected.extend(entries(8, 10, 2));
    assert_eq!(restore.entries, expected);
    assert_eq!(restore.hard_state, hard_state(2, 3, 5));
}

#[test]
fn a_local_snapshot_drops_the_log_it_covers_and_keeps_the_rest() {
    let fs = SimFs::new();
    let (mut durable, _) = open(&fs);
    append(&mut durable, entries(1, 60, 1), Some(hard_state(1, 1, 60)));
    let snapshot = snapshot_at(50, 1);
    durable
        .compact(&snapshot.meta, &snapshot.data)
        .expect("compact");
    assert_eq!(durable.snapshot_index(), LogIndex(50));
    drop(durable);
    fs.crash(|_| 0);
    let (durable, restore) = open(&fs);
    assert_eq!(restore.snapshot, Some(snapshot));
    assert_eq!(restore.entries, entries(51, 60, 1));
    durable.check_invariants();
}

#[test]
fn a_snapshot_from_the_leader_replaces_the_whole_log() {
    let fs = SimFs::new();
    let (mut durable, _) = open(&fs);
    append(&mut durable, entries(1, 30, 1), Some(hard_state(1, 1, 10)));
    let snapshot = snapshot_at(20, 2);
    let ready = Ready {
        snapshot: Some(snapshot.clone()),
        hard_state: Some(hard_state(2, 1, 20)),
        ..Ready::default()
    };
    durable.persist(&ready).expect("persist");
    append(&mut durable, entries(21, 25, 2), None);
    drop(durable);
    fs.crash(|_| 0);
    let (_, restore) = open(&fs);
    assert_eq!(restore.snapshot, Some(snapshot));
    assert_eq!(restore.entries, entries(21, 25, 2));
}

/// The power is cut after each disk operation of a snapshot installation in turn: the node
/// comes back either before it (the old log, no snapshot) or after it (the snapshot and an
/// empty log), never with the old log's entries after the new snapshot.
#[test]
fn a_crash_at_any_point_of_a_snapshot_installation_recovers_a_consistent_log() {
    let mut saw_before = false;
    let mut saw_after = false;
    for operations in 0..200 {
        let fs = SimFs::new();
        let (mut durable, _) = open(&fs);
        append(&mut durable, entries(1, 30, 1), Some(hard_state(1, 1, 10)));
        let snapshot = snapshot_at(20, 2);
        let ready = Ready {
            snapshot: Some(snapshot.clone()),
            hard_state: Some(hard_state(2, 1, 20)),
            ..Ready::default()
        };
        fs.halt_after_operations(Some(operations));
        let finished = durable.persist(&ready).is_ok();
        drop(durable);
        fs.crash(|n| n / 2);
        let (durable, restore) = open(&fs);
        durable.check_invariants();
        match &restore.snapshot {
            None => {
                saw_before = true;
                assert_eq!(
                    restore.entries,
                    entries(1, 30, 1),
                    "halt after {operations}"
                );
            }
            Some(recovered) => {
                saw_after = true;
                assert_eq!(recovered, &snapshot, "halt after {operations}");
                assert!(restore.entries.is_empty(), "halt after {operations}");
            }
        }
        if finished {
            assert!(saw_before && saw_after);
            return;
        }
    }
    panic!("the installation never finished");
}
