//! The data every other module speaks in: revisions, key-values, events and key ranges.

use std::fmt;

/// The address of one change: `main` is the store revision of the write transaction that made it,
/// `sub` its position among that transaction's changes (0, 1, ...), as etcd's `revision`.
///
/// What etcd's API calls "a revision" (`mod_revision`, `create_revision`, the header revision, a
/// range's `revision`, a watch's `start_revision`, a compaction's `revision`) is always a `main`
/// revision, an `i64`; `sub` never leaves this crate except through [`crate::Backend`].
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// Bytes that sort like the revision: `main` then `sub`, 8 bytes each, big-endian. Only for
    /// non-negative revisions, which are the only ones the store makes.
    pub fn to_key_bytes(self) -> [u8; 16] {
        assert!(self.main >= 0 && self.sub >= 0, "negative revision {self}");
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.main.to_be_bytes());
        bytes[8..].copy_from_slice(&self.sub.to_be_bytes());
        bytes
    }

    /// The inverse of [`Revision::to_key_bytes`]; `None` if `bytes` is not 16 bytes or is negative.
    pub fn from_key_bytes(bytes: &[u8]) -> Option<Revision> {
        let main = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let sub = i64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        if bytes.len() != 16 || main < 0 || sub < 0 {
            return None;
        }
        Some(Revision { main, sub })
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}.{}", self.main, self.sub)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// One version of one key, as etcd's `mvccpb.KeyValue`.
///
/// `create_revision` is the main revision of the put that created the key (after its last delete),
/// `mod_revision` that of its last change, `version` counts the puts since creation (1 for the
/// first); `lease` is the lease id attached, 0 for none.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} (create {}, mod {}, version {}, lease {})",
            String::from_utf8_lossy(&self.key),
            String::from_utf8_lossy(&self.value),
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease
        )
    }
}

/// Whether an [`Event`] is a put or a delete, as etcd's `mvccpb.Event.EventType`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key, for watchers, as etcd's `mvccpb.Event`.
///
/// For a put, `kv` is the new version. For a delete, `kv` has only `key` and `mod_revision` (the
/// revision of the delete) set, as etcd sends it. `prev_kv` is the key's version just before the
/// change (what a watcher with `prev_kv` gets); `None` when the key did not exist then, or when
/// that version was compacted away (only possible for an event at exactly the compact revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// A set of keys: one key, or the keys in `[start, end)`, or all keys `>= start`.
///
/// Build one from etcd's `key`/`range_end` pair with [`KeyRange::from_etcd`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly this key.
    Key(Vec<u8>),
    /// The keys `>= start` and, if `end` is `Some`, `< end`. Empty when `end <= start`.
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// etcd's conventions for a `key` and `range_end`: an empty `range_end` means the single key
    /// `key`; `range_end == "\0"` means every key `>= key`; otherwise the keys in
    /// `[key, range_end)` (none when `range_end <= key`). For a prefix, pass
    /// [`prefix_range_end`]`(prefix)` as `range_end`.
    pub fn from_etcd(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Key(key.to_vec()),
            [0] => KeyRange::Range {
                start: key.to_vec(),
                end: None,
            },
            end => KeyRange::Range {
                start: key.to_vec(),
                end: Some(end.to_vec()),
            },
        }
    }

    /// The keys starting with `prefix` (all keys if `prefix` is empty).
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange::from_etcd(prefix, &prefix_range_end(prefix))
    }

    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange::Range {
            start: Vec::new(),
            end: None,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(only) => only.as_slice() == key,
            KeyRange::Range { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|end| key < end.as_slice())
            }
        }
    }

    /// Whether no key can be in the range.
    pub fn is_empty(&self) -> bool {
        match self {
            KeyRange::Key(_) => false,
            KeyRange::Range { start, end } => end.as_ref().is_some_and(|end| end <= start),
        }
    }
}

impl fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRange::Key(key) => write!(f, "{:?}", String::from_utf8_lossy(key)),
            KeyRange::Range { start, end: None } => {
                write!(f, "[{:?}, +inf)", String::from_utf8_lossy(start))
            }
            KeyRange::Range {
                start,
                end: Some(end),
            } => write!(
                f,
                "[{:?}, {:?})",
                String::from_utf8_lossy(start),
                String::from_utf8_lossy(end)
            ),
        }
    }
}

/// The `range_end` that makes a range cover every key starting with `prefix`: `prefix` with its
/// last byte below `0xff` incremented and what follows dropped, as etcd's clients compute it.
/// When there is no such byte (`prefix` is empty or all `0xff`) it is `"\0"`, "every key >= key".
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
