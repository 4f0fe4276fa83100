//! How many seeds a minute one core runs: a 5-replica cluster, 30 simulated seconds, the full
//! fault schedule and about 1,000 client operations, end-of-run checks included. The target is
//! at least 200 seeds a minute (0.3 s a seed); criterion reports seeds per second as "elem/s".

use chorus_sim::runner;
use chorus_sim::scenario::RunOptions;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn seeds(c: &mut Criterion) {
    let mut group = c.benchmark_group("seeds");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    for nodes in [3, 5] {
        let mut seed = 0u64;
        group.bench_function(format!("{nodes}_replicas_30s_with_faults"), |b| {
            b.iter(|| {
                seed += 1;
                let report = runner::run(RunOptions::new(seed, nodes), false, false);
                assert!(
                    report.violation.is_none(),
                    "seed {seed}: {:?}",
                    report.violation
                );
                report.trace_events
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seeds);
criterion_main!(benches);
