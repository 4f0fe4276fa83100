//! The versioned-value store of chorus, with etcd v3's revision semantics.
//!
//! A [`Store`] keeps every key's history: each write transaction makes one new store revision,
//! and every key records at which revisions it was created, changed and deleted
//! (`create_revision`, `mod_revision`, `version`, as etcd's `mvccpb.KeyValue`). On top of that it
//! serves what etcd's KV service does: ranges at any revision still held (with limits, sorting,
//! filters, counts), puts, deletes, transactions with compares and nested transactions, and
//! compaction. Every write also returns its [`Event`]s, and [`Store::events_since`] reads them
//! back from the history, which is what watches are built from.
//!
//! The key index lives in memory; the values live in a [`Backend`], keyed by revision:
//! [`MemoryBackend`] for the simulator and tests, [`RedbBackend`] on disk. Each write stores the
//! raft index it applies in the same backend transaction, so after a crash the store says where
//! to resume the log; writes need no fsync each (see [`Store::durable_applied_index`]).
//! [`Store::write_snapshot`] and [`decode_snapshot`] move the whole state as checksummed bytes.
//!
//! What it is not: it does no networking, reads no clock and runs no threads (the store is a
//! plain state machine over its backend; the persistent backend does file I/O when told to). It
//! knows nothing of raft beyond the opaque applied index, nothing of leases beyond the id stored
//! with a key (whether a lease exists is the lessor's check), and nothing of watchers (it hands
//! out events; who gets them is the server's business). It depends on no other crate of chorus.
//!
//! Requests and responses mirror etcd's protobuf messages field for field (see [`request`]); the
//! gRPC layer translates, once, at the edge. docs/mvcc.md describes the data model, the revision
//! semantics, the backend choice and the error messages.
//!
//! ```
//! use chorus_mvcc::{Config, DeleteRangeRequest, KeyRange, MemoryBackend, PutRequest, RangeRequest, Store};
//!
//! let mut store = Store::open(MemoryBackend::new(), Config::default())?;
//! assert_eq!(store.current_revision(), 1);
//! // Each write carries the raft index of the entry it applies.
//! let put = store.put(1, PutRequest::new("greeting", "hello"))?;
//! assert_eq!(put.response.revision, 2);
//! store.put(2, PutRequest::new("greeting", "hi"))?;
//! store.delete_range(3, DeleteRangeRequest::key("greeting"))?;
//!
//! let then = store.range(&RangeRequest { revision: 2, ..RangeRequest::key("greeting") })?;
//! assert_eq!(then.kvs[0].value, b"hello");
//! assert!(store.range(&RangeRequest::key("greeting"))?.kvs.is_empty());
//! let events = store.events_since(2, &KeyRange::prefix(b"greet"), 100)?;
//! assert_eq!(events.len(), 3);
//! # Ok::<(), chorus_mvcc::Error>(())
//! ```

pub mod backend;
mod error;
mod events;
mod hash;
mod index;
mod read;
mod read_txn;
pub mod request;
mod snapshot;
mod store;
mod types;
mod write;

pub use backend::{
    set_commit_observer, Backend, CommitObserver, EncodedVisitor, MemoryBackend, Meta, Record,
    RecordsView, RedbBackend, RedbConfig, SideEntry, WriteBatch,
};
pub use error::{BackendError, Error, SnapshotError};
pub use hash::HashKv;
pub use request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse,
};
pub use snapshot::{decode_snapshot, Snapshot, SnapshotSource};
pub use store::{Applied, Config, SideChanges, Store};
pub use types::{prefix_range_end, Event, EventKind, KeyRange, KeyValue, Revision};

/// A bare key index holding each of `keys` put once (at revisions 2, 3, ...), for
/// `tests/index_memory.rs` to measure what the index costs per key. Not an API.
#[doc(hidden)]
pub fn key_index_for_measurement(keys: &[Vec<u8>]) -> impl Sized {
    let mut index = index::KeyIndex::default();
    for (position, key) in keys.iter().enumerate() {
        index.put(key, Revision::new(position as i64 + 2, 0));
    }
    assert_eq!(index.key_count(), keys.len(), "duplicate keys");
    index
}
