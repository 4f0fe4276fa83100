//! [`Fs`] in memory, with an explicit model of what survives a crash.
//!
//! Every file keeps two versions: what is durable and what is current (written, maybe not
//! synced). Every directory keeps its durable entries, its current entries, and the operations
//! between them. [`SimFs::crash`] cuts the power: each directory keeps a prefix of its pending
//! operations (journaled metadata is ordered), and each file with unsynced changes keeps its
//! durable version, or its synced prefix plus a torn prefix of the unsynced bytes, possibly
//! followed by zeros (the length reached the disk, the data did not). Every choice comes from
//! the caller's `choose`, so a seed replays a crash exactly. Nothing here reads a clock or a
//! global random source, and every map is ordered.
//!
//! Faults for tests and the simulator: a disk-full switch ([`SimFs::set_space_bytes_left`]),
//! failing fsyncs ([`SimFs::set_syncs_fail`]), a power cut after a number of operations
//! ([`SimFs::halt_after_operations`]), and media faults ([`SimFs::flip_bit`],
//! [`SimFs::truncate_file`]).
//!
//! Simplifications: directories are durable as soon as they are created (what
//! [`Fs::create_dir_all`] promises); a rename is within one directory; a file's bytes become unreachable once no directory entry (durable, current or
//! pending) names it, even through a handle that is still open.

use super::{Fs, FsFile, ENOSPC};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Linux's `EIO`, what a failed fsync returns.
const EIO: i32 = 5;

/// An in-memory disk. Clones share the disk, so a test or the simulator keeps a handle to crash
/// it while the storage uses another.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
}

/// Counters of what was done to a [`SimFs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFsStats {
    /// Operations that change the disk (create, append, truncate, sync, rename, remove, ...).
    pub operations: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub bytes_appended: u64,
    pub crashes: u64,
}

/// A handle to a file of a [`SimFs`]. It stops working at the next crash.
#[derive(Debug)]
pub struct SimFile {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
    generation: u64,
}

#[derive(Debug, Default)]
struct Disk {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Bumped by every crash: handles from before it are stale.
    generation: u64,
    space_bytes_left: Option<u64>,
    syncs_fail: bool,
    operations_until_halt: Option<u64>,
    halted: bool,
    stats: SimFsStats,
}

#[derive(Debug, Default)]
struct Dir {
    durable: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
    /// What turns `durable` into `current`, in order.
    pending: Vec<DirOp>,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link { name: String, inode: u64 },
    Unlink { name: String },
    Rename { from: String, to: String },
}

/// # Invariants
/// `current[..common_bytes] == durable[..common_bytes]`.
#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    common_bytes: usize,
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<String, u64>) {
        match self {
            DirOp::Link { name, inode } => {
                entries.insert(name.clone(), *inode);
            }
            DirOp::Unlink { name } => {
                entries.remove(name);
            }
            DirOp::Rename { from, to } => {
                if let Some(inode) = entries.remove(from) {
                    entries.insert(to.clone(), inode);
                }
            }
        }
    }
}

impl Inode {
    fn is_synced(&self) -> bool {
        self.common_bytes == self.current.len() && self.common_bytes == self.durable.len()
    }

    fn sync(&mut self) {
        self.durable.truncate(self.common_bytes);
        self.durable
            .extend_from_slice(&self.current[self.common_bytes..]);
        self.common_bytes = self.current.len();
    }

    fn truncate(&mut self, len_bytes: usize) {
        self.current.resize(len_bytes, 0);
        self.common_bytes = self.common_bytes.min(len_bytes);
    }

    /// Overwrites (and past the end, extends) the current version: from `offset` on it may now
    /// differ from the durable one. A crash keeps a prefix of the current bytes past the synced
    /// ones, as for appends: writes land in order.
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.current.len() < offset + bytes.len() {
            self.current.resize(offset + bytes.len(), 0);
        }
        self.current[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.common_bytes = self.common_bytes.min(offset);
    }

