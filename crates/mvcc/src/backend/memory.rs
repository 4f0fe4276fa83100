//! A backend in memory, for the simulator and tests.

use super::{
    Backend, EncodedVisitor, Meta, Record, RecordsView, SideEntry, WriteBatch, WriteDurability,
};
use crate::error::BackendError;
use crate::types::Revision;
use std::collections::BTreeMap;

/// Records in a `BTreeMap`. By default every write is [`WriteDurability::Durable`]. Made with
/// [`MemoryBackend::with_durable_every`], it behaves as a disk backend that commits durably
/// only now and then (as the redb one does): only every n-th write, a persist and a replace are
/// durable, and [`MemoryBackend::crashed`] is what a crash leaves — the state as of the last
/// durable point. `Clone` lets a simulator keep a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryBackend {
    records: BTreeMap<Revision, Record>,
    side: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: Meta,
    /// 0: every write durable. Else every this many writes.
    durable_every: u64,
    writes_since_durable: u64,
    /// The state at the last durable point (None: the empty state, or `durable_every` 0).
    durable: Option<Box<MemoryBackend>>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// A backend whose writes are durable only every `writes` writes (and at a persist or a
    /// replace); 0 makes every write durable.
    pub fn with_durable_every(writes: u64) -> MemoryBackend {
        MemoryBackend {
            durable_every: writes,
            ..MemoryBackend::default()
        }
    }

    /// What a crash leaves of this backend: the state as of its last durable point, with
    /// the same durability.
    pub fn crashed(self) -> MemoryBackend {
        if self.durable_every == 0 {
            return self;
        }
        let mut left = match self.durable {
            Some(durable) => *durable,
            None => MemoryBackend::with_durable_every(self.durable_every),
        };
        // What is left is durable: the next crash leaves it too.
        left.mark_durable();
        left
    }

    fn mark_durable(&mut self) {
        self.writes_since_durable = 0;
        if self.durable_every != 0 {
            self.durable = Some(Box::new(self.current_state()));
        }
    }

    /// A copy of the current state, without the copy of the last durable point (which a plain
    /// `clone` would copy too, only to drop it).
    fn current_state(&mut self) -> MemoryBackend {
        let durable = self.durable.take();
        let copy = self.clone();
        self.durable = durable;
        copy
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Backend for MemoryBackend {
    fn read(&self, revisions: &[Revision]) -> Result<Vec<Option<Record>>, BackendError> {
        Ok(revisions
            .iter()
            .map(|revision| self.records.get(revision).cloned())
            .collect())
    }

    fn write(&mut self, batch: WriteBatch) -> Result<WriteDurability, BackendError> {
        for revision in &batch.removes {
            self.records.remove(revision);
        }
        self.records.extend(batch.puts);
        for key in &batch.side_removes {
            self.side.remove(key);
        }
        self.side.extend(batch.side_puts);
        self.meta = batch.meta;
        self.writes_since_durable += 1;
        if self.writes_since_durable >= self.durable_every {
            self.mark_durable();
            return Ok(WriteDurability::Durable);
        }
        Ok(WriteDurability::Buffered)
    }

    fn persist(&mut self) -> Result<(), BackendError> {
        self.mark_durable();
        Ok(())
    }

    fn records_view(&mut self) -> Result<Box<dyn RecordsView>, BackendError> {
        Ok(Box::new(self.current_state()))
    }

    fn meta(&self) -> Result<Meta, BackendError> {
        Ok(self.meta)
    }

    fn for_each(
        &self,
        visit: &mut dyn FnMut(Revision, Record) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        for (revision, record) in &self.records {
            visit(*revision, record.clone())?;
        }
        Ok(())
    }

    fn side_entries(&self) -> Result<Vec<SideEntry>, BackendError> {
        Ok(self
            .side
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn replace_all(
        &mut self,
        records: Vec<(Revision, Record)>,
        side: Vec<SideEntry>,
        meta: Meta,
    ) -> Result<(), BackendError> {
        self.records = records.into_iter().collect();
        self.side = side.into_iter().collect();
        self.meta = meta;
        self.mark_durable();
        Ok(())
    }
}

/// A copy is the view: the simulator's stores are small.
impl RecordsView for MemoryBackend {
    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) -> Result<(), BackendError> {
        Backend::for_each_encoded(self, visit)
    }
}
