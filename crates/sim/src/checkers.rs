//! One checker per property. Each is told what it needs as it happens (a leader seen, an entry
//! made durable, an entry applied, a write acknowledged) and answers with a [`Violation`] the
//! moment its property breaks; the ones that need the whole run check at the end.

use crate::disk::{Disk, Written};
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
/// are identical up to it. Checked incrementally on every durable write — an entry is identified
/// by (index, term) and must always carry the same payload after the same previous term, which
/// by induction gives the property — and pairwise over the durable logs at the end.
#[derive(Default)]
pub struct LogMatching {
    seen: HashMap<(u64, u64), (u64, u64, u64)>,
}

impl LogMatching {
    pub const NAME: &'static str = "log-matching";

    pub fn on_durable_write(
        &mut self,
        node: u64,
        disk: &Disk,
        written: &Written,
        now: Nanos,
    ) -> Checked {
        let Some((first, last)) = written.entries else {
            return Ok(());
        };
        let mut index = first;
        while index <= last {
            let Some(entry) = disk.entry(index) else {
                return violation(
                    Self::NAME,
                    now,
                    format!("n{node} wrote i{index} but lost it"),
                );
            };
            let previous_term = disk.term_at(index.prev()).map_or(u64::MAX, |t| t.0);
            let fingerprint = (payload_hash(&entry.payload), previous_term, node);
            match self.seen.get(&(index.0, entry.term.0)) {
                None => {
                    self.seen.insert((index.0, entry.term.0), fingerprint);
                }
                Some(&(payload, previous, first_node))
                    if payload != fingerprint.0 || previous != previous_term =>
                {
                    return violation(
                        Self::NAME,
                        now,
                        format!(
                            "entry i{index}/t{} differs between n{first_node} and n{node} \
                             (payload {payload:x} vs {:x}, previous term t{previous} vs t{previous_term})",
                            entry.term, fingerprint.0
                        ),
                    );
                }
                Some(_) => {}
            }
            index = index.next();
        }
        Ok(())
    }

    /// Pairwise over durable logs: every index both hold at or below the last index where their
    /// terms agree must hold the same entry.
    pub fn check_final(&self, disks: &[(u64, &Disk)], now: Nanos) -> Checked {
        for (position, (a, disk_a)) in disks.iter().enumerate() {
            for (b, disk_b) in &disks[position + 1..] {
                let low = disk_a.snapshot_index().max(disk_b.snapshot_index()).next();
                let high = disk_a.last_index().min(disk_b.last_index());
                let mut agreed = None;
                let mut index = high;
                while index >= low && index.0 > 0 {
                    if disk_a.term_at(index) == disk_b.term_at(index) {
                        agreed = Some(index);
                        break;
                    }
                    index = index.prev();
                }
                let Some(agreed) = agreed else { continue };
                let mut index = low;
                while index <= agreed {
                    if disk_a.entry(index) != disk_b.entry(index) {
                        return violation(
                            Self::NAME,
                            now,
                            format!(
                                "n{a} and n{b} agree on the term of i{agreed} but differ at i{index}: \
                                 {:?} vs {:?}",
                                disk_a.entry(index),
                                disk_b.entry(index)
                            ),
                        );
                    }
                    index = index.next();
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
                        entry.index, entry.term, entry.index
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

    /// Replicas that caught up must hold the same state.
    pub fn check_converged(&self, states: &[(u64, bytes::Bytes)], now: Nanos) -> Checked {
        if let Some((first, first_state)) = states.first() {
            for (node, state) in &states[1..] {
                if state != first_state {
                    return violation(
                        Self::NAME,
                        now,
                        format!(
                            "n{first} and n{node} applied the same log but hold different states"
                        ),
                    );
                }
            }
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

    pub fn on_durable_write(&mut self, node: u64, disk: &Disk, written: &Written, now: Nanos) {
        let checked = self
            .state_machine_safety
            .on_durable_write(node, written, now);
        self.record(checked);
        let checked = self.log_matching.on_durable_write(node, disk, written, now);
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
    use crate::disk::PendingWrite;
    use chorus_raft::{HardState, Term};

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

    fn disk_with(entries: Vec<Entry>) -> (Disk, Written) {
        let mut disk = Disk::new();
        disk.begin_write(PendingWrite {
            snapshot: None,
            entries,
            hard_state: None,
        });
        let written = disk.complete_write();
        (disk, written)
    }

    #[test]
    fn log_matching_catches_same_index_and_term_with_different_payload() {
        let mut checker = LogMatching::default();
        let (disk_a, written_a) = disk_with(vec![entry(1, 1, "a"), entry(2, 1, "b")]);
        let (disk_b, written_b) = disk_with(vec![entry(1, 1, "a"), entry(2, 1, "b")]);
        let (disk_c, written_c) = disk_with(vec![entry(1, 1, "a"), entry(2, 1, "X")]);
        assert!(checker.on_durable_write(1, &disk_a, &written_a, 0).is_ok());
        assert!(checker.on_durable_write(2, &disk_b, &written_b, 0).is_ok());
        assert!(checker.on_durable_write(3, &disk_c, &written_c, 0).is_err());
        assert!(checker
            .check_final(&[(1, &disk_a), (2, &disk_b)], 0)
            .is_ok());
        assert!(checker
            .check_final(&[(1, &disk_a), (3, &disk_c)], 0)
            .is_err());
    }

    #[test]
    fn log_matching_catches_a_different_history_before_a_matching_entry() {
        let mut checker = LogMatching::default();
        let (disk_a, written_a) = disk_with(vec![entry(1, 1, "a"), entry(2, 2, "b")]);
        let (disk_b, written_b) = disk_with(vec![entry(1, 2, "x"), entry(2, 2, "b")]);
        assert!(checker.on_durable_write(1, &disk_a, &written_a, 0).is_ok());
        assert!(checker.on_durable_write(2, &disk_b, &written_b, 0).is_err());
        assert!(LogMatching::default()
            .check_final(&[(1, &disk_a), (2, &disk_b)], 0)
            .is_err());
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
        let mut disk = Disk::new();
        disk.begin_write(PendingWrite {
            snapshot: None,
            entries: vec![entry(1, 1, "a")],
            hard_state: Some(HardState {
                term: Term(1),
                vote: None,
                commit: LogIndex(1),
            }),
        });
        assert!(checker
            .on_durable_write(1, &disk.complete_write(), 0)
            .is_ok());
        disk.begin_write(PendingWrite {
            snapshot: None,
            entries: vec![entry(1, 2, "b")],
            hard_state: None,
        });
        assert!(checker
            .on_durable_write(1, &disk.complete_write(), 0)
            .is_err());
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
