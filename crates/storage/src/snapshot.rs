//! Snapshot files: written atomically, verified on open, read and received in chunks.
//!
//! A snapshot is `<dir>/<last index, 20 digits>-<last term, 20 digits>.snap`:
//!
//! ```text
//! offset     size  field
//!      0        8  magic             "CHORUSSN"
//!      8        4  version           u32 LE, 1
//!     12        4  membership_bytes  u32 LE (m)
//!     16        8  last_index        u64 LE
//!     24        8  last_term         u64 LE
//!     32        8  data_bytes        u64 LE (d)
//!     40        m  membership        opaque
//!   40+m        4  header_crc        u32 LE: CRC-32C of bytes 0..40+m
//!   44+m        d  data              opaque (the state machine's)
//! 44+m+d        4  data_crc          u32 LE: CRC-32C of the data
//! ```
//!
//! InstallSnapshot sends the file's bytes as they are ([`SnapshotReader::read_chunk`]); the
//! receiver's [`SnapshotWriter`] checks them as they arrive and installs the snapshot only when
//! both checksums verify. Installing is atomic (temporary file, fdatasync, rename, directory
//! fsync) and removes the older snapshots.

use crate::codec::{checksum, checksum_append, put_u32, put_u64, FieldReader};
use crate::error::{DecodeError, StorageError};
use crate::fs::{is_no_space, read_exact_at, Fs, FsFile};
use crate::segment::ChunkReader;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CHORUSSN";
const VERSION: u32 = 1;
/// Bytes of the header before the membership.
pub const SNAPSHOT_HEADER_FIXED_BYTES: u64 = 40;
/// The largest membership the format allows, and the bound [`decode_snapshot_header`] applies.
pub const FORMAT_MEMBERSHIP_BYTES_MAX: u64 = 1024 * 1024;
const CRC_BYTES: u64 = 4;
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";

/// What a snapshot covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub last_index: u64,
    /// The term of that entry.
    pub last_term: u64,
    /// The membership in force at `last_index`, encoded by the caller.
    pub membership: Bytes,
}

/// A decoded, verified snapshot header, and where the rest of the file lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub meta: SnapshotMeta,
    /// Offset of the first data byte.
    pub data_offset: u64,
    pub data_bytes: u64,
    /// Length of the whole file: header, data and data checksum.
    pub file_bytes: u64,
}

/// Limits of a [`SnapshotStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// The largest snapshot file accepted, written or received.
    pub snapshot_bytes_max: u64,
    /// The largest membership accepted.
    pub membership_bytes_max: u64,
    /// The most bytes one `read_chunk`/`read_data` returns; also the verification buffer.
    pub chunk_bytes_max: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            snapshot_bytes_max: 8 * 1024 * 1024 * 1024,
            membership_bytes_max: 64 * 1024,
            chunk_bytes_max: 1024 * 1024,
        }
    }
}

impl SnapshotConfig {
    fn assert_valid(&self) {
        assert!(self.membership_bytes_max <= FORMAT_MEMBERSHIP_BYTES_MAX);
        assert!(self.chunk_bytes_max > 0 && self.chunk_bytes_max <= 1 << 30);
        assert!(self.snapshot_bytes_max >= SNAPSHOT_HEADER_FIXED_BYTES + 2 * CRC_BYTES);
    }
}

/// The header of a snapshot of `meta` with `data_bytes` of data.
pub fn encode_snapshot_header(meta: &SnapshotMeta, data_bytes: u64) -> Vec<u8> {
    assert!(meta.membership.len() as u64 <= FORMAT_MEMBERSHIP_BYTES_MAX);
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_FIXED_BYTES as usize + meta.membership.len());
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, meta.membership.len() as u32);
    put_u64(&mut out, meta.last_index);
    put_u64(&mut out, meta.last_term);
    put_u64(&mut out, data_bytes);
    out.extend_from_slice(&meta.membership);
    let crc = checksum(&out);
    put_u32(&mut out, crc);
    out
}

