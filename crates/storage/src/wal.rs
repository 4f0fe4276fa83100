//! The write-ahead log: log entries in segment files, CRC-checked, appended in batches with one
//! fdatasync per batch (group commit), recovered on open with a torn tail truncated.
//!
//! Files: `<dir>/<first index, 20 digits>.log`, each a header (`segment`) then records (`record`).
//! Only the last segment is written to; a new one starts when the next record would take the
//! last one past `segment_bytes_max`.
//!
//! Recovery rules (on [`Wal::open`]):
//! - a bad frame in the last segment that looks like an interrupted append (it runs past the end
//!   of the file, or only zeros follow it) is a torn tail: the segment is truncated before it and
//!   the truncation made durable; nothing but zeros after the last record is the space written
//!   ahead ([`WalConfig::preallocate_bytes`]) and is kept;
//! - any other bad frame, a gap between segments, an index out of sequence or a decreasing term
//!   is [`StorageError::Corrupt`], naming the file and offset; nothing is dropped silently;
//! - a last segment whose header is torn (a crash while creating it) holds no records and is
//!   removed;
//! - segments before the newest `STARTS_NEW_LOG` segment are the leftovers of an interrupted
//!   [`Wal::compact_prefix`] and are removed.

use crate::error::{DecodeError, StorageError};
use crate::fs::{is_no_space, read_exact_at, Fs, FsFile};
use crate::record::{
    check_frame_length, decode_body, decode_frame_header, encode_record, FrameHeader, Record,
    BODY_FIXED_BYTES, FORMAT_RECORD_BYTES_MAX, FRAME_HEADER_BYTES,
};
use crate::segment::{
    decode_segment_header, encode_segment_header, parse_segment_file_name, scan_segment,
    segment_file_name, Checkpoint, ChunkReader, ScanLimits, SegmentHeader, SEGMENT_HEADER_BYTES,
};
use std::io;
use std::path::{Path, PathBuf};

/// The index of the first entry of a new log.
pub const FIRST_LOG_INDEX: u64 = 1;

/// Limits of a [`Wal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// A segment is closed and a new one started when the next record would take it past this.
    pub segment_bytes_max: u64,
    /// The largest encoded record (frame header, index, term and payload).
    pub record_bytes_max: u64,
    /// One record position is kept in memory per this many bytes of log, so a read starts at
    /// most this far before the record it wants. Memory: 16 bytes per stride of log.
    pub index_stride_bytes: u64,
    /// An append batch is written in pieces of at most this many bytes (one fsync still).
    pub write_buffer_bytes_max: usize,
    /// Reads go through a buffer of this many bytes.
    pub read_chunk_bytes: usize,
    /// The last segment is filled with zeros this far ahead of its last record (up to
    /// `segment_bytes_max`), so an append overwrites bytes the file already has: its
    /// fdatasync then writes the data alone, not the file's new length through the
    /// filesystem's journal as well (about a quarter less time and CPU per fsync on ext4).
    /// 0 appends at the end of the file instead. Recovery reads the zeros as the end of the
    /// log; a closed segment is cut back to its last record.
    pub preallocate_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes_max: 64 * 1024 * 1024,
            record_bytes_max: 4 * 1024 * 1024,
            index_stride_bytes: 64 * 1024,
            write_buffer_bytes_max: 1024 * 1024,
            read_chunk_bytes: 64 * 1024,
            preallocate_bytes: 1024 * 1024,
        }
    }
}

impl WalConfig {
    fn assert_valid(&self) {
        let record_bytes_min = FRAME_HEADER_BYTES + BODY_FIXED_BYTES;
        assert!(
            self.record_bytes_max >= record_bytes_min,
            "record_bytes_max {} cannot hold an empty record",
            self.record_bytes_max
        );
        assert!(
            self.record_bytes_max <= FORMAT_RECORD_BYTES_MAX,
            "record_bytes_max {} exceeds the format's {FORMAT_RECORD_BYTES_MAX}",
            self.record_bytes_max
        );
        assert!(
            self.segment_bytes_max >= SEGMENT_HEADER_BYTES + self.record_bytes_max,
            "segment_bytes_max {} cannot hold a record of record_bytes_max {}",
            self.segment_bytes_max,
            self.record_bytes_max
        );
        assert!(
            self.index_stride_bytes > 0,
            "index_stride_bytes must be positive"
        );
        assert!(
            self.write_buffer_bytes_max > 0,
            "write_buffer_bytes_max must be positive"
        );
        assert!(
            self.read_chunk_bytes > 0,
            "read_chunk_bytes must be positive"
        );
    }

