//! The in-memory key index: for every key, the revisions at which it changed, grouped in
//! generations (etcd's `keyIndex`). The values live in the backend, keyed by revision.

use crate::types::{KeyRange, Revision};
use std::collections::BTreeMap;
use std::ops::Bound;

/// The life of a key from one creation to its delete (or to now).
///
/// # Invariants
///
/// - `revisions` is not empty and strictly increasing in `main`; `tombstone`, if any, has a
///   `main` above all of them.
/// - `revisions[i]` has version `first_version + i`; `first_version >= 1`.
/// - `first_version == 1` exactly when `created == revisions[0].main`; otherwise the revisions
///   before `revisions[0]` were compacted away, which only happens to a key's first generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Main revision of the put that began the generation (the keys' `create_revision`).
    pub(crate) created: i64,
    pub(crate) first_version: i64,
    /// The puts, oldest first.
    pub(crate) revisions: Vec<Revision>,
    /// The delete that ended the generation.
    pub(crate) tombstone: Option<Revision>,
}

impl Generation {
    fn version_at(&self, position: usize) -> i64 {
        self.first_version + position as i64
    }

    fn last_revision(&self) -> Revision {
        match self.revisions.last() {
            Some(revision) => *revision,
            None => panic!("generation without revisions"),
        }
    }

    /// The newest change, the tombstone if there is one.
    fn newest_change(&self) -> Revision {
        self.tombstone.unwrap_or_else(|| self.last_revision())
    }
}

/// What a key was at some revision.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// The put that made this version: where its record lives.
    pub(crate) revision: Revision,
    pub(crate) created: i64,
    pub(crate) version: i64,
}

/// One change recorded in the index, for the event feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) revision: Revision,
    pub(crate) key: Vec<u8>,
    pub(crate) is_delete: bool,
    /// The put the change replaced, if it is still held.
    pub(crate) previous: Option<Revision>,
}

/// What the index knows of one revision: the key, and for a put (not a tombstone) the create
/// revision and version.
pub(crate) type HeldRevision<'a> = (&'a [u8], Option<(i64, i64)>);

/// One key's history.
///
/// # Invariants
///
/// Each [`Generation`]'s; `generations` is not empty; every generation but the last has a
/// tombstone; each generation begins after the previous one's tombstone; no two changes of the
/// key share a `main` revision (a transaction writes a key at most once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    pub(crate) generations: Vec<Generation>,
}

impl KeyHistory {
    fn open_generation_mut(&mut self) -> Option<&mut Generation> {
        self.generations
            .last_mut()
            .filter(|generation| generation.tombstone.is_none())
    }

    fn newest_change(&self) -> Option<Revision> {
        self.generations.last().map(Generation::newest_change)
    }

    /// The key at main revision `at`: `None` if it did not exist then.
    fn get(&self, at: i64) -> Option<Found> {
        for generation in self.generations.iter().rev() {
            if generation.revisions[0].main > at {
                continue;
            }
            if generation
                .tombstone
                .is_some_and(|tombstone| tombstone.main <= at)
            {
                return None;
            }
            let position = generation
                .revisions
                .partition_point(|revision| revision.main <= at)
                - 1;
            return Some(Found {
                revision: generation.revisions[position],
                created: generation.created,
                version: generation.version_at(position),
            });
        }
        None
    }

