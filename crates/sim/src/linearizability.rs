//! Checks that a client [`History`] is linearizable against a key-value map (docs/history.md).
//!
//! The model is one register per key, initially absent. A map is linearizable iff each of its
//! keys is (linearizability is compositional: Herlihy & Wing 1990, §3.2), so the history is split
//! by key and each key is searched on its own.
//!
//! The search is Wing & Gong's, with Lowe's memo of visited configurations, as in Porcupine: the
//! call and return events of a key's operations sit in a time-ordered doubly-linked list; any
//! operation called before the first pending return may be linearized next; linearizing one
//! unlinks its events, backtracking links them back. A configuration is the set of operations
//! linearized and the register's value. Candidates are tried by return time, so operations are
//! linearized just in time, and a read that fits the register is linearized at once, without
//! branching: nothing pending must precede it and it changes nothing, so any linearization from
//! there can be rearranged to put it first. Like the rules below, this loses no linearization:
//! whenever one exists, one exists that obeys them all.
//!
//! Operations whose outcome the client never learned ([`Outcome::Unknown`]) may or may not have
//! taken effect. Their return time is +infinity, so they stay candidates forever, and the search
//! succeeds once every operation with a known outcome is linearized (an unknown operation placed
//! after all of those is the same as one never applied). Taking a shortest linearization, with
//! its unknown operations as late as possible, gives the rules that keep them from multiplying
//! the search:
//! - an unknown operation is never linearized where it would not change the value;
//! - it is linearized only if the next move observes it: a known operation whose outcome needs
//!   its value, or an unknown cas it enables; so an unknown put or delete is tried only when a
//!   candidate reads or expects the value it writes;
//! - of interchangeable unknown operations (same effect), the earliest called is used first;
//! - a configuration is skipped if one with the same known operations linearized, the same value
//!   and a subset of the unknown operations linearized was visited: that one can do all this
//!   one can.
//!
//! The search is bounded by a step budget; running out gives [`Verdict::Inconclusive`]. A
//! linearizable history of a few hundred operations per key is decided in about a millisecond;
//! proving a violation means ruling out every order, which can take far longer.
//!
//! What it is not: a checker for transactions, ranges or watches; and it trusts the history's
//! times (a client's clock skew would show up as a violation).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::history::{Call, History, Nanos, Operation, Outcome};

/// Search steps per key that [`check`] allows before answering [`Verdict::Inconclusive`]. A step
/// takes a few hundred nanoseconds, so this bounds a key's search to a few seconds; the memo of
/// visited configurations grows by at most one entry a step.
pub const DEFAULT_SEARCH_STEPS_MAX: u64 = 5_000_000;

/// How many operations of the longest linearizable prefix a [`Violation`]'s explanation lists;
/// earlier ones are counted but not shown, to keep reports of long runs readable.
const EXPLANATION_PREFIX_OPERATIONS_MAX: usize = 20;

/// What the checker concluded about a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a linearization.
    Linearizable,
    /// Some key's operations have none: the store lost linearizability (or the recorder lied).
    Violation(Violation),
    /// The search for `key` ran out of steps before deciding; no other key has a violation.
    Inconclusive { key: String },
}

/// A key whose operations cannot be linearized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The operations on this key, for the report, by call time.
    pub operations: Vec<Operation>,
    /// Human-readable explanation: the longest linearizable prefix found and the op(s) that
    /// could not be placed.
    pub explanation: String,
}

/// Checks `history` with [`DEFAULT_SEARCH_STEPS_MAX`] steps per key.
///
/// # Panics
/// If an operation breaks [`Operation::check_invariants`]: the recorder has a bug.
pub fn check(history: &History) -> Verdict {
    check_with_budget(history, DEFAULT_SEARCH_STEPS_MAX)
}

/// Checks `history`, allowing each key's search `search_steps_max` steps (one step tries one
/// allowed move or undoes one). A violation on any key wins over a key left inconclusive, since
/// it is certain; keys are checked in key order, so the verdict does not depend on hashing.
///
/// # Panics
/// If an operation breaks [`Operation::check_invariants`]: the recorder has a bug.
pub fn check_with_budget(history: &History, search_steps_max: u64) -> Verdict {
    let mut operations_by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for (index, operation) in history.operations.iter().enumerate() {
        if let Err(reason) = operation.check_invariants() {
            panic!("history operation {index} is malformed: {reason}: {operation:?}");
        }
        operations_by_key
            .entry(operation.call.key())
            .or_default()
            .push(operation);
    }
    let mut inconclusive_key = None;
    for (key, mut operations) in operations_by_key {
        operations.sort_by_key(|operation| operation.call_time);
        match KeySearch::new(&operations).run(search_steps_max) {
            SearchEnd::Linearized => {}
            SearchEnd::Exhausted => {
                inconclusive_key.get_or_insert(key);
            }
            SearchEnd::Impossible(deepest) => {
                return Verdict::Violation(Violation {
                    key: key.to_owned(),
                    explanation: explain(&operations, &KeySearch::new(&operations), &deepest),
                    operations: operations.into_iter().cloned().collect(),
                });
            }
        }
    }
    match inconclusive_key {
        None => Verdict::Linearizable,
        Some(key) => Verdict::Inconclusive {
            key: key.to_owned(),
        },
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "linearizability violation on key {:?}", self.key)?;
        writeln!(formatter, "{}", self.explanation)?;
        writeln!(formatter, "operations on key {:?}, by call time:", self.key)?;
        for (index, operation) in self.operations.iter().enumerate() {
            writeln!(
                formatter,
                "  #{} {}",
                index + 1,
                describe_operation(operation)
            )?;
        }
        Ok(())
    }
}

/// A register value, interned: an index into [`KeySearch::values`]; 0 is [`ABSENT`].
type ValueId = u32;

/// The register of a key that does not exist.
const ABSENT: ValueId = 0;

/// What one operation does to a register, and what its outcome requires of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    /// A put (of a value) or a delete (of [`ABSENT`]): sets the register whatever it held.
    Write(ValueId),
    /// A get that answered this value: the register must hold it.
    Read(ValueId),
    /// A cas; `swapped` is what it answered, `None` when the client never learned.
    Cas {
        expect: ValueId,
        value: ValueId,
        swapped: Option<bool>,
    },
}

impl Step {
    /// Whether the step never changes the register: a get, or a cas that did not swap.
    fn is_read(self) -> bool {
        matches!(
            self,
            Step::Read(_)
                | Step::Cas {
                    swapped: Some(false),
                    ..
                }
        )
    }

    /// The register after this step from `state`, or `None` when the outcome contradicts `state`.
    fn apply(self, state: ValueId) -> Option<ValueId> {
        match self {
            Step::Write(value) => Some(value),
            Step::Read(value) => (state == value).then_some(state),
            Step::Cas {
                expect,
                value,
                swapped: None,
            } => Some(if state == expect { value } else { state }),
            Step::Cas {
                expect,
                value,
                swapped: Some(swapped),
            } => (swapped == (state == expect)).then_some(if swapped { value } else { state }),
        }
    }
}

/// Where an operation's "linearized" flag lives: operations with a known outcome and unknown ones
/// have separate sets, because the memo compares the unknown ones by inclusion.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Known(usize),
    Unknown(usize),
}

