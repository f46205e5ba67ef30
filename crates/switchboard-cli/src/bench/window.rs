//! The measured window: warm-up, then the span whose counts are reported, and the grace
//! period after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::args::BenchArgs;
use super::probe;

/// How long connections may take to finish after the measured window before they are
/// abandoned (and counted as errors).
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// The measured window: load starts now, counts from `from` (after the warm-up) to `until`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) from: Instant,
    pub(crate) until: Instant,
}

impl Window {
    pub(crate) fn starting_now(args: &BenchArgs) -> Self {
        let from = Instant::now() + args.warmup;
        Self {
            from,
            until: from + args.duration,
        }
    }

    pub(crate) fn contains(&self, t: Instant) -> bool {
        t >= self.from && t < self.until
    }

    /// Waits through the window with the progress bar showing `rate` (what `counter` counts,
    /// per second), and returns the CPU snapshots taken at its start and end.
    pub(crate) async fn watch(
        &self,
        server_pid: Option<u32>,
        counter: &AtomicU64,
        unit: &str,
        progress: &ProgressBar,
    ) -> (probe::Snapshot, probe::Snapshot) {
        let start = Instant::now();
        let total = self.until.saturating_duration_since(start);
        progress.set_length(total.as_millis() as u64);
        progress.set_position(0);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut first = None;
        let mut last = (Instant::now(), counter.load(Ordering::Relaxed));
        loop {
            let now = tokio::select! {
                _ = tick.tick() => Instant::now(),
                () = tokio::time::sleep_until(self.from.into()), if first.is_none() => {
                    first = Some(probe::Snapshot::take(server_pid));
                    continue;
                }
                () = tokio::time::sleep_until(self.until.into()) => break,
            };
            let count = counter.load(Ordering::Relaxed);
            let rate = (count - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, count);
            let phase = if now < self.from {
                "warm-up"
            } else {
                "measuring"
            };
            progress.set_position(now.duration_since(start).as_millis() as u64);
            progress.set_message(format!("{phase}: {rate:.0} {unit}/s"));
        }
        let end = probe::Snapshot::take(server_pid);
        (first.unwrap_or(end), end)
    }
}
