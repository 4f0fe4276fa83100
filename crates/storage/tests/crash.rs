//! Crash consistency of the WAL and of atomic file replacement over `SimFs`.
//!
//! A workload of appends, suffix truncations, compactions and reopens runs against a model of
//! the log. The power is cut after a chosen number of disk operations (every position, for a
//! fixed workload; a random one per case, for random workloads), with unsynced data dropped or
//! torn as a seed decides; full disks and failing fsyncs are injected too. After recovery the
//! log must be a state the model allows: everything whose operation returned Ok is there,
//! nothing that was never written is, and the operation cut short is either not applied or
//! applied in part in a way raft tolerates (a prefix of a batch; a cut at or after the
//! truncation point). Then the recovered log must take appends and keep them durably.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_storage::{
    read_file_checked, write_file_atomically, Fs, Record, SimFs, StorageError, Wal, WalConfig,
    SEGMENT_HEADER_BYTES,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

const DIR: &str = "/node/wal";

/// SplitMix64: the crash choices come from a seed.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn crash(fs: &SimFs, seed: u64) {
    let mut prng = Prng(seed);
    fs.crash(|n| prng.below(n));
}

/// Segments of a few records, so workloads roll over, truncate and compact across files.
fn config() -> WalConfig {
    WalConfig {
        segment_bytes_max: SEGMENT_HEADER_BYTES + 200,
        record_bytes_max: 100,
        index_stride_bytes: 50,
        write_buffer_bytes_max: 64,
        read_chunk_bytes: 32,
        preallocate_bytes: 64,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: u64,
        payload_bytes: usize,
        new_term: bool,
        /// Disk space left for this operation, if limited.
        space_bytes_left: Option<u64>,
    },
    /// Truncate from `last_index + 1 - back` (clamped to what may be truncated).
    TruncateSuffix {
        back: u64,
    },
    /// Compact up to `low_water_mark - 1 + forward`: past the end restarts the log.
    CompactPrefix {
        forward: u64,
    },
    Reopen,
    /// The next fsync fails.
    FailSync,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..12, 0usize..40, any::<bool>(), prop::option::weighted(0.1, 0u64..150)).prop_map(
            |(count, payload_bytes, new_term, space_bytes_left)| Op::Append {
                count,
                payload_bytes,
                new_term,
                space_bytes_left,
            }
        ),
        2 => (0u64..15).prop_map(|back| Op::TruncateSuffix { back }),
        2 => (0u64..20).prop_map(|forward| Op::CompactPrefix { forward }),
        1 => Just(Op::Reopen),
        1 => Just(Op::FailSync),
    ]
}

/// What the log must hold.
///
/// # Invariants
/// `floor <= low_water_mark <= last + 1`; `entries` holds every index in `floor..=last`
/// (some below `low_water_mark` may be gone from the real log).
#[derive(Clone, Debug)]
struct Model {
    entries: BTreeMap<u64, Record>,
    /// No index below this can be in the log (it restarted here).
    floor: u64,
    /// Every index from here to `last` must be in the log.
    low_water_mark: u64,
    last: u64,
    term: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            entries: BTreeMap::new(),
            floor: 1,
            low_water_mark: 1,
            last: 0,
            term: 1,
        }
    }

    fn from_log(records: &[Record], first_index: u64, last_index: u64) -> Self {
        Model {
            entries: records.iter().map(|r| (r.index, r.clone())).collect(),
            floor: first_index,
            low_water_mark: first_index,
            last: last_index,
            term: records.last().map_or(1, |r| r.term),
        }
    }

    fn check_invariants(&self) {
        assert!(self.floor <= self.low_water_mark && self.low_water_mark <= self.last + 1);
        for index in self.floor..=self.last {
            assert!(self.entries.contains_key(&index));
        }
    }
}

/// A state of the log that recovery may produce.
struct Allowed {
    model: Model,
    last: RangeInclusive<u64>,
}

impl Allowed {
    fn exactly(model: &Model) -> Self {
        Allowed {
            model: model.clone(),
            last: model.last..=model.last,
        }
    }

