//! The state machine of one WebSocket connection, either side (RFC 6455 §5, §7).
//!
//! A [`Connection`] turns bytes from the peer into [`Message`](crate::Message)s and messages
//! from the application into bytes for the peer. It never touches a socket: the caller moves
//! the bytes.
//!
//! Invariants:
//! - Every rule a frame header can break is checked as soon as the header is complete, before
//!   any of its payload is buffered: a header announcing more than a limit costs nothing.
//! - Text is validated as its bytes arrive, so invalid UTF-8 fails the connection at the first
//!   bad byte even in the middle of a frame.
//! - When input breaks the protocol, the Close frame with the matching code is queued before
//!   [`Connection::poll_message`] returns the error; nothing more is read or sent afterwards.
//! - After a Close frame has been sent, no data frame is sent (§5.5.1); after one has been
//!   received, no frame is read (§5.5.1: data after Close is ignored).
//! - With permessage-deflate (RFC 7692), RSV1 marks a compressed message on its first frame
//!   only; control frames are never compressed. A compressed message is inflated frame by frame
//!   and stops at `max_message_size` inflated bytes; text is validated as it inflates. Without
//!   the extension nothing changes: payloads stay views of the read buffer.
//!
//! The files, by concern: `receive` (reading frames, their limits, reassembly and inflation),
//! `output` (encoding messages and the transmit queue's public face), `closing` (the closing
//! handshake and failing the connection), `deadlines` (keepalive and close timeouts, over the
//! state in `crate::timer`); and the plain data they share: `incoming` (the frame and message
//! being received), `transmit` (the queue of bytes for the peer), `encoded` (frames encoded
//! once for many connections) and `mask_key` (masking keys).

use std::sync::Arc;

use bytes::BytesMut;

use crate::config::Config;
use crate::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater};
use crate::timer::Timers;
use crate::utf8::Utf8Validator;

mod closing;
mod deadlines;
mod encoded;
mod incoming;
mod mask_key;
mod output;
mod receive;
mod transmit;

pub use encoded::EncodedFrame;
use incoming::{InFrame, Partial};
use mask_key::MaskRng;
use transmit::TransmitQueue;

/// Which side of the connection this endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that opened the connection; masks every frame it sends.
    Client,
    /// The side that accepted the connection; sends unmasked frames.
    Server,
}

/// Where the closing handshake stands (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a Close frame and wait for the peer's.
    CloseSent,
    /// Both Close frames were exchanged, or the connection failed: only flushing is left.
    Closed,
}

/// permessage-deflate's state for one connection: this side's compressor and the inflater for
/// the peer's messages.
#[derive(Debug)]
struct PerMessageDeflate {
    deflater: Deflater,
    inflater: Inflater,
}

/// One side of a WebSocket connection, without I/O.
///
/// Method families, in the order a driver calls them:
/// - input: read into [`read_buffer`](Self::read_buffer), then
///   [`commit_read`](Self::commit_read) the bytes read; or [`handle_input`](Self::handle_input),
///   which does both with a copy of a slice;
/// - application: [`send`](Self::send), [`close`](Self::close),
///   [`send_encoded`](Self::send_encoded) (a frame encoded once for many connections);
/// - output: [`poll_message`](Self::poll_message) until `None` (each message may prompt the
///   application to send), then [`poll_transmit`](Self::poll_transmit) until `None`, writing
///   every buffer to the peer;
/// - time: [`handle_timeout`](Self::handle_timeout) once at the start and whenever
///   [`poll_timeout`](Self::poll_timeout) comes due (keepalive pings, the close timeout), then
///   the output methods again. The connection never reads a clock: the caller passes `now`.
///
/// The `poll_*` methods return `Option`, not `Poll`: `None` means "nothing now", and more may
/// appear after the next input or send.
///
/// ```
/// use switchboard_proto::{Config, Connection, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send(Message::text("hello")).unwrap();
/// while let Some(bytes) = client.poll_transmit() {
///     server.handle_input(&bytes);
/// }
/// assert_eq!(server.poll_message(), Some(Ok(Message::text("hello"))));
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    /// Shared: a server's connections have one configuration.
    config: Arc<Config>,
    state: State,
    /// [`TIMED_OUT`], [`ABANDONED`], [`CLOSED_BY_PEER`]: bits of one byte, as the engine's
    /// state is most of an idle connection's memory.
    flags: u8,
    input: BytesMut,
    frame: Option<InFrame>,
    utf8: Utf8Validator,
    transmit: TransmitQueue,
    /// What few connections use, boxed when first needed; see [`Rare`].
    rare: Option<Box<Rare>>,
    timers: Timers,
}

