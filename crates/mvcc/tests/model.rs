//! The store against a model that keeps every historic state whole: random puts, deletes,
//! transactions, compactions and snapshot restores, checking every read at every revision still
//! held, the event feed, and the invariants after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, Config, DeleteRangeRequest, Error, Event, EventKind,
    KeyRange, KeyValue, MemoryBackend, PutRequest, RangeRequest, RequestOp, Store, TxnRequest,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KEYS: &[&[u8]] = &[b"a", b"b", b"c", b"d", b"e"];

#[derive(Clone, Debug)]
enum WriteOp {
    Put { key: usize, value: u8, lease: i64 },
    Delete { key: usize, end: Option<usize> },
}

#[derive(Clone, Debug)]
enum Step {
    Write(WriteOp),
    Txn {
        key: usize,
        version: i64,
        then_ops: Vec<WriteOp>,
        else_ops: Vec<WriteOp>,
    },
    Compact {
        back: i64,
    },
    Restore,
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        3 => (0..KEYS.len(), any::<u8>(), 0..3i64)
            .prop_map(|(key, value, lease)| WriteOp::Put { key, value, lease }),
        1 => (0..KEYS.len(), proptest::option::of(0..=KEYS.len()))
            .prop_map(|(key, end)| WriteOp::Delete { key, end }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => write_op().prop_map(Step::Write),
        2 => (0..KEYS.len(), 0..3i64, proptest::collection::vec(write_op(), 0..4),
              proptest::collection::vec(write_op(), 0..3))
            .prop_map(|(key, version, then_ops, else_ops)| Step::Txn { key, version, then_ops, else_ops }),
        1 => (0..6i64).prop_map(|back| Step::Compact { back }),
        1 => Just(Step::Restore),
    ]
}

/// The key range a delete covers: one key, or `[key, end)` (`end == KEYS.len()`: to the end).
fn delete_range(key: usize, end: Option<usize>) -> KeyRange {
    match end {
        None => KeyRange::Key(KEYS[key].to_vec()),
        Some(end) if end == KEYS.len() => KeyRange::Range {
            start: KEYS[key].to_vec(),
            end: None,
        },
        Some(end) => KeyRange::Range {
            start: KEYS[key].to_vec(),
            end: Some(KEYS[end].to_vec()),
        },
    }
}

fn request_op(op: &WriteOp) -> RequestOp {
    match op {
        WriteOp::Put { key, value, lease } => RequestOp::Put(PutRequest {
            lease: *lease,
            ..PutRequest::new(KEYS[*key], vec![*value])
        }),
        WriteOp::Delete { key, end } => {
            let request = RangeRequest::range(&delete_range(*key, *end));
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: request.key,
                range_end: request.range_end,
                prev_kv: false,
            })
        }
    }
}

/// Every state the store was ever in, whole.
struct Model {
    /// `states[r]` is the store at revision `r`; `states[0]` is unused.
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    /// `events[r]`: the events revision `r` made, in order.
    events: Vec<Vec<Event>>,
    compact_revision: Option<i64>,
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            events: vec![vec![], vec![]],
            compact_revision: None,
        }
    }

    fn current_revision(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn current(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.states[self.states.len() - 1]
    }

    /// Applies write ops as one transaction; makes a revision only if something changed.
    fn apply(&mut self, ops: &[WriteOp]) {
        let revision = self.current_revision() + 1;
        let mut state = self.current().clone();
        let mut events = Vec::new();
        for op in ops {
            match op {
                WriteOp::Put { key, value, lease } => {
                    let key = KEYS[*key].to_vec();
                    let previous = state.get(&key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: previous.as_ref().map_or(1, |p| p.version + 1),
                        value: vec![*value],
                        lease: *lease,
                    };
                    state.insert(key, kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev_kv: previous,
                    });
                }
                WriteOp::Delete { key, end } => {
                    let range = delete_range(*key, *end);
                    let doomed: Vec<Vec<u8>> = state
                        .keys()
                        .filter(|k| range.contains(k))
                        .cloned()
                        .collect();
                    for key in doomed {
                        let previous = state.remove(&key);
                        let kv = KeyValue {
                            key,
                            mod_revision: revision,
                            ..KeyValue::default()
                        };
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv,
                            prev_kv: previous,
                        });
                    }
                }
            }
        }
        if !events.is_empty() {
            self.states.push(state);
            self.events.push(events);
        }
    }

    /// etcd's duplicate-key rule for one branch of write ops.
    fn has_duplicate(ops: &[WriteOp]) -> bool {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for op in ops {
            match op {
                WriteOp::Put { key, .. } => puts.push(*key),
                WriteOp::Delete { key, end } => deletes.push(delete_range(*key, *end)),
            }
        }
        let mut sorted = puts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() != puts.len()
            || puts
                .iter()
                .any(|key| deletes.iter().any(|range| range.contains(KEYS[*key])))
    }

    /// The events from `start` on, as a watch would get them after compaction at the model's
    /// compact revision: at exactly the compact revision, no deletes and no previous versions.
    fn events_since(&self, start: i64) -> Vec<Event> {
        let mut out = Vec::new();
        for revision in start.max(1)..=self.current_revision() {
            for event in &self.events[revision as usize] {
                if Some(revision) == self.compact_revision {
                    if event.kind == EventKind::Delete {
                        continue;
                    }
                    out.push(Event {
                        prev_kv: None,
                        ..event.clone()
                    });
                } else {
                    out.push(event.clone());
                }
            }
        }
        out
    }
}

