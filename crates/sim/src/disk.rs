//! One replica's simulated disk: durable state plus at most one write in flight.
//!
//! A write is a sequence of records — the snapshot (if any), the log entries in order, then the
//! hard state — laid down in that order and made durable together by one fsync. Until the fsync
//! completes the write is volatile: a crash loses it whole, or tears it, keeping a prefix of its
//! records (a snapshot or a hard state is one record: all or nothing). A compaction snapshot the
//! node takes itself is stored atomically at once (write to a temporary file, rename).

use crate::prng::Prng;
use chorus_raft::{Entry, HardState, LogIndex, RestoreState, Snapshot, Term};

/// What the disk holds after an fsync.
///
/// # Invariants
/// - `entries` are contiguous and start right after the snapshot's last index (or at 1).
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

/// A write handed to the disk and not yet fsynced.
#[derive(Clone, Debug, Default)]
pub struct PendingWrite {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

impl PendingWrite {
    fn records(&self) -> usize {
        usize::from(self.snapshot.is_some())
            + self.entries.len()
            + usize::from(self.hard_state.is_some())
    }
}

/// What a completed (or torn) write did to the durable log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The range of entries written, if any.
    pub entries: Option<(LogIndex, LogIndex)>,
    /// The first index at or below the durable commit index whose entry was replaced by a
    /// different one or dropped: a committed entry changed, which must never happen.
    pub committed_overwritten: Option<LogIndex>,
    /// A received snapshot older than the durable commit index replaced the log.
    pub snapshot_behind_commit: Option<(LogIndex, LogIndex)>,
}

/// What a crash did to the write in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CrashLoss {
    /// Records in the write in flight (0: the disk was idle).
    pub records: usize,
    /// How many of them survived (a prefix).
    pub kept: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    durable: Durable,
    pending: Option<PendingWrite>,
}

impl Disk {
    pub fn new() -> Disk {
        Disk::default()
    }

    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    /// The state a restarting node reads back.
    pub fn restore_state(&self) -> RestoreState {
        RestoreState {
            hard_state: self.durable.hard_state,
            snapshot: self.durable.snapshot.clone(),
            entries: self.durable.entries.clone(),
        }
    }

