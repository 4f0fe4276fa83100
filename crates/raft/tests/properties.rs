//! Property tests: random schedules of ticks, deliveries in any order, drops, partitions, crashes
//! and proposals, checking after every step that logs match (§5.3, Log Matching), that commit
//! indexes never go back, and that a committed entry never changes on any node (§5.4.3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use chorus_raft::{LogIndex, NodeId, Term};
use proptest::prelude::*;
use std::collections::BTreeMap;
use support::Cluster;

#[derive(Clone, Debug)]
enum Step {
    Tick,
    /// Deliver the message at this position of the queue (modulo its length).
    Deliver(usize),
    Drop(usize),
    Propose(u64),
    Isolate(u64),
    Heal,
    Crash(u64),
    Restart(u64),
}

fn step_strategy(nodes: u64) -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => Just(Step::Tick),
        80 => any::<usize>().prop_map(Step::Deliver),
        3 => any::<usize>().prop_map(Step::Drop),
        10 => (1..=nodes).prop_map(Step::Propose),
        1 => (1..=nodes).prop_map(Step::Isolate),
        2 => Just(Step::Heal),
        1 => (1..=nodes).prop_map(Step::Crash),
        2 => (1..=nodes).prop_map(Step::Restart),
    ]
}

struct Checker {
    /// The term of every entry any node has committed, by index.
    committed: BTreeMap<LogIndex, Term>,
    commit: BTreeMap<NodeId, LogIndex>,
}

impl Checker {
    fn check(&mut self, cluster: &Cluster) {
        let nodes: Vec<_> = cluster.nodes.iter().filter(|(_, n)| n.up).collect();
        for (id, node) in &nodes {
            let raft = &node.raft;
            let commit = raft.commit_index();
            let previous = self.commit.insert(**id, commit).unwrap_or_default();
            assert!(
                commit >= previous,
                "{id} commit went back from {previous} to {commit}"
            );
            let mut index = raft.snapshot_meta().last_index.next();
            while index <= commit {
                let term = raft.log_term(index).expect("committed entry held");
                let recorded = *self.committed.entry(index).or_insert(term);
                assert_eq!(term, recorded, "{id} changed committed entry {index}");
                index = index.next();
            }
        }
        for (a, node_a) in &nodes {
            for (b, node_b) in &nodes {
                if a >= b {
                    continue;
                }
                log_matching(&node_a.raft, &node_b.raft);
            }
        }
    }
}

/// If two logs hold an entry with the same index and term, they are identical up to it.
fn log_matching(a: &chorus_raft::Raft, b: &chorus_raft::Raft) {
    let low = a
        .snapshot_meta()
        .last_index
        .max(b.snapshot_meta().last_index)
        .next();
    let high = a.last_index().min(b.last_index());
    let mut index = high;
    while index >= low {
        if a.log_term(index) == b.log_term(index) {
            let mut at = low;
            while at <= index {
                let ea = &a.entries(at, at.next())[0];
                let eb = &b.entries(at, at.next())[0];
                assert_eq!(ea, eb, "logs of {} and {} differ at {at}", a.id(), b.id());
                at = at.next();
            }
            return;
        }
        index = index.prev();
    }
}

/// Short timeouts, so elections happen often within a few hundred steps.
fn short_timeouts(config: &mut chorus_raft::Config) {
    config.election_timeout_ticks = 3;
}

fn run(nodes: u64, steps: Vec<Step>) {
    run_with(nodes, steps, short_timeouts);
}

fn run_with(nodes: u64, steps: Vec<Step>, configure: fn(&mut chorus_raft::Config)) {
    let mut cluster = Cluster::with_config(nodes, configure);
    cluster.elect(1);
    let mut checker = Checker {
        committed: BTreeMap::new(),
        commit: BTreeMap::new(),
    };
    let mut proposals = 0;
    for step in steps {
        match step {
            Step::Tick => {
                let ids: Vec<_> = cluster.nodes.keys().copied().collect();
                for id in ids {
                    if cluster.nodes[&id].up {
                        cluster.raft(id.0).tick();
                    }
                }
                cluster.process_all();
            }
            Step::Deliver(at) | Step::Drop(at) if cluster.queue.is_empty() => {
                let _ = at;
                cluster.process_all();
            }
            Step::Deliver(at) => {
                let at = at % cluster.queue.len();
                let message = cluster.queue.remove(at).expect("in range");
                cluster.queue.push_front(message);
                cluster.deliver(1);
            }
            Step::Drop(at) => {
                let at = at % cluster.queue.len();
                cluster.queue.remove(at);
            }
            Step::Propose(id) => {
                // To the leader if there is one, as a client that follows redirects would.
                let id = cluster.leaders().first().map_or(id, |leader| leader.0);
                proposals += 1;
                let _ = cluster
                    .raft(id)
                    .propose(Bytes::from(format!("p{proposals}")));
                cluster.process_all();
            }
            Step::Isolate(id) => cluster.isolate(id),
            Step::Heal => cluster.heal(),
            Step::Crash(id) => {
                cluster.crash(id);
                checker.commit.remove(&NodeId(id));
            }
            Step::Restart(id) => {
                if !cluster.node(id).up {
                    cluster.restart(id);
                    checker.commit.remove(&NodeId(id));
                }
            }
        }
        checker.check(&cluster);
    }
    if std::env::var_os("PROPERTY_STATS").is_some() {
        eprintln!("committed {} entries", checker.committed.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn logs_match_and_commits_only_grow_3(steps in prop::collection::vec(step_strategy(3), 50..500)) {
        run(3, steps);
    }

    #[test]
    fn logs_match_and_commits_only_grow_5(steps in prop::collection::vec(step_strategy(5), 50..500)) {
        run(5, steps);
    }
}

/// The properties above can fail: with a raft that commits without a majority they do.
#[test]
fn the_properties_catch_a_leader_that_commits_without_a_majority() {
    fn broken(config: &mut chorus_raft::Config) {
        short_timeouts(config);
        config.faults.commit_without_majority = true;
    }
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(step_strategy(3), 50..500), |steps| {
        run_with(3, steps, broken);
        Ok(())
    });
    assert!(
        result.is_err(),
        "no schedule exposed the broken commit rule"
    );
}