    /// What a crash leaves of this file.
    fn crash(&mut self, choose: &mut impl FnMut(u64) -> u64) {
        if self.is_synced() {
            return;
        }
        let survivor = match pick(choose, 3) {
            0 => std::mem::take(&mut self.durable),
            outcome => {
                let unsynced = self.current.len() - self.common_bytes;
                let kept = pick(choose, unsynced as u64 + 1) as usize;
                let mut survivor = self.current[..self.common_bytes + kept].to_vec();
                if outcome == 2 {
                    let zeros = pick(choose, (unsynced - kept) as u64 + 1) as usize;
                    survivor.resize(survivor.len() + zeros, 0);
                }
                survivor
            }
        };
        self.current = survivor.clone();
        self.durable = survivor;
        self.common_bytes = self.current.len();
    }

    fn check_invariants(&self) {
        assert!(self.common_bytes <= self.current.len());
        assert!(self.common_bytes <= self.durable.len());
        assert_eq!(
            self.current[..self.common_bytes],
            self.durable[..self.common_bytes],
            "an inode's synced prefix differs between its durable and current versions"
        );
    }
}

/// A number in `0..n` from the caller's choices.
fn pick(choose: &mut impl FnMut(u64) -> u64, n: u64) -> u64 {
    assert!(n > 0);
    if n == 1 {
        0
    } else {
        choose(n) % n
    }
}

fn halted_error() -> io::Error {
    io::Error::other("simulated power loss: the disk is halted until SimFs::crash")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// A path's directory and file name.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a file name", path.display()),
            )
        })?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    Ok((dir, name.to_string()))
}

impl Disk {
    /// Counts an operation that changes the disk; fails once the disk is halted.
    fn begin_mutation(&mut self) -> io::Result<()> {
        if self.halted {
            return Err(halted_error());
        }
        if let Some(left) = self.operations_until_halt {
            if left == 0 {
                self.halted = true;
                return Err(halted_error());
            }
            self.operations_until_halt = Some(left - 1);
        }
        self.stats.operations += 1;
        Ok(())
    }

    fn begin_read(&self) -> io::Result<()> {
        if self.halted {
            return Err(halted_error());
        }
        Ok(())
    }

    fn dir(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|dir| dir.current.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn inode(&mut self, file: &SimFile) -> io::Result<&mut Inode> {
        if file.generation != self.generation {
            return Err(io::Error::other("stale file handle from before a crash"));
        }
        self.inodes
            .get_mut(&file.inode)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file was removed"))
    }

    /// Forgets the bytes of files no directory entry can name any more.
    fn collect_garbage(&mut self) {
        let mut named = BTreeSet::new();
        for dir in self.dirs.values() {
            named.extend(dir.durable.values().copied());
            named.extend(dir.current.values().copied());
            for op in &dir.pending {
                if let DirOp::Link { inode, .. } = op {
                    named.insert(*inode);
                }
            }
        }
        self.inodes.retain(|inode, _| named.contains(inode));
    }

    fn crash(&mut self, choose: &mut impl FnMut(u64) -> u64) {
        for dir in self.dirs.values_mut() {
            let kept = pick(choose, dir.pending.len() as u64 + 1) as usize;
            for op in &dir.pending[..kept] {
                op.apply(&mut dir.durable);
            }
            dir.pending.clear();
            dir.current = dir.durable.clone();
        }
        self.collect_garbage();
        for inode in self.inodes.values_mut() {
            inode.crash(choose);
        }
        self.generation += 1;
        self.halted = false;
        self.operations_until_halt = None;
        self.stats.crashes += 1;
    }
}

impl SimFs {
    pub fn new() -> Self {
        SimFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, disk: &Disk, inode: u64) -> SimFile {
        SimFile {
            disk: Arc::clone(&self.disk),
            inode,
            generation: disk.generation,
        }
    }

