//! What the Cluster service's changes share: proposing a [`MemberChange`] on the leader (a
//! follower forwards the request to the leader's Cluster service, once), and etcd's `Member`
//! messages from the replicated table.

use super::ServerState;
use crate::error::ServerError;
use crate::group::HeaderInfo;
use crate::group_members::MemberChange;
use crate::members::Member;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::cluster_client::ClusterClient;
use chorus_replica::{CommandResponse, MemberChanged, MemberRecord};
use tonic::transport::Channel;
use tonic::Request;

/// What the leader answered: the member changed, the table after it, the header.
pub type Changed = (MemberChanged, pb::ResponseHeader);

/// Proposes `change` here if this member leads; `Err(Ok(client))` gives the leader's Cluster
/// client to forward to.
pub async fn propose<T>(
    state: &ServerState,
    request: &Request<T>,
    change: MemberChange,
) -> Result<Changed, Result<ClusterClient<Channel>, ServerError>> {
    match state.group.member_change(change).await {
        Ok((CommandResponse::Member(Ok(changed)), header)) => Ok((changed, state.header(header))),
        Ok((CommandResponse::Member(Err(error)), _)) => Err(Err(ServerError::Member(error))),
        Ok(_) => Err(Err(ServerError::Forward(
            "a member change answered as another command".to_string(),
        ))),
        Err(ServerError::NotLeader {
            leader: Some(leader),
        }) => {
            if request
                .metadata()
                .contains_key(super::FORWARDED_METADATA_KEY)
            {
                return Err(Err(ServerError::LeaderChanged));
            }
            Err(state.channel_to(leader).map(ClusterClient::new))
        }
        Err(error) => Err(Err(error)),
    }
}

/// etcd's `Member` of a table record.
pub fn pb_member(member: &MemberRecord) -> pb::Member {
    pb::Member {
        id: member.id,
        name: member.name.clone(),
        peer_ur_ls: member.peer_urls.clone(),
        client_ur_ls: member.client_urls.clone(),
        is_learner: member.is_learner,
    }
}

/// etcd's `Member` of this node's copy of the table.
pub fn pb_member_of(member: Member) -> pb::Member {
    pb::Member {
        id: member.id.0,
        name: member.name,
        peer_ur_ls: member.peer_urls,
        client_ur_ls: member.client_urls,
        is_learner: member.is_learner,
    }
}

/// The members after a change, as etcd lists them.
pub fn pb_members(changed: &MemberChanged) -> Vec<pb::Member> {
    changed.members.iter().map(pb_member).collect()
}

/// A header for answers that carry only the group's state.
pub fn header_info(revision: i64, raft_term: u64) -> HeaderInfo {
    HeaderInfo {
        revision,
        raft_term,
        answered_as: None,
    }
}
