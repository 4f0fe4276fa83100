//! One client's measurements: a latency histogram of the operations that finished inside the
//! measured window, and counts of operations and errors.

use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Latencies up to this are recorded exactly (3 significant digits); longer ones saturate.
const LATENCY_MICROS_MAX: u64 = 120_000_000;

/// When measuring starts (after the warm-up) and ends.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now();
        Window {
            start,
            measure_from: start + warmup,
            end: start + warmup + duration,
        }
    }

    pub fn is_over(&self) -> bool {
        Instant::now() >= self.end
    }

    pub fn measured(&self) -> Duration {
        self.end - self.measure_from
    }
}

#[derive(Clone, Debug)]
pub struct Recorder {
    window: Window,
    pub histogram: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Recorder {
    pub fn new(window: Window) -> Recorder {
        Recorder {
            window,
            histogram: new_histogram(),
            ops: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Records an operation started at `started` that finished now, if it finished inside the
    /// measured window. Errors are counted wherever they happen (a run with errors is suspect).
    pub fn record<E: std::fmt::Display>(&mut self, started: Instant, result: Result<(), E>) {
        let finished = Instant::now();
        if let Err(error) = result {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(error.to_string());
            }
            return;
        }
        if finished < self.window.measure_from || finished > self.window.end {
            return;
        }
        self.record_latency(finished - started);
    }

    /// Records one latency measured elsewhere (e.g. put-to-event), inside the window.
    pub fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(micros.clamp(1, LATENCY_MICROS_MAX));
        self.ops += 1;
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Folds another client's measurements into this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// The bounds are constants hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5),
/// so this cannot fail.
#[allow(clippy::expect_used)]
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3).expect("constant histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operations_inside_the_window_count_and_errors_always_do() {
        let window = Window {
            start: Instant::now(),
            measure_from: Instant::now() + Duration::from_secs(3600),
            end: Instant::now() + Duration::from_secs(7200),
        };
        let mut recorder = Recorder::new(window);
        recorder.record::<String>(Instant::now(), Ok(()));
        recorder.record(Instant::now(), Err("boom"));
        assert_eq!(recorder.ops, 0);
        assert_eq!(recorder.errors, 1);
        assert_eq!(recorder.first_error.as_deref(), Some("boom"));

        let mut inside = Recorder::new(Window {
            start: Instant::now(),
            measure_from: Instant::now(),
            end: Instant::now() + Duration::from_secs(3600),
        });
        inside.record::<String>(Instant::now(), Ok(()));
        inside.merge(&recorder);
        assert_eq!((inside.ops, inside.errors), (1, 1));
    }
}
