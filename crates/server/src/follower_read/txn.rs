//! A read-only Txn served as a follower read: when every op of both branches is a
//! serializable Range (etcd's rule for a serializable txn) and the request carries
//! `chorus-min-revision`, it is admitted like a stamped Range and evaluated on this member's
//! applied state, without ReadIndex. Any other read-only txn stays linearizable.

use crate::error::ServerError;
use crate::group::{Answer, GroupHandle, GroupInput, GroupTask};
use crate::group_maintenance::MaintenanceInput;
use chorus_mvcc::{TxnRequest, TxnResponse};
use chorus_proto::etcdserverpb as pb;
use tokio::sync::oneshot;

/// Whether every op of both branches is a serializable Range (so the txn may be served from
/// this member's applied state), as etcd decides it.
pub fn is_serializable_txn(request: &pb::TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .all(|op| match &op.request {
            Some(pb::request_op::Request::RequestRange(range)) => range.serializable,
            _ => false,
        })
}

impl GroupHandle {
    /// A read-only transaction evaluated on this member's applied state at once.
    pub async fn local_read_txn(&self, request: TxnRequest) -> Answer<TxnResponse> {
        let (reply, answer) = oneshot::channel();
        let input = MaintenanceInput::LocalReadTxn { request, reply };
        self.call(GroupInput::Maintenance(input), answer).await?
    }
}

impl GroupTask {
    pub(crate) fn handle_local_read_txn(
        &self,
        request: &TxnRequest,
        reply: oneshot::Sender<Answer<TxnResponse>>,
    ) {
        assert!(request.is_read_only(), "a local read txn that writes");
        let answer = self
            .replica
            .store()
            .txn_read_only(request)
            .map(|response| (response, self.header()))
            .map_err(ServerError::Mvcc);
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn range(serializable: bool) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: "k".into(),
                serializable,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn only_a_txn_of_serializable_ranges_is_served_locally() {
        let txn = |success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>| pb::TxnRequest {
            success,
            failure,
            ..Default::default()
        };
        assert!(is_serializable_txn(&txn(
            vec![range(true)],
            vec![range(true)]
        )));
        assert!(is_serializable_txn(&txn(vec![], vec![])));
        assert!(!is_serializable_txn(&txn(
            vec![range(true)],
            vec![range(false)]
        )));
        let nested = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestTxn(txn(
                vec![range(true)],
                vec![],
            ))),
        };
        assert!(!is_serializable_txn(&txn(vec![nested], vec![])));
    }
}
