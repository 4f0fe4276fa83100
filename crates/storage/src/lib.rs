//! Durable storage of chorus: the write-ahead log, the hard state file and snapshot files.
//!
//! What it is: the code that puts a replica's durable state on a disk and gets it back after a
//! crash, through one narrow seam, the [`Fs`] trait. [`RealFs`] runs on the operating system;
//! [`SimFs`] is an in-memory disk with an explicit model of what is durable, which the simulator
//! and the crash tests drive through power cuts, full disks, failing fsyncs and bit flips.
//!
//! - [`Wal`]: segmented log files of [`Record`]s (index, term, opaque payload), CRC-32C framed,
//!   appended in batches made durable by one fdatasync (group commit); recovery truncates a
//!   torn tail and stops on any other damage; `truncate_suffix` and `compact_prefix` for raft.
//! - [`save_hard_state`] / [`load_hard_state`]: term, vote and commit, through
//!   [`write_file_atomically`] (temporary file, fsync, rename, directory fsync, checksum).
//! - [`SnapshotStore`]: snapshot files written atomically, verified on open, read in chunks
//!   for InstallSnapshot, received in chunks by a [`SnapshotWriter`].
//!
//! Every method that writes says in its doc what is durable when it returns. Errors are
//! [`StorageError`] variants, each a decision for the caller; after a failed fsync the log is
//! poisoned and refuses every write ([`StorageError::Fatal`]). The decoders of bytes from disk
//! or network ([`decode_record`], [`decode_snapshot_header`], ...) are pure, bounded and never
//! panic; they are fuzzed (see `fuzz/` and `docs/storage.md`).
//!
//! What it is not: it knows nothing of raft's types (records are opaque; the replica layer
//! encodes entries into them) and depends on no other chorus crate; it does not decide when to
//! snapshot, compact or fsync the hard state; it does no caching of log entries beyond a small,
//! bounded index of record positions; it is not async (the server calls it from its group task).

mod atomic_file;
mod codec;
mod error;
pub mod fs;
mod hard_state;
mod record;
mod segment;
mod snapshot;
mod wal;

pub use atomic_file::{
    decode_checked_file, encode_checked_file, read_file_checked, write_file_atomically,
    ENVELOPE_BYTES,
};
pub use error::{DecodeError, StorageError};
pub use fs::{set_io_observer, Fs, FsFile, IoKind, IoObserver, RealFs, SimFs};
pub use hard_state::{
    decode_hard_state, encode_hard_state, load_hard_state, save_hard_state, HardStateRecord,
    HARD_STATE_FILE_NAME,
};
pub use record::{
    decode_frame_header, decode_record, decode_record_limited, encode_record, FrameHeader, Record,
    BODY_FIXED_BYTES, FORMAT_RECORD_BYTES_MAX, FRAME_HEADER_BYTES,
};
pub use segment::{decode_segment_header, SegmentHeader, SEGMENT_HEADER_BYTES};
pub use snapshot::{
    decode_snapshot_header, decode_snapshot_header_limited, encode_snapshot_header,
    LocalSnapshotFile, SnapshotConfig, SnapshotDataWriter, SnapshotHeader, SnapshotMeta,
    SnapshotReader, SnapshotStore, SnapshotWriter, FORMAT_MEMBERSHIP_BYTES_MAX,
    SNAPSHOT_HEADER_FIXED_BYTES,
};
pub use wal::{Wal, WalConfig, FIRST_LOG_INDEX};
