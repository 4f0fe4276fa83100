//! The persistent backend: one redb file.
//!
//! Three tables: `records` maps a revision's 16 sort-ordered bytes
//! ([`Revision::to_key_bytes`]) to the encoded [`Record`]; `meta` holds the encoded [`Meta`] under
//! one key; `side` holds the side table's opaque entries. Each [`Backend::write`] is one redb
//! write transaction holding all three, so the applied index never disagrees with the data.
//!
//! Durability: writes commit with `Durability::None` (no fsync), except every
//! `durable_commit_interval_batches`-th, and [`Backend::persist`], which commit with
//! `Durability::Immediate`; an immediate commit makes every earlier one durable too. After a
//! crash the file holds exactly the state of the last durable commit, its applied index included,
//! and the caller replays its log from there. redb frees pages only at durable commits, so the
//! interval also bounds how far the file grows between them.
//!
//! Batches share a transaction: a write that need not be durable goes into the open (pending)
//! write transaction, which [`Backend::flush`] commits (non-durably) once it holds
//! `flush_commit_interval_batches` writes. A replica flushes once per `Ready` cycle, so many
//! cycles' entries cost one redb commit, not one each (the commits were most of the apply's
//! time; per cycle they were still 3% of a member's CPU under load, and each copied the tree's
//! path anew). Nothing changes for a crash: a non-durable commit is lost to it as an
//! uncommitted transaction is. Reads, the meta and scans look into the pending transaction, so
//! they see every write, committed or not. Within a pending transaction only the last write's
//! meta matters (a commit takes all its writes or none): it is kept in memory and written once,
//! just before the commit, and the side table is opened only by a write that changes it. A write
//! is not even put into the transaction at once: it is staged in memory, and the staged writes
//! go in together, each table opened once, at the next flush (once per cycle), commit or read,
//! so a cycle of many entries opens the records table once, not once per entry.

use super::codec::{decode_meta, decode_record_exact, encode_meta, encode_record, Reader};
use super::{
    Backend, EncodedVisitor, Meta, Record, RecordsView, SideEntry, WriteBatch, WriteDurability,
};
use crate::error::BackendError;
use crate::types::Revision;
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use std::fmt::Display;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Called after each commit of a write with whether it was durable (fsynced) and how long it
/// took; the server's metrics install one.
pub type CommitObserver = fn(bool, Duration);

static COMMIT_OBSERVER: OnceLock<CommitObserver> = OnceLock::new();

/// Installs the process's observer of [`RedbBackend`] commits; the first one stays.
pub fn set_commit_observer(observer: CommitObserver) {
    let _ = COMMIT_OBSERVER.set(observer);
}

/// Commits `transaction`, timed for the observer if one is installed.
fn commit_timed(
    transaction: redb::WriteTransaction,
    durable: bool,
) -> Result<(), redb::CommitError> {
    let started = COMMIT_OBSERVER
        .get()
        .map(|observer| (observer, Instant::now()));
    let result = transaction.commit();
    if let Some((observer, started)) = started {
        observer(durable, started.elapsed());
    }
    result
}

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_KEY: &str = "meta";
const SIDE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("side");
/// The bytes of every key and value in `records` (what a snapshot's mvcc part holds, in the
/// same encoding), under [`RECORD_BYTES_KEY`]: kept in the same transaction as the records, so
/// every view reads the length of exactly what it holds without a pass over the table.
const RECORD_BYTES: TableDefinition<&str, u64> = TableDefinition::new("record_bytes");
const RECORD_BYTES_KEY: &str = "total";

/// Settings of a [`RedbBackend`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RedbConfig {
    /// Every this many writes, one is committed durably (with an fsync) even without a
    /// [`Backend::persist`]. Bounds the file's growth; at least 1.
    pub durable_commit_interval_batches: u64,
    /// A [`Backend::flush`] commits the pending transaction (not durably) only once it holds
    /// this many writes; at least 1 (every flush commits).
    pub flush_commit_interval_batches: u64,
    /// Bytes of redb's in-process page cache (reads and dirty pages). redb's own default is
    /// 1 GiB, which a store of a million keys fills: most of a member's resident memory. The
    /// kernel's page cache still holds the file; this only bounds the copy in the process.
    pub cache_bytes: usize,
}