    fn scan_limits(&self) -> ScanLimits {
        ScanLimits {
            record_bytes_max: self.record_bytes_max,
            index_stride_bytes: self.index_stride_bytes,
            read_chunk_bytes: self.read_chunk_bytes,
        }
    }
}

/// A segment file as the log keeps it in memory.
#[derive(Clone, Debug)]
struct Segment {
    first_index: u64,
    /// One past its last record; `first_index` when it has none.
    next_index: u64,
    /// Where its last record ends (and the next is appended).
    end_offset: u64,
    /// Sparse record positions: the first record, then one per `index_stride_bytes`.
    checkpoints: Vec<Checkpoint>,
}

impl Segment {
    fn empty(first_index: u64) -> Self {
        Segment {
            first_index,
            next_index: first_index,
            end_offset: SEGMENT_HEADER_BYTES,
            checkpoints: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.next_index == self.first_index
    }
}

/// A point in the log to truncate back to.
#[derive(Clone, Copy, Debug)]
struct Position {
    /// How many segments remain.
    segments: usize,
    /// Length of the last remaining segment.
    end_offset: u64,
    next_index: u64,
    last_term: u64,
}

/// Why a write failed, before it becomes a [`StorageError`].
enum WriteFailure {
    NoSpace(PathBuf),
    Fatal(String),
}

fn write_failure(path: &Path, action: &str, error: io::Error) -> WriteFailure {
    if is_no_space(&error) {
        WriteFailure::NoSpace(path.to_path_buf())
    } else {
        fatal(path, action, error)
    }
}

fn fatal(path: &Path, action: &str, error: io::Error) -> WriteFailure {
    WriteFailure::Fatal(format!("{action} {}: {error}", path.display()))
}

fn io_error(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, error: DecodeError) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        error,
    }
}

fn fatal_error(failure: WriteFailure) -> StorageError {
    match failure {
        WriteFailure::Fatal(reason) => StorageError::Fatal { reason },
        WriteFailure::NoSpace(path) => StorageError::Fatal {
            reason: format!("no space left while repairing {}", path.display()),
        },
    }
}

/// The write-ahead log.
///
/// # Invariants
/// - There is at least one segment; the last one is the one appended to.
/// - Segments are contiguous: each starts at the index after the previous one's last record,
///   and every segment but the last holds at least one record.
/// - Indexes are contiguous from [`Wal::first_index`] to [`Wal::last_index`]; terms never
///   decrease along the log.
/// - Each segment's checkpoints start at its first record and increase in index and offset.
/// - Once poisoned (a write or fsync failed), it stays poisoned and refuses every write.
pub struct Wal<F: Fs> {
    fs: F,
    dir: PathBuf,
    config: WalConfig,
    segments: Vec<Segment>,
    /// The last segment, open for appending.
    active: F::File,
    /// The length of `active`: its last record's end, or beyond it zeros written ahead
    /// ([`WalConfig::preallocate_bytes`]).
    active_bytes: u64,
    /// Term of the last record; 0 when the log is empty.
    last_term: u64,
    poisoned: Option<String>,
    /// The encoding buffer of appends, kept between them (up to `write_buffer_bytes_max` and a
    /// record): a fresh one each batch cost page faults as it grew.
    encode_buffer: Vec<u8>,
}