/// Decodes and verifies a snapshot header from the start of `bytes` (which may go on into the
/// data), with the format's membership limit. Never panics; allocates at most the membership,
/// once it is known to be present.
pub fn decode_snapshot_header(bytes: &[u8]) -> Result<SnapshotHeader, DecodeError> {
    decode_snapshot_header_limited(bytes, FORMAT_MEMBERSHIP_BYTES_MAX)
}

/// [`decode_snapshot_header`] with a smaller membership limit.
pub fn decode_snapshot_header_limited(
    bytes: &[u8],
    membership_bytes_max: u64,
) -> Result<SnapshotHeader, DecodeError> {
    let mut reader = FieldReader::new(bytes);
    if reader.take(8)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = reader.u32()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let membership_bytes = u64::from(reader.u32()?);
    let bytes_max = membership_bytes_max.min(FORMAT_MEMBERSHIP_BYTES_MAX);
    if membership_bytes > bytes_max {
        return Err(DecodeError::TooLarge {
            what: "membership",
            bytes: membership_bytes,
            bytes_max,
        });
    }
    let last_index = reader.u64()?;
    let last_term = reader.u64()?;
    let data_bytes = reader.u64()?;
    let membership = reader.take(membership_bytes as usize)?;
    let checked = reader.position();
    let crc = reader.u32()?;
    if checksum(&bytes[..checked]) != crc {
        return Err(DecodeError::HeaderChecksum);
    }
    let data_offset = reader.position() as u64;
    let file_bytes = data_offset
        .checked_add(data_bytes)
        .and_then(|bytes| bytes.checked_add(CRC_BYTES))
        .ok_or(DecodeError::TooLarge {
            what: "snapshot data",
            bytes: data_bytes,
            bytes_max: u64::MAX - data_offset - CRC_BYTES,
        })?;
    Ok(SnapshotHeader {
        meta: SnapshotMeta {
            last_index,
            last_term,
            membership: Bytes::copy_from_slice(membership),
        },
        data_offset,
        data_bytes,
        file_bytes,
    })
}

fn snapshot_file_name(last_index: u64, last_term: u64) -> String {
    format!("{last_index:020}-{last_term:020}{SNAPSHOT_SUFFIX}")
}

/// `(last_index, last_term)` of a snapshot file name; `None` for any other name.
fn parse_snapshot_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    let is_number = |digits: &str| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    if !is_number(index) || !is_number(term) {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

fn io_error(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fatal(path: &Path, action: &str, error: io::Error) -> StorageError {
    StorageError::Fatal {
        reason: format!("{action} {}: {error}", path.display()),
    }
}

fn corrupt(path: &Path, offset: u64, error: DecodeError) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        error,
    }
}

/// The snapshot directory.
pub struct SnapshotStore<F: Fs + Clone> {
    fs: F,
    dir: PathBuf,
    config: SnapshotConfig,
    /// Names temporary files, so two writers never share one.
    temp_counter: u64,
}

impl<F: Fs + Clone> SnapshotStore<F> {
    /// Opens the snapshot directory (created if missing) and removes temporary files that a
    /// crash or an abandoned transfer left.
    pub fn open(fs: F, dir: &Path, config: SnapshotConfig) -> Result<Self, StorageError> {
        config.assert_valid();
        fs.create_dir_all(dir)
            .map_err(|error| io_error(dir, error))?;
        let names = fs.list(dir).map_err(|error| io_error(dir, error))?;
        let mut removed_any = false;
        for name in names.iter().filter(|name| name.ends_with(TEMP_SUFFIX)) {
            let path = dir.join(name);
            fs.remove(&path)
                .map_err(|error| fatal(&path, "remove", error))?;
            removed_any = true;
        }
        if removed_any {
            fs.sync_dir(dir)
                .map_err(|error| fatal(dir, "fsync directory", error))?;
        }
        Ok(SnapshotStore {
            fs,
            dir: dir.to_path_buf(),
            config,
            temp_counter: 0,
        })
    }