    /// Cuts the power. Every unsynced change is kept, torn or dropped as `choose` decides:
    /// `choose(n)` returns a number in `0..n` (larger numbers are taken modulo `n`). A `choose`
    /// that always returns 0 loses everything unsynced. Handles opened before are stale after;
    /// a halted disk works again; the disk-full and failing-sync switches stay as they were.
    pub fn crash(&self, mut choose: impl FnMut(u64) -> u64) {
        let mut disk = self.lock();
        disk.crash(&mut choose);
        disk.check_invariants();
    }

    /// Makes appends fail with `ENOSPC` once `bytes` more bytes were appended (the append that
    /// crosses the limit writes the bytes that fit, then fails). `None` gives the space back.
    pub fn set_space_bytes_left(&self, bytes: Option<u64>) {
        self.lock().space_bytes_left = bytes;
    }

    /// While `fail` is true, every file and directory sync fails with `EIO` and makes nothing
    /// durable.
    pub fn set_syncs_fail(&self, fail: bool) {
        self.lock().syncs_fail = fail;
    }

    /// After `operations` more disk-changing operations, the disk halts: that operation and
    /// every later one (reads too) fail, as if the power were cut at that moment. Call
    /// [`SimFs::crash`] next. `None` disarms it.
    pub fn halt_after_operations(&self, operations: Option<u64>) {
        self.lock().operations_until_halt = operations;
    }

    pub fn is_halted(&self) -> bool {
        self.lock().halted
    }

    pub fn stats(&self) -> SimFsStats {
        self.lock().stats
    }

    /// A media fault: flips bit `bit` (0..8) of the byte at `offset`, in the durable and the
    /// current version alike.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        assert!(bit < 8, "bit {bit} is not a bit of a byte");
        let mut disk = self.lock();
        let inode = disk.lookup(path)?;
        let inode = disk.inodes.get_mut(&inode).ok_or_else(|| not_found(path))?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        if offset >= inode.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past the end of the file",
            ));
        }
        inode.current[offset] ^= 1 << bit;
        if let Some(byte) = inode.durable.get_mut(offset) {
            *byte ^= 1 << bit;
        }
        Ok(())
    }

    /// A media fault: cuts the file to `len_bytes`, durably.
    pub fn truncate_file(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        let mut disk = self.lock();
        let inode = disk.lookup(path)?;
        let inode = disk.inodes.get_mut(&inode).ok_or_else(|| not_found(path))?;
        let len_bytes = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        inode.current.truncate(len_bytes);
        inode.durable.truncate(len_bytes);
        inode.common_bytes = inode.common_bytes.min(len_bytes);
        Ok(())
    }

    /// The current bytes of a file.
    pub fn file_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.lock();
        let inode = disk.lookup(path)?;
        disk.inodes
            .get(&inode)
            .map(|inode| inode.current.clone())
            .ok_or_else(|| not_found(path))
    }

    /// Every file path, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        let disk = self.lock();
        disk.dirs
            .iter()
            .flat_map(|(dir, entries)| entries.current.keys().map(move |name| dir.join(name)))
            .collect()
    }

    pub fn check_invariants(&self) {
        self.lock().check_invariants();
    }
}

impl Disk {
    fn check_invariants(&self) {
        for inode in self.inodes.values() {
            inode.check_invariants();
        }
        for dir in self.dirs.values() {
            let mut replayed = dir.durable.clone();
            for op in &dir.pending {
                op.apply(&mut replayed);
            }
            assert_eq!(
                replayed, dir.current,
                "a directory's pending operations are lost"
            );
            for inode in dir.current.values() {
                assert!(
                    self.inodes.contains_key(inode),
                    "an entry names a freed inode"
                );
            }
        }
    }
}

