//! Errors: the peer's violations ([`ProtocolError`]) and the caller's mistakes ([`SendError`]).

/// A violation of RFC 6455 by the peer, or a message beyond a configured limit.
///
/// When [`Connection::handle_input`](crate::Connection::handle_input) returns one, the Close
/// frame with [`close_code`](Self::close_code) is already queued: flush it, then drop the
/// connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 was set without an extension that defines it (§5.2), or RSV1 where
    /// permessage-deflate does not allow it (RFC 7692 §6.1: only on the first frame of a data
    /// message).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// The opcode is reserved (0x3–0x7, 0xB–0xF, §5.2).
    #[error("reserved opcode {opcode:#x}")]
    ReservedOpcode {
        /// The opcode received.
        opcode: u8,
    },
    /// A control frame had a payload longer than 125 bytes (§5.5).
    #[error("control frame payload is {len} bytes, limit is 125")]
    ControlFrameTooLong {
        /// The announced payload length.
        len: u64,
    },
    /// A control frame had FIN clear (§5.5: control frames MUST NOT be fragmented).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A server received an unmasked frame (§5.1).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A client received a masked frame (§5.1).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A 64-bit payload length had its most significant bit set (§5.2).
    #[error("payload length has the most significant bit set")]
    InvalidLength,
    /// A frame announced a payload beyond [`Config::max_frame_size`](crate::Config).
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// The announced payload length.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message grew beyond [`Config::max_message_size`](crate::Config).
    #[error("message exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A message was split into more than [`Config::max_fragments`](crate::Config) frames.
    #[error("message exceeds the limit of {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// A continuation frame arrived with no message in progress (§5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was in progress (§5.4).
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A compressed message is not a valid DEFLATE stream (RFC 7692 §7.2.2).
    #[error("invalid compressed data")]
    InvalidCompressedData,
    /// A text message (or close reason) was not valid UTF-8 (§8.1).
    #[error("invalid utf-8 in a text message")]
    InvalidUtf8,
    /// A Close frame body had one byte: a status code needs two (§5.5.1).
    #[error("close frame payload of 1 byte")]
    CloseFrameTooShort,
    /// A Close frame carried a status code not allowed on the wire (§7.4).
    #[error("invalid close code {code}")]
    InvalidCloseCode {
        /// The code received.
        code: u16,
    },
    /// A Close frame's reason was not valid UTF-8 (§5.5.1).
    #[error("invalid utf-8 in a close reason")]
    InvalidCloseReason,
    /// Nothing arrived from the peer within [`Config::pong_timeout`](crate::Config) of a
    /// keepalive Ping (§5.5.2): it is presumed dead.
    #[error("keepalive ping timeout")]
    KeepaliveTimeout,
}

/// A message the caller tried to send could not be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A Close frame was already sent or the connection has failed: nothing more may be sent.
    #[error("connection is closing or closed")]
    Closed,
    /// A ping or pong payload over 125 bytes (RFC 6455 §5.5).
    #[error("control frame payload is {len} bytes, limit is 125")]
    ControlFrameTooLong {
        /// The payload length.
        len: usize,
    },
    /// A close code that may not be sent (1005, 1006, 1015, unassigned or out of range).
    #[error("close code {code} may not be sent")]
    InvalidCloseCode {
        /// The code given.
        code: u16,
    },
    /// A close reason over 123 bytes (it shares the 125-byte control payload with the code).
    #[error("close reason is {len} bytes, limit is 123")]
    CloseReasonTooLong {
        /// The reason's length.
        len: usize,
    },
    /// A pre-encoded frame on a client connection: client frames must each be masked anew.
    #[error("pre-encoded frames are for server connections only")]
    EncodedFrameOnClient,
}
