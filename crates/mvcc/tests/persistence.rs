//! The redb backend across reopen and crash, and snapshots across backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chorus_mvcc::{
    decode_snapshot, Backend, BackendError, Config, DeleteRangeRequest, Error, KeyRange,
    MemoryBackend, Meta, PutRequest, RangeRequest, Record, RedbBackend, RedbConfig, RequestOp,
    Revision, SnapshotError, Store, TxnRequest, WriteBatch,
};
use common::{kv, memory, Harness};
use std::path::Path;

fn open_redb(path: &Path, config: RedbConfig) -> Harness<RedbBackend> {
    let backend = RedbBackend::open(path, config).unwrap();
    Harness::new(Store::open(backend, Config::default()).unwrap())
}

/// Builds some history: puts, a delete, a transaction, a compaction.
fn write_history<B: Backend>(h: &mut Harness<B>) {
    for round in 0..20 {
        h.put(&format!("key{:02}", round % 7), &format!("value{round}"));
    }
    h.delete("key03");
    h.txn(TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest {
                lease: 5,
                ..PutRequest::new("leased", "x")
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"key05".to_vec(),
                range_end: b"key07".to_vec(),
                prev_kv: false,
            }),
        ],
        ..TxnRequest::default()
    });
    h.try_compact(10).unwrap();
    h.put("key01", "after compaction");
}

/// Everything a client can observe: every read at every revision held, and the event feed.
fn observe<B: Backend>(store: &Store<B>) -> Vec<String> {
    let mut seen = vec![format!(
        "current {} compact {:?} applied {}",
        store.current_revision(),
        store.compact_revision(),
        store.applied_index()
    )];
    let lowest = store.compact_revision().unwrap_or(1).max(1);
    for revision in lowest..=store.current_revision() {
        let request = RangeRequest {
            revision,
            ..RangeRequest::range(&KeyRange::all())
        };
        seen.push(format!(
            "{revision}: {:?}",
            store.range(&request).unwrap().kvs
        ));
    }
    let events = store
        .events_since(lowest, &KeyRange::all(), usize::MAX)
        .unwrap();
    seen.push(format!("{events:?}"));
    seen
}

#[test]
fn redb_reopen_keeps_data_and_applied_index_and_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mvcc.redb");
    let mut h = open_redb(&path, RedbConfig::default());
    write_history(&mut h);
    h.store.record_applied_index(100).unwrap();
    let before = observe(&h.store);
    let keys_before = h.store.key_count();
    drop(h);

    let h = open_redb(&path, RedbConfig::default());
    h.store.check_invariants();
    assert_eq!(h.store.applied_index(), 100);
    assert_eq!(h.store.durable_applied_index(), 100);
    assert_eq!(h.store.key_count(), keys_before);
    assert_eq!(observe(&h.store), before);
    assert_eq!(h.get("leased").unwrap().lease, 5);
}

#[test]
fn redb_and_memory_backends_behave_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut on_disk = open_redb(&dir.path().join("mvcc.redb"), RedbConfig::default());
    let mut in_memory = memory();
    write_history(&mut on_disk);
    write_history(&mut in_memory);
    assert_eq!(observe(&on_disk.store), observe(&in_memory.store));
    assert_eq!(
        on_disk.store.snapshot_bytes().unwrap(),
        in_memory.store.snapshot_bytes().unwrap()
    );
}

#[test]
fn redb_writes_become_durable_every_interval_or_on_persist() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbConfig {
        durable_commit_interval_batches: 3,
        ..RedbConfig::default()
    };
    let mut h = open_redb(&dir.path().join("mvcc.redb"), config);
    h.put("a", "1");
    h.put("a", "2");
    assert_eq!(
        (h.store.applied_index(), h.store.durable_applied_index()),
        (2, 0)
    );
    h.put("a", "3");
    assert_eq!(
        h.store.durable_applied_index(),
        3,
        "the third write commits durably"
    );
    h.put("a", "4");
    assert_eq!(h.store.durable_applied_index(), 3);
    assert_eq!(h.store.persist().unwrap(), 4);
    assert_eq!(h.store.durable_applied_index(), 4);
}