    /// Writes a snapshot of the local state machine and installs it, removing older ones.
    /// Durable when it returns Ok. Errors as [`SnapshotWriter::finish`].
    pub fn save(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let header = encode_snapshot_header(meta, data.len() as u64);
        let mut trailer = Vec::with_capacity(CRC_BYTES as usize);
        put_u32(&mut trailer, checksum(data));
        let mut writer = self.begin_receive()?;
        let mut offset = 0;
        for part in [&header[..], data, &trailer[..]] {
            if let Err(error) = writer.write_chunk(offset, part) {
                // Best effort: a leftover is removed by the next open.
                let _ = writer.abort();
                return Err(error);
            }
            offset += part.len() as u64;
        }
        writer.finish().map(|_| ())
    }

    /// Starts receiving a snapshot's file bytes in chunks (InstallSnapshot).
    pub fn begin_receive(&mut self) -> Result<SnapshotWriter<F>, StorageError> {
        self.new_file("incoming").begin()
    }

    /// A snapshot file of the local state machine, to be written later, possibly on another
    /// thread ([`LocalSnapshotFile::begin`]) while this store goes on (receiving a leader's
    /// snapshot meanwhile is fine: each file has its own temporary name, and the newest
    /// installed wins).
    pub fn local_file(&mut self) -> LocalSnapshotFile<F> {
        self.new_file("local")
    }

    fn new_file(&mut self, prefix: &str) -> LocalSnapshotFile<F> {
        self.temp_counter += 1;
        let temp_path = self
            .dir
            .join(format!("{prefix}-{:020}{TEMP_SUFFIX}", self.temp_counter));
        LocalSnapshotFile {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            temp_path,
            config: self.config.clone(),
        }
    }

    /// The newest snapshot, fully verified (both checksums, length, name): `Ok(None)` if there
    /// is none, [`StorageError::Corrupt`] if it fails verification.
    pub fn latest_snapshot(&self) -> Result<Option<SnapshotReader<F>>, StorageError> {
        let names = self
            .fs
            .list(&self.dir)
            .map_err(|error| io_error(&self.dir, error))?;
        let Some((index, term)) = names
            .iter()
            .filter_map(|name| parse_snapshot_file_name(name))
            .max()
        else {
            return Ok(None);
        };
        let path = self.dir.join(snapshot_file_name(index, term));
        let file = self
            .fs
            .open(&path)
            .map_err(|error| io_error(&path, error))?;
        let header = self.verify(&file, &path)?;
        if (header.meta.last_index, header.meta.last_term) != (index, term) {
            return Err(corrupt(&path, 0, DecodeError::NameMismatch));
        }
        Ok(Some(SnapshotReader {
            file,
            path,
            header,
            chunk_bytes_max: self.config.chunk_bytes_max,
        }))
    }

    /// Reads the whole file through a bounded buffer, checking header, length and data.
    fn verify(&self, file: &F::File, path: &Path) -> Result<SnapshotHeader, StorageError> {
        let file_bytes = file.len_bytes().map_err(|error| io_error(path, error))?;
        let chunk_bytes = self.config.chunk_bytes_max as usize;
        let mut reader = ChunkReader::new(file, file_bytes, chunk_bytes);
        let header_bytes_max =
            SNAPSHOT_HEADER_FIXED_BYTES + self.config.membership_bytes_max + CRC_BYTES;
        let bytes = reader
            .bytes_at(0, header_bytes_max as usize)
            .map_err(|error| io_error(path, error))?;
        let header = decode_snapshot_header_limited(bytes, self.config.membership_bytes_max)
            .map_err(|error| corrupt(path, 0, error))?;
        if header.file_bytes != file_bytes {
            let error = if header.file_bytes > file_bytes {
                DecodeError::Truncated {
                    needed_bytes: header.file_bytes,
                    available_bytes: file_bytes,
                }
            } else {
                DecodeError::TrailingBytes {
                    bytes: file_bytes - header.file_bytes,
                }
            };
            return Err(corrupt(path, file_bytes.min(header.file_bytes), error));
        }
        let mut crc = checksum(&[]);
        let data_end = header.data_offset + header.data_bytes;
        let mut offset = header.data_offset;
        while offset < data_end {
            let len = (data_end - offset).min(chunk_bytes as u64) as usize;
            let chunk = reader
                .bytes_at(offset, len)
                .map_err(|error| io_error(path, error))?;
            if chunk.is_empty() {
                break;
            }
            crc = checksum_append(crc, chunk);
            offset += chunk.len() as u64;
        }
        let trailer = reader
            .bytes_at(data_end, CRC_BYTES as usize)
            .map_err(|error| io_error(path, error))?;
        let stored = FieldReader::new(trailer)
            .u32()
            .map_err(|error| corrupt(path, data_end, error))?;
        if offset != data_end || stored != crc {
            return Err(corrupt(path, header.data_offset, DecodeError::BodyChecksum));
        }
        Ok(header)
    }
}

