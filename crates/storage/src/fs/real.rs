//! [`Fs`] over `std::fs`: what the server runs on.

use super::{Fs, FsFile};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A disk operation [`RealFs`] timed for an observer (see [`set_io_observer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Bytes appended to a file (a `write`; not yet durable).
    Append,
    /// A file's data or a directory made durable (`fdatasync`, `fsync`).
    Sync,
}

/// Called with each timed operation and how long it took.
pub type IoObserver = fn(IoKind, Duration);

static IO_OBSERVER: OnceLock<IoObserver> = OnceLock::new();

/// Installs the process's observer of [`RealFs`] appends and syncs (the server's metrics);
/// the first one installed stays. Without one, nothing is timed.
pub fn set_io_observer(observer: IoObserver) {
    let _ = IO_OBSERVER.set(observer);
}

/// Runs `operation`, timing it for the observer if one is installed.
fn timed<T>(kind: IoKind, operation: impl FnOnce() -> T) -> T {
    let Some(observer) = IO_OBSERVER.get() else {
        return operation();
    };
    let started = Instant::now();
    let result = operation();
    observer(kind, started.elapsed());
    result
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// A file opened for reading and appending (`O_APPEND`).
#[derive(Debug)]
pub struct RealFile {
    file: File,
}

impl Fs for RealFs {
    type File = RealFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let missing: Vec<&Path> = dir
            .ancestors()
            .filter(|path| !path.as_os_str().is_empty())
            .take_while(|path| !path.exists())
            .collect();
        fs::create_dir_all(dir)?;
        // A new directory's entry is durable once its parent is synced.
        for created in missing {
            match created.parent() {
                Some(parent) if parent.as_os_str().is_empty() => self.sync_dir(Path::new("."))?,
                Some(parent) => self.sync_dir(parent)?,
                None => {}
            }
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<RealFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(RealFile { file })
    }

    fn open(&self, path: &Path) -> io::Result<RealFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(RealFile { file })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // A name that is not UTF-8 is none of ours.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = File::open(dir)?;
        timed(IoKind::Sync, || dir.sync_all())
    }
}

impl FsFile for RealFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Opened without O_APPEND (which would make `write_at` append too): seek to the end.
        timed(IoKind::Append, || {
            self.file.seek(SeekFrom::End(0))?;
            self.file.write_all(bytes)
        })
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        timed(IoKind::Append, || self.file.write_all_at(bytes, offset))
    }

    fn sync_data(&mut self) -> io::Result<()> {
        timed(IoKind::Sync, || self.file.sync_data())
    }

    fn truncate(&mut self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
