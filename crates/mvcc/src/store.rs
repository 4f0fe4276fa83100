//! The store: the key index in memory over a [`Backend`], with the revision bookkeeping.
//!
//! Reads are in `read.rs`, writes and transactions in `write.rs`, the event feed in `events.rs`,
//! snapshots in `snapshot.rs`; this file holds the state, opening, persistence and invariants.

use crate::backend::{Backend, Meta, Record, SideEntry, WriteBatch, WriteDurability};
use crate::error::{BackendError, Error};
use crate::index::KeyIndex;
use crate::types::{Event, Revision};

/// Limits of a [`Store`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The most compares, or ops in one branch, a transaction may have; a nested transaction's
    /// ops count against what its parent left. etcd's `--max-txn-ops`, whose default is 128.
    pub txn_ops_max: usize,
    /// Whether the events a put returns ([`Applied::events`]) carry the key's previous version
    /// (`prev_kv`). Finding it reads the previous record from the backend on every put; a
    /// caller whose watchers read their events back from the history
    /// ([`Store::events_since`], which always fills `prev_kv`), as the server's do, turns this
    /// off so a put that does not ask for `prev_kv` itself reads nothing. Deletes always carry
    /// it (they read the records they delete anyway).
    pub events_prev_kv: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            txn_ops_max: 128,
            events_prev_kv: true,
        }
    }
}

/// What a write returns: the response, and the events it produced in order (one per key changed,
/// all at the write's revision), to hand to watchers without reading them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied<R> {
    pub response: R,
    pub events: Vec<Event>,
}

/// The versioned key-value store with etcd v3 semantics.
///
/// Each write transaction (a put, a delete that deletes something, a transaction that writes)
/// makes one new revision; every key records, per revision at which it changed, its value in the
/// backend. Reads at any revision from the compaction point to the current one see the store as
/// it was then. Every write carries the raft index of the entry it applies, stored with it.
///
/// # Invariants
///
/// - `current_revision >= 1`; `compact_revision`, if any, is in `0..=current_revision`.
/// - Every revision in the index has `main <= current_revision`; within a key's history the
///   generations are ordered, `create_revision <= mod_revision`, versions count up from 1 (see
///   `index.rs`); compaction left, per key, at most the newest put at or below
///   `compact_revision` and no tombstone at or below it.
/// - The index and the backend agree: the backend holds exactly the records the index names, with
///   the same keys, create revisions and versions, and the same meta; every main revision above
///   the compaction point (and above 1) up to the current one has at least one record.
/// - `durable_applied_index <= applied_index`.
pub struct Store<B: Backend> {
    pub(crate) backend: B,
    pub(crate) index: KeyIndex,
    pub(crate) current_revision: i64,
    pub(crate) compact_revision: Option<i64>,
    pub(crate) applied_index: u64,
    pub(crate) durable_applied_index: u64,
    pub(crate) config: Config,
    /// The meta of the last backend write (or as opened): what the backend holds.
    pub(crate) written_meta: Meta,
    /// Set by the first backend failure of a write; every later call fails with it.
    pub(crate) stopped: Option<BackendError>,
    /// Side-table changes staged by [`Store::stage_side`] for the next write batch.
    pub(crate) side_staged: SideChanges,
    /// Set by [`Store::defer_write`]: the next batch waits for [`Store::write_deferred`].
    pub(crate) deferring: bool,
    /// The batch held back while deferring.
    pub(crate) deferred: Option<WriteBatch>,
}

/// Changes to the backend's side table (see [`crate::backend`]): entries set, keys removed
/// (removals first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideChanges {
    pub puts: Vec<SideEntry>,
    pub removes: Vec<Vec<u8>>,
}

impl SideChanges {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.removes.is_empty()
    }
}

impl<B: Backend> Store<B> {
    /// Opens the store over `backend`, rebuilding the key index from its records. An empty
    /// backend gives an empty store at revision 1 and applied index 0. What a backend holds when
    /// opened is durable, so [`Store::durable_applied_index`] starts at [`Store::applied_index`]:
    /// the caller resumes applying its log after it.
    pub fn open(backend: B, config: Config) -> Result<Store<B>, Error> {
        let meta = backend.meta().map_err(Error::Fatal)?;
        let mut builder = IndexBuilder::new(meta);
        backend
            .for_each(&mut |revision, record| {
                builder
                    .add(revision, &record)
                    .map_err(BackendError::Corrupt)
            })
            .map_err(Error::Fatal)?;
        // The builder checked every record against the ones before it and the meta, and the
        // index's invariants: the index agrees with the backend by construction.
        let index = builder
            .finish()
            .map_err(|error| Error::Fatal(BackendError::Corrupt(error)))?;
        Ok(Store {
            backend,
            index,
            current_revision: meta.current_revision,
            compact_revision: meta.compact_revision,
            applied_index: meta.applied_index,
            durable_applied_index: meta.applied_index,
            config,
            written_meta: meta,
            stopped: None,
            side_staged: SideChanges::default(),
            deferring: false,
            deferred: None,
        })
    }

