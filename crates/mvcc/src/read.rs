//! Reads: ranges and transaction compares, as etcd's `executeRange`, `rangeKeys` and
//! `applyCompare`.

use crate::backend::{Backend, Record};
use crate::error::{BackendError, Error};
use crate::index::Found;
use crate::request::{
    Compare, CompareResult, CompareTarget, RangeRequest, RangeResponse, SortOrder, SortTarget,
};
use crate::store::Store;
use crate::types::{KeyValue, Revision};
use std::cmp::Ordering;

/// The records of a write under way, readable before they reach the backend.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Pending<'a> {
    pub(crate) records: &'a [(Revision, Record)],
    /// Their main revision; 0 when there is no write under way.
    pub(crate) main: i64,
}

impl Pending<'_> {
    pub(crate) const NONE: Pending<'static> = Pending {
        records: &[],
        main: 0,
    };
}

impl<B: Backend> Store<B> {
    /// Reads a range, as etcd's `Range`: see [`RangeRequest`] and [`RangeResponse`] for what each
    /// field means. A `revision` above the current one is [`Error::FutureRevision`], one below the
    /// compaction point [`Error::Compacted`]; `revision <= 0` reads the current revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        self.check_running()?;
        request.validate()?;
        self.execute_range(request, self.current_revision, Pending::NONE)
    }

    /// The error a read at `revision` (0 or less: the current one) gets, if any, when the store
    /// is at `current_revision`.
    pub(crate) fn check_read_revision(
        &self,
        revision: i64,
        current_revision: i64,
    ) -> Result<(), Error> {
        if revision > current_revision {
            return Err(Error::FutureRevision { current_revision });
        }
        if let Some(compact_revision) = self.compact_revision {
            if revision > 0 && revision < compact_revision {
                return Err(Error::Compacted { compact_revision });
            }
        }
        Ok(())
    }

    /// etcd's `executeRange` over `rangeKeys`, reading with the store at `current_revision`
    /// (inside a write transaction, the revision it is making once it has written).
    pub(crate) fn execute_range(
        &self,
        request: &RangeRequest,
        current_revision: i64,
        pending: Pending<'_>,
    ) -> Result<RangeResponse, Error> {
        self.check_read_revision(request.revision, current_revision)?;
        let at = if request.revision <= 0 {
            current_revision
        } else {
            request.revision
        };
        let range = request.key_range();
        let found = self.index.range(&range, at);
        if request.count_only {
            return Ok(RangeResponse {
                revision: current_revision,
                kvs: Vec::new(),
                more: false,
                count: found.count() as i64,
            });
        }
        let filtered = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        // Like etcd: with sorting or filters, read everything; else read one past the limit, so
        // that `more` can be told.
        let fetch_limit = if request.sort_order != SortOrder::None || filtered {
            usize::MAX
        } else if request.limit > 0 {
            usize::try_from(request.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        } else {
            usize::MAX
        };
        let mut selected: Vec<Found> = Vec::new();
        let mut count: i64 = 0;
        for (_, version) in found {
            if selected.len() < fetch_limit {
                selected.push(version);
            }
            count += 1;
        }
        let mut kvs = self.key_values(&selected, pending)?;
        retain_in_bounds(&mut kvs, request);
        sort(&mut kvs, request.sort_order, request.sort_target);
        let mut more = false;
        if request.limit > 0 && kvs.len() as i64 > request.limit {
            kvs.truncate(usize::try_from(request.limit).unwrap_or(usize::MAX));
            more = true;
        }
        if request.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        Ok(RangeResponse {
            revision: current_revision,
            kvs,
            more,
            count,
        })
    }

    /// The key-values the index entries point at.
    pub(crate) fn key_values(
        &self,
        found: &[Found],
        pending: Pending<'_>,
    ) -> Result<Vec<KeyValue>, Error> {
        let revisions: Vec<Revision> = found.iter().map(|found| found.revision).collect();
        let records = self.read_records(&revisions, pending.records, pending.main)?;
        records
            .into_iter()
            .zip(found)
            .map(|(record, found)| put_record(record, found))
            .collect()
    }

    /// Whether `compare` holds at main revision `at`, as etcd's `applyCompare`: over a range every
    /// key must satisfy it; a range with no key compares a key-value of zeroes, except that a
    /// value compare on no key is false.
    pub(crate) fn compare_holds(&self, compare: &Compare, at: i64) -> Result<bool, Error> {
        let range = compare.key_range();
        let found: Vec<Found> = self
            .index
            .range(&range, at)
            .map(|(_, found)| found)
            .collect();
        if found.is_empty() {
            if matches!(compare.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_key_value(compare, &KeyValue::default()));
        }
        let needs_record = matches!(
            compare.target,
            CompareTarget::Value(_) | CompareTarget::Lease(_)
        );
        if !needs_record {
            let holds = found.iter().all(|found| {
                let kv = KeyValue {
                    create_revision: found.created,
                    mod_revision: found.revision.main,
                    version: found.version,
                    ..KeyValue::default()
                };
                compare_key_value(compare, &kv)
            });
            return Ok(holds);
        }
        let kvs = self.key_values(&found, Pending::NONE)?;
        Ok(kvs.iter().all(|kv| compare_key_value(compare, kv)))
    }
}

/// The key-value of a put record the index points at; anything else means corruption.
pub(crate) fn put_record(record: Record, found: &Found) -> Result<KeyValue, Error> {
    match record {
        Record::Put(kv)
            if kv.mod_revision == found.revision.main
                && kv.create_revision == found.created
                && kv.version == found.version =>
        {
            Ok(kv)
        }
        other => Err(Error::Fatal(BackendError::Corrupt(format!(
            "record at {} is {other:?}, the index says put created at {} version {}",
            found.revision, found.created, found.version
        )))),
    }
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::CreateRevision(revision) => kv.create_revision.cmp(revision),
        CompareTarget::ModRevision(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// etcd's `min_*`/`max_*` filters; 0 is off.
fn retain_in_bounds(kvs: &mut Vec<KeyValue>, request: &RangeRequest) {
    let within =
        |value: i64, min: i64, max: i64| (min == 0 || value >= min) && (max == 0 || value <= max);
    kvs.retain(|kv| {
        within(
            kv.mod_revision,
            request.min_mod_revision,
            request.max_mod_revision,
        ) && within(
            kv.create_revision,
            request.min_create_revision,
            request.max_create_revision,
        )
    });
}

/// Sorts as etcd does: a target other than the key with no order sorts ascending; the key in
/// ascending order is the order keys come in already. Ties keep key order (etcd's sort is not
/// stable, so it leaves ties in no particular order).
fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let compare = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| compare(b, a)),
        _ => kvs.sort_by(compare),
    }
}
