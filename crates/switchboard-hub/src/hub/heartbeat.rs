//! The application-level heartbeat: a tiny `{"type":"heartbeat"}` text frame on every
//! connection at the interval `connected` announces, so that a client that cannot see
//! protocol pings (a browser page) can tell a dead network from a quiet channel.
//!
//! One task per hub ticks; each tick encodes the frame once and queues it on every
//! connection's [`Outbox`] without waiting, as the fan-out does. A connection costs an entry
//! in a map, no timer of its own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::Duration;

use switchboard::{EncodedFrame, Utf8Bytes};

use super::outbox::Outbox;

/// The heartbeat frame's text.
pub(super) const FRAME: &str = r#"{"type":"heartbeat"}"#;

/// The connections that get the heartbeat: those past their `connected` frame.
#[derive(Debug, Default)]
pub(super) struct Beats {
    senders: Mutex<HashMap<u64, Outbox>>,
}

impl Beats {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Outbox>> {
        // Every operation leaves the map consistent, so a poisoned lock is still usable.
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection, once its `connected` frame is queued (so that it comes first).
    pub(super) fn add(&self, sender: &Outbox) {
        self.lock().insert(sender.id(), sender.clone());
    }

    pub(super) fn remove(&self, sender: &Outbox) {
        self.lock().remove(&sender.id());
    }

    /// Queues one heartbeat on every connection; returns how many took it.
    fn beat(&self) -> usize {
        let frame = EncodedFrame::text(&Utf8Bytes::from_static(FRAME));
        // Clones out of the lock, so that connecting and leaving do not wait for the writes.
        let senders: Vec<Outbox> = self.lock().values().cloned().collect();
        // A full queue skips this beat: the client is being sent frames, which are signs
        // of life as good as a heartbeat; if it never reads them it is kicked as lagging.
        senders
            .iter()
            .filter(|sender| sender.try_send_encoded(&frame).is_ok())
            .count()
    }
}

/// Starts the hub's heartbeat task; it ends when the hub (which holds `beats`) is dropped.
pub(super) fn start(beats: Weak<Beats>, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // After a stall (a busy runtime), one beat, not a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(beats) = beats.upgrade() else {
                return;
            };
            let sent = beats.beat();
            tracing::trace!(sent, "heartbeat");
        }
    });
}

/// The interval as `connected` announces it: seconds, a whole number when it is one.
pub(super) fn announced(every: Duration) -> serde_json::Number {
    if every.subsec_nanos() == 0 {
        serde_json::Number::from(every.as_secs())
    } else {
        serde_json::Number::from_f64(every.as_secs_f64()).unwrap_or_else(|| 0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_announced_in_seconds() {
        assert_eq!(announced(Duration::from_secs(25)).to_string(), "25");
        assert_eq!(announced(Duration::from_millis(1500)).to_string(), "1.5");
    }
}
