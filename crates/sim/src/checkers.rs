//! One checker per property. Each is told what it needs as it happens (a leader seen, an entry
//! made durable, an entry applied, a write acknowledged) and answers with a [`Violation`] the
//! moment its property breaks; the ones that need the whole run check at the end.

use crate::durable_log::{DurableLog, Written};
use crate::history::History;
use crate::linearizability::{self, Verdict};
use crate::time::{Nanos, Time};
use crate::trace::TraceHasher;
use chorus_raft::{Entry, EntryPayload, LogIndex};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};

/// A property that broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker's name, e.g. `election-safety`.
    pub checker: &'static str,
    pub at: Nanos,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] at {}: {}",
            self.checker,
            Time(self.at),
            self.message
        )
    }
}

pub type Checked = Result<(), Violation>;

fn violation(checker: &'static str, at: Nanos, message: String) -> Checked {
    Err(Violation {
        checker,
        at,
        message,
    })
}

/// A short fingerprint of an entry's payload.
pub fn payload_hash(payload: &EntryPayload) -> u64 {
    let mut hasher = TraceHasher::default();
    match payload {
        EntryPayload::Noop => 0u8.hash(&mut hasher),
        EntryPayload::Normal(data) => {
            1u8.hash(&mut hasher);
            hasher.write(data);
        }
        EntryPayload::ConfChange(change) => {
            2u8.hash(&mut hasher);
            format!("{change:?}").hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Election safety (Raft §5.2): at most one leader per term.
#[derive(Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<u64, u64>,
}

impl ElectionSafety {
    pub const NAME: &'static str = "election-safety";

    /// `node` is leader in `term` now.
    pub fn on_leader(&mut self, term: u64, node: u64, now: Nanos) -> Checked {
        match self.leaders.insert(term, node) {
            Some(other) if other != node => violation(
                Self::NAME,
                now,
                format!("two leaders in term t{term}: n{other} and n{node}"),
            ),
            _ => Ok(()),
        }
    }

    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }
}

/// Log matching (Raft §5.3): if two logs hold an entry with the same index and term, the logs
/// are identical up to it. Checked incrementally on every entry made durable (and on every log
/// recovery reads back from the WAL) — an entry is identified by (index, term) and must always
/// carry the same payload after the same previous term, which by induction gives the property —
/// and pairwise over the durable logs at the end.
#[derive(Default)]
pub struct LogMatching {
    seen: HashMap<(u64, u64), (u64, u64, u64)>,
}

impl LogMatching {
    pub const NAME: &'static str = "log-matching";

    /// `node` holds (index, term) with payload `hash` durably, after an entry of `previous_term`.
    pub fn on_durable_entry(
        &mut self,
        node: u64,
        index: u64,
        term: u64,
        hash: u64,
        previous_term: u64,
        now: Nanos,
    ) -> Checked {
        match self.seen.get(&(index, term)) {
            None => {
                self.seen.insert((index, term), (hash, previous_term, node));
                Ok(())
            }
            Some(&(payload, previous, first_node))
                if payload != hash || previous != previous_term =>
            {
                violation(
                    Self::NAME,
                    now,
                    format!(
                        "entry i{index}/t{term} differs between n{first_node} and n{node} \
                         (payload {payload:x} vs {hash:x}, previous term t{previous} vs t{previous_term})"
                    ),
                )
            }
            Some(_) => Ok(()),
        }
    }

    /// Pairwise over durable logs: every index both hold at or below the last index where their
    /// terms agree must hold the same entry.
    pub fn check_final(&self, logs: &[(u64, &DurableLog)], now: Nanos) -> Checked {
        for (position, (a, log_a)) in logs.iter().enumerate() {
            for (b, log_b) in &logs[position + 1..] {
                let low = log_a.snapshot_index.max(log_b.snapshot_index) + 1;
                let high = log_a.last_index().min(log_b.last_index());
                let mut agreed = None;
                let mut index = high;
                while index >= low && index > 0 {
                    if log_a.term_at(index) == log_b.term_at(index) {
                        agreed = Some(index);
                        break;
                    }
                    index -= 1;
                }
                let Some(agreed) = agreed else { continue };
                for index in low..=agreed {
                    if log_a.entry(index) != log_b.entry(index) {
                        return violation(
                            Self::NAME,
                            now,
                            format!(
                                "n{a} and n{b} agree on the term of i{agreed} but differ at i{index}: \
                                 {:?} vs {:?}",
                                log_a.entry(index),
                                log_b.entry(index)
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// State machine safety (Raft §5.4.3): every replica applies the same entry at each index, and a
/// committed entry never changes — not in a replica's applied sequence, not on its disk.
#[derive(Default)]
pub struct StateMachineSafety {
    /// Per index (position index - 1): the (term, payload hash) first applied there, and by whom.
    applied: Vec<Option<(u64, u64, u64)>>,
}

impl StateMachineSafety {
    pub const NAME: &'static str = "state-machine-safety";

    pub fn on_apply(&mut self, node: u64, entry: &Entry, hash: u64, now: Nanos) -> Checked {
        let position = (entry.index.0 - 1) as usize;
        if self.applied.len() <= position {
            self.applied.resize(position + 1, None);
        }
        match self.applied[position] {
            None => {
                self.applied[position] = Some((entry.term.0, hash, node));
                Ok(())
            }
            Some((term, first_hash, first_node)) if term != entry.term.0 || first_hash != hash => {
                violation(
                    Self::NAME,
                    now,
                    format!(
                        "n{node} applied i{}/t{} but n{first_node} applied i{}/t{term} \
                         (payload {first_hash:x} vs {hash:x})",
                        entry.index.0, entry.term.0, entry.index.0
                    ),
                )
            }
            Some(_) => Ok(()),
        }
    }

    /// The entry first applied at `index`, as (term, payload hash).
    pub fn applied_at(&self, index: u64) -> Option<(u64, u64)> {
        let position = usize::try_from(index.checked_sub(1)?).ok()?;
        self.applied
            .get(position)
            .copied()
            .flatten()
            .map(|(term, hash, _)| (term, hash))
    }

    pub fn on_durable_write(&mut self, node: u64, written: &Written, now: Nanos) -> Checked {
        if let Some(index) = written.committed_overwritten {
            return violation(
                Self::NAME,
                now,
                format!("n{node} overwrote or dropped committed entry i{index} on disk"),
            );
        }
        if let Some((snapshot, commit)) = written.snapshot_behind_commit {
            return violation(
                Self::NAME,
                now,
                format!("n{node} replaced its log (commit i{commit}) with an older snapshot at i{snapshot}"),
            );
        }
        Ok(())
    }
}

/// An acknowledged write: the client was told it happened.
#[derive(Clone, Copy, Debug)]
struct Acked {
    index: u64,
    term: u64,
    client: u64,
    at: Nanos,
}

/// Acknowledged writes survive: each write acknowledged to a client is, at the end, the entry
/// applied at its index by every replica that applied that far itself.
pub struct AckedWritesSurvive {
    acked: Vec<Acked>,
    /// Per replica (position id - 1), per index (position index - 1): the (term, payload hash)
    /// it applied itself.
    applied_by_node: Vec<Vec<Option<(u64, u64)>>>,
}

impl AckedWritesSurvive {
    pub const NAME: &'static str = "acked-writes-survive";

    pub fn new(nodes: usize) -> AckedWritesSurvive {
        AckedWritesSurvive {
            acked: Vec::new(),
            applied_by_node: vec![Vec::new(); nodes],
        }
    }

    pub fn on_apply(&mut self, node: u64, entry: &Entry, hash: u64) {
        let applied = &mut self.applied_by_node[(node - 1) as usize];
        let position = (entry.index.0 - 1) as usize;
        if applied.len() <= position {
            applied.resize(position + 1, None);
        }
        applied[position] = Some((entry.term.0, hash));
    }

    pub fn on_acknowledged(&mut self, client: u64, index: u64, term: u64, at: Nanos) {
        self.acked.push(Acked {
            index,
            term,
            client,
            at,
        });
    }

    pub fn acknowledged(&self) -> usize {
        self.acked.len()
    }

    /// `caught_up`: (replica, its applied index) of the replicas that caught up.
    pub fn check_final(
        &self,
        state_machine: &StateMachineSafety,
        caught_up: &[(u64, u64)],
        now: Nanos,
    ) -> Checked {
        for acked in &self.acked {
            let Some((term, hash)) = state_machine.applied_at(acked.index) else {
                return violation(
                    Self::NAME,
                    now,
                    format!(
                        "write acknowledged to c{} at {} as i{}/t{} was never applied anywhere",
                        acked.client,
                        Time(acked.at),
                        acked.index,
                        acked.term
                    ),
                );
            };
            if term != acked.term {
                return violation(
                    Self::NAME,
                    now,
                    format!(
                        "write acknowledged to c{} at {} as i{}/t{} lost: i{} holds a t{term} entry",
                        acked.client,
                        Time(acked.at),
                        acked.index,
                        acked.term,
                        acked.index
                    ),
                );
            }
            for &(node, applied_index) in caught_up {
                if applied_index < acked.index {
                    return violation(
                        Self::NAME,
                        now,
                        format!(
                            "n{node} caught up only to i{applied_index}, before acked i{}",
                            acked.index
                        ),
                    );
                }
                let own = self.applied_by_node[(node - 1) as usize]
                    .get((acked.index - 1) as usize)
                    .copied()
                    .flatten();
                if let Some(own) = own {
                    if own != (term, hash) {
                        return violation(
                            Self::NAME,
                            now,
                            format!(
                                "n{node} applied i{}/t{} where the write acknowledged to c{} was \
                                 i{}/t{}",
                                acked.index, own.0, acked.client, acked.index, acked.term
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Linearizability of the recorded client history (`crate::linearizability`).
pub struct Linearizability;

impl Linearizability {
    pub const NAME: &'static str = "linearizability";

    /// The verdict; an inconclusive search is returned as `Ok(Some(key))`, not a violation.
    pub fn check(history: &History, now: Nanos) -> Result<Option<String>, Violation> {
        match linearizability::check(history) {
            Verdict::Linearizable => Ok(None),
            Verdict::Inconclusive { key } => Ok(Some(key)),
            Verdict::Violation(found) => Err(Violation {
                checker: Self::NAME,
                at: now,
                message: found.to_string(),
            }),
        }
    }
}

/// Liveness: once the last fault is healed, a leader is elected and commits a new entry of its
/// own term within `liveness_ticks_max` ticks; and by the end every replica has caught up.
pub struct Liveness {
    pub liveness_ticks_max: u64,
    tick_ns: Nanos,
    healed_at: Option<Nanos>,
    commit_at_heal: u64,
    progress_at: Option<Nanos>,
}

impl Liveness {
    pub const NAME: &'static str = "liveness";

    pub fn new(liveness_ticks_max: u64, tick_ns: Nanos) -> Liveness {
        Liveness {
            liveness_ticks_max,
            tick_ns,
            healed_at: None,
            commit_at_heal: 0,
            progress_at: None,
        }
    }

    /// Everything healed at `now`, with `commit` the highest commit index any replica knew.
    /// Returns the deadline.
    pub fn on_healed(&mut self, now: Nanos, commit: u64) -> Nanos {
        self.healed_at = Some(now);
        self.commit_at_heal = commit;
        now + self.liveness_ticks_max * self.tick_ns
    }

    /// A leader of `leader_term` applied `entry`.
    pub fn on_leader_apply(&mut self, entry: &Entry, leader_term: u64, now: Nanos) {
        if self.healed_at.is_some()
            && self.progress_at.is_none()
            && entry.index > LogIndex(self.commit_at_heal)
            && entry.term.0 == leader_term
        {
            self.progress_at = Some(now);
        }
    }

    pub fn wants_leader_applies(&self) -> bool {
        self.healed_at.is_some() && self.progress_at.is_none()
    }

    /// Time from the heal to the first new commit, once there was one.
    pub fn recovery_ns(&self) -> Option<Nanos> {
        Some(self.progress_at? - self.healed_at?)
    }

    pub fn check_deadline(&self, now: Nanos) -> Checked {
        if self.healed_at.is_some() && self.progress_at.is_none() {
            return violation(
                Self::NAME,
                now,
                format!(
                    "no leader committed a new entry within liveness_ticks_max = {} ticks of the heal \
                     (commit was i{})",
                    self.liveness_ticks_max, self.commit_at_heal
                ),
            );
        }
        Ok(())
    }

    pub fn check_caught_up(&self, lagging: &[(u64, u64)], target: u64, now: Nanos) -> Checked {
        if let Some((node, applied)) = lagging.first() {
            return violation(
                Self::NAME,
                now,
                format!("n{node} applied only i{applied} of i{target} by the end of the drain"),
            );
        }
        Ok(())
    }
}

/// Durable state survives a crash: what a replica's persists made durable is what recovery
/// reads back from the real WAL, hard state file and snapshot store.
///
/// After a crash between persists (the `Ready` in flight lost whole), recovery must give back
/// exactly the state the last persist left: the same snapshot, hard state, and log (a longer log
/// is allowed: entries raft dropped in memory while the persist ran are still in the WAL until
/// the next persist truncates them). After a power cut *during* a persist, that persist may have
/// happened in part: the term and commit index must not go back, a vote in the same term must
/// not change, and every entry up to the commit index durable before must still be there (or
/// covered by a snapshot).
pub struct DurableStateSurvives;

impl DurableStateSurvives {
    pub const NAME: &'static str = "durable-state-survives";

    pub fn check_recovered(
        node: u64,
        before: &DurableLog,
        after: &DurableLog,
        cut_during_persist: bool,
        now: Nanos,
    ) -> Checked {
        let fail = |what: String| violation(Self::NAME, now, format!("n{node} {what}"));
        if after.term < before.term || after.commit < before.commit {
            return fail(format!(
                "recovered hard state t{}/commit i{} behind the durable t{}/commit i{}",
                after.term, after.commit, before.term, before.commit
            ));
        }
        if after.term == before.term && before.vote.is_some() && after.vote != before.vote {
            return fail(format!(
                "recovered vote {:?} in t{} but voted {:?} durably",
                after.vote, after.term, before.vote
            ));
        }
        if after.snapshot_index < before.snapshot_index {
            return fail(format!(
                "recovered snapshot i{} older than the durable i{}",
                after.snapshot_index, before.snapshot_index
            ));
        }
        let checked_up_to = if cut_during_persist {
            before.commit
        } else {
            if (after.term, after.vote, after.commit) != (before.term, before.vote, before.commit) {
                return fail(format!(
                    "recovered hard state (t{}, vote {:?}, commit i{}) is not the durable (t{}, vote {:?}, commit i{})",
                    after.term, after.vote, after.commit, before.term, before.vote, before.commit
                ));
            }
            if after.snapshot_index != before.snapshot_index {
                return fail(format!(
                    "recovered snapshot i{} but i{} was durable",
                    after.snapshot_index, before.snapshot_index
                ));
            }
            before.last_index()
        };
        for index in (after.snapshot_index + 1)..=checked_up_to {
            let (Some(durable), recovered) = (before.entry(index), after.entry(index)) else {
                continue;
            };
            if recovered != Some(durable) {
                return fail(format!(
                    "recovered {recovered:?} at i{index} where {durable:?} was durable \
                     (log i{}..=i{} before, i{}..=i{} after)",
                    before.snapshot_index + 1,
                    before.last_index(),
                    after.snapshot_index + 1,
                    after.last_index()
                ));
            }
        }
        Ok(())
    }
}

/// The replicas' MVCC stores agree: at every revision both still hold, a range over all keys
/// gives the same keys, values, create and mod revisions, versions and leases; replicas that
/// applied the same log index are at the same revision.
pub struct MvccAgreement;

impl MvccAgreement {
    pub const NAME: &'static str = "mvcc-agreement";

    /// `stores`: (replica, its applied index, its store) of the replicas that caught up.
    pub fn check_final<B: chorus_mvcc::Backend>(
        stores: &[(u64, u64, &chorus_mvcc::Store<B>)],
        now: Nanos,
    ) -> Checked {
        let Some(((first, first_applied, first_store), rest)) = stores.split_first() else {
            return Ok(());
        };
        for (node, applied, store) in rest {
            if applied == first_applied
                && store.current_revision() != first_store.current_revision()
            {
                return violation(
                    Self::NAME,
                    now,
                    format!(
                        "n{first} and n{node} both applied i{applied} but are at revisions {} and {}",
                        first_store.current_revision(),
                        store.current_revision()
                    ),
                );
            }
            let low = first_store
                .compact_revision()
                .unwrap_or(0)
                .max(store.compact_revision().unwrap_or(0))
                .max(1);
            let high = first_store.current_revision().min(store.current_revision());
            for revision in low..=high {
                let request = chorus_mvcc::RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    revision,
                    ..chorus_mvcc::RangeRequest::default()
                };
                let (a, b) = match (first_store.range(&request), store.range(&request)) {
                    (Ok(a), Ok(b)) => (a.kvs, b.kvs),
                    (a, b) => {
                        return violation(
                            Self::NAME,
                            now,
                            format!(
                            "a range at revision {revision}: n{first} answered {:?}, n{node} {:?}",
                            a.map(|r| r.kvs.len()),
                            b.map(|r| r.kvs.len())
                        ),
                        )
                    }
                };
                if a != b {
                    return violation(
                        Self::NAME,
                        now,
                        format!(
                            "at revision {revision} n{first} holds {a:?} but n{node} holds {b:?}"
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Every checker of a run, and the first violation any of them found.
pub struct Checkers {
    pub election_safety: ElectionSafety,
    pub log_matching: LogMatching,
    pub state_machine_safety: StateMachineSafety,
    pub acked_writes: AckedWritesSurvive,
    pub liveness: Liveness,
    /// The first violation; the run stops at it so the trace ends where things went wrong.
    pub violation: Option<Violation>,
}

impl Checkers {
    pub fn new(nodes: usize, liveness_ticks_max: u64, tick_ns: Nanos) -> Checkers {
        Checkers {
            election_safety: ElectionSafety::default(),
            log_matching: LogMatching::default(),
            state_machine_safety: StateMachineSafety::default(),
            acked_writes: AckedWritesSurvive::new(nodes),
            liveness: Liveness::new(liveness_ticks_max, tick_ns),
            violation: None,
        }
    }

    /// Keeps the first violation.
    pub fn record(&mut self, checked: Checked) {
        if let Err(found) = checked {
            if self.violation.is_none() {
                self.violation = Some(found);
            }
        }
    }

    pub fn on_leader(&mut self, term: u64, node: u64, now: Nanos) {
        let checked = self.election_safety.on_leader(term, node, now);
        self.record(checked);
    }

    pub fn on_durable_write(&mut self, node: u64, written: &Written, now: Nanos) {
        let checked = self
            .state_machine_safety
            .on_durable_write(node, written, now);
        self.record(checked);
    }

    pub fn on_durable_entry(
        &mut self,
        node: u64,
        index: u64,
        term: u64,
        hash: u64,
        previous_term: u64,
        now: Nanos,
    ) {
        let checked =
            self.log_matching
                .on_durable_entry(node, index, term, hash, previous_term, now);
        self.record(checked);
    }

    /// `node` applied `entry`; `leader_term` is its term if it leads.
    pub fn on_apply(&mut self, node: u64, entry: &Entry, leader_term: Option<u64>, now: Nanos) {
        let hash = payload_hash(&entry.payload);
        let checked = self.state_machine_safety.on_apply(node, entry, hash, now);
        self.record(checked);
        self.acked_writes.on_apply(node, entry, hash);
        if let Some(term) = leader_term {
            self.liveness.on_leader_apply(entry, term, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_raft::Term;

    fn entry(index: u64, term: u64, data: &'static str) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Normal(bytes::Bytes::from_static(data.as_bytes())),
        }
    }

    #[test]
    fn election_safety_catches_two_leaders_in_a_term() {
        let mut checker = ElectionSafety::default();
        assert!(checker.on_leader(1, 1, 0).is_ok());
        assert!(checker.on_leader(1, 1, 5).is_ok());
        assert!(checker.on_leader(2, 2, 6).is_ok());
        let error = checker.on_leader(2, 3, 7).err();
        assert_eq!(error.map(|v| v.checker), Some(ElectionSafety::NAME));
    }

    fn log_of(entries: &[(u64, &'static str)]) -> DurableLog {
        let mut log = DurableLog::default();
        for (term, data) in entries {
            let payload = EntryPayload::Normal(bytes::Bytes::from_static(data.as_bytes()));
            log.push(*term, payload_hash(&payload));
        }
        log
    }

    fn record_all(checker: &mut LogMatching, node: u64, log: &DurableLog) -> Checked {
        for index in 1..=log.last_index() {
            let (term, hash) = log.entry(index).unwrap_or_default();
            let previous = log.term_at(index - 1).unwrap_or(u64::MAX);
            checker.on_durable_entry(node, index, term, hash, previous, 0)?;
        }
        Ok(())
    }

    #[test]
    fn log_matching_catches_same_index_and_term_with_different_payload() {
        let mut checker = LogMatching::default();
        let a = log_of(&[(1, "a"), (1, "b")]);
        let b = log_of(&[(1, "a"), (1, "b")]);
        let c = log_of(&[(1, "a"), (1, "X")]);
        assert!(record_all(&mut checker, 1, &a).is_ok());
        assert!(record_all(&mut checker, 2, &b).is_ok());
        assert!(record_all(&mut checker, 3, &c).is_err());
        assert!(checker.check_final(&[(1, &a), (2, &b)], 0).is_ok());
        assert!(checker.check_final(&[(1, &a), (3, &c)], 0).is_err());
    }

    #[test]
    fn log_matching_catches_a_different_history_before_a_matching_entry() {
        let mut checker = LogMatching::default();
        let a = log_of(&[(1, "a"), (2, "b")]);
        let b = log_of(&[(2, "x"), (2, "b")]);
        assert!(record_all(&mut checker, 1, &a).is_ok());
        assert!(record_all(&mut checker, 2, &b).is_err());
        assert!(LogMatching::default()
            .check_final(&[(1, &a), (2, &b)], 0)
            .is_err());
    }

    #[test]
    fn durable_state_survives_catches_lost_entries_and_votes() {
        let mut before = log_of(&[(1, "a"), (1, "b"), (2, "c")]);
        (before.term, before.vote, before.commit) = (2, Some(1), 2);
        let same = before.clone();
        assert!(DurableStateSurvives::check_recovered(1, &before, &same, false, 0).is_ok());
        let mut short = before.clone();
        short.truncate_after(2);
        assert!(DurableStateSurvives::check_recovered(1, &before, &short, false, 0).is_err());
        // Cut during a persist: the uncommitted tail may go, the committed prefix may not.
        assert!(DurableStateSurvives::check_recovered(1, &before, &short, true, 0).is_ok());
        let mut shorter = before.clone();
        shorter.truncate_after(1);
        assert!(DurableStateSurvives::check_recovered(1, &before, &shorter, true, 0).is_err());
        let mut revoted = before.clone();
        revoted.vote = Some(3);
        assert!(DurableStateSurvives::check_recovered(1, &before, &revoted, true, 0).is_err());
    }

    #[test]
    fn state_machine_safety_catches_different_entries_at_one_index() {
        let mut checker = StateMachineSafety::default();
        let a = entry(1, 1, "a");
        let b = entry(1, 2, "b");
        assert!(checker.on_apply(1, &a, payload_hash(&a.payload), 0).is_ok());
        assert!(checker.on_apply(2, &a, payload_hash(&a.payload), 0).is_ok());
        assert!(checker
            .on_apply(3, &b, payload_hash(&b.payload), 0)
            .is_err());
        assert_eq!(checker.applied_at(1), Some((1, payload_hash(&a.payload))));
    }

    #[test]
    fn state_machine_safety_catches_a_committed_entry_overwritten_on_disk() {
        let mut checker = StateMachineSafety::default();
        assert!(checker.on_durable_write(1, &Written::default(), 0).is_ok());
        let overwritten = Written {
            committed_overwritten: Some(1),
            ..Written::default()
        };
        assert!(checker.on_durable_write(1, &overwritten, 0).is_err());
    }

    fn store_with(puts: &[(&str, &str)]) -> chorus_mvcc::Store<chorus_mvcc::MemoryBackend> {
        let mut store = chorus_mvcc::Store::open(
            chorus_mvcc::MemoryBackend::new(),
            chorus_mvcc::Config::default(),
        )
        .unwrap_or_else(|error| panic!("opening a store: {error}"));
        for (index, (key, value)) in puts.iter().enumerate() {
            let put = chorus_mvcc::PutRequest::new(key.as_bytes(), value.as_bytes());
            if let Err(error) = store.put(index as u64 + 1, put) {
                panic!("put: {error}");
            }
        }
        store
    }

    #[test]
    fn mvcc_agreement_catches_a_revision_that_differs() {
        let a = store_with(&[("k", "1"), ("k", "2")]);
        let b = store_with(&[("k", "1"), ("k", "2")]);
        let c = store_with(&[("k", "1"), ("k", "X")]);
        assert!(MvccAgreement::check_final(&[(1, 2, &a), (2, 2, &b)], 0).is_ok());
        assert!(MvccAgreement::check_final(&[(1, 2, &a), (3, 2, &c)], 0).is_err());
        // Behind is fine, as long as the revisions both hold agree.
        let behind = store_with(&[("k", "1")]);
        assert!(MvccAgreement::check_final(&[(1, 2, &a), (2, 1, &behind)], 0).is_ok());
    }

    #[test]
    fn acked_writes_must_be_applied_everywhere() {
        let mut state_machine = StateMachineSafety::default();
        let mut acked = AckedWritesSurvive::new(2);
        let a = entry(1, 1, "a");
        let hash = payload_hash(&a.payload);
        state_machine.on_apply(1, &a, hash, 0).ok();
        acked.on_apply(1, &a, hash);
        acked.on_acknowledged(7, 1, 1, 0);
        assert!(acked.check_final(&state_machine, &[(1, 1)], 0).is_ok());
        // n2 claims to have caught up but never reached the acknowledged index.
        assert!(acked
            .check_final(&state_machine, &[(1, 1), (2, 0)], 0)
            .is_err());
        // An acknowledged write whose index holds another term's entry was lost.
        acked.on_acknowledged(7, 1, 5, 0);
        assert!(acked.check_final(&state_machine, &[(1, 1)], 0).is_err());
    }

    #[test]
    fn liveness_needs_a_new_entry_of_the_leaders_term_after_the_heal() {
        let mut liveness = Liveness::new(100, 10);
        let deadline = liveness.on_healed(1000, 5);
        assert_eq!(deadline, 2000);
        liveness.on_leader_apply(&entry(5, 3, "old"), 3, 1100);
        assert!(liveness.check_deadline(deadline).is_err());
        liveness.on_leader_apply(&entry(6, 2, "old term"), 3, 1100);
        assert!(liveness.check_deadline(deadline).is_err());
        liveness.on_leader_apply(&entry(6, 3, "new"), 3, 1200);
        assert!(liveness.check_deadline(deadline).is_ok());
        assert_eq!(liveness.recovery_ns(), Some(200));
    }
}
