//! The in-memory key index: for every key, the revisions at which it changed, grouped in
//! generations (etcd's `keyIndex`). The values live in the backend, keyed by revision.
//!
//! Most keys are put once and never deleted, so the index is laid out for them: a key of up to 14
//! bytes is stored inline ([`IndexKey`]), and a history of one put is stored inline
//! ([`KeyHistory::Single`]), which makes such a key one 32-byte entry of the map and nothing else
//! (`tests/index_memory.rs` measures it).

mod key;

use crate::types::{KeyRange, Revision};
use key::IndexKey;
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
    /// A generation begun by a put at `revision`.
    fn created_at(revision: Revision) -> Generation {
        Generation {
            created: revision.main,
            first_version: 1,
            revisions: vec![revision],
            tombstone: None,
        }
    }

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

/// One key's history: its generations, oldest first.
///
/// # Invariants
///
/// Each [`Generation`]'s; there is at least one generation; every generation but the last has a
/// tombstone; each generation begins after the previous one's tombstone; no two changes of the
/// key share a `main` revision (a transaction writes a key at most once). A history that
/// `Single` can hold is a `Single`.
// `Box<Vec<_>>` on purpose: a thin pointer keeps the enum, and so every entry of the map, small.
#[allow(clippy::box_collection)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyHistory {
    /// One generation of one put at `Revision { main, sub }`, not deleted: created at `main`,
    /// version 1. Most keys, stored without an allocation (`sub` is a position within a
    /// transaction, far below `u32::MAX`).
    Single { main: i64, sub: u32 },
    /// Any other history. Boxed twice so that the enum stays 16 bytes.
    Many(Box<Vec<Generation>>),
}

const _: () = assert!(std::mem::size_of::<KeyHistory>() == 16);

impl KeyHistory {
    /// The history of a key created by a put at `revision`.
    fn created_at(revision: Revision) -> KeyHistory {
        match u32::try_from(revision.sub) {
            Ok(sub) => KeyHistory::Single {
                main: revision.main,
                sub,
            },
            Err(_) => KeyHistory::Many(Box::new(vec![Generation::created_at(revision)])),
        }
    }

    /// The generations, for a change: a `Single` becomes `Many` first.
    fn generations_mut(&mut self) -> &mut Vec<Generation> {
        if let KeyHistory::Single { main, sub } = *self {
            let revision = Revision::new(main, i64::from(sub));
            *self = KeyHistory::Many(Box::new(vec![Generation::created_at(revision)]));
        }
        match self {
            KeyHistory::Many(generations) => generations,
            KeyHistory::Single { .. } => unreachable!("a single history was just made many"),
        }
    }

    /// The generation still open (not deleted), for a change.
    fn open_generation_mut(&mut self) -> Option<&mut Generation> {
        self.generations_mut()
            .last_mut()
            .filter(|generation| generation.tombstone.is_none())
    }

    /// Turns a `Many` that `Single` can hold into a `Single`.
    fn make_single_if_possible(&mut self) {
        if let KeyHistory::Many(generations) = self {
            if let Some(single) = single_of(generations) {
                *self = single;
            }
        }
    }

    fn newest_change(&self) -> Revision {
        match self {
            KeyHistory::Single { main, sub } => Revision::new(*main, i64::from(*sub)),
            KeyHistory::Many(generations) => match generations.last() {
                Some(generation) => generation.newest_change(),
                None => panic!("key history without generations"),
            },
        }
    }

    /// How many revisions (puts and tombstones) the history holds.
    fn revision_count(&self) -> usize {
        match self {
            KeyHistory::Single { .. } => 1,
            KeyHistory::Many(generations) => generations
                .iter()
                .map(|generation| generation.revisions.len() + generation.tombstone.iter().len())
                .sum(),
        }
    }

