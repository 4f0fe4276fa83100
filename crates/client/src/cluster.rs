//! Cluster membership: list, add, remove, update, promote.

use crate::error::CallKind;
use crate::{Client, Error};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::cluster_client::ClusterClient;
use tonic::transport::Channel;

impl Client {
    fn cluster_client(&self, channel: Channel) -> ClusterClient<Channel> {
        ClusterClient::new(channel).max_decoding_message_size(self.config().response_bytes_max)
    }

    /// Every member. A read.
    pub async fn member_list(&self) -> Result<pb::MemberListResponse, Error> {
        let request = pb::MemberListRequest { linearizable: true };
        self.call(CallKind::Read, |channel| {
            let mut cluster = self.cluster_client(channel);
            async move { cluster.member_list(request).await }
        })
        .await
    }

    /// Adds a member (a learner if `is_learner`) with these peer URLs. A write.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<pb::MemberAddResponse, Error> {
        let request = pb::MemberAddRequest {
            peer_ur_ls: peer_urls,
            is_learner,
        };
        self.call(CallKind::Write, |channel| {
            let mut cluster = self.cluster_client(channel);
            let request = request.clone();
            async move { cluster.member_add(request).await }
        })
        .await
    }

    /// Removes a member. A write.
    pub async fn member_remove(&self, id: u64) -> Result<pb::MemberRemoveResponse, Error> {
        let request = pb::MemberRemoveRequest { id };
        self.call(CallKind::Write, |channel| {
            let mut cluster = self.cluster_client(channel);
            async move { cluster.member_remove(request).await }
        })
        .await
    }

    /// Changes a member's peer URLs. A write.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<pb::MemberUpdateResponse, Error> {
        let request = pb::MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls,
        };
        self.call(CallKind::Write, |channel| {
            let mut cluster = self.cluster_client(channel);
            let request = request.clone();
            async move { cluster.member_update(request).await }
        })
        .await
    }

    /// Makes a learner a voting member. A write.
    pub async fn member_promote(&self, id: u64) -> Result<pb::MemberPromoteResponse, Error> {
        let request = pb::MemberPromoteRequest { id };
        self.call(CallKind::Write, |channel| {
            let mut cluster = self.cluster_client(channel);
            async move { cluster.member_promote(request).await }
        })
        .await
    }
}
