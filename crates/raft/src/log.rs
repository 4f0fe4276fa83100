//! The in-memory tail of the replicated log, with its commit, apply and persist marks.

use crate::types::{Entry, LogIndex, SnapshotMeta, Term};

/// The log after the latest snapshot.
///
/// # Invariants
/// - `entries` are contiguous and start at `snapshot.last_index + 1`; terms never decrease.
/// - `snapshot.last_index <= applied <= commit <= last_index()`.
/// - `persisted <= last_index()`; `unpersisted_from > persisted`.
pub(crate) struct RaftLog {
    pub(crate) snapshot: SnapshotMeta,
    entries: Vec<Entry>,
    pub(crate) commit: LogIndex,
    /// The last entry handed to the driver for applying.
    pub(crate) applied: LogIndex,
    /// The last entry known to be durable on this node's disk.
    pub(crate) persisted: LogIndex,
    /// The first entry not yet handed to the driver for persisting.
    pub(crate) unpersisted_from: LogIndex,
    /// The lowest index truncated since the last `Ready` was taken (`None`: none truncated).
    truncated_since_ready: Option<LogIndex>,
}

impl RaftLog {
    /// A log restored from disk: everything in it is already persisted.
    pub(crate) fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, commit: LogIndex) -> Self {
        let mut log = RaftLog {
            applied: snapshot.last_index,
            snapshot,
            entries,
            commit: LogIndex(0),
            persisted: LogIndex(0),
            unpersisted_from: LogIndex(0),
            truncated_since_ready: None,
        };
        log.persisted = log.last_index();
        log.unpersisted_from = log.persisted.next();
        log.commit = commit.max(log.snapshot.last_index).min(log.last_index());
        log.check_invariants();
        log
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot.last_index.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.snapshot.last_index, |e| e.index)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.snapshot.last_term, |e| e.term)
    }

    /// The term at `index`, if known: held in memory, or the snapshot's last entry.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub(crate) fn get(&self, index: LogIndex) -> Option<&Entry> {
        if index < self.first_index() {
            return None;
        }
        let offset = usize::try_from(index.0 - self.first_index().0).ok()?;
        self.entries.get(offset)
    }

    pub(crate) fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate whose log ends at (`index`, `term`) is at least as up to date as this
    /// log (Raft §5.4.1).
    pub(crate) fn is_up_to_date(&self, index: LogIndex, term: Term) -> bool {
        term > self.last_term() || (term == self.last_term() && index >= self.last_index())
    }

    /// Appends entries the leader created; `entries[0]` must follow the last entry.
    pub(crate) fn append_new(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "appended entry is not contiguous"
        );
        assert!(
            entry.term >= self.last_term(),
            "appended entry has a lower term"
        );
        self.entries.push(entry);
    }

    /// Merges entries received from the leader after a matching (prev_index, prev_term): entries
    /// already present with the same term are skipped; from the first conflict on, the local log is
    /// replaced (Raft §5.3). Returns the index of the last entry now known to match the leader.
    pub(crate) fn merge(&mut self, prev_index: LogIndex, entries: Vec<Entry>) -> LogIndex {
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        for entry in entries {
            if entry.index <= self.snapshot.last_index {
                continue;
            }
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        entry.index > self.commit,
                        "leader overwrites committed entry {} (commit {})",
                        entry.index,
                        self.commit
                    );
                    self.truncate_from(entry.index);
                    self.append_new(entry);
                }
                None => self.append_new(entry),
            }
        }
        last_new
    }

    fn truncate_from(&mut self, index: LogIndex) {
        let keep = usize::try_from(index.0 - self.first_index().0).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(index.prev());
        self.unpersisted_from = self.unpersisted_from.min(index);
        self.truncated_since_ready =
            Some(self.truncated_since_ready.map_or(index, |t| t.min(index)));
    }

    /// Entries in `[low, high)`, at most `bytes_max` of them by size (but at least one).
    pub(crate) fn slice(&self, low: LogIndex, high: LogIndex, bytes_max: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = low;
        while index < high {
            let Some(entry) = self.get(index) else { break };
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
            index = index.next();
        }
        out
    }

    /// The entries in `[low, high)` held in memory.
    pub(crate) fn held(&self, low: LogIndex, high: LogIndex) -> &[Entry] {
        let low = low.max(self.first_index());
        let high = high.min(self.last_index().next());
        if low >= high {
            return &[];
        }
        let start = (low.0 - self.first_index().0) as usize;
        let end = (high.0 - self.first_index().0) as usize;
        &self.entries[start..end]
    }

    /// Takes the entries to persist next.
    pub(crate) fn take_unpersisted(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        let out = self.slice(self.unpersisted_from, last.next(), usize::MAX);
        self.unpersisted_from = last.next();
        self.truncated_since_ready = None;
        out
    }

    /// The entries handed out in the last `Ready`, up to `last`, are durable.
    pub(crate) fn mark_persisted(&mut self, last: LogIndex) {
        let durable = match self.truncated_since_ready {
            Some(truncated) => last.min(truncated.prev()),
            None => last,
        };
        self.persisted = self.persisted.max(durable).min(self.last_index());
    }

    /// Committed entries not yet handed out for applying.
    pub(crate) fn take_committed(&mut self) -> Vec<Entry> {
        let out = self.slice(self.applied.next(), self.commit.next(), usize::MAX);
        if let Some(last) = out.last() {
            self.applied = last.index;
        }
        out
    }

    pub(crate) fn has_committed_to_apply(&self) -> bool {
        self.commit > self.applied
    }

    /// Drops entries up to `meta.last_index`, which the application's snapshot now covers.
    pub(crate) fn compact(&mut self, meta: SnapshotMeta) {
        assert!(meta.last_index <= self.applied, "compacting beyond applied");
        let drop = (meta.last_index.0 - self.snapshot.last_index.0) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot = meta;
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub(crate) fn reset_to_snapshot(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.commit = meta.last_index;
        self.applied = meta.last_index;
        self.persisted = meta.last_index;
        self.unpersisted_from = meta.last_index.next();
        self.truncated_since_ready = None;
        self.snapshot = meta;
    }

    pub(crate) fn check_invariants(&self) {
        let mut expected = self.first_index();
        let mut term = self.snapshot.last_term;
        for entry in &self.entries {
            assert_eq!(entry.index, expected, "log is not contiguous");
            assert!(entry.term >= term, "log terms decrease at {}", entry.index);
            expected = expected.next();
            term = entry.term;
        }
        assert!(
            self.snapshot.last_index <= self.applied,
            "applied below snapshot"
        );
        assert!(
            self.applied <= self.commit,
            "applied {} > commit {}",
            self.applied,
            self.commit
        );
        assert!(self.commit <= self.last_index(), "commit beyond the log");
        assert!(
            self.persisted <= self.last_index(),
            "persisted beyond the log"
        );
        assert!(
            self.unpersisted_from > self.persisted,
            "unpersisted marker behind persisted"
        );
    }
}
