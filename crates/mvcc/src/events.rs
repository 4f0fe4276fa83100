//! The event feed for watches: the changes since a revision, read from the history held.

use crate::backend::{Backend, Record};
use crate::error::{BackendError, Error};
use crate::store::Store;
use crate::types::{Event, EventKind, KeyRange, KeyValue, Revision};

impl<B: Backend> Store<B> {
    /// The changes to keys in `range` at main revision `start_revision` or later, in revision
    /// order (within a revision, in the order the transaction made them), each with the version
    /// it replaced, exactly as the writes returned them in [`crate::Applied::events`].
    ///
    /// At most `events_max` events, except that a revision is never split: the events stop at the
    /// first revision boundary at or after `events_max`, and the caller asks again from the last
    /// event's revision + 1 until it gets none. A `start_revision` above the current revision
    /// gives none (a watch waits for it); one below the compaction point fails with
    /// [`Error::Compacted`] (its `compact_revision` is where a watch may restart). At exactly the
    /// compaction point, deletes at that revision are gone (compaction drops the tombstone) and
    /// events there carry no `prev_kv`, as in etcd.
    pub fn events_since(
        &self,
        start_revision: i64,
        range: &KeyRange,
        events_max: usize,
    ) -> Result<Vec<Event>, Error> {
        assert!(events_max >= 1, "events_max of 0");
        self.check_running()?;
        if let Some(compact_revision) = self.compact_revision {
            if start_revision < compact_revision {
                return Err(Error::Compacted { compact_revision });
            }
        }
        let mut changes = self.index.changes_since(range, start_revision.max(1));
        let mut end = events_max.min(changes.len());
        while end < changes.len()
            && end > 0
            && changes[end].revision.main == changes[end - 1].revision.main
        {
            end += 1;
        }
        changes.truncate(end);

        let mut wanted: Vec<Revision> = Vec::new();
        for change in &changes {
            if !change.is_delete {
                wanted.push(change.revision);
            }
            wanted.extend(change.previous);
        }
        let records = self.read_records(&wanted, &[], 0)?;
        let mut records = records.into_iter();
        let mut next_key_value = |expected: Revision| -> Result<KeyValue, Error> {
            match records.next() {
                Some(Record::Put(kv)) if kv.mod_revision == expected.main => Ok(kv),
                other => Err(Error::Fatal(BackendError::Corrupt(format!(
                    "record at {expected} is {other:?}, the index says a put"
                )))),
            }
        };
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            let kv = if change.is_delete {
                KeyValue {
                    key: change.key,
                    mod_revision: change.revision.main,
                    ..KeyValue::default()
                }
            } else {
                next_key_value(change.revision)?
            };
            let prev_kv = match change.previous {
                Some(previous) => Some(next_key_value(previous)?),
                None => None,
            };
            let kind = if change.is_delete {
                EventKind::Delete
            } else {
                EventKind::Put
            };
            events.push(Event { kind, kv, prev_kv });
        }
        Ok(events)
    }
}
