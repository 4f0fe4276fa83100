//! The membership as this node serves it: a copy of the replica's replicated member table
//! (`chorus_replica::members`, kept current by the group task after every pass), plus what the
//! members said about themselves in their peer hellos (name, client URLs, peer URLs), which
//! is all a member knows of the others before the table records it.

use crate::config::{cluster_id, local_member_id, member_id, ClusterState, ServerConfig};
use chorus_proto::peer;
use chorus_raft::NodeId;
use chorus_replica::{MemberRecord, MemberTable};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    /// Empty until the member started and announced itself.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// What a member said in its hello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    pub name: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
}

#[derive(Debug, Default)]
struct Shared {
    members: BTreeMap<NodeId, Member>,
    announced: BTreeMap<NodeId, Announced>,
}

/// The cluster as this node knows it. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Members {
    pub local_id: NodeId,
    /// This member's name and URLs, for its hello.
    pub local: Announced,
    /// 0 while unknown (a joining member, until the leader's snapshot arrives).
    cluster_id: Arc<AtomicU64>,
    shared: Arc<RwLock<Shared>>,
}

/// The member table a founding member starts with: every member of `--initial-cluster`, ids
/// from names, no client URLs yet (each member publishes its own once it runs). Empty for a
/// member that joins: it gets the table from the leader.
pub fn initial_table(config: &ServerConfig) -> MemberTable {
    if config.initial_cluster_state == ClusterState::Existing {
        return MemberTable::default();
    }
    let members = config
        .initial_cluster
        .iter()
        .map(|(name, peer_url)| MemberRecord {
            id: member_id(name).0,
            name: name.clone(),
            peer_urls: vec![peer_url.clone()],
            client_urls: Vec::new(),
            is_learner: false,
        });
    MemberTable::new(cluster_id(&config.initial_cluster), members)
}

impl Members {
    /// This node's view before the replica is open: the initial table (see [`initial_table`]).
    pub fn new(config: &ServerConfig) -> Members {
        let members = Members {
            local_id: local_member_id(config),
            local: Announced {
                name: config.name.clone(),
                client_urls: vec![config.advertise_client_url.clone()],
                peer_urls: vec![config.listen_peer_url.clone()],
            },
            cluster_id: Arc::new(AtomicU64::new(0)),
            shared: Arc::new(RwLock::new(Shared::default())),
        };
        members.set_table(&initial_table(config));
        members
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Shared> {
        match self.shared.read() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Shared> {
        match self.shared.write() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The cluster's id; 0 while a joining member has not learned it.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    /// Adopts the cluster id of the first hello, while it is unknown (a joining member).
    pub fn adopt_cluster_id(&self, cluster_id: u64) -> bool {
        self.cluster_id
            .compare_exchange(0, cluster_id, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Replaces the members with the replicated table's; its cluster id wins once known.
    pub fn set_table(&self, table: &MemberTable) {
        if table.cluster_id != 0 {
            self.cluster_id.store(table.cluster_id, Ordering::Relaxed);
        }
        let members = table
            .members
            .values()
            .map(|record| {
                let member = Member {
                    id: NodeId(record.id),
                    name: record.name.clone(),
                    peer_urls: record.peer_urls.clone(),
                    client_urls: record.client_urls.clone(),
                    is_learner: record.is_learner,
                };
                (member.id, member)
            })
            .collect();
        self.write().members = members;
    }

    /// Every member, in id order.
    pub fn list(&self) -> Vec<Member> {
        self.read().members.values().cloned().collect()
    }

    /// The member with this id.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        self.read().members.get(&id).cloned()
    }

    /// Whether the table has no member (a joining member before the leader's snapshot).
    pub fn is_empty(&self) -> bool {
        self.read().members.is_empty()
    }

    /// Records what a member said in its hello.
    pub fn announce(&self, id: NodeId, announced: Announced) {
        let mut shared = self.write();
        if shared.announced.len() >= chorus_replica::members::MEMBERS_MAX * 4
            && !shared.announced.contains_key(&id)
        {
            shared.announced.clear();
        }
        shared.announced.insert(id, announced);
    }

    /// What a member said in its hello, if it did.
    pub fn announced(&self, id: NodeId) -> Option<Announced> {
        if id == self.local_id {
            return Some(self.local.clone());
        }
        self.read().announced.get(&id).cloned()
    }

    /// Where a member serves clients: its replicated client URL, else the one it announced.
    pub fn client_url(&self, id: NodeId) -> Option<String> {
        let shared = self.read();
        shared
            .members
            .get(&id)
            .and_then(|member| member.client_urls.first())
            .or_else(|| {
                shared
                    .announced
                    .get(&id)
                    .and_then(|announced| announced.client_urls.first())
            })
            .cloned()
            .or_else(|| {
                (id == self.local_id)
                    .then(|| self.local.client_urls.first().cloned())
                    .flatten()
            })
    }

    /// The hello this node opens its peer connections with.
    pub fn hello(&self) -> peer::Hello {
        peer::Hello {
            cluster_id: self.cluster_id(),
            node_id: self.local_id.0,
            name: self.local.name.clone(),
            client_urls: self.local.client_urls.clone(),
            peer_urls: self.local.peer_urls.clone(),
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