/// A keepalive failure, reported by the next `poll_message`.
const TIMED_OUT: u8 = 1;
/// The closing handshake was given up on after the close timeout.
const ABANDONED: u8 = 2;
/// The peer's Close came first: ours answered it.
const CLOSED_BY_PEER: u8 = 4;

/// The parts of a connection that most never use: a server without permessage-deflate that
/// receives no fragmented message never makes it. Freed again once none of it is in use.
#[derive(Debug, Default)]
struct Rare {
    /// The fragmented or compressed message being received.
    partial: Option<Partial>,
    /// `None` unless permessage-deflate was negotiated: the uncompressed path pays nothing.
    deflate: Option<Box<PerMessageDeflate>>,
    /// A client's masking keys.
    rng: MaskRng,
}

impl Rare {
    fn is_unused(&self) -> bool {
        self.partial.is_none() && self.deflate.is_none() && self.rng.is_unused()
    }
}

impl Connection {
    /// A connection whose opening handshake is complete. Pass an `Arc<Config>` to share one
    /// configuration among many connections.
    pub fn new(role: Role, config: impl Into<Arc<Config>>) -> Self {
        let config = config.into();
        Self {
            role,
            config,
            state: State::Open,
            flags: 0,
            input: BytesMut::new(),
            frame: None,
            utf8: Utf8Validator::new(),
            transmit: TransmitQueue::default(),
            rare: None,
            timers: Timers::default(),
        }
    }

    fn flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    fn partial(&self) -> Option<&Partial> {
        self.rare.as_ref()?.partial.as_ref()
    }

    fn deflate(&self) -> Option<&PerMessageDeflate> {
        self.rare.as_ref()?.deflate.as_deref()
    }

    /// Ends the message being reassembled, and frees what is no longer used.
    fn end_partial(&mut self) {
        if let Some(rare) = &mut self.rare {
            rare.partial = None;
            if rare.is_unused() {
                self.rare = None;
            }
        }
    }

    /// Turns on permessage-deflate with the parameters agreed in the handshake (`params`, see
    /// [`deflate`](crate::deflate)) and this side's compression settings (`config`: level and
    /// threshold; its negotiation preferences are not used here). Call it before the first
    /// message.
    ///
    /// ```
    /// use switchboard_proto::deflate::{DeflateConfig, DeflateParams};
    /// use switchboard_proto::{Config, Connection, Message, Role};
    ///
    /// let config = DeflateConfig { threshold: 0, ..DeflateConfig::default() };
    /// let mut client = Connection::new(Role::Client, Config::default());
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// client.enable_deflate(&DeflateParams::default(), &config);
    /// server.enable_deflate(&DeflateParams::default(), &config);
    /// client.send(Message::text("hello hello hello hello")).unwrap();
    /// while let Some(bytes) = client.poll_transmit() {
    ///     assert!(bytes.len() < 23 + 6); // compressed: shorter than the text and the header
    ///     server.handle_input(&bytes);
    /// }
    /// assert_eq!(server.poll_message(), Some(Ok(Message::text("hello hello hello hello"))));
    /// ```
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) {
        let (own_bits, own_reset, peer_bits, peer_reset) = match self.role {
            Role::Server => (
                params.server_window_bits(),
                params.server_no_context_takeover,
                params.client_window_bits(),
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_window_bits(),
                params.client_no_context_takeover,
                params.server_window_bits(),
                params.server_no_context_takeover,
            ),
        };
        self.rare_mut().deflate = Some(Box::new(PerMessageDeflate {
            deflater: Deflater::new(config.level, own_bits, config.threshold, own_reset),
            inflater: Inflater::new(peer_bits, peer_reset),
        }));
    }

    /// Whether permessage-deflate is on.
    pub fn is_deflate_enabled(&self) -> bool {
        self.deflate().is_some()
    }

    /// Whether zlib state is held right now (for memory accounting: with context takeover a
    /// compressor or decompressor stays once used; without, none is held between messages).
    pub fn holds_deflate_state(&self) -> bool {
        self.deflate()
            .is_some_and(|d| d.deflater.holds_state() || d.inflater.holds_state())
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

#[cfg(test)]
mod tests;
