//! The state machine of one WebSocket connection, either side (RFC 6455 §5, §7).
//!
//! A [`Connection`] turns bytes from the peer into [`Message`]s and messages from the
//! application into bytes for the peer. It never touches a socket: the caller moves the bytes.
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

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::deflate::{self, DeflateConfig, DeflateParams, Deflater, InflateError, Inflater};
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{Message, Utf8Bytes};
use crate::timer::{Due, Timers};
use crate::utf8::Utf8Validator;

/// Which side of the connection this endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that opened the connection; masks every frame it sends.
    Client,
    /// The side that accepted the connection; sends unmasked frames.
    Server,
}

/// Server payloads up to this size are copied behind their header, so that small frames leave in
/// one contiguous buffer; larger ones are queued as their own `Bytes`, without a copy.
const INLINE_PAYLOAD: usize = 1024;
/// The most output buffer a connection keeps once everything is written: enough for a batch of
/// small frames, so that echoing them allocates nothing, while idle connections stay small.
pub(crate) const RETAINED_OUTPUT: usize = 512;

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

/// The frame whose payload is being received: what its header said (RSV2 and RSV3 were
/// clear, or the header was refused): 32 bytes, where a whole header beside the rest took 40.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    len: u64,
    /// How many payload bytes at the front of the input buffer are already unmasked (and, for
    /// text, validated).
    processed: usize,
    mask: Option<[u8; 4]>,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    /// Whether the payload is text to validate.
    text: bool,
}

impl InFrame {
    fn header(&self) -> FrameHeader {
        FrameHeader {
            fin: self.fin,
            rsv1: self.rsv1,
            rsv2: false,
            rsv3: false,
            opcode: self.opcode,
            mask: self.mask,
            len: self.len,
        }
    }
}

