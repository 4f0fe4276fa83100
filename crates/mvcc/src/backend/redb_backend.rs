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

use super::codec::{decode_meta, decode_record_exact, encode_meta, encode_record, Reader};
use super::{Backend, Meta, Record, SideEntry, WriteBatch, WriteDurability};
use crate::error::BackendError;
use crate::types::Revision;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Display;
use std::path::Path;
use std::sync::OnceLock;
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

/// Settings of a [`RedbBackend`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RedbConfig {
    /// Every this many writes, one is committed durably (with an fsync) even without a
    /// [`Backend::persist`]. Bounds the file's growth; at least 1.
    pub durable_commit_interval_batches: u64,
}

impl Default for RedbConfig {
    fn default() -> RedbConfig {
        RedbConfig {
            durable_commit_interval_batches: 1_000,
        }
    }
}

/// A [`Backend`] in one redb database file.
pub struct RedbBackend {
    database: Database,
    config: RedbConfig,
    /// Writes committed with `Durability::None` since the last durable commit.
    buffered_batches: u64,
}

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
        let database = Database::create(path).map_err(io_error)?;
        let transaction = database.begin_write().map_err(io_error)?;
        transaction.open_table(RECORDS).map_err(io_error)?;
        transaction.open_table(META).map_err(io_error)?;
        transaction.open_table(SIDE).map_err(io_error)?;
        transaction.commit().map_err(io_error)?;
        Ok(RedbBackend {
            database,
            config,
            buffered_batches: 0,
        })
    }

    /// Bytes the database file takes on disk now.
    pub fn file_bytes(path: &Path) -> Result<u64, BackendError> {
        Ok(std::fs::metadata(path).map_err(io_error)?.len())
    }
}

impl Backend for RedbBackend {
    fn read(&self, revisions: &[Revision]) -> Result<Vec<Option<Record>>, BackendError> {
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(RECORDS).map_err(io_error)?;
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

    fn write(&mut self, batch: WriteBatch) -> Result<WriteDurability, BackendError> {
        let mut transaction = self.database.begin_write().map_err(io_error)?;
        let durable = self.buffered_batches + 1 >= self.config.durable_commit_interval_batches;
        if !durable {
            transaction
                .set_durability(Durability::None)
                .map_err(io_error)?;
        }
        {
            let mut records = transaction.open_table(RECORDS).map_err(io_error)?;
            for revision in &batch.removes {
                records
                    .remove(&revision.to_key_bytes()[..])
                    .map_err(io_error)?;
            }
            let mut encoded = Vec::new();
            for (revision, record) in &batch.puts {
                encoded.clear();
                encode_record(record, &mut encoded);
                records
                    .insert(&revision.to_key_bytes()[..], &encoded[..])
                    .map_err(io_error)?;
            }
            let mut side = transaction.open_table(SIDE).map_err(io_error)?;
            for key in &batch.side_removes {
                side.remove(&key[..]).map_err(io_error)?;
            }
            for (key, value) in &batch.side_puts {
                side.insert(&key[..], &value[..]).map_err(io_error)?;
            }
            let mut meta = transaction.open_table(META).map_err(io_error)?;
            encoded.clear();
            encode_meta(&batch.meta, &mut encoded);
            meta.insert(META_KEY, &encoded[..]).map_err(io_error)?;
        }
        commit_timed(transaction, durable).map_err(io_error)?;
        if durable {
            self.buffered_batches = 0;
            Ok(WriteDurability::Durable)
        } else {
            self.buffered_batches += 1;
            Ok(WriteDurability::Buffered)
        }
    }

    fn persist(&mut self) -> Result<(), BackendError> {
        if self.buffered_batches == 0 {
            return Ok(());
        }
        // An empty transaction with the default `Durability::Immediate` makes every earlier
        // `Durability::None` commit durable.
        let transaction = self.database.begin_write().map_err(io_error)?;
        commit_timed(transaction, true).map_err(io_error)?;
        self.buffered_batches = 0;
        Ok(())
    }

    fn meta(&self) -> Result<Meta, BackendError> {
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(META).map_err(io_error)?;
        let Some(bytes) = table.get(META_KEY).map_err(io_error)? else {
            return Ok(Meta::default());
        };
        let mut reader = Reader::new(bytes.value());
        let meta = decode_meta(&mut reader).and_then(|meta| reader.finish().map(|()| meta));
        meta.map_err(|error| BackendError::Corrupt(format!("meta: {error}")))
    }

    fn for_each(
        &self,
        visit: &mut dyn FnMut(Revision, Record) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(RECORDS).map_err(io_error)?;
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

    fn side_entries(&self) -> Result<Vec<SideEntry>, BackendError> {
        let transaction = self.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(SIDE).map_err(io_error)?;
        let mut entries = Vec::new();
        for entry in table.iter().map_err(io_error)? {
            let (key, value) = entry.map_err(io_error)?;
            entries.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(entries)
    }

    fn replace_all(
        &mut self,
        records: Vec<(Revision, Record)>,
        side: Vec<SideEntry>,
        meta: Meta,
    ) -> Result<(), BackendError> {
        let transaction = self.database.begin_write().map_err(io_error)?;
        transaction.delete_table(RECORDS).map_err(io_error)?;
        transaction.delete_table(SIDE).map_err(io_error)?;
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
                encoded.clear();
                encode_record(record, &mut encoded);
                table
                    .insert(&revision.to_key_bytes()[..], &encoded[..])
                    .map_err(io_error)?;
            }
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