impl Default for RedbConfig {
    fn default() -> RedbConfig {
        RedbConfig {
            durable_commit_interval_batches: 1_000,
            flush_commit_interval_batches: 64,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A [`Backend`] in one redb database file.
pub struct RedbBackend {
    /// The write transaction holding the writes since the last commit, if any; declared first
    /// so that it is dropped (aborted) before the database.
    pending: Option<WriteTransaction>,
    /// The meta of the last write in `pending`, written into it just before it commits.
    pending_meta: Option<Meta>,
    database: Database,
    config: RedbConfig,
    /// Writes not durable yet (committed with `Durability::None`, or pending) since the last
    /// durable commit.
    buffered_batches: u64,
    /// Writes in the pending transaction (staged ones included).
    pending_batches: u64,
    /// Writes taken but not yet written into the pending transaction, in order. They go in
    /// together, each table opened once, at the next flush, commit or read: a write of its
    /// own opened and closed the records table every time (under 256-client puts 2.3% of the
    /// members' samples, a quarter of the backend's write). Never non-empty without a pending
    /// transaction. Behind a lock because reads take `&self` and must see them first.
    staged: Mutex<Vec<WriteBatch>>,
    /// The records table of the last commit, opened once and kept while nothing is written: a
    /// read-only load (serializable ranges) would otherwise begin a read transaction and open the
    /// table for every read. Dropped when a write transaction begins, so it never pins the pages
    /// of an older commit for long.
    reader: Mutex<Option<ReadOnlyTable<RecordKey, RecordKey>>>,
}

/// The records table's type, as [`RECORDS`] opens it in a read or a write transaction.
type RecordKey = &'static [u8];

fn io_error(error: impl Display) -> BackendError {
    BackendError::Io(error.to_string())
}

impl RedbBackend {
    /// Opens the database at `path`, creating it if there is none. What it holds is durable.
    pub fn open(path: &Path, config: RedbConfig) -> Result<RedbBackend, BackendError> {
        assert!(
            config.durable_commit_interval_batches >= 1,
            "durable commit interval of 0"
        );
        assert!(
            config.flush_commit_interval_batches >= 1,
            "flush commit interval of 0"
        );
        let database = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(path)
            .map_err(io_error)?;
        let transaction = database.begin_write().map_err(io_error)?;
        {
            let records = transaction.open_table(RECORDS).map_err(io_error)?;
            transaction.open_table(META).map_err(io_error)?;
            transaction.open_table(SIDE).map_err(io_error)?;
            let mut totals = transaction.open_table(RECORD_BYTES).map_err(io_error)?;
            // A file written before the total was kept: count it once, from redb's statistics
            // (a read of every page).
            if totals.get(RECORD_BYTES_KEY).map_err(io_error)?.is_none() {
                let bytes = records.stats().map_err(io_error)?.stored_bytes();
                totals.insert(RECORD_BYTES_KEY, bytes).map_err(io_error)?;
            }
        }
        transaction.commit().map_err(io_error)?;
        Ok(RedbBackend {
            pending: None,
            pending_meta: None,
            database,
            config,
            buffered_batches: 0,
            pending_batches: 0,
            staged: Mutex::new(Vec::new()),
            reader: Mutex::new(None),
        })
    }

    /// Bytes the database file takes on disk now.
    pub fn file_bytes(path: &Path) -> Result<u64, BackendError> {
        Ok(std::fs::metadata(path).map_err(io_error)?.len())
    }

    /// Begins a write transaction; the kept reader goes (what it shows is about to change).
    fn begin_write(&mut self) -> Result<WriteTransaction, BackendError> {
        *self
            .reader
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.database.begin_write().map_err(io_error)
    }

    /// The pending write transaction, begun (non-durable) if there is none.
    fn take_pending(&mut self) -> Result<WriteTransaction, BackendError> {
        if let Some(transaction) = self.pending.take() {
            return Ok(transaction);
        }
        let mut transaction = self.begin_write()?;
        transaction
            .set_durability(Durability::None)
            .map_err(io_error)?;
        Ok(transaction)
    }

    /// Commits the pending transaction, if any: durably (an fsync) or not.
    fn commit_pending(&mut self, durable: bool) -> Result<(), BackendError> {
        self.write_staged()?;
        let Some(mut transaction) = self.pending.take() else {
            return Ok(());
        };
        self.pending_batches = 0;
        if let Some(meta) = self.pending_meta.take() {
            write_meta(&transaction, &meta)?;
        }
        if durable {
            transaction
                .set_durability(Durability::Immediate)
                .map_err(io_error)?;
        }
        commit_timed(transaction, durable).map_err(io_error)?;
        if durable {
            self.buffered_batches = 0;
        }
        Ok(())
    }

    /// Writes the staged batches into the pending transaction, if any are staged.
    fn write_staged(&self) -> Result<(), BackendError> {
        let batches = std::mem::take(&mut *lock(&self.staged));
        if batches.is_empty() {
            return Ok(());
        }
        let Some(transaction) = &self.pending else {
            return Err(BackendError::Io(
                "staged writes without a pending transaction".to_string(),
            ));
        };
        write_batches(transaction, &batches)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The records as stored; a key that is not a revision's 16 bytes is corrupt (the values are
/// checked by whoever decodes them: a snapshot's reader checks every record).
fn visit_encoded(
    table: &impl ReadableTable<RecordKey, RecordKey>,
    visit: &mut EncodedVisitor<'_>,
) -> Result<(), BackendError> {
    for entry in table.iter().map_err(io_error)? {
        let (key, value) = entry.map_err(io_error)?;
        if Revision::from_key_bytes(key.value()).is_none() {
            return Err(BackendError::Corrupt(format!(
                "record key {:?}",
                key.value()
            )));
        }
        visit(key.value(), value.value())?;
    }
    Ok(())
}

/// A read transaction: redb keeps the pages it sees until it ends.
struct RedbRecordsView {
    transaction: redb::ReadTransaction,
}

impl RecordsView for RedbRecordsView {
    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) -> Result<(), BackendError> {
        let table = self.transaction.open_table(RECORDS).map_err(io_error)?;
        visit_encoded(&table, visit)
    }

    /// The total kept with the records (`RECORD_BYTES`): the revision key bytes and encoded
    /// records this view visits, without reading them. redb's table statistics would give the
    /// same number but read every page of the table for it (5.6% of the members' samples in a
    /// window with a snapshot, docs/performance.md). Should it ever disagree, the snapshot
    /// writer refuses the data (more or fewer bytes than stated) and no snapshot is made.
    fn encoded_bytes(&self) -> Result<u64, BackendError> {
        let totals = self
            .transaction
            .open_table(RECORD_BYTES)
            .map_err(io_error)?;
        read_record_bytes(&totals)
    }
}

impl Drop for RedbBackend {
    /// A clean close commits the pending writes (non-durably, as a flush would), as if every
    /// write had committed at once; a crash loses them, as it loses a non-durable commit. A
    /// write that failed left nothing pending.
    fn drop(&mut self) {
        let _ = self.commit_pending(false);
    }
}

/// Writes the records and side entries of `batches`, in order, into `transaction` (not
/// committed; the meta is written at the commit, [`RedbBackend::commit_pending`]). Each table is
/// opened once for them all.
fn write_batches(
    transaction: &WriteTransaction,
    batches: &[WriteBatch],
) -> Result<(), BackendError> {
    let mut records = transaction.open_table(RECORDS).map_err(io_error)?;
    let mut encoded = Vec::new();
    let mut added = 0u64;
    let mut removed = 0u64;
    for batch in batches {
        for revision in &batch.removes {
            let key = revision.to_key_bytes();
            if let Some(old) = records.remove(&key[..]).map_err(io_error)? {
                removed += (key.len() + old.value().len()) as u64;
            }
        }
        for (revision, record) in &batch.puts {
            let (put, replaced) = insert_record(&mut records, *revision, record, &mut encoded)?;
            added += put;
            removed += replaced;
        }
    }
    drop(records);
    if added != 0 || removed != 0 {
        let mut totals = transaction.open_table(RECORD_BYTES).map_err(io_error)?;
        let total = read_record_bytes(&totals)?;
        let total = (total + added).checked_sub(removed).ok_or_else(|| {
            BackendError::Corrupt(format!(
                "the records' byte total {total} is below the {removed} bytes removed"
            ))
        })?;
        totals.insert(RECORD_BYTES_KEY, total).map_err(io_error)?;
    }
    let side_changed = batches
        .iter()
        .any(|batch| !batch.side_removes.is_empty() || !batch.side_puts.is_empty());
    if side_changed {
        let mut side = transaction.open_table(SIDE).map_err(io_error)?;
        for batch in batches {
            for key in &batch.side_removes {
                side.remove(&key[..]).map_err(io_error)?;
            }
            for (key, value) in &batch.side_puts {
                side.insert(&key[..], &value[..]).map_err(io_error)?;
            }
        }
    }
    Ok(())
}

/// Encodes `record` into `encoded` and inserts it: the bytes it adds to the table, and those of
/// the record it replaced (0 if none), for the byte total.
fn insert_record(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    revision: Revision,
    record: &Record,
    encoded: &mut Vec<u8>,
) -> Result<(u64, u64), BackendError> {
    encoded.clear();
    encode_record(record, encoded);
    let key = revision.to_key_bytes();
    let replaced = table
        .insert(&key[..], &encoded[..])
        .map_err(io_error)?
        .map_or(0, |old| (key.len() + old.value().len()) as u64);
    Ok(((key.len() + encoded.len()) as u64, replaced))
}

/// The records' byte total; a file opened by [`RedbBackend::open`] always has one.
fn read_record_bytes(table: &impl ReadableTable<&'static str, u64>) -> Result<u64, BackendError> {
    table
        .get(RECORD_BYTES_KEY)
        .map_err(io_error)?
        .map(|total| total.value())
        .ok_or_else(|| BackendError::Corrupt("the records' byte total is missing".to_string()))
}

fn write_meta(transaction: &WriteTransaction, meta: &Meta) -> Result<(), BackendError> {
    let mut table = transaction.open_table(META).map_err(io_error)?;
    let mut encoded = Vec::new();
    encode_meta(meta, &mut encoded);
    table.insert(META_KEY, &encoded[..]).map_err(io_error)?;
    Ok(())
}

fn read_side(
    table: &impl ReadableTable<RecordKey, RecordKey>,
) -> Result<Vec<SideEntry>, BackendError> {
    let mut entries = Vec::new();
    for entry in table.iter().map_err(io_error)? {
        let (key, value) = entry.map_err(io_error)?;
        entries.push((key.value().to_vec(), value.value().to_vec()));
    }
    Ok(entries)
}

fn read_records(
    table: &impl ReadableTable<RecordKey, RecordKey>,
    revisions: &[Revision],
) -> Result<Vec<Option<Record>>, BackendError> {
    let mut records = Vec::with_capacity(revisions.len());
    for revision in revisions {
        let stored = table.get(&revision.to_key_bytes()[..]).map_err(io_error)?;
        let record = match stored {
            None => None,
            Some(bytes) => Some(decode_record_exact(bytes.value()).map_err(|error| {
                BackendError::Corrupt(format!("record at {revision}: {error}"))
            })?),
        };
        records.push(record);
    }
    Ok(records)
}

fn read_meta(table: &impl ReadableTable<&'static str, RecordKey>) -> Result<Meta, BackendError> {
    let Some(bytes) = table.get(META_KEY).map_err(io_error)? else {
        return Ok(Meta::default());
    };
    let mut reader = Reader::new(bytes.value());
    let meta = decode_meta(&mut reader).and_then(|meta| reader.finish().map(|()| meta));
    meta.map_err(|error| BackendError::Corrupt(format!("meta: {error}")))
}

fn visit_records(
    table: &impl ReadableTable<RecordKey, RecordKey>,
    visit: &mut dyn FnMut(Revision, Record) -> Result<(), BackendError>,
) -> Result<(), BackendError> {
    for entry in table.iter().map_err(io_error)? {
        let (key, value) = entry.map_err(io_error)?;
        let Some(revision) = Revision::from_key_bytes(key.value()) else {
            return Err(BackendError::Corrupt(format!(
                "record key {:?}",
                key.value()
            )));
        };
        let record = decode_record_exact(value.value())
            .map_err(|error| BackendError::Corrupt(format!("record at {revision}: {error}")))?;
        visit(revision, record)?;
    }
    Ok(())
}

impl Backend for RedbBackend {
    fn read(&self, revisions: &[Revision]) -> Result<Vec<Option<Record>>, BackendError> {
        self.write_staged()?;
        if let Some(transaction) = &self.pending {
            let table = transaction.open_table(RECORDS).map_err(io_error)?;
            return read_records(&table, revisions);
        }
        let mut reader = lock(&self.reader);
        let table = match reader.take() {
            Some(table) => table,
            None => {
                let transaction = self.database.begin_read().map_err(io_error)?;
                transaction.open_table(RECORDS).map_err(io_error)?
            }
        };
        let records = read_records(&table, revisions);
        *reader = Some(table);
        records
    }

    fn write(&mut self, batch: WriteBatch) -> Result<WriteDurability, BackendError> {
        // Staged: written into the pending transaction at the next flush, commit or read. On
        // an error there the pending transaction is dropped (aborted): the store stops anyway.
        let transaction = self.take_pending()?;
        self.pending = Some(transaction);
        self.pending_meta = Some(batch.meta);
        lock(&self.staged).push(batch);
        self.buffered_batches += 1;
        self.pending_batches += 1;
        if self.buffered_batches >= self.config.durable_commit_interval_batches {
            self.commit_pending(true)?;
            return Ok(WriteDurability::Durable);
        }
        Ok(WriteDurability::Buffered)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        if self.pending_batches < self.config.flush_commit_interval_batches {
            return self.write_staged();
        }
        self.commit_pending(false)
    }

    fn persist(&mut self) -> Result<(), BackendError> {
        if self.pending.is_some() {
            return self.commit_pending(true);
        }
        if self.buffered_batches == 0 {
            return Ok(());
        }
        // An empty transaction with the default `Durability::Immediate` makes every earlier
        // `Durability::None` commit durable.
        let transaction = self.begin_write()?;
        commit_timed(transaction, true).map_err(io_error)?;
        self.buffered_batches = 0;
        Ok(())
    }

    fn meta(&self) -> Result<Meta, BackendError> {
        if let Some(meta) = self.pending_meta {
            return Ok(meta);
        }
        if let Some(transaction) = &self.pending {
            let table = transaction.open_table(META).map_err(io_error)?;
            return read_meta(&table);
        }
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(META).map_err(io_error)?;
        read_meta(&table)
    }

    fn for_each(
        &self,
        visit: &mut dyn FnMut(Revision, Record) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        self.write_staged()?;
        if let Some(transaction) = &self.pending {
            let table = transaction.open_table(RECORDS).map_err(io_error)?;
            return visit_records(&table, visit);
        }
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(RECORDS).map_err(io_error)?;
        visit_records(&table, visit)
    }

    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) -> Result<(), BackendError> {
        self.write_staged()?;
        if let Some(transaction) = &self.pending {
            let table = transaction.open_table(RECORDS).map_err(io_error)?;
            return visit_encoded(&table, visit);
        }
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(RECORDS).map_err(io_error)?;
        visit_encoded(&table, visit)
    }

    fn records_view(&mut self) -> Result<Box<dyn RecordsView>, BackendError> {
        self.commit_pending(false)?;
        let transaction = self.database.begin_read().map_err(io_error)?;
        Ok(Box::new(RedbRecordsView { transaction }))
    }

    fn side_entries(&self) -> Result<Vec<SideEntry>, BackendError> {
        self.write_staged()?;
        if let Some(transaction) = &self.pending {
            let table = transaction.open_table(SIDE).map_err(io_error)?;
            return read_side(&table);
        }
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(SIDE).map_err(io_error)?;
        read_side(&table)
    }

    fn replace_all(
        &mut self,
        records: Vec<(Revision, Record)>,
        side: Vec<SideEntry>,
        meta: Meta,
    ) -> Result<(), BackendError> {
        self.commit_pending(false)?;
        let transaction = self.begin_write()?;
        transaction.delete_table(RECORDS).map_err(io_error)?;
        transaction.delete_table(SIDE).map_err(io_error)?;
        let mut total = 0u64;
        {
            let mut table = transaction.open_table(SIDE).map_err(io_error)?;
            for (key, value) in &side {
                table.insert(&key[..], &value[..]).map_err(io_error)?;
            }
        }
        {
            let mut table = transaction.open_table(RECORDS).map_err(io_error)?;
            let mut encoded = Vec::new();
            for (revision, record) in &records {
                let (put, replaced) = insert_record(&mut table, *revision, record, &mut encoded)?;
                total = total + put - replaced;
            }
            let mut totals = transaction.open_table(RECORD_BYTES).map_err(io_error)?;
            totals.insert(RECORD_BYTES_KEY, total).map_err(io_error)?;
            let mut table = transaction.open_table(META).map_err(io_error)?;
            encoded.clear();
            encode_meta(&meta, &mut encoded);
            table.insert(META_KEY, &encoded[..]).map_err(io_error)?;
        }
        transaction.commit().map_err(io_error)?;
        self.buffered_batches = 0;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::types::KeyValue;

    fn put(backend: &mut RedbBackend, main: i64) {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 2,
            mod_revision: main,
            version: main - 1,
            lease: 0,
        };
        let batch = WriteBatch {
            puts: vec![(Revision { main, sub: 0 }, Record::Put(kv))],
            meta: Meta {
                applied_index: main as u64,
                current_revision: main,
                compact_revision: None,
            },
            ..WriteBatch::default()
        };
        backend.write(batch).unwrap();
    }

    /// A backend in `dir` whose flush commits once the pending transaction holds `writes`.
    fn open_flushing_every(dir: &tempfile::TempDir, writes: u64) -> RedbBackend {
        let config = RedbConfig {
            flush_commit_interval_batches: writes,
            ..RedbConfig::default()
        };
        RedbBackend::open(&dir.path().join("mvcc.redb"), config).unwrap()
    }

    #[test]
    fn a_flush_commits_only_once_the_pending_transaction_holds_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = open_flushing_every(&dir, 3);
        for main in 2..4 {
            put(&mut backend, main);
            backend.flush().unwrap();
            assert!(
                backend.pending.is_some(),
                "committed after {} writes",
                main - 1
            );
        }
        // Uncommitted writes are read through the pending transaction.
        assert_eq!(backend.meta().unwrap().applied_index, 3);
        assert!(backend.read(&[Revision { main: 3, sub: 0 }]).unwrap()[0].is_some());
        put(&mut backend, 4);
        backend.flush().unwrap();
        assert!(backend.pending.is_none(), "not committed after 3 writes");
        assert_eq!(backend.meta().unwrap().applied_index, 4);
    }

    #[test]
    fn the_kept_reader_shows_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = open_flushing_every(&dir, 1);
        let held = |backend: &RedbBackend, main| {
            backend.read(&[Revision { main, sub: 0 }]).unwrap()[0].is_some()
        };
        put(&mut backend, 2);
        backend.flush().unwrap();
        assert!(
            held(&backend, 2) && held(&backend, 2),
            "read twice from the kept reader"
        );
        // A commit after the reader was kept: a stale reader would not hold revision 3.
        put(&mut backend, 3);
        backend.flush().unwrap();
        assert!(backend.pending.is_none());
        assert!(
            held(&backend, 3),
            "the reader kept from before the commit was used"
        );
        put(&mut backend, 4);
        backend.persist().unwrap();
        assert!(
            held(&backend, 4),
            "the reader kept from before the persist was used"
        );
    }

    fn revisions_held(backend: &RedbBackend) -> Vec<i64> {
        let mut held = Vec::new();
        backend
            .for_each(&mut |revision, _| {
                held.push(revision.main);
                Ok(())
            })
            .unwrap();
        held
    }

    #[test]
    fn staged_writes_are_seen_by_every_read_before_a_flush_and_kept_by_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = open_flushing_every(&dir, 1000);
        put(&mut backend, 2);
        put(&mut backend, 3);
        assert_eq!(lock(&backend.staged).len(), 2, "the writes were not staged");
        let revisions = [Revision { main: 2, sub: 0 }, Revision { main: 3, sub: 0 }];
        let read = backend.read(&revisions).unwrap();
        assert!(
            read.iter().all(Option::is_some),
            "staged records unread: {read:?}"
        );
        put(&mut backend, 4);
        assert_eq!(revisions_held(&backend), vec![2, 3, 4]);
        let side = WriteBatch {
            side_puts: vec![(b"session".to_vec(), b"state".to_vec())],
            meta: backend.meta().unwrap(),
            ..WriteBatch::default()
        };
        backend.write(side).unwrap();
        assert_eq!(
            backend.side_entries().unwrap(),
            vec![(b"session".to_vec(), b"state".to_vec())]
        );
        put(&mut backend, 5);
        assert_eq!(lock(&backend.staged).len(), 1);
        drop(backend);

        let backend = open_flushing_every(&dir, 1000);
        assert_eq!(revisions_held(&backend), vec![2, 3, 4, 5]);
        assert_eq!(backend.meta().unwrap().applied_index, 5);
        assert_eq!(backend.side_entries().unwrap().len(), 1);
    }

