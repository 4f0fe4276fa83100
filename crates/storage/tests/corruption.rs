//! Media faults: bit flips and truncations at random offsets of WAL segments, snapshots and the
//! hard state are detected and reported (an error, or a tail truncation when the damage is at
//! the tail of the log), and damaged bytes are never returned as data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_storage::{
    load_hard_state, save_hard_state, Fs, HardStateRecord, Record, SimFs, SnapshotConfig,
    SnapshotMeta, SnapshotStore, StorageError, Wal, WalConfig, HARD_STATE_FILE_NAME,
    SEGMENT_HEADER_BYTES,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const WAL_DIR: &str = "/node/wal";
const SNAPSHOT_DIR: &str = "/node/snap";

fn config() -> WalConfig {
    WalConfig {
        segment_bytes_max: SEGMENT_HEADER_BYTES + 300,
        record_bytes_max: 120,
        index_stride_bytes: 100,
        ..WalConfig::default()
    }
}

fn records_strategy() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..40).prop_map(|payloads| {
        payloads
            .into_iter()
            .enumerate()
            .map(|(position, payload)| {
                let index = position as u64 + 1;
                Record::new(index, 1 + index / 10, Bytes::from(payload))
            })
            .collect()
    })
}

/// A log holding `records`, and its segment files in order.
fn written_log(records: &[Record]) -> (SimFs, Vec<PathBuf>) {
    let fs = SimFs::new();
    let mut wal = Wal::open(fs.clone(), Path::new(WAL_DIR), config()).unwrap();
    for batch in records.chunks(3) {
        wal.append(batch).unwrap();
    }
    let mut segments: Vec<PathBuf> = fs
        .paths()
        .into_iter()
        .filter(|path| path.starts_with(WAL_DIR))
        .collect();
    segments.sort();
    (fs, segments)
}

