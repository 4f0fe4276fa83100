//! Translation between etcd's protobuf messages and the mvcc store's requests and responses:
//! done once, here, at the edge.

use chorus_mvcc as mvcc;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::mvccpb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request;
use pb::response_op::Response;

/// The etcd key-value of a stored one.
pub fn key_value(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key.into(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.into(),
        lease: kv.lease,
    }
}

pub fn range_request(request: &pb::RangeRequest) -> mvcc::RangeRequest {
    let sort_order = match SortOrder::try_from(request.sort_order) {
        Ok(SortOrder::Ascend) => mvcc::SortOrder::Ascend,
        Ok(SortOrder::Descend) => mvcc::SortOrder::Descend,
        _ => mvcc::SortOrder::None,
    };
    let sort_target = match SortTarget::try_from(request.sort_target) {
        Ok(SortTarget::Version) => mvcc::SortTarget::Version,
        Ok(SortTarget::Create) => mvcc::SortTarget::Create,
        Ok(SortTarget::Mod) => mvcc::SortTarget::Mod,
        Ok(SortTarget::Value) => mvcc::SortTarget::Value,
        _ => mvcc::SortTarget::Key,
    };
    mvcc::RangeRequest {
        key: request.key.to_vec(),
        range_end: request.range_end.to_vec(),
        limit: request.limit,
        revision: request.revision,
        sort_order,
        sort_target,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

pub fn range_response(
    response: mvcc::RangeResponse,
    header: pb::ResponseHeader,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header),
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

pub fn put_request(request: &pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: request.key.to_vec(),
        value: request.value.to_vec(),
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

pub fn put_response(response: mvcc::PutResponse, header: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(header),
        prev_kv: response.prev_kv.map(key_value),
    }
}

pub fn delete_range_request(request: &pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: request.key.to_vec(),
        range_end: request.range_end.to_vec(),
        prev_kv: request.prev_kv,
    }
}

pub fn delete_range_response(
    response: mvcc::DeleteRangeResponse,
    header: pb::ResponseHeader,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header),
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

fn compare(compare: &pb::Compare) -> mvcc::Compare {
    let result = match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Greater) => mvcc::CompareResult::Greater,
        Ok(CompareResult::Less) => mvcc::CompareResult::Less,
        Ok(CompareResult::NotEqual) => mvcc::CompareResult::NotEqual,
        _ => mvcc::CompareResult::Equal,
    };
    let target = match (
        CompareTarget::try_from(compare.target),
        &compare.target_union,
    ) {
        (Ok(CompareTarget::Version), Some(TargetUnion::Version(v))) => {
            mvcc::CompareTarget::Version(*v)
        }
        (Ok(CompareTarget::Create), Some(TargetUnion::CreateRevision(v))) => {
            mvcc::CompareTarget::CreateRevision(*v)
        }
        (Ok(CompareTarget::Mod), Some(TargetUnion::ModRevision(v))) => {
            mvcc::CompareTarget::ModRevision(*v)
        }
        (Ok(CompareTarget::Value), Some(TargetUnion::Value(v))) => {
            mvcc::CompareTarget::Value(v.to_vec())
        }
        (Ok(CompareTarget::Lease), Some(TargetUnion::Lease(v))) => mvcc::CompareTarget::Lease(*v),
        // A target without its operand compares against the zero value, as in etcd.
        (Ok(CompareTarget::Create), _) => mvcc::CompareTarget::CreateRevision(0),
        (Ok(CompareTarget::Mod), _) => mvcc::CompareTarget::ModRevision(0),
        (Ok(CompareTarget::Value), _) => mvcc::CompareTarget::Value(Vec::new()),
        (Ok(CompareTarget::Lease), _) => mvcc::CompareTarget::Lease(0),
        _ => mvcc::CompareTarget::Version(0),
    };
    mvcc::Compare {
        key: compare.key.to_vec(),
        range_end: compare.range_end.to_vec(),
        result,
        target,
    }
}

fn request_op(op: &pb::RequestOp) -> Option<mvcc::RequestOp> {
    Some(match op.request.as_ref()? {
        Request::RequestRange(range) => mvcc::RequestOp::Range(range_request(range)),
        Request::RequestPut(put) => mvcc::RequestOp::Put(put_request(put)),
        Request::RequestDeleteRange(delete) => {
            mvcc::RequestOp::DeleteRange(delete_range_request(delete))
        }
        Request::RequestTxn(txn) => mvcc::RequestOp::Txn(txn_request(txn)),
    })
}

/// The mvcc transaction; ops without a request (empty oneof) are skipped.
pub fn txn_request(request: &pb::TxnRequest) -> mvcc::TxnRequest {
    mvcc::TxnRequest {
        compare: request.compare.iter().map(compare).collect(),
        success: request.success.iter().filter_map(request_op).collect(),
        failure: request.failure.iter().filter_map(request_op).collect(),
    }
}

/// Whether the transaction nests deeper than `depth_max` (checked before translating, so a
/// hostile request cannot make the recursion deep).
pub fn txn_depth_exceeds(request: &pb::TxnRequest, depth_max: usize) -> bool {
    if depth_max == 0 {
        return true;
    }
    request
        .success
        .iter()
        .chain(request.failure.iter())
        .any(|op| match &op.request {
            Some(Request::RequestTxn(inner)) => txn_depth_exceeds(inner, depth_max - 1),
            _ => false,
        })
}

fn response_op(op: mvcc::ResponseOp, header: &pb::ResponseHeader) -> pb::ResponseOp {
    let response = match op {
        mvcc::ResponseOp::Range(range) => Response::ResponseRange(range_response(range, *header)),
        mvcc::ResponseOp::Put(put) => Response::ResponsePut(put_response(put, *header)),
        mvcc::ResponseOp::DeleteRange(delete) => {
            Response::ResponseDeleteRange(delete_range_response(delete, *header))
        }
        mvcc::ResponseOp::Txn(txn) => Response::ResponseTxn(txn_response(txn, *header)),
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

pub fn txn_response(response: mvcc::TxnResponse, header: pb::ResponseHeader) -> pb::TxnResponse {
    pb::TxnResponse {
        succeeded: response.succeeded,
        responses: response
            .responses
            .into_iter()
            .map(|op| response_op(op, &header))
            .collect(),
        header: Some(header),
    }
}