impl<F: Fs> Wal<F> {
    /// Opens the log in `dir` (created if missing), recovering it as the module doc says.
    /// An empty directory gives an empty log whose first index is [`FIRST_LOG_INDEX`].
    ///
    /// Durable when it returns: any repair it made (tail truncated, leftovers removed).
    ///
    /// Panics if `config` is inconsistent.
    pub fn open(fs: F, dir: &Path, config: WalConfig) -> Result<Self, StorageError> {
        config.assert_valid();
        fs.create_dir_all(dir)
            .map_err(|error| io_error(dir, error))?;
        let mut headers = read_headers(&fs, dir)?;
        remove_obsolete(&fs, dir, &mut headers)?;
        let (mut segments, last_term) = scan_segments(&fs, &headers, &config)?;
        if segments.is_empty() {
            create_segment_file(&fs, dir, FIRST_LOG_INDEX, false).map_err(|failure| {
                match failure {
                    // Nothing to poison yet: a half-created first segment is removed on retry.
                    WriteFailure::NoSpace(path) => StorageError::NoSpace { path },
                    failure => fatal_error(failure),
                }
            })?;
            segments.push(Segment::empty(FIRST_LOG_INDEX));
        }
        let last_path = dir.join(segment_file_name(
            segments
                .last()
                .map_or(FIRST_LOG_INDEX, |segment| segment.first_index),
        ));
        let active = fs
            .open(&last_path)
            .map_err(|error| io_error(&last_path, error))?;
        let active_bytes = active
            .len_bytes()
            .map_err(|error| io_error(&last_path, error))?;
        let wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            config,
            segments,
            active,
            active_bytes,
            last_term,
            poisoned: None,
            encode_buffer: Vec::new(),
        };
        wal.check_invariants();
        Ok(wal)
    }

    /// The index of the first entry still in the log (after compaction, possibly smaller than
    /// the compaction point: whole segments are removed).
    pub fn first_index(&self) -> u64 {
        self.segments[0].first_index
    }

    /// The index of the last entry; `first_index() - 1` when the log is empty.
    pub fn last_index(&self) -> u64 {
        self.next_index() - 1
    }

    fn next_index(&self) -> u64 {
        self.last_segment().next_index
    }

    /// Whether an earlier failure made the log refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn last_segment(&self) -> &Segment {
        let last = self.segments.len() - 1;
        &self.segments[last]
    }

    fn last_segment_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    fn segment_path(&self, first_index: u64) -> PathBuf {
        self.dir.join(segment_file_name(first_index))
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            None => Ok(()),
            Some(reason) => Err(StorageError::Fatal {
                reason: format!("an earlier failure poisoned the log: {reason}"),
            }),
        }
    }

    fn poison(&mut self, failure: WriteFailure) -> StorageError {
        let error = fatal_error(failure);
        if let StorageError::Fatal { reason } = &error {
            self.poisoned = Some(reason.clone());
        }
        error
    }

    /// Appends `records`, which must continue the log: the first has index
    /// `last_index() + 1`, indexes are contiguous and terms do not decrease (asserted).
    /// All are written, then made durable with one fdatasync (one more per segment rollover).
    ///
    /// Durable when it returns Ok. On [`StorageError::NoSpace`] nothing of the batch is on disk
    /// (what was written was truncated back, durably) and the log works as before. On
    /// [`StorageError::Fatal`] the log is poisoned. [`StorageError::RecordTooLarge`] is
    /// checked before anything is written.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.check_writable()?;
        if records.is_empty() {
            return Ok(());
        }
        self.assert_continues_log(records);
        for record in records {
            if record.encoded_bytes() > self.config.record_bytes_max {
                return Err(StorageError::RecordTooLarge {
                    index: record.index,
                    record_bytes: record.encoded_bytes(),
                    record_bytes_max: self.config.record_bytes_max,
                });
            }
        }
        let start = self.end_position();
        match self.write_batch(records) {
            Ok(()) => Ok(()),
            Err(WriteFailure::NoSpace(path)) => match self.truncate_to(&start) {
                Ok(()) => Err(StorageError::NoSpace { path }),
                Err(failure) => Err(self.poison(failure)),
            },
            Err(failure) => Err(self.poison(failure)),
        }
    }

    fn assert_continues_log(&self, records: &[Record]) {
        assert_eq!(
            records[0].index,
            self.next_index(),
            "append must continue the log: the last index is {}",
            self.last_index()
        );
        assert!(
            records[0].term >= self.last_term,
            "append of term {} after term {}",
            records[0].term,
            self.last_term
        );
        for pair in records.windows(2) {
            assert_eq!(
                pair[1].index,
                pair[0].index + 1,
                "appended indexes must be contiguous"
            );
            assert!(
                pair[1].term >= pair[0].term,
                "appended terms must not decrease"
            );
        }
    }

    fn end_position(&self) -> Position {
        Position {
            segments: self.segments.len(),
            end_offset: self.last_segment().end_offset,
            next_index: self.next_index(),
            last_term: self.last_term,
        }
    }

    fn write_batch(&mut self, records: &[Record]) -> Result<(), WriteFailure> {
        let mut buffer = std::mem::take(&mut self.encode_buffer);
        buffer.clear();
        let result = self.write_batch_with(records, &mut buffer);
        // A batch with a very large record leaves a large buffer: not kept.
        buffer.shrink_to(2 * self.config.write_buffer_bytes_max);
        self.encode_buffer = buffer;
        result
    }

    fn write_batch_with(
        &mut self,
        records: &[Record],
        buffer: &mut Vec<u8>,
    ) -> Result<(), WriteFailure> {
        for record in records {
            let frame_bytes = record.encoded_bytes();
            let segment = self.last_segment();
            if !segment.is_empty()
                && segment.end_offset + frame_bytes > self.config.segment_bytes_max
            {
                self.write_buffer(buffer)?;
                self.cut_zeros_ahead()?;
                self.sync_active()?;
                self.roll_over()?;
            }
            let stride = self.config.index_stride_bytes;
            let segment = self.last_segment_mut();
            let offset = segment.end_offset;
            let due = match segment.checkpoints.last() {
                None => true,
                Some(last) => offset - last.offset >= stride,
            };
            if due {
                segment.checkpoints.push(Checkpoint {
                    index: record.index,
                    offset,
                });
            }
            segment.end_offset += frame_bytes;
            segment.next_index += 1;
            self.last_term = record.term;
            encode_record(record, buffer);
            if buffer.len() >= self.config.write_buffer_bytes_max {
                self.write_buffer(buffer)?;
            }
        }
        self.write_buffer(buffer)?;
        self.sync_active()
    }

    /// Writes `buffer`, the records that end at the last segment's `end_offset`, then zeros
    /// ahead of them when the file does not reach `preallocate_bytes` past that.
    fn write_buffer(&mut self, buffer: &mut Vec<u8>) -> Result<(), WriteFailure> {
        if buffer.is_empty() {
            return Ok(());
        }
        let end = self.last_segment().end_offset;
        let offset = end - buffer.len() as u64;
        let result = self.active.write_at(offset, buffer);
        buffer.clear();
        let path = self.segment_path(self.last_segment().first_index);
        result.map_err(|error| write_failure(&path, "write to", error))?;
        self.active_bytes = self.active_bytes.max(end);
        let preallocate = self.config.preallocate_bytes;
        if preallocate > 0 && self.active_bytes < end + preallocate / 2 {
            let target = (end + preallocate).min(self.config.segment_bytes_max);
            if let Err(error) = self.write_zeros_to(target) {
                if !is_no_space(&error) {
                    return Err(fatal(&path, "preallocate", error));
                }
                // A full disk refuses the zeros ahead, not the records: go on without them,
                // knowing how far the file got (a piece may be part written).
                self.active_bytes = self
                    .active
                    .len_bytes()
                    .map_err(|error| fatal(&path, "read the length of", error))?;
            }
        }
        Ok(())
    }

    /// Grows the active segment with zeros to `target` bytes.
    fn write_zeros_to(&mut self, target: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while self.active_bytes < target {
            let piece = (target - self.active_bytes).min(ZEROS.len() as u64);
            self.active
                .write_at(self.active_bytes, &ZEROS[..piece as usize])?;
            self.active_bytes += piece;
        }
        Ok(())
    }

    /// Cuts the zeros written ahead off the active segment (before it is closed: recovery
    /// reads zeros as the end of the log only in the last segment). Durable with the next sync.
    fn cut_zeros_ahead(&mut self) -> Result<(), WriteFailure> {
        let end = self.last_segment().end_offset;
        if self.active_bytes > end {
            let result = self.active.truncate(end);
            result.map_err(|error| {
                let path = self.segment_path(self.last_segment().first_index);
                fatal(&path, "truncate", error)
            })?;
            self.active_bytes = end;
        }
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), WriteFailure> {
        let result = self.active.sync_data();
        result.map_err(|error| {
            let path = self.segment_path(self.last_segment().first_index);
            fatal(&path, "fdatasync", error)
        })
    }

    /// Starts a new segment after the last, durably (its entry in the directory too).
    fn roll_over(&mut self) -> Result<(), WriteFailure> {
        let first_index = self.next_index();
        // In the list before the file exists, so a rollback removes whatever part of it exists.
        self.segments.push(Segment::empty(first_index));
        self.active = create_segment_file(&self.fs, &self.dir, first_index, false)?;
        self.active_bytes = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Cuts the log back to `to`: removes newer segments (newest first, so a crash part way
    /// leaves a contiguous log), then truncates the last remaining one. Durable when it returns.
    fn truncate_to(&mut self, to: &Position) -> Result<(), WriteFailure> {
        assert!(to.segments >= 1 && to.segments <= self.segments.len());
        let removed_any = self.segments.len() > to.segments;
        while self.segments.len() > to.segments {
            let path = self.segment_path(self.last_segment().first_index);
            match self.fs.remove(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(fatal(&path, "remove", error)),
            }
            self.segments.pop();
        }
        if removed_any {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|error| fatal(&self.dir, "fsync directory", error))?;
        }
        let path = self.segment_path(self.last_segment().first_index);
        let mut file = self
            .fs
            .open(&path)
            .map_err(|error| fatal(&path, "open", error))?;
        file.truncate(to.end_offset)
            .map_err(|error| fatal(&path, "truncate", error))?;
        file.sync_data()
            .map_err(|error| fatal(&path, "fdatasync", error))?;
        self.active = file;
        self.active_bytes = to.end_offset;
        let segment = self.last_segment_mut();
        segment.end_offset = to.end_offset;
        segment.next_index = to.next_index;
        segment
            .checkpoints
            .retain(|checkpoint| checkpoint.index < to.next_index);
        self.last_term = to.last_term;
        Ok(())
    }

    /// Removes the entries from `from_index` on, because a new leader's log conflicts with
    /// them; the next append continues at `from_index`. `first_index() <= from_index <=
    /// last_index() + 1` (asserted: raft never truncates compacted entries).
    ///
    /// Durable when it returns Ok: the removed entries never come back after a crash. A crash
    /// during it leaves the log cut somewhere at or after `from_index`.
    pub fn truncate_suffix(&mut self, from_index: u64) -> Result<(), StorageError> {
        self.check_writable()?;
        assert!(
            from_index >= self.first_index() && from_index <= self.next_index(),
            "truncate_suffix({from_index}) outside the log [{}, {}]",
            self.first_index(),
            self.last_index()
        );
        if from_index == self.next_index() {
            return Ok(());
        }
        let (segment, end_offset) = self.locate(from_index)?;
        let last_term = if from_index > self.first_index() {
            self.read_one(from_index - 1)?.term
        } else {
            0
        };
        let position = Position {
            segments: segment + 1,
            end_offset,
            next_index: from_index,
            last_term,
        };
        self.truncate_to(&position)
            .map_err(|failure| self.poison(failure))
    }

    /// Declares the entries up to `up_to_index` no longer needed (they are in a snapshot) and
    /// removes every segment that holds only such entries. If `up_to_index >= last_index()`,
    /// the whole log goes and it restarts empty at `up_to_index + 1` (how a follower drops its
    /// log when it installs a snapshot).
    ///
    /// Durable when it returns Ok. A crash during it leaves the old first index or the new one,
    /// never a gap.
    pub fn compact_prefix(&mut self, up_to_index: u64) -> Result<(), StorageError> {
        self.check_writable()?;
        assert!(up_to_index < u64::MAX, "compact_prefix(u64::MAX)");
        if up_to_index < self.first_index() {
            return Ok(());
        }
        if up_to_index >= self.last_index() {
            return self.start_new_log(up_to_index + 1);
        }
        let removable = self
            .segments
            .iter()
            .take_while(|segment| segment.next_index <= up_to_index + 1)
            .count();
        self.remove_oldest_segments(removable)
            .map_err(|failure| self.poison(failure))
    }

    /// Removes the first `count` segments, oldest first (so a crash part way leaves a
    /// contiguous log), durably.
    fn remove_oldest_segments(&mut self, count: usize) -> Result<(), WriteFailure> {
        assert!(
            count < self.segments.len(),
            "the last segment is never removed here"
        );
        if count == 0 {
            return Ok(());
        }
        for segment in &self.segments[..count] {
            let path = self.segment_path(segment.first_index);
            self.fs
                .remove(&path)
                .map_err(|error| fatal(&path, "remove", error))?;
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|error| fatal(&self.dir, "fsync directory", error))?;
        self.segments.drain(..count);
        Ok(())
    }

    fn start_new_log(&mut self, first_index: u64) -> Result<(), StorageError> {
        let last = self.last_segment();
        if last.is_empty() && last.first_index == first_index {
            // The log already ends where the new one starts, in an empty segment. It must say
            // that it starts a new log before the older segments go: otherwise a crash part way
            // through the removals leaves a shortened old log, which is neither the old first
            // index nor the new one.
            let count = self.segments.len() - 1;
            if count > 0 {
                self.mark_active_as_new_log(first_index)
                    .map_err(|failure| self.poison(failure))?;
            }
            self.last_term = 0;
            return self
                .remove_oldest_segments(count)
                .map_err(|failure| self.poison(failure));
        }
        let path = self.segment_path(first_index);
        let file = match create_segment_file(&self.fs, &self.dir, first_index, true) {
            Ok(file) => file,
            Err(WriteFailure::NoSpace(_)) => {
                return match self.remove_partial_segment(&path) {
                    Ok(()) => Err(StorageError::NoSpace { path }),
                    Err(failure) => Err(self.poison(failure)),
                };
            }
            Err(failure) => return Err(self.poison(failure)),
        };
        // The new segment is durable and marks everything before it obsolete: recovery
        // finishes these removals if a crash interrupts them.
        self.segments.push(Segment::empty(first_index));
        self.active = file;
        self.active_bytes = SEGMENT_HEADER_BYTES;
        self.last_term = 0;
        let count = self.segments.len() - 1;
        self.remove_oldest_segments(count)
            .map_err(|failure| self.poison(failure))
    }

    /// Rewrites the empty active segment's header to mark it as the start of a new log,
    /// durably. A crash during the rewrite leaves the old header or a torn one (recovery then
    /// drops the empty segment): the old log either way.
    fn mark_active_as_new_log(&mut self, first_index: u64) -> Result<(), WriteFailure> {
        let path = self.segment_path(first_index);
        let header = encode_segment_header(&SegmentHeader {
            first_index,
            starts_new_log: true,
        });
        self.active
            .write_at(0, &header)
            .map_err(|error| fatal(&path, "rewrite the header of", error))?;
        self.active
            .sync_data()
            .map_err(|error| fatal(&path, "fdatasync", error))
    }

    fn remove_partial_segment(&self, path: &Path) -> Result<(), WriteFailure> {
        match self.fs.remove(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(fatal(path, "remove", error)),
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|error| fatal(&self.dir, "fsync directory", error))
    }

    /// Reads the entries `lo..hi` (`hi` exclusive), stopping early once their encoded size
    /// would pass `bytes_max` (at least one entry is returned when `lo < hi`). Reads only the
    /// segments that hold them, starting near `lo` through the in-memory checkpoints.
    ///
    /// Errors: [`StorageError::Compacted`] if `lo < first_index()`,
    /// [`StorageError::Unavailable`] if `hi > last_index() + 1`, [`StorageError::Corrupt`] if
    /// a record fails its checks, [`StorageError::Io`] if a read fails.
    pub fn read_range(
        &self,
        lo: u64,
        hi: u64,
        bytes_max: u64,
    ) -> Result<Vec<Record>, StorageError> {
        assert!(lo <= hi, "read_range({lo}, {hi})");
        if lo < self.first_index() {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: self.first_index(),
            });
        }
        if hi > self.next_index() {
            return Err(StorageError::Unavailable {
                index: hi - 1,
                last_index: self.last_index(),
            });
        }
        let mut records = Vec::new();
        let mut bytes = 0u64;
        let mut index = lo;
        while index < hi {
            let number = self.segment_holding(index);
            let segment = &self.segments[number];
            let path = self.segment_path(segment.first_index);
            let file = self
                .fs
                .open(&path)
                .map_err(|error| io_error(&path, error))?;
            let mut reader =
                ChunkReader::new(&file, segment.end_offset, self.config.read_chunk_bytes);
            let mut offset = self.offset_of(segment, &mut reader, &path, index)?;
            while index < hi.min(segment.next_index) {
                let (record, frame_bytes) = self.read_frame(&mut reader, &path, offset)?;
                if record.index != index {
                    let error = DecodeError::UnexpectedIndex {
                        expected: index,
                        found: record.index,
                    };
                    return Err(corrupt(&path, offset, error));
                }
                if !records.is_empty() && bytes + frame_bytes > bytes_max {
                    return Ok(records);
                }
                bytes += frame_bytes;
                records.push(record);
                offset += frame_bytes;
                index += 1;
            }
        }
        Ok(records)
    }

    fn read_one(&self, index: u64) -> Result<Record, StorageError> {
        let mut records = self.read_range(index, index + 1, 0)?;
        assert_eq!(records.len(), 1);
        Ok(records.remove(0))
    }

    /// Reads and checks the whole frame at `offset`: the record and its size in bytes.
    fn read_frame(
        &self,
        reader: &mut ChunkReader<'_, F::File>,
        path: &Path,
        offset: u64,
    ) -> Result<(Record, u64), StorageError> {
        let header = self.read_frame_header(reader, path, offset)?;
        let body_bytes = header.body_bytes as usize;
        let body = reader
            .bytes_at(offset + FRAME_HEADER_BYTES, body_bytes)
            .map_err(|error| io_error(path, error))?;
        if body.len() < body_bytes {
            let error = DecodeError::Truncated {
                needed_bytes: offset + header.frame_bytes(),
                available_bytes: offset + FRAME_HEADER_BYTES + body.len() as u64,
            };
            return Err(corrupt(path, offset, error));
        }
        let record = decode_body(&header, body).map_err(|error| corrupt(path, offset, error))?;
        Ok((record, header.frame_bytes()))
    }

    fn read_frame_header(
        &self,
        reader: &mut ChunkReader<'_, F::File>,
        path: &Path,
        offset: u64,
    ) -> Result<FrameHeader, StorageError> {
        let bytes = reader
            .bytes_at(offset, FRAME_HEADER_BYTES as usize)
            .map_err(|error| io_error(path, error))?;
        let header = decode_frame_header(bytes).map_err(|error| corrupt(path, offset, error))?;
        check_frame_length(&header, self.config.record_bytes_max)
            .map_err(|error| corrupt(path, offset, error))?;
        Ok(header)
    }

    /// The position in `segments` of the segment holding `index`.
    fn segment_holding(&self, index: u64) -> usize {
        assert!(index >= self.first_index() && index < self.next_index());
        self.segments
            .partition_point(|segment| segment.first_index <= index)
            - 1
    }

    /// The segment holding `index` and the offset of its record.
    fn locate(&self, index: u64) -> Result<(usize, u64), StorageError> {
        let number = self.segment_holding(index);
        let segment = &self.segments[number];
        let path = self.segment_path(segment.first_index);
        let file = self
            .fs
            .open(&path)
            .map_err(|error| io_error(&path, error))?;
        let mut reader = ChunkReader::new(&file, segment.end_offset, self.config.read_chunk_bytes);
        let offset = self.offset_of(segment, &mut reader, &path, index)?;
        Ok((number, offset))
    }

    /// The offset of record `index` in `segment`, walking frame headers from the nearest
    /// checkpoint before it (at most `index_stride_bytes` of them).
    fn offset_of(
        &self,
        segment: &Segment,
        reader: &mut ChunkReader<'_, F::File>,
        path: &Path,
        index: u64,
    ) -> Result<u64, StorageError> {
        assert!(index >= segment.first_index && index < segment.next_index);
        let position = segment
            .checkpoints
            .partition_point(|checkpoint| checkpoint.index <= index);
        let checkpoint = segment.checkpoints[position - 1];
        let mut offset = checkpoint.offset;
        for _ in checkpoint.index..index {
            offset += self.read_frame_header(reader, path, offset)?.frame_bytes();
        }
        Ok(offset)
    }

    /// Asserts the invariants in the type's doc.
    pub fn check_invariants(&self) {
        assert!(!self.segments.is_empty(), "a log has at least one segment");
        assert!(self.first_index() >= FIRST_LOG_INDEX);
        for (number, segment) in self.segments.iter().enumerate() {
            assert!(segment.first_index <= segment.next_index);
            assert!(segment.end_offset >= SEGMENT_HEADER_BYTES);
            if let Some(next) = self.segments.get(number + 1) {
                assert_eq!(
                    segment.next_index, next.first_index,
                    "segments must be contiguous"
                );
                assert!(!segment.is_empty(), "only the last segment may be empty");
            }
            let expected_first = Checkpoint {
                index: segment.first_index,
                offset: SEGMENT_HEADER_BYTES,
            };
            assert_eq!(
                segment.checkpoints.first().copied(),
                (!segment.is_empty()).then_some(expected_first),
                "a segment's first checkpoint is its first record"
            );
            for pair in segment.checkpoints.windows(2) {
                assert!(pair[0].index < pair[1].index && pair[0].offset < pair[1].offset);
            }
            for checkpoint in &segment.checkpoints {
                assert!(checkpoint.index < segment.next_index);
                assert!(checkpoint.offset < segment.end_offset);
            }
        }
        if self.last_index() < self.first_index() {
            assert_eq!(self.last_term, 0, "an empty log has no last term");
        }
    }
}

