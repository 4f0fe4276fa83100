//! The node's durable state in its data directory: the WAL of raft entries, the hard state file
//! and the snapshot store, over the [`Fs`] seam.
//!
//! ```text
//! <dir>/wal/          the log after the latest snapshot (storage's Wal)
//! <dir>/hard_state    term, vote, commit
//! <dir>/snap/         the latest snapshot: raft's SnapshotMeta (membership encoded here) + data
//! ```

use crate::entry::{decode_membership, encode_membership, entry_to_record, record_to_entry};
use crate::error::ReplicaError;
use bytes::Bytes;
use chorus_raft::{
    Entry, HardState, LogIndex, NodeId, Ready, RestoreState, Snapshot, SnapshotMeta, Term,
};
use chorus_storage::{
    load_hard_state, save_hard_state, Fs, HardStateRecord, LocalSnapshotFile, SnapshotConfig,
    SnapshotStore, SnapshotWriter, StorageError, Wal, WalConfig,
};
use std::path::{Path, PathBuf};

/// Limits of the durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableConfig {
    pub wal: WalConfig,
    pub snapshot: SnapshotConfig,
    /// Recovery reads the log in pieces of at most this many bytes (at least one entry each).
    pub recovery_read_bytes_max: u64,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            wal: WalConfig::default(),
            snapshot: SnapshotConfig::default(),
            recovery_read_bytes_max: 4 * 1024 * 1024,
        }
    }
}

/// One node's durable raft state.
///
/// # Invariants
/// - The WAL holds the log after the latest snapshot: `wal.first_index() <= snapshot_index + 1
///   <= wal.last_index() + 1` (whole segments before the snapshot may remain).
/// - `hard_state` is what the hard state file holds.
pub struct Durable<F: Fs + Clone> {
    fs: F,
    dir: PathBuf,
    wal: Wal<F>,
    snapshots: SnapshotStore<F>,
    hard_state: HardState,
    snapshot_index: LogIndex,
    /// Bytes read at a time when a snapshot is read back whole.
    snapshot_read_bytes_max: u64,
}

/// The snapshot store's form of raft's snapshot meta (the membership encoded).
pub(crate) fn stored_meta(meta: &SnapshotMeta) -> chorus_storage::SnapshotMeta {
    chorus_storage::SnapshotMeta {
        last_index: meta.last_index.0,
        last_term: meta.last_term.0,
        membership: Bytes::from(encode_membership(&meta.membership)),
    }
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snap")
}

impl<F: Fs + Clone> Durable<F> {
    /// Opens (creating if missing) the durable state in `dir` and recovers what raft needs to
    /// restart: the hard state, the latest snapshot and the log after it.
    ///
    /// Durable when it returns: the WAL's repairs (torn tail truncated), and the WAL restarted
    /// after the snapshot if a crash came between saving a snapshot and dropping the log it
    /// replaces. Errors: the storage's (`Corrupt` stops the node), and [`ReplicaError::Corrupt`]
    /// when a record or the snapshot's membership does not decode, or the log does not follow
    /// the snapshot.
    pub fn open(
        fs: F,
        dir: &Path,
        config: &DurableConfig,
    ) -> Result<(Durable<F>, RestoreState), ReplicaError> {
        assert!(config.recovery_read_bytes_max >= 1);
        fs.create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let snapshots =
            SnapshotStore::open(fs.clone(), &snapshot_dir(dir), config.snapshot.clone())?;
        let snapshot = read_latest_snapshot(&snapshots, config.snapshot.chunk_bytes_max)?;
        let wal = Wal::open(fs.clone(), &wal_dir(dir), config.wal.clone())?;
        let hard_state = match load_hard_state(&fs, dir)? {
            Some(record) => HardState {
                term: Term(record.term),
                vote: (record.vote != 0).then_some(NodeId(record.vote)),
                commit: LogIndex(record.commit),
            },
            None => HardState::default(),
        };
        let snapshot_meta = snapshot
            .as_ref()
            .map(|snapshot| snapshot.meta.clone())
            .unwrap_or_default();
        let mut durable = Durable {
            fs,
            dir: dir.to_path_buf(),
            wal,
            snapshots,
            hard_state,
            snapshot_index: snapshot_meta.last_index,
            snapshot_read_bytes_max: config.snapshot.chunk_bytes_max,
        };
        durable.reconcile_wal_with_snapshot(&snapshot_meta)?;
        let entries = durable.read_log(config.recovery_read_bytes_max)?;
        let restore = RestoreState {
            hard_state,
            snapshot,
            entries,
        };
        durable.check_invariants();
        Ok((durable, restore))
    }

