//! Get, put, delete and compact: request builders (pure, tested) and the calls.

use crate::error::CallKind;
use crate::session::with_metadata;
use crate::{Client, Error};
use bytes::Bytes;
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;

/// The end of the range of every key that starts with `prefix`, as etcd computes it: the prefix
/// with its last byte below 0xff incremented (0xff bytes at the end dropped); `"\0"` (every key
/// from the start) when there is no such byte.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// A key, or a range of keys: `key` alone, or `[key, range_end)`; a `range_end` of `"\0"` means
/// every key from `key` on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// One key.
    pub fn key(key: impl Into<Vec<u8>>) -> KeyRange {
        KeyRange {
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Every key that starts with `prefix` (every key at all for an empty prefix).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> KeyRange {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return KeyRange {
                key: vec![0],
                range_end: vec![0],
            };
        }
        KeyRange {
            range_end: prefix_range_end(&prefix),
            key: prefix,
        }
    }

    /// Every key from `key` on (every key at all for an empty key).
    pub fn from_key(key: impl Into<Vec<u8>>) -> KeyRange {
        let key = key.into();
        KeyRange {
            key: if key.is_empty() { vec![0] } else { key },
            range_end: vec![0],
        }
    }

    /// `[key, range_end)`.
    pub fn between(key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) -> KeyRange {
        KeyRange {
            key: key.into(),
            range_end: range_end.into(),
        }
    }
}

/// A read of a key or a range (etcd's `RangeRequest`). Linearizable unless
/// [`serializable`](Get::serializable).
///
/// ```
/// use chorus_client::Get;
/// let request = Get::key("app/").prefix().limit(10).keys_only().into_request();
/// assert_eq!(&request.range_end[..], b"app0");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Get {
    range: KeyRange,
    limit: i64,
    revision: i64,
    keys_only: bool,
    count_only: bool,
    serializable: bool,
}

impl Get {
    pub fn key(key: impl Into<Vec<u8>>) -> Get {
        Get::range(KeyRange::key(key))
    }

    pub fn range(range: KeyRange) -> Get {
        Get {
            range,
            ..Get::default()
        }
    }

    /// Every key starting with this key.
    pub fn prefix(mut self) -> Get {
        self.range = KeyRange::prefix(std::mem::take(&mut self.range.key));
        self
    }

    /// Every key from this key on.
    pub fn from_key(mut self) -> Get {
        self.range = KeyRange::from_key(std::mem::take(&mut self.range.key));
        self
    }

    /// At most `limit` keys (0: no limit).
    pub fn limit(mut self, limit: i64) -> Get {
        self.limit = limit;
        self
    }

    /// As of `revision` (0: the latest).
    pub fn revision(mut self, revision: i64) -> Get {
        self.revision = revision;
        self
    }

    /// Keys without values.
    pub fn keys_only(mut self) -> Get {
        self.keys_only = true;
        self
    }

    /// Only the count of keys.
    pub fn count_only(mut self) -> Get {
        self.count_only = true;
        self
    }

    /// Served from the member's own applied state, without confirming it is current: faster,
    /// possibly stale.
    pub fn serializable(mut self) -> Get {
        self.serializable = true;
        self
    }

    pub fn into_request(self) -> pb::RangeRequest {
        pb::RangeRequest {
            key: Bytes::from(self.range.key),
            range_end: Bytes::from(self.range.range_end),
            limit: self.limit,
            revision: self.revision,
            keys_only: self.keys_only,
            count_only: self.count_only,
            serializable: self.serializable,
            ..pb::RangeRequest::default()
        }
    }
}

/// A write of one key (etcd's `PutRequest`).
///
/// ```
/// use chorus_client::Put;
/// let request = Put::new("k", "v").lease(0x1234).prev_kv().into_request();
/// assert_eq!(request.lease, 0x1234);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Put {
    key: Vec<u8>,
    value: Vec<u8>,
    lease: i64,
    prev_kv: bool,
}

impl Put {
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Put {
        Put {
            key: key.into(),
            value: value.into(),
            ..Put::default()
        }
    }

    /// Attach the key to a lease (it is deleted when the lease expires).
    pub fn lease(mut self, lease: i64) -> Put {
        self.lease = lease;
        self
    }

    /// Return the key's previous value.
    pub fn prev_kv(mut self) -> Put {
        self.prev_kv = true;
        self
    }

    pub fn into_request(self) -> pb::PutRequest {
        pb::PutRequest {
            key: Bytes::from(self.key),
            value: Bytes::from(self.value),
            lease: self.lease,
            prev_kv: self.prev_kv,
            ..pb::PutRequest::default()
        }
    }
}