#[test]
fn redb_writes_before_a_flush_are_read_back_and_a_flush_is_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open_redb(&dir.path().join("mvcc.redb"), RedbConfig::default());
    h.put("a", "1");
    h.put("b", "2");
    h.put("a", "3");
    // Pending in one transaction, not committed: reads, the meta and scans see them.
    assert_eq!(h.get("a").unwrap().value, b"3".to_vec());
    h.store.check_invariants();
    h.store.flush().unwrap();
    assert_eq!(h.get("b").unwrap().value, b"2".to_vec());
    assert_eq!(
        h.store.durable_applied_index(),
        0,
        "a flush commits without an fsync"
    );
    h.put("c", "4");
    assert_eq!(h.store.persist().unwrap(), 4);
    h.store.check_invariants();
}

/// The child side of `redb_crash_loses_at_most_the_buffered_tail`: does nothing unless the
/// parent set the directory to crash in.
#[test]
fn redb_crash_child() {
    let Ok(directory) = std::env::var("CHORUS_MVCC_CRASH_DIR") else {
        return;
    };
    let path = Path::new(&directory).join("mvcc.redb");
    let mut h = open_redb(
        &path,
        RedbConfig {
            durable_commit_interval_batches: 1_000,
            ..RedbConfig::default()
        },
    );
    for round in 1..=10 {
        h.put(&format!("k{round:02}"), "durable");
    }
    h.store.persist().unwrap();
    for round in 11..=15 {
        h.put(&format!("k{round:02}"), "buffered");
    }
    std::process::abort();
}

#[test]
fn redb_crash_loses_at_most_the_buffered_tail_and_never_splits_data_from_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "redb_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHORUS_MVCC_CRASH_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");

    let h = open_redb(&dir.path().join("mvcc.redb"), RedbConfig::default());
    h.store.check_invariants();
    let applied = h.store.applied_index();
    assert!((10..=15).contains(&applied), "applied index {applied}");
    assert_eq!(
        h.store.current_revision(),
        applied as i64 + 1,
        "one revision per put"
    );
    for round in 1..=15u64 {
        let present = h.get(&format!("k{round:02}")).is_some();
        assert_eq!(
            present,
            round <= applied,
            "k{round:02} with applied index {applied}"
        );
    }
}

#[test]
fn a_snapshot_restores_the_same_store_on_either_backend() {
    let mut source = memory();
    write_history(&mut source);
    let bytes = source.store.snapshot_bytes().unwrap();

    let mut in_memory = memory();
    in_memory.put("overwritten", "x");
    in_memory.store.restore_snapshot(&bytes).unwrap();
    in_memory.store.check_invariants();
    assert_eq!(observe(&in_memory.store), observe(&source.store));
    assert!(in_memory.get("overwritten").is_none());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mvcc.redb");
    let mut on_disk = open_redb(&path, RedbConfig::default());
    on_disk.put("overwritten", "x");
    let mut reader = bytes.as_slice();
    on_disk
        .store
        .restore_snapshot_from_reader(&mut reader, bytes.len() as u64)
        .unwrap();
    assert_eq!(
        on_disk.store.durable_applied_index(),
        source.store.applied_index()
    );
    drop(on_disk);
    let reopened = open_redb(&path, RedbConfig::default());
    reopened.store.check_invariants();
    assert_eq!(observe(&reopened.store), observe(&source.store));

    let snapshot = decode_snapshot(&bytes).unwrap();
    assert_eq!(snapshot.meta.applied_index, source.store.applied_index());
    assert_eq!(snapshot.records.len(), source.store.revision_count());
}

#[test]
fn writes_go_on_after_a_restore() {
    let mut source = memory();
    write_history(&mut source);
    let mut restored = memory();
    restored
        .store
        .restore_snapshot(&source.store.snapshot_bytes().unwrap())
        .unwrap();
    restored.next_index = restored.store.applied_index() + 1;
    assert_eq!(source.put("key01", "next"), restored.put("key01", "next"));
    assert_eq!(restored.get("key01"), source.get("key01"));
}

