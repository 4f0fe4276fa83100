//! Transactions: compares, then the ops of the branch the compares chose. Builders are pure.

use crate::error::CallKind;
use crate::kv::KeyRange;
use crate::session::with_metadata;
use crate::{Client, Delete, Error, Get, Put};
use bytes::Bytes;
use chorus_proto::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request;

/// How a compare relates the key's current attribute to the given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

impl CompareOp {
    fn result(self) -> CompareResult {
        match self {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::NotEqual => CompareResult::NotEqual,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
        }
    }
}

/// One condition of a transaction, on a key (or a range: every key in it must satisfy it).
/// A key that does not exist has version, create and mod revision 0 and no value.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare(pb::Compare);

impl Compare {
    fn new(range: KeyRange, op: CompareOp, target: CompareTarget, union: TargetUnion) -> Compare {
        Compare(pb::Compare {
            result: op.result() as i32,
            target: target as i32,
            key: Bytes::from(range.key),
            range_end: Bytes::from(range.range_end),
            target_union: Some(union),
        })
    }

    /// The key's value compared with `value` (bytewise).
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Compare {
        let value = Bytes::from(value.into());
        Compare::new(
            KeyRange::key(key),
            op,
            CompareTarget::Value,
            TargetUnion::Value(value),
        )
    }

    /// The key's version (number of writes since its creation; 0 when absent).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Compare {
        Compare::new(
            KeyRange::key(key),
            op,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }

    /// The revision that created the key (0 when absent).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            KeyRange::key(key),
            op,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }

    /// The revision of the key's last write (0 when absent).
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            KeyRange::key(key),
            op,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }

    /// The key's lease (0 when none).
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Compare {
        Compare::new(
            KeyRange::key(key),
            op,
            CompareTarget::Lease,
            TargetUnion::Lease(lease),
        )
    }

    /// Applies the compare to every key of `range` instead of one key.
    pub fn over(mut self, range: KeyRange) -> Compare {
        self.0.key = Bytes::from(range.key);
        self.0.range_end = Bytes::from(range.range_end);
        self
    }

    pub fn into_proto(self) -> pb::Compare {
        self.0
    }
}

/// One operation of a transaction branch.
#[derive(Clone, Debug)]
pub enum TxnOp {
    Get(Get),
    Put(Put),
    Delete(Delete),
    Txn(Txn),
}

impl TxnOp {
    pub fn into_proto(self) -> pb::RequestOp {
        let request = match self {
            TxnOp::Get(get) => Request::RequestRange(get.into_request()),
            TxnOp::Put(put) => Request::RequestPut(put.into_request()),
            TxnOp::Delete(delete) => Request::RequestDeleteRange(delete.into_request()),
            TxnOp::Txn(txn) => Request::RequestTxn(txn.into_request()),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }

    fn writes(&self) -> bool {
        match self {
            TxnOp::Get(_) => false,
            TxnOp::Put(_) | TxnOp::Delete(_) => true,
            TxnOp::Txn(txn) => txn.writes(),
        }
    }
}

/// A transaction: if every compare holds, the `and_then` ops run, else the `or_else` ops; all
/// at one revision, atomically.
///
/// ```
/// use chorus_client::{Compare, CompareOp, Get, Put, Txn, TxnOp};
/// // Create "leader" only if it does not exist yet; else read who holds it.
/// let txn = Txn::new()
///     .when([Compare::create_revision("leader", CompareOp::Equal, 0)])
///     .and_then([TxnOp::Put(Put::new("leader", "me"))])
///     .or_else([TxnOp::Get(Get::key("leader"))]);
/// assert_eq!(txn.into_request().compare.len(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds compares (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.compares.extend(compares);
        self
    }

    /// Adds ops run when every compare holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.success.extend(ops);
        self
    }

    /// Adds ops run otherwise.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.failure.extend(ops);
        self
    }

    /// Whether either branch writes (a transaction that only reads is retried like a get).
    pub fn writes(&self) -> bool {
        self.success.iter().chain(&self.failure).any(TxnOp::writes)
    }

    pub fn into_request(self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compares.into_iter().map(Compare::into_proto).collect(),
            success: self.success.into_iter().map(TxnOp::into_proto).collect(),
            failure: self.failure.into_iter().map(TxnOp::into_proto).collect(),
        }
    }
}

impl Client {
    /// Runs a transaction. One that writes is retried like [`Client::put`]; a read-only one
    /// after any transient failure.
    pub async fn txn(&self, txn: Txn) -> Result<pb::TxnResponse, Error> {
        let writes = txn.writes();
        let request = txn.into_request();
        if !writes {
            return self
                .call(CallKind::Read, |channel| {
                    let mut kv = self.kv_client(channel);
                    let request = request.clone();
                    async move { kv.txn(request).await }
                })
                .await;
        }
        self.write(|channel, metadata| {
            let mut kv = self.kv_client(channel);
            let request = with_metadata(request.clone(), metadata);
            async move { kv.txn(request).await }
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn compares_carry_target_result_and_value() {
        let compare = Compare::value("k", CompareOp::NotEqual, "v").into_proto();
        assert_eq!(compare.target, CompareTarget::Value as i32);
        assert_eq!(compare.result, CompareResult::NotEqual as i32);
        assert_eq!(
            compare.target_union,
            Some(TargetUnion::Value(Bytes::from_static(b"v")))
        );
        let compare = Compare::mod_revision("k", CompareOp::Less, 7)
            .over(KeyRange::prefix("k"))
            .into_proto();
        assert_eq!(compare.target_union, Some(TargetUnion::ModRevision(7)));
        assert_eq!(&compare.range_end[..], b"l");
    }

    #[test]
    fn a_txn_writes_when_any_branch_or_nested_txn_writes() {
        let read_only = Txn::new()
            .and_then([TxnOp::Get(Get::key("a"))])
            .or_else([TxnOp::Txn(Txn::new().and_then([TxnOp::Get(Get::key("b"))]))]);
        assert!(!read_only.writes());
        let nested_write = Txn::new().or_else([TxnOp::Txn(
            Txn::new().and_then([TxnOp::Delete(Delete::key("b"))]),
        )]);
        assert!(nested_write.writes());
    }

    #[test]
    fn branches_become_request_ops_in_order() {
        let request = Txn::new()
            .when([Compare::version("k", CompareOp::Greater, 0)])
            .and_then([TxnOp::Put(Put::new("k", "1")), TxnOp::Get(Get::key("k"))])
            .or_else([TxnOp::Delete(Delete::key("k"))])
            .into_request();
        assert!(matches!(
            request.success[0].request,
            Some(Request::RequestPut(_))
        ));
        assert!(matches!(
            request.success[1].request,
            Some(Request::RequestRange(_))
        ));
        assert!(matches!(
            request.failure[0].request,
            Some(Request::RequestDeleteRange(_))
        ));
    }
}
