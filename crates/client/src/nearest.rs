//! Which endpoint is nearest: an exponentially weighted moving average of each endpoint's
//! round-trip time, measured on every follower read and by a cheap probe
//! (Maintenance.Status) of the endpoints not measured lately. Pure bookkeeping: the caller
//! passes `now`, so the choice is unit-tested without a server.

use std::time::{Duration, Instant};

/// An endpoint not measured for this long is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// A member that refused a stamped read (behind or lagging) goes to the back of the order for
/// this long.
pub const REFUSED_COOLDOWN: Duration = Duration::from_millis(500);
/// The round-trip time an endpoint counts as after an attempt that failed (no connection,
/// broken, timed out): much slower than any answer, so it goes last until it answers again;
/// its next answer then starts its average afresh (a member that was down for a while is
/// nearest again as soon as it answers quickly).
pub const FAILED_RTT: Duration = Duration::from_secs(1);
/// Each new sample's weight in the average, as a fraction 1 / `RTT_SAMPLE_WEIGHT_INVERSE`.
const RTT_SAMPLE_WEIGHT_INVERSE: u32 = 4;

#[derive(Clone, Debug, Default)]
struct EndpointRtt {
    /// `None` until the first measurement.
    average: Option<Duration>,
    /// The last attempt failed: the next sample replaces the average.
    failed: bool,
    measured_at: Option<Instant>,
    probing: bool,
    refused_until: Option<Instant>,
}

/// Per-endpoint round-trip times, indexed like the client's endpoints.
#[derive(Clone, Debug)]
pub struct Nearest {
    endpoints: Vec<EndpointRtt>,
}

impl Nearest {
    pub fn new(endpoint_count: usize) -> Nearest {
        Nearest {
            endpoints: vec![EndpointRtt::default(); endpoint_count],
        }
    }

    /// The average round-trip time of endpoint `index`, if measured.
    pub fn average(&self, index: usize) -> Option<Duration> {
        self.endpoints.get(index)?.average
    }

    /// Whether any endpoint has been measured.
    pub fn any_measured(&self) -> bool {
        self.endpoints.iter().any(|rtt| rtt.average.is_some())
    }

    /// Adds a round-trip time sample of endpoint `index`.
    pub fn record(&mut self, index: usize, sample: Duration, now: Instant) {
        let Some(rtt) = self.endpoints.get_mut(index) else {
            return;
        };
        rtt.average = Some(match rtt.average {
            Some(_) if rtt.failed => sample,
            None => sample,
            Some(average) => {
                (average * (RTT_SAMPLE_WEIGHT_INVERSE - 1) + sample) / RTT_SAMPLE_WEIGHT_INVERSE
            }
        });
        rtt.failed = false;
        rtt.measured_at = Some(now);
    }

    /// An attempt on endpoint `index` failed: it counts as [`FAILED_RTT`] until it answers.
    pub fn record_failure(&mut self, index: usize, now: Instant) {
        if let Some(rtt) = self.endpoints.get_mut(index) {
            rtt.average = Some(
                rtt.average
                    .map_or(FAILED_RTT, |average| average.max(FAILED_RTT)),
            );
            rtt.failed = true;
            rtt.measured_at = Some(now);
        }
    }

    /// Endpoint `index` refused a stamped read: last in the order for [`REFUSED_COOLDOWN`].
    pub fn record_refusal(&mut self, index: usize, now: Instant) {
        if let Some(rtt) = self.endpoints.get_mut(index) {
            rtt.refused_until = Some(now + REFUSED_COOLDOWN);
        }
    }

