//! Helpers shared by the integration tests: a store over a backend that numbers the applied
//! index itself, and short constructors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{
    Applied, Backend, Config, DeleteRangeRequest, DeleteRangeResponse, Error, KeyValue,
    MemoryBackend, PutRequest, PutResponse, RangeRequest, RangeResponse, Store, TxnRequest,
    TxnResponse,
};

/// A store plus the next raft index to apply, which every write advances.
pub struct Harness<B: Backend> {
    pub store: Store<B>,
    pub next_index: u64,
}

pub fn memory() -> Harness<MemoryBackend> {
    Harness::new(Store::open(MemoryBackend::new(), Config::default()).unwrap())
}

impl<B: Backend> Harness<B> {
    pub fn new(store: Store<B>) -> Harness<B> {
        let next_index = store.applied_index() + 1;
        Harness { store, next_index }
    }

    fn index(&mut self) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    pub fn try_put(&mut self, request: PutRequest) -> Result<Applied<PutResponse>, Error> {
        let index = self.index();
        let result = self.store.put(index, request);
        self.store.check_invariants();
        result
    }

    /// Puts `key = value`; returns the revision made.
    pub fn put(&mut self, key: &str, value: &str) -> i64 {
        self.try_put(PutRequest::new(key, value))
            .unwrap()
            .response
            .revision
    }

    pub fn try_delete(
        &mut self,
        request: DeleteRangeRequest,
    ) -> Result<Applied<DeleteRangeResponse>, Error> {
        let index = self.index();
        let result = self.store.delete_range(index, request);
        self.store.check_invariants();
        result
    }

    /// Deletes one key; returns how many keys were deleted.
    pub fn delete(&mut self, key: &str) -> i64 {
        self.try_delete(DeleteRangeRequest::key(key))
            .unwrap()
            .response
            .deleted
    }

    pub fn try_txn(&mut self, request: TxnRequest) -> Result<Applied<TxnResponse>, Error> {
        let index = self.index();
        let result = self.store.txn(index, request);
        self.store.check_invariants();
        result
    }

    pub fn txn(&mut self, request: TxnRequest) -> Applied<TxnResponse> {
        self.try_txn(request).unwrap()
    }

    pub fn try_compact(&mut self, revision: i64) -> Result<i64, Error> {
        let index = self.index();
        let result = self.store.compact(index, revision);
        self.store.check_invariants();
        result
    }

    pub fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        self.store.range(&request)
    }

    /// The key's value now, if it exists.
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.range(RangeRequest::key(key))
            .unwrap()
            .kvs
            .into_iter()
            .next()
    }

    /// The key's value at `revision`, if it existed then.
    pub fn get_at(&self, key: &str, revision: i64) -> Result<Option<KeyValue>, Error> {
        let request = RangeRequest {
            revision,
            ..RangeRequest::key(key)
        };
        Ok(self.range(request)?.kvs.into_iter().next())
    }
}

pub fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modified,
        version,
        value: value.as_bytes().to_vec(),
        lease: 0,
    }
}

/// The keys of key-values, as strings.
pub fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}