    fn accepts(&self, first: u64, last: u64, records: &[Record]) -> bool {
        self.last.contains(&last)
            && first >= self.model.floor
            && first <= self.model.low_water_mark
            && records
                .iter()
                .all(|record| self.model.entries.get(&record.index) == Some(record))
    }
}

/// An operation made concrete against the model: the call, the model after it succeeds, and
/// what a crash during it may leave.
struct Planned {
    action: Action,
    after: Model,
    on_crash: Vec<Allowed>,
}

#[derive(Debug)]
enum Action {
    Append(Vec<Record>, Option<u64>),
    TruncateSuffix(u64),
    CompactPrefix(u64),
    Reopen,
    FailSync,
}

fn plan(op: &Op, model: &Model) -> Planned {
    let mut after = model.clone();
    match op {
        Op::Append {
            count,
            payload_bytes,
            new_term,
            space_bytes_left,
        } => {
            if *new_term {
                after.term += 1;
            }
            let records: Vec<Record> = (model.last + 1..=model.last + count)
                .map(|index| {
                    let byte = (index % 251) as u8;
                    Record::new(index, after.term, Bytes::from(vec![byte; *payload_bytes]))
                })
                .collect();
            for record in &records {
                after.entries.insert(record.index, record.clone());
            }
            after.last += count;
            let on_crash = vec![Allowed {
                model: after.clone(),
                last: model.last..=after.last,
            }];
            Planned {
                action: Action::Append(records, *space_bytes_left),
                after,
                on_crash,
            }
        }
        Op::TruncateSuffix { back } => {
            let from = (model.last + 1)
                .saturating_sub(*back)
                .max(model.low_water_mark);
            after.entries.retain(|&index, _| index < from);
            after.last = from - 1;
            let on_crash = vec![Allowed {
                model: model.clone(),
                last: from - 1..=model.last,
            }];
            Planned {
                action: Action::TruncateSuffix(from),
                after,
                on_crash,
            }
        }
        Op::CompactPrefix { forward } => {
            let up_to = model.low_water_mark - 1 + forward;
            if up_to >= model.last {
                after.entries.clear();
                after.floor = up_to + 1;
                after.low_water_mark = up_to + 1;
                after.last = up_to;
                let on_crash = vec![Allowed::exactly(model), Allowed::exactly(&after)];
                Planned {
                    action: Action::CompactPrefix(up_to),
                    after,
                    on_crash,
                }
            } else {
                after.low_water_mark = after.low_water_mark.max(up_to + 1);
                let on_crash = vec![Allowed::exactly(&after)];
                Planned {
                    action: Action::CompactPrefix(up_to),
                    after,
                    on_crash,
                }
            }
        }
        Op::Reopen => Planned {
            action: Action::Reopen,
            after,
            on_crash: vec![Allowed::exactly(model)],
        },
        Op::FailSync => Planned {
            action: Action::FailSync,
            after,
            on_crash: vec![Allowed::exactly(model)],
        },
    }
}

fn read_all(wal: &Wal<SimFs>) -> Vec<Record> {
    wal.read_range(wal.first_index(), wal.last_index() + 1, u64::MAX)
        .unwrap()
}

fn open(fs: &SimFs) -> Result<Wal<SimFs>, StorageError> {
    Wal::open(fs.clone(), Path::new(DIR), config())
}