/// A fragmented or compressed message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// The message is compressed: its bytes are inflated into `inflated`, not `data`.
    compressed: bool,
    data: BytesMut,
    inflated: Vec<u8>,
    fragments: usize,
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
    input: BytesMut,
    frame: Option<InFrame>,
    /// Boxed: most connections never receive a fragmented or compressed message.
    partial: Option<Box<Partial>>,
    utf8: Utf8Validator,
    transmit: VecDeque<Bytes>,
    /// Bytes queued in `transmit`.
    transmit_len: usize,
    /// Frames encoded after the last entry of `transmit`; leaves as one buffer.
    pending: BytesMut,
    rng: MaskRng,
    /// `None` unless permessage-deflate was negotiated: the uncompressed path pays nothing.
    deflate: Option<Box<PerMessageDeflate>>,
    timers: Timers,
    /// A keepalive failure, reported by the next `poll_message`.
    timed_out: bool,
    /// The closing handshake was given up on after the close timeout.
    abandoned: bool,
    /// The peer's Close came first: ours answered it.
    closed_by_peer: bool,
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
            input: BytesMut::new(),
            frame: None,
            partial: None,
            utf8: Utf8Validator::new(),
            transmit: VecDeque::new(),
            transmit_len: 0,
            pending: BytesMut::new(),
            rng: MaskRng::default(),
            deflate: None,
            timers: Timers::default(),
            timed_out: false,
            abandoned: false,
            closed_by_peer: false,
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
        self.deflate = Some(Box::new(PerMessageDeflate {
            deflater: Deflater::new(config.level, own_bits, config.threshold, own_reset),
            inflater: Inflater::new(peer_bits, peer_reset),
        }));
    }

    /// Whether permessage-deflate is on.
    pub fn is_deflate_enabled(&self) -> bool {
        self.deflate.is_some()
    }

    /// Whether zlib state is held right now (for memory accounting: with context takeover a
    /// compressor or decompressor stays once used; without, none is held between messages).
    pub fn holds_deflate_state(&self) -> bool {
        self.deflate
            .as_ref()
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

    /// The buffer that received bytes go into, for [`commit_read`](Self::commit_read) to hand
    /// to [`poll_message`](Self::poll_message).
    ///
    /// Reading into it directly saves a copy: received payloads are slices of this buffer.
    /// It may hold the start of an incomplete frame: append to it, or, when it is empty,
    /// replace it with a buffer of received bytes. Either way, commit what was added.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Tells the connection that the last `n` bytes of [`read_buffer`](Self::read_buffer)
    /// were just received: appended to it, or, in a buffer of length `n`, put in place of an
    /// empty one. Call it after every read, then [`poll_message`](Self::poll_message).
    ///
    /// Input after the closing handshake or a failure is discarded. Received bytes, even of an
    /// incomplete frame, show that the peer is alive (see
    /// [`handle_timeout`](Self::handle_timeout)).
    pub fn commit_read(&mut self, n: usize) {
        debug_assert!(
            n <= self.input.len(),
            "committed more than the read buffer holds"
        );
        if self.state == State::Closed {
            // Freed, not cleared: a closed connection keeps no read buffer.
            self.input = BytesMut::new();
        } else if n > 0 {
            self.timers.on_input();
        }
    }

    /// How many more bytes complete the frame being received, as far as
    /// [`poll_message`](Self::poll_message) has seen: its header announced the length, and
    /// the limits accepted it. 0 when no frame is in progress. A hint for sizing reads: a
    /// large frame can be read into one buffer, in large reads, without regrowing it.
    pub fn frame_remaining(&self) -> usize {
        self.frame.as_ref().map_or(0, |frame| {
            // Fits: check_header bounded it by max_frame_size, a usize.
            (frame.len as usize).saturating_sub(self.input.len())
        })
    }

    /// Appends a copy of bytes received from the peer to [`read_buffer`](Self::read_buffer)
    /// and commits them (see [`commit_read`](Self::commit_read)). Input after the closing
    /// handshake or a failure is discarded.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
        self.commit_read(data.len());
    }

    /// Processes received bytes up to the next complete message: text, binary, or a control
    /// frame of the peer's (pings are answered automatically; a Close is answered automatically
    /// and is the last message). `None` when more input is needed, or after the connection
    /// closed.
    ///
    /// Input is processed one message at a time, so that an application's reply to a message
    /// goes out before the Close frame of a violation that followed it in the same read.
    /// Incomplete frames are still checked as far as they arrived: call this after every read.
    ///
    /// # Errors
    ///
    /// The peer broke the protocol or a limit. The Close frame that says so is queued: flush
    /// [`poll_transmit`](Self::poll_transmit), then close the transport. The error is returned
    /// once; `None` follows.
    pub fn poll_message(&mut self) -> Option<Result<Message, ProtocolError>> {
        if std::mem::take(&mut self.timed_out) {
            return Some(Err(ProtocolError::KeepaliveTimeout));
        }
        if self.state == State::Closed {
            return None;
        }
        match self.process() {
            Ok(message) => message.map(Ok),
            Err(e) => {
                self.fail(&e);
                Some(Err(e))
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, if ever.
    ///
    /// While the connection is open that is the keepalive check (with
    /// [`Config::idle_timeout`]); once closing, the close timeout. `None` before the first
    /// `handle_timeout`, which arms the timers, and once the closing handshake was abandoned.
    /// A time in the past means "now".
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.abandoned {
            return None;
        }
        self.timers
            .next(self.state != State::Open, self.config.idle_timeout)
    }

    /// Tells the connection that the time is `now`: arms the timers and acts on those due.
    ///
    /// - Keepalive ([`Config::idle_timeout`]): when nothing has arrived from the peer for that
    ///   long, a Ping is queued; when nothing arrives within [`Config::pong_timeout`] after it,
    ///   the connection fails: the next [`poll_message`](Self::poll_message) returns
    ///   [`ProtocolError::KeepaliveTimeout`] and a Close frame with 1011 is queued.
    /// - Close ([`Config::close_timeout`], from the first `handle_timeout` after the closing
    ///   handshake started): past it the handshake is abandoned ([`is_abandoned`]): queued
    ///   output is discarded and the transport should be dropped without waiting further.
    ///
    /// Call it once when the connection starts and then whenever [`poll_timeout`] comes due;
    /// calling it early does no harm. Afterwards, poll the output methods.
    ///
    /// [`is_abandoned`]: Self::is_abandoned
    /// [`poll_timeout`]: Self::poll_timeout
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.abandoned {
            return;
        }
        let due = self.timers.on_timeout(
            now,
            self.state != State::Open,
            self.config.idle_timeout,
            self.config.pong_timeout,
            self.config.close_timeout,
        );
        match due {
            Due::Nothing => {}
            Due::Ping => self.write_frame(OpCode::Ping, Bytes::new()),
            Due::PongOverdue => {
                self.fail(&ProtocolError::KeepaliveTimeout);
                self.timed_out = true;
            }
            Due::CloseOverdue => {
                self.abandoned = true;
                self.state = State::Closed;
                self.input.clear();
                self.frame = None;
                self.partial = None;
                self.transmit.clear();
                self.transmit_len = 0;
                self.pending.clear();
            }
        }
    }

    /// Whether the closing handshake ran past [`Config::close_timeout`] and was given up on:
    /// nothing more is sent or received; drop the transport.
    pub fn is_abandoned(&self) -> bool {
        self.abandoned
    }

    /// Whether the peer started the closing handshake: its Close came first and ours answered
    /// it. The peer sends nothing after its Close (RFC 6455 §5.5.1), so a server need not read
    /// to the end before closing the transport.
    pub fn is_closed_by_peer(&self) -> bool {
        self.closed_by_peer
    }

    /// The next bytes to write to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(bytes) = self.transmit.pop_front() {
            self.transmit_len -= bytes.len();
            return Some(bytes);
        }
        if self.pending.is_empty() {
            None
        } else {
            Some(self.pending.split().freeze())
        }
    }

    /// The bytes queued for the peer, in order, as slices for one vectored write: fills up to
    /// `slices.len()` of them and returns how many it filled (0 when nothing is queued).
    /// Nothing is taken off the queue: report what the transport accepted with
    /// [`advance_transmit`](Self::advance_transmit).
    ///
    /// Unlike [`poll_transmit`](Self::poll_transmit), the bytes stay in the connection until
    /// written, so its buffer is reused from one write to the next.
    pub fn transmit_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let pending = (!self.pending.is_empty()).then_some(&self.pending[..]);
        let queued = self.transmit.iter().map(|b| &b[..]).chain(pending);
        let mut filled = 0;
        for (slot, bytes) in slices.iter_mut().zip(queued) {
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        filled
    }

    /// Takes the first `n` queued bytes off the queue, after the transport wrote them (see
    /// [`transmit_slices`](Self::transmit_slices)).
    ///
    /// # Panics
    ///
    /// If `n` is more than [`buffered_amount`](Self::buffered_amount).
    pub fn advance_transmit(&mut self, mut n: usize) {
        while let Some(front) = self.transmit.front_mut() {
            if n < front.len() {
                front.advance(n);
                self.transmit_len -= n;
                return;
            }
            n -= front.len();
            self.transmit_len -= front.len();
            self.transmit.pop_front();
        }
        assert!(n <= self.pending.len(), "advanced past the queued bytes");
        if n < self.pending.len() {
            self.pending.advance(n);
        } else if self.pending.capacity() > RETAINED_OUTPUT {
            // All written: a connection keeps a small buffer for its next frames, not the
            // largest batch it ever sent.
            self.pending = BytesMut::new();
        } else {
            self.pending.clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn pending_capacity(&self) -> usize {
        self.pending.capacity()
    }

    /// How many bytes are queued for the peer and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit) or written (see
    /// [`advance_transmit`](Self::advance_transmit)).
    pub fn buffered_amount(&self) -> usize {
        self.transmit_len + self.pending.len()
    }

    /// Whether a Close frame was sent or the connection failed: no more messages may be sent.
    pub fn is_closing(&self) -> bool {
        self.state != State::Open
    }

    /// Whether the closing handshake is over (both Close frames exchanged) or the connection
    /// failed. Once the remaining output is flushed, the transport can close: a server closes
    /// TCP first (RFC 6455 §7.1.1), a client waits briefly for the server to do so.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Queues a message for the peer.
    ///
    /// A [`Message::Close`] starts the closing handshake; the connection keeps receiving until
    /// the peer's Close arrives.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] after a Close was sent or the connection failed; a control payload
    /// over 125 bytes; a close code that may not be sent, or a reason over 123 bytes.
    pub fn send(&mut self, message: Message) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        match message {
            Message::Text(text) => self.write_data(OpCode::Text, text.into_bytes()),
            Message::Binary(data) => self.write_data(OpCode::Binary, data),
            Message::Ping(data) => {
                check_control_len(&data)?;
                self.write_frame(OpCode::Ping, data);
            }
            Message::Pong(data) => {
                check_control_len(&data)?;
                self.write_frame(OpCode::Pong, data);
            }
            Message::Close(frame) => {
                if let Some(f) = &frame {
                    if !f.code.is_allowed_on_wire() {
                        return Err(SendError::InvalidCloseCode { code: f.code.0 });
                    }
                    if f.reason.len() > 123 {
                        return Err(SendError::CloseReasonTooLong {
                            len: f.reason.len(),
                        });
                    }
                }
                self.write_close(frame.as_ref());
                self.state = State::CloseSent;
            }
        }
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason`; see [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) for a [`Message::Close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let reason = Utf8Bytes::from(reason.to_owned());
        self.send(Message::Close(Some(CloseFrame { code, reason })))
    }

    /// Queues a data frame encoded once for many server connections (a broadcast), sharing its
    /// bytes instead of copying them.
    ///
    /// With permessage-deflate, a connection without context takeover shares the frame's
    /// compressed variant too (compressed by the first connection that needs it); one with
    /// context takeover compresses the payload itself, as its compressor's history differs
    /// from every other connection's.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] after a Close was sent; [`SendError::EncodedFrameOnClient`] on a
    /// client, whose frames must each be masked with a fresh key.
    pub fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), SendError> {
        if self.role == Role::Client {
            return Err(SendError::EncodedFrameOnClient);
        }
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        let payload_len = frame.plain.len() - frame.header_len;
        match &mut self.deflate {
            Some(d) if d.deflater.wants(payload_len) => {
                let (level, bits) = (d.deflater.level(), d.deflater.bits());
                let shared = d.deflater.can_share(level, bits).then(|| {
                    frame.compressed.get_or_init(|| {
                        let compressed = deflate::compress_once(level, bits, frame.payload());
                        (level, bits, encode_frame(frame.opcode, true, &compressed))
                    })
                });
                match shared {
                    Some((l, b, bytes)) if d.deflater.can_share(*l, *b) => {
                        self.push_transmit(bytes.clone());
                    }
                    _ => {
                        let compressed = d.deflater.compress(frame.payload());
                        self.write_frame_rsv1(frame.opcode, compressed, true);
                    }
                }
            }
            _ => self.push_transmit(frame.plain.clone()),
        }
        Ok(())
    }

    fn process(&mut self) -> Result<Option<Message>, ProtocolError> {
        while self.state != State::Closed {
            let mut frame = match self.frame.take() {
                Some(frame) => frame,
                None => {
                    let Some((header, len)) = FrameHeader::decode(&self.input)? else {
                        return Ok(None);
                    };
                    let text = self.check_header(&header)?;
                    if header.opcode == OpCode::Text {
                        self.utf8.reset();
                    }
                    self.input.advance(len);
                    InFrame {
                        len: header.len,
                        processed: 0,
                        mask: header.mask,
                        opcode: header.opcode,
                        fin: header.fin,
                        rsv1: header.rsv1,
                        text,
                    }
                }
            };
            // Fits: check_header bounded it by max_frame_size, a usize.
            let len = frame.len as usize;
            let available = self.input.len().min(len);
            if available > frame.processed {
                let fresh = &mut self.input[frame.processed..available];
                if let Some(key) = frame.mask {
                    apply_mask(fresh, key, frame.processed);
                }
                if frame.text {
                    self.utf8
                        .feed(fresh)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                frame.processed = available;
            }
            if available < len {
                self.frame = Some(frame);
                return Ok(None);
            }
            let payload = self.input.split_to(len).freeze();
            if let Some(message) = self.handle_frame(frame.header(), frame.text, payload)? {
                return Ok(Some(message));
            }
        }
        self.input.clear();
        Ok(None)
    }

    /// Checks what the connection's state says about a new frame header; returns whether its
    /// payload is text.
    fn check_header(&self, header: &FrameHeader) -> Result<bool, ProtocolError> {
        // RFC 6455 §5.2: "If a nonzero value is received and none of the negotiated extensions
        // defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail the
        // WebSocket Connection_."
        if header.rsv2 || header.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
        // frames and non-first fragments of a data message."
        if header.rsv1
            && (self.deflate.is_none() || !matches!(header.opcode, OpCode::Text | OpCode::Binary))
        {
            return Err(ProtocolError::ReservedBits);
        }
        // RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is
        // not masked" and "A client MUST close a connection if it detects a masked frame."
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if header.len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: header.len,
                limit: self.config.max_frame_size,
            });
        }
        let too_large = |so_far: usize| {
            if so_far as u64 + header.len > self.config.max_message_size as u64 {
                Err(ProtocolError::MessageTooLarge {
                    limit: self.config.max_message_size,
                })
            } else {
                Ok(())
            }
        };
        match (header.opcode, &self.partial) {
            // RFC 6455 §5.4: a fragmented message is a first frame with FIN clear, then
            // continuation frames; control frames may be interleaved, nothing else.
            (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(partial)) => {
                if partial.fragments >= self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        limit: self.config.max_fragments,
                    });
                }
                // A compressed message is limited by its inflated size, as it inflates.
                if partial.compressed {
                    return Ok(false);
                }
                too_large(partial.data.len())?;
                Ok(partial.text)
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (OpCode::Text | OpCode::Binary, None) if header.rsv1 => Ok(false),
            (OpCode::Text | OpCode::Binary, None) => {
                too_large(0)?;
                Ok(header.opcode == OpCode::Text)
            }
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => Ok(false),
        }
    }

    fn handle_frame(
        &mut self,
        header: FrameHeader,
        text: bool,
        payload: Bytes,
    ) -> Result<Option<Message>, ProtocolError> {
        let message = match header.opcode {
            OpCode::Text | OpCode::Binary if header.rsv1 => {
                self.partial = Some(Box::new(Partial {
                    text: header.opcode == OpCode::Text,
                    compressed: true,
                    data: BytesMut::new(),
                    inflated: Vec::new(),
                    fragments: 1,
                }));
                self.utf8.reset();
                return self.inflate(&payload, header.fin);
            }
            OpCode::Text | OpCode::Binary if header.fin => self.complete(text, payload)?,
            OpCode::Text | OpCode::Binary => {
                let mut data = BytesMut::with_capacity(payload.len());
                data.extend_from_slice(&payload);
                self.partial = Some(Box::new(Partial {
                    text,
                    compressed: false,
                    data,
                    inflated: Vec::new(),
                    fragments: 1,
                }));
                return Ok(None);
            }
            OpCode::Continuation => {
                // check_header refused a continuation without a partial message.
                let Some(partial) = &mut self.partial else {
                    return Ok(None);
                };
                if partial.compressed {
                    partial.fragments += 1;
                    return self.inflate(&payload, header.fin);
                }
                partial.data.extend_from_slice(&payload);
                partial.fragments += 1;
                if !header.fin {
                    return Ok(None);
                }
                let data = std::mem::take(&mut partial.data).freeze();
                self.partial = None;
                self.complete(text, data)?
            }
            OpCode::Ping => {
                // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong
                // frame in response, unless it already received a Close frame." Once our own
                // Close is out, nothing more may follow it.
                if self.state == State::Open {
                    self.write_frame(OpCode::Pong, payload.clone());
                }
                Message::Ping(payload)
            }
            OpCode::Pong => Message::Pong(payload),
            OpCode::Close => {
                let frame = CloseFrame::parse(payload)?;
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not
                    // previously send a Close frame, the endpoint MUST send a Close frame in
                    // response. [...] typically echos the status code it received."
                    let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.write_close(reply.as_ref());
                    self.closed_by_peer = true;
                }
                self.state = State::Closed;
                self.input.clear();
                Message::Close(frame)
            }
        };
        Ok(Some(message))
    }

    /// Inflates the next frame of a compressed message; returns the message after its last.
    fn inflate(&mut self, payload: &[u8], fin: bool) -> Result<Option<Message>, ProtocolError> {
        let (Some(partial), Some(d)) = (&mut self.partial, &mut self.deflate) else {
            return Ok(None); // check_header allows RSV1 only with deflate on
        };
        let before = partial.inflated.len();
        d.inflater
            .inflate(
                payload,
                fin,
                &mut partial.inflated,
                self.config.max_message_size,
            )
            .map_err(|e| match e {
                InflateError::TooLarge => ProtocolError::MessageTooLarge {
                    limit: self.config.max_message_size,
                },
                InflateError::Invalid => ProtocolError::InvalidCompressedData,
            })?;
        if partial.text {
            self.utf8
                .feed(&partial.inflated[before..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !fin {
            return Ok(None);
        }
        let text = partial.text;
        let data = Bytes::from(std::mem::take(&mut partial.inflated));
        self.partial = None;
        self.complete(text, data).map(Some)
    }

    fn complete(&mut self, text: bool, data: Bytes) -> Result<Message, ProtocolError> {
        let message = if text {
            // RFC 6455 §8.1: a text message whose bytes end inside a code point is invalid.
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Message::Text(Utf8Bytes::from_validated(data))
        } else {
            Message::Binary(data)
        };
        Ok(message)
    }

    /// Fails the connection (RFC 6455 §7.1.7): queues the Close frame for `error` and stops
    /// reading.
    fn fail(&mut self, error: &ProtocolError) {
        if self.state == State::Open {
            // Error texts are short ASCII; cut at a char boundary all the same.
            let mut reason = error.to_string();
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            let frame = CloseFrame::new(error.close_code(), reason);
            self.write_close(Some(&frame));
        }
        self.state = State::Closed;
        self.input.clear();
        self.frame = None;
        self.partial = None;
        if let Some(d) = &mut self.deflate {
            d.inflater.abandon();
        }
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        self.write_frame(OpCode::Close, payload.freeze());
    }

    /// Queues a text or binary message, compressed when permessage-deflate is on and the
    /// message reaches the threshold.
    fn write_data(&mut self, opcode: OpCode, payload: Bytes) {
        match &mut self.deflate {
            Some(d) if d.deflater.wants(payload.len()) => {
                let compressed = d.deflater.compress(&payload);
                self.write_frame_rsv1(opcode, compressed, true);
            }
            _ => self.write_frame(opcode, payload),
        }
    }

    fn write_frame(&mut self, opcode: OpCode, payload: Bytes) {
        self.write_frame_rsv1(opcode, payload, false);
    }

    fn write_frame_rsv1(&mut self, opcode: OpCode, payload: Bytes, rsv1: bool) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.rsv1 = rsv1;
        match self.role {
            Role::Client => {
                let key = self.rng.next_key(self.config.rng_seed);
                header.mask = Some(key);
                header.encode(&mut self.pending);
                let start = self.pending.len();
                self.pending.extend_from_slice(&payload);
                apply_mask(&mut self.pending[start..], key, 0);
            }
            Role::Server if payload.len() <= INLINE_PAYLOAD => {
                header.encode(&mut self.pending);
                self.pending.extend_from_slice(&payload);
            }
            Role::Server => {
                header.encode(&mut self.pending);
                self.push_transmit(payload);
            }
        }
    }

    /// Queues `bytes` after everything encoded so far.
    fn push_transmit(&mut self, bytes: Bytes) {
        if !self.pending.is_empty() {
            let head = self.pending.split().freeze();
            self.transmit_len += head.len();
            self.transmit.push_back(head);
        }
        self.transmit_len += bytes.len();
        self.transmit.push_back(bytes);
    }
}

fn check_control_len(data: &Bytes) -> Result<(), SendError> {
    if data.len() > 125 {
        return Err(SendError::ControlFrameTooLong { len: data.len() });
    }
    Ok(())
}

/// A server-to-client data frame, encoded once and sent to many connections with
/// [`Connection::send_encoded`]: server frames are unmasked, so every recipient gets the same
/// bytes.
///
/// With permessage-deflate, the frame also holds a compressed variant, made by the first
/// connection that needs it and shared by every connection without context takeover (see
/// [`Connection::send_encoded`]). Clones share both.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    opcode: OpCode,
    /// Header and payload, uncompressed.
    plain: Bytes,
    header_len: usize,
    /// Level, window bits, and the compressed frame (header with RSV1, and payload).
    compressed: Arc<OnceLock<(u32, u8, Bytes)>>,
}

