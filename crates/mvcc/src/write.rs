//! Writes: put, delete, transactions and compaction, as etcd's apply of `Put`, `DeleteRange`,
//! `Txn` and `Compaction`.
//!
//! A write runs in three steps, like etcd's `Txn`: check the request alone; evaluate every compare
//! (nested ones too) and check the ops on the branches that will run against the store as it is;
//! then execute. Only the last step changes anything, and it cannot fail but for the backend, so
//! a refused request leaves the store as it was (bar the applied index, which always advances).

use crate::backend::{Backend, Record};
use crate::error::Error;
use crate::read::{put_record, Pending};
use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp, ResponseOp,
    TxnRequest, TxnResponse,
};
use crate::store::{Applied, Store};
use crate::types::{Event, EventKind, KeyRange, KeyValue, Revision};

/// The write under way: the records it made, in order, at main revision `begin_revision + 1`.
struct WriteTxn {
    begin_revision: i64,
    changes: Vec<(Revision, Record)>,
    events: Vec<Event>,
}

impl WriteTxn {
    fn new(begin_revision: i64) -> WriteTxn {
        WriteTxn {
            begin_revision,
            changes: Vec::new(),
            events: Vec::new(),
        }
    }

    fn write_revision(&self) -> i64 {
        self.begin_revision + 1
    }

    /// The revision reads see: the one being made once something was written.
    fn read_revision(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_revision
        } else {
            self.write_revision()
        }
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.write_revision(), self.changes.len() as i64)
    }

    fn pending(&self) -> Pending<'_> {
        Pending {
            records: &self.changes,
            main: self.write_revision(),
        }
    }
}

/// Which branch each transaction takes: the top one, then its nested ones in op order.
pub(crate) struct TxnPath {
    pub(crate) succeeded: bool,
    pub(crate) nested: Vec<TxnPath>,
}

impl<B: Backend> Store<B> {
    /// Applies a put, as etcd's `Put`: one new revision. With `ignore_value` (`ignore_lease`) the
    /// key must exist and keeps its value (lease); with `prev_kv` the response carries the
    /// version replaced. Whether `lease` exists is the caller's check (the lessor's), not ours.
    pub fn put(
        &mut self,
        applied_index: u64,
        request: PutRequest,
    ) -> Result<Applied<PutResponse>, Error> {
        self.put_checking_leases(applied_index, request, &|_| true)
    }

