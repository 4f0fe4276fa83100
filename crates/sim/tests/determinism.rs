//! Same seed, same run: the trace hash (over every event, not only the kept ones) must match.

use chorus_sim::faults::FaultSwitch;
use chorus_sim::runner;
use chorus_sim::scenario::RunOptions;
use chorus_sim::time::SECOND;

fn fingerprint(options: RunOptions) -> (u64, u64, usize) {
    let report = runner::run(options, false, false);
    (
        report.trace_hash,
        report.trace_events,
        report.operations.total,
    )
}

#[test]
fn a_seed_replays_exactly() {
    for nodes in [3, 5] {
        let options = RunOptions {
            duration_ns: 10 * SECOND,
            ..RunOptions::new(7, nodes)
        };
        let first = fingerprint(options.clone());
        let second = fingerprint(options);
        assert_eq!(
            first, second,
            "seed 7 with {nodes} replicas ran differently twice"
        );
        assert!(first.1 > 1_000, "suspiciously few events: {}", first.1);
    }
}

#[test]
fn a_failing_seed_replays_exactly() {
    let options = RunOptions {
        fault: Some(FaultSwitch::CommitWithoutMajority),
        ..RunOptions::new(0, 3)
    };
    let first = runner::run(options.clone(), false, false);
    let second = runner::run(options, false, false);
    assert!(
        first.violation.is_some(),
        "expected seed 0 to break with commit-without-majority"
    );
    assert_eq!(first.violation, second.violation);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.trace_tail, second.trace_tail);
}

#[test]
fn different_seeds_run_differently() {
    let a = fingerprint(RunOptions {
        duration_ns: 5 * SECOND,
        ..RunOptions::new(1, 3)
    });
    let b = fingerprint(RunOptions {
        duration_ns: 5 * SECOND,
        ..RunOptions::new(2, 3)
    });
    assert_ne!(a.0, b.0);
}