/// Runs the workload until it ends or the disk halts (or an fsync fails); returns what the
/// log may hold after a crash now.
fn run_until_crash(fs: &SimFs, ops: &[Op]) -> Vec<Allowed> {
    let mut model = Model::new();
    let mut wal = match open(fs) {
        Ok(wal) => wal,
        Err(_) => return vec![Allowed::exactly(&model)],
    };
    let mut fail_next_sync = false;
    for op in ops {
        let planned = plan(op, &model);
        if fail_next_sync {
            fs.set_syncs_fail(true);
        }
        let result = match &planned.action {
            Action::Append(records, space) => {
                fs.set_space_bytes_left(*space);
                let result = wal.append(records);
                fs.set_space_bytes_left(None);
                result
            }
            Action::TruncateSuffix(from) => wal.truncate_suffix(*from),
            Action::CompactPrefix(up_to) => wal.compact_prefix(*up_to),
            Action::Reopen => {
                drop(wal);
                match open(fs) {
                    Ok(reopened) => {
                        wal = reopened;
                        Ok(())
                    }
                    Err(error) => {
                        assert!(fs.is_halted(), "reopen failed: {error}");
                        return planned.on_crash;
                    }
                }
            }
            Action::FailSync => {
                fail_next_sync = true;
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                if !matches!(planned.action, Action::FailSync) {
                    fs.set_syncs_fail(false);
                    fail_next_sync = false;
                }
                model = planned.after;
                model.check_invariants();
                wal.check_invariants();
            }
            // The power is cut: whatever the operation says, what reached the disk is unknown.
            Err(_) if fs.is_halted() => return planned.on_crash,
            Err(StorageError::NoSpace { .. }) => {
                // Nothing of it happened, and the log still works.
                assert!(!wal.is_poisoned());
                assert_eq!(read_all(&wal), model.entries_from(wal.first_index()));
            }
            Err(StorageError::Fatal { .. }) => {
                // An fsync failed: what reached the disk is unknown; restart.
                fs.set_syncs_fail(false);
                assert!(wal.is_poisoned());
                return planned.on_crash;
            }
            Err(error) => panic!("unexpected error from {:?}: {error}", planned.action),
        }
    }
    vec![Allowed::exactly(&model)]
}