impl EncodedFrame {
    /// Encodes a text message.
    pub fn text(text: &Utf8Bytes) -> Self {
        Self::encode(OpCode::Text, text.as_bytes())
    }

    /// Encodes a binary message.
    pub fn binary(data: &[u8]) -> Self {
        Self::encode(OpCode::Binary, data)
    }

    /// Encodes a text or binary message; `None` for control messages, which belong to one
    /// connection's state.
    pub fn from_message(message: &Message) -> Option<Self> {
        match message {
            Message::Text(t) => Some(Self::text(t)),
            Message::Binary(b) => Some(Self::binary(b)),
            _ => None,
        }
    }

    /// The encoded frame, header and payload, uncompressed.
    pub fn as_bytes(&self) -> &Bytes {
        &self.plain
    }

    /// The compressed frame, once a connection has made it.
    pub fn compressed_bytes(&self) -> Option<&Bytes> {
        self.compressed.get().map(|(_, _, bytes)| bytes)
    }

    fn payload(&self) -> &[u8] {
        &self.plain[self.header_len..]
    }

    fn encode(opcode: OpCode, payload: &[u8]) -> Self {
        let header_len = FrameHeader::new(opcode, payload.len() as u64).encoded_len();
        Self {
            opcode,
            plain: encode_frame(opcode, false, payload),
            header_len,
            compressed: Arc::default(),
        }
    }
}

