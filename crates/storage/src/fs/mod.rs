//! The disk seam: the few file-system operations the storage needs, and nothing more.
//!
//! [`RealFs`] runs them on the operating system; [`SimFs`] keeps them in memory with an explicit
//! model of what is durable, so the simulator and the crash tests can cut the power anywhere.
//!
//! The durability contract both implementations follow (the POSIX one, as Linux gives it):
//! - bytes appended to a file are durable once [`FsFile::sync_data`] on it returns Ok; so is a
//!   change of its length ([`FsFile::truncate`]);
//! - a directory entry (a [`Fs::create`], [`Fs::rename`] or [`Fs::remove`]) is durable once
//!   [`Fs::sync_dir`] on the directory returns Ok; until then a crash can undo it;
//! - a failed `sync_data` or `sync_dir` says nothing about what reached the disk.

mod real;
mod sim;

pub use real::{set_io_observer, IoKind, IoObserver, RealFile, RealFs};
pub use sim::{SimFile, SimFs, SimFsStats};

use std::io;
use std::path::Path;

/// Directory operations, and the way to files.
pub trait Fs {
    /// An open file: readable at any offset, written only by appending.
    type File: FsFile;

    /// Creates `dir` and its missing parents, durably: their entries are synced when it
    /// returns.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Creates a new, empty file; fails with `AlreadyExists` if `path` exists. The new entry is
    /// durable after [`Fs::sync_dir`] of its directory.
    fn create(&self, path: &Path) -> io::Result<Self::File>;

    /// Opens an existing file for reading and appending; `NotFound` if there is none.
    fn open(&self, path: &Path) -> io::Result<Self::File>;

    /// Renames `from` to `to` in the same directory, replacing `to` if it exists. Atomic: a
    /// crash leaves the old or the new entry, and the new one is durable after [`Fs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file. Durable after [`Fs::sync_dir`].
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// The names of the files (not directories) in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Makes the entries of `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file.
pub trait FsFile {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Appends all of `bytes`. On error a prefix of them may have been appended: the caller
    /// truncates it back. `ErrorKind`/raw OS error `ENOSPC` means the device is full.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Writes all of `bytes` at `offset`, over what is there; past the end the file grows (a
    /// gap reads as zeros). On error a prefix of them may have been written. `ENOSPC` as for
    /// [`FsFile::append`].
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;

    /// Makes the file's bytes and length durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;

    /// Cuts the file to `len_bytes`; durable after [`FsFile::sync_data`].
    fn truncate(&mut self, len_bytes: u64) -> io::Result<()>;

    /// The current length of the file in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
}

/// Linux's `ENOSPC`: the device is full.
pub const ENOSPC: i32 = 28;

/// Whether an I/O error means "the device is full".
pub fn is_no_space(error: &io::Error) -> bool {
    error.raw_os_error() == Some(ENOSPC)
}

/// Reads until `buf` is full or the file ends; returns the number of bytes read.
pub fn read_exact_at<File: FsFile>(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(offset + filled as u64, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
