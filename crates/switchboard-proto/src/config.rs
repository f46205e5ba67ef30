//! Limits and options of one connection.

use std::time::Duration;

/// Limits and options for a [`Connection`](crate::Connection).
///
/// The defaults accept what RFC 6455 conformance needs (Autobahn|Testsuite 9.*: a 16 MiB
/// message in one frame, a 4 MiB message in 64-byte fragments) and refuse anything larger. A
/// frame header that announces more than a limit is refused at once, before any of its payload
/// is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The largest frame payload accepted, in bytes; beyond it the connection closes with 1009.
    pub max_frame_size: usize,
    /// The largest message accepted (all fragments together), in bytes; beyond it, 1009. A
    /// compressed message (permessage-deflate) is measured inflated, and inflating stops there.
    pub max_message_size: usize,
    /// The most frames one message may be split into; beyond it, 1008. Bounds the work a flood
    /// of tiny fragments can cause.
    pub max_fragments: usize,
    /// Seeds the masking-key generator (clients only) for reproducible tests. `None`, the
    /// default, draws keys from the operating system's random source, as RFC 6455 §5.3 requires
    /// ("derived from a strong source of entropy").
    pub rng_seed: Option<u64>,
    /// Keepalive: after this long without a byte from the peer, send it a Ping. `None`, the
    /// default, never pings. Needs [`Connection::handle_timeout`](crate::Connection).
    pub idle_timeout: Option<Duration>,
    /// How long after a keepalive Ping the peer has to send anything (its Pong, usually)
    /// before the connection fails with 1011. Default 10 s.
    pub pong_timeout: Duration,
    /// How long the closing handshake may take, from the first Close frame (sent or received)
    /// to the end of the transport, before it is abandoned. Default 5 s.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 131_072,
            rng_seed: None,
            idle_timeout: None,
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
        }
    }
}
