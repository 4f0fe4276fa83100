//! Requests and responses of the KV service, field for field as etcd's `etcdserverpb` messages
//! (`RangeRequest`, `PutRequest`, `DeleteRangeRequest`, `TxnRequest`, `Compare`, ...), minus the
//! response header: each response carries only the header's `revision`, the rest (cluster id,
//! member id, raft term) is the server's to fill in.

use crate::error::Error;
use crate::types::{KeyRange, KeyValue};
use std::collections::BTreeSet;

/// etcd's `RangeRequest.SortOrder`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// No sorting: results come in ascending key order.
    #[default]
    None,
    Ascend,
    Descend,
}

/// etcd's `RangeRequest.SortTarget`: what the sort compares.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// etcd's `RangeRequest`. `key`/`range_end` follow [`KeyRange::from_etcd`]; `revision <= 0`
/// reads the current revision; `limit <= 0` is no limit; a `min_*`/`max_*` filter of 0 is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// A read of one key at the current revision.
    pub fn key(key: impl Into<Vec<u8>>) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            ..RangeRequest::default()
        }
    }

    /// A read of the keys in `range` at the current revision. A range starting at the empty key
    /// starts at `"\0"` instead, as etcd's clients send it (no key is empty, and an empty `key`
    /// is refused).
    pub fn range(range: &KeyRange) -> RangeRequest {
        let (key, range_end) = match range {
            KeyRange::Key(key) => (key.clone(), Vec::new()),
            KeyRange::Range { start, end: None } => (start.clone(), vec![0]),
            KeyRange::Range {
                start,
                end: Some(end),
            } => (start.clone(), end.clone()),
        };
        let key = if key.is_empty() && !range_end.is_empty() {
            vec![0]
        } else {
            key
        };
        RangeRequest {
            key,
            range_end,
            ..RangeRequest::default()
        }
    }

    pub fn key_range(&self) -> KeyRange {
        KeyRange::from_etcd(&self.key, &self.range_end)
    }

    /// The checks etcd's gRPC layer makes before a range reaches the store.
    pub fn validate(&self) -> Result<(), Error> {
        if self.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        Ok(())
    }
}

/// etcd's `RangeResponse`.
///
/// `count` is the number of keys in the range at the revision read, before `limit` and before the
/// `min_*`/`max_*` filters (etcd counts in its index and filters afterwards); `more` says whether
/// keys were left out because of `limit` (after the filters). `revision` is the header revision:
/// the store's revision when the read ran, not the revision read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

/// etcd's `PutRequest`. `lease` 0 is no lease. With `ignore_value` (`ignore_lease`) the key keeps
/// its current value (lease), and the request must not carry one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

impl PutRequest {
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }
    }

    /// The checks etcd's gRPC layer makes before a put reaches the store.
    pub fn validate(&self) -> Result<(), Error> {
        if self.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if self.ignore_value && !self.value.is_empty() {
            return Err(Error::ValueProvided);
        }
        if self.ignore_lease && self.lease != 0 {
            return Err(Error::LeaseProvided);
        }
        Ok(())
    }
}

/// etcd's `PutResponse`: `revision` is the revision the put made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub revision: i64,
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `DeleteRangeRequest`; `key`/`range_end` follow [`KeyRange::from_etcd`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    pub fn key(key: impl Into<Vec<u8>>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        }
    }

    pub fn key_range(&self) -> KeyRange {
        KeyRange::from_etcd(&self.key, &self.range_end)
    }

    /// The checks etcd's gRPC layer makes before a delete reaches the store.
    pub fn validate(&self) -> Result<(), Error> {
        if self.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        Ok(())
    }
}

/// etcd's `DeleteRangeResponse`. `revision` is the revision the delete made, or the current one
/// if it deleted nothing (then it made none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub revision: i64,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

/// etcd's `Compare.CompareResult`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// etcd's `Compare.CompareTarget` together with the `target_union` value compared against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Vec<u8>),
    Lease(i64),
}

/// etcd's `Compare`: `key`/`range_end` follow [`KeyRange::from_etcd`]; over a range, every key in
/// it must satisfy the comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub result: CompareResult,
    pub target: CompareTarget,
}

