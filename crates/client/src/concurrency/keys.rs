//! The key layout shared with etcd's `clientv3/concurrency` (and so with `etcdctl lock` and
//! `etcdctl elect`), and the range requests that find the owner and a waiter's predecessor.
//! Pure: it builds requests and picks from responses; the callers send them.
//!
//! A lock or election named `NAME` lives under the prefix `NAME/`. Each contender writes one
//! key, `NAME/<its lease id in lower-case hex>`, attached to its lease. Contenders are ordered
//! by the key's create revision: the lowest one holds the lock (leads); every other one waits
//! for the deletion of the key created just before its own.

use crate::kv::prefix_range_end;
use bytes::Bytes;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::mvccpb;
use pb::range_request::{SortOrder, SortTarget};

/// The prefix of every contender's key: `name` followed by `/`, as etcd's `NewMutex` and
/// `NewElection` make it.
pub fn contender_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// The key of the contender holding lease `lease_id`: the prefix and the id in lower-case
/// hex as Go's `%x` prints an `int64` (a negative id gets a `-` and its magnitude).
pub fn contender_key(prefix: &[u8], lease_id: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    let hex = if lease_id < 0 {
        format!("-{:x}", lease_id.unsigned_abs())
    } else {
        format!("{lease_id:x}")
    };
    key.extend_from_slice(hex.as_bytes());
    key
}

/// Reads the key under `prefix` with the lowest create revision: the owner (leader).
pub fn first_created_request(prefix: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: Bytes::from(prefix_range_end(prefix)),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..pb::RangeRequest::default()
    }
}

/// Reads the key under `prefix` with the highest create revision below `create_revision`:
/// the predecessor of the contender created at `create_revision`.
pub fn predecessor_request(prefix: &[u8], create_revision: i64) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: Bytes::from(prefix_range_end(prefix)),
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: create_revision.saturating_sub(1),
        limit: 1,
        ..pb::RangeRequest::default()
    }
}

/// The key with the lowest create revision among `kvs` (the owner). Does not trust the
/// server to have sorted or limited the answer.
pub fn pick_first_created(kvs: &[mvccpb::KeyValue]) -> Option<&mvccpb::KeyValue> {
    kvs.iter().min_by_key(|kv| kv.create_revision)
}

/// The key created last before `create_revision` among `kvs` (the predecessor to wait for),
/// `None` when every key was created at or after it. Does not trust the server to have
/// filtered, sorted or limited the answer.
pub fn pick_predecessor(
    kvs: &[mvccpb::KeyValue],
    create_revision: i64,
) -> Option<&mvccpb::KeyValue> {
    kvs.iter()
        .filter(|kv| kv.create_revision < create_revision)
        .max_by_key(|kv| kv.create_revision)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn kv(key: &str, create_revision: i64) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: Bytes::from(key.to_string()),
            create_revision,
            mod_revision: create_revision,
            ..mvccpb::KeyValue::default()
        }
    }

    #[test]
    fn keys_are_named_like_etcds_concurrency_package() {
        let prefix = contender_prefix(b"mylock");
        assert_eq!(prefix, b"mylock/");
        assert_eq!(
            contender_key(&prefix, 0x694d71ddacfda227),
            b"mylock/694d71ddacfda227"
        );
        assert_eq!(contender_key(&prefix, 10), b"mylock/a");
        assert_eq!(contender_key(&prefix, 0), b"mylock/0");
        // Go's %x of a negative int64.
        assert_eq!(contender_key(&prefix, -26), b"mylock/-1a");
        assert_eq!(
            contender_key(&prefix, i64::MIN),
            b"mylock/-8000000000000000"
        );
    }

    #[test]
    fn the_owner_query_sorts_by_create_revision_and_takes_one() {
        let request = first_created_request(b"l/");
        assert_eq!(
            (&request.key[..], &request.range_end[..]),
            (&b"l/"[..], &b"l0"[..])
        );
        assert_eq!(request.sort_order, SortOrder::Ascend as i32);
        assert_eq!(request.sort_target, SortTarget::Create as i32);
        assert_eq!((request.limit, request.max_create_revision), (1, 0));
    }

    #[test]
    fn the_predecessor_query_stops_below_the_waiters_revision() {
        let request = predecessor_request(b"l/", 42);
        assert_eq!(request.sort_order, SortOrder::Descend as i32);
        assert_eq!(request.sort_target, SortTarget::Create as i32);
        assert_eq!((request.limit, request.max_create_revision), (1, 41));
    }

    #[test]
    fn the_owner_is_the_first_created_whatever_the_key_order() {
        let kvs = [kv("l/c", 9), kv("l/a", 12), kv("l/b", 7)];
        assert_eq!(&pick_first_created(&kvs).unwrap().key[..], b"l/b");
        assert!(pick_first_created(&[]).is_none());
    }

    #[test]
    fn the_predecessor_is_the_last_created_before_the_waiter() {
        let kvs = [kv("l/a", 5), kv("l/b", 9), kv("l/c", 12), kv("l/d", 20)];
        assert_eq!(&pick_predecessor(&kvs, 12).unwrap().key[..], b"l/b");
        assert_eq!(&pick_predecessor(&kvs, 21).unwrap().key[..], b"l/d");
        // The first contender has none: it holds the lock.
        assert!(pick_predecessor(&kvs, 5).is_none());
        assert!(pick_predecessor(&[], 5).is_none());
    }
}