/// What a [`SnapshotWriter`] has checked so far.
#[derive(Clone, Debug, Default)]
struct ChunkCheck {
    /// The first bytes, until the header decodes (bounded by the membership limit).
    header_bytes: Vec<u8>,
    header: Option<SnapshotHeader>,
    data_crc: u32,
    trailer: Vec<u8>,
}

impl ChunkCheck {
    /// Checks the file bytes `bytes` that start at `offset`.
    fn feed(
        &mut self,
        offset: u64,
        bytes: &[u8],
        config: &SnapshotConfig,
    ) -> Result<(), DecodeError> {
        let mut rest = bytes;
        let mut offset = offset;
        if self.header.is_none() {
            let header_bytes_max =
                (SNAPSHOT_HEADER_FIXED_BYTES + config.membership_bytes_max + CRC_BYTES) as usize;
            let take = rest.len().min(header_bytes_max - self.header_bytes.len());
            self.header_bytes.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            offset += take as u64;
            match decode_snapshot_header_limited(&self.header_bytes, config.membership_bytes_max) {
                Ok(header) => {
                    if header.file_bytes > config.snapshot_bytes_max {
                        return Err(DecodeError::TooLarge {
                            what: "snapshot",
                            bytes: header.file_bytes,
                            bytes_max: config.snapshot_bytes_max,
                        });
                    }
                    self.data_crc = checksum(&[]);
                    let data_offset = header.data_offset;
                    let beyond_header = self.header_bytes.split_off(data_offset as usize);
                    self.header = Some(header);
                    self.feed_body(data_offset, &beyond_header)?;
                }
                Err(DecodeError::Truncated { .. }) if rest.is_empty() => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        self.feed_body(offset, rest)
    }

    /// Checks bytes past the header: data (into the checksum), then the data checksum.
    fn feed_body(&mut self, offset: u64, bytes: &[u8]) -> Result<(), DecodeError> {
        let Some(header) = &self.header else {
            return Ok(());
        };
        let end = offset + bytes.len() as u64;
        if end > header.file_bytes {
            return Err(DecodeError::TrailingBytes {
                bytes: end - header.file_bytes,
            });
        }
        let data_end = header.data_offset + header.data_bytes;
        let data_len = data_end.saturating_sub(offset).min(bytes.len() as u64) as usize;
        self.data_crc = checksum_append(self.data_crc, &bytes[..data_len]);
        self.trailer.extend_from_slice(&bytes[data_len..]);
        Ok(())
    }

    /// The verified header, once every byte arrived and the data checksum matches.
    fn complete(&self, received_bytes: u64) -> Result<SnapshotHeader, DecodeError> {
        let Some(header) = &self.header else {
            return Err(DecodeError::Truncated {
                needed_bytes: SNAPSHOT_HEADER_FIXED_BYTES,
                available_bytes: received_bytes,
            });
        };
        if received_bytes != header.file_bytes {
            return Err(DecodeError::Truncated {
                needed_bytes: header.file_bytes,
                available_bytes: received_bytes,
            });
        }
        if FieldReader::new(&self.trailer).u32()? != self.data_crc {
            return Err(DecodeError::BodyChecksum);
        }
        Ok(header.clone())
    }
}

/// Receives a snapshot's file bytes in order and installs it when complete.
///
/// Only one snapshot is installed at a time by a node. Dropping a writer abandons the transfer;
/// its temporary file is removed by [`SnapshotWriter::abort`] or the next
/// [`SnapshotStore::open`].
pub struct SnapshotWriter<F: Fs> {
    fs: F,
    dir: PathBuf,
    temp_path: PathBuf,
    file: F::File,
    config: SnapshotConfig,
    received_bytes: u64,
    check: ChunkCheck,
}

impl<F: Fs> SnapshotWriter<F> {
    /// How many bytes have been received: the offset the next chunk must have.
    pub fn received_bytes(&self) -> u64 {
        self.received_bytes
    }

    /// Takes the file bytes `bytes` at `offset`. Not durable until [`SnapshotWriter::finish`].
    ///
    /// Errors: [`StorageError::ChunkOutOfOrder`] (nothing taken: resend from
    /// `received_bytes`), [`StorageError::InvalidSnapshot`] (the bytes are not a snapshot
    /// within the limits: abort), [`StorageError::NoSpace`] (nothing taken: retry the chunk
    /// later), [`StorageError::Fatal`].
    pub fn write_chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        if offset != self.received_bytes {
            return Err(StorageError::ChunkOutOfOrder {
                offset,
                expected_offset: self.received_bytes,
            });
        }
        let before = self.check.clone();
        self.check
            .feed(offset, bytes, &self.config)
            .map_err(|error| StorageError::InvalidSnapshot { error })?;
        if let Err(error) = self.file.append(bytes) {
            self.check = before;
            if !is_no_space(&error) {
                return Err(fatal(&self.temp_path, "append to", error));
            }
            self.file
                .truncate(self.received_bytes)
                .map_err(|error| fatal(&self.temp_path, "truncate", error))?;
            return Err(StorageError::NoSpace {
                path: self.temp_path.clone(),
            });
        }
        self.received_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Verifies the whole snapshot and installs it: fdatasync, rename into place, directory
    /// fsync, then removes the snapshots older than it. Returns its meta. Durable when it
    /// returns Ok; a crash before leaves the previous snapshot in place.
    ///
    /// Errors: [`StorageError::InvalidSnapshot`] (incomplete or bad checksum; the temporary
    /// file is removed), [`StorageError::Fatal`].
    pub fn finish(mut self) -> Result<SnapshotMeta, StorageError> {
        let header = match self.check.complete(self.received_bytes) {
            Ok(header) => header,
            Err(error) => {
                // Best effort: a leftover is removed by the next open.
                let _ = self.fs.remove(&self.temp_path);
                return Err(StorageError::InvalidSnapshot { error });
            }
        };
        self.file
            .sync_data()
            .map_err(|error| fatal(&self.temp_path, "fdatasync", error))?;
        let meta = header.meta;
        let name = snapshot_file_name(meta.last_index, meta.last_term);
        let path = self.dir.join(&name);
        self.fs
            .rename(&self.temp_path, &path)
            .map_err(|error| fatal(&self.temp_path, "rename", error))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|error| fatal(&self.dir, "fsync directory", error))?;
        self.remove_older(meta.last_index, &name)?;
        Ok(meta)
    }

    /// Removes every other snapshot at or below `last_index`, durably.
    fn remove_older(&self, last_index: u64, keep: &str) -> Result<(), StorageError> {
        let names = self
            .fs
            .list(&self.dir)
            .map_err(|error| io_error(&self.dir, error))?;
        let mut removed_any = false;
        for name in &names {
            let Some((index, _)) = parse_snapshot_file_name(name) else {
                continue;
            };
            if index <= last_index && name != keep {
                let path = self.dir.join(name);
                self.fs
                    .remove(&path)
                    .map_err(|error| fatal(&path, "remove", error))?;
                removed_any = true;
            }
        }
        if removed_any {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|error| fatal(&self.dir, "fsync directory", error))?;
        }
        Ok(())
    }

