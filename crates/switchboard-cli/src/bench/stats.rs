//! What a run counts besides messages: errors (all counted, a few kept) and latencies.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Error messages kept for the report (the count covers all).
const ERROR_SAMPLES: usize = 5;

/// Errors seen during a run: all are counted, the first few kept for the report.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    count: usize,
    samples: Vec<String>,
}

impl Errors {
    pub(crate) fn add(&mut self, error: String) {
        self.count += 1;
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&error) {
            self.samples.push(error);
        }
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.count += other.count;
        for e in other.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&e) {
                self.samples.push(e);
            }
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The first error seen, for a message that has room for one.
    pub(crate) fn first(&self) -> &str {
        self.samples.first().map_or("unknown error", String::as_str)
    }

    /// The first few distinct errors.
    pub(crate) fn into_samples(self) -> Vec<String> {
        self.samples
    }
}

/// Latencies of all connections, in nanoseconds. Connections record into a small local batch
/// and add it here under the lock, so the lock is taken once per batch.
#[derive(Debug)]
pub(crate) struct Latencies {
    histogram: std::sync::Mutex<Histogram<u64>>,
}

/// Latencies one connection gathered since it last added them to [`Latencies`].
#[derive(Debug, Default)]
pub(crate) struct LatencyBatch(Vec<u64>);

const LATENCY_BATCH: usize = 256;

impl Latencies {
    pub(crate) fn new() -> Self {
        // 1 ns to 100 s at 3 significant digits: about 300 KiB, once per run.
        let histogram = Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self {
            histogram: std::sync::Mutex::new(histogram),
        }
    }

    /// Records one latency into `batch`, moving the batch here when it is full.
    pub(crate) fn record(&self, batch: &mut LatencyBatch, latency: Duration) {
        batch
            .0
            .push(latency.as_nanos().try_into().unwrap_or(u64::MAX));
        if batch.0.len() >= LATENCY_BATCH {
            self.flush(batch);
        }
    }

    pub(crate) fn flush(&self, batch: &mut LatencyBatch) {
        let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        for &ns in &batch.0 {
            histogram.saturating_record(ns.max(1));
        }
        batch.0.clear();
    }

    pub(crate) fn summary(&self) -> Option<Latency> {
        let h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Some(Latency {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1e3,
        })
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_all_and_keep_a_few_distinct() {
        let mut errors = Errors::default();
        for i in 0..20 {
            errors.add(format!("e{}", i % 7));
        }
        assert_eq!(errors.count(), 20);
        assert_eq!(errors.samples.len(), ERROR_SAMPLES);
    }
}
