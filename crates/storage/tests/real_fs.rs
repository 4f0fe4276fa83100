//! `RealFs` keeps the same contract as `SimFs`, on a real directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_storage::fs::FsFile;
use chorus_storage::{
    load_hard_state, save_hard_state, Fs, HardStateRecord, RealFs, SnapshotConfig, SnapshotMeta,
    SnapshotStore,
};
use std::io::ErrorKind;

#[test]
fn real_fs_file_operations_follow_the_contract() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("a/b");
    let fs = RealFs;
    fs.create_dir_all(&dir).unwrap();
    fs.create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    let mut file = fs.create(&path).unwrap();
    assert_eq!(
        fs.create(&path).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    file.append(b"hello world").unwrap();
    file.sync_data().unwrap();
    file.truncate(5).unwrap();
    file.append(b"!").unwrap();
    let mut buf = [0u8; 16];
    let read = file.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..read], b"hello!");
    assert_eq!(file.len_bytes().unwrap(), 6);
    fs.create_dir_all(&dir.join("subdir")).unwrap();
    fs.rename(&path, &dir.join("renamed")).unwrap();
    fs.sync_dir(&dir).unwrap();
    assert_eq!(fs.list(&dir).unwrap(), vec!["renamed".to_string()]);
    assert_eq!(fs.open(&path).unwrap_err().kind(), ErrorKind::NotFound);
    fs.remove(&dir.join("renamed")).unwrap();
    assert!(fs.list(&dir).unwrap().is_empty());
}

#[test]
fn real_fs_hard_state_and_snapshot_round_trip() {
    let temp = tempfile::tempdir().unwrap();
    let state = HardStateRecord {
        term: 4,
        vote: 1,
        commit: 99,
    };
    save_hard_state(&RealFs, temp.path(), &state).unwrap();
    assert_eq!(load_hard_state(&RealFs, temp.path()).unwrap(), Some(state));

    let snap_dir = temp.path().join("snap");
    let mut store = SnapshotStore::open(RealFs, &snap_dir, SnapshotConfig::default()).unwrap();
    let meta = SnapshotMeta {
        last_index: 10,
        last_term: 4,
        membership: Bytes::from_static(b"1,2,3"),
    };
    store.save(&meta, b"state machine").unwrap();
    let store = SnapshotStore::open(RealFs, &snap_dir, SnapshotConfig::default()).unwrap();
    let latest = store.latest_snapshot().unwrap().unwrap();
    assert_eq!(latest.meta(), &meta);
    assert_eq!(latest.read_data(0, 1024).unwrap(), b"state machine");
}