impl Compare {
    pub fn new(key: impl Into<Vec<u8>>, result: CompareResult, target: CompareTarget) -> Compare {
        Compare {
            key: key.into(),
            range_end: Vec::new(),
            result,
            target,
        }
    }

    pub fn key_range(&self) -> KeyRange {
        KeyRange::from_etcd(&self.key, &self.range_end)
    }
}

/// etcd's `RequestOp`: one operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

/// etcd's `ResponseOp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

/// etcd's `TxnRequest`: if every `compare` holds, `success` runs, else `failure`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// etcd's `TxnResponse`: `responses` answer the branch that ran, op for op. `revision` is the
/// revision the transaction made, or the current one if it wrote nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub revision: i64,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

impl TxnRequest {
    /// The checks etcd's gRPC layer makes before a transaction reaches the store: no more than
    /// `txn_ops_max` compares or ops in a branch (a nested transaction's ops count against what its
    /// parent left), no empty key, no value (lease) with `ignore_value` (`ignore_lease`), and no key
    /// written twice ([`Error::DuplicateKey`]).
    pub fn validate(&self, txn_ops_max: usize) -> Result<(), Error> {
        self.validate_ops(txn_ops_max)?;
        check_intervals(&self.success)?;
        check_intervals(&self.failure)?;
        Ok(())
    }

    fn validate_ops(&self, txn_ops_max: usize) -> Result<(), Error> {
        let ops = self
            .compare
            .len()
            .max(self.success.len())
            .max(self.failure.len());
        if ops > txn_ops_max {
            return Err(Error::TooManyOps);
        }
        if self.compare.iter().any(|compare| compare.key.is_empty()) {
            return Err(Error::EmptyKey);
        }
        for op in self.success.iter().chain(&self.failure) {
            match op {
                RequestOp::Range(range) => range.validate()?,
                RequestOp::Put(put) => put.validate()?,
                RequestOp::DeleteRange(delete) => delete.validate()?,
                RequestOp::Txn(txn) => txn.validate_ops(txn_ops_max - ops)?,
            }
        }
        Ok(())
    }

    /// Whether any branch, at any depth, writes.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
            RequestOp::Txn(txn) => txn.is_read_only(),
        })
    }
}

/// The keys one branch puts and the ranges it deletes, as etcd's `checkIntervals` collects them.
struct Writes {
    puts: BTreeSet<Vec<u8>>,
    deletes: Vec<KeyRange>,
}

impl Writes {
    fn deletes_key(&self, key: &[u8]) -> bool {
        self.deletes.iter().any(|range| range.contains(key))
    }
}

/// etcd's `checkIntervals`: within one branch, a key may not be put twice, nor put inside a range
/// the branch (or a transaction nested in it) deletes; the two branches of one nested transaction
/// exclude each other, so they may put the same key. Deletes may overlap each other.
///
/// One difference: etcd takes a range end of `"\0"` literally here; we read it as "no end", as
/// everywhere else.
fn check_intervals(ops: &[RequestOp]) -> Result<Writes, Error> {
    let mut writes = Writes {
        puts: BTreeSet::new(),
        deletes: Vec::new(),
    };
    for op in ops {
        if let RequestOp::DeleteRange(delete) = op {
            writes.deletes.push(delete.key_range());
        }
    }
    for op in ops {
        let RequestOp::Txn(txn) = op else { continue };
        let then_writes = check_intervals(&txn.success)?;
        let else_writes = check_intervals(&txn.failure)?;
        for key in &then_writes.puts {
            if writes.puts.contains(key) || writes.deletes_key(key) {
                return Err(Error::DuplicateKey);
            }
        }
        // The two branches exclude each other: an else-put only clashes with earlier siblings.
        for key in &else_writes.puts {
            if writes.puts.contains(key) || writes.deletes_key(key) {
                return Err(Error::DuplicateKey);
            }
        }
        writes.puts.extend(then_writes.puts);
        writes.puts.extend(else_writes.puts);
        writes.deletes.extend(then_writes.deletes);
        writes.deletes.extend(else_writes.deletes);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if writes.puts.contains(&put.key) || writes.deletes_key(&put.key) {
            return Err(Error::DuplicateKey);
        }
        writes.puts.insert(put.key.clone());
    }
    Ok(writes)
}