#[test]
fn a_corrupt_or_truncated_snapshot_is_refused_and_changes_nothing() {
    let mut source = memory();
    write_history(&mut source);
    let bytes = source.store.snapshot_bytes().unwrap();
    let mut target = memory();
    target.put("mine", "1");
    let before = observe(&target.store);

    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let error = target.store.restore_snapshot(&flipped).unwrap_err();
    assert!(
        matches!(&error, SnapshotError::Invalid(reason) if reason.contains("checksum")),
        "{error}"
    );
    for cut in [0, 7, 40, bytes.len() - 1] {
        assert!(matches!(
            target.store.restore_snapshot(&bytes[..cut]),
            Err(SnapshotError::Invalid(_))
        ));
    }
    assert_eq!(observe(&target.store), before);
}

#[test]
fn a_snapshot_over_the_size_limit_is_refused() {
    let mut source = memory();
    write_history(&mut source);
    let bytes = source.store.snapshot_bytes().unwrap();
    let mut target = memory();
    let mut reader = bytes.as_slice();
    let error = target
        .store
        .restore_snapshot_from_reader(&mut reader, bytes.len() as u64 - 1)
        .unwrap_err();
    assert!(matches!(error, SnapshotError::TooLarge { .. }), "{error}");
}

#[test]
fn opening_a_backend_whose_records_contradict_each_other_is_fatal() {
    let mut backend = MemoryBackend::new();
    let record = Record::Put(kv("a", "1", 2, 2, 2));
    let batch = WriteBatch {
        puts: vec![(Revision::new(2, 0), record)],
        removes: vec![],
        side_puts: vec![],
        side_removes: vec![],
        meta: Meta {
            applied_index: 1,
            current_revision: 2,
            compact_revision: None,
        },
    };
    backend.write(batch).unwrap();
    match Store::open(backend, Config::default()) {
        Err(Error::Fatal(BackendError::Corrupt(reason))) => {
            assert!(reason.contains("version"), "{reason}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a corrupt backend"),
    }

    let mut backend = MemoryBackend::new();
    let batch = WriteBatch {
        puts: vec![(Revision::new(2, 0), Record::Put(kv("a", "1", 2, 2, 1)))],
        removes: vec![],
        side_puts: vec![],
        side_removes: vec![],
        meta: Meta {
            applied_index: 1,
            current_revision: 3,
            compact_revision: None,
        },
    };
    backend.write(batch).unwrap();
    assert!(
        Store::open(backend, Config::default()).is_err(),
        "revision 3 has no record"
    );
}

mod decoder {
    use super::*;
    use proptest::prelude::*;

    fn valid_snapshot() -> Vec<u8> {
        let mut h = memory();
        write_history(&mut h);
        h.store.snapshot_bytes().unwrap()
    }

    /// Re-seals `bytes` with a correct checksum, so that decoding gets past it.
    fn reseal(bytes: &mut [u8]) {
        let body = bytes.len() - 4;
        let checksum = crc32c::crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn decode_snapshot_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_snapshot(&bytes);
        }

        #[test]
        fn decode_snapshot_never_panics_on_random_bytes_behind_a_valid_header(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = b"chorusmv".to_vec();
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&tail);
            bytes.extend_from_slice(&[0; 4]);
            reseal(&mut bytes);
            let _ = decode_snapshot(&bytes);
        }

        #[test]
        fn decode_snapshot_refuses_or_survives_mutations_with_a_valid_checksum(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = valid_snapshot();
            for (at, value) in edits {
                let at = at.index(bytes.len() - 4);
                bytes[at] = value;
            }
            if truncate {
                let keep = cut.index(bytes.len() - 4);
                let body = bytes.len() - 4;
                bytes.drain(keep..body);
            }
            reseal(&mut bytes);
            if let Ok(snapshot) = decode_snapshot(&bytes) {
                // Whatever decodes is a consistent store.
                let mut store = Store::open(MemoryBackend::new(), Config::default()).unwrap();
                store.restore_snapshot(&bytes).unwrap();
                store.check_invariants();
                prop_assert_eq!(store.revision_count(), snapshot.records.len());
            }
        }
    }
}
