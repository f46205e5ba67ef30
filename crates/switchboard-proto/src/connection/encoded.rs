//! Data frames encoded once for many server connections (a broadcast): server frames are
//! unmasked (RFC 6455 §5.1), so every recipient gets the same bytes.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::deflate;
use crate::frame::{FrameHeader, OpCode};
use crate::message::Message;
use crate::text::Utf8Bytes;

/// A server-to-client data frame, encoded once and sent to many connections with
/// [`Connection::send_encoded`]: server frames are unmasked, so every recipient gets the same
/// bytes.
///
/// With permessage-deflate, the frame also holds a compressed variant, made by the first
/// connection that needs it and shared by every connection without context takeover (see
/// [`Connection::send_encoded`]). Clones share both.
///
/// [`Connection::send_encoded`]: crate::Connection::send_encoded
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

    pub(super) fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The payload, uncompressed.
    pub(super) fn payload(&self) -> &[u8] {
        &self.plain[self.header_len..]
    }

    /// The compressed frame with the level and window bits it was made with: made by the first
    /// caller, with a fresh compressor of `level` and `bits`, and shared by the callers after.
    pub(super) fn compressed_with(&self, level: u32, bits: u8) -> &(u32, u8, Bytes) {
        self.compressed.get_or_init(|| {
            let compressed = deflate::compress_once(level, bits, self.payload());
            (level, bits, encode_frame(self.opcode, true, &compressed))
        })
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