    /// Every entry of the backend's side table, in key order (as of the last write).
    pub fn side_entries(&self) -> Result<Vec<SideEntry>, Error> {
        self.backend.side_entries().map_err(Error::Fatal)
    }

    /// Stages side-table changes: they go into the next write batch, with whatever that batch
    /// writes and its applied index (every applied entry writes one: see
    /// [`Store::record_applied_index`]), so they are exactly as durable as the store.
    pub fn stage_side(&mut self, changes: SideChanges) {
        self.side_staged.removes.extend(changes.removes);
        self.side_staged.puts.extend(changes.puts);
    }

    /// Holds the next write batch back until [`Store::write_deferred`], so that side-table
    /// changes that depend on the write's answer (a client session's stored response) land in
    /// the same atomic batch. Call `write_deferred` right after the write: until then the
    /// backend lacks the write's records, and reads of them would fail.
    pub fn defer_write(&mut self) {
        assert!(!self.deferring, "defer_write() twice");
        self.deferring = true;
    }

    /// Writes the batch held back since [`Store::defer_write`] (or, if the write made none, a
    /// batch of its own with the current meta) together with `side`. Ends the deferral.
    pub fn write_deferred(&mut self, side: SideChanges) -> Result<(), Error> {
        assert!(self.deferring, "write_deferred() without defer_write()");
        self.deferring = false;
        self.check_running()?;
        self.stage_side(side);
        match self.deferred.take() {
            Some(mut batch) => {
                let staged = std::mem::take(&mut self.side_staged);
                batch.side_removes.extend(staged.removes);
                batch.side_puts.extend(staged.puts);
                self.write_now(batch)
            }
            None => self.write_batch(Vec::new(), Vec::new()),
        }
    }

    /// The store's revision: 1 when empty, then the revision of the last write.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction: reads below it fail with [`Error::Compacted`].
    pub fn compact_revision(&self) -> Option<i64> {
        self.compact_revision
    }

    /// The raft index of the last entry applied (passed with the last write).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The applied index as of the last durable write: what survives a crash now. The log may be
    /// truncated up to here, and no further.
    pub fn durable_applied_index(&self) -> u64 {
        self.durable_applied_index
    }

    /// How many keys have a history (live, or deleted but not yet compacted).
    pub fn key_count(&self) -> usize {
        self.index.key_count()
    }

    /// How many revisions (puts and deletes) are held.
    pub fn revision_count(&self) -> usize {
        self.index.revision_count()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Gives the backend back, e.g. to reopen it.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Makes every write so far durable; returns the applied index that is now durable. Call it
    /// before truncating the log past [`Store::durable_applied_index`].
    pub fn persist(&mut self) -> Result<u64, Error> {
        self.check_running()?;
        let result = self.backend.persist();
        self.stop_on_failure(result)?;
        self.durable_applied_index = self.applied_index;
        Ok(self.durable_applied_index)
    }

    /// Ends a group of writes (see [`Backend::flush`]): one backend commit for the group. Not
    /// a durability point; [`Store::persist`] is.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.check_running()?;
        let result = self.backend.flush();
        self.stop_on_failure(result)
    }

    /// Records that the entry at `applied_index` was applied without touching the store (a
    /// read-only request, a lease operation, a no-op), so that a restart resumes after it.
    pub fn record_applied_index(&mut self, applied_index: u64) -> Result<(), Error> {
        self.check_running()?;
        self.advance_applied_index(applied_index);
        self.write_batch(Vec::new(), Vec::new())
    }

    /// Panics unless every invariant holds (see the type's `# Invariants`). Reads every record of
    /// the backend: for tests and the simulator.
    pub fn check_invariants(&self) {
        if let Err(violation) = self.verify_invariants() {
            panic!("mvcc store invariant violated: {violation}");
        }
    }

