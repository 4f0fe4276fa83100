//! redb versus fjall on the MVCC backend's workload, raw (without the store on top).
//!
//! The workload: `PUTS` puts of `VALUE_BYTES`-byte values under 16-byte big-endian revision keys
//! (strictly increasing, as revisions are), committed in batches of `batch_puts`, each batch also
//! rewriting one 8-byte meta key (the applied raft index) in the same transaction. No batch is
//! fsynced; every `DURABLE_EVERY_BATCHES` batches one durable commit is made (redb:
//! `Durability::Immediate`; fjall: `persist(SyncAll)`), and one at the end. Then `PUTS` point
//! reads of pseudo-random revisions. Reports throughput and the on-disk size.
//!
//! Last, the same puts and reads through the whole [`chorus_mvcc::Store`] over the chosen
//! [`chorus_mvcc::RedbBackend`]: one backend transaction per put, as the replica applies them.
//!
//! Run: `cargo bench -p chorus-mvcc --features compare-backends --bench backends`
#![allow(clippy::expect_used)]

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::Path;
use std::time::{Duration, Instant};

const PUTS: u64 = 100_000;
const VALUE_BYTES: usize = 256;
const DURABLE_EVERY_BATCHES: u64 = 1_000;

fn revision_key(main: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&main.to_be_bytes());
    key
}

fn value(main: u64) -> Vec<u8> {
    let mut value = vec![0u8; VALUE_BYTES];
    // Not all zeros, so compression does not flatter either engine.
    let mut state = main.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for byte in value.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    value
}

fn read_order() -> Vec<u64> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..PUTS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % PUTS + 1
        })
        .collect()
}

fn directory_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
        let metadata = entry.metadata().expect("metadata");
        if metadata.is_dir() {
            total += directory_bytes(&entry.path());
        } else {
            total += metadata.len();
        }
    }
    total
}

struct Outcome {
    write: Duration,
    read: Duration,
    /// On-disk size right after the last durable commit, database still open.
    disk_bytes: u64,
    /// Reopen plus one full scan in key order (what rebuilding the key index on open costs).
    reopen_scan: Duration,
    /// On-disk size after the database was closed and reopened.
    disk_bytes_reopened: u64,
}

const DATA: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

fn run_redb(dir: &Path, batch_puts: u64) -> Outcome {
    let path = dir.join("bench.redb");
    let db = redb::Database::create(&path).expect("create");
    let start = Instant::now();
    let mut main = 0;
    let mut batches = 0;
    while main < PUTS {
        let mut txn = db.begin_write().expect("begin");
        batches += 1;
        let durable = batches % DURABLE_EVERY_BATCHES == 0;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .expect("durability");
        }
        {
            let mut data = txn.open_table(DATA).expect("table");
            for _ in 0..batch_puts {
                main += 1;
                data.insert(&revision_key(main)[..], &value(main)[..])
                    .expect("insert");
            }
            let mut meta = txn.open_table(META).expect("meta");
            meta.insert("applied_index", main).expect("meta insert");
        }
        txn.commit().expect("commit");
    }
    let txn = db.begin_write().expect("begin");
    txn.commit().expect("final durable commit");
    let write = start.elapsed();

    let start = Instant::now();
    let txn = db.begin_read().expect("read");
    let data = txn.open_table(DATA).expect("table");
    for main in read_order() {
        let got = data
            .get(&revision_key(main)[..])
            .expect("get")
            .expect("present");
        assert_eq!(got.value().len(), VALUE_BYTES);
    }
    let read = start.elapsed();
    let disk_bytes = directory_bytes(dir);
    drop(data);
    drop(txn);
    drop(db);

    let start = Instant::now();
    let db = redb::Database::open(&path).expect("reopen");
    let txn = db.begin_read().expect("read");
    let data = txn.open_table(DATA).expect("table");
    let mut scanned_bytes = 0;
    for entry in data.iter().expect("iter") {
        let (_, value) = entry.expect("entry");
        scanned_bytes += value.value().len();
    }
    assert_eq!(scanned_bytes, PUTS as usize * VALUE_BYTES);
    assert_eq!(data.len().expect("len"), PUTS);
    let reopen_scan = start.elapsed();
    drop(data);
    drop(txn);
    drop(db);
    Outcome {
        write,
        read,
        disk_bytes,
        reopen_scan,
        disk_bytes_reopened: directory_bytes(dir),
    }
}

fn run_redb_read_per_txn(dir: &Path) -> Duration {
    let db = redb::Database::open(dir.join("bench.redb")).expect("open");
    let start = Instant::now();
    for main in read_order() {
        let txn = db.begin_read().expect("read");
        let data = txn.open_table(DATA).expect("table");
        let got = data
            .get(&revision_key(main)[..])
            .expect("get")
            .expect("present");
        assert_eq!(got.value().len(), VALUE_BYTES);
    }
    start.elapsed()
}