    /// Drops what compaction at `at` drops, appending the revisions dropped to `removed`:
    /// generations whose tombstone is at or below `at`, and in the generation alive at `at` every
    /// put before the newest one at or below `at`. Returns whether anything of the key is left.
    fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) -> bool {
        let dead = self
            .generations
            .iter()
            .take_while(|generation| generation.tombstone.is_some_and(|t| t.main <= at))
            .count();
        for generation in self.generations.drain(..dead) {
            removed.extend(&generation.revisions);
            removed.extend(generation.tombstone);
        }
        if let Some(generation) = self.generations.first_mut() {
            let at_or_below = generation
                .revisions
                .partition_point(|revision| revision.main <= at);
            if at_or_below > 1 {
                let drop = at_or_below - 1;
                removed.extend(generation.revisions.drain(..drop));
                generation.first_version += drop as i64;
            }
        }
        !self.generations.is_empty()
    }

    fn verify(
        &self,
        key: &[u8],
        current_revision: i64,
        compact_revision: i64,
    ) -> Result<(), String> {
        let name = String::from_utf8_lossy(key);
        if self.generations.is_empty() {
            return Err(format!("key {name:?} has no generations"));
        }
        let mut previous_main = 0;
        let last = self.generations.len() - 1;
        for (position, generation) in self.generations.iter().enumerate() {
            if generation.revisions.is_empty() {
                return Err(format!("key {name:?} has an empty generation"));
            }
            if position < last && generation.tombstone.is_none() {
                return Err(format!(
                    "key {name:?} has an open generation before its last"
                ));
            }
            if generation.first_version < 1 {
                return Err(format!(
                    "key {name:?} has version {}",
                    generation.first_version
                ));
            }
            let first = generation.revisions[0].main;
            let compacted_start = generation.created != first;
            if compacted_start != (generation.first_version != 1) {
                return Err(format!(
                    "key {name:?}: created {} but first kept put {first} has version {}",
                    generation.created, generation.first_version
                ));
            }
            if compacted_start
                && (position != 0 || generation.created > first || first > compact_revision)
            {
                return Err(format!(
                    "key {name:?}: generation created at {} starts at {first}, compacted at {}",
                    generation.created, compact_revision
                ));
            }
            let changes = generation.revisions.iter().chain(&generation.tombstone);
            for (change, revision) in changes.enumerate() {
                if revision.main <= previous_main || revision.sub < 0 {
                    return Err(format!("key {name:?}: revision {revision} out of order"));
                }
                if revision.main > current_revision {
                    return Err(format!(
                        "key {name:?}: revision {revision} above current {current_revision}"
                    ));
                }
                let kept_below_compaction = position == 0 && change == 0;
                if revision.main <= compact_revision && !kept_below_compaction {
                    return Err(format!(
                        "key {name:?}: revision {revision} survived compaction at {compact_revision}"
                    ));
                }
                previous_main = revision.main;
            }
            if generation
                .tombstone
                .is_some_and(|t| t.main <= compact_revision)
            {
                return Err(format!("key {name:?}: tombstone survived compaction"));
            }
        }
        Ok(())
    }
}

/// All keys' histories.
///
/// # Invariants
///
/// Every [`KeyHistory`]'s; no key has an empty history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
}