    #[test]
    fn a_views_encoded_bytes_are_the_bytes_it_visits() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = open_flushing_every(&dir, 64);
        // Enough records of varied sizes for a tree of several levels, a tombstone, and
        // removals (as a compaction makes).
        for main in 2..5_000i64 {
            let kv = KeyValue {
                key: format!("key-{}", main % 97).into_bytes(),
                value: vec![b'v'; (main % 700) as usize],
                create_revision: 2,
                mod_revision: main,
                version: 1,
                lease: 0,
            };
            let mut puts = vec![(Revision { main, sub: 0 }, Record::Put(kv))];
            if main % 50 == 0 {
                let key = b"gone".to_vec();
                puts.push((Revision { main, sub: 1 }, Record::Tombstone { key }));
            }
            let removes = if main % 3 == 0 {
                vec![Revision {
                    main: main - 1,
                    sub: 0,
                }]
            } else {
                Vec::new()
            };
            let meta = Meta {
                applied_index: main as u64,
                current_revision: main,
                compact_revision: None,
            };
            let batch = WriteBatch {
                puts,
                removes,
                meta,
                ..WriteBatch::default()
            };
            backend.write(batch).unwrap();
            backend.flush().unwrap();
        }
        let (stated, visited) = view_bytes(&mut backend);
        assert!(visited > 1_000_000, "too few bytes to test: {visited}");
        assert_eq!(stated, visited);

