//! Ending a connection of the hub's own accord: the fan-out flags it, its session closes it.

use switchboard::CloseCode;
use tokio::sync::Notify;

/// Why the hub ends a connection of its own accord.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KickReason {
    /// Its send queue is full (see "Lagging" on [`Hub`](super::Hub)).
    Lagging,
    /// A channel it follows lost its stream (see "Lost streams" on [`Hub`](super::Hub)).
    StreamLost,
}

/// Tells a session to end its connection; the first reason wins.
#[derive(Debug, Default)]
pub(super) struct Kick {
    notify: Notify,
    reason: std::sync::OnceLock<KickReason>,
}

impl Kick {
    pub(super) fn kick(&self, reason: KickReason) {
        let _ = self.reason.set(reason);
        self.notify.notify_one();
    }

    /// Why the connection was kicked, once it was.
    pub(super) fn reason(&self) -> Option<KickReason> {
        self.reason.get().copied()
    }

    /// Completes once the connection is kicked.
    pub(super) async fn kicked(&self) {
        self.notify.notified().await;
    }

    /// The Close frame that tells the client why, and what to do.
    pub(super) fn close_frame(&self) -> (CloseCode, &'static str) {
        match self.reason.get() {
            Some(KickReason::StreamLost) => (
                CloseCode::SERVICE_RESTART,
                "channel stream lost; subscribe again with since",
            ),
            Some(KickReason::Lagging) | None => (CloseCode::TRY_AGAIN_LATER, "too slow"),
        }
    }
}
