//! [`Backpressure`]: what happens to messages for a peer that reads slower than it is written
//! to, and the send queue limit it applies at (see [`split`](crate::WebSocket::split)).

/// What [`Sender::try_send`](crate::Sender::try_send) does when a connection's send queue is
/// full (a peer that reads slower than it is written to).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backpressure {
    /// Drop the message; the connection stays open and misses it.
    Drop,
    /// Close the connection with `1013 Try Again Later`: the client reconnects when it can
    /// keep up (and, with the hub, recovers what it missed). The default on a server.
    #[default]
    Disconnect,
}

use crate::metrics::Metrics;

/// A frame header is at most 14 bytes: what a queued message costs beyond its payload.
pub(crate) const FRAME_OVERHEAD: usize = 14;

/// The reason of the `1013` that closes a connection under [`Backpressure::Disconnect`].
pub(crate) const TOO_SLOW: &str = "send queue full: reading too slowly";

/// A connection's send queue limit and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendQueue {
    pub(crate) limit: usize,
    pub(crate) policy: Backpressure,
}

impl SendQueue {
    /// A message did not fit: counts it under the policy, and says whether the connection is
    /// to be closed now with `1013` and [`TOO_SLOW`]. `closing_already` is asked with
    /// [`Backpressure::Disconnect`] only: a connection already on its way out is not closed
    /// (nor counted) again.
    pub(crate) fn overflow(
        &self,
        metrics: Option<&Metrics>,
        closing_already: impl FnOnce() -> bool,
    ) -> bool {
        match self.policy {
            Backpressure::Drop => {
                if let Some(metrics) = metrics {
                    metrics.backpressure_drop();
                }
                false
            }
            Backpressure::Disconnect if closing_already() => false,
            Backpressure::Disconnect => {
                if let Some(metrics) = metrics {
                    metrics.backpressure_disconnect();
                }
                true
            }
        }
    }

    /// The send queue of a connection not accepted by a [`Server`](crate::Server).
    pub(crate) const STANDALONE: Self = Self {
        limit: 1 << 20,
        policy: Backpressure::Drop,
    };

    /// The default of a [`Server`](crate::Server)'s connections.
    pub(crate) const SERVER: Self = Self {
        limit: 1 << 20,
        policy: Backpressure::Disconnect,
    };
}
