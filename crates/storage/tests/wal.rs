//! The WAL's rules, one test each: durability, group commit, rollover, recovery, truncation,
//! compaction, limits, and the two failure modes (fsync error poisons, full disk does not).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_storage::fs::FsFile;
use chorus_storage::{
    DecodeError, Fs, RealFs, Record, SimFs, StorageError, Wal, WalConfig, SEGMENT_HEADER_BYTES,
};
use std::path::{Path, PathBuf};

const DIR: &str = "/node/wal";

fn dir() -> &'static Path {
    Path::new(DIR)
}

/// Small segments, so a few records roll over: 8 records of 8 bytes of payload per segment.
fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes_max: SEGMENT_HEADER_BYTES + 8 * 36,
        record_bytes_max: 128,
        index_stride_bytes: 64,
        ..WalConfig::default()
    }
}

fn record(index: u64, term: u64) -> Record {
    Record::new(index, term, Bytes::from(format!("entry{index:03}")))
}

fn records(from: u64, to: u64, term: u64) -> Vec<Record> {
    (from..=to).map(|index| record(index, term)).collect()
}

fn open(fs: &SimFs) -> Wal<SimFs> {
    Wal::open(fs.clone(), dir(), small_config()).unwrap()
}

/// Appends at the end of the file: no zeros written ahead, so the file ends where the log does.
fn open_without_preallocation(fs: &SimFs) -> Wal<SimFs> {
    let config = WalConfig {
        preallocate_bytes: 0,
        ..small_config()
    };
    Wal::open(fs.clone(), dir(), config).unwrap()
}

fn read_all(wal: &Wal<impl Fs>) -> Vec<Record> {
    wal.read_range(wal.first_index(), wal.last_index() + 1, u64::MAX)
        .unwrap()
}

fn segment_files(fs: &SimFs) -> Vec<String> {
    fs.list(dir()).unwrap()
}

fn segment_path(first_index: u64) -> PathBuf {
    dir().join(format!("{first_index:020}.log"))
}

#[test]
fn new_log_is_empty_and_starts_at_index_one() {
    let fs = SimFs::new();
    let wal = open(&fs);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    assert_eq!(segment_files(&fs), vec!["00000000000000000001.log"]);
}

#[test]
fn appended_records_read_back() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    wal.append(&records(4, 5, 2)).unwrap();
    assert_eq!(
        read_all(&wal),
        [records(1, 3, 1), records(4, 5, 2)].concat()
    );
    assert_eq!(wal.read_range(2, 4, u64::MAX).unwrap(), records(2, 3, 1));
    wal.check_invariants();
}

#[test]
fn append_is_durable_when_it_returns() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    // Lose everything that was not synced.
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 20, 1));
}

#[test]
fn append_batch_costs_one_fdatasync() {
    let fs = SimFs::new();
    let mut wal = Wal::open(fs.clone(), dir(), WalConfig::default()).unwrap();
    for batch in [1u64, 16, 256] {
        let first = wal.last_index() + 1;
        let before = fs.stats();
        wal.append(&records(first, first + batch - 1, 1)).unwrap();
        let after = fs.stats();
        assert_eq!(after.file_syncs - before.file_syncs, 1, "batch of {batch}");
        assert_eq!(after.dir_syncs, before.dir_syncs);
    }
}

#[test]
fn segments_roll_over_at_segment_bytes_max() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    assert_eq!(
        segment_files(&fs),
        vec![
            "00000000000000000001.log",
            "00000000000000000009.log",
            "00000000000000000017.log"
        ]
    );
    for path in fs.paths() {
        assert!(fs.file_bytes(&path).unwrap().len() as u64 <= small_config().segment_bytes_max);
    }
    assert_eq!(read_all(&wal), records(1, 20, 1));
    assert_eq!(wal.read_range(7, 11, u64::MAX).unwrap(), records(7, 10, 1));
    drop(wal);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 20, 1));
    wal.check_invariants();
}

#[test]
fn rollover_in_a_batch_syncs_the_closed_segment_and_the_directory() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    let before = fs.stats();
    wal.append(&records(1, 12, 1)).unwrap();
    let after = fs.stats();
    // Closed segment, new segment's header, the batch's end; the new directory entry.
    assert_eq!(after.file_syncs - before.file_syncs, 3);
    assert_eq!(after.dir_syncs - before.dir_syncs, 1);
}

#[test]
fn record_at_limit_is_accepted_and_one_past_is_refused() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    let limit = small_config().record_bytes_max;
    let payload_at_limit = (limit - 28) as usize;
    wal.append(&[Record::new(1, 1, vec![1u8; payload_at_limit])])
        .unwrap();
    let error = wal
        .append(&[Record::new(2, 1, vec![1u8; payload_at_limit + 1])])
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::RecordTooLarge {
            index: 2,
            record_bytes,
            record_bytes_max,
        } if record_bytes == limit + 1 && record_bytes_max == limit
    ));
    assert_eq!(wal.last_index(), 1, "nothing of a refused batch is written");
}