/// Creates a segment file with its header, durably: the file and its directory entry.
fn create_segment_file<F: Fs>(
    fs: &F,
    dir: &Path,
    first_index: u64,
    starts_new_log: bool,
) -> Result<F::File, WriteFailure> {
    let path = dir.join(segment_file_name(first_index));
    let mut file = fs
        .create(&path)
        .map_err(|error| write_failure(&path, "create", error))?;
    let header = encode_segment_header(&SegmentHeader {
        first_index,
        starts_new_log,
    });
    file.append(&header)
        .map_err(|error| write_failure(&path, "append to", error))?;
    file.sync_data()
        .map_err(|error| fatal(&path, "fdatasync", error))?;
    fs.sync_dir(dir)
        .map_err(|error| fatal(dir, "fsync directory", error))?;
    Ok(file)
}

/// A segment file found on open, with its verified header.
struct FoundSegment {
    path: PathBuf,
    header: SegmentHeader,
}

/// Lists the segments and verifies their headers. A torn header on the last segment (a crash
/// while creating it: nothing but zeros after the header) is removed.
fn read_headers<F: Fs>(fs: &F, dir: &Path) -> Result<Vec<FoundSegment>, StorageError> {
    let names = fs.list(dir).map_err(|error| io_error(dir, error))?;
    let mut numbered: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| parse_segment_file_name(name).map(|index| (index, dir.join(name))))
        .collect();
    numbered.sort();
    let count = numbered.len();
    let mut found = Vec::with_capacity(count);
    for (number, (first_index, path)) in numbered.into_iter().enumerate() {
        let file = fs.open(&path).map_err(|error| io_error(&path, error))?;
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
        let read = read_exact_at(&file, 0, &mut bytes).map_err(|error| io_error(&path, error))?;
        let header = match decode_segment_header(&bytes[..read]) {
            Ok(header) => header,
            Err(error) => {
                let is_last = number + 1 == count;
                let file_bytes = file.len_bytes().map_err(|error| io_error(&path, error))?;
                let mut reader = ChunkReader::new(&file, file_bytes, 64 * 1024);
                let torn = reader
                    .is_zero_from(SEGMENT_HEADER_BYTES)
                    .map_err(|error| io_error(&path, error))?;
                if is_last && torn {
                    fs.remove(&path)
                        .map_err(|error| fatal_error(fatal(&path, "remove", error)))?;
                    fs.sync_dir(dir)
                        .map_err(|error| fatal_error(fatal(dir, "fsync directory", error)))?;
                    continue;
                }
                return Err(corrupt(&path, 0, error));
            }
        };
        if header.first_index != first_index || first_index < FIRST_LOG_INDEX {
            return Err(corrupt(&path, 0, DecodeError::NameMismatch));
        }
        found.push(FoundSegment { path, header });
    }
    Ok(found)
}

