//! Keeping raft's tick count level with the monotonic clock, for leader-lease reads.
//!
//! A leader that serves reads from its lease trusts its tick count: the lease runs until
//! `t + election_timeout * (1 - drift)` ticks. The ticker fires late when the machine is busy,
//! and not at all while the process is stopped (SIGSTOP, a long pause), so the count can fall
//! behind real time — and a leader whose count is behind believes in a lease that has run out,
//! while another member may already lead. With lease reads on, every pass first ticks raft as
//! many times as the monotonic clock says are due, so the count is never behind when a read is
//! answered. The count never runs ahead, so followers' election timers, driven the same way,
//! never fire early either. Without lease reads nothing here runs (a late tick only delays).

use super::GroupTask;
use std::time::Instant;

/// The most ticks one catch-up runs; a longer pause (over 10,000 ticks: 16 minutes of 100 ms
/// ticks) skips the rest, which changes nothing once every timer has long run out.
pub const CATCH_UP_TICKS_MAX: u64 = 10_000;

impl GroupTask {
    /// Ticks raft until its count matches the monotonic time since `clock_origin`.
    pub(super) fn catch_up_ticks(&mut self) {
        let Some(origin) = self.clock_origin else {
            return;
        };
        let elapsed = Instant::now().saturating_duration_since(origin);
        let due = ticks_due(elapsed.as_nanos(), self.tick_interval.as_nanos());
        let behind = due.saturating_sub(self.ticks);
        for _ in 0..behind.min(CATCH_UP_TICKS_MAX) {
            self.handle_tick();
        }
        self.ticks = self.ticks.max(due);
    }
}

/// Whole tick intervals in `elapsed_nanos`.
fn ticks_due(elapsed_nanos: u128, interval_nanos: u128) -> u64 {
    if interval_nanos == 0 {
        return 0;
    }
    u64::try_from(elapsed_nanos / interval_nanos).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_due_counts_whole_intervals() {
        assert_eq!(ticks_due(0, 100), 0);
        assert_eq!(ticks_due(99, 100), 0);
        assert_eq!(ticks_due(100, 100), 1);
        assert_eq!(ticks_due(1_050, 100), 10);
        assert_eq!(ticks_due(5, 0), 0);
        assert_eq!(ticks_due(u128::MAX, 1), u64::MAX);
    }
}