    /// Checks every invariant; says which one fails. For state that came from outside.
    pub fn verify_invariants(&self) -> Result<(), String> {
        if self.current_revision < 1 {
            return Err(format!("current revision {}", self.current_revision));
        }
        let compact_revision = self.compact_revision.unwrap_or(0);
        if compact_revision < 0 || compact_revision > self.current_revision {
            return Err(format!(
                "compact revision {compact_revision} outside 0..={}",
                self.current_revision
            ));
        }
        if self.durable_applied_index > self.applied_index {
            return Err(format!(
                "durable applied index {} above applied index {}",
                self.durable_applied_index, self.applied_index
            ));
        }
        self.index.verify(self.current_revision, compact_revision)?;
        let meta = self.backend.meta().map_err(|error| error.to_string())?;
        if meta != self.meta() {
            return Err(format!("backend meta {meta:?}, store {:?}", self.meta()));
        }
        self.verify_backend_agrees()
    }

    /// Every record in the backend is one the index names, and every one it names is there.
    fn verify_backend_agrees(&self) -> Result<(), String> {
        let expected = self.index.all_revisions();
        let mut expected = expected.iter();
        let lowest_without_record = compact_revision_or_one(self.compact_revision);
        let mut mains_with_records = 0;
        let mut previous_main = 0;
        self.backend
            .for_each(&mut |revision, record| {
                let Some((expected_revision, (key, put))) = expected.next() else {
                    return Err(BackendError::Corrupt(format!("extra record at {revision}")));
                };
                let agrees = *expected_revision == revision
                    && record.key() == *key
                    && match (&record, put) {
                        (Record::Put(kv), Some((created, version))) => {
                            kv.mod_revision == revision.main
                                && kv.create_revision == *created
                                && kv.version == *version
                        }
                        (Record::Tombstone { .. }, None) => true,
                        _ => false,
                    };
                if !agrees {
                    return Err(BackendError::Corrupt(format!(
                        "record at {revision} ({record:?}) disagrees with the index \
                         ({expected_revision}: {:?})",
                        String::from_utf8_lossy(key)
                    )));
                }
                if revision.main != previous_main && revision.main > lowest_without_record {
                    mains_with_records += 1;
                }
                previous_main = revision.main;
                Ok(())
            })
            .map_err(|error| error.to_string())?;
        if let Some((revision, _)) = expected.next() {
            return Err(format!("no record at {revision}"));
        }
        let mains_expected = self.current_revision - lowest_without_record;
        if mains_with_records != mains_expected {
            return Err(format!(
                "{mains_with_records} revisions in ({lowest_without_record}, {}] have records, \
                 expected {mains_expected}",
                self.current_revision
            ));
        }
        Ok(())
    }

    pub(crate) fn meta(&self) -> Meta {
        Meta {
            applied_index: self.applied_index,
            current_revision: self.current_revision,
            compact_revision: self.compact_revision,
        }
    }

    pub(crate) fn check_running(&self) -> Result<(), Error> {
        match &self.stopped {
            Some(failure) => Err(Error::Fatal(BackendError::Stopped(failure.to_string()))),
            None => Ok(()),
        }
    }

    /// Passes a result on; a fatal error stops the store.
    pub(crate) fn stop_on_failure<T>(
        &mut self,
        result: Result<T, BackendError>,
    ) -> Result<T, Error> {
        result.map_err(|failure| {
            self.stopped.get_or_insert_with(|| failure.clone());
            Error::Fatal(failure)
        })
    }

    /// Like [`Store::stop_on_failure`], for results that may carry a request error.
    pub(crate) fn stop_on_fatal<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(Error::Fatal(failure)) = &result {
            self.stopped.get_or_insert_with(|| failure.clone());
        }
        result
    }

    pub(crate) fn advance_applied_index(&mut self, applied_index: u64) {
        assert!(
            applied_index >= self.applied_index,
            "applied index goes back from {} to {applied_index}",
            self.applied_index
        );
        self.applied_index = applied_index;
    }

    /// Writes records and removals with the current meta, in one backend transaction. Writes
    /// nothing if there is nothing new, not even an applied index.
    pub(crate) fn write_batch(
        &mut self,
        puts: Vec<(Revision, Record)>,
        removes: Vec<Revision>,
    ) -> Result<(), Error> {
        let meta = self.meta();
        if puts.is_empty()
            && removes.is_empty()
            && self.side_staged.is_empty()
            && self.written_meta == meta
        {
            return Ok(());
        }
        let side = std::mem::take(&mut self.side_staged);
        let batch = WriteBatch {
            puts,
            removes,
            side_puts: side.puts,
            side_removes: side.removes,
            meta,
        };
        if self.deferring {
            // A second batch while deferring: the first goes out as it is, in order.
            if let Some(earlier) = self.deferred.take() {
                self.write_now(earlier)?;
            }
            self.deferred = Some(batch);
            return Ok(());
        }
        self.write_now(batch)
    }

    fn write_now(&mut self, batch: WriteBatch) -> Result<(), Error> {
        let meta = batch.meta;
        let written = self.backend.write(batch);
        if self.stop_on_failure(written)? == WriteDurability::Durable {
            self.durable_applied_index = meta.applied_index;
        }
        self.written_meta = meta;
        Ok(())
    }

    /// The records at `revisions`, which the index says are held; `pending` holds the records of
    /// the write under way (main revision `pending_main`), not yet in the backend.
    pub(crate) fn read_records(
        &self,
        revisions: &[Revision],
        pending: &[(Revision, Record)],
        pending_main: i64,
    ) -> Result<Vec<Record>, Error> {
        let stored: Vec<Revision> = revisions
            .iter()
            .copied()
            .filter(|revision| revision.main != pending_main)
            .collect();
        let mut from_backend = self
            .backend
            .read(&stored)
            .map_err(Error::Fatal)?
            .into_iter();
        let mut records = Vec::with_capacity(revisions.len());
        for revision in revisions {
            let record = if revision.main == pending_main {
                let position = usize::try_from(revision.sub).ok();
                let pending = position.and_then(|position| pending.get(position));
                assert!(
                    pending.is_some_and(|(at, _)| at == revision),
                    "pending revision {revision} not in the write under way"
                );
                pending.map(|(_, record)| record.clone())
            } else {
                from_backend.next().flatten()
            };
            let Some(record) = record else {
                return Err(Error::Fatal(BackendError::Corrupt(format!(
                    "the index holds revision {revision}, the backend does not"
                ))));
            };
            records.push(record);
        }
        Ok(records)
    }
}

