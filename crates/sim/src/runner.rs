//! Runs one seed: builds the scenario, runs the cluster to the end, runs the end-of-run checkers,
//! and returns a [`Report`]. A panic anywhere (a raft assertion, `check_invariants`, a driver
//! contract assertion) is caught and reported as a violation with the phase it happened in.

use crate::checkers::{Linearizability, MvccAgreement, Violation};
use crate::cluster::{Cluster, Stats};
use crate::history::{History, Outcome};
use crate::node::{current_phase, enter_phase};
use crate::scenario::{RunOptions, Scenario};
use crate::time::Nanos;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// How many trace events a report shows.
pub const REPORT_TRACE_EVENTS: usize = 100;

/// The verdict of one seed.
pub struct Report {
    pub scenario: Scenario,
    pub violation: Option<Violation>,
    /// The last trace events, rendered, when there was a violation.
    pub trace_tail: String,
    pub trace_hash: u64,
    pub trace_events: u64,
    pub simulated_ns: Nanos,
    pub stats: Stats,
    pub operations: OperationCounts,
    pub acknowledged_writes: usize,
    pub terms_with_leader: usize,
    /// Time from the final heal to the first new commit.
    pub recovery_ns: Option<Nanos>,
    /// A key the linearizability search gave up on (not a violation).
    pub inconclusive_key: Option<String>,
    pub history: Option<History>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct OperationCounts {
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
}

impl OperationCounts {
    fn of(history: &History) -> OperationCounts {
        let mut counts = OperationCounts {
            total: history.operations.len(),
            ..Default::default()
        };
        for operation in &history.operations {
            match operation.outcome {
                Outcome::Failed => counts.failed += 1,
                Outcome::Unknown => counts.unknown += 1,
                _ => counts.ok += 1,
            }
        }
        counts
    }
}

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: Cell<Option<String>> = const { Cell::new(None) };
}

/// Installs (once) a panic hook that stays quiet while a seed runs — its panic is reported as a
/// violation — and defers to the previous hook otherwise.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|cell| cell.set(location));
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs the scenario of `options` to its end.
pub fn run(options: RunOptions, stream_trace: bool, keep_history: bool) -> Report {
    run_scenario(Scenario::from_seed(options), stream_trace, keep_history)
}

pub fn run_scenario(scenario: Scenario, stream_trace: bool, keep_history: bool) -> Report {
    install_panic_hook();
    let mut cluster = Cluster::new(scenario, stream_trace);
    QUIET_PANICS.with(|cell| cell.set(true));
    enter_phase("simulation", 0);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        cluster.start();
        if cluster.run_to_end() {
            final_checks(&mut cluster)
        } else {
            (cluster.violation().cloned(), None)
        }
    }));
    QUIET_PANICS.with(|cell| cell.set(false));
    let (violation, inconclusive_key) = match outcome {
        Ok(result) => result,
        Err(payload) => {
            let (phase, node) = current_phase();
            let location = PANIC_LOCATION.with(|cell| cell.take()).unwrap_or_default();
            // raft's own checks: `check_invariants`, or an assertion inside raft, the replica
            // or the storage, told apart by where it fired.
            let checker = if phase == "Raft::check_invariants" {
                "raft-invariants"
            } else if phase == "Replica::check_invariants" {
                "replica-invariants"
            } else if location.contains("crates/raft/") {
                "raft-assertion"
            } else if location.contains("crates/replica/") {
                "replica-assertion"
            } else if location.contains("crates/storage/") || location.contains("crates/mvcc/") {
                "storage-assertion"
            } else {
                "panic"
            };
            let during = if node == 0 {
                phase.to_string()
            } else {
                format!("{phase} on n{node}")
            };
            (
                Some(Violation {
                    checker,
                    at: cluster.now(),
                    message: format!(
                        "panicked during {during} at {location}: {}",
                        panic_message(&*payload)
                    ),
                }),
                None,
            )
        }
    };
    let trace_tail = if violation.is_some() {
        cluster.trace().render_last(REPORT_TRACE_EVENTS)
    } else {
        String::new()
    };
    let history = cluster.take_history();
    Report {
        violation,
        trace_tail,
        trace_hash: cluster.trace().hash(),
        trace_events: cluster.trace().events_total(),
        simulated_ns: cluster.now(),
        stats: cluster.stats(),
        operations: OperationCounts::of(&history),
        acknowledged_writes: cluster.checkers().acked_writes.acknowledged(),
        terms_with_leader: cluster.checkers().election_safety.terms_with_leader(),
        recovery_ns: cluster.checkers().liveness.recovery_ns(),
        inconclusive_key,
        history: keep_history.then_some(history),
        scenario: cluster.scenario().clone(),
    }
}

/// The checks that need the whole run: catching up, log matching over the final logs,
/// convergence, acknowledged writes, linearizability.
pub fn final_checks(cluster: &mut Cluster) -> (Option<Violation>, Option<String>) {
    let now = cluster.now();
    enter_phase("final checks", 0);
    let target = cluster.commit_target();
    let lagging: Vec<(u64, u64)> = cluster
        .nodes()
        .iter()
        .filter(|node| !node.is_up() || node.applied_index() < target)
        .map(|node| (node.id(), node.applied_index()))
        .collect();
    let caught_up: Vec<(u64, u64)> = cluster
        .nodes()
        .iter()
        .filter(|node| node.is_up() && node.applied_index() >= target)
        .map(|node| (node.id(), node.applied_index()))
        .collect();
    enter_phase("Replica::check_invariants", 0);
    for node in cluster.nodes() {
        if let Some(replica) = node.replica() {
            if replica.raft().snapshot_meta().last_index == replica.durable().snapshot_index() {
                replica.check_invariants();
            }
        }
    }
    enter_phase("final checks", 0);
    let checkers = cluster.checkers();
    let logs: Vec<(u64, &crate::durable_log::DurableLog)> = cluster
        .nodes()
        .iter()
        .map(|node| (node.id(), node.durable_log()))
        .collect();
    let stores: Vec<(u64, u64, &chorus_mvcc::Store<chorus_mvcc::MemoryBackend>)> = cluster
        .nodes()
        .iter()
        .filter(|node| caught_up.iter().any(|(id, _)| *id == node.id()))
        .filter_map(|node| {
            let replica = node.replica()?;
            Some((node.id(), node.applied_index(), replica.store()))
        })
        .collect();
    let structural = checkers
        .liveness
        .check_caught_up(&lagging, target, now)
        .and_then(|()| checkers.log_matching.check_final(&logs, now))
        .and_then(|()| MvccAgreement::check_final(&stores, now))
        .and_then(|()| {
            checkers
                .acked_writes
                .check_final(&checkers.state_machine_safety, &caught_up, now)
        });
    if let Err(violation) = structural {
        return (Some(violation), None);
    }
    enter_phase("linearizability check", 0);
    match Linearizability::check(cluster.history(), now) {
        Ok(inconclusive) => (None, inconclusive),
        Err(violation) => (Some(violation), None),
    }
}
