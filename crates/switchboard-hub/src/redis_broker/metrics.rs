//! What the Redis broker counts for `/metrics` (round trips, publish batches, errors, history
//! reads), and whether Redis is reachable, for the health check; both per shard.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use switchboard::Histogram;

use crate::broker::BrokerError;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Round-trip bounds, in microseconds.
const ROUND_TRIP_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];
/// Publish batch size bounds.
const BATCH: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256];

/// The broker's counters, shared by its tasks.
#[derive(Debug)]
pub(super) struct Metrics {
    round_trip: Histogram,
    batch: Histogram,
    errors: AtomicU64,
    timeouts: AtomicU64,
    reads: AtomicU64,
    coalesced: AtomicU64,
}

impl Metrics {
    pub(super) fn new() -> Self {
        Self {
            round_trip: Histogram::new(ROUND_TRIP_US),
            batch: Histogram::new(BATCH),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        }
    }

    pub(super) fn round_trip(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.round_trip.observe(micros);
    }

    pub(super) fn batch(&self, publishes: usize) {
        self.batch.observe(publishes as u64);
    }

    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A history read sent to Redis.
    pub(super) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A history read answered by an identical one sent for another caller.
    pub(super) fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter's name, help, and where it is in a shard's metrics.
type Counter = (&'static str, &'static str, fn(&Metrics) -> &AtomicU64);

/// Writes the metrics of every shard, each sample labelled with its shard's index in the
/// broker's list (`shard="0"` with a single Redis).
pub(super) fn render(out: &mut String, shards: &[(&Metrics, &Health)]) {
    let label = |i: usize| format!("shard=\"{i}\",");
    header(
        out,
        "switchboard_redis_round_trip_seconds",
        "histogram",
        "Time from sending a request (or a pipeline of publishes) to Redis to its answer.",
    );
    for (i, (metrics, _)) in shards.iter().enumerate() {
        let name = "switchboard_redis_round_trip_seconds";
        metrics.round_trip.render(out, name, &label(i), 1e6);
    }
    header(
        out,
        "switchboard_redis_publish_batch_size",
        "histogram",
        "Publishes sent to Redis in one pipeline.",
    );
    for (i, (metrics, _)) in shards.iter().enumerate() {
        let name = "switchboard_redis_publish_batch_size";
        metrics.batch.render(out, name, &label(i), 1.0);
    }
    let counters: [Counter; 4] = [
        (
            "switchboard_redis_errors_total",
            "Requests to Redis that failed (connection lost, refused, or an error reply).",
            |m| &m.errors,
        ),
        (
            "switchboard_redis_timeouts_total",
            "Requests to Redis that got no answer within the broker's timeout.",
            |m| &m.timeouts,
        ),
        (
            "switchboard_redis_history_reads_total",
            "History and recovery reads sent to Redis.",
            |m| &m.reads,
        ),
        (
            "switchboard_redis_history_reads_coalesced_total",
            "History and recovery reads answered by an identical read made at the same time.",
            |m| &m.coalesced,
        ),
    ];
    for (name, help, counter) in counters {
        header(out, name, "counter", help);
        for (i, (metrics, _)) in shards.iter().enumerate() {
            let value = counter(metrics).load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {value}");
        }
    }
    let name = "switchboard_redis_up";
    header(
        out,
        name,
        "gauge",
        "Whether Redis is reachable (as /healthz says).",
    );
    for (i, (_, health)) in shards.iter().enumerate() {
        let up = u8::from(health.check().is_ok());
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {up}");
    }
}

/// Whether Redis is reachable: the Pub/Sub connection is up and the last request got an
/// answer. Both are checked, because each may fail alone (no publish is made while nothing
/// happens; a request may fail while the Pub/Sub connection has not noticed yet).
#[derive(Debug, Default)]
pub(super) struct Health {
    /// What the Pub/Sub reason names: `redis`, or the shard (whose address may change).
    what: Mutex<String>,
    pubsub_down: Mutex<Option<String>>,
    /// Set with `request_error` on a failure, cleared by the next answer: the hot path reads
    /// only the flag.
    request_failed: AtomicBool,
    request_error: Mutex<String>,
}

impl Health {
    pub(super) fn new(what: String) -> Self {
        Self {
            what: Mutex::new(what),
            ..Self::default()
        }
    }

    /// Names the shard anew (a Redis Cluster master replaced by its replica).
    pub(super) fn rename(&self, what: String) {
        *self.what.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }

    pub(super) fn pubsub(&self, down: Option<String>) {
        *self.pubsub_down.lock().unwrap_or_else(|e| e.into_inner()) = down;
    }

    pub(super) fn answered(&self) {
        if self.request_failed.load(Ordering::Relaxed) {
            self.request_failed.store(false, Ordering::Relaxed);
        }
    }

    pub(super) fn failed(&self, why: &str) {
        why.clone_into(&mut self.request_error.lock().unwrap_or_else(|e| e.into_inner()));
        self.request_failed.store(true, Ordering::Relaxed);
    }

    pub(super) fn check(&self) -> Result<(), BrokerError> {
        let pubsub = self.pubsub_down.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &*pubsub {
            let what = self.what.lock().unwrap_or_else(|e| e.into_inner());
            return Err(BrokerError::Unavailable(format!("{what} pub/sub: {why}")));
        }
        if self.request_failed.load(Ordering::Relaxed) {
            let why = self.request_error.lock().unwrap_or_else(|e| e.into_inner());
            return Err(BrokerError::Unavailable(why.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_the_last_failure_until_an_answer() {
        let health = Health::new("redis".into());
        assert!(health.check().is_ok());
        health.failed("redis: connection refused");
        let e = health.check().unwrap_err().to_string();
        assert!(e.contains("connection refused"), "{e}");
        health.answered();
        assert!(health.check().is_ok());
        health.pubsub(Some("connection lost".into()));
        assert!(health.check().is_err());
        health.pubsub(None);
        assert!(health.check().is_ok());
    }
}
