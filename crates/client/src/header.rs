//! Access to the `ResponseHeader` every etcd response carries, so the client can track the
//! highest revision it has seen.

use chorus_proto::etcdserverpb as pb;

/// A response with etcd's header.
pub trait HasHeader {
    fn header(&self) -> Option<&pb::ResponseHeader>;
}

macro_rules! has_header {
    ($($response:ty),* $(,)?) => {
        $(impl HasHeader for $response {
            fn header(&self) -> Option<&pb::ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

has_header!(
    pb::RangeResponse,
    pb::PutResponse,
    pb::DeleteRangeResponse,
    pb::TxnResponse,
    pb::CompactionResponse,
    pb::WatchResponse,
    pb::LeaseGrantResponse,
    pb::LeaseRevokeResponse,
    pb::LeaseTimeToLiveResponse,
    pb::LeaseLeasesResponse,
    pb::LeaseKeepAliveResponse,
    pb::MemberAddResponse,
    pb::MemberRemoveResponse,
    pb::MemberUpdateResponse,
    pb::MemberListResponse,
    pb::MemberPromoteResponse,
    pb::StatusResponse,
    chorus_proto::session::OpenResponse,
    chorus_proto::session::KeepAliveResponse,
    chorus_proto::session::CloseResponse,
);