impl PartialEq for EncodedFrame {
    fn eq(&self, other: &Self) -> bool {
        self.plain == other.plain
    }
}

impl Eq for EncodedFrame {}

/// An unmasked frame with `payload`, RSV1 set when it is compressed.
fn encode_frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Bytes {
    let mut header = FrameHeader::new(opcode, payload.len() as u64);
    header.rsv1 = rsv1;
    let mut buf = BytesMut::with_capacity(header.encoded_len() + payload.len());
    header.encode(&mut buf);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// Masking keys: from the operating system in batches, or from a seed in tests. Made on first
/// use, so servers (which never mask) carry one empty pointer.
#[derive(Debug, Default)]
struct MaskRng(Option<Box<KeySource>>);

#[derive(Debug)]
enum KeySource {
    Os { bytes: [u8; 64], used: usize },
    Seeded(u64),
}

impl MaskRng {
    fn next_key(&mut self, seed: Option<u64>) -> [u8; 4] {
        let source = self.0.get_or_insert_with(|| {
            Box::new(match seed {
                Some(seed) => KeySource::Seeded(seed),
                None => KeySource::Os {
                    bytes: [0; 64],
                    used: 64,
                },
            })
        });
        match &mut **source {
            KeySource::Os { bytes, used } => {
                if *used + 4 > bytes.len() {
                    if getrandom::fill(bytes).is_err() {
                        // No OS randomness (practically never): fall back to std's randomly
                        // keyed hasher so that keys stay unpredictable to the peer.
                        fill_from_hasher(bytes);
                    }
                    *used = 0;
                }
                let at = *used;
                *used += 4;
                [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
            }
            KeySource::Seeded(state) => {
                // splitmix64: deterministic and well mixed, for tests only.
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let z = z ^ (z >> 31);
                (z as u32).to_le_bytes()
            }
        }
    }
}

fn fill_from_hasher(buf: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        let word = h.finish().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Connection {
        Connection::new(Role::Server, Config::default())
    }

    fn client() -> Connection {
        Connection::new(
            Role::Client,
            Config {
                rng_seed: Some(7),
                ..Config::default()
            },
        )
    }

    fn feed(conn: &mut Connection, data: &[u8]) -> Result<Vec<Message>, ProtocolError> {
        conn.handle_input(data);
        std::iter::from_fn(|| conn.poll_message()).collect()
    }

    fn drain(conn: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn rfc_6455_single_frame_messages() {
        // §5.7: unmasked "Hello" as received by a client.
        let mut c = client();
        let got = feed(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(got, Ok(vec![Message::text("Hello")]));
        // §5.7: masked "Hello" as received by a server.
        let mut s = server();
        let got = feed(
            &mut s,
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        );
        assert_eq!(got, Ok(vec![Message::text("Hello")]));
    }

    #[test]
    fn rfc_6455_fragmented_message_and_ping() {
        // §5.7: "Hel" + "lo" as two unmasked frames, with an unmasked ping between them.
        let mut c = client();
        assert_eq!(feed(&mut c, &[0x01, 0x03, 0x48, 0x65, 0x6c]), Ok(vec![]));
        let ping = feed(&mut c, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(ping, Ok(vec![Message::Ping(Bytes::from_static(b"Hello"))]));
        assert_eq!(
            feed(&mut c, &[0x80, 0x02, 0x6c, 0x6f]),
            Ok(vec![Message::text("Hello")])
        );
        // The ping was answered with a masked pong carrying the same payload.
        let out = drain(&mut c);
        assert_eq!(&out[..2], &[0x8a, 0x85]);
        let mut pong = out[6..].to_vec();
        apply_mask(&mut pong, out[2..6].try_into().unwrap(), 0);
        assert_eq!(pong, b"Hello");
    }

    #[test]
    fn server_encodes_rfc_6455_unmasked_hello() {
        let mut s = server();
        s.send(Message::text("Hello")).unwrap();
        assert_eq!(drain(&mut s), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let shared = EncodedFrame::text(&"Hello".into());
        assert_eq!(
            &shared.as_bytes()[..],
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn unmasked_frame_to_server_fails_with_1002() {
        let mut s = server();
        let err = feed(&mut s, &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']).unwrap_err();
        assert_eq!(err, ProtocolError::UnmaskedFrame);
        let out = drain(&mut s);
        assert_eq!(&out[..4], &[0x88, out[1], 0x03, 0xea]);
        assert!(s.is_closed());
        assert_eq!(s.send(Message::text("late")), Err(SendError::Closed));
    }

    #[test]
    fn oversized_frame_header_is_refused_before_its_payload() {
        let mut s = Connection::new(
            Role::Server,
            Config {
                max_frame_size: 1000,
                ..Config::default()
            },
        );
        // A header announcing 1 GiB, and no payload at all.
        let header = [0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4];
        let err = feed(&mut s, &header).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    }

    #[test]
    fn close_is_echoed_and_ends_the_connection() {
        let mut c = client();
        let got = feed(&mut c, &[0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(
            got,
            Ok(vec![Message::Close(Some(CloseFrame::new(
                CloseCode::NORMAL,
                ""
            )))])
        );
        assert!(c.is_closed());
        let out = drain(&mut c);
        assert_eq!(&out[..2], &[0x88, 0x82]);
        // Data after Close is ignored.
        assert_eq!(feed(&mut c, &[0x81, 0x01, b'x']), Ok(vec![]));
    }

    #[test]
    fn a_reply_goes_out_before_the_close_of_a_later_violation() {
        // A valid message, then a frame with RSV2 set, in one read.
        let mut s = server();
        s.handle_input(&[0x81, 0x81, 0, 0, 0, 0, b'a', 0xa1, 0x80, 0, 0, 0, 0]);
        let first = s.poll_message();
        assert_eq!(first, Some(Ok(Message::text("a"))));
        s.send(Message::text("a")).unwrap();
        assert_eq!(s.poll_message(), Some(Err(ProtocolError::ReservedBits)));
        assert_eq!(s.poll_message(), None);
        let out = drain(&mut s);
        assert_eq!(&out[..3], &[0x81, 0x01, b'a']);
        assert_eq!(&out[3..4], &[0x88]);
    }
}