    /// Abandons the transfer and removes the temporary file.
    pub fn abort(self) -> Result<(), StorageError> {
        match self.fs.remove(&self.temp_path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(fatal(&self.temp_path, "remove", error)),
        }
    }
}

/// Where a snapshot will be written ([`SnapshotStore::local_file`]); nothing is created yet.
pub struct LocalSnapshotFile<F: Fs> {
    fs: F,
    dir: PathBuf,
    temp_path: PathBuf,
    config: SnapshotConfig,
}

impl<F: Fs> LocalSnapshotFile<F> {
    /// Creates the temporary file for a transfer in chunks.
    fn begin(self) -> Result<SnapshotWriter<F>, StorageError> {
        let temp_path = self.temp_path;
        let file = self.fs.create(&temp_path).map_err(|error| {
            if is_no_space(&error) {
                StorageError::NoSpace {
                    path: temp_path.clone(),
                }
            } else {
                fatal(&temp_path, "create", error)
            }
        })?;
        Ok(SnapshotWriter {
            fs: self.fs,
            dir: self.dir,
            temp_path,
            file,
            config: self.config,
            received_bytes: 0,
            check: ChunkCheck::default(),
        })
    }

    /// Creates the temporary file and writes the header of a snapshot of `meta` whose data is
    /// `data_bytes` long; the data follows through [`SnapshotDataWriter`].
    pub fn create(
        self,
        meta: &SnapshotMeta,
        data_bytes: u64,
    ) -> Result<SnapshotDataWriter<F>, StorageError> {
        let mut writer = self.begin()?;
        let header = encode_snapshot_header(meta, data_bytes);
        if let Err(error) = writer.write_chunk(0, &header) {
            let _ = writer.abort();
            return Err(error);
        }
        Ok(SnapshotDataWriter {
            writer,
            data_left: data_bytes,
            data_crc: checksum(&[]),
        })
    }
}