fn check_against_model(store: &Store<MemoryBackend>, model: &Model) {
    store.check_invariants();
    assert_eq!(store.current_revision(), model.current_revision());
    assert_eq!(store.compact_revision(), model.compact_revision);
    let lowest = model.compact_revision.unwrap_or(1).max(1);
    for revision in lowest..=model.current_revision() {
        let request = RangeRequest {
            revision,
            ..RangeRequest::range(&KeyRange::all())
        };
        let response = store.range(&request).unwrap();
        let expected: Vec<KeyValue> = model.states[revision as usize].values().cloned().collect();
        assert_eq!(response.kvs, expected, "range at {revision}");
        assert_eq!(response.count, expected.len() as i64);
        for key in KEYS {
            let request = RangeRequest {
                revision,
                ..RangeRequest::key(key.to_vec())
            };
            let got = store.range(&request).unwrap().kvs.into_iter().next();
            assert_eq!(
                got.as_ref(),
                model.states[revision as usize].get(*key),
                "get at {revision}"
            );
        }
    }
    if let Some(compact_revision) = model.compact_revision {
        if compact_revision > 1 {
            let request = RangeRequest {
                revision: compact_revision - 1,
                ..RangeRequest::key("a")
            };
            assert_eq!(
                store.range(&request).unwrap_err(),
                Error::Compacted { compact_revision }
            );
        }
    }
    let request = RangeRequest {
        revision: model.current_revision() + 1,
        ..RangeRequest::key("a")
    };
    assert!(matches!(
        store.range(&request),
        Err(Error::FutureRevision { .. })
    ));
    let start = model.compact_revision.unwrap_or(1);
    let events = store
        .events_since(start, &KeyRange::all(), usize::MAX)
        .unwrap();
    assert_eq!(events, model.events_since(start), "events since {start}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_model_of_every_historic_state(steps in proptest::collection::vec(step(), 1..60)) {
        let mut store = Store::open(MemoryBackend::new(), Config::default()).unwrap();
        let mut model = Model::new();
        let mut applied_index = 0;
        for step in &steps {
            applied_index += 1;
            match step {
                Step::Write(op) => {
                    let result = match request_op(op) {
                        RequestOp::Put(put) => store.put(applied_index, put).map(|a| a.events),
                        RequestOp::DeleteRange(delete) => store.delete_range(applied_index, delete).map(|a| a.events),
                        _ => unreachable!(),
                    };
                    let before = model.current_revision();
                    model.apply(std::slice::from_ref(op));
                    let events = result.unwrap();
                    let made = model.current_revision() > before;
                    prop_assert_eq!(&events, if made { &model.events[model.events.len() - 1] } else { &Vec::new() });
                }
                Step::Txn { key, version, then_ops, else_ops } => {
                    let compare = Compare::new(KEYS[*key], CompareResult::Equal, CompareTarget::Version(*version));
                    let request = TxnRequest {
                        compare: vec![compare],
                        success: then_ops.iter().map(request_op).collect(),
                        failure: else_ops.iter().map(request_op).collect(),
                    };
                    let result = store.txn(applied_index, request);
                    if Model::has_duplicate(then_ops) || Model::has_duplicate(else_ops) {
                        prop_assert_eq!(result.unwrap_err(), Error::DuplicateKey);
                    } else {
                        let current_version = model.current().get(KEYS[*key]).map_or(0, |kv| kv.version);
                        let succeeded = current_version == *version;
                        let applied = result.unwrap();
                        prop_assert_eq!(applied.response.succeeded, succeeded);
                        let before = model.current_revision();
                        model.apply(if succeeded { then_ops } else { else_ops });
                        let made = model.current_revision() > before;
                        prop_assert_eq!(applied.response.revision, model.current_revision());
                        prop_assert_eq!(&applied.events, if made { &model.events[model.events.len() - 1] } else { &Vec::new() });
                    }
                }
                Step::Compact { back } => {
                    let revision = model.current_revision() - back;
                    let result = store.compact(applied_index, revision);
                    if revision <= model.compact_revision.unwrap_or(-1) {
                        prop_assert!(matches!(result, Err(Error::Compacted { .. })), "{result:?}");
                    } else {
                        prop_assert_eq!(result, Ok(model.current_revision()));
                        model.compact_revision = Some(revision);
                    }
                }
                Step::Restore => {
                    let bytes = store.snapshot_bytes().unwrap();
                    let mut restored = Store::open(MemoryBackend::new(), Config::default()).unwrap();
                    restored.restore_snapshot(&bytes).unwrap();
                    prop_assert_eq!(restored.snapshot_bytes().unwrap(), bytes);
                    store = restored;
                    store.record_applied_index(applied_index).unwrap();
                }
            }
            prop_assert_eq!(store.applied_index(), applied_index);
            check_against_model(&store, &model);
        }
        let lowest = model.compact_revision.unwrap_or(1);
        for start in lowest..=model.current_revision() + 1 {
            let events = store.events_since(start, &KeyRange::all(), usize::MAX).unwrap();
            prop_assert_eq!(events, model.events_since(start), "events since {}", start);
            let in_range = KeyRange::Range { start: b"b".to_vec(), end: Some(b"d".to_vec()) };
            let filtered: Vec<Event> = model.events_since(start).into_iter().filter(|e| in_range.contains(&e.kv.key)).collect();
            prop_assert_eq!(store.events_since(start, &in_range, usize::MAX).unwrap(), filtered);
        }
    }
}