/// Reopens the damaged log: an error, or a prefix of `records` that lost at most what the
/// damage allows. Returns how many records survived, or `None` for an error.
fn reopen_and_check(fs: &SimFs, records: &[Record]) -> Option<usize> {
    match Wal::open(fs.clone(), Path::new(WAL_DIR), config()) {
        Err(StorageError::Corrupt { path, .. }) => {
            assert!(path.starts_with(WAL_DIR));
            None
        }
        Err(other) => panic!("damage must be reported as Corrupt, got {other:?}"),
        Ok(wal) => {
            wal.check_invariants();
            assert_eq!(wal.first_index(), 1);
            let read = wal
                .read_range(1, wal.last_index() + 1, u64::MAX)
                .expect("a log that opened reads back");
            assert_eq!(
                read,
                records[..read.len()],
                "damaged bytes returned as data"
            );
            Some(read.len())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn wal_bit_flip_is_an_error_or_drops_only_the_last_record(
        records in records_strategy(),
        file_choice in any::<prop::sample::Index>(),
        offset_choice in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (fs, segments) = written_log(&records);
        let path = file_choice.get(&segments).clone();
        let len = fs.file_bytes(&path).unwrap().len();
        let offset = offset_choice.index(len) as u64;
        fs.flip_bit(&path, offset, bit).unwrap();
        if let Some(survivors) = reopen_and_check(&fs, &records) {
            let is_last = Some(&path) == segments.last();
            prop_assert!(
                survivors == records.len() || (is_last && survivors == records.len() - 1),
                "flip at {}:{offset} lost {} records", path.display(), records.len() - survivors
            );
        }
    }

    #[test]
    fn wal_truncation_is_an_error_or_a_tail_truncation_of_the_last_segment(
        records in records_strategy(),
        file_choice in any::<prop::sample::Index>(),
        length_choice in any::<prop::sample::Index>(),
    ) {
        let (fs, segments) = written_log(&records);
        let path = file_choice.get(&segments).clone();
        let len = fs.file_bytes(&path).unwrap().len();
        let new_len = length_choice.index(len) as u64;
        // The last segment may end in zeros written ahead; cutting only those loses nothing.
        let only_zeros_cut = fs.file_bytes(&path).unwrap()[new_len as usize..]
            .iter()
            .all(|byte| *byte == 0);
        fs.truncate_file(&path, new_len).unwrap();
        if let Some(survivors) = reopen_and_check(&fs, &records) {
            prop_assert!(
                Some(&path) == segments.last(),
                "truncating {} (not the last segment) went unreported", path.display()
            );
            prop_assert!(
                survivors < records.len() || new_len <= SEGMENT_HEADER_BYTES || only_zeros_cut
            );
        }
    }

    #[test]
    fn snapshot_bit_flip_or_truncation_is_an_error(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        membership in prop::collection::vec(any::<u8>(), 0..50),
        offset_choice in any::<prop::sample::Index>(),
        bit in 0u8..8,
        truncate in any::<bool>(),
    ) {
        let fs = SimFs::new();
        let mut store =
            SnapshotStore::open(fs.clone(), Path::new(SNAPSHOT_DIR), SnapshotConfig::default())
                .unwrap();
        let meta = SnapshotMeta { last_index: 7, last_term: 3, membership: Bytes::from(membership) };
        store.save(&meta, &data).unwrap();
        let path = fs.paths().into_iter().find(|path| path.starts_with(SNAPSHOT_DIR)).unwrap();
        let len = fs.file_bytes(&path).unwrap().len();
        let offset = offset_choice.index(len) as u64;
        if truncate {
            fs.truncate_file(&path, offset).unwrap();
        } else {
            fs.flip_bit(&path, offset, bit).unwrap();
        }
        match store.latest_snapshot() {
            Err(StorageError::Corrupt { path: reported, .. }) => prop_assert_eq!(reported, path),
            Err(other) => prop_assert!(false, "expected Corrupt, got {:?}", other),
            Ok(_) => prop_assert!(false, "damage at {} went undetected", offset),
        }
    }

    #[test]
    fn snapshot_damaged_in_transit_is_never_installed(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        offset_choice in any::<prop::sample::Index>(),
        bit in 0u8..8,
        chunk_bytes in 1u64..500,
    ) {
        let sender_fs = SimFs::new();
        let mut sender =
            SnapshotStore::open(sender_fs, Path::new(SNAPSHOT_DIR), SnapshotConfig::default())
                .unwrap();
        let meta = SnapshotMeta { last_index: 9, last_term: 2, membership: Bytes::new() };
        sender.save(&meta, &data).unwrap();
        let reader = sender.latest_snapshot().unwrap().unwrap();
        let mut bytes = reader.read_chunk(0, u64::MAX).unwrap();
        let offset = offset_choice.index(bytes.len());
        bytes[offset] ^= 1 << bit;

        let receiver_fs = SimFs::new();
        let mut receiver = SnapshotStore::open(
            receiver_fs.clone(),
            Path::new(SNAPSHOT_DIR),
            SnapshotConfig::default(),
        )
        .unwrap();
        let mut writer = receiver.begin_receive().unwrap();
        let mut refused = false;
        for chunk in bytes.chunks(chunk_bytes as usize) {
            match writer.write_chunk(writer.received_bytes(), chunk) {
                Ok(()) => {}
                Err(StorageError::InvalidSnapshot { .. }) => {
                    refused = true;
                    break;
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        if refused {
            writer.abort().unwrap();
        } else {
            let finished = writer.finish();
            prop_assert!(
                matches!(finished, Err(StorageError::InvalidSnapshot { .. })),
                "flip at {} installed", offset
            );
        }
        prop_assert!(receiver.latest_snapshot().unwrap().is_none());
        prop_assert!(receiver_fs.list(Path::new(SNAPSHOT_DIR)).unwrap().is_empty());
    }

    #[test]
    fn hard_state_bit_flip_or_truncation_is_an_error(
        term in any::<u64>(),
        vote in any::<u64>(),
        commit in any::<u64>(),
        offset in 0u64..44,
        bit in 0u8..8,
        truncate in any::<bool>(),
    ) {
        let fs = SimFs::new();
        let dir = Path::new("/node");
        fs.create_dir_all(dir).unwrap();
        save_hard_state(&fs, dir, &HardStateRecord { term, vote, commit }).unwrap();
        let path = dir.join(HARD_STATE_FILE_NAME);
        if truncate {
            fs.truncate_file(&path, offset).unwrap();
        } else {
            fs.flip_bit(&path, offset, bit).unwrap();
        }
        let loaded = load_hard_state(&fs, dir);
        prop_assert!(matches!(loaded, Err(StorageError::Corrupt { .. })), "{:?}", loaded);
    }
}