#[test]
#[should_panic(expected = "append must continue the log")]
fn append_with_a_gap_is_a_programmer_error() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(2, 3, 1)).unwrap();
}

#[test]
#[should_panic(expected = "appended indexes must be contiguous")]
fn append_of_non_contiguous_batch_is_a_programmer_error() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&[record(1, 1), record(3, 1)]).unwrap();
}

#[test]
#[should_panic(expected = "append of term 1 after term 2")]
fn append_of_a_smaller_term_is_a_programmer_error() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&[record(1, 2)]).unwrap();
    wal.append(&[record(2, 1)]).unwrap();
}

#[test]
fn torn_tail_is_truncated_on_open_durably() {
    let fs = SimFs::new();
    let mut wal = open_without_preallocation(&fs);
    wal.append(&records(1, 5, 1)).unwrap();
    drop(wal);
    let path = segment_path(1);
    let length = fs.file_bytes(&path).unwrap().len() as u64;
    fs.truncate_file(&path, length - 3).unwrap();
    let mut wal = open_without_preallocation(&fs);
    assert_eq!(read_all(&wal), records(1, 4, 1));
    // The truncation itself survives a crash, and appends continue from there.
    wal.append(&records(5, 6, 2)).unwrap();
    fs.crash(|_| 0);
    let wal = open_without_preallocation(&fs);
    assert_eq!(
        read_all(&wal),
        [records(1, 4, 1), records(5, 6, 2)].concat()
    );
}

#[test]
fn zeros_written_ahead_are_kept_on_open_and_cut_off_a_closed_segment() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    let log_end = SEGMENT_HEADER_BYTES + 3 * 36;
    let bytes = fs.file_bytes(&segment_path(1)).unwrap();
    assert!(bytes.len() as u64 > log_end, "no zeros written ahead");
    assert!(bytes[log_end as usize..].iter().all(|byte| *byte == 0));
    drop(wal);
    // Reopening needs no repair (so no fsync: it works while syncs fail) and keeps the zeros.
    fs.set_syncs_fail(true);
    let wal = open(&fs);
    fs.set_syncs_fail(false);
    assert_eq!(read_all(&wal), records(1, 3, 1));
    assert_eq!(fs.file_bytes(&segment_path(1)).unwrap(), bytes);
    drop(wal);
    // Appends go over the zeros; a crash keeps what was synced; a rollover cuts the zeros
    // off the segment it closes.
    let mut wal = open(&fs);
    wal.append(&records(4, 10, 1)).unwrap();
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 10, 1));
    let closed = fs.file_bytes(&segment_path(1)).unwrap().len() as u64;
    assert_eq!(closed, SEGMENT_HEADER_BYTES + 8 * 36);
}

#[test]
fn a_zero_filled_tail_is_the_end_of_the_log_and_appends_go_over_it() {
    let fs = SimFs::new();
    let mut wal = open_without_preallocation(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    drop(wal);
    // A crash can leave the length of an append on disk without its bytes: that reads as
    // zeros written ahead, the end of the log.
    let mut file = fs.open(&segment_path(1)).unwrap();
    file.append(&[0u8; 50]).unwrap();
    file.sync_data().unwrap();
    let mut wal = open_without_preallocation(&fs);
    assert_eq!(read_all(&wal), records(1, 3, 1));
    wal.append(&records(4, 4, 1)).unwrap();
    fs.crash(|_| 0);
    let wal = open_without_preallocation(&fs);
    assert_eq!(read_all(&wal), records(1, 4, 1));
}

#[test]
fn checksum_failure_of_the_last_record_is_a_torn_tail() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    drop(wal);
    let last_payload_byte = SEGMENT_HEADER_BYTES + 3 * 36 - 1;
    fs.flip_bit(&segment_path(1), last_payload_byte, 4).unwrap();
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 2, 1));
}

#[test]
fn corrupt_record_before_the_tail_is_an_error_naming_file_and_offset() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    drop(wal);
    // A payload byte of the first record: its checksum fails and good records follow.
    fs.flip_bit(&segment_path(1), SEGMENT_HEADER_BYTES + 30, 0)
        .unwrap();
    let error = Wal::open(fs.clone(), dir(), small_config()).err().unwrap();
    match error {
        StorageError::Corrupt {
            path,
            offset,
            error,
        } => {
            assert_eq!(path, segment_path(1));
            assert_eq!(offset, SEGMENT_HEADER_BYTES);
            assert_eq!(error, DecodeError::BodyChecksum);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_tail_of_an_earlier_segment_is_an_error_not_a_truncation() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 12, 1)).unwrap();
    drop(wal);
    let first = segment_path(1);
    let length = fs.file_bytes(&first).unwrap().len() as u64;
    fs.truncate_file(&first, length - 3).unwrap();
    let error = Wal::open(fs.clone(), dir(), small_config()).err().unwrap();
    assert!(matches!(error, StorageError::Corrupt { path, .. } if path == first));
}

