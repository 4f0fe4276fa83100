//! Errors that are the caller's decisions.
//!
//! [`StorageError`] is what the storage API returns; each variant says what the caller does next.
//! [`DecodeError`] is what the pure decoders return about bytes read from disk or the network;
//! the storage wraps it with the file and offset it came from.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why a storage operation failed, one variant per decision the caller has to make.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The device is full. Nothing of the failed operation is visible, now or after a restart
    /// (what was partly written has been truncated back durably). The storage stays usable:
    /// retry once space returns, or refuse the work that needed it.
    #[error("no space left on the device while writing {path}")]
    NoSpace { path: PathBuf },

    /// A write or an fsync failed and it is unknown what reached the disk (or it happened
    /// earlier and the storage is poisoned). The storage refuses every further write: stop the
    /// node and restart it; recovery on open decides what is durable.
    #[error("fatal storage error, further writes are refused: {reason}")]
    Fatal { reason: String },

    /// Bytes on disk failed validation somewhere a crash cannot explain (not a torn tail).
    /// Stop the node: serving from it could lose acknowledged data. An operator restores or
    /// rebuilds it from its peers.
    #[error("corrupt data in {path} at offset {offset}: {error}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        error: DecodeError,
    },

    /// The entry was removed by `compact_prefix`: the caller reads the snapshot instead (for a
    /// follower: sends InstallSnapshot).
    #[error("entry {index} is compacted, the log starts at {first_index}")]
    Compacted { index: u64, first_index: u64 },

    /// The entry is past the end of the log.
    #[error("entry {index} is past the last index {last_index}")]
    Unavailable { index: u64, last_index: u64 },

    /// A record is larger than `record_bytes_max`; nothing was written. The caller rejects the
    /// proposal that produced it.
    #[error("record {index} takes {record_bytes} bytes encoded, the limit is {record_bytes_max}")]
    RecordTooLarge {
        index: u64,
        record_bytes: u64,
        record_bytes_max: u64,
    },

    /// A snapshot chunk arrived at the wrong offset; nothing was written. The caller asks the
    /// sender to resume at `expected_offset`.
    #[error("snapshot chunk at offset {offset}, expected offset {expected_offset}")]
    ChunkOutOfOrder { offset: u64, expected_offset: u64 },

    /// Snapshot bytes received from a peer are not a valid snapshot; the partial snapshot was
    /// discarded. The caller rejects it and asks for a new one.
    #[error("invalid snapshot received: {error}")]
    InvalidSnapshot { error: DecodeError },

    /// A read failed; nothing was changed. The caller may retry or stop.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What is wrong with bytes given to a decoder. Decoders never panic and never allocate more
/// than the bytes they were given, whatever the input.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated: needs {needed_bytes} bytes, has {available_bytes}")]
    Truncated {
        needed_bytes: u64,
        available_bytes: u64,
    },
    #[error("bad magic number")]
    BadMagic,
    #[error("unsupported format version {version}")]
    UnsupportedVersion { version: u32 },
    #[error("unknown flags {flags:#x}")]
    UnknownFlags { flags: u32 },
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("body checksum mismatch")]
    BodyChecksum,
    #[error("{what} of {bytes} bytes exceeds the limit of {bytes_max}")]
    TooLarge {
        what: &'static str,
        bytes: u64,
        bytes_max: u64,
    },
    #[error("{what} of {bytes} bytes is below the minimum of {bytes_min}")]
    TooSmall {
        what: &'static str,
        bytes: u64,
        bytes_min: u64,
    },
    #[error("expected index {expected}, found {found}")]
    UnexpectedIndex { expected: u64, found: u64 },
    #[error("term {found} follows the larger term {previous}")]
    TermDecreased { previous: u64, found: u64 },
    #[error("{bytes} unexpected bytes after the end")]
    TrailingBytes { bytes: u64 },
    #[error("file name does not match its contents")]
    NameMismatch,
    #[error("segment missing: expected one starting at {expected_first_index}, found {found_first_index}")]
    MissingSegment {
        expected_first_index: u64,
        found_first_index: u64,
    },
}