    /// The endpoints to try, nearest first: those measured by their average, then those not
    /// measured yet in the order given, then those whose last attempt failed; members that
    /// refused recently go last.
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.endpoints.len()).collect();
        order.sort_by_key(|&index| {
            let rtt = &self.endpoints[index];
            let refused = rtt.refused_until.is_some_and(|until| now < until);
            (
                refused,
                rtt.failed,
                rtt.average.is_none(),
                rtt.average,
                index,
            )
        });
        order
    }

    /// The endpoints to probe now (not measured for [`PROBE_INTERVAL`], not being probed);
    /// they count as being probed until [`Nearest::probe_finished`].
    pub fn start_probes(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (index, rtt) in self.endpoints.iter_mut().enumerate() {
            let stale = rtt
                .measured_at
                .is_none_or(|at| now.saturating_duration_since(at) >= PROBE_INTERVAL);
            if stale && !rtt.probing {
                rtt.probing = true;
                due.push(index);
            }
        }
        due
    }

    /// A probe of endpoint `index` ended (its sample, if any, was recorded).
    pub fn probe_finished(&mut self, index: usize) {
        if let Some(rtt) = self.endpoints.get_mut(index) {
            rtt.probing = false;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn the_average_starts_at_the_first_sample_and_weighs_each_new_one_a_quarter() {
        let now = Instant::now();
        let mut nearest = Nearest::new(1);
        assert_eq!(nearest.average(0), None);
        nearest.record(0, ms(8), now);
        assert_eq!(nearest.average(0), Some(ms(8)));
        nearest.record(0, ms(16), now);
        assert_eq!(nearest.average(0), Some(ms(10)));
        nearest.record(7, ms(1), now); // no such endpoint: ignored
    }

    #[test]
    fn the_nearest_comes_first_and_unmeasured_ones_after_the_measured() {
        let now = Instant::now();
        let mut nearest = Nearest::new(4);
        assert_eq!(nearest.order(now), vec![0, 1, 2, 3]);
        nearest.record(2, ms(3), now);
        nearest.record(1, ms(9), now);
        assert_eq!(nearest.order(now), vec![2, 1, 0, 3]);
        // Endpoint 2 slows down; a few samples move it behind endpoint 1.
        for _ in 0..6 {
            nearest.record(2, ms(30), now);
        }
        assert_eq!(nearest.order(now), vec![1, 2, 0, 3]);
        nearest.record_failure(1, now);
        assert_eq!(nearest.average(1), Some(FAILED_RTT));
        assert_eq!(nearest.order(now), vec![2, 0, 3, 1]);
        // Its next answer starts its average afresh: nearest again at once.
        nearest.record(1, ms(2), now);
        assert_eq!(nearest.average(1), Some(ms(2)));
        assert_eq!(nearest.order(now), vec![1, 2, 0, 3]);
        nearest.record(1, ms(6), now);
        assert_eq!(nearest.average(1), Some(ms(3)));
        // A failed endpoint goes after the ones not measured yet.
        nearest.record_failure(2, now);
        assert_eq!(nearest.order(now), vec![1, 0, 3, 2]);
    }

    #[test]
    fn a_member_that_refused_goes_last_for_the_cooldown() {
        let now = Instant::now();
        let mut nearest = Nearest::new(3);
        nearest.record(0, ms(1), now);
        nearest.record(1, ms(2), now);
        nearest.record(2, ms(3), now);
        nearest.record_refusal(0, now);
        assert_eq!(nearest.order(now), vec![1, 2, 0]);
        assert_eq!(nearest.order(now + REFUSED_COOLDOWN - ms(1)), vec![1, 2, 0]);
        assert_eq!(nearest.order(now + REFUSED_COOLDOWN), vec![0, 1, 2]);
    }

    #[test]
    fn endpoints_not_measured_lately_are_probed_once_at_a_time() {
        let now = Instant::now();
        let mut nearest = Nearest::new(3);
        nearest.record(1, ms(2), now);
        assert!(nearest.any_measured());
        assert_eq!(nearest.start_probes(now), vec![0, 2]);
        assert!(nearest.start_probes(now).is_empty(), "already probing");
        nearest.record(0, ms(1), now);
        nearest.probe_finished(0);
        nearest.probe_finished(2);
        assert_eq!(nearest.start_probes(now + ms(10)), vec![2]);
        nearest.probe_finished(2);
        let later = now + PROBE_INTERVAL;
        assert_eq!(nearest.start_probes(later), vec![0, 1, 2]);
    }
}