/// An operation as the search sees it.
#[derive(Clone, Debug)]
struct SearchOperation {
    /// Index into the key's operations sorted by call time (the report's numbering minus one).
    source: usize,
    call_time: Nanos,
    /// `None` for an unknown outcome: +infinity.
    return_time: Option<Nanos>,
    step: Step,
    slot: Slot,
    /// For an unknown operation, the unknown slot of the previous unknown operation (by call
    /// time) with the same step. Interchangeable operations are linearized earliest first: a
    /// linearization using this one while its twin is unused can use the twin instead.
    twin_before: Option<usize>,
}

/// A fixed-size set of small integers, with a fingerprint kept up to date as it changes so the
/// memo can look a set up without hashing or copying it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bitset {
    words: Box<[u64]>,
    /// XOR of [`mix`] of every member (Zobrist hashing).
    fingerprint: u64,
}

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)].into_boxed_slice(),
            fingerprint: 0,
        }
    }

    fn contains(&self, index: usize) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    fn insert(&mut self, index: usize) {
        assert!(!self.contains(index), "operation {index} linearized twice");
        self.words[index / 64] |= 1 << (index % 64);
        self.fingerprint ^= mix(index as u64);
    }

    fn remove(&mut self, index: usize) {
        assert!(
            self.contains(index),
            "operation {index} undone but not linearized"
        );
        self.words[index / 64] &= !(1 << (index % 64));
        self.fingerprint ^= mix(index as u64);
    }

    fn is_subset_of(&self, other: &Bitset) -> bool {
        self.words
            .iter()
            .zip(other.words.iter())
            .all(|(mine, theirs)| mine & !theirs == 0)
    }
}

/// SplitMix64's finalizer: spreads small integers over 64 bits, deterministically.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes the memo's keys, which are already fingerprints, by passing them through.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The visited configurations with one (known operations linearized, value) pair.
#[derive(Debug)]
struct MemoEntry {
    known: Bitset,
    state: ValueId,
    /// The sets of unknown operations linearized with it, none a subset of another.
    unknown_sets: Vec<Bitset>,
}

/// One call or return in an [`EventList`].
#[derive(Clone, Copy, Debug)]
struct Event {
    time: Nanos,
    operation: usize,
    is_return: bool,
}

/// Time-ordered call and return events, as a doubly-linked list from which an operation's events
/// are unlinked while it is linearized (dancing links: relinking in the reverse order of
/// unlinking restores the list exactly).
///
/// # Invariants
/// Node 0 is the head sentinel; nodes `1..` are the events by (time, calls before returns,
/// operation index): at equal times a call and a return are concurrent, so the call comes first
/// and the two operations may be linearized in either order. `call_node[operation]` is 0 for an
/// operation with no events in this list.
struct EventList {
    next: Vec<Option<usize>>,
    previous: Vec<usize>,
    events: Vec<Event>,
    call_node: Vec<usize>,
    return_node: Vec<Option<usize>>,
}

impl EventList {
    fn new(operation_count: usize, mut events: Vec<Event>) -> Self {
        events.sort_unstable_by_key(|event| (event.time, event.is_return, event.operation));
        let node_count = events.len() + 1;
        let mut list = EventList {
            next: (1..=node_count)
                .map(|node| (node < node_count).then_some(node))
                .collect(),
            previous: (0..node_count).map(|node| node.saturating_sub(1)).collect(),
            events: Vec::with_capacity(node_count),
            call_node: vec![0; operation_count],
            return_node: vec![None; operation_count],
        };
        list.events.push(Event {
            time: 0,
            operation: usize::MAX,
            is_return: false,
        });
        for (position, event) in events.into_iter().enumerate() {
            let node = position + 1;
            if event.is_return {
                list.return_node[event.operation] = Some(node);
            } else {
                list.call_node[event.operation] = node;
            }
            list.events.push(event);
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        if let Some(next) = next {
            self.previous[next] = previous;
        }
    }

    fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = Some(node);
        if let Some(next) = next {
            self.previous[next] = node;
        }
    }

    fn lift(&mut self, operation: usize) {
        assert!(
            self.call_node[operation] != 0,
            "operation {operation} is not in this list"
        );
        self.unlink(self.call_node[operation]);
        if let Some(node) = self.return_node[operation] {
            self.unlink(node);
        }
    }

    fn unlift(&mut self, operation: usize) {
        assert!(
            self.call_node[operation] != 0,
            "operation {operation} is not in this list"
        );
        if let Some(node) = self.return_node[operation] {
            self.relink(node);
        }
        self.relink(self.call_node[operation]);
    }

    /// The first event still in the list, then the next, and so on.
    fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        let mut cursor = self.next[0];
        std::iter::from_fn(move || {
            let node = cursor?;
            cursor = self.next[node];
            Some(self.events[node])
        })
    }
}

/// A key's operations with an unknown outcome, indexed for finding the ones worth trying.
#[derive(Debug, Default)]
struct UnknownOperations {
    /// The puts and deletes, by call time.
    writes: Vec<usize>,
    /// The puts and deletes by the value they write (indexed by [`ValueId`]), each by call time.
    writes_by_value: Vec<Vec<usize>>,
    /// The cas operations, by call time.
    cas: Vec<usize>,
}

/// The moves the rules allow from one configuration on the search path.
#[derive(Debug, Default)]
struct Level {
    /// In the order they are tried: by return time, earliest first, so unknown operations
    /// (return +infinity) come last.
    candidates: Vec<usize>,
    /// How many of `candidates` have been tried.
    tried: usize,
}

/// An operation linearized on the current path, and the register before it.
#[derive(Clone, Copy, Debug)]
struct Frame {
    operation: usize,
    state_before: ValueId,
}

/// The deepest point a failed search reached, for the report.
#[derive(Clone, Debug, Default)]
struct Deepest {
    /// The linearized operations, in order (indices into the search's operations).
    path: Vec<usize>,
    known_linearized: usize,
}

enum SearchEnd {
    Linearized,
    Exhausted,
    Impossible(Deepest),
}

/// The search over one key's operations.
struct KeySearch {
    operations: Vec<SearchOperation>,
    /// The values read or written on the key, indexed by [`ValueId`] (`None` for [`ABSENT`]).
    values: Vec<Option<String>>,
    /// The calls and returns of the operations with a known outcome not yet linearized.
    known_events: EventList,
    unknowns: UnknownOperations,
    state: ValueId,
    known: Bitset,
    unknown: Bitset,
    known_count: usize,
    known_linearized: usize,
    path: Vec<Frame>,
    /// Visited configurations, by the fingerprint of their known set and value.
    visited: HashMap<u64, Vec<MemoEntry>, BuildHasherDefault<FingerprintHasher>>,
    deepest: Deepest,
    /// `levels[depth]` for each configuration on the path (`depth` up to `path.len()`); deeper
    /// entries are spare allocations.
    levels: Vec<Level>,
    /// Scratch space for [`KeySearch::enter_configuration`]: the candidates that could observe
    /// an unknown operation linearized in the configuration being entered.
    observers: Vec<usize>,
}