impl Fs for SimFs {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        for ancestor in dir.ancestors() {
            disk.dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        let (dir, name) = split(path)?;
        let inode = disk.next_inode;
        let dir = disk.dir(&dir)?;
        if dir.current.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        dir.current.insert(name.clone(), inode);
        dir.pending.push(DirOp::Link { name, inode });
        disk.next_inode += 1;
        disk.inodes.insert(inode, Inode::default());
        Ok(self.handle(&disk, inode))
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let disk = self.lock();
        disk.begin_read()?;
        let inode = disk.lookup(path)?;
        Ok(self.handle(&disk, inode))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if from_dir != to_dir {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SimFs renames only within one directory",
            ));
        }
        let dir = disk.dir(&from_dir)?;
        let inode = dir
            .current
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        dir.current.insert(to_name.clone(), inode);
        dir.pending.push(DirOp::Rename {
            from: from_name,
            to: to_name,
        });
        disk.collect_garbage();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        let (dir, name) = split(path)?;
        let dir = disk.dir(&dir)?;
        if dir.current.remove(&name).is_none() {
            return Err(not_found(path));
        }
        dir.pending.push(DirOp::Unlink { name });
        disk.collect_garbage();
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = self.lock();
        disk.begin_read()?;
        let entries = disk.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(entries.current.keys().cloned().collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        if disk.syncs_fail {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let entries = disk.dir(dir)?;
        entries.durable = entries.current.clone();
        entries.pending.clear();
        disk.stats.dir_syncs += 1;
        disk.collect_garbage();
        Ok(())
    }
}