/// Writes a local snapshot's data after its header, then its checksum; `std::io::Write` too (a
/// [`StorageError`] comes back as the `io::Error`'s inner error). Dropping it leaves a
/// temporary file that the next [`SnapshotStore::open`] removes.
pub struct SnapshotDataWriter<F: Fs> {
    writer: SnapshotWriter<F>,
    data_left: u64,
    data_crc: u32,
}

impl<F: Fs> SnapshotDataWriter<F> {
    /// Appends data; more than the header announced is refused.
    pub fn write_data(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.len() as u64 > self.data_left {
            return Err(StorageError::InvalidSnapshot {
                error: DecodeError::TrailingBytes {
                    bytes: bytes.len() as u64 - self.data_left,
                },
            });
        }
        let offset = self.writer.received_bytes();
        self.writer.write_chunk(offset, bytes)?;
        self.data_left -= bytes.len() as u64;
        self.data_crc = checksum_append(self.data_crc, bytes);
        Ok(())
    }

    /// Writes the data checksum and fdatasyncs the file: what is left to install it
    /// ([`SnapshotWriter::finish`]: rename, directory fsync) is quick. Errors when less data
    /// came than the header announced.
    pub fn finish_data(mut self) -> Result<SnapshotWriter<F>, StorageError> {
        if self.data_left != 0 {
            let _ = self.writer.abort();
            return Err(StorageError::InvalidSnapshot {
                error: DecodeError::Truncated {
                    needed_bytes: self.data_left,
                    available_bytes: 0,
                },
            });
        }
        let mut trailer = Vec::with_capacity(CRC_BYTES as usize);
        put_u32(&mut trailer, self.data_crc);
        let offset = self.writer.received_bytes();
        self.writer.write_chunk(offset, &trailer)?;
        self.writer
            .file
            .sync_data()
            .map_err(|error| fatal(&self.writer.temp_path, "fdatasync", error))?;
        Ok(self.writer)
    }

    /// Abandons the file.
    pub fn abort(self) -> Result<(), StorageError> {
        self.writer.abort()
    }
}

impl<F: Fs> io::Write for SnapshotDataWriter<F> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_data(bytes).map_err(io::Error::other)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An installed, verified snapshot, open for reading.
pub struct SnapshotReader<F: Fs> {
    file: F::File,
    path: PathBuf,
    header: SnapshotHeader,
    chunk_bytes_max: u64,
}

