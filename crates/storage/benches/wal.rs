//! How fast the WAL makes appends durable on a real disk: batches of 1, 16 and 256 records of
//! 256 bytes, each batch one `append` (one fdatasync), in a temporary directory.
//!
//! `cargo bench -p chorus-storage --bench wal` — criterion reports records per second
//! (throughput); the line printed after each benchmark gives fsyncs per second too. The
//! directory is under the system temp dir, or under `CHORUS_BENCH_DIR` if set (use it to
//! measure a particular disk).
#![allow(clippy::expect_used)]

use bytes::Bytes;
use chorus_storage::{RealFs, Record, Wal, WalConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};

const PAYLOAD_BYTES: usize = 256;
/// The log is compacted past this many entries, so a long run does not fill the disk.
const RETAINED_ENTRIES_MAX: u64 = 200_000;

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("CHORUS_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("create a directory in CHORUS_BENCH_DIR"),
        None => tempfile::tempdir().expect("create a temporary directory"),
    }
}

fn bench_appends(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("wal_append_256_byte_records");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for batch_records in [1u64, 16, 256] {
        let temp = temp_dir();
        let config = WalConfig {
            segment_bytes_max: 16 * 1024 * 1024,
            ..WalConfig::default()
        };
        let mut wal = Wal::open(RealFs, &temp.path().join("wal"), config).expect("open the WAL");
        let payload = Bytes::from(vec![0xA5u8; PAYLOAD_BYTES]);
        let mut batches = 0u64;
        let mut busy = Duration::ZERO;
        group.throughput(Throughput::Elements(batch_records));
        group.bench_function(format!("batch_{batch_records}"), |bencher| {
            bencher.iter_custom(|iterations| {
                let start = Instant::now();
                for _ in 0..iterations {
                    let first = wal.last_index() + 1;
                    let records: Vec<Record> = (first..first + batch_records)
                        .map(|index| Record::new(index, 1, payload.clone()))
                        .collect();
                    wal.append(&records).expect("append");
                    if wal.last_index() - wal.first_index() > RETAINED_ENTRIES_MAX {
                        wal.compact_prefix(wal.last_index() - RETAINED_ENTRIES_MAX / 2)
                            .expect("compact");
                    }
                }
                let elapsed = start.elapsed();
                batches += iterations;
                busy += elapsed;
                elapsed
            });
        });
        let seconds = busy.as_secs_f64().max(f64::EPSILON);
        println!(
            "batch_{batch_records}: {:.0} fsyncs/s, {:.0} records/s, {:.1} MiB/s of payload \
             over {batches} batches",
            batches as f64 / seconds,
            (batches * batch_records) as f64 / seconds,
            (batches * batch_records * PAYLOAD_BYTES as u64) as f64 / seconds / (1024.0 * 1024.0),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_appends);
criterion_main!(benches);
