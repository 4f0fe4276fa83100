//! What a run prints: one human line and one JSON line.

use crate::options::BenchArgs;
use crate::recorder::Recorder;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub workload: String,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: u64,
    pub duration_s: f64,
    /// Operations finished inside the measured window (for watch: events delivered).
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub latency_ms: Percentiles,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Workload-specific results (e.g. txn verification, puts behind the watch events).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    pub fn new(args: &BenchArgs, recorder: &Recorder) -> Report {
        // A run that stops early (put --total) is measured until it stopped.
        let window = recorder.window();
        let ran = std::time::Instant::now().saturating_duration_since(window.measure_from);
        let seconds = window.measured().min(ran).as_secs_f64();
        let histogram = &recorder.histogram;
        let millis = |micros: u64| micros as f64 / 1000.0;
        let latency_ms = if histogram.is_empty() {
            Percentiles::default()
        } else {
            Percentiles {
                p50: millis(histogram.value_at_quantile(0.50)),
                p90: millis(histogram.value_at_quantile(0.90)),
                p99: millis(histogram.value_at_quantile(0.99)),
                p999: millis(histogram.value_at_quantile(0.999)),
                max: millis(histogram.max()),
            }
        };
        Report {
            label: args.label.clone(),
            workload: args.workload.name(),
            endpoints: args.endpoints.clone(),
            clients: args.clients,
            conns: args.conns,
            key_size: args.key_size,
            val_size: args.val_size,
            key_space: args.key_space,
            duration_s: seconds,
            ops: recorder.ops,
            errors: recorder.errors,
            ops_per_sec: if seconds > 0.0 {
                recorder.ops as f64 / seconds
            } else {
                0.0
            },
            latency_ms,
            first_error: recorder.first_error.clone(),
            extra: serde_json::Map::new(),
        }
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!("[{}] ", self.label)
        };
        let l = &self.latency_ms;
        let mut line = format!(
            "{label}{}: {} clients, {} conns, {:.1} s: {:.0} ops/s ({} ops, {} errors); \
             latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.workload,
            self.clients,
            self.conns,
            self.duration_s,
            self.ops_per_sec,
            self.ops,
            self.errors,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
        for (name, value) in &self.extra {
            line.push_str(&format!("; {name} {value}"));
        }
        if let Some(error) = &self.first_error {
            line.push_str(&format!("; first error: {error}"));
        }
        line
    }

    /// One JSON object on one line, for scripts.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }
}