    /// The key at main revision `at`: `None` if it did not exist then.
    fn get(&self, at: i64) -> Option<Found> {
        let generations = match self {
            KeyHistory::Single { main, sub } => {
                return (*main <= at).then(|| Found {
                    revision: Revision::new(*main, i64::from(*sub)),
                    created: *main,
                    version: 1,
                });
            }
            KeyHistory::Many(generations) => generations,
        };
        for generation in generations.iter().rev() {
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

    /// Every change at main revision `start` or later, appended to `changes`.
    fn changes_since(&self, key: &[u8], start: i64, changes: &mut Vec<Change>) {
        let generations = match self {
            KeyHistory::Single { main, sub } => {
                if *main >= start {
                    changes.push(Change {
                        revision: Revision::new(*main, i64::from(*sub)),
                        key: key.to_vec(),
                        is_delete: false,
                        previous: None,
                    });
                }
                return;
            }
            KeyHistory::Many(generations) => generations,
        };
        for generation in generations.iter() {
            if generation.newest_change().main < start {
                continue;
            }
            let from = generation
                .revisions
                .partition_point(|revision| revision.main < start);
            for position in from..generation.revisions.len() {
                changes.push(Change {
                    revision: generation.revisions[position],
                    key: key.to_vec(),
                    is_delete: false,
                    previous: position.checked_sub(1).map(|p| generation.revisions[p]),
                });
            }
            if let Some(tombstone) = generation.tombstone {
                changes.push(Change {
                    revision: tombstone,
                    key: key.to_vec(),
                    is_delete: true,
                    previous: Some(generation.last_revision()),
                });
            }
        }
    }

    /// Every revision held, into `all` (see [`KeyIndex::all_revisions`]).
    fn all_revisions<'a>(&self, key: &'a [u8], all: &mut BTreeMap<Revision, HeldRevision<'a>>) {
        let generations = match self {
            KeyHistory::Single { main, sub } => {
                all.insert(
                    Revision::new(*main, i64::from(*sub)),
                    (key, Some((*main, 1))),
                );
                return;
            }
            KeyHistory::Many(generations) => generations,
        };
        for generation in generations.iter() {
            for (position, revision) in generation.revisions.iter().enumerate() {
                let put = (generation.created, generation.version_at(position));
                all.insert(*revision, (key, Some(put)));
            }
            if let Some(tombstone) = generation.tombstone {
                all.insert(tombstone, (key, None));
            }
        }
    }

    /// Drops what compaction at `at` drops, appending the revisions dropped to `removed`:
    /// generations whose tombstone is at or below `at`, and in the generation alive at `at` every
    /// put before the newest one at or below `at`. Returns whether anything of the key is left.
    fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) -> bool {
        // A single put is the newest at or below `at`, or above it: compaction keeps it.
        let KeyHistory::Many(generations) = self else {
            return true;
        };
        let removed_before = removed.len();
        let dead = generations
            .iter()
            .take_while(|generation| generation.tombstone.is_some_and(|t| t.main <= at))
            .count();
        for generation in generations.drain(..dead) {
            removed.extend(&generation.revisions);
            removed.extend(generation.tombstone);
        }
        if let Some(generation) = generations.first_mut() {
            let at_or_below = generation
                .revisions
                .partition_point(|revision| revision.main <= at);
            if at_or_below > 1 {
                let drop = at_or_below - 1;
                removed.extend(generation.revisions.drain(..drop));
                generation.first_version += drop as i64;
                generation.revisions.shrink_to_fit();
            }
        }
        if generations.is_empty() {
            return false;
        }
        if removed.len() > removed_before {
            generations.shrink_to_fit();
            self.make_single_if_possible();
        }
        true
    }

    fn verify(
        &self,
        key: &[u8],
        current_revision: i64,
        compact_revision: i64,
    ) -> Result<(), String> {
        let name = String::from_utf8_lossy(key);
        let generations = match self {
            KeyHistory::Single { main, sub } => {
                let revision = Revision::new(*main, i64::from(*sub));
                if *main < 1 || *main > current_revision {
                    return Err(format!(
                        "key {name:?}: revision {revision} outside 1..={current_revision}"
                    ));
                }
                return Ok(());
            }
            KeyHistory::Many(generations) => generations,
        };
        if generations.is_empty() {
            return Err(format!("key {name:?} has no generations"));
        }
        if single_of(generations).is_some() {
            return Err(format!("key {name:?}: a single put stored as many"));
        }
        let mut previous_main = 0;
        let last = generations.len() - 1;
        for (position, generation) in generations.iter().enumerate() {
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

/// The `Single` that holds `generations`, if one can: one generation of one put that created it,
/// not deleted.
fn single_of(generations: &[Generation]) -> Option<KeyHistory> {
    let [generation] = generations else {
        return None;
    };
    let ([revision], None, 1) = (
        generation.revisions.as_slice(),
        generation.tombstone,
        generation.first_version,
    ) else {
        return None;
    };
    let sub = u32::try_from(revision.sub).ok()?;
    Some(KeyHistory::Single {
        main: revision.main,
        sub,
    })
}

/// All keys' histories.
///
/// # Invariants
///
/// Every [`KeyHistory`]'s; `revisions` is the number of revisions the histories hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    keys: BTreeMap<IndexKey, KeyHistory>,
    /// Puts and tombstones held, kept by every change so that counting them is O(1).
    revisions: usize,
}

impl KeyIndex {
    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key).and_then(|history| history.get(at))
    }