impl SimFile {
    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FsFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut disk = self.lock();
        disk.begin_read()?;
        let inode = disk.inode(self)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(inode.current.len());
        let read = buf.len().min(inode.current.len() - start);
        buf[..read].copy_from_slice(&inode.current[start..start + read]);
        Ok(read)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        let fits = match disk.space_bytes_left {
            Some(left) => bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => bytes.len(),
        };
        if let Some(left) = disk.space_bytes_left.as_mut() {
            *left -= fits as u64;
        }
        disk.stats.bytes_appended += fits as u64;
        disk.inode(self)?.current.extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        let offset = usize::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let len = disk.inode(self)?.current.len();
        // Only growth takes space; what fits of `bytes` is written.
        let growth = (offset + bytes.len()).saturating_sub(len);
        let fits = match disk.space_bytes_left {
            Some(left) if (left as usize) < growth => (len + left as usize).saturating_sub(offset),
            _ => bytes.len(),
        };
        let fits = fits.min(bytes.len());
        let grown = (offset + fits).saturating_sub(len);
        if let Some(left) = disk.space_bytes_left.as_mut() {
            *left -= grown as u64;
        }
        disk.stats.bytes_appended += grown as u64;
        disk.inode(self)?.write_at(offset, &bytes[..fits]);
        if fits < bytes.len() {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        if disk.syncs_fail {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        disk.inode(self)?.sync();
        disk.stats.file_syncs += 1;
        Ok(())
    }

    fn truncate(&mut self, len_bytes: u64) -> io::Result<()> {
        let mut disk = self.lock();
        disk.begin_mutation()?;
        let len_bytes = usize::try_from(len_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        disk.inode(self)?.truncate(len_bytes);
        Ok(())
    }

    fn len_bytes(&self) -> io::Result<u64> {
        let mut disk = self.lock();
        disk.begin_read()?;
        Ok(disk.inode(self)?.current.len() as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write(fs: &SimFs, path: &str, bytes: &[u8], sync: bool) -> SimFile {
        let mut file = fs.create(Path::new(path)).unwrap();
        file.append(bytes).unwrap();
        if sync {
            file.sync_data().unwrap();
        }
        file
    }

    #[test]
    fn created_file_vanishes_on_crash_without_dir_sync() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        write(&fs, "/d/a", b"hello", true);
        fs.crash(|_| 0);
        assert!(fs.open(Path::new("/d/a")).is_err());
    }

    #[test]
    fn synced_file_and_dir_survive_crash() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        write(&fs, "/d/a", b"hello", true);
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.crash(|_| 0);
        assert_eq!(fs.file_bytes(Path::new("/d/a")).unwrap(), b"hello");
    }

    #[test]
    fn unsynced_bytes_are_lost_or_torn_on_crash() {
        for choice in 0..3u64 {
            let fs = SimFs::new();
            fs.create_dir_all(Path::new("/d")).unwrap();
            let mut file = write(&fs, "/d/a", b"synced", true);
            fs.sync_dir(Path::new("/d")).unwrap();
            file.append(b"-unsynced").unwrap();
            // First choice: the outcome; then how much is kept; then how many zeros follow.
            let mut choices = [choice, 3, 2].into_iter();
            fs.crash(|_| choices.next().unwrap_or(0));
            let bytes = fs.file_bytes(Path::new("/d/a")).unwrap();
            match choice {
                0 => assert_eq!(bytes, b"synced"),
                1 => assert_eq!(bytes, b"synced-un"),
                _ => assert_eq!(bytes, b"synced-un\0\0"),
            }
        }
    }

    #[test]
    fn writes_over_synced_zeros_are_kept_lost_or_torn_on_crash_and_take_no_space() {
        for choice in 0..2u64 {
            let fs = SimFs::new();
            fs.create_dir_all(Path::new("/d")).unwrap();
            let mut file = write(&fs, "/d/a", b"head\0\0\0\0\0\0", true);
            fs.sync_dir(Path::new("/d")).unwrap();
            fs.set_space_bytes_left(Some(0));
            file.write_at(4, b"data").unwrap();
            assert!(super::super::is_no_space(
                &file.write_at(8, b"longer").unwrap_err()
            ));
            fs.set_space_bytes_left(None);
            assert_eq!(fs.file_bytes(Path::new("/d/a")).unwrap(), b"headdatalo");
            let mut choices = [choice, 2].into_iter();
            fs.crash(|_| choices.next().unwrap_or(0));
            let bytes = fs.file_bytes(Path::new("/d/a")).unwrap();
            match choice {
                0 => assert_eq!(bytes, b"head\0\0\0\0\0\0"),
                _ => assert_eq!(bytes, b"headda"),
            }
        }
    }

    #[test]
    fn rename_without_dir_sync_can_be_undone_by_crash() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        write(&fs, "/d/old", b"1", true);
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.rename(Path::new("/d/old"), Path::new("/d/new")).unwrap();
        fs.crash(|_| 0);
        assert_eq!(fs.list(Path::new("/d")).unwrap(), vec!["old".to_string()]);
    }

    #[test]
    fn disk_full_switch_fails_appends_and_can_be_turned_off() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let mut file = fs.create(Path::new("/d/a")).unwrap();
        fs.set_space_bytes_left(Some(3));
        let error = file.append(b"hello").unwrap_err();
        assert!(super::super::is_no_space(&error));
        assert_eq!(
            file.len_bytes().unwrap(),
            3,
            "the bytes that fit were written"
        );
        fs.set_space_bytes_left(None);
        file.append(b"!").unwrap();
    }

    #[test]
    fn failing_syncs_make_nothing_durable() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let mut file = write(&fs, "/d/a", b"x", true);
        fs.sync_dir(Path::new("/d")).unwrap();
        file.append(b"y").unwrap();
        fs.set_syncs_fail(true);
        assert!(file.sync_data().is_err());
        fs.crash(|_| 0);
        assert_eq!(fs.file_bytes(Path::new("/d/a")).unwrap(), b"x");
    }

    #[test]
    fn halted_disk_refuses_operations_until_crash() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.halt_after_operations(Some(1));
        let mut file = fs.create(Path::new("/d/a")).unwrap();
        assert!(file.append(b"x").is_err());
        assert!(fs.is_halted());
        assert!(fs.list(Path::new("/d")).is_err());
        fs.crash(|_| 0);
        assert!(!fs.is_halted());
        assert!(
            file.len_bytes().is_err(),
            "handles from before the crash are stale"
        );
        assert_eq!(fs.list(Path::new("/d")).unwrap(), Vec::<String>::new());
    }
}