impl<F: Fs> SnapshotReader<F> {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.header.meta
    }

    /// Bytes of the whole file, what InstallSnapshot sends.
    pub fn file_bytes(&self) -> u64 {
        self.header.file_bytes
    }

    /// Bytes of the state machine's data.
    pub fn data_bytes(&self) -> u64 {
        self.header.data_bytes
    }

    /// Up to `len` (at most `chunk_bytes_max`) file bytes at `offset`, for InstallSnapshot;
    /// fewer at the end, none past it.
    pub fn read_chunk(&self, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.read_bounded(offset, len, self.header.file_bytes)
    }

    /// Up to `len` (at most `chunk_bytes_max`) bytes of the data at `offset` into the data.
    pub fn read_data(&self, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let offset = offset.min(self.header.data_bytes);
        let data_end = self.header.data_offset + self.header.data_bytes;
        self.read_bounded(self.header.data_offset + offset, len, data_end)
    }

    fn read_bounded(&self, offset: u64, len: u64, end: u64) -> Result<Vec<u8>, StorageError> {
        let len = len
            .min(self.chunk_bytes_max)
            .min(end.saturating_sub(offset));
        let mut bytes = vec![0u8; len as usize];
        let read = read_exact_at(&self.file, offset, &mut bytes)
            .map_err(|error| io_error(&self.path, error))?;
        if read < bytes.len() {
            let error = DecodeError::Truncated {
                needed_bytes: offset + len,
                available_bytes: offset + read as u64,
            };
            return Err(corrupt(&self.path, offset + read as u64, error));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fs::SimFs;

    fn store(fs: &SimFs) -> SnapshotStore<SimFs> {
        SnapshotStore::open(
            fs.clone(),
            Path::new("/node/snap"),
            SnapshotConfig::default(),
        )
        .unwrap()
    }

    fn meta(last_index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index,
            last_term: 2,
            membership: Bytes::from_static(b"members"),
        }
    }

    #[test]
    fn header_round_trips() {
        let bytes = encode_snapshot_header(&meta(5), 10);
        let header = decode_snapshot_header(&bytes).unwrap();
        assert_eq!(header.meta, meta(5));
        assert_eq!(header.data_offset, bytes.len() as u64);
        assert_eq!(header.file_bytes, bytes.len() as u64 + 10 + CRC_BYTES);
    }

    #[test]
    fn saved_snapshot_is_the_latest_after_a_crash_and_older_ones_are_removed() {
        let fs = SimFs::new();
        let mut store = store(&fs);
        store.save(&meta(5), b"old data").unwrap();
        store.save(&meta(9), b"new data").unwrap();
        fs.crash(|_| 0);
        let store = self::store(&fs);
        let latest = store.latest_snapshot().unwrap().unwrap();
        assert_eq!(latest.meta(), &meta(9));
        assert_eq!(latest.read_data(0, 100).unwrap(), b"new data");
        assert_eq!(fs.list(Path::new("/node/snap")).unwrap().len(), 1);
    }

    #[test]
    fn snapshot_sent_in_chunks_installs_on_the_receiver() {
        let sender_fs = SimFs::new();
        let mut sender = store(&sender_fs);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        sender.save(&meta(40), &data).unwrap();
        let reader = sender.latest_snapshot().unwrap().unwrap();

        let receiver_fs = SimFs::new();
        let mut receiver = store(&receiver_fs);
        let mut writer = receiver.begin_receive().unwrap();
        while writer.received_bytes() < reader.file_bytes() {
            let chunk = reader.read_chunk(writer.received_bytes(), 777).unwrap();
            writer.write_chunk(writer.received_bytes(), &chunk).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), meta(40));
        let installed = receiver.latest_snapshot().unwrap().unwrap();
        assert_eq!(installed.read_data(0, 1 << 20).unwrap(), data);
    }

    #[test]
    fn local_snapshot_written_in_pieces_installs_and_a_short_one_is_refused() {
        let fs = SimFs::new();
        let mut store = store(&fs);
        let data: Vec<u8> = (0..5_000u32).map(|i| (i * 7) as u8).collect();
        let file = store.local_file();
        let mut writer = file.create(&meta(12), data.len() as u64).unwrap();
        for piece in data.chunks(333) {
            io::Write::write_all(&mut writer, piece).unwrap();
        }
        assert!(writer.write_data(b"x").is_err(), "more data than announced");
        let prepared = writer.finish_data().unwrap();
        assert!(
            store.latest_snapshot().unwrap().is_none(),
            "not installed yet"
        );
        assert_eq!(prepared.finish().unwrap(), meta(12));
        fs.crash(|_| 0);
        let store = self::store(&fs);
        let latest = store.latest_snapshot().unwrap().unwrap();
        assert_eq!(latest.read_data(0, 1 << 20).unwrap(), data);

        let mut store = store;
        let short = store.local_file().create(&meta(20), 10).unwrap();
        assert!(short.finish_data().is_err());
        assert_eq!(store.latest_snapshot().unwrap().unwrap().meta(), &meta(12));
    }

    #[test]
    fn out_of_order_chunk_is_refused_with_the_expected_offset() {
        let fs = SimFs::new();
        let mut store = store(&fs);
        let mut writer = store.begin_receive().unwrap();
        writer
            .write_chunk(0, &encode_snapshot_header(&meta(3), 0))
            .unwrap();
        let error = writer.write_chunk(1, b"x").unwrap_err();
        assert!(matches!(
            error,
            StorageError::ChunkOutOfOrder { offset: 1, .. }
        ));
    }

    #[test]
    fn incomplete_or_damaged_transfer_is_not_installed() {
        let fs = SimFs::new();
        let mut store = store(&fs);
        let mut writer = store.begin_receive().unwrap();
        writer
            .write_chunk(0, &encode_snapshot_header(&meta(3), 4))
            .unwrap();
        let offset = writer.received_bytes();
        writer.write_chunk(offset, b"data").unwrap();
        let offset = writer.received_bytes();
        writer.write_chunk(offset, &[0, 0, 0, 0]).unwrap();
        assert!(matches!(
            writer.finish(),
            Err(StorageError::InvalidSnapshot {
                error: DecodeError::BodyChecksum
            })
        ));
        assert!(store.latest_snapshot().unwrap().is_none());
        assert!(fs.list(Path::new("/node/snap")).unwrap().is_empty());
    }

    #[test]
    fn bytes_past_the_end_are_refused() {
        let fs = SimFs::new();
        let mut store = store(&fs);
        let mut writer = store.begin_receive().unwrap();
        let mut bytes = encode_snapshot_header(&meta(3), 0);
        put_u32(&mut bytes, checksum(&[]));
        bytes.push(1);
        assert!(matches!(
            writer.write_chunk(0, &bytes),
            Err(StorageError::InvalidSnapshot {
                error: DecodeError::TrailingBytes { bytes: 1 }
            })
        ));
    }

    #[test]
    fn snapshot_at_size_limit_is_accepted_and_one_past_is_refused() {
        let fs = SimFs::new();
        let header_bytes = encode_snapshot_header(&meta(3), 100).len() as u64;
        let limit = header_bytes + 100 + CRC_BYTES;
        let config = SnapshotConfig {
            snapshot_bytes_max: limit,
            ..SnapshotConfig::default()
        };
        let mut store = SnapshotStore::open(fs.clone(), Path::new("/s"), config).unwrap();
        store.save(&meta(3), &[7; 100]).unwrap();
        let error = store.save(&meta(4), &[7; 101]).unwrap_err();
        assert!(matches!(
            error,
            StorageError::InvalidSnapshot {
                error: DecodeError::TooLarge { .. }
            }
        ));
    }

    #[test]
    fn huge_membership_length_is_refused_before_reading_it() {
        let mut bytes = encode_snapshot_header(&meta(3), 0);
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_snapshot_header(&bytes),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn leftover_temporary_files_are_removed_on_open() {
        let fs = SimFs::new();
        let mut store = store(&fs);
        let mut writer = store.begin_receive().unwrap();
        writer.write_chunk(0, b"CHORUS").unwrap();
        drop(writer);
        let _ = self::store(&fs);
        assert!(fs.list(Path::new("/node/snap")).unwrap().is_empty());
    }
}
