//! A read-only transaction (no put or delete on either branch, at any depth) evaluated against
//! the store as it is, without making a revision or touching the applied index: etcd serves such
//! a transaction as a read, and so can the server (after a ReadIndex), off the raft log.

use crate::backend::Backend;
use crate::error::Error;
use crate::read::Pending;
use crate::request::{RequestOp, ResponseOp, TxnRequest, TxnResponse};
use crate::store::Store;
use crate::write::TxnPath;

impl<B: Backend> Store<B> {
    /// Evaluates a read-only transaction ([`TxnRequest::is_read_only`]) at the current revision:
    /// the same answer [`Store::txn`] would give, with the same refusals, but nothing changes.
    /// Panics if the transaction writes: the caller checks.
    pub fn txn_read_only(&self, request: &TxnRequest) -> Result<TxnResponse, Error> {
        assert!(
            request.is_read_only(),
            "txn_read_only() given a transaction that writes"
        );
        self.check_running()?;
        request.validate(self.config.txn_ops_max)?;
        let path = self.txn_path(request, self.current_revision)?;
        self.check_range_revisions(request, &path)?;
        let responses = self.read_ops(request, &path)?;
        Ok(TxnResponse {
            revision: self.current_revision,
            succeeded: path.succeeded,
            responses,
        })
    }

    fn read_ops(&self, request: &TxnRequest, path: &TxnPath) -> Result<Vec<ResponseOp>, Error> {
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
                    self.current_revision,
                    Pending::NONE,
                )?),
                RequestOp::Txn(txn) => {
                    let Some(nested_path) = nested.next() else {
                        panic!("transaction path shorter than the transaction");
                    };
                    ResponseOp::Txn(TxnResponse {
                        revision: self.current_revision,
                        succeeded: nested_path.succeeded,
                        responses: self.read_ops(txn, nested_path)?,
                    })
                }
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    panic!("a write in a read-only transaction")
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::request::{Compare, CompareResult, CompareTarget};
    use crate::{Config, MemoryBackend, PutRequest, RangeRequest, RequestOp, Store, TxnRequest};

    fn store() -> Store<MemoryBackend> {
        let mut store = Store::open(MemoryBackend::new(), Config::default()).expect("open");
        store.put(1, PutRequest::new("a", "1")).expect("put");
        store.put(2, PutRequest::new("b", "2")).expect("put");
        store
    }

    fn read_txn(value: &str) -> TxnRequest {
        TxnRequest {
            compare: vec![Compare::new(
                "a",
                CompareResult::Equal,
                CompareTarget::Value(value.into()),
            )],
            success: vec![
                RequestOp::Range(RangeRequest::key("a")),
                RequestOp::Txn(TxnRequest {
                    compare: vec![Compare::new(
                        "b",
                        CompareResult::Greater,
                        CompareTarget::Version(5),
                    )],
                    success: vec![],
                    failure: vec![RequestOp::Range(RangeRequest::key("b"))],
                }),
            ],
            failure: vec![RequestOp::Range(RangeRequest::key("b"))],
        }
    }

    #[test]
    fn a_read_only_txn_answers_as_the_applied_one_and_changes_nothing() {
        for value in ["1", "other"] {
            let mut applied = store();
            let reader = store();
            let request = read_txn(value);
            let read = reader.txn_read_only(&request).expect("read");
            assert_eq!(reader.applied_index(), 2);
            assert_eq!(reader.current_revision(), 3);
            let written = applied.txn(3, request).expect("txn").response;
            assert_eq!(read, written);
        }
    }

    #[test]
    fn refusals_are_the_applied_ones() {
        let store = store();
        let request = TxnRequest {
            success: vec![RequestOp::Range(RangeRequest {
                revision: 10,
                ..RangeRequest::key("a")
            })],
            ..TxnRequest::default()
        };
        assert_eq!(
            store.txn_read_only(&request),
            Err(crate::Error::FutureRevision {
                current_revision: 3
            })
        );
    }
}