impl KeyIndex {
    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key).and_then(|history| history.get(at))
    }

    /// The histories of the keys in `range`, in key order.
    fn histories<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyHistory)> + 'a> {
        match range {
            KeyRange::Key(key) => Box::new(self.keys.get_key_value(key).into_iter()),
            _ if range.is_empty() => Box::new(std::iter::empty()),
            KeyRange::Range { start, end } => {
                let end = match end {
                    Some(end) => Bound::Excluded(end.as_slice()),
                    None => Bound::Unbounded,
                };
                Box::new(
                    self.keys
                        .range::<[u8], _>((Bound::Included(start.as_slice()), end)),
                )
            }
        }
    }

    /// The keys in `range` that exist at `at`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        range: &'a KeyRange,
        at: i64,
    ) -> impl Iterator<Item = (&'a [u8], Found)> + 'a {
        self.histories(range)
            .filter_map(move |(key, history)| history.get(at).map(|found| (key.as_slice(), found)))
    }

    /// Records a put of `key` at `revision`; returns the key's create revision and new version.
    pub(crate) fn put(&mut self, key: &[u8], revision: Revision) -> (i64, i64) {
        let history = self.keys.entry(key.to_vec()).or_default();
        if let Some(newest) = history.newest_change() {
            assert!(
                newest.main < revision.main,
                "put at {revision} after {newest}"
            );
        }
        match history.open_generation_mut() {
            Some(generation) => {
                generation.revisions.push(revision);
                (
                    generation.created,
                    generation.version_at(generation.revisions.len() - 1),
                )
            }
            None => {
                history.generations.push(Generation {
                    created: revision.main,
                    first_version: 1,
                    revisions: vec![revision],
                    tombstone: None,
                });
                (revision.main, 1)
            }
        }
    }

    /// Records a delete of `key` at `revision`; the key must exist.
    pub(crate) fn tombstone(&mut self, key: &[u8], revision: Revision) {
        let generation = self
            .keys
            .get_mut(key)
            .and_then(KeyHistory::open_generation_mut);
        let Some(generation) = generation else {
            panic!("delete of absent key {:?}", String::from_utf8_lossy(key));
        };
        let newest = generation.last_revision();
        assert!(
            newest.main < revision.main,
            "delete at {revision} after {newest}"
        );
        generation.tombstone = Some(revision);
    }

    /// Applies compaction at main revision `at`; returns the revisions no longer referenced.
    pub(crate) fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut removed = Vec::new();
        self.keys
            .retain(|_, history| history.compact(at, &mut removed));
        removed.sort_unstable();
        removed
    }

    /// Every change to a key in `range` at main revision `start` or later, in revision order.
    pub(crate) fn changes_since(&self, range: &KeyRange, start: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, history) in self.histories(range) {
            for generation in &history.generations {
                if generation.newest_change().main < start {
                    continue;
                }
                let from = generation
                    .revisions
                    .partition_point(|revision| revision.main < start);
                for position in from..generation.revisions.len() {
                    changes.push(Change {
                        revision: generation.revisions[position],
                        key: key.clone(),
                        is_delete: false,
                        previous: position.checked_sub(1).map(|p| generation.revisions[p]),
                    });
                }
                if let Some(tombstone) = generation.tombstone {
                    changes.push(Change {
                        revision: tombstone,
                        key: key.clone(),
                        is_delete: true,
                        previous: Some(generation.last_revision()),
                    });
                }
            }
        }
        changes.sort_unstable_by_key(|change| change.revision);
        changes
    }

    /// Every revision held, with the key it belongs to and, for a put, its create revision and
    /// version (`None` for a tombstone).
    pub(crate) fn all_revisions(&self) -> BTreeMap<Revision, HeldRevision<'_>> {
        let mut all = BTreeMap::new();
        for (key, history) in &self.keys {
            for generation in &history.generations {
                for (position, revision) in generation.revisions.iter().enumerate() {
                    let put = (generation.created, generation.version_at(position));
                    all.insert(*revision, (key.as_slice(), Some(put)));
                }
                if let Some(tombstone) = generation.tombstone {
                    all.insert(tombstone, (key.as_slice(), None));
                }
            }
        }
        all
    }

    /// How many revisions (puts and tombstones) the index holds.
    pub(crate) fn revision_count(&self) -> usize {
        let generations = self.keys.values().flat_map(|history| &history.generations);
        generations
            .map(|generation| generation.revisions.len() + generation.tombstone.iter().len())
            .sum()
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Checks the invariants of every history against the store's revisions (compaction at
    /// `compact_revision`, 0 for none).
    pub(crate) fn verify(
        &self,
        current_revision: i64,
        compact_revision: i64,
    ) -> Result<(), String> {
        for (key, history) in &self.keys {
            history.verify(key, current_revision, compact_revision)?;
        }
        Ok(())
    }

    /// Adds one put read back from storage, in revision order, checking it against what came
    /// before. `compact_revision` is 0 for none.
    pub(crate) fn restore_put(
        &mut self,
        key: &[u8],
        revision: Revision,
        create_revision: i64,
        version: i64,
        compact_revision: i64,
    ) -> Result<(), String> {
        let name = String::from_utf8_lossy(key);
        let history = self.keys.entry(key.to_vec()).or_default();
        if let Some(newest) = history.newest_change() {
            if newest.main >= revision.main {
                return Err(format!("key {name:?}: put at {revision} after {newest}"));
            }
        }
        let had_history = !history.generations.is_empty();
        if let Some(generation) = history.open_generation_mut() {
            let expected_version = generation.version_at(generation.revisions.len());
            if create_revision != generation.created || version != expected_version {
                return Err(format!(
                    "key {name:?} at {revision}: create {create_revision} version {version}, \
                     expected create {} version {expected_version}",
                    generation.created
                ));
            }
            generation.revisions.push(revision);
            return Ok(());
        }
        let fresh = version == 1 && create_revision == revision.main;
        let compacted = !had_history
            && version > 1
            && create_revision >= 1
            && create_revision < revision.main
            && revision.main <= compact_revision;
        if !fresh && !compacted {
            return Err(format!(
                "key {name:?} at {revision}: create {create_revision} version {version} cannot \
                 begin a generation"
            ));
        }
        history.generations.push(Generation {
            created: create_revision,
            first_version: version,
            revisions: vec![revision],
            tombstone: None,
        });
        Ok(())
    }

    /// Adds one tombstone read back from storage, in revision order.
    pub(crate) fn restore_tombstone(
        &mut self,
        key: &[u8],
        revision: Revision,
    ) -> Result<(), String> {
        let name = String::from_utf8_lossy(key);
        let generation = self
            .keys
            .get_mut(key)
            .and_then(KeyHistory::open_generation_mut);
        let Some(generation) = generation else {
            return Err(format!(
                "key {name:?}: tombstone at {revision} of an absent key"
            ));
        };
        let newest = generation.last_revision();
        if newest.main >= revision.main {
            return Err(format!(
                "key {name:?}: tombstone at {revision} after {newest}"
            ));
        }
        generation.tombstone = Some(revision);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn versions_count_puts_within_a_generation_and_restart_after_a_delete() {
        let mut index = KeyIndex::default();
        assert_eq!(index.put(b"k", rev(2)), (2, 1));
        assert_eq!(index.put(b"k", rev(3)), (2, 2));
        index.tombstone(b"k", rev(4));
        assert_eq!(index.put(b"k", rev(5)), (5, 1));
        assert_eq!(
            index.get(b"k", 3),
            Some(Found {
                revision: rev(3),
                created: 2,
                version: 2
            })
        );
        assert_eq!(index.get(b"k", 4), None);
        assert_eq!(index.get(b"k", 1), None);
        assert_eq!(
            index.get(b"k", 9),
            Some(Found {
                revision: rev(5),
                created: 5,
                version: 1
            })
        );
        index.verify(5, 0).unwrap();
    }

    #[test]
    fn compaction_keeps_the_newest_put_at_or_below_the_compact_revision() {
        let mut index = KeyIndex::default();
        index.put(b"a", rev(2));
        index.put(b"a", rev(3));
        index.put(b"a", rev(5));
        index.put(b"b", rev(4));
        index.tombstone(b"b", rev(6));
        assert_eq!(index.compact(4), vec![rev(2)]);
        assert_eq!(
            index.get(b"a", 4),
            Some(Found {
                revision: rev(3),
                created: 2,
                version: 2
            })
        );
        assert_eq!(
            index.get(b"b", 4),
            Some(Found {
                revision: rev(4),
                created: 4,
                version: 1
            })
        );
        index.verify(6, 4).unwrap();
        assert_eq!(index.compact(6), vec![rev(3), rev(4), rev(6)]);
        assert_eq!(index.key_count(), 1);
        index.verify(6, 6).unwrap();
    }

    #[test]
    fn compaction_drops_a_tombstone_at_the_compact_revision() {
        let mut index = KeyIndex::default();
        index.put(b"a", rev(2));
        index.tombstone(b"a", rev(3));
        assert_eq!(index.compact(3), vec![rev(2), rev(3)]);
        assert_eq!(index.key_count(), 0);
    }

    #[test]
    fn changes_since_lists_puts_and_deletes_with_their_predecessors() {
        let mut index = KeyIndex::default();
        index.put(b"a", rev(2));
        index.put(b"a", rev(3));
        index.tombstone(b"a", rev(4));
        index.put(b"b", Revision::new(4, 1));
        let changes = index.changes_since(&KeyRange::all(), 3);
        let summary: Vec<_> = changes
            .iter()
            .map(|c| (c.revision, c.key.clone(), c.is_delete, c.previous))
            .collect();
        assert_eq!(
            summary,
            vec![
                (rev(3), b"a".to_vec(), false, Some(rev(2))),
                (rev(4), b"a".to_vec(), true, Some(rev(3))),
                (Revision::new(4, 1), b"b".to_vec(), false, None),
            ]
        );
    }
}