#[test]
fn missing_segment_is_an_error() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    drop(wal);
    fs.remove(&segment_path(9)).unwrap();
    let error = Wal::open(fs.clone(), dir(), small_config()).err().unwrap();
    assert!(matches!(
        error,
        StorageError::Corrupt {
            error: DecodeError::MissingSegment {
                expected_first_index: 9,
                found_first_index: 17
            },
            ..
        }
    ));
}

#[test]
fn files_that_are_not_segments_are_ignored() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 2, 1)).unwrap();
    drop(wal);
    fs.create(&dir().join("notes.txt")).unwrap();
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 2, 1));
}

#[test]
fn truncate_suffix_removes_entries_and_appends_continue_from_there() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    wal.truncate_suffix(6).unwrap();
    assert_eq!(wal.last_index(), 5);
    assert_eq!(segment_files(&fs), vec!["00000000000000000001.log"]);
    wal.append(&records(6, 7, 2)).unwrap();
    let expected = [records(1, 5, 1), records(6, 7, 2)].concat();
    assert_eq!(read_all(&wal), expected);
    // Durable: the removed entries never come back.
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), expected);
    wal.check_invariants();
}

#[test]
fn truncate_suffix_at_a_segment_boundary_and_of_everything() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    wal.truncate_suffix(9).unwrap();
    assert_eq!(wal.last_index(), 8);
    wal.append(&records(9, 10, 3)).unwrap();
    wal.truncate_suffix(1).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    // Any term may follow once the log is empty.
    wal.append(&records(1, 1, 2)).unwrap();
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 1, 2));
}

#[test]
fn truncate_suffix_at_the_end_is_a_no_op() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    let before = fs.stats();
    wal.truncate_suffix(4).unwrap();
    assert_eq!(fs.stats(), before);
}

#[test]
#[should_panic(expected = "outside the log")]
fn truncate_suffix_below_the_first_index_is_a_programmer_error() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    wal.compact_prefix(10).unwrap();
    wal.truncate_suffix(2).unwrap();
}

#[test]
fn compact_prefix_removes_whole_segments_below_the_mark() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    wal.compact_prefix(12).unwrap();
    // Segment 1..=8 goes; 9..=16 holds 13..=16, so it stays.
    assert_eq!(wal.first_index(), 9);
    assert_eq!(wal.last_index(), 20);
    assert!(matches!(
        wal.read_range(8, 10, u64::MAX),
        Err(StorageError::Compacted {
            index: 8,
            first_index: 9
        })
    ));
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(9, 20, 1));
}

#[test]
fn compact_prefix_to_the_end_or_past_it_restarts_the_log() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    // A follower installs a snapshot at 30.
    wal.compact_prefix(30).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (31, 30));
    assert_eq!(segment_files(&fs), vec!["00000000000000000031.log"]);
    fs.crash(|_| 0);
    let mut wal = open(&fs);
    assert_eq!((wal.first_index(), wal.last_index()), (31, 30));
    wal.append(&records(31, 32, 1)).unwrap();
    wal.compact_prefix(32).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (33, 32));
    wal.compact_prefix(32).unwrap();
    assert_eq!(segment_files(&fs), vec!["00000000000000000033.log"]);
}

#[test]
fn interrupted_restart_of_the_log_is_finished_on_open() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 20, 1)).unwrap();
    // Create the new segment (create, header, fdatasync, directory fsync), then cut the power
    // before the old segments are removed.
    fs.halt_after_operations(Some(4));
    assert!(wal.compact_prefix(40).is_err());
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!((wal.first_index(), wal.last_index()), (41, 40));
    assert_eq!(segment_files(&fs), vec!["00000000000000000041.log"]);
}

#[test]
fn read_range_outside_the_log_is_an_error() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 3, 1)).unwrap();
    assert!(matches!(
        wal.read_range(2, 5, u64::MAX),
        Err(StorageError::Unavailable {
            index: 4,
            last_index: 3
        })
    ));
    assert_eq!(wal.read_range(4, 4, u64::MAX).unwrap(), vec![]);
}