    /// [`Store::put`] with the lessor's check: a put whose `lease` (non-zero, without
    /// `ignore_lease`) fails `lease_exists` is refused with [`Error::LeaseNotFound`], after the
    /// `ignore_*` checks, as etcd's `checkRequestPut`.
    pub fn put_checking_leases(
        &mut self,
        applied_index: u64,
        request: PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Applied<PutResponse>, Error> {
        let transaction = TxnRequest {
            success: vec![RequestOp::Put(request)],
            ..TxnRequest::default()
        };
        let applied = self.txn_checking_leases(applied_index, transaction, lease_exists)?;
        let response = match applied.response.responses.into_iter().next() {
            Some(ResponseOp::Put(response)) => response,
            other => panic!("a put answered {other:?}"),
        };
        Ok(Applied {
            response,
            events: applied.events,
        })
    }

    /// Applies a delete, as etcd's `DeleteRange`: one new revision if it deletes anything, none
    /// otherwise. With `prev_kv` the response carries the versions deleted.
    pub fn delete_range(
        &mut self,
        applied_index: u64,
        request: DeleteRangeRequest,
    ) -> Result<Applied<DeleteRangeResponse>, Error> {
        let transaction = TxnRequest {
            success: vec![RequestOp::DeleteRange(request)],
            ..TxnRequest::default()
        };
        let applied = self.txn(applied_index, transaction)?;
        let response = match applied.response.responses.into_iter().next() {
            Some(ResponseOp::DeleteRange(response)) => response,
            other => panic!("a delete answered {other:?}"),
        };
        Ok(Applied {
            response,
            events: applied.events,
        })
    }

    /// Applies a transaction, as etcd's `Txn`. Every compare, nested ones included, is evaluated
    /// against the store as it was before the transaction; the ops then run in order, each seeing
    /// the writes of the ones before. The whole transaction makes one revision if it writes, none
    /// if not. Refused, with nothing changed: [`TxnRequest::validate`]'s errors; a put with
    /// `ignore_value`/`ignore_lease` of a key absent before the transaction
    /// ([`Error::KeyNotFound`]); a range at a revision out of bounds; a key written twice on the
    /// branches taken ([`Error::DuplicateKey`]).
    pub fn txn(
        &mut self,
        applied_index: u64,
        request: TxnRequest,
    ) -> Result<Applied<TxnResponse>, Error> {
        self.txn_checking_leases(applied_index, request, &|_| true)
    }

    /// [`Store::txn`] with the lessor's check on the branches taken: a put whose `lease`
    /// (non-zero, without `ignore_lease`) fails `lease_exists` refuses the whole transaction with
    /// [`Error::LeaseNotFound`] (etcd's `checkRequestPut`, op by op after the `ignore_*` check).
    pub fn txn_checking_leases(
        &mut self,
        applied_index: u64,
        request: TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Applied<TxnResponse>, Error> {
        self.check_running()?;
        self.advance_applied_index(applied_index);
        let result = self.apply_txn(&request, lease_exists);
        let result = self.stop_on_fatal(result);
        if let Err(error) = &result {
            if !matches!(error, Error::Fatal(_)) {
                // Refused: nothing changed, but the entry was applied.
                self.write_batch(Vec::new(), Vec::new())?;
            }
        }
        result
    }

    fn apply_txn(
        &mut self,
        request: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Applied<TxnResponse>, Error> {
        request.validate(self.config.txn_ops_max)?;
        let path = self.txn_path(request, self.current_revision)?;
        self.check_puts(request, &path, lease_exists)?;
        self.check_range_revisions(request, &path)?;
        check_writes_on_path(request, &path)?;

        let mut transaction = WriteTxn::new(self.current_revision);
        let responses = self.execute_ops(&mut transaction, request, &path)?;
        let written = !transaction.changes.is_empty();
        let revision = transaction.read_revision();
        let WriteTxn {
            changes, events, ..
        } = transaction;
        if written {
            self.current_revision = revision;
        }
        self.write_batch(changes, Vec::new())?;
        let response = TxnResponse {
            revision,
            succeeded: path.succeeded,
            responses,
        };
        assert!(written || events.is_empty(), "events without changes");
        Ok(Applied { response, events })
    }

    /// Deletes `keys` (those that exist) in one revision, as etcd's revoke of a lease deletes the
    /// keys attached to it: one new revision if any key existed, none otherwise. No limit on the
    /// number of keys (a lease may hold more than a transaction's `txn_ops_max`). Each key is
    /// deleted once, in key order, whatever the order or repetitions of `keys`.
    pub fn delete_keys(
        &mut self,
        applied_index: u64,
        keys: &[Vec<u8>],
    ) -> Result<Applied<DeleteRangeResponse>, Error> {
        self.check_running()?;
        self.advance_applied_index(applied_index);
        let result = self.apply_delete_keys(keys);
        self.stop_on_fatal(result)
    }

    fn apply_delete_keys(
        &mut self,
        keys: &[Vec<u8>],
    ) -> Result<Applied<DeleteRangeResponse>, Error> {
        let mut sorted: Vec<&Vec<u8>> = keys.iter().filter(|key| !key.is_empty()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut transaction = WriteTxn::new(self.current_revision);
        let mut deleted = 0;
        for key in sorted {
            let request = DeleteRangeRequest::key(key.clone());
            deleted += self.execute_delete(&mut transaction, &request)?.deleted;
        }
        let revision = transaction.read_revision();
        if !transaction.changes.is_empty() {
            self.current_revision = revision;
        }
        let WriteTxn {
            changes, events, ..
        } = transaction;
        self.write_batch(changes, Vec::new())?;
        let response = DeleteRangeResponse {
            revision,
            deleted,
            prev_kvs: Vec::new(),
        };
        Ok(Applied { response, events })
    }

    /// Compacts, as etcd's `Compact`: drops the history below `revision`, so that reads at
    /// `revision` and later still work and reads below fail with [`Error::Compacted`]. Per key it
    /// keeps the newest put at or below `revision`, unless a delete followed (also at or below).
    /// Compacting at or below the last compaction is [`Error::Compacted`], above the current
    /// revision [`Error::FutureRevision`]. Makes no revision; returns the current one.
    pub fn compact(&mut self, applied_index: u64, revision: i64) -> Result<i64, Error> {
        self.check_running()?;
        self.advance_applied_index(applied_index);
        let refusal = if revision <= self.compact_revision.unwrap_or(-1) {
            Some(Error::Compacted {
                compact_revision: self.compact_revision.unwrap_or(0),
            })
        } else if revision > self.current_revision {
            Some(Error::FutureRevision {
                current_revision: self.current_revision,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.write_batch(Vec::new(), Vec::new())?;
            return Err(refusal);
        }
        let removed = self.index.compact(revision);
        self.compact_revision = Some(revision);
        self.write_batch(Vec::new(), removed)?;
        Ok(self.current_revision)
    }

    /// etcd's `compareToPath`: which branch each transaction on the way takes, all decided at
    /// main revision `at`.
    pub(crate) fn txn_path(&self, request: &TxnRequest, at: i64) -> Result<TxnPath, Error> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.compare_holds(compare, at)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut nested = Vec::new();
        for op in ops {
            if let RequestOp::Txn(txn) = op {
                nested.push(self.txn_path(txn, at)?);
            }
        }
        Ok(TxnPath { succeeded, nested })
    }

    /// etcd's `checkRequestPut` on the branches taken: `ignore_value`/`ignore_lease` need the key
    /// to exist before the transaction; then the lease, if any, must exist.
    fn check_puts(
        &self,
        request: &TxnRequest,
        path: &TxnPath,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), Error> {
        for_each_op_on_path(request, path, &mut |op| {
            let RequestOp::Put(put) = op else {
                return Ok(());
            };
            if (put.ignore_value || put.ignore_lease)
                && self.index.get(&put.key, self.current_revision).is_none()
            {
                return Err(Error::KeyNotFound);
            }
            if put.lease != 0 && !put.ignore_lease && !lease_exists(put.lease) {
                return Err(Error::LeaseNotFound);
            }
            Ok(())
        })
    }

    /// etcd's `checkRequestRange` on the branches taken.
    pub(crate) fn check_range_revisions(
        &self,
        request: &TxnRequest,
        path: &TxnPath,
    ) -> Result<(), Error> {
        for_each_op_on_path(request, path, &mut |op| match op {
            RequestOp::Range(range) => {
                self.check_read_revision(range.revision, self.current_revision)
            }
            _ => Ok(()),
        })
    }

    /// etcd's `executeTxn`.
    fn execute_ops(
        &mut self,
        transaction: &mut WriteTxn,
        request: &TxnRequest,
        path: &TxnPath,
    ) -> Result<Vec<ResponseOp>, Error> {
        let ops = if path.succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                RequestOp::Range(range) => ResponseOp::Range(self.execute_range(
                    range,
                    transaction.read_revision(),
                    transaction.pending(),
                )?),
                RequestOp::Put(put) => ResponseOp::Put(self.execute_put(transaction, put)?),
                RequestOp::DeleteRange(delete) => {
                    ResponseOp::DeleteRange(self.execute_delete(transaction, delete)?)
                }
                RequestOp::Txn(txn) => {
                    let Some(nested_path) = nested.next() else {
                        panic!("transaction path shorter than the transaction");
                    };
                    let responses = self.execute_ops(transaction, txn, nested_path)?;
                    ResponseOp::Txn(TxnResponse {
                        revision: transaction.read_revision(),
                        succeeded: nested_path.succeeded,
                        responses,
                    })
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    fn execute_put(
        &mut self,
        transaction: &mut WriteTxn,
        request: &PutRequest,
    ) -> Result<PutResponse, Error> {
        let wants_previous = request.prev_kv
            || request.ignore_value
            || request.ignore_lease
            || self.config.events_prev_kv;
        let previous = if wants_previous {
            self.key_value_at(&request.key, transaction)?
        } else {
            None
        };
        let (value, lease) = match &previous {
            Some(previous) if request.ignore_value || request.ignore_lease => (
                if request.ignore_value {
                    previous.value.clone()
                } else {
                    request.value.clone()
                },
                if request.ignore_lease {
                    previous.lease
                } else {
                    request.lease
                },
            ),
            None if request.ignore_value || request.ignore_lease => {
                panic!("ignore_value/ignore_lease on an absent key passed the checks")
            }
            _ => (request.value.clone(), request.lease),
        };
        let revision = transaction.next_revision();
        let (create_revision, version) = self.index.put(&request.key, revision);
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision,
            mod_revision: revision.main,
            version,
            value,
            lease,
        };
        transaction
            .changes
            .push((revision, Record::Put(kv.clone())));
        transaction.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: if self.config.events_prev_kv {
                previous.clone()
            } else {
                None
            },
        });
        let prev_kv = if request.prev_kv { previous } else { None };
        Ok(PutResponse {
            revision: revision.main,
            prev_kv,
        })
    }

    fn execute_delete(
        &mut self,
        transaction: &mut WriteTxn,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Error> {
        let range = request.key_range();
        let found: Vec<_> = self
            .index
            .range(&range, transaction.read_revision())
            .map(|(_, f)| f)
            .collect();
        let previous = self.key_values(&found, transaction.pending())?;
        for kv in &previous {
            let revision = transaction.next_revision();
            self.index.tombstone(&kv.key, revision);
            transaction.changes.push((
                revision,
                Record::Tombstone {
                    key: kv.key.clone(),
                },
            ));
            let tombstone = KeyValue {
                key: kv.key.clone(),
                mod_revision: revision.main,
                ..KeyValue::default()
            };
            transaction.events.push(Event {
                kind: EventKind::Delete,
                kv: tombstone,
                prev_kv: Some(kv.clone()),
            });
        }
        let deleted = previous.len() as i64;
        let prev_kvs = if request.prev_kv {
            previous
        } else {
            Vec::new()
        };
        Ok(DeleteRangeResponse {
            revision: transaction.read_revision(),
            deleted,
            prev_kvs,
        })
    }

    fn key_value_at(&self, key: &[u8], transaction: &WriteTxn) -> Result<Option<KeyValue>, Error> {
        let Some(found) = self.index.get(key, transaction.read_revision()) else {
            return Ok(None);
        };
        let pending = transaction.pending();
        let records = self.read_records(&[found.revision], pending.records, pending.main)?;
        match records.into_iter().next() {
            Some(record) => put_record(record, &found).map(Some),
            None => panic!("read_records returned nothing for one revision"),
        }
    }
}

/// Calls `check` on every put, delete and range of the branches `path` takes, in order.
fn for_each_op_on_path(
    request: &TxnRequest,
    path: &TxnPath,
    check: &mut dyn FnMut(&RequestOp) -> Result<(), Error>,
) -> Result<(), Error> {
    let ops = if path.succeeded {
        &request.success
    } else {
        &request.failure
    };
    let mut nested = path.nested.iter();
    for op in ops {
        match op {
            RequestOp::Txn(txn) => {
                let Some(nested_path) = nested.next() else {
                    panic!("transaction path shorter than the transaction");
                };
                for_each_op_on_path(txn, nested_path, check)?;
            }
            op => check(op)?,
        }
    }
    Ok(())
}

/// No key is written twice on the branches taken: no put inside a range deleted on them, before
/// or after it. [`TxnRequest::validate`] (etcd's `checkIntervals`) catches this everywhere but in
/// one case etcd lets through: a put in a nested transaction followed by a delete of the key in a
/// later sibling nested transaction, which would change the key twice in one revision.
fn check_writes_on_path(request: &TxnRequest, path: &TxnPath) -> Result<(), Error> {
    let mut puts: Vec<Vec<u8>> = Vec::new();
    let mut deletes: Vec<KeyRange> = Vec::new();
    for_each_op_on_path(request, path, &mut |op| {
        match op {
            RequestOp::Put(put) => puts.push(put.key.clone()),
            RequestOp::DeleteRange(delete) => deletes.push(delete.key_range()),
            RequestOp::Range(_) | RequestOp::Txn(_) => {}
        }
        Ok(())
    })?;
    puts.sort_unstable();
    let duplicate_put = puts.windows(2).any(|pair| pair[0] == pair[1]);
    let put_deleted = puts
        .iter()
        .any(|key| deletes.iter().any(|range| range.contains(key)));
    if duplicate_put || put_deleted {
        return Err(Error::DuplicateKey);
    }
    Ok(())
}