impl KeySearch {
    /// Prepares the search over one key's operations, sorted by call time. Failed operations and
    /// gets with an unknown outcome are dropped: neither can have changed the register.
    fn new<'a>(operations: &[&'a Operation]) -> Self {
        let mut values: Vec<Option<String>> = vec![None];
        let mut value_ids: HashMap<&'a str, ValueId> = HashMap::new();
        let mut intern = |value: Option<&'a str>| -> ValueId {
            let Some(value) = value else { return ABSENT };
            *value_ids.entry(value).or_insert_with(|| {
                let Ok(id) = ValueId::try_from(values.len()) else {
                    panic!("more distinct values on one key than a ValueId can number");
                };
                values.push(Some(value.to_owned()));
                id
            })
        };
        let mut search_operations = Vec::with_capacity(operations.len());
        let (mut known_count, mut unknown_count) = (0, 0);
        let mut last_unknown_with_step: HashMap<Step, usize> = HashMap::new();
        for (source, operation) in operations.iter().enumerate() {
            let step = match (&operation.call, &operation.outcome) {
                (_, Outcome::Failed) | (Call::Get { .. }, Outcome::Unknown) => continue,
                (Call::Put { value, .. }, _) => Step::Write(intern(Some(value))),
                (Call::Delete { .. }, _) => Step::Write(ABSENT),
                (Call::Get { .. }, Outcome::Read(value)) => Step::Read(intern(value.as_deref())),
                (Call::Get { .. }, _) => unreachable!("check_invariants allows a get only Read"),
                (Call::Cas { expect, value, .. }, outcome) => Step::Cas {
                    expect: intern(expect.as_deref()),
                    value: intern(Some(value)),
                    swapped: match outcome {
                        Outcome::Cas(swapped) => Some(*swapped),
                        _ => None,
                    },
                },
            };
            let slot = if operation.outcome == Outcome::Unknown {
                unknown_count += 1;
                Slot::Unknown(unknown_count - 1)
            } else {
                known_count += 1;
                Slot::Known(known_count - 1)
            };
            let twin_before = match slot {
                Slot::Known(_) => None,
                Slot::Unknown(index) => last_unknown_with_step.insert(step, index),
            };
            search_operations.push(SearchOperation {
                source,
                call_time: operation.call_time,
                return_time: operation.return_time,
                step,
                slot,
                twin_before,
            });
        }
        let mut known_events = Vec::with_capacity(2 * known_count);
        let mut unknowns = UnknownOperations {
            writes_by_value: vec![Vec::new(); values.len()],
            ..UnknownOperations::default()
        };
        for (operation, search_operation) in search_operations.iter().enumerate() {
            let SearchOperation {
                call_time,
                return_time,
                step,
                ..
            } = *search_operation;
            match (return_time, step) {
                (Some(return_time), _) => {
                    known_events.push(Event {
                        time: call_time,
                        operation,
                        is_return: false,
                    });
                    known_events.push(Event {
                        time: return_time,
                        operation,
                        is_return: true,
                    });
                }
                (None, Step::Write(value)) => {
                    unknowns.writes_by_value[value as usize].push(operation);
                    unknowns.writes.push(operation);
                }
                (None, _) => unknowns.cas.push(operation),
            }
        }
        KeySearch {
            known_events: EventList::new(search_operations.len(), known_events),
            unknowns,
            operations: search_operations,
            values,
            state: ABSENT,
            known: Bitset::new(known_count),
            unknown: Bitset::new(unknown_count),
            known_count,
            known_linearized: 0,
            path: Vec::new(),
            visited: HashMap::default(),
            deepest: Deepest::default(),
            levels: Vec::new(),
            observers: Vec::new(),
        }
    }

    /// Searches depth first for a linearization of every operation with a known outcome.
    ///
    /// A step tries one allowed move (a memo lookup) or undoes one; the rules that decide which
    /// moves are allowed are applied when a configuration is entered.
    fn run(mut self, search_steps_max: u64) -> SearchEnd {
        let mut steps: u64 = 0;
        self.enter_configuration();
        loop {
            if self.known_linearized == self.known_count {
                return SearchEnd::Linearized;
            }
            if steps >= search_steps_max {
                return SearchEnd::Exhausted;
            }
            steps += 1;
            let level = &mut self.levels[self.path.len()];
            if let Some(&operation) = level.candidates.get(level.tried) {
                level.tried += 1;
                if self.maybe_linearize(operation) {
                    self.enter_configuration();
                }
                continue;
            }
            // Every allowed move has been tried here, so undo the last one.
            let Some(frame) = self.path.pop() else {
                return SearchEnd::Impossible(self.deepest);
            };
            self.undo(frame);
        }
    }

    /// Lists the moves allowed from the configuration just reached, in the order to try them.
    ///
    /// The candidates are the operations called before the first pending return. Known ones go
    /// by return time, earliest first: the operation returning first must be linearized before
    /// anything called after its return, so trying it first linearizes operations just in time
    /// (Lowe, "Testing for linearizability", 2017) and a linearizable history is usually decided
    /// without backtracking far. Unknown ones (return +infinity) come last, by call time.
    ///
    /// A read (a get, or a cas that did not swap) that fits the register is the only move
    /// allowed, unless the last move was an unknown operation: any linearization from here can
    /// move such a read to the front, since nothing pending must precede it (it is a candidate)
    /// and it changes nothing. This keeps concurrent reads from multiplying the configurations.
    fn enter_configuration(&mut self) {
        let depth = self.path.len();
        if self.levels.len() <= depth {
            self.levels.resize_with(depth + 1, Level::default);
        }
        let mut candidates = std::mem::take(&mut self.levels[depth].candidates);
        candidates.clear();
        let mut first_return_time = None;
        for event in self.known_events.iter() {
            if event.is_return {
                first_return_time = Some(event.time);
                break;
            }
            candidates.push(event.operation);
        }
        let after_unknown = self.after_unknown();
        let fitting_read = candidates.iter().copied().find(|&candidate| {
            let step = self.operations[candidate].step;
            step.is_read() && step.apply(self.state).is_some()
        });
        match (after_unknown, fitting_read) {
            (None, Some(read)) => {
                candidates.clear();
                candidates.push(read);
            }
            _ => {
                candidates.sort_unstable_by_key(|&candidate| {
                    (self.operations[candidate].return_time, candidate)
                });
                self.observers.clear();
                self.observers
                    .extend(candidates.iter().copied().filter(|&candidate| {
                        self.operations[candidate].step.apply(self.state).is_none()
                    }));
                if let Some(first_return_time) = first_return_time {
                    let unknowns_start = candidates.len();
                    self.push_unknown_candidates(&mut candidates, first_return_time, after_unknown);
                    // By call time; the known candidates before them are distinct operations.
                    candidates[unknowns_start..].sort_unstable();
                    candidates.dedup();
                }
                candidates.retain(|&candidate| self.is_allowed(candidate, after_unknown));
            }
        }
        self.levels[depth] = Level {
            candidates,
            tried: 0,
        };
    }

    /// Appends the unknown operations called by `first_return_time` and not yet linearized that
    /// [`KeySearch::is_allowed`] could allow, and adds the unknown cas operations among them to
    /// the observers. Right after an unknown operation only a cas can be allowed (a put or delete
    /// would overwrite it). Otherwise an unknown put or delete is only worth trying if it writes
    /// the value some observer needs (a get's answer, a cas's expected value), and then only the
    /// earliest unused one writing it (the twin rule).
    fn push_unknown_candidates(
        &mut self,
        candidates: &mut Vec<usize>,
        first_return_time: Nanos,
        after_unknown: Option<ValueId>,
    ) {
        let (operations, used) = (&self.operations, &self.unknown);
        let is_unused = |operation: usize| match operations[operation].slot {
            Slot::Unknown(index) => !used.contains(index),
            Slot::Known(_) => false,
        };
        let is_callable = |operation: usize| operations[operation].call_time <= first_return_time;
        for &cas in self
            .unknowns
            .cas
            .iter()
            .take_while(|&&cas| is_callable(cas))
        {
            if is_unused(cas) {
                candidates.push(cas);
                self.observers.push(cas);
            }
        }
        if after_unknown.is_some() {
            return;
        }
        for &observer in &self.observers {
            match operations[observer].step {
                Step::Read(value)
                | Step::Cas {
                    expect: value,
                    swapped: Some(true) | None,
                    ..
                } => {
                    let writes = &self.unknowns.writes_by_value[value as usize];
                    let first_unused = writes.iter().copied().find(|&write| is_unused(write));
                    candidates.extend(first_unused.filter(|&write| is_callable(write)));
                }
                // A cas that did not swap but should have: any other value would do.
                Step::Cas {
                    swapped: Some(false),
                    ..
                }
                | Step::Write(_) => candidates.extend(
                    self.unknowns
                        .writes
                        .iter()
                        .copied()
                        .take_while(|&write| is_callable(write))
                        .filter(|&write| is_unused(write)),
                ),
            }
        }
    }

    /// Whether the rules allow linearizing `candidate` next. `after_unknown` is the register
    /// before the last move when that move was an unknown operation.
    fn is_allowed(&self, candidate: usize, after_unknown: Option<ValueId>) -> bool {
        let SearchOperation {
            step,
            slot,
            twin_before,
            ..
        } = self.operations[candidate];
        let Some(state_after) = step.apply(self.state) else {
            return false;
        };
        let twin_unused = twin_before.is_some_and(|twin| !self.unknown.contains(twin));
        match (slot, after_unknown) {
            (Slot::Known(_), None) => true,
            // Right after an unknown operation only a move observing it is allowed; a known
            // operation that fit before it either overwrites its effect or commutes with it.
            (Slot::Known(_), Some(before)) => step.apply(before).is_none(),
            (Slot::Unknown(_), _) if state_after == self.state || twin_unused => false,
            (Slot::Unknown(_), Some(before)) => Some(state_after) != step.apply(before),
            (Slot::Unknown(_), None) => self.is_observable(candidate, state_after),
        }
    }

    /// The register before the last move, if that move was an operation with unknown outcome.
    fn after_unknown(&self) -> Option<ValueId> {
        self.path
            .last()
            .filter(|frame| matches!(self.operations[frame.operation].slot, Slot::Unknown(_)))
            .map(|frame| frame.state_before)
    }

    /// Linearizes the allowed candidate `operation` next unless the configuration it leads to
    /// was already visited (or one that can do all it can was); says whether it did.
    ///
    /// Configurations right after an unknown operation depend on how they were reached (only
    /// moves observing it are allowed), so they are neither recorded in the memo nor pruned by
    /// it; the known operation that must follow is.
    fn maybe_linearize(&mut self, operation: usize) -> bool {
        let SearchOperation { step, slot, .. } = self.operations[operation];
        let Some(state_after) = step.apply(self.state) else {
            panic!("operation {operation} was allowed but does not fit the register");
        };
        match slot {
            Slot::Known(index) => {
                self.known.insert(index);
                if !self.maybe_remember(state_after) {
                    self.known.remove(index);
                    return false;
                }
                self.known_linearized += 1;
            }
            Slot::Unknown(index) => self.unknown.insert(index),
        }
        self.path.push(Frame {
            operation,
            state_before: self.state,
        });
        self.state = state_after;
        if let Slot::Known(_) = slot {
            self.known_events.lift(operation);
        }
        if self.known_linearized > self.deepest.known_linearized {
            self.deepest = Deepest {
                path: self.path.iter().map(|frame| frame.operation).collect(),
                known_linearized: self.known_linearized,
            };
        }
        true
    }

    fn undo(&mut self, frame: Frame) {
        self.state = frame.state_before;
        match self.operations[frame.operation].slot {
            Slot::Known(index) => {
                self.known_events.unlift(frame.operation);
                self.known.remove(index);
                self.known_linearized -= 1;
            }
            Slot::Unknown(index) => self.unknown.remove(index),
        }
    }

    /// Whether the configuration (current linearized sets, `state`) is new: no visited
    /// configuration with the same known set and value linearized a subset of its unknown
    /// operations (that one can do all this one can). Records it as visited if asked to.
    fn maybe_remember(&mut self, state: ValueId) -> bool {
        let fingerprint = self.known.fingerprint ^ mix(u64::from(state) ^ 0x5eed_0000_0000_0000);
        let entries = self.visited.entry(fingerprint).or_default();
        let Some(entry) = entries
            .iter_mut()
            .find(|entry| entry.state == state && entry.known == self.known)
        else {
            entries.push(MemoEntry {
                known: self.known.clone(),
                state,
                unknown_sets: vec![self.unknown.clone()],
            });
            return true;
        };
        if entry
            .unknown_sets
            .iter()
            .any(|visited| visited.is_subset_of(&self.unknown))
        {
            return false;
        }
        entry
            .unknown_sets
            .retain(|visited| !self.unknown.is_subset_of(visited));
        entry.unknown_sets.push(self.unknown.clone());
        true
    }

    /// Whether linearizing the unknown operation `unknown` now (taking the register from
    /// `self.state` to `state_after`) can be followed by a candidate that observes it: one whose
    /// outcome needs it, or that neither commutes with it nor overwrites it. When none can, any
    /// linearization with it here can drop it or move it later, so it need not be tried here.
    ///
    /// Only candidates in this configuration's observers are examined: a known candidate whose
    /// outcome already fits the register either overwrites the unknown operation's effect or
    /// commutes with it, and an unknown put or delete overwrites it.
    fn is_observable(&self, unknown: usize, state_after: ValueId) -> bool {
        let state_before = self.state;
        let unknown_step = self.operations[unknown].step;
        self.observers
            .iter()
            .filter(|&&candidate| candidate != unknown)
            .any(|&candidate| {
                let SearchOperation { step, slot, .. } = self.operations[candidate];
                let Some(after_both) = step.apply(state_after) else {
                    return false;
                };
                match (slot, step.apply(state_before)) {
                    // The candidate's outcome needs the unknown operation's effect.
                    (Slot::Known(_), None) => true,
                    // The two must not commute, and the candidate must not overwrite the effect.
                    (Slot::Known(_), Some(candidate_only)) => {
                        let swapped = unknown_step.apply(candidate_only);
                        after_both != candidate_only && Some(after_both) != swapped
                    }
                    // An unknown follower must change the value and not overwrite the effect.
                    (Slot::Unknown(_), candidate_only) => {
                        after_both != state_after && Some(after_both) != candidate_only
                    }
                }
            })
    }

    fn describe_value(&self, value: ValueId) -> String {
        match &self.values[value as usize] {
            None => "absent".to_owned(),
            Some(value) => format!("{value:?}"),
        }
    }
}

