//! What hub mode's tasks share: the run's clock (send times, the window) and closed-loop flow
//! control (a publisher's window of publications not yet delivered to every subscriber),
//! errors and counts.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;

use super::super::stats::{Errors, Latencies};
use super::super::window::Window;

/// A publisher gives up when none of its publications reaches every subscriber for this long.
const STALL: Duration = Duration::from_secs(10);

/// Send times count from here, in µs.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) origin: Instant,
    pub(crate) window: Window,
}

impl Clock {
    pub(crate) fn stamp(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    pub(crate) fn counts(&self, stamp: u64) -> bool {
        self.window
            .contains(self.origin + Duration::from_micros(stamp))
    }
}

/// What every task shares.
pub(crate) struct Shared {
    /// Per publisher, per slot of its window: subscribers yet to receive that publication.
    pub(super) slots: Vec<Vec<AtomicU32>>,
    /// Per publisher: wakes it when one of its slots empties.
    pub(super) freed: Vec<Notify>,
    pub(super) subscribers: u32,
    /// Acknowledged publishes sent in the window.
    pub(crate) acked: AtomicU64,
    /// Deliveries checked so far, warm-up included (for the progress bar).
    pub(super) progress: AtomicU64,
    /// Subscribers with all their `subscribed` replies.
    pub(super) ready: AtomicUsize,
    pub(super) latencies: Latencies,
    pub(crate) errors: std::sync::Mutex<Errors>,
}

impl Shared {
    pub(crate) fn error(&self, error: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(error);
    }

    /// Waits until publisher `p` may send publication `seq`: the one `-m` before it has
    /// reached every subscriber. Then counts the subscribers it must reach.
    pub(crate) async fn room(&self, p: usize, seq: u64) -> Result<(), String> {
        let slots = &self.slots[p];
        let slot = &slots[(seq % slots.len() as u64) as usize];
        while slot.load(Ordering::Acquire) != 0 {
            tokio::select! {
                () = self.freed[p].notified() => {}
                () = tokio::time::sleep(STALL) => return Err(format!(
                    "no publication reached every subscriber for {} s",
                    STALL.as_secs()
                )),
            }
        }
        slot.store(self.subscribers, Ordering::Release);
        Ok(())
    }

    /// As [`room`](Self::room), without waiting: `false` when publication `seq` must wait.
    pub(crate) fn try_room(&self, p: usize, seq: u64) -> bool {
        let slots = &self.slots[p];
        let slot = &slots[(seq % slots.len() as u64) as usize];
        if slot.load(Ordering::Acquire) != 0 {
            return false;
        }
        slot.store(self.subscribers, Ordering::Release);
        true
    }

    /// Whether every publication sent has reached every subscriber.
    pub(super) fn all_delivered(&self) -> bool {
        self.slots
            .iter()
            .flatten()
            .all(|slot| slot.load(Ordering::Acquire) == 0)
    }

    /// A subscriber has publications up to `seq` of publisher `p` (those it missed included).
    pub(super) fn delivered(&self, p: usize, from: u64, seq: u64) {
        let Some(slots) = self.slots.get(p) else {
            return;
        };
        for s in from..=seq {
            if slots[(s % slots.len() as u64) as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                self.freed[p].notify_one();
            }
        }
    }
}

/// Publication `seq` of publisher `p`, sent at `stamp`.
pub(crate) fn data(p: usize, seq: u64, stamp: u64, pad: &str) -> serde_json::Value {
    json!({"p": p, "s": seq, "t": stamp, "pad": pad})
}

/// Pacing for one publisher: `None` publishes as fast as deliveries allow.
pub(crate) fn ticker(rate: f64) -> Option<tokio::time::Interval> {
    (rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    })
}