    /// Makes the WAL hold exactly the log after the snapshot. A crash between saving a
    /// snapshot and restarting the WAL after it leaves the old log: entries the snapshot covers
    /// are skipped; entries after it are kept only if the log holds the snapshot's last entry
    /// with its term (else they belong to a log the leader replaced with the snapshot).
    fn reconcile_wal_with_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), ReplicaError> {
        let snapshot_index = meta.last_index.0;
        let first = self.wal.first_index();
        let last = self.wal.last_index();
        if snapshot_index == 0 {
            if first != chorus_storage::FIRST_LOG_INDEX {
                return Err(ReplicaError::Corrupt {
                    reason: format!("the log starts at {first} but there is no snapshot"),
                });
            }
            return Ok(());
        }
        if first > snapshot_index + 1 {
            return Err(ReplicaError::Corrupt {
                reason: format!(
                    "the log starts at {first}, after the snapshot's last entry {snapshot_index} + 1"
                ),
            });
        }
        if last <= snapshot_index {
            // Everything in the log is in the snapshot: restart it after the snapshot.
            self.wal.compact_prefix(snapshot_index)?;
            return Ok(());
        }
        if first <= snapshot_index {
            let records = self.wal.read_range(snapshot_index, snapshot_index + 1, 1)?;
            let matches = records
                .first()
                .is_some_and(|record| record.term == meta.last_term.0);
            if !matches {
                self.wal.truncate_suffix(snapshot_index.max(first))?;
                self.wal.compact_prefix(snapshot_index)?;
            }
        }
        Ok(())
    }

    /// The entries after the snapshot, read in pieces of at most `bytes_max`.
    fn read_log(&self, bytes_max: u64) -> Result<Vec<Entry>, ReplicaError> {
        let mut entries = Vec::new();
        let mut next = self.snapshot_index.0 + 1;
        let end = self.wal.last_index() + 1;
        while next < end {
            let records = self.wal.read_range(next, end, bytes_max)?;
            assert!(!records.is_empty(), "read_range returned nothing");
            for record in &records {
                let entry = record_to_entry(record).map_err(|error| ReplicaError::Corrupt {
                    reason: format!("log entry {}: {error}", record.index),
                })?;
                assert_eq!(entry.index.0, next, "the WAL returned a gap");
                next += 1;
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Carries out the persist step of `ready`: the snapshot (saved, then the WAL restarted
    /// after it), the entries (the log truncated from `entries[0].index` if it holds that
    /// entry already, then one append: one fsync), the hard state (atomic file replacement).
    ///
    /// Durable when it returns Ok: everything `ready` asked to persist. On error, what reached
    /// the disk is unknown (except for [`StorageError::NoSpace`], which wrote nothing of the
    /// failed step): stop the node and reopen.
    pub fn persist(&mut self, ready: &Ready) -> Result<(), StorageError> {
        if let Some(snapshot) = &ready.snapshot {
            self.install_snapshot(snapshot)?;
        }
        if let Some(first) = ready.entries.first() {
            let first = first.index.0;
            assert!(
                first <= self.wal.last_index() + 1,
                "entries start at {first}, after the log's end {}",
                self.wal.last_index()
            );
            if first <= self.wal.last_index() {
                self.wal.truncate_suffix(first)?;
            }
            let records: Vec<_> = ready.entries.iter().map(entry_to_record).collect();
            self.wal.append(&records)?;
        }
        if let Some(hard_state) = ready.hard_state {
            // The commit index is volatile state in Raft (a restarted node learns it again from
            // the leader, and the replica never restarts below what it applied): only a new
            // term or vote costs the two fsyncs of an atomic file replacement. The commit
            // index goes to disk along with them.
            if self.must_save_hard_state(&hard_state) {
                self.save_hard_state(hard_state)?;
            }
        }
        Ok(())
    }

    /// A snapshot from the leader replaces the whole log: save it, then drop every entry.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.save_snapshot(&snapshot.meta, &snapshot.data)?;
        let index = snapshot.meta.last_index.0;
        if self.wal.last_index() > index {
            self.wal
                .truncate_suffix(index.max(self.wal.first_index()))?;
        }
        self.wal.compact_prefix(index)?;
        self.snapshot_index = snapshot.meta.last_index;
        Ok(())
    }

    /// Saves a snapshot this node took of its own state machine and drops the log it covers
    /// (whole WAL segments up to `meta.last_index`). The log after it stays.
    ///
    /// Durable when it returns Ok: the snapshot, and the removal of the segments.
    pub fn compact(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.check_compaction(meta);
        self.save_snapshot(meta, data)?;
        self.wal.compact_prefix(meta.last_index.0)?;
        self.snapshot_index = meta.last_index;
        Ok(())
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.snapshots.save(&stored_meta(meta), data)
    }

    /// Where a snapshot of the local state machine will be written, on any thread
    /// ([`crate::SnapshotJob`]); [`Durable::install_local_snapshot`] installs it.
    pub fn local_snapshot_file(&mut self) -> LocalSnapshotFile<F> {
        self.snapshots.local_file()
    }

    /// Installs a snapshot written and fsynced through [`Durable::local_snapshot_file`]
    /// (rename, directory fsync, older snapshots removed), then drops the log it covers, as
    /// [`Durable::compact`] does.
    ///
    /// Durable when it returns Ok: the snapshot, and the removal of the segments.
    pub fn install_local_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        file: SnapshotWriter<F>,
    ) -> Result<(), ReplicaError> {
        self.check_compaction(meta);
        let installed = file.finish()?;
        if installed != stored_meta(meta) {
            return Err(ReplicaError::Corrupt {
                reason: format!(
                    "snapshot file written for index {} term {} installed as index {} term {}",
                    meta.last_index, meta.last_term, installed.last_index, installed.last_term
                ),
            });
        }
        self.wal.compact_prefix(meta.last_index.0)?;
        self.snapshot_index = meta.last_index;
        Ok(())
    }

    /// A snapshot of our own must be after the current one and within the log.
    fn check_compaction(&self, meta: &SnapshotMeta) {
        assert!(
            meta.last_index > self.snapshot_index,
            "snapshot at {} is not after the current one at {}",
            meta.last_index,
            self.snapshot_index
        );
        assert!(
            meta.last_index.0 <= self.wal.last_index(),
            "snapshot at {} is beyond the log's end {}",
            meta.last_index,
            self.wal.last_index()
        );
    }

    /// Whether persisting `hard_state` writes the hard state file: only a new term or vote
    /// (the commit index is volatile; see [`Durable::persist`]).
    pub(crate) fn must_save_hard_state(&self, hard_state: &HardState) -> bool {
        (hard_state.term, hard_state.vote) != (self.hard_state.term, self.hard_state.vote)
    }

    fn save_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        let record = HardStateRecord {
            term: hard_state.term.0,
            vote: hard_state.vote.map_or(0, |vote| vote.0),
            commit: hard_state.commit.0,
        };
        save_hard_state(&self.fs, &self.dir, &record)?;
        self.hard_state = hard_state;
        Ok(())
    }

    /// Seeds an empty durable state with a snapshot: saved, the WAL started after it, and the
    /// hard state at its term with everything up to it committed, as if this node had
    /// received it from a leader. For restoring a cluster from a saved snapshot
    /// (`crate::seed`). Refuses a directory that holds any state already.
    ///
    /// Durable when it returns Ok: the snapshot, the WAL and the hard state.
    pub(crate) fn seed(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), ReplicaError> {
        let empty = self.snapshot_index == LogIndex(0)
            && self.wal.last_index() == 0
            && self.hard_state == HardState::default();
        if !empty {
            return Err(ReplicaError::Corrupt {
                reason: format!("{} holds raft state already", self.dir.display()),
            });
        }
        self.save_snapshot(meta, data)?;
        self.wal.compact_prefix(meta.last_index.0)?;
        self.snapshot_index = meta.last_index;
        self.save_hard_state(HardState {
            term: meta.last_term,
            vote: None,
            commit: meta.last_index,
        })?;
        self.check_invariants();
        Ok(())
    }

    /// The hard state on disk.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The last entry of the latest snapshot (0 if none).
    /// The latest durable snapshot, read back whole (raft released its copy and a follower
    /// needs it). `None` if there is none.
    pub fn read_snapshot(&self) -> Result<Option<Snapshot>, ReplicaError> {
        read_latest_snapshot(&self.snapshots, self.snapshot_read_bytes_max)
    }

    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// The last entry in the WAL.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.wal.last_index())
    }

    /// Panics unless the invariants in the type's doc hold.
    pub fn check_invariants(&self) {
        self.wal.check_invariants();
        let next = self.snapshot_index.0 + 1;
        assert!(
            self.wal.first_index() <= next && next <= self.wal.last_index() + 1,
            "the WAL [{}, {}] does not follow the snapshot at {}",
            self.wal.first_index(),
            self.wal.last_index(),
            self.snapshot_index
        );
    }
}

/// The latest snapshot, read whole (raft keeps it in memory to send to followers).
fn read_latest_snapshot<F: Fs + Clone>(
    snapshots: &SnapshotStore<F>,
    read_bytes_max: u64,
) -> Result<Option<Snapshot>, ReplicaError> {
    let Some(reader) = snapshots.latest_snapshot()? else {
        return Ok(None);
    };
    let stored = reader.meta().clone();
    let membership =
        decode_membership(&stored.membership).map_err(|error| ReplicaError::Corrupt {
            reason: format!("membership of snapshot {}: {error}", stored.last_index),
        })?;
    let data_bytes = reader.data_bytes();
    let mut data = Vec::new();
    while (data.len() as u64) < data_bytes {
        let chunk = reader.read_data(data.len() as u64, read_bytes_max)?;
        if chunk.is_empty() {
            return Err(ReplicaError::Corrupt {
                reason: format!("snapshot {} ends early", stored.last_index),
            });
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Some(Snapshot {
        meta: SnapshotMeta {
            last_index: LogIndex(stored.last_index),
            last_term: Term(stored.last_term),
            membership,
        },
        data: Bytes::from(data),
    }))
}