/// Explains why a key has no linearization: the deepest prefix the search linearized and why
/// none of the operations that could come next fits.
fn explain(operations: &[&Operation], search: &KeySearch, deepest: &Deepest) -> String {
    let describe = |operation: usize| {
        let source = search.operations[operation].source;
        format!("#{} {}", source + 1, describe_operation(operations[source]))
    };
    let mut lines = vec![format!(
        "no linearization exists: at best {} of the {} operations with a known outcome could be \
         linearized.",
        deepest.known_linearized, search.known_count
    )];
    let mut state = ABSENT;
    let mut prefix = Vec::with_capacity(deepest.path.len());
    for &operation in &deepest.path {
        let search_operation = &search.operations[operation];
        state = search_operation.step.apply(state).unwrap_or(state);
        let assumed = match search_operation.slot {
            Slot::Known(_) => "",
            Slot::Unknown(_) => " (outcome unknown, assumed applied here)",
        };
        prefix.push(format!(
            "  {}{assumed}, leaving {}",
            describe(operation),
            search.describe_value(state)
        ));
    }
    lines.push(format!(
        "longest linearizable prefix found ({} operations):",
        prefix.len()
    ));
    let elided = prefix
        .len()
        .saturating_sub(EXPLANATION_PREFIX_OPERATIONS_MAX);
    if elided > 0 {
        lines.push(format!("  ... {elided} earlier operations not shown"));
    }
    lines.extend(prefix.into_iter().skip(elided));
    lines.push(format!(
        "then the key holds {}, and every way on from there fails:",
        search.describe_value(state)
    ));

    let on_path: Vec<bool> = {
        let mut on_path = vec![false; search.operations.len()];
        for &operation in &deepest.path {
            on_path[operation] = true;
        }
        on_path
    };
    let pending: Vec<usize> = (0..search.operations.len())
        .filter(|&operation| !on_path[operation])
        .filter(|&operation| matches!(search.operations[operation].slot, Slot::Known(_)))
        .collect();
    let first_return = pending
        .iter()
        .filter_map(|&operation| search.operations[operation].return_time)
        .min();
    for &operation in &pending {
        let search_operation = &search.operations[operation];
        if first_return.is_some_and(|first_return| search_operation.call_time > first_return) {
            continue;
        }
        let reason = match (search_operation.step, search_operation.step.apply(state)) {
            (Step::Read(value), None) => {
                format!(
                    "it read {} but the key holds {}",
                    search.describe_value(value),
                    search.describe_value(state)
                )
            }
            (Step::Cas { expect, .. }, None) => format!(
                "its answer needs the key to {}hold {} but it holds {}",
                if state == expect { "not " } else { "" },
                search.describe_value(expect),
                search.describe_value(state)
            ),
            _ => "it fits here, but every continuation after it fails".to_owned(),
        };
        lines.push(format!("  {}: {reason}", describe(operation)));
    }
    lines.join("\n")
}

