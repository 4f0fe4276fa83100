//! Where the values live: the [`Backend`] trait, the seam between the pure store and the disk.
//!
//! A backend holds one [`Record`] per revision (what changed at that revision) and one [`Meta`]
//! (the applied raft index, the current and the compact revision). The store keeps the key index
//! in memory and rebuilds it from the records on open.
//!
//! It also holds a small **side table** of opaque key → value entries that the store never
//! reads: state of the caller's (the replica's client sessions) that must be exactly as durable
//! as the records, so it is written in the same batches, under the same applied index.

pub(crate) mod codec;
mod memory;
mod redb_backend;

pub use self::memory::MemoryBackend;
pub use self::redb_backend::{set_commit_observer, CommitObserver, RedbBackend, RedbConfig};

use crate::error::BackendError;
use crate::types::{KeyValue, Revision};

/// Called with each record as stored: the revision's key bytes and the encoded record.
pub type EncodedVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), BackendError> + 'a;

/// What one revision did to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The key's new version; its `mod_revision` is the revision's `main`.
    Put(KeyValue),
    /// The key was deleted.
    Tombstone { key: Vec<u8> },
}

impl Record {
    pub fn key(&self) -> &[u8] {
        match self {
            Record::Put(kv) => &kv.key,
            Record::Tombstone { key } => key,
        }
    }
}

/// The store's bookkeeping, written in the same backend transaction as the records it describes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The raft log index of the last entry applied: an opaque number the caller passes with each
    /// write; after a crash it says where to resume applying the log.
    pub applied_index: u64,
    /// The store's revision: 1 for an empty store, then the revision of the last write.
    pub current_revision: i64,
    /// The revision of the last compaction, if any.
    pub compact_revision: Option<i64>,
}

impl Default for Meta {
    fn default() -> Meta {
        Meta {
            applied_index: 0,
            current_revision: 1,
            compact_revision: None,
        }
    }
}

/// One atomic change to a backend: records added, records removed, side-table entries set and
/// removed, and the new [`Meta`]. Removals are applied before puts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub puts: Vec<(Revision, Record)>,
    pub removes: Vec<Revision>,
    /// Side-table entries set (key, value), after `side_removes`.
    pub side_puts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Side-table keys removed (absent keys are ignored).
    pub side_removes: Vec<Vec<u8>>,
    pub meta: Meta,
}

/// A side-table entry: an opaque key and value (see the module doc).
pub type SideEntry = (Vec<u8>, Vec<u8>);

/// Whether a write is already durable when [`Backend::write`] returns.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WriteDurability {
    /// It survives a crash (or there is nothing to survive: an in-memory backend).
    Durable,
    /// It survives a crash only after the next [`Backend::persist`] (or a durable write).
    Buffered,
}

/// A consistent, read-only view of every record at one moment, readable on another thread while
/// the backend goes on taking writes: a snapshot is written from one, off the thread that
/// applies (redb: a read transaction).
pub trait RecordsView: Send {
    /// As [`Backend::for_each_encoded`], over the records as they were when the view was taken.
    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) -> Result<(), BackendError>;

    /// The bytes [`RecordsView::for_each_encoded`] visits: every revision's key bytes and
    /// encoded record, summed. A snapshot file states its length before its data, so a
    /// snapshot needs this first; the default counts it in a pass of its own, a backend that
    /// keeps the sum says it at once.
    fn encoded_bytes(&self) -> Result<u64, BackendError> {
        let mut bytes = 0u64;
        self.for_each_encoded(&mut |revision, record| {
            bytes += (revision.len() + record.len()) as u64;
            Ok(())
        })?;
        Ok(bytes)
    }
}

/// Storage for records by revision, plus the store's [`Meta`].
///
/// Every method either succeeds or returns an error after which the store stops: a backend need
/// not be usable after an error.
pub trait Backend {
    /// The records at `revisions`, in the same order; `None` for a revision not held.
    fn read(&self, revisions: &[Revision]) -> Result<Vec<Option<Record>>, BackendError>;

    /// Applies `batch` atomically: after a crash, either all of it and its meta are there or none
    /// of it. Says whether it is durable yet.
    fn write(&mut self, batch: WriteBatch) -> Result<WriteDurability, BackendError>;

    /// Makes every write so far durable. When it returns `Ok`, a crash loses nothing written.
    fn persist(&mut self) -> Result<(), BackendError>;

    /// Ends a group of writes: a backend that gathers writes into one transaction commits it
    /// (not necessarily durably). Reads see every write with or without it; the caller flushes
    /// once per group (a replica, once per `Ready` cycle) so a group costs one commit.
    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The stored meta; [`Meta::default`] for an empty backend.
    fn meta(&self) -> Result<Meta, BackendError>;

    /// Calls `visit` with every record, in revision order.
    fn for_each(
        &self,
        visit: &mut dyn FnMut(Revision, Record) -> Result<(), BackendError>,
    ) -> Result<(), BackendError>;

    /// Every side-table entry, in key order. The caller bounds the table's size.
    fn side_entries(&self) -> Result<Vec<SideEntry>, BackendError>;

    /// Calls `visit` with every record as stored, in revision order: the revision's 16 key
    /// bytes ([`Revision::to_key_bytes`]) and the record as the codec encodes
    /// it. What a snapshot copies, without decoding each record and encoding it again; the
    /// default does exactly that, for backends that store records some other way.
    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) -> Result<(), BackendError> {
        let mut encoded = Vec::new();
        self.for_each(&mut |revision, record| {
            encoded.clear();
            codec::encode_record(&record, &mut encoded);
            visit(&revision.to_key_bytes(), &encoded)
        })
    }

    /// A view of every record written so far (pending writes are committed first, not
    /// durably), unaffected by later writes. Cheap to take; holding it may keep the backend
    /// from reusing the space of records changed since.
    fn records_view(&mut self) -> Result<Box<dyn RecordsView>, BackendError>;

    /// Replaces everything with `records` (in revision order), the side table with `side` and
    /// the meta with `meta`, atomically and durably: used to install a snapshot.
    fn replace_all(
        &mut self,
        records: Vec<(Revision, Record)>,
        side: Vec<SideEntry>,
        meta: Meta,
    ) -> Result<(), BackendError>;
}
