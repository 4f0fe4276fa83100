//! A snapshot of the state machine written off the thread that owns the replica.
//!
//! Writing a snapshot takes time in proportion to the store (a million keys: hundreds of
//! megabytes), longer than an election timeout if the group task did it. So the replica takes
//! only what is cheap at the moment of the snapshot — a consistent view of the mvcc backend
//! ([`chorus_mvcc::SnapshotSource`], a redb read transaction), the small tables encoded, raft's
//! meta for the index — and hands a [`SnapshotJob`] to its driver. The driver runs
//! [`SnapshotJob::write`] wherever it likes (the server: a blocking thread), streaming the
//! records to a temporary file and fsyncing it, while the replica goes on applying; then gives
//! the [`WrittenSnapshot`] back ([`crate::Replica::snapshot_job_done`]), which installs the file
//! (rename, directory fsync) and compacts raft's log and the WAL up to it, unless a snapshot
//! from the leader overtook it meanwhile.
//!
//! Nothing here changes the format: the file holds the same state snapshot
//! ([`crate::snapshot`]) a whole-memory encoding would.
//!
//! Crashes: before the install, the temporary file is removed on the next open and the
//! previous snapshot stays; after it, recovery finds the new snapshot and a WAL that may still
//! hold entries it covers (skipped, as after any crash between saving and compacting).

use crate::durable::stored_meta;
use crate::error::ReplicaError;
use crate::snapshot::StateSnapshotTail;
use chorus_mvcc::{SnapshotError, SnapshotSource};
use chorus_raft::{LogIndex, SnapshotMeta};
use chorus_storage::{Fs, LocalSnapshotFile, SnapshotDataWriter, SnapshotWriter, StorageError};
use std::io::{BufWriter, Write};

/// Bytes gathered before each write to the snapshot file.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// A snapshot to write ([`SnapshotJob::write`]); `Send` when the file system's files are.
pub struct SnapshotJob<F: Fs> {
    pub(crate) meta: SnapshotMeta,
    pub(crate) mvcc: SnapshotSource,
    pub(crate) tail: StateSnapshotTail,
    pub(crate) file: LocalSnapshotFile<F>,
}

/// A snapshot file written and fsynced, not installed yet.
pub struct WrittenSnapshot<F: Fs> {
    pub(crate) meta: SnapshotMeta,
    pub(crate) file: SnapshotWriter<F>,
    /// Bytes of the state snapshot (the file's data).
    pub data_bytes: u64,
}

impl<F: Fs> SnapshotJob<F> {
    /// The last log index the snapshot covers.
    pub fn index(&self) -> LogIndex {
        self.meta.last_index
    }

    /// Writes the state snapshot to its temporary file and fsyncs it: one pass over the
    /// records to size it (the file's header states its length), one to write them. Reads
    /// nothing of the replica; runs on any thread.
    pub fn write(self) -> Result<WrittenSnapshot<F>, ReplicaError> {
        let mvcc_bytes = self.mvcc.encoded_bytes()?;
        let head = self.tail.head(mvcc_bytes);
        let data_bytes = head.len() as u64 + mvcc_bytes + self.tail.bytes.len() as u64;
        let mut data = self.file.create(&stored_meta(&self.meta), data_bytes)?;
        let written = write_data(&mut data, &head, &self.mvcc, &self.tail.bytes);
        if let Err(error) = written {
            // Best effort: the next open removes a leftover temporary file.
            let _ = data.abort();
            return Err(error);
        }
        Ok(WrittenSnapshot {
            meta: self.meta,
            file: data.finish_data()?,
            data_bytes,
        })
    }
}

impl<F: Fs> WrittenSnapshot<F> {
    pub fn index(&self) -> LogIndex {
        self.meta.last_index
    }
}

fn write_data<F: Fs>(
    data: &mut SnapshotDataWriter<F>,
    head: &[u8],
    mvcc: &SnapshotSource,
    tail: &[u8],
) -> Result<(), ReplicaError> {
    data.write_data(head)?;
    let mut buffered = BufWriter::with_capacity(WRITE_BUFFER_BYTES, &mut *data);
    mvcc.write_to(&mut buffered).map_err(storage_error_inside)?;
    buffered
        .flush()
        .map_err(|error| storage_error_inside(SnapshotError::Io(error)))?;
    drop(buffered);
    data.write_data(tail)?;
    Ok(())
}

/// The snapshot file's own error, when the mvcc writer got it through `io::Write`.
fn storage_error_inside(error: SnapshotError) -> ReplicaError {
    match error {
        SnapshotError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<StorageError>()) => {
            let inner = io
                .into_inner()
                .and_then(|inner| inner.downcast::<StorageError>().ok());
            match inner {
                Some(storage) => ReplicaError::Storage(*storage),
                None => ReplicaError::Corrupt {
                    reason: "snapshot file error lost its cause".to_string(),
                },
            }
        }
        other => ReplicaError::Snapshot(other),
    }
}