    /// The histories of the keys in `range`, in key order.
    fn histories<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a IndexKey, &'a KeyHistory)> + 'a> {
        match range {
            KeyRange::Key(key) => Box::new(self.keys.get_key_value(key.as_slice()).into_iter()),
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
            .filter_map(move |(key, history)| history.get(at).map(|found| (key.as_bytes(), found)))
    }

    /// Records a put of `key` at `revision`; returns the key's create revision and new version.
    pub(crate) fn put(&mut self, key: &[u8], revision: Revision) -> (i64, i64) {
        self.revisions += 1;
        let Some(history) = self.keys.get_mut(key) else {
            self.keys
                .insert(IndexKey::new(key), KeyHistory::created_at(revision));
            return (revision.main, 1);
        };
        let newest = history.newest_change();
        assert!(
            newest.main < revision.main,
            "put at {revision} after {newest}"
        );
        match history.open_generation_mut() {
            Some(generation) => {
                generation.revisions.push(revision);
                (
                    generation.created,
                    generation.version_at(generation.revisions.len() - 1),
                )
            }
            None => {
                history
                    .generations_mut()
                    .push(Generation::created_at(revision));
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
        self.revisions += 1;
    }

    /// Applies compaction at main revision `at`; returns the revisions no longer referenced.
    pub(crate) fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut removed = Vec::new();
        self.keys
            .retain(|_, history| history.compact(at, &mut removed));
        self.revisions -= removed.len();
        removed.sort_unstable();
        removed
    }

    /// Every change to a key in `range` at main revision `start` or later, in revision order.
    pub(crate) fn changes_since(&self, range: &KeyRange, start: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, history) in self.histories(range) {
            history.changes_since(key.as_bytes(), start, &mut changes);
        }
        changes.sort_unstable_by_key(|change| change.revision);
        changes
    }

    /// Every revision held, with the key it belongs to and, for a put, its create revision and
    /// version (`None` for a tombstone).
    pub(crate) fn all_revisions(&self) -> BTreeMap<Revision, HeldRevision<'_>> {
        let mut all = BTreeMap::new();
        for (key, history) in &self.keys {
            history.all_revisions(key.as_bytes(), &mut all);
        }
        all
    }