        // The total is kept in the file: the same after a reopen...
        drop(backend);
        let mut backend = open_flushing_every(&dir, 64);
        assert_eq!(view_bytes(&mut backend), (visited, visited));
        // ... counted once from the records when a file from before the total has none...
        drop(backend);
        {
            let database = Database::create(dir.path().join("mvcc.redb")).unwrap();
            let transaction = database.begin_write().unwrap();
            transaction.delete_table(RECORD_BYTES).unwrap();
            transaction.commit().unwrap();
        }
        let mut backend = open_flushing_every(&dir, 64);
        assert_eq!(view_bytes(&mut backend), (visited, visited));
        // ... and set anew when a snapshot replaces everything.
        let records = (1..=300i64)
            .map(|main| {
                let key = format!("restored-{main}").into_bytes();
                (Revision { main, sub: 0 }, Record::Tombstone { key })
            })
            .collect();
        backend
            .replace_all(records, Vec::new(), Meta::default())
            .unwrap();
        let (stated, visited) = view_bytes(&mut backend);
        assert!(visited > 0);
        assert_eq!(stated, visited);
    }

    /// A view's stated bytes, and the bytes it visits.
    fn view_bytes(backend: &mut RedbBackend) -> (u64, u64) {
        let view = backend.records_view().unwrap();
        let mut visited = 0u64;
        view.for_each_encoded(&mut |revision, record| {
            visited += (revision.len() + record.len()) as u64;
            Ok(())
        })
        .unwrap();
        (view.encoded_bytes().unwrap(), visited)
    }
}
