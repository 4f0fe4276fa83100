//! What the checkers know a replica's disk holds: the snapshot it starts from, the log after it
//! (term and payload fingerprint of each entry) and the hard state.
//!
//! The replica's real durable state is `chorus-storage`'s WAL, hard state file and snapshot
//! store on the replica's `SimFs`. The simulator follows it from outside: after every persist
//! that returned, from raft's log up to raft's persisted index (what the persist made durable);
//! after every restart, from the log that recovery read back from the WAL — and it checks the
//! two against each other (`durable-state-survives`).

/// A replica's durable state as the checkers follow it.
///
/// # Invariants
/// - `entries[i]` is the entry at index `snapshot_index + 1 + i`;
/// - `commit` is the hard state's commit index, as it is on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableLog {
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    /// (term, payload hash) of the entries after the snapshot.
    pub entries: Vec<(u64, u64)>,
    pub term: u64,
    pub vote: Option<u64>,
    pub commit: u64,
}

impl DurableLog {
    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    /// The term at `index`: of the snapshot's last entry, of a held entry, or 0 before the log.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|(term, _)| term)
    }

    /// (term, payload hash) of the entry at `index`, if held after the snapshot.
    pub fn entry(&self, index: u64) -> Option<(u64, u64)> {
        if index <= self.snapshot_index {
            return None;
        }
        let position = usize::try_from(index - self.snapshot_index - 1).ok()?;
        self.entries.get(position).copied()
    }

    /// Drops every entry after `index`.
    pub fn truncate_after(&mut self, index: u64) {
        assert!(
            index >= self.snapshot_index,
            "truncating at i{index}, inside the snapshot at i{}",
            self.snapshot_index
        );
        self.entries
            .truncate((index - self.snapshot_index) as usize);
    }

    pub fn push(&mut self, term: u64, hash: u64) {
        self.entries.push((term, hash));
    }

    /// The log now starts after a snapshot at `index` (this node's own, or the leader's).
    /// Entries the snapshot covers are dropped; the rest stays if the log holds the snapshot's
    /// last entry, else the whole log goes.
    pub fn start_after_snapshot(&mut self, index: u64, term: u64) {
        let keeps_rest = self.term_at(index) == Some(term);
        if keeps_rest && index >= self.snapshot_index {
            let covered = (index - self.snapshot_index) as usize;
            self.entries.drain(..covered.min(self.entries.len()));
        } else {
            self.entries.clear();
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
    }
}

/// What one persist changed, for the checkers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// New durable entries, first and last index.
    pub entries: Option<(u64, u64)>,
    /// The first entry at or below the durable commit index that was replaced or dropped.
    pub committed_overwritten: Option<u64>,
    /// A snapshot from the leader replaced a log committed further: (snapshot, commit).
    pub snapshot_behind_commit: Option<(u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_keeps_the_log_after_it_only_when_the_log_holds_its_last_entry() {
        let mut log = DurableLog::default();
        for term in [1, 1, 2, 2] {
            log.push(term, 0);
        }
        let mut own = log.clone();
        own.start_after_snapshot(2, 1);
        assert_eq!(
            (own.snapshot_index, own.last_index(), own.term_at(3)),
            (2, 4, Some(2))
        );
        let mut leaders = log.clone();
        leaders.start_after_snapshot(3, 5);
        assert_eq!((leaders.snapshot_index, leaders.last_index()), (3, 3));
        log.truncate_after(1);
        assert_eq!(log.last_index(), 1);
    }
}
