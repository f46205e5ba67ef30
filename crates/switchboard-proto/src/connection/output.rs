//! What goes to the peer: messages encoded into frames (RFC 6455 §5.2; masked by a client,
//! §5.3; compressed with permessage-deflate, RFC 7692 §6), and the transmit queue's public face.
//!
//! Invariant: nothing is encoded once a Close frame was sent or the connection failed (§5.5.1).

use std::io::IoSlice;

use bytes::Bytes;

use super::encoded::EncodedFrame;
use super::{Connection, Role, State};
use crate::error::SendError;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;

/// Server payloads up to this size are copied behind their header, so that small frames leave in
/// one contiguous buffer; larger ones are queued as their own `Bytes`, without a copy.
const INLINE_PAYLOAD: usize = 1024;

impl Connection {
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
            Message::Close(frame) => self.send_close(frame)?,
        }
        Ok(())
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
        match self.rare.as_mut().and_then(|rare| rare.deflate.as_mut()) {
            Some(d) if d.deflater.wants(frame.payload().len()) => {
                let (level, bits) = (d.deflater.level(), d.deflater.bits());
                let shared = d
                    .deflater
                    .can_share(level, bits)
                    .then(|| frame.compressed_with(level, bits));
                match shared {
                    Some((l, b, bytes)) if d.deflater.can_share(*l, *b) => {
                        self.transmit.push(bytes.clone());
                    }
                    _ => {
                        let compressed = d.deflater.compress(frame.payload());
                        self.write_frame_rsv1(frame.opcode(), compressed, true);
                    }
                }
            }
            _ => self.transmit.push(frame.as_bytes().clone()),
        }
        Ok(())
    }

    /// The next bytes to write to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop()
    }

    /// The bytes queued for the peer, in order, as slices for one vectored write: fills up to
    /// `slices.len()` of them and returns how many it filled (0 when nothing is queued).
    /// Nothing is taken off the queue: report what the transport accepted with
    /// [`advance_transmit`](Self::advance_transmit).
    ///
    /// Unlike [`poll_transmit`](Self::poll_transmit), the bytes stay in the connection until
    /// written, so its buffer is reused from one write to the next.
    pub fn transmit_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.transmit.slices(slices)
    }

    /// Takes the first `n` queued bytes off the queue, after the transport wrote them (see
    /// [`transmit_slices`](Self::transmit_slices)).
    ///
    /// # Panics
    ///
    /// If `n` is more than [`buffered_amount`](Self::buffered_amount).
    pub fn advance_transmit(&mut self, n: usize) {
        self.transmit.advance(n);
    }

    /// How many bytes are queued for the peer and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit) or written (see
    /// [`advance_transmit`](Self::advance_transmit)).
    pub fn buffered_amount(&self) -> usize {
        self.transmit.len()
    }

    #[cfg(test)]
    pub(crate) fn pending_capacity(&self) -> usize {
        self.transmit.pending_capacity()
    }

    #[cfg(test)]
    pub(crate) fn has_queue(&self) -> bool {
        self.transmit.has_queue()
    }

    /// Queues a text or binary message, compressed when permessage-deflate is on and the
    /// message reaches the threshold.
    pub(super) fn write_data(&mut self, opcode: OpCode, payload: Bytes) {
        match self.rare.as_mut().and_then(|rare| rare.deflate.as_mut()) {
            Some(d) if d.deflater.wants(payload.len()) => {
                let compressed = d.deflater.compress(&payload);
                self.write_frame_rsv1(opcode, compressed, true);
            }
            _ => self.write_frame(opcode, payload),
        }
    }

    pub(super) fn write_frame(&mut self, opcode: OpCode, payload: Bytes) {
        self.write_frame_rsv1(opcode, payload, false);
    }

    fn write_frame_rsv1(&mut self, opcode: OpCode, payload: Bytes, rsv1: bool) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.rsv1 = rsv1;
        match self.role {
            Role::Client => {
                let seed = self.config.rng_seed;
                let key = self.rare_mut().rng.next_key(seed);
                header.mask = Some(key);
                let out = self.transmit.encode_buf();
                header.encode(out);
                let start = out.len();
                out.extend_from_slice(&payload);
                apply_mask(&mut out[start..], key, 0);
            }
            Role::Server if payload.len() <= INLINE_PAYLOAD => {
                let out = self.transmit.encode_buf();
                header.encode(out);
                out.extend_from_slice(&payload);
            }
            Role::Server => {
                header.encode(self.transmit.encode_buf());
                self.transmit.push(payload);
            }
        }
    }
}

fn check_control_len(data: &Bytes) -> Result<(), SendError> {
    if data.len() > 125 {
        return Err(SendError::ControlFrameTooLong { len: data.len() });
    }
    Ok(())
}