    /// How many revisions (puts and tombstones) the index holds.
    pub(crate) fn revision_count(&self) -> usize {
        self.revisions
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Checks the invariants of every history against the store's revisions (compaction at
    /// `compact_revision`, 0 for none), and the count of revisions.
    pub(crate) fn verify(
        &self,
        current_revision: i64,
        compact_revision: i64,
    ) -> Result<(), String> {
        let mut revisions = 0;
        for (key, history) in &self.keys {
            history.verify(key.as_bytes(), current_revision, compact_revision)?;
            revisions += history.revision_count();
        }
        if revisions != self.revisions {
            return Err(format!(
                "the index counts {} revisions but holds {revisions}",
                self.revisions
            ));
        }
        Ok(())
    }

    /// Rebuilds the map with its nodes full, after a restore. Built one key at a time in key
    /// order (as a restore, or a load of increasing keys, builds it), a `BTreeMap` leaves its
    /// nodes about half full; built in bulk, full. This halves the index of such a load.
    pub(crate) fn pack(&mut self) {
        self.keys = std::mem::take(&mut self.keys).into_iter().collect();
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
        let fresh = version == 1 && create_revision == revision.main;
        let Some(history) = self.keys.get_mut(key) else {
            // A key's first put read back begins a generation, or is what compaction left of one.
            let compacted = version > 1
                && create_revision >= 1
                && create_revision < revision.main
                && revision.main <= compact_revision;
            let history = if fresh {
                KeyHistory::created_at(revision)
            } else if compacted {
                KeyHistory::Many(Box::new(vec![Generation {
                    created: create_revision,
                    first_version: version,
                    revisions: vec![revision],
                    tombstone: None,
                }]))
            } else {
                return Err(cannot_begin(&name, revision, create_revision, version));
            };
            self.keys.insert(IndexKey::new(key), history);
            self.revisions += 1;
            return Ok(());
        };
        let newest = history.newest_change();
        if newest.main >= revision.main {
            return Err(format!("key {name:?}: put at {revision} after {newest}"));
        }
        match history.open_generation_mut() {
            Some(generation) => {
                let expected_version = generation.version_at(generation.revisions.len());
                if create_revision != generation.created || version != expected_version {
                    return Err(format!(
                        "key {name:?} at {revision}: create {create_revision} version {version}, \
                         expected create {} version {expected_version}",
                        generation.created
                    ));
                }
                generation.revisions.push(revision);
            }
            None if fresh => history
                .generations_mut()
                .push(Generation::created_at(revision)),
            None => return Err(cannot_begin(&name, revision, create_revision, version)),
        }
        self.revisions += 1;
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
        self.revisions += 1;
        Ok(())
    }
}

fn cannot_begin(name: &str, revision: Revision, create_revision: i64, version: i64) -> String {
    format!(
        "key {name:?} at {revision}: create {create_revision} version {version} cannot begin a \
         generation"
    )
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

    fn is_single(index: &KeyIndex, key: &[u8]) -> bool {
        matches!(index.keys.get(key), Some(KeyHistory::Single { .. }))
    }

    #[test]
    fn a_key_put_once_is_single_and_compaction_makes_it_single_again() {
        let mut index = KeyIndex::default();
        index.put(b"k", rev(2));
        assert!(is_single(&index, b"k"));
        index.tombstone(b"k", rev(3));
        assert!(!is_single(&index, b"k"));
        index.put(b"k", rev(4));
        index.compact(3);
        assert!(is_single(&index, b"k"), "the deleted generation is gone");
        index.put(b"k", rev(5));
        index.compact(5);
        assert!(!is_single(&index, b"k"), "version 2 is not a single put");
        index.put(b"big", Revision::new(6, i64::from(u32::MAX) + 1));
        assert!(!is_single(&index, b"big"), "the sub does not fit");
        assert_eq!(index.revision_count(), 2);
        index.verify(6, 5).unwrap();
    }

    /// The index against a model that keeps every change of every key in a list, with whether
    /// compaction has dropped it.
    mod model {
        use super::*;
        use proptest::prelude::*;

        const KEYS: &[&[u8]] = &[b"a", b"b", b"a key longer than fourteen bytes"];

        #[derive(Clone, Debug)]
        enum Step {
            Put { key: usize, sub: i64 },
            Delete { key: usize, sub: i64 },
            Compact { back: i64 },
        }

        fn step() -> impl Strategy<Value = Step> {
            // Subs past `u32::MAX` do not fit a `Single`.
            let sub = prop_oneof![4 => 0..3i64, 1 => Just(i64::from(u32::MAX) + 1)];
            prop_oneof![
                4 => (0..KEYS.len(), sub.clone()).prop_map(|(key, sub)| Step::Put { key, sub }),
                2 => (0..KEYS.len(), sub).prop_map(|(key, sub)| Step::Delete { key, sub }),
                1 => (0..4i64).prop_map(|back| Step::Compact { back }),
            ]
        }

        struct Event {
            revision: Revision,
            is_put: bool,
            held: bool,
        }

        #[derive(Default)]
        struct Model {
            keys: BTreeMap<&'static [u8], Vec<Event>>,
        }

        impl Model {
            fn get(&self, key: &[u8], at: i64) -> Option<Found> {
                let events = self.keys.get(key)?;
                let upto = events.partition_point(|event| event.revision.main <= at);
                let newest = events[..upto].last().filter(|event| event.is_put)?;
                let generation: Vec<_> = events[..upto]
                    .iter()
                    .rev()
                    .take_while(|event| event.is_put)
                    .collect();
                Some(Found {
                    revision: newest.revision,
                    created: generation[generation.len() - 1].revision.main,
                    version: generation.len() as i64,
                })
            }

            fn is_alive(&self, key: &[u8]) -> bool {
                self.keys
                    .get(key)
                    .and_then(|events| events.last())
                    .is_some_and(|event| event.is_put)
            }

            fn compact(&mut self, at: i64) -> Vec<Revision> {
                let mut removed = Vec::new();
                for events in self.keys.values_mut() {
                    let upto = events.partition_point(|event| event.revision.main <= at);
                    for (position, event) in events[..upto].iter_mut().enumerate() {
                        let kept = position + 1 == upto && event.is_put;
                        if event.held && !kept {
                            event.held = false;
                            removed.push(event.revision);
                        }
                    }
                }
                removed.sort_unstable();
                removed
            }

            fn changes_since(&self, start: i64) -> Vec<Change> {
                let mut changes = Vec::new();
                for (key, events) in &self.keys {
                    for (position, event) in events.iter().enumerate() {
                        if event.revision.main < start {
                            continue;
                        }
                        let before = position.checked_sub(1).map(|p| &events[p]);
                        changes.push(Change {
                            revision: event.revision,
                            key: key.to_vec(),
                            is_delete: !event.is_put,
                            previous: before.filter(|e| e.is_put).map(|e| e.revision),
                        });
                    }
                }
                changes.sort_unstable_by_key(|change| change.revision);
                changes
            }

            fn held(&self) -> usize {
                let events = self.keys.values().flatten();
                events.filter(|event| event.held).count()
            }
        }

        /// The index rebuilt from what it holds and packed, as opening a backend does.
        fn restored(index: &KeyIndex, compact_revision: i64) -> KeyIndex {
            let mut restored = KeyIndex::default();
            for (revision, (key, put)) in index.all_revisions() {
                match put {
                    Some((created, version)) => restored
                        .restore_put(key, revision, created, version, compact_revision)
                        .unwrap(),
                    None => restored.restore_tombstone(key, revision).unwrap(),
                }
            }
            restored.pack();
            restored
        }

        proptest! {
            #[test]
            fn index_agrees_with_a_list_of_changes(steps in proptest::collection::vec(step(), 1..40)) {
                let mut index = KeyIndex::default();
                let mut model = Model::default();
                let mut current = 1;
                let mut compacted = 0;
                for step in steps {
                    match step {
                        Step::Put { key, sub } => {
                            current += 1;
                            let revision = Revision::new(current, sub);
                            let (created, version) = index.put(KEYS[key], revision);
                            let events = model.keys.entry(KEYS[key]).or_default();
                            events.push(Event { revision, is_put: true, held: true });
                            let expected = model.get(KEYS[key], current).unwrap();
                            prop_assert_eq!((created, version), (expected.created, expected.version));
                        }
                        Step::Delete { key, sub } => {
                            if !model.is_alive(KEYS[key]) {
                                continue;
                            }
                            current += 1;
                            let revision = Revision::new(current, sub);
                            index.tombstone(KEYS[key], revision);
                            let events = model.keys.entry(KEYS[key]).or_default();
                            events.push(Event { revision, is_put: false, held: true });
                        }
                        Step::Compact { back } => {
                            let at = (current - back).max(compacted);
                            compacted = at;
                            prop_assert_eq!(index.compact(at), model.compact(at));
                        }
                    }
                    index.verify(current, compacted).unwrap();
                    prop_assert_eq!(index.revision_count(), model.held());
                    for key in KEYS {
                        for at in compacted.max(1)..=current {
                            prop_assert_eq!(index.get(key, at), model.get(key, at), "{:?} at {}", key, at);
                        }
                    }
                    let start = compacted + 1;
                    prop_assert_eq!(index.changes_since(&KeyRange::all(), start), model.changes_since(start));
                    prop_assert_eq!(&restored(&index, compacted), &index);
                }
            }
        }
    }
}
