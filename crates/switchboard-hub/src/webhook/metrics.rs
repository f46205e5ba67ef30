//! [`WebhookMetrics`]: what became of the hub's webhook events.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of webhook delivery, since the hub started.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    pub(super) sent: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped_full: AtomicU64,
    pub(super) dropped_expired: AtomicU64,
}

impl WebhookMetrics {
    /// Events the backend accepted (a 2xx answer).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests the backend accepted.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Requests that failed: no answer in time, or one other than 2xx.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Events dropped: the queue was full, or their batch was retried for as long as allowed.
    pub fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed) + self.dropped_expired.load(Ordering::Relaxed)
    }

    /// Appends these counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP switchboard_webhook_{name} {help}");
            let _ = writeln!(out, "# TYPE switchboard_webhook_{name} counter");
            for (labels, value) in lines {
                let _ = writeln!(out, "switchboard_webhook_{name}{labels} {value}");
            }
        };
        counter(
            "events_sent_total",
            "Webhook events the backend accepted.",
            &[("", load(&self.sent))],
        );
        counter(
            "batches_total",
            "Webhook requests the backend accepted.",
            &[("", load(&self.batches))],
        );
        counter(
            "failed_attempts_total",
            "Webhook requests that failed (no answer in time, or not 2xx).",
            &[("", load(&self.failed))],
        );
        counter(
            "events_dropped_total",
            "Webhook events dropped, by reason.",
            &[
                ("{reason=\"queue_full\"}", load(&self.dropped_full)),
                (
                    "{reason=\"retries_exhausted\"}",
                    load(&self.dropped_expired),
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_counter_as_prometheus_text() {
        let metrics = WebhookMetrics::default();
        metrics.sent.store(3, Ordering::Relaxed);
        metrics.dropped_expired.store(2, Ordering::Relaxed);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("\nswitchboard_webhook_events_sent_total 3\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE switchboard_webhook_batches_total counter\n"));
        assert!(out.contains("switchboard_webhook_failed_attempts_total 0\n"));
        assert!(out.contains(
            "switchboard_webhook_events_dropped_total{reason=\"retries_exhausted\"} 2\n"
        ));
        assert_eq!(metrics.dropped(), 2);
    }
}