/// One line describing an operation: client, call..return times, op, key, value or expect,
/// outcome.
fn describe_operation(operation: &Operation) -> String {
    let returned = match operation.return_time {
        Some(return_time) => return_time.to_string(),
        None => "?".to_owned(),
    };
    let describe = |value: &Option<String>| match value {
        None => "absent".to_owned(),
        Some(value) => format!("{value:?}"),
    };
    let call = match &operation.call {
        Call::Put { key, value } => format!("put {key:?} = {value:?}"),
        Call::Get { key } => format!("get {key:?}"),
        Call::Cas { key, expect, value } => {
            format!("cas {key:?} expect {} set {value:?}", describe(expect))
        }
        Call::Delete { key } => format!("delete {key:?}"),
    };
    let outcome = match &operation.outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Read(value) => format!("read {}", describe(value)),
        Outcome::Cas(true) => "swapped".to_owned(),
        Outcome::Cas(false) => "not swapped".to_owned(),
        Outcome::Failed => "failed (not applied)".to_owned(),
        Outcome::Unknown => "unknown (maybe applied)".to_owned(),
    };
    format!(
        "client {} [{}..{returned}] {call} -> {outcome}",
        operation.client, operation.call_time
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "k";

    fn operation(client: u64, times: (Nanos, Nanos), call: Call, outcome: Outcome) -> Operation {
        Operation {
            client,
            call_time: times.0,
            return_time: Some(times.1),
            call,
            outcome,
        }
    }

    fn put(client: u64, times: (Nanos, Nanos), value: &str) -> Operation {
        let call = Call::Put {
            key: KEY.to_owned(),
            value: value.to_owned(),
        };
        operation(client, times, call, Outcome::Ok)
    }

    fn get(client: u64, times: (Nanos, Nanos), read: Option<&str>) -> Operation {
        let outcome = Outcome::Read(read.map(str::to_owned));
        operation(
            client,
            times,
            Call::Get {
                key: KEY.to_owned(),
            },
            outcome,
        )
    }

    fn cas(
        client: u64,
        times: (Nanos, Nanos),
        expect: Option<&str>,
        value: &str,
        swapped: bool,
    ) -> Operation {
        let call = Call::Cas {
            key: KEY.to_owned(),
            expect: expect.map(str::to_owned),
            value: value.to_owned(),
        };
        operation(client, times, call, Outcome::Cas(swapped))
    }

    fn delete(client: u64, times: (Nanos, Nanos)) -> Operation {
        operation(
            client,
            times,
            Call::Delete {
                key: KEY.to_owned(),
            },
            Outcome::Ok,
        )
    }

    /// The same call, but the client never heard back.
    fn unknown(operation: Operation) -> Operation {
        Operation {
            return_time: None,
            outcome: Outcome::Unknown,
            ..operation
        }
    }

    /// The same call, but refused: known not to have taken effect.
    fn failed(operation: Operation) -> Operation {
        Operation {
            outcome: Outcome::Failed,
            ..operation
        }
    }

    fn on_key(key: &str, mut operation: Operation) -> Operation {
        match &mut operation.call {
            Call::Put { key: k, .. }
            | Call::Get { key: k }
            | Call::Cas { key: k, .. }
            | Call::Delete { key: k } => *k = key.to_owned(),
        }
        operation
    }

    fn history(operations: Vec<Operation>) -> History {
        History { operations }
    }

    fn assert_linearizable(operations: Vec<Operation>) {
        let verdict = check(&history(operations));
        assert_eq!(verdict, Verdict::Linearizable, "{}", display(&verdict));
    }

    fn assert_violation(operations: Vec<Operation>) -> Violation {
        match check(&history(operations)) {
            Verdict::Violation(violation) => violation,
            verdict => panic!("expected a violation, got {verdict:?}"),
        }
    }

    fn display(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Violation(violation) => violation.to_string(),
            verdict => format!("{verdict:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_linearizable(vec![]);
    }

    #[test]
    fn sequential_put_then_get_is_linearizable() {
        assert_linearizable(vec![
            get(1, (0, 5), None),
            put(1, (10, 20), "a"),
            get(2, (30, 40), Some("a")),
        ]);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_violation() {
        assert_violation(vec![
            put(1, (0, 10), "a"),
            put(1, (20, 30), "b"),
            get(2, (40, 50), Some("a")),
        ]);
    }

    #[test]
    fn read_of_value_never_written_is_violation() {
        assert_violation(vec![put(1, (0, 10), "a"), get(2, (5, 50), Some("z"))]);
    }

    #[test]
    fn get_concurrent_with_put_may_read_either_value() {
        assert_linearizable(vec![put(1, (0, 100), "a"), get(2, (10, 20), None)]);
        assert_linearizable(vec![put(1, (0, 100), "a"), get(2, (10, 20), Some("a"))]);
        assert_linearizable(vec![put(1, (10, 20), "a"), get(2, (0, 100), Some("a"))]);
    }

    /// Linearizability (Herlihy & Wing 1990, §2): only a response strictly before an invocation
    /// orders two operations; at equal timestamps they are concurrent.
    #[test]
    fn get_called_at_put_return_time_may_precede_put() {
        assert_linearizable(vec![put(1, (10, 20), "a"), get(2, (20, 30), None)]);
    }

    #[test]
    fn get_called_after_put_returned_must_see_it() {
        assert_violation(vec![put(1, (10, 20), "a"), get(2, (21, 30), None)]);
    }

    #[test]
    fn reads_must_not_go_back_in_time() {
        assert_violation(vec![
            put(1, (0, 100), "a"),
            get(2, (10, 20), Some("a")),
            get(3, (30, 40), None),
        ]);
    }

    #[test]
    fn cas_swaps_exactly_when_value_equals_expect() {
        assert_linearizable(vec![
            cas(1, (0, 10), None, "a", true),
            cas(1, (20, 30), Some("b"), "c", false),
            cas(1, (40, 50), Some("a"), "b", true),
            cas(1, (60, 70), None, "d", false),
            get(2, (80, 90), Some("b")),
        ]);
    }

    #[test]
    fn cas_reported_swapped_when_value_differs_is_violation() {
        assert_violation(vec![
            put(1, (0, 10), "a"),
            cas(2, (20, 30), Some("b"), "c", true),
        ]);
    }

    #[test]
    fn cas_reported_not_swapped_when_value_matches_is_violation() {
        assert_violation(vec![
            put(1, (0, 10), "a"),
            cas(2, (20, 30), Some("a"), "c", false),
        ]);
    }

    #[test]
    fn cas_expecting_absent_fails_once_key_exists() {
        assert_violation(vec![
            put(1, (0, 10), "a"),
            cas(2, (20, 30), None, "b", true),
        ]);
    }

    #[test]
    fn concurrent_cas_only_one_wins() {
        assert_linearizable(vec![
            cas(1, (0, 100), None, "a", true),
            cas(2, (0, 100), None, "b", false),
            get(3, (200, 210), Some("a")),
        ]);
        assert_violation(vec![
            cas(1, (0, 100), None, "a", true),
            cas(2, (0, 100), None, "b", true),
            get(3, (200, 210), Some("a")),
        ]);
    }

    #[test]
    fn delete_then_get_reads_absent() {
        assert_linearizable(vec![
            put(1, (0, 10), "a"),
            delete(1, (20, 30)),
            get(2, (40, 50), None),
        ]);
        assert_violation(vec![
            put(1, (0, 10), "a"),
            delete(1, (20, 30)),
            get(2, (40, 50), Some("a")),
        ]);
    }

    #[test]
    fn unknown_put_later_observed_is_linearizable() {
        assert_linearizable(vec![
            get(2, (0, 5), None),
            unknown(put(1, (10, 20), "a")),
            get(2, (1000, 1010), Some("a")),
        ]);
    }

    #[test]
    fn unknown_put_never_observed_is_linearizable() {
        assert_linearizable(vec![
            put(2, (0, 5), "x"),
            unknown(put(1, (10, 20), "a")),
            get(2, (1000, 1010), Some("x")),
            get(3, (2000, 2010), Some("x")),
        ]);
    }

    #[test]
    fn unknown_put_observed_before_its_call_is_violation() {
        assert_violation(vec![
            get(2, (0, 5), Some("a")),
            unknown(put(1, (10, 20), "a")),
        ]);
    }

    #[test]
    fn unknown_put_takes_effect_at_most_once() {
        assert_violation(vec![
            unknown(put(1, (0, 10), "a")),
            get(2, (20, 30), Some("a")),
            put(3, (40, 50), "b"),
            get(2, (60, 70), Some("a")),
        ]);
    }

    #[test]
    fn unknown_put_observed_after_later_put_is_linearizable() {
        assert_linearizable(vec![
            unknown(put(1, (0, 10), "a")),
            put(3, (40, 50), "b"),
            get(2, (60, 70), Some("b")),
            get(2, (80, 90), Some("a")),
        ]);
    }

    #[test]
    fn unknown_operations_may_chain() {
        assert_linearizable(vec![
            unknown(put(1, (0, 10), "a")),
            unknown(cas(2, (5, 15), Some("a"), "b", true)),
            get(3, (100, 110), Some("b")),
        ]);
    }

    #[test]
    fn unknown_cas_output_is_unconstrained() {
        assert_linearizable(vec![
            put(1, (0, 10), "a"),
            unknown(cas(2, (20, 30), Some("z"), "b", false)),
            get(3, (100, 110), Some("a")),
        ]);
    }

    #[test]
    fn unknown_delete_enables_cas_expecting_absent() {
        assert_linearizable(vec![
            put(1, (0, 10), "a"),
            unknown(delete(2, (20, 30))),
            cas(3, (100, 110), None, "b", true),
        ]);
    }

    #[test]
    fn unknown_get_is_ignored() {
        assert_linearizable(vec![
            put(1, (0, 10), "a"),
            unknown(get(2, (20, 30), Some("z"))),
        ]);
    }

    #[test]
    fn failed_operations_never_take_effect() {
        assert_linearizable(vec![
            put(1, (0, 10), "a"),
            failed(put(2, (20, 30), "b")),
            failed(get(3, (25, 35), Some("z"))),
            get(1, (40, 50), Some("a")),
        ]);
        assert_violation(vec![
            put(1, (0, 10), "a"),
            failed(put(2, (20, 30), "b")),
            get(1, (40, 50), Some("b")),
        ]);
    }

    #[test]
    fn clients_reading_writes_in_inconsistent_orders_is_violation() {
        assert_violation(vec![
            put(1, (0, 100), "a"),
            put(2, (0, 100), "b"),
            get(3, (10, 11), Some("a")),
            get(4, (12, 13), Some("b")),
            get(3, (20, 21), Some("b")),
            get(4, (22, 23), Some("a")),
        ]);
    }

    #[test]
    fn lost_acknowledged_write_is_violation() {
        assert_violation(vec![
            put(1, (0, 10), "a"),
            put(2, (20, 30), "b"),
            get(3, (40, 50), Some("b")),
            get(3, (60, 70), Some("a")),
        ]);
        assert_violation(vec![put(1, (0, 10), "a"), get(2, (20, 30), None)]);
    }

    #[test]
    fn keys_are_checked_independently() {
        assert_linearizable(vec![
            on_key("x", put(1, (0, 10), "a")),
            on_key("y", get(2, (20, 30), None)),
            on_key("x", get(2, (40, 50), Some("a"))),
        ]);
        let violation = assert_violation(vec![
            on_key("x", put(1, (0, 10), "a")),
            on_key("y", put(1, (0, 10), "b")),
            on_key("y", get(2, (20, 30), None)),
            on_key("x", get(2, (40, 50), Some("a"))),
        ]);
        assert_eq!(violation.key, "y");
        assert_eq!(violation.operations.len(), 2);
    }

    #[test]
    fn violation_report_names_prefix_and_operation_that_does_not_fit() {
        let violation = assert_violation(vec![
            put(1, (0, 10), "a"),
            put(2, (20, 30), "b"),
            unknown(put(4, (25, 26), "c")),
            get(3, (40, 50), Some("a")),
        ]);
        let report = violation.to_string();
        let expected = r#"linearizability violation on key "k"
no linearization exists: at best 2 of the 3 operations with a known outcome could be linearized.
longest linearizable prefix found (2 operations):
  #1 client 1 [0..10] put "k" = "a" -> ok, leaving "a"
  #2 client 2 [20..30] put "k" = "b" -> ok, leaving "b"
then the key holds "b", and every way on from there fails:
  #4 client 3 [40..50] get "k" -> read "a": it read "a" but the key holds "b"
operations on key "k", by call time:
  #1 client 1 [0..10] put "k" = "a" -> ok
  #2 client 2 [20..30] put "k" = "b" -> ok
  #3 client 4 [25..?] put "k" = "c" -> unknown (maybe applied)
  #4 client 3 [40..50] get "k" -> read "a"
"#;
        assert_eq!(report, expected, "got:\n{report}");
    }

    /// `count` acknowledged puts one after another, then a read of the first value.
    fn puts_then_stale_read(count: u64) -> Vec<Operation> {
        let mut operations: Vec<Operation> = (0..count)
            .map(|i| put(1, (i * 10, i * 10 + 5), &format!("v{i}")))
            .collect();
        operations.push(get(2, (count * 10, count * 10 + 5), Some("v0")));
        operations
    }

    #[test]
    fn explanation_lists_whole_prefix_at_its_limit() {
        let violation = assert_violation(puts_then_stale_read(20));
        assert!(!violation.explanation.contains("not shown"), "{violation}");
        assert!(violation.explanation.contains("#1 client 1"), "{violation}");
    }

    #[test]
    fn explanation_elides_prefix_past_its_limit() {
        let violation = assert_violation(puts_then_stale_read(21));
        assert!(
            violation
                .explanation
                .contains("... 1 earlier operations not shown"),
            "{violation}"
        );
        assert!(
            !violation.explanation.contains("#1 client 1"),
            "{violation}"
        );
        assert!(violation.explanation.contains("#2 client 1"), "{violation}");
    }

    #[test]
    fn search_stops_at_its_step_budget() {
        let operations: Vec<Operation> = (0..10)
            .map(|i| put(1, (i * 10, i * 10 + 5), &format!("v{i}")))
            .collect();
        let history = history(operations);
        assert_eq!(
            check_with_budget(&history, 9),
            Verdict::Inconclusive {
                key: KEY.to_owned()
            }
        );
        assert_eq!(check_with_budget(&history, 10), Verdict::Linearizable);
        assert_eq!(
            check_with_budget(&history, 0),
            Verdict::Inconclusive {
                key: KEY.to_owned()
            }
        );
    }

    #[test]
    fn violation_wins_over_inconclusive_key() {
        let slow: Vec<Operation> = (0..10)
            .map(|i| on_key("a", put(1, (i * 10, i * 10 + 5), "v")))
            .collect();
        let broken = on_key("b", get(2, (0, 5), Some("never written")));
        let verdict = check_with_budget(&history([slow, vec![broken]].concat()), 3);
        assert!(matches!(&verdict, Verdict::Violation(violation) if violation.key == "b"));
    }

    #[test]
    #[should_panic(expected = "malformed")]
    fn malformed_operation_panics() {
        let get_answered_ok = operation(
            1,
            (0, 10),
            Call::Get {
                key: KEY.to_owned(),
            },
            Outcome::Ok,
        );
        check(&history(vec![get_answered_ok]));
    }

    /// A seeded generator for the larger generated histories.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 += 1;
            mix(self.0) % bound
        }
    }

    /// A run of `clients` sequential clients on one key against a real register: each operation
    /// takes effect at a random point of its interval; `unknown_count` writes lose their answer
    /// (every other one of those also never takes effect).
    fn simulated_history(
        seed: u64,
        operation_count: usize,
        clients: u64,
        unknown_count: usize,
    ) -> History {
        let mut rng = Rng(seed);
        let mut client_free_at = vec![0; clients as usize];
        let mut planned = Vec::with_capacity(operation_count);
        for index in 0..operation_count {
            let client = rng.below(clients);
            let call_time = client_free_at[client as usize] + rng.below(50);
            let duration = 10 + rng.below(400);
            let effect_time = call_time + rng.below(duration);
            client_free_at[client as usize] = call_time + duration;
            let value = format!("v{index}");
            let expect = match rng.below(3) {
                0 => None,
                _ => Some(format!(
                    "v{}",
                    index.saturating_sub(1 + rng.below(4) as usize)
                )),
            };
            let call = match rng.below(10) {
                0..=3 => Call::Get {
                    key: KEY.to_owned(),
                },
                4..=6 => Call::Put {
                    key: KEY.to_owned(),
                    value,
                },
                7..=8 => Call::Cas {
                    key: KEY.to_owned(),
                    expect,
                    value,
                },
                _ => Call::Delete {
                    key: KEY.to_owned(),
                },
            };
            planned.push((effect_time, client, call_time, call_time + duration, call));
        }
        planned.sort_by_key(|planned| planned.0);
        let mut unknown_left = unknown_count;
        let mut lost_answer_applies = true;
        let mut register: Option<String> = None;
        let mut operations = Vec::with_capacity(operation_count);
        for (index, (_, client, call_time, return_time, call)) in planned.into_iter().enumerate() {
            let is_write = !matches!(call, Call::Get { .. });
            let loses_answer = is_write && unknown_left > 0 && index % 7 == 3;
            let applies = !loses_answer || lost_answer_applies;
            lost_answer_applies ^= loses_answer;
            let outcome = match &call {
                Call::Get { .. } => Outcome::Read(register.clone()),
                Call::Put { value, .. } => {
                    if applies {
                        register = Some(value.clone());
                    }
                    Outcome::Ok
                }
                Call::Cas { expect, value, .. } => {
                    let swapped = register == *expect;
                    if swapped && applies {
                        register = Some(value.clone());
                    }
                    Outcome::Cas(swapped)
                }
                Call::Delete { .. } => {
                    if applies {
                        register = None;
                    }
                    Outcome::Ok
                }
            };
            let mut operation = Operation {
                client,
                call_time,
                return_time: Some(return_time),
                call,
                outcome,
            };
            if loses_answer {
                unknown_left -= 1;
                operation = unknown(operation);
            }
            operations.push(operation);
        }
        assert_eq!(
            unknown_left, 0,
            "the history has fewer writes than unknown operations"
        );
        operations.sort_by_key(|operation| operation.call_time);
        History { operations }
    }

    /// Not a timed assertion: with the step budget at its default, finishing with a verdict of
    /// Linearizable is the point (it takes milliseconds).
    #[test]
    fn three_hundred_operations_of_eight_clients_with_unknowns_check_quickly() {
        for seed in 0..5 {
            let history = simulated_history(seed, 300, 8, 10);
            let verdict = check(&history);
            assert_eq!(
                verdict,
                Verdict::Linearizable,
                "seed {seed}: {}",
                display(&verdict)
            );
        }
    }

    #[test]
    fn thousand_operations_of_sixteen_clients_with_unknowns_check_quickly() {
        let history = simulated_history(7, 1000, 16, 30);
        let verdict = check(&history);
        assert_eq!(verdict, Verdict::Linearizable, "{}", display(&verdict));
    }

    /// The search for a violation must rule out every ordering, so it is the slow case.
    #[test]
    fn three_hundred_operations_with_a_bad_read_are_a_violation() {
        for (seed, unknown_count) in [(0, 0), (1, 0), (0, 10), (1, 10), (2, 10)] {
            let mut history = simulated_history(seed, 300, 8, unknown_count);
            let last_read = history
                .operations
                .iter_mut()
                .rev()
                .find(|operation| matches!(operation.outcome, Outcome::Read(Some(_))));
            let Some(last_read) = last_read else {
                panic!("seed {seed}: no read of a value")
            };
            last_read.outcome = Outcome::Read(Some("never written".to_owned()));
            let verdict = check(&history);
            assert!(
                matches!(verdict, Verdict::Violation(_)),
                "seed {seed}: {verdict:?}"
            );
        }
    }

    /// Whether some subset of the unknown operations and some order of those and the known ones
    /// is a legal sequential history respecting real time: the definition, by enumeration.
    fn linearizable_by_enumeration(operations: &[Operation]) -> bool {
        let relevant: Vec<&Operation> = operations
            .iter()
            .filter(|operation| {
                !matches!(
                    (&operation.call, &operation.outcome),
                    (_, Outcome::Failed) | (Call::Get { .. }, Outcome::Unknown)
                )
            })
            .collect();
        let unknown: Vec<usize> = (0..relevant.len())
            .filter(|&index| relevant[index].outcome == Outcome::Unknown)
            .collect();
        (0..1u32 << unknown.len()).any(|mask| {
            let chosen: Vec<&Operation> = (0..relevant.len())
                .filter(
                    |index| match unknown.iter().position(|unknown| unknown == index) {
                        Some(bit) => mask & (1 << bit) != 0,
                        None => true,
                    },
                )
                .map(|index| relevant[index])
                .collect();
            some_order_is_legal(&mut Vec::new(), &chosen)
        })
    }

    fn some_order_is_legal<'a>(order: &mut Vec<&'a Operation>, rest: &[&'a Operation]) -> bool {
        if rest.is_empty() {
            return is_legal(order);
        }
        (0..rest.len()).any(|index| {
            let mut remaining = rest.to_vec();
            order.push(remaining.remove(index));
            let legal = some_order_is_legal(order, &remaining);
            order.pop();
            legal
        })
    }

    fn is_legal(order: &[&Operation]) -> bool {
        let respects_real_time = order.iter().enumerate().all(|(position, earlier)| {
            order[position + 1..]
                .iter()
                .all(|later| match later.return_time {
                    Some(returned) => returned >= earlier.call_time,
                    None => true,
                })
        });
        let mut register: Option<String> = None;
        respects_real_time
            && order
                .iter()
                .all(|operation| match (&operation.call, &operation.outcome) {
                    (Call::Put { value, .. }, _) => {
                        register = Some(value.clone());
                        true
                    }
                    (Call::Delete { .. }, _) => {
                        register = None;
                        true
                    }
                    (Call::Get { .. }, Outcome::Read(read)) => *read == register,
                    (Call::Cas { expect, value, .. }, outcome) => {
                        let swaps = register == *expect;
                        if swaps {
                            register = Some(value.clone());
                        }
                        *outcome == Outcome::Unknown || *outcome == Outcome::Cas(swaps)
                    }
                    (Call::Get { .. }, _) => false,
                })
    }

    /// Any small history on one key: values from a tiny set and random intervals, so some are
    /// linearizable and many are not.
    fn small_history() -> impl Strategy<Value = History> {
        let operation = (0..4u8, 0..3u8, 0..3u8, 0..40u64, 0..25u64, 0..8u8).prop_map(
            |(kind, value, expect, call_time, duration, fate)| {
                let value_of = |index: u8| (index > 0).then(|| format!("v{index}"));
                let call = match kind {
                    0 => Call::Get {
                        key: KEY.to_owned(),
                    },
                    1 => Call::Put {
                        key: KEY.to_owned(),
                        value: format!("v{}", value.max(1)),
                    },
                    2 => Call::Cas {
                        key: KEY.to_owned(),
                        expect: value_of(expect),
                        value: format!("v{}", value.max(1)),
                    },
                    _ => Call::Delete {
                        key: KEY.to_owned(),
                    },
                };
                let outcome = match (&call, fate) {
                    (_, 0) => Outcome::Unknown,
                    (_, 1) => Outcome::Failed,
                    (Call::Get { .. }, _) => Outcome::Read(value_of(value)),
                    (Call::Cas { .. }, _) => Outcome::Cas(fate >= 5),
                    _ => Outcome::Ok,
                };
                let return_time = (outcome != Outcome::Unknown).then_some(call_time + duration);
                Operation {
                    client: 0,
                    call_time,
                    return_time,
                    call,
                    outcome,
                }
            },
        );
        proptest::collection::vec(operation, 0..7).prop_map(|operations| History { operations })
    }

    /// What a generated operation does, and whether the client learns its outcome.
    #[derive(Clone, Debug)]
    struct Planned {
        kind: u8,
        key: u8,
        value: u8,
        before_effect: Nanos,
        after_effect: Nanos,
        fate: u8,
    }

    fn planned() -> impl Strategy<Value = Planned> {
        (0..4u8, 0..2u8, 0..4u8, 0..3000u64, 0..3000u64, 0..10u8).prop_map(
            |(kind, key, value, before_effect, after_effect, fate)| Planned {
                kind,
                key,
                value,
                before_effect,
                after_effect,
                fate,
            },
        )
    }

    /// Runs `plan` against a real map, one operation taking effect every 1000 ns, each with an
    /// interval around its effect; fates 0 and 1 lose the answer (1 also never takes effect), 2
    /// is refused, the rest are answered.
    fn executed(plan: &[Planned]) -> History {
        let mut registers: BTreeMap<String, String> = BTreeMap::new();
        let mut operations = Vec::with_capacity(plan.len());
        for (index, planned) in plan.iter().enumerate() {
            let key = format!("k{}", planned.key);
            let value = format!("v{}", planned.value);
            let effect_time = 3000 + 1000 * index as Nanos;
            let applies = !matches!(planned.fate, 1 | 2);
            let current = registers.get(&key).cloned();
            let (call, outcome) = match planned.kind {
                0 => (Call::Get { key: key.clone() }, Outcome::Read(current)),
                1 => (
                    Call::Put {
                        key: key.clone(),
                        value: value.clone(),
                    },
                    Outcome::Ok,
                ),
                2 => {
                    let expect = (planned.value >= 2).then(|| format!("v{}", planned.value - 2));
                    let swapped = current == expect;
                    (
                        Call::Cas {
                            key: key.clone(),
                            expect,
                            value: value.clone(),
                        },
                        Outcome::Cas(swapped),
                    )
                }
                _ => (Call::Delete { key: key.clone() }, Outcome::Ok),
            };
            if applies {
                match &call {
                    Call::Put { .. } => {
                        registers.insert(key, value);
                    }
                    Call::Cas { .. } if outcome == Outcome::Cas(true) => {
                        registers.insert(key, value);
                    }
                    Call::Delete { .. } => {
                        registers.remove(&key);
                    }
                    _ => {}
                }
            }
            let operation = Operation {
                client: index as u64 % 8,
                call_time: effect_time - planned.before_effect,
                return_time: Some(effect_time + planned.after_effect),
                call,
                outcome,
            };
            operations.push(match planned.fate {
                0 | 1 => unknown(operation),
                2 => failed(operation),
                _ => operation,
            });
        }
        History { operations }
    }

    proptest! {
        #[test]
        fn verdict_agrees_with_enumerating_every_order(history in small_history()) {
            let expected = linearizable_by_enumeration(&history.operations);
            let verdict = check(&history);
            prop_assert_eq!(
                verdict == Verdict::Linearizable,
                expected,
                "{}",
                display(&verdict)
            );
        }

        #[test]
        fn executions_of_a_real_map_are_linearizable(
            plan in proptest::collection::vec(planned(), 0..60)
        ) {
            let verdict = check(&executed(&plan));
            prop_assert_eq!(&verdict, &Verdict::Linearizable, "{}", display(&verdict));
        }

        #[test]
        fn reading_a_value_never_written_is_a_violation(
            plan in proptest::collection::vec(planned(), 1..60),
            pick in any::<proptest::sample::Index>(),
        ) {
            let mut history = executed(&plan);
            let reads: Vec<usize> = (0..history.operations.len())
                .filter(|&index| matches!(history.operations[index].outcome, Outcome::Read(_)))
                .collect();
            prop_assume!(!reads.is_empty());
            let read = reads[pick.index(reads.len())];
            history.operations[read].outcome = Outcome::Read(Some("never written".to_owned()));
            let verdict = check(&history);
            prop_assert!(matches!(verdict, Verdict::Violation(_)), "{:?}", verdict);
        }
    }
}