#[test]
fn read_range_stops_at_bytes_max_but_returns_at_least_one_record() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 10, 1)).unwrap();
    let record_bytes = record(1, 1).encoded_bytes();
    assert_eq!(wal.read_range(1, 11, 0).unwrap(), records(1, 1, 1));
    assert_eq!(
        wal.read_range(1, 11, 3 * record_bytes).unwrap(),
        records(1, 3, 1)
    );
    assert_eq!(
        wal.read_range(1, 11, 3 * record_bytes + 1).unwrap(),
        records(1, 3, 1)
    );
}

#[test]
fn read_range_after_reopen_finds_records_between_checkpoints() {
    let fs = SimFs::new();
    let config = WalConfig {
        index_stride_bytes: 200,
        ..WalConfig::default()
    };
    let mut wal = Wal::open(fs.clone(), dir(), config.clone()).unwrap();
    let all: Vec<Record> = (1..=300).map(|index| record(index, index / 50)).collect();
    for batch in all.chunks(7) {
        wal.append(batch).unwrap();
    }
    drop(wal);
    let wal = Wal::open(fs.clone(), dir(), config).unwrap();
    for (lo, hi) in [(1, 2), (5, 9), (99, 180), (299, 301), (1, 301)] {
        let got = wal.read_range(lo, hi, u64::MAX).unwrap();
        assert_eq!(got, all[(lo - 1) as usize..(hi - 1) as usize], "{lo}..{hi}");
    }
}

#[test]
fn fsync_error_poisons_the_log() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 2, 1)).unwrap();
    fs.set_syncs_fail(true);
    assert!(matches!(
        wal.append(&records(3, 4, 1)),
        Err(StorageError::Fatal { .. })
    ));
    assert!(wal.is_poisoned());
    fs.set_syncs_fail(false);
    // Refused even though the disk works again: what reached it is unknown.
    assert!(matches!(
        wal.append(&records(3, 4, 1)),
        Err(StorageError::Fatal { .. })
    ));
    assert!(matches!(
        wal.truncate_suffix(2),
        Err(StorageError::Fatal { .. })
    ));
    assert!(matches!(
        wal.compact_prefix(1),
        Err(StorageError::Fatal { .. })
    ));
    // A restart recovers what was durable.
    fs.crash(|_| 0);
    let wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 2, 1));
}

#[test]
fn full_disk_leaves_no_part_of_the_batch_and_the_log_works_when_space_returns() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 2, 1)).unwrap();
    // Room for one and a half records of a batch of ten.
    fs.set_space_bytes_left(Some(54));
    let error = wal.append(&records(3, 12, 1)).unwrap_err();
    assert!(matches!(error, StorageError::NoSpace { .. }), "{error:?}");
    assert!(!wal.is_poisoned());
    assert_eq!(read_all(&wal), records(1, 2, 1));
    wal.check_invariants();
    // Not half-visible after a restart either.
    fs.crash(|_| 0);
    let mut wal = open(&fs);
    assert_eq!(read_all(&wal), records(1, 2, 1));
    assert!(matches!(
        wal.append(&records(3, 12, 1)),
        Err(StorageError::NoSpace { .. })
    ));
    fs.set_space_bytes_left(None);
    wal.append(&records(3, 12, 1)).unwrap();
    assert_eq!(read_all(&wal), records(1, 12, 1));
}

#[test]
fn full_disk_during_rollover_removes_the_new_segment() {
    let fs = SimFs::new();
    let mut wal = open(&fs);
    wal.append(&records(1, 8, 1)).unwrap();
    fs.set_space_bytes_left(Some(10));
    assert!(matches!(
        wal.append(&records(9, 9, 1)),
        Err(StorageError::NoSpace { .. })
    ));
    assert_eq!(segment_files(&fs), vec!["00000000000000000001.log"]);
    fs.set_space_bytes_left(None);
    wal.append(&records(9, 9, 1)).unwrap();
    assert_eq!(read_all(&wal), records(1, 9, 1));
}

#[test]
fn real_fs_log_survives_reopen() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wal");
    let mut wal = Wal::open(RealFs, &dir, small_config()).unwrap();
    wal.append(&records(1, 20, 1)).unwrap();
    wal.truncate_suffix(15).unwrap();
    wal.compact_prefix(9).unwrap();
    drop(wal);
    let wal = Wal::open(RealFs, &dir, small_config()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (9, 14));
    assert_eq!(read_all(&wal), records(9, 14, 1));
}

#[test]
fn full_disk_on_first_open_is_no_space_and_a_retry_succeeds() {
    let fs = SimFs::new();
    fs.set_space_bytes_left(Some(10));
    assert!(matches!(
        Wal::open(fs.clone(), dir(), small_config()),
        Err(StorageError::NoSpace { .. })
    ));
    fs.set_space_bytes_left(None);
    let mut wal = open(&fs);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    wal.append(&records(1, 2, 1)).unwrap();
    assert_eq!(read_all(&wal), records(1, 2, 1));
}