    pub fn snapshot_index(&self) -> LogIndex {
        self.durable
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |s| s.meta.last_index)
    }

    pub fn last_index(&self) -> LogIndex {
        self.durable
            .entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// The durable term at `index`: from the log, the snapshot's last entry, or 0 for index 0.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index.0 == 0 {
            return Some(Term(0));
        }
        if let Some(snapshot) = &self.durable.snapshot {
            if snapshot.meta.last_index == index {
                return Some(snapshot.meta.last_term);
            }
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let first = self.durable.entries.first()?.index;
        if index < first {
            return None;
        }
        self.durable.entries.get((index.0 - first.0) as usize)
    }

    /// Starts a write; the caller schedules its fsync. One write at a time.
    pub fn begin_write(&mut self, write: PendingWrite) {
        assert!(self.pending.is_none(), "a write is already in flight");
        self.pending = Some(write);
    }

    /// The fsync completed: the write in flight becomes durable.
    pub fn complete_write(&mut self) -> Written {
        let Some(write) = self.pending.take() else {
            panic!("complete_write without a write in flight");
        };
        let records = write.records();
        self.apply(write, records)
    }

    /// Power loss: the write in flight is lost, or torn (a prefix of its records survives).
    pub fn crash(&mut self, prng: &mut Prng, torn_percent: u32) -> (CrashLoss, Written) {
        let Some(write) = self.pending.take() else {
            return (
                CrashLoss {
                    records: 0,
                    kept: 0,
                },
                Written::default(),
            );
        };
        let records = write.records();
        let kept = if prng.chance_percent(torn_percent) {
            prng.below(records as u64 + 1) as usize
        } else {
            0
        };
        let written = self.apply(write, kept);
        (CrashLoss { records, kept }, written)
    }

    /// Stores a snapshot the node took of its own applied state, atomically, and drops the log
    /// up to it.
    pub fn store_snapshot(&mut self, snapshot: Snapshot) {
        assert!(
            self.pending.is_none(),
            "compaction while a write is in flight"
        );
        let index = snapshot.meta.last_index;
        assert!(
            index > self.snapshot_index(),
            "snapshot at {index} does not follow the one at {}",
            self.snapshot_index()
        );
        self.durable.entries.retain(|e| e.index > index);
        self.durable.snapshot = Some(snapshot);
        self.check_invariants();
    }

    /// Lays down the first `keep` records of `write`.
    fn apply(&mut self, write: PendingWrite, keep: usize) -> Written {
        let mut written = Written::default();
        let commit = self.durable.hard_state.commit;
        let mut remaining = keep;
        if let Some(snapshot) = write.snapshot {
            if remaining == 0 {
                return written;
            }
            remaining -= 1;
            let index = snapshot.meta.last_index;
            if index < commit {
                written.snapshot_behind_commit = Some((index, commit));
            }
            self.durable.entries.clear();
            self.durable.snapshot = Some(snapshot);
        }
        let kept_entries = remaining.min(write.entries.len());
        remaining -= kept_entries;
        if kept_entries > 0 {
            written.entries =
                Some(self.append(&write.entries[..kept_entries], commit, &mut written));
        }
        if let Some(hard_state) = write.hard_state {
            if remaining > 0 && kept_entries == write.entries.len() {
                self.durable.hard_state = hard_state;
            }
        }
        self.check_invariants();
        written
    }

    fn append(
        &mut self,
        entries: &[Entry],
        commit: LogIndex,
        written: &mut Written,
    ) -> (LogIndex, LogIndex) {
        let first = entries[0].index;
        let last = entries[entries.len() - 1].index;
        assert!(
            first > self.snapshot_index(),
            "entries from {first} overlap the snapshot at {}",
            self.snapshot_index()
        );
        assert!(
            first <= self.last_index().next(),
            "entries from {first} leave a gap after the durable last index {}",
            self.last_index()
        );
        // Everything at or after `first` is replaced; a committed entry may only be replaced by
        // itself.
        let old_last = self.last_index();
        let mut index = first;
        while index <= old_last.min(commit) {
            let old = self.entry(index);
            let new = entries.get((index.0 - first.0) as usize);
            if old != new {
                written.committed_overwritten = Some(index);
                break;
            }
            index = index.next();
        }
        let keep = (first.0 - self.snapshot_index().0 - 1) as usize;
        self.durable.entries.truncate(keep);
        self.durable.entries.extend_from_slice(entries);
        (first, last)
    }

    pub fn check_invariants(&self) {
        let mut expected = self.snapshot_index().next();
        for entry in &self.durable.entries {
            assert!(
                entry.index == expected,
                "durable log not contiguous at {}",
                entry.index
            );
            expected = expected.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_raft::{EntryPayload, SnapshotMeta};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Noop,
        }
    }

    fn write(entries: Vec<Entry>, commit: Option<u64>) -> PendingWrite {
        PendingWrite {
            snapshot: None,
            entries,
            hard_state: commit.map(|c| HardState {
                term: Term(1),
                vote: None,
                commit: LogIndex(c),
            }),
        }
    }

    fn terms(disk: &Disk) -> Vec<(u64, u64)> {
        disk.durable()
            .entries
            .iter()
            .map(|e| (e.index.0, e.term.0))
            .collect()
    }

    #[test]
    fn completed_write_is_durable() {
        let mut disk = Disk::new();
        disk.begin_write(write(vec![entry(1, 1), entry(2, 1)], Some(1)));
        assert!(disk.is_busy());
        let written = disk.complete_write();
        assert_eq!(written.entries, Some((LogIndex(1), LogIndex(2))));
        assert_eq!(terms(&disk), vec![(1, 1), (2, 1)]);
        assert_eq!(disk.durable().hard_state.commit, LogIndex(1));
    }

    #[test]
    fn later_entries_replace_the_suffix() {
        let mut disk = Disk::new();
        disk.begin_write(write(vec![entry(1, 1), entry(2, 1), entry(3, 1)], Some(1)));
        disk.complete_write();
        disk.begin_write(write(vec![entry(2, 2)], None));
        let written = disk.complete_write();
        assert_eq!(written.committed_overwritten, None);
        assert_eq!(terms(&disk), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn replacing_a_committed_entry_is_reported() {
        let mut disk = Disk::new();
        disk.begin_write(write(vec![entry(1, 1), entry(2, 1)], Some(2)));
        disk.complete_write();
        disk.begin_write(write(vec![entry(2, 3)], None));
        assert_eq!(
            disk.complete_write().committed_overwritten,
            Some(LogIndex(2))
        );
    }

    #[test]
    fn rewriting_a_committed_entry_with_itself_is_fine() {
        let mut disk = Disk::new();
        disk.begin_write(write(vec![entry(1, 1), entry(2, 1)], Some(2)));
        disk.complete_write();
        disk.begin_write(write(vec![entry(2, 1), entry(3, 2)], None));
        assert_eq!(disk.complete_write().committed_overwritten, None);
    }

    #[test]
    fn crash_loses_or_tears_the_write_in_flight() {
        let mut prng = Prng::new(1);
        let mut kept_counts = Vec::new();
        for _ in 0..200 {
            let mut disk = Disk::new();
            disk.begin_write(write(vec![entry(1, 1), entry(2, 1), entry(3, 1)], Some(3)));
            let (loss, _) = disk.crash(&mut prng, 50);
            assert_eq!(loss.records, 4);
            assert_eq!(disk.durable().entries.len(), loss.kept.min(3));
            // The hard state (the last record) survives only with every entry before it.
            let hard_state_kept = disk.durable().hard_state.commit == LogIndex(3);
            assert_eq!(hard_state_kept, loss.kept == 4);
            assert!(!disk.is_busy());
            kept_counts.push(loss.kept);
        }
        for kept in 0..=4 {
            assert!(kept_counts.contains(&kept), "never kept {kept} records");
        }
    }

    #[test]
    fn snapshot_drops_the_log_it_covers() {
        let mut disk = Disk::new();
        disk.begin_write(write((1..=5).map(|i| entry(i, 1)).collect(), Some(5)));
        disk.complete_write();
        let meta = SnapshotMeta {
            last_index: LogIndex(3),
            last_term: Term(1),
            ..Default::default()
        };
        disk.store_snapshot(Snapshot {
            meta,
            data: Default::default(),
        });
        assert_eq!(terms(&disk), vec![(4, 1), (5, 1)]);
        assert_eq!(disk.term_at(LogIndex(3)), Some(Term(1)));
        let restore = disk.restore_state();
        assert_eq!(restore.entries.len(), 2);
        assert_eq!(
            restore.snapshot.map(|s| s.meta.last_index),
            Some(LogIndex(3))
        );
    }

    #[test]
    fn received_snapshot_replaces_the_log() {
        let mut disk = Disk::new();
        disk.begin_write(write(vec![entry(1, 1), entry(2, 1)], Some(1)));
        disk.complete_write();
        let meta = SnapshotMeta {
            last_index: LogIndex(10),
            last_term: Term(2),
            ..Default::default()
        };
        disk.begin_write(PendingWrite {
            snapshot: Some(Snapshot {
                meta,
                data: Default::default(),
            }),
            entries: vec![entry(11, 2)],
            hard_state: None,
        });
        let written = disk.complete_write();
        assert_eq!(written.snapshot_behind_commit, None);
        assert_eq!(terms(&disk), vec![(11, 2)]);
        assert_eq!(disk.last_index(), LogIndex(11));
    }

    #[test]
    #[should_panic(expected = "gap")]
    fn a_gap_in_the_log_is_refused() {
        let mut disk = Disk::new();
        disk.begin_write(write(vec![entry(3, 1)], None));
        disk.complete_write();
    }
}
