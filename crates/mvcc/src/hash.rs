//! etcd's `HashKV`: one checksum over the key-value history up to a revision, so that members
//! with the same applied state can be compared (`etcdctl endpoint hashkv`).
//!
//! The hash is a CRC-32C (Castagnoli, as etcd's) over, for every record held whose main revision
//! is at most the revision asked for, in revision order: the revision (16 bytes, main and sub
//! big-endian, as the backend keys it) and the encoded record (the backend's record encoding:
//! key, create/mod revision, version, lease and value of a put, or the key of a tombstone).
//! Compaction is replicated, so members at the same applied state hold the same records and give
//! the same hash; the records a compaction kept (the newest put of each key at or below the
//! compaction point) are part of it, as in etcd. The value differs from etcd's own (etcd hashes
//! bbolt's bytes), which matters to no client: the hash is only ever compared between members.

use crate::backend::codec::encode_record;
use crate::backend::Backend;
use crate::error::{BackendError, Error};
use crate::store::Store;

/// The answer to [`Store::hash_kv`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HashKv {
    /// CRC-32C of the records up to `hash_revision` (see the module doc).
    pub hash: u32,
    /// The store's compaction point (0 if never compacted), as etcd's `compact_revision`.
    pub compact_revision: i64,
    /// The revision the hash covers: the one asked for, or the current one for 0.
    pub hash_revision: i64,
}

impl<B: Backend> Store<B> {
    /// The hash of every record up to `revision` (0 or less: the current revision). A revision
    /// above the current one is [`Error::FutureRevision`], one below the compaction point
    /// [`Error::Compacted`], as etcd's `HashKV`. Reads every record held: it costs a full scan.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv, Error> {
        self.check_running()?;
        self.check_read_revision(revision, self.current_revision)?;
        let hash_revision = if revision <= 0 {
            self.current_revision
        } else {
            revision
        };
        let mut hash = 0u32;
        let mut encoded = Vec::new();
        self.backend
            .for_each(&mut |at, record| {
                if at.main <= hash_revision {
                    encoded.clear();
                    encoded.extend_from_slice(&at.to_key_bytes());
                    encode_record(&record, &mut encoded);
                    hash = crc32c::crc32c_append(hash, &encoded);
                }
                Ok::<(), BackendError>(())
            })
            .map_err(Error::Fatal)?;
        Ok(HashKv {
            hash,
            compact_revision: self.compact_revision.unwrap_or(0),
            hash_revision,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::{Config, DeleteRangeRequest, Error, MemoryBackend, PutRequest, Store};

    fn store_with_history() -> Store<MemoryBackend> {
        let mut store = Store::open(MemoryBackend::new(), Config::default()).expect("open");
        store.put(1, PutRequest::new("a", "1")).expect("put");
        store.put(2, PutRequest::new("b", "2")).expect("put");
        store.put(3, PutRequest::new("a", "3")).expect("put");
        store
            .delete_range(4, DeleteRangeRequest::key("b"))
            .expect("delete");
        store
    }

    #[test]
    fn stores_with_the_same_history_hash_alike_at_every_revision() {
        let one = store_with_history();
        let two = store_with_history();
        for revision in 0..=5 {
            assert_eq!(one.hash_kv(revision), two.hash_kv(revision));
        }
    }

    #[test]
    fn the_hash_covers_only_revisions_up_to_the_one_asked_for() {
        let mut store = store_with_history();
        let at_three = store.hash_kv(3).expect("hash");
        assert_eq!(at_three.hash_revision, 3);
        assert_ne!(at_three.hash, store.hash_kv(4).expect("hash").hash);
        store.put(5, PutRequest::new("c", "later")).expect("put");
        assert_eq!(store.hash_kv(3), Ok(at_three));
        let current = store.hash_kv(0).expect("hash");
        assert_eq!(current.hash_revision, store.current_revision());
    }

    #[test]
    fn a_different_value_gives_a_different_hash() {
        let one = store_with_history();
        let mut two = Store::open(MemoryBackend::new(), Config::default()).expect("open");
        two.put(1, PutRequest::new("a", "1")).expect("put");
        two.put(2, PutRequest::new("b", "2")).expect("put");
        two.put(3, PutRequest::new("a", "X")).expect("put");
        assert_ne!(one.hash_kv(4), two.hash_kv(4));
        assert_eq!(
            one.hash_kv(3).map(|h| h.hash),
            one.hash_kv(3).map(|h| h.hash)
        );
        assert_eq!(one.hash_kv(2), two.hash_kv(2));
    }

    #[test]
    fn revisions_out_of_bounds_are_refused_and_the_compaction_point_is_reported() {
        let mut store = store_with_history();
        assert_eq!(
            store.hash_kv(9),
            Err(Error::FutureRevision {
                current_revision: 5
            })
        );
        store.compact(5, 3).expect("compact");
        assert_eq!(
            store.hash_kv(2),
            Err(Error::Compacted {
                compact_revision: 3
            })
        );
        let hash = store.hash_kv(0).expect("hash");
        assert_eq!(hash.compact_revision, 3);
        assert_eq!(hash.hash_revision, 5);
    }
}