impl Model {
    fn entries_from(&self, first: u64) -> Vec<Record> {
        self.entries
            .range(first..)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// Cuts the power after `crash_after` disk operations of the workload (or at its end), maybe
/// again during recovery, and checks what recovery finds; then that the log still works.
fn check_crash(ops: &[Op], crash_after: u64, seed: u64, recovery_crash_after: Option<u64>) {
    let fs = SimFs::new();
    fs.halt_after_operations(Some(crash_after));
    let allowed = run_until_crash(&fs, ops);
    fs.set_syncs_fail(false);
    crash(&fs, seed);
    if let Some(after) = recovery_crash_after {
        fs.halt_after_operations(Some(after));
        if open(&fs).is_err() {
            assert!(fs.is_halted());
            crash(&fs, seed.rotate_left(17));
        }
        fs.halt_after_operations(None);
    }
    let wal = open(&fs).unwrap_or_else(|error| panic!("recovery failed: {error}"));
    wal.check_invariants();
    let (first, last) = (wal.first_index(), wal.last_index());
    let records = read_all(&wal);
    assert!(
        allowed
            .iter()
            .any(|allowed| allowed.accepts(first, last, &records)),
        "recovered log {first}..={last} is not allowed; allowed last indexes: {:?}",
        allowed.iter().map(|a| a.last.clone()).collect::<Vec<_>>()
    );

    // The recovered log takes appends, durably.
    let mut model = Model::from_log(&records, first, last);
    let mut wal = wal;
    let more = plan(
        &Op::Append {
            count: 5,
            payload_bytes: 7,
            new_term: true,
            space_bytes_left: None,
        },
        &model,
    );
    if let Action::Append(records, _) = &more.action {
        wal.append(records).unwrap();
    }
    model = more.after;
    drop(wal);
    fs.crash(|_| 0);
    let wal = open(&fs).unwrap();
    assert_eq!(read_all(&wal), model.entries_from(wal.first_index()));
    assert_eq!(wal.last_index(), model.last);
}

/// How many disk operations the workload does when nothing fails.
fn operations_of(ops: &[Op]) -> u64 {
    let fs = SimFs::new();
    run_until_crash(&fs, ops);
    fs.stats().operations
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn wal_recovers_an_allowed_state_after_a_crash_anywhere(
        ops in prop::collection::vec(op_strategy(), 1..30),
        crash_point in any::<u64>(),
        seed in any::<u64>(),
        recovery_crash_after in prop::option::weighted(0.2, 0u64..6),
    ) {
        let total = operations_of(&ops);
        check_crash(&ops, crash_point % (total + 2), seed, recovery_crash_after);
    }
}

/// A fixed workload from a seed.
fn fixed_workload(seed: u64, len: usize) -> Vec<Op> {
    let mut prng = Prng(seed);
    (0..len)
        .map(|_| match prng.below(10) {
            0..=5 => Op::Append {
                count: 1 + prng.below(10),
                payload_bytes: prng.below(40) as usize,
                new_term: prng.below(3) == 0,
                space_bytes_left: None,
            },
            6 | 7 => Op::TruncateSuffix {
                back: prng.below(12),
            },
            8 => Op::CompactPrefix {
                forward: prng.below(15),
            },
            _ => Op::Reopen,
        })
        .collect()
}

#[test]
fn wal_recovers_an_allowed_state_after_a_crash_at_every_operation() {
    for workload_seed in 1..=3 {
        let ops = fixed_workload(workload_seed, 25);
        let total = operations_of(&ops);
        assert!(
            total > 50,
            "the workload should do real work, did {total} operations"
        );
        for crash_after in 0..=total {
            for crash_seed in 0..4 {
                check_crash(&ops, crash_after, crash_seed * 7919 + crash_after, None);
            }
        }
    }
}

/// Compacting everything when the log ends in an empty segment at the new first index (left
/// by a truncation at a segment boundary): a crash part way through removing the older
/// segments must leave the old log or the new one, not a shortened old log.
#[test]
fn restarting_the_log_over_an_empty_last_segment_survives_a_crash_at_every_operation() {
    let ops = [
        Op::Append {
            count: 20,
            payload_bytes: 32,
            new_term: false,
            space_bytes_left: None,
        },
        // Index 19 starts the last segment: truncating from there leaves it empty.
        Op::TruncateSuffix { back: 2 },
        // Up to the last index, 18: the log restarts at 19.
        Op::CompactPrefix { forward: 18 },
    ];
    let total = operations_of(&ops);
    for crash_after in 0..=total {
        for crash_seed in 0..8 {
            check_crash(&ops, crash_after, crash_seed, None);
        }
    }
}

#[test]
fn atomic_file_is_old_or_new_after_a_crash_at_every_operation() {
    let dir = Path::new("/node");
    let old = b"old hard state".to_vec();
    let new = b"the new, longer hard state".to_vec();
    let setup = || {
        let fs = SimFs::new();
        fs.create_dir_all(dir).unwrap();
        write_file_atomically(&fs, dir, "state", &old).unwrap();
        // A leftover from an earlier crash is cleaned up on the way.
        fs.create(&dir.join("state.tmp")).unwrap();
        fs
    };
    let total = {
        let fs = setup();
        let before = fs.stats().operations;
        write_file_atomically(&fs, dir, "state", &new).unwrap();
        fs.stats().operations - before
    };
    for crash_after in 0..=total {
        for seed in 0..16 {
            let fs = setup();
            fs.halt_after_operations(Some(crash_after));
            let result = write_file_atomically(&fs, dir, "state", &new);
            crash(&fs, seed);
            let read = read_file_checked(&fs, dir, "state", 1024).unwrap().unwrap();
            assert!(
                read == old || read == new,
                "a mix after crash at {crash_after}"
            );
            if result.is_ok() {
                assert_eq!(read, new, "returned Ok but the new file is not durable");
            }
        }
    }
}

#[test]
fn first_atomic_write_leaves_nothing_or_the_whole_file_after_a_crash() {
    let dir = Path::new("/node");
    for crash_after in 0..8 {
        for seed in 0..16 {
            let fs = SimFs::new();
            fs.create_dir_all(dir).unwrap();
            fs.halt_after_operations(Some(crash_after));
            let result = write_file_atomically(&fs, dir, "state", b"first");
            crash(&fs, seed);
            let read = read_file_checked(&fs, dir, "state", 1024).unwrap();
            assert!(read.is_none() || read.as_deref() == Some(&b"first"[..]));
            if result.is_ok() {
                assert!(read.is_some());
            }
        }
    }
}
