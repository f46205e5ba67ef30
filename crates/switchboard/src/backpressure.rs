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

/// A frame header is at most 14 bytes: what a queued message costs beyond its payload.
pub(crate) const FRAME_OVERHEAD: usize = 14;

/// A connection's send queue limit and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendQueue {
    pub(crate) limit: usize,
    pub(crate) policy: Backpressure,
}

impl SendQueue {
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
