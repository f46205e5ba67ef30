//! [`Histogram`]: a Prometheus histogram over fixed bucket bounds, for the latencies and sizes
//! a server reports on `/metrics` (handshake time here; the hub's delivery latency and broker
//! round trips).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram of values observed in one unit (microseconds, say), rendered with its bounds
/// in another (seconds). Observing is two relaxed atomic additions.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One count per bound, then the count above the last.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// Bucket bounds for latencies observed in microseconds: 100 µs to 10 s.
    pub const LATENCY_US: &'static [u64] = &[
        100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
        2_500_000, 10_000_000,
    ];

    /// A histogram with upper bounds `bounds` (ascending) and one bucket above them.
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.is_sorted());
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts `took` in microseconds (for the [`LATENCY_US`](Self::LATENCY_US) bounds).
    pub fn observe_micros(&self, took: Duration) {
        self.observe(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the samples (`NAME_bucket`, `NAME_sum`, `NAME_count`) with `labels` before
    /// `le` (empty, or ending in a comma: `shard="0",`), the bounds and the sum divided by
    /// `scale` (1e6 for microseconds shown as seconds). The `# HELP` and `# TYPE` lines are
    /// the caller's, once for all label sets.
    pub fn render(&self, out: &mut String, name: &str, labels: &str, scale: f64) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let le = *bound as f64 / scale;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed) as f64 / scale;
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
        let labels = labels.trim_end_matches(',');
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
        } else {
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {cumulative}"
            );
        }
    }
}

/// A latency histogram: [`LATENCY_US`](Histogram::LATENCY_US) bounds, in microseconds.
impl Default for Histogram {
    fn default() -> Self {
        Self::new(Self::LATENCY_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let histogram = Histogram::new(&[1, 4]);
        for value in [1, 2, 4, 9] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.render(&mut out, "x", "shard=\"1\",", 1.0);
        assert_eq!(
            out,
            "x_bucket{shard=\"1\",le=\"1\"} 1\n\
             x_bucket{shard=\"1\",le=\"4\"} 3\n\
             x_bucket{shard=\"1\",le=\"+Inf\"} 4\n\
             x_sum{shard=\"1\"} 16\n\
             x_count{shard=\"1\"} 4\n"
        );
        assert_eq!(histogram.count(), 4);
    }

    #[test]
    fn microseconds_render_as_seconds_without_labels() {
        let histogram = Histogram::new(Histogram::LATENCY_US);
        histogram.observe_micros(Duration::from_micros(300));
        let mut out = String::new();
        histogram.render(&mut out, "t_seconds", "", 1e6);
        assert!(
            out.contains("t_seconds_bucket{le=\"0.00025\"} 0\n"),
            "{out}"
        );
        assert!(out.contains("t_seconds_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(
            out.ends_with("t_seconds_sum 0.0003\nt_seconds_count 1\n"),
            "{out}"
        );
    }
}