/// Removes the segments before the newest `STARTS_NEW_LOG` one: an interrupted compaction.
fn remove_obsolete<F: Fs>(
    fs: &F,
    dir: &Path,
    found: &mut Vec<FoundSegment>,
) -> Result<(), StorageError> {
    let Some(newest_start) = found
        .iter()
        .rposition(|segment| segment.header.starts_new_log)
    else {
        return Ok(());
    };
    if newest_start == 0 {
        return Ok(());
    }
    for segment in found.drain(..newest_start) {
        fs.remove(&segment.path)
            .map_err(|error| fatal_error(fatal(&segment.path, "remove", error)))?;
    }
    fs.sync_dir(dir)
        .map_err(|error| fatal_error(fatal(dir, "fsync directory", error)))
}

/// Scans every segment in order, truncating a torn tail of the last one. Returns the segments
/// and the term of the last record.
fn scan_segments<F: Fs>(
    fs: &F,
    found: &[FoundSegment],
    config: &WalConfig,
) -> Result<(Vec<Segment>, u64), StorageError> {
    let limits = config.scan_limits();
    let mut segments: Vec<Segment> = Vec::with_capacity(found.len());
    let mut last_term = 0;
    for (number, found_segment) in found.iter().enumerate() {
        let path = &found_segment.path;
        let first_index = found_segment.header.first_index;
        if let Some(previous) = segments.last() {
            if previous.next_index != first_index {
                let error = DecodeError::MissingSegment {
                    expected_first_index: previous.next_index,
                    found_first_index: first_index,
                };
                return Err(corrupt(path, 0, error));
            }
        }
        let mut file = fs.open(path).map_err(|error| io_error(path, error))?;
        let scan = scan_segment(&file, first_index, last_term, &limits)
            .map_err(|error| io_error(path, error))?;
        if let Some(failure) = scan.failure {
            let is_last = number + 1 == found.len();
            if !(is_last && failure.torn) {
                return Err(corrupt(path, failure.offset, failure.error));
            }
            // Nothing but zeros after the last record is the space written ahead
            // (`preallocate_bytes`): kept for the next appends. Anything else is cut off.
            if !failure.zeros_only {
                file.truncate(scan.end_offset)
                    .map_err(|error| fatal_error(fatal(path, "truncate", error)))?;
                file.sync_data()
                    .map_err(|error| fatal_error(fatal(path, "fdatasync", error)))?;
            }
        }
        if scan.next_index > first_index {
            last_term = scan.last_term;
        }
        segments.push(Segment {
            first_index,
            next_index: scan.next_index,
            end_offset: scan.end_offset,
            checkpoints: scan.checkpoints,
        });
    }
    Ok((segments, last_term))
}
