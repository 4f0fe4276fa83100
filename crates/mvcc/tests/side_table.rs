//! The backend's side table: written in the same batch as the store's writes, durable with
//! them, replaced by a snapshot installation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_mvcc::{
    Backend, Config, MemoryBackend, PutRequest, RedbBackend, RedbConfig, SideChanges, Store,
};

fn set(key: &str, value: &str) -> SideChanges {
    SideChanges {
        puts: vec![(key.as_bytes().to_vec(), value.as_bytes().to_vec())],
        removes: Vec::new(),
    }
}

fn entries<B: Backend>(store: &Store<B>) -> Vec<(String, String)> {
    store
        .side_entries()
        .unwrap()
        .into_iter()
        .map(|(key, value)| {
            (
                String::from_utf8(key).unwrap(),
                String::from_utf8(value).unwrap(),
            )
        })
        .collect()
}

/// Stages, a deferred write with a side change decided after it, a removal, then reopens.
fn exercise<B: Backend>(mut store: Store<B>) -> B {
    store.stage_side(set("a", "1"));
    store.record_applied_index(1).unwrap();
    assert_eq!(entries(&store), [("a".into(), "1".into())]);

    store.defer_write();
    let put = store.put(2, PutRequest::new("k", "v")).unwrap();
    // Held back: the backend does not have the put yet.
    assert_eq!(store.backend().meta().unwrap().applied_index, 1);
    store
        .write_deferred(set("b", &put.response.revision.to_string()))
        .unwrap();
    assert_eq!(store.backend().meta().unwrap().applied_index, 2);
    assert_eq!(
        entries(&store),
        [("a".into(), "1".into()), ("b".into(), "2".into())]
    );

    // A deferral with no write of its own writes the side change with the current meta.
    store.defer_write();
    store
        .write_deferred(SideChanges {
            puts: Vec::new(),
            removes: vec![b"a".to_vec()],
        })
        .unwrap();
    assert_eq!(entries(&store), [("b".into(), "2".into())]);
    store.check_invariants();
    store.persist().unwrap();
    store.into_backend()
}

#[test]
fn side_entries_survive_reopen_on_memory_and_redb() {
    let backend = exercise(Store::open(MemoryBackend::new(), Config::default()).unwrap());
    let store = Store::open(backend, Config::default()).unwrap();
    assert_eq!(entries(&store), [("b".into(), "2".into())]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let backend = RedbBackend::open(&path, RedbConfig::default()).unwrap();
    drop(exercise(Store::open(backend, Config::default()).unwrap()));
    let backend = RedbBackend::open(&path, RedbConfig::default()).unwrap();
    let store = Store::open(backend, Config::default()).unwrap();
    assert_eq!(entries(&store), [("b".into(), "2".into())]);
    assert_eq!(store.applied_index(), 2);
}

#[test]
fn a_snapshot_installation_replaces_the_side_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = Store::open(MemoryBackend::new(), Config::default()).unwrap();
    source.put(1, PutRequest::new("k", "v")).unwrap();
    let bytes = source.snapshot_bytes().unwrap();
    let backend = RedbBackend::open(&dir.path().join("db.redb"), RedbConfig::default()).unwrap();
    let mut target = Store::open(backend, Config::default()).unwrap();
    target.stage_side(set("old", "x"));
    target.record_applied_index(1).unwrap();
    target.stage_side(set("staged", "dropped"));
    target
        .restore_snapshot_with_side(&bytes, vec![(b"new".to_vec(), b"y".to_vec())])
        .unwrap();
    assert_eq!(entries(&target), [("new".into(), "y".into())]);
    target.put(2, PutRequest::new("k", "w")).unwrap();
    assert_eq!(entries(&target), [("new".into(), "y".into())]);
    target.restore_snapshot(&bytes).unwrap();
    assert!(entries(&target).is_empty());
}