fn run_fjall(dir: &Path, batch_puts: u64) -> Outcome {
    let db = fjall::Database::builder(dir).open().expect("open");
    let data = db
        .keyspace("data", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let start = Instant::now();
    let mut main = 0;
    let mut batches = 0;
    while main < PUTS {
        let mut batch = db.batch();
        batches += 1;
        for _ in 0..batch_puts {
            main += 1;
            batch.insert(&data, revision_key(main), value(main));
        }
        batch.insert(&meta, "applied_index", main.to_be_bytes());
        batch.commit().expect("commit");
        if batches % DURABLE_EVERY_BATCHES == 0 {
            db.persist(fjall::PersistMode::SyncAll).expect("persist");
        }
    }
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
    let write = start.elapsed();

    let start = Instant::now();
    for main in read_order() {
        let got = data.get(revision_key(main)).expect("get").expect("present");
        assert_eq!(got.len(), VALUE_BYTES);
    }
    let read = start.elapsed();
    let disk_bytes = directory_bytes(dir);
    drop(data);
    drop(meta);
    drop(db);

    let start = Instant::now();
    let db = fjall::Database::builder(dir).open().expect("reopen");
    let data = db
        .keyspace("data", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let mut scanned_bytes = 0;
    for guard in data.iter() {
        let (_, value) = guard.into_inner().expect("entry");
        scanned_bytes += value.len();
    }
    assert_eq!(scanned_bytes, PUTS as usize * VALUE_BYTES);
    let reopen_scan = start.elapsed();
    drop(data);
    drop(db);
    Outcome {
        write,
        read,
        disk_bytes,
        reopen_scan,
        disk_bytes_reopened: directory_bytes(dir),
    }
}

fn report(engine: &str, batch_puts: u64, outcome: &Outcome) {
    let puts_per_second = PUTS as f64 / outcome.write.as_secs_f64();
    let reads_per_second = PUTS as f64 / outcome.read.as_secs_f64();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{engine:<6} batch={batch_puts:<4} write {:>6.0} ms {:>8.0} puts/s | read {:>5.0} ms {:>8.0} reads/s | reopen+scan {:>5.0} ms | disk {:>5.1} MiB open, {:>5.1} MiB reopened",
        outcome.write.as_secs_f64() * 1e3,
        puts_per_second,
        outcome.read.as_secs_f64() * 1e3,
        reads_per_second,
        outcome.reopen_scan.as_secs_f64() * 1e3,
        mib(outcome.disk_bytes),
        mib(outcome.disk_bytes_reopened),
    );
}

fn run_store(dir: &Path) {
    use chorus_mvcc::{Config, PutRequest, RangeRequest, RedbBackend, RedbConfig, Store};
    let path = dir.join("store.redb");
    let backend = RedbBackend::open(&path, RedbConfig::default()).expect("open");
    let mut store = Store::open(backend, Config::default()).expect("store");
    let key = |main: u64| format!("key{main:06}").into_bytes();
    let start = Instant::now();
    for main in 1..=PUTS {
        store
            .put(main, PutRequest::new(key(main), value(main)))
            .expect("put");
    }
    store.persist().expect("persist");
    let write = start.elapsed();
    let start = Instant::now();
    for main in read_order() {
        let response = store.range(&RangeRequest::key(key(main))).expect("range");
        assert_eq!(response.kvs.len(), 1);
    }
    let read = start.elapsed();
    drop(store);
    let start = Instant::now();
    let backend = RedbBackend::open(&path, RedbConfig::default()).expect("reopen");
    let store = Store::open(backend, Config::default()).expect("store");
    let reopen = start.elapsed();
    assert_eq!(store.key_count() as u64, PUTS);
    println!(
        "Store over RedbBackend: {:.0} puts/s (one commit each) | {:.0} ranges/s | reopen and rebuild the index {:.0} ms | file {:.1} MiB",
        PUTS as f64 / write.as_secs_f64(),
        PUTS as f64 / read.as_secs_f64(),
        reopen.as_secs_f64() * 1e3,
        directory_bytes(dir) as f64 / (1024.0 * 1024.0),
    );
}

fn main() {
    let payload_mib = (PUTS as usize * (VALUE_BYTES + 16)) as f64 / (1024.0 * 1024.0);
    println!("{PUTS} puts of {VALUE_BYTES}-byte values ({payload_mib:.1} MiB of keys and values)");
    for batch_puts in [1, 10, 100] {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run_redb(dir.path(), batch_puts);
        report("redb", batch_puts, &outcome);
        if batch_puts == 100 {
            let read = run_redb_read_per_txn(dir.path());
            println!(
                "redb   read with one read transaction per get: {:.0} ms {:.0} reads/s",
                read.as_secs_f64() * 1e3,
                PUTS as f64 / read.as_secs_f64()
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run_fjall(dir.path(), batch_puts);
        report("fjall", batch_puts, &outcome);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    run_store(dir.path());
}
