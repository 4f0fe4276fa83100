//! How fast the core commits: a 3-node cluster wired in memory, one thread, with a driver that
//! does the least a real one must (move messages, count persisted entries, drop applied ones).
//!
//! `cargo bench -p chorus-raft --bench commit` — throughput is reported in proposals per second.
#![allow(clippy::expect_used)]

use bytes::Bytes;
use chorus_raft::{Config, LogIndex, Message, NodeId, Raft, RestoreState, Role};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::VecDeque;
use std::hint::black_box;

struct Wired {
    nodes: Vec<Raft>,
    queue: VecDeque<Message>,
}

impl Wired {
    fn new() -> Wired {
        let voters: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let nodes = voters
            .iter()
            .map(|id| Raft::new(Config::new(*id, voters.clone()), RestoreState::default()))
            .collect();
        let mut wired = Wired {
            nodes,
            queue: VecDeque::new(),
        };
        wired.nodes[0].campaign();
        wired.run();
        assert_eq!(wired.nodes[0].role(), Role::Leader);
        wired
    }

    fn drain(&mut self, index: usize) {
        while self.nodes[index].has_ready() {
            let ready = self.nodes[index].ready();
            self.queue.extend(ready.messages);
            // "Persist" and "apply": a real driver writes and fsyncs here.
            black_box(&ready.entries);
            black_box(&ready.committed_entries);
            self.queue.extend(ready.messages_after_persist);
            self.nodes[index].advance();
        }
    }

    fn run(&mut self) {
        for index in 0..self.nodes.len() {
            self.drain(index);
        }
        while let Some(message) = self.queue.pop_front() {
            let to = (message.to.0 - 1) as usize;
            self.nodes[to].step(message);
            self.drain(to);
        }
    }

    fn commit(&self) -> LogIndex {
        self.nodes[0].commit_index()
    }
}

fn commit(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; 64]);
    let mut group = c.benchmark_group("commit_3_nodes");

    let batch = 1000u64;
    group.throughput(Throughput::Elements(batch));
    group.bench_function("batched_1000", |b| {
        b.iter_batched_ref(
            Wired::new,
            |wired| {
                let target = LogIndex(wired.commit().0 + batch);
                let proposals = (0..batch).map(|_| payload.clone());
                wired.nodes[0].propose_batch(proposals).expect("leader");
                wired.run();
                assert!(wired.commit() >= target);
            },
            BatchSize::LargeInput,
        )
    });

    group.throughput(Throughput::Elements(1));
    let mut wired = Wired::new();
    group.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            let index = wired.nodes[0].propose(payload.clone()).expect("leader");
            wired.run();
            assert!(wired.commit() >= index);
        })
    });
    group.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
