//! The static membership from `--initial-cluster`, and what the members told us about
//! themselves over the peer connections (their client URLs).

use crate::config::{cluster_id, member_id, ServerConfig};
use chorus_raft::NodeId;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    pub peer_url: String,
    /// Known for this node from its configuration, for the others once they said hello.
    pub client_urls: Vec<String>,
}

/// The cluster as this node knows it. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Members {
    pub cluster_id: u64,
    pub local_id: NodeId,
    members: Arc<RwLock<BTreeMap<NodeId, Member>>>,
}

impl Members {
    pub fn new(config: &ServerConfig) -> Members {
        let local_id = member_id(&config.name);
        let members = config
            .initial_cluster
            .iter()
            .map(|(name, peer_url)| {
                let id = member_id(name);
                let client_urls = if id == local_id {
                    vec![config.advertise_client_url.clone()]
                } else {
                    Vec::new()
                };
                let member = Member {
                    id,
                    name: name.clone(),
                    peer_url: peer_url.clone(),
                    client_urls,
                };
                (id, member)
            })
            .collect();
        Members {
            cluster_id: cluster_id(&config.initial_cluster),
            local_id,
            members: Arc::new(RwLock::new(members)),
        }
    }

    /// Every member, in id order.
    pub fn list(&self) -> Vec<Member> {
        match self.members.read() {
            Ok(members) => members.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    /// The member with this id.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        match self.members.read() {
            Ok(members) => members.get(&id).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&id).cloned(),
        }
    }

    /// Records the client URLs a member announced; ignores ids not in the cluster.
    pub fn set_client_urls(&self, id: NodeId, client_urls: Vec<String>) {
        let mut members = match self.members.write() {
            Ok(members) => members,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(member) = members.get_mut(&id) {
            member.client_urls = client_urls;
        }
    }

    /// The ids of every member but this one.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.list()
            .into_iter()
            .map(|member| member.id)
            .filter(|id| *id != self.local_id)
            .collect()
    }
}