/// A delete of a key or a range (etcd's `DeleteRangeRequest`).
///
/// ```
/// use chorus_client::Delete;
/// let request = Delete::key("jobs/").prefix().prev_kv().into_request();
/// assert_eq!(&request.range_end[..], b"jobs0");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Delete {
    range: KeyRange,
    prev_kv: bool,
}

impl Delete {
    pub fn key(key: impl Into<Vec<u8>>) -> Delete {
        Delete::range(KeyRange::key(key))
    }

    pub fn range(range: KeyRange) -> Delete {
        Delete {
            range,
            prev_kv: false,
        }
    }

    /// Every key starting with this key.
    pub fn prefix(mut self) -> Delete {
        self.range = KeyRange::prefix(std::mem::take(&mut self.range.key));
        self
    }

    /// Every key from this key on.
    pub fn from_key(mut self) -> Delete {
        self.range = KeyRange::from_key(std::mem::take(&mut self.range.key));
        self
    }

    /// Return the deleted key-values.
    pub fn prev_kv(mut self) -> Delete {
        self.prev_kv = true;
        self
    }

    pub fn into_request(self) -> pb::DeleteRangeRequest {
        pb::DeleteRangeRequest {
            key: Bytes::from(self.range.key),
            range_end: Bytes::from(self.range.range_end),
            prev_kv: self.prev_kv,
        }
    }
}

impl Client {
    pub(crate) fn kv_client(&self, channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel)
            .max_decoding_message_size(self.config().response_bytes_max)
            .max_encoding_message_size(usize::MAX)
    }

    /// Reads keys. Retried on another endpoint after any transient failure. With
    /// [`ReadPolicy::Follower`](crate::ReadPolicy) it is a stamped read from the nearest
    /// member ([`crate::read_policy`]).
    pub async fn get(&self, get: Get) -> Result<pb::RangeResponse, Error> {
        if self.config().read_policy == crate::ReadPolicy::Follower {
            return self.follower_get(get).await;
        }
        let request = get.into_request();
        self.call(CallKind::Read, |channel| {
            let mut kv = self.kv_client(channel);
            let request = request.clone();
            async move { kv.range(request).await }
        })
        .await
    }

    /// Writes a key. Retried after any transient failure inside the client's session (applied
    /// once), else only after failures that prove it was not applied ([`crate::error`]).
    pub async fn put(&self, put: Put) -> Result<pb::PutResponse, Error> {
        let request = put.into_request();
        self.write(|channel, metadata| {
            let mut kv = self.kv_client(channel);
            let request = with_metadata(request.clone(), metadata);
            async move { kv.put(request).await }
        })
        .await
    }

    /// Deletes a key or a range. Retried like [`put`](Client::put).
    pub async fn delete(&self, delete: Delete) -> Result<pb::DeleteRangeResponse, Error> {
        let request = delete.into_request();
        self.write(|channel, metadata| {
            let mut kv = self.kv_client(channel);
            let request = with_metadata(request.clone(), metadata);
            async move { kv.delete_range(request).await }
        })
        .await
    }

    /// Drops the history before `revision`. Retried like [`put`](Client::put).
    pub async fn compact(
        &self,
        revision: i64,
        physical: bool,
    ) -> Result<pb::CompactionResponse, Error> {
        let request = pb::CompactionRequest { revision, physical };
        self.write(|channel, metadata| {
            let mut kv = self.kv_client(channel);
            let request = with_metadata(request, metadata);
            async move { kv.compact(request).await }
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_etcd() {
        assert_eq!(prefix_range_end(b"abc"), b"abd");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }

    #[test]
    fn an_empty_prefix_or_from_key_means_every_key() {
        assert_eq!(KeyRange::prefix(""), KeyRange::between("\0", "\0"));
        assert_eq!(KeyRange::from_key(""), KeyRange::between("\0", "\0"));
        assert_eq!(KeyRange::from_key("m"), KeyRange::between("m", "\0"));
    }

    #[test]
    fn get_builds_etcds_range_request() {
        let request = Get::key("k")
            .from_key()
            .limit(5)
            .revision(9)
            .count_only()
            .serializable()
            .into_request();
        assert_eq!(&request.key[..], b"k");
        assert_eq!(&request.range_end[..], b"\0");
        assert_eq!(
            (request.limit, request.revision, request.count_only),
            (5, 9, true)
        );
        assert!(request.serializable && !request.keys_only);
    }

    #[test]
    fn delete_and_put_carry_their_flags() {
        let delete = Delete::key("a").prefix().prev_kv().into_request();
        assert_eq!(&delete.range_end[..], b"b");
        assert!(delete.prev_kv);
        let put = Put::new("k", "v").into_request();
        assert_eq!((put.lease, put.prev_kv), (0, false));
    }
}
