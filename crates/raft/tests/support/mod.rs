//! An in-memory cluster for raft's tests and benchmarks: messages are delivered in order through a
//! queue that tests may filter, every `Ready` is persisted at once. The simulator (`chorus-sim`) is
//! where faults are thorough; this harness is for readable scenarios of one rule each.
#![allow(dead_code)]

use bytes::Bytes;
use chorus_raft::{
    Config, Entry, EntryPayload, HardState, LogIndex, Message, NodeId, Raft, ReadState,
    RestoreState, Role, Snapshot,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a node has on its disk.
#[derive(Clone, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl Disk {
    fn persist(&mut self, ready: &chorus_raft::Ready) {
        if let Some(snapshot) = &ready.snapshot {
            self.entries.clear();
            self.snapshot = Some(snapshot.clone());
        }
        if let Some(first) = ready.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hard_state) = ready.hard_state {
            self.hard_state = hard_state;
        }
    }

    fn restore(&self) -> RestoreState {
        RestoreState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

pub struct Node {
    pub raft: Raft,
    pub disk: Disk,
    pub applied: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub failed_reads: Vec<u64>,
    pub up: bool,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    pub queue: VecDeque<Message>,
    /// Directed links that drop messages: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub configure: fn(&mut Config),
}

pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

impl Cluster {
    pub fn new(size: u64) -> Cluster {
        Cluster::with_config(size, |_| {})
    }

    pub fn with_config(size: u64, configure: fn(&mut Config)) -> Cluster {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            configure,
        };
        for id in ids(size) {
            cluster.add_node(id, ids(size), Vec::new());
        }
        cluster
    }

    pub fn config(&self, id: NodeId, voters: Vec<NodeId>, learners: Vec<NodeId>) -> Config {
        let mut config = Config::new(id, voters);
        config.initial_learners = learners;
        config.seed = id.0 * 7919;
        (self.configure)(&mut config);
        config
    }

    pub fn add_node(&mut self, id: NodeId, voters: Vec<NodeId>, learners: Vec<NodeId>) {
        let config = self.config(id, voters, learners);
        let raft = Raft::new(config, RestoreState::default());
        let node = Node {
            raft,
            disk: Disk::default(),
            applied: Vec::new(),
            read_states: Vec::new(),
            failed_reads: Vec::new(),
            up: true,
        };
        self.nodes.insert(id, node);
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&NodeId(id)]
    }

    pub fn raft(&mut self, id: u64) -> &mut Raft {
        &mut self.nodes.get_mut(&NodeId(id)).expect("node exists").raft
    }

    /// Carries out every pending `Ready` of `id`, persisting at once.
    pub fn process_ready(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        if !node.up {
            return;
        }
        while node.raft.has_ready() {
            let ready = node.raft.ready();
            self.queue.extend(ready.messages.iter().cloned());
            node.disk.persist(&ready);
            self.queue
                .extend(ready.messages_after_persist.iter().cloned());
            if ready.snapshot.is_some() {
                node.applied.clear();
            }
            node.applied.extend(ready.committed_entries.iter().cloned());
            node.read_states.extend(ready.read_states.iter().copied());
            node.failed_reads.extend(ready.failed_reads.iter().copied());
            node.raft.advance();
            node.raft.check_invariants();
        }
    }

    pub fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process_ready(id);
        }
    }

    /// Delivers messages until none are left (or `max` were delivered).
    pub fn deliver(&mut self, max: usize) -> usize {
        self.process_all();
        let mut delivered = 0;
        while delivered < max {
            let Some(message) = self.queue.pop_front() else {
                break;
            };
            let (from, to) = (message.from, message.to);
            if self.cut.contains(&(from, to)) {
                continue;
            }
            let Some(node) = self.nodes.get_mut(&to) else {
                continue;
            };
            if !node.up {
                continue;
            }
            node.raft.step(message);
            node.raft.check_invariants();
            self.process_ready(to);
            delivered += 1;
        }
        delivered
    }

    pub fn settle(&mut self) {
        self.deliver(1_000_000);
    }

    pub fn tick(&mut self, ticks: u32) {
        for _ in 0..ticks {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.nodes[&id].up {
                    self.raft(id.0).tick();
                }
            }
            self.settle();
        }
    }

    /// Elects `id` by letting it campaign.
    pub fn elect(&mut self, id: u64) {
        self.raft(id).campaign();
        self.settle();
        assert_eq!(self.raft(id).role(), Role::Leader, "n{id} was not elected");
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.up && n.raft.role() == Role::Leader)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn isolate(&mut self, id: u64) {
        let id = NodeId(id);
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|n| *n != id).collect();
        for other in others {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&NodeId(id)).expect("node exists");
        node.up = false;
    }

    /// Restarts `id` from what its disk holds.
    pub fn restart(&mut self, id: u64) {
        let node_id = NodeId(id);
        let voters: Vec<NodeId> = self.nodes.keys().copied().collect();
        let config = self.config(node_id, voters, Vec::new());
        let node = self.nodes.get_mut(&node_id).expect("node exists");
        node.raft = Raft::new(config, node.disk.restore());
        node.applied.clear();
        node.up = true;
    }

    /// The application data each node has applied, in order.
    pub fn applied_data(&self, id: u64) -> Vec<Bytes> {
        self.node(id)
            .applied
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(data) => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn commit(&self, id: u64) -> LogIndex {
        self.node(id).raft.commit_index()
    }
}