/// Main revisions at or below this one need not have records: the compacted ones, and 1.
fn compact_revision_or_one(compact_revision: Option<i64>) -> i64 {
    compact_revision.unwrap_or(1).max(1)
}

/// Rebuilds a [`KeyIndex`] from records read back from storage, in revision order, checking each
/// against the ones before and the meta: for opening a backend and installing a snapshot.
pub(crate) struct IndexBuilder {
    meta: Meta,
    index: KeyIndex,
    last: Option<Revision>,
    /// Distinct main revisions above the compaction point (and 1) seen so far.
    mains_with_records: i64,
}

impl IndexBuilder {
    pub(crate) fn new(meta: Meta) -> IndexBuilder {
        IndexBuilder {
            meta,
            index: KeyIndex::default(),
            last: None,
            mains_with_records: 0,
        }
    }

    pub(crate) fn add(&mut self, revision: Revision, record: &Record) -> Result<(), String> {
        if self.last.is_some_and(|last| last >= revision) {
            return Err(format!("record at {revision} out of order"));
        }
        let new_main = self.last.is_none_or(|last| last.main != revision.main);
        self.last = Some(revision);
        if revision.main < 2 || revision.main > self.meta.current_revision || revision.sub < 0 {
            return Err(format!(
                "record at {revision} outside the revisions 2..={}",
                self.meta.current_revision
            ));
        }
        if record.key().is_empty() {
            return Err(format!("record at {revision} has an empty key"));
        }
        let compact_revision = self.meta.compact_revision.unwrap_or(0);
        if new_main && revision.main > compact_revision_or_one(self.meta.compact_revision) {
            self.mains_with_records += 1;
        }
        match record {
            Record::Put(kv) => {
                if kv.mod_revision != revision.main {
                    return Err(format!(
                        "record at {revision} has mod revision {}",
                        kv.mod_revision
                    ));
                }
                self.index.restore_put(
                    &kv.key,
                    revision,
                    kv.create_revision,
                    kv.version,
                    compact_revision,
                )
            }
            Record::Tombstone { key } => self.index.restore_tombstone(key, revision),
        }
    }

    /// Checks what was added as a whole and gives the index back, packed (see
    /// [`KeyIndex::pack`]).
    pub(crate) fn finish(mut self) -> Result<KeyIndex, String> {
        let compact_revision = self.meta.compact_revision.unwrap_or(0);
        if self.meta.current_revision < 1
            || compact_revision < 0
            || compact_revision > self.meta.current_revision
        {
            return Err(format!("meta {:?} out of bounds", self.meta));
        }
        self.index
            .verify(self.meta.current_revision, compact_revision)?;
        let lowest_without_record = compact_revision_or_one(self.meta.compact_revision);
        let mains_expected = self.meta.current_revision - lowest_without_record;
        if self.mains_with_records != mains_expected {
            return Err(format!(
                "{} revisions in ({lowest_without_record}, {}] have records, expected \
                 {mains_expected}",
                self.mains_with_records, self.meta.current_revision
            ));
        }
        self.index.pack();
        Ok(self.index)
    }
}
