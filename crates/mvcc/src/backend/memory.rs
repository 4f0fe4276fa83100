//! A backend in memory, for the simulator and tests.

use super::{
    Backend, EncodedVisitor, Meta, Record, RecordsView, SideEntry, WriteBatch, WriteDurability,
};
use crate::error::BackendError;
use crate::types::Revision;
use std::collections::BTreeMap;

/// Records in a `BTreeMap`. Every write is [`WriteDurability::Durable`]: there is no crash it
/// could be lost to that would not lose the whole backend. `Clone` lets a simulator keep a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryBackend {
    records: BTreeMap<Revision, Record>,
    side: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: Meta,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
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
        Ok(WriteDurability::Durable)
    }

    fn persist(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    fn records_view(&mut self) -> Result<Box<dyn RecordsView>, BackendError> {
        Ok(Box::new(self.clone()))
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
        Ok(())
    }
}

/// A copy is the view: the simulator's stores are small.
impl RecordsView for MemoryBackend {
    fn for_each_encoded(&self, visit: &mut EncodedVisitor<'_>) -> Result<(), BackendError> {
        Backend::for_each_encoded(self, visit)
    }
}
