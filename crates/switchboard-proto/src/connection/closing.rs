//! The closing handshake (RFC 6455 §5.5.1, §7): sending and answering Close frames, and
//! failing the connection on a violation (§7.1.7).
//!
//! Invariants: after a Close frame has been sent, no data frame is sent; after one has been
//! received, or the connection failed, nothing more is read.

use bytes::{Bytes, BytesMut};

use super::{CLOSED_BY_PEER, Connection, State};
use crate::close::{CloseCode, CloseFrame};
use crate::error::{ProtocolError, SendError};
use crate::frame::OpCode;
use crate::message::Message;
use crate::text::Utf8Bytes;

impl Connection {
    /// Starts the closing handshake with `code` and `reason`; see [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) for a [`Message::Close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let reason = Utf8Bytes::from(reason.to_owned());
        self.send(Message::Close(Some(CloseFrame { code, reason })))
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

    /// Whether the peer started the closing handshake: its Close came first and ours answered
    /// it. The peer sends nothing after its Close (RFC 6455 §5.5.1), so a server need not read
    /// to the end before closing the transport.
    pub fn is_closed_by_peer(&self) -> bool {
        self.flag(CLOSED_BY_PEER)
    }

    /// Sends our Close (from [`send`](Self::send)) and waits for the peer's.
    pub(super) fn send_close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
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
        Ok(())
    }

    /// The peer's Close frame arrived: answers it unless ours went first; either way the
    /// handshake is over.
    pub(super) fn receive_close(&mut self, payload: Bytes) -> Result<Message, ProtocolError> {
        let frame = CloseFrame::parse(payload)?;
        if self.state == State::Open {
            // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not
            // previously send a Close frame, the endpoint MUST send a Close frame in
            // response. [...] typically echos the status code it received."
            let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
            self.write_close(reply.as_ref());
            self.set_flag(CLOSED_BY_PEER, true);
        }
        self.state = State::Closed;
        self.input.clear();
        Ok(Message::Close(frame))
    }

    /// Fails the connection (RFC 6455 §7.1.7): queues the Close frame for `error` and stops
    /// reading.
    pub(super) fn fail(&mut self, error: &ProtocolError) {
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
        self.stop_reading();
        if let Some(d) = self.rare.as_mut().and_then(|rare| rare.deflate.as_mut()) {
            d.inflater.abandon();
        }
    }

    /// Drops whatever was received and not yet delivered.
    pub(super) fn stop_reading(&mut self) {
        self.input.clear();
        self.frame = None;
        self.end_partial();
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        self.write_frame(OpCode::Close, payload.freeze());
    }
}
