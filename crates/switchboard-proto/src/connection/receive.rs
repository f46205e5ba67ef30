//! Receiving (RFC 6455 §5): frames parsed from the read buffer, checked against the role and
//! the limits as soon as their header is complete, unmasked in place, validated as text as
//! they arrive, reassembled from fragments (§5.4) and inflated (RFC 7692 §7.2.2).
//!
//! Invariants: a header announcing more than a limit costs nothing, as its payload is never
//! buffered; received payloads of uncompressed single-frame messages are slices of the read
//! buffer, not copies; input is processed one message at a time.

use bytes::{Buf, Bytes, BytesMut};

use super::incoming::{InFrame, Partial};
use super::{Connection, Rare, Role, State, TIMED_OUT};
use crate::deflate::InflateError;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::text::Utf8Bytes;

impl Connection {
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

    /// Tells when input last arrived (by the caller's clock, which may lag but never lead), so
    /// that the keepalive pings after [`Config::idle_timeout`](crate::Config::idle_timeout) of
    /// silence counted from then. Without it, silence is counted from the keepalive check that
    /// saw the input, which may ping up to twice the idle timeout after it.
    pub fn input_at(&mut self, at: std::time::Instant) {
        self.timers.input_at(at);
    }

    /// Appends a copy of bytes received from the peer to [`read_buffer`](Self::read_buffer)
    /// and commits them (see [`commit_read`](Self::commit_read)). Input after the closing
    /// handshake or a failure is discarded.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
        self.commit_read(data.len());
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
        if self.flag(TIMED_OUT) {
            self.set_flag(TIMED_OUT, false);
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

    fn process(&mut self) -> Result<Option<Message>, ProtocolError> {
        while self.state != State::Closed {
            let mut frame = match self.frame.take() {
                Some(frame) => frame,
                None => {
                    let Some((header, len)) = FrameHeader::decode(&self.input)? else {
                        return Ok(None);
                    };
                    self.check_header(&header)?;
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
                    }
                }
            };
            // Fits: check_header bounded it by max_frame_size, a usize.
            let len = frame.len as usize;
            let text = self.is_text(&frame);
            let available = self.input.len().min(len);
            if available > frame.processed {
                let fresh = &mut self.input[frame.processed..available];
                if let Some(key) = frame.mask {
                    apply_mask(fresh, key, frame.processed);
                }
                if text {
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
            if let Some(message) = self.handle_frame(frame.header(), text, payload)? {
                return Ok(Some(message));
            }
        }
        self.input.clear();
        Ok(None)
    }

    /// Whether the payload of `frame` is text to validate as it arrives: a text frame's, or a
    /// continuation's of a text message; not a compressed one's, whose inflated bytes are
    /// validated instead. Worked out from the header and the message in progress, which do
    /// not change while the frame arrives, rather than kept in [`InFrame`].
    fn is_text(&self, frame: &InFrame) -> bool {
        match frame.opcode {
            OpCode::Text => !frame.rsv1,
            OpCode::Continuation => self
                .partial()
                .is_some_and(|partial| partial.text && !partial.compressed),
            _ => false,
        }
    }

    /// Checks what the connection's state says about a new frame header.
    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.2: "If a nonzero value is received and none of the negotiated extensions
        // defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail the
        // WebSocket Connection_."
        if header.rsv2 || header.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
        // frames and non-first fragments of a data message."
        if header.rsv1
            && (self.deflate().is_none() || !matches!(header.opcode, OpCode::Text | OpCode::Binary))
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
        match (header.opcode, self.partial()) {
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
                    return Ok(());
                }
                too_large(partial.data.len())
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (OpCode::Text | OpCode::Binary, None) if header.rsv1 => Ok(()),
            (OpCode::Text | OpCode::Binary, None) => too_large(0),
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => Ok(()),
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
                self.rare_mut().partial = Some(Partial {
                    text: header.opcode == OpCode::Text,
                    compressed: true,
                    data: BytesMut::new(),
                    inflated: Vec::new(),
                    fragments: 1,
                });
                self.utf8.reset();
                return self.inflate(&payload, header.fin);
            }
            OpCode::Text | OpCode::Binary if header.fin => self.complete(text, payload)?,
            OpCode::Text | OpCode::Binary => {
                let mut data = BytesMut::with_capacity(payload.len());
                data.extend_from_slice(&payload);
                self.rare_mut().partial = Some(Partial {
                    text,
                    compressed: false,
                    data,
                    inflated: Vec::new(),
                    fragments: 1,
                });
                return Ok(None);
            }
            OpCode::Continuation => {
                // check_header refused a continuation without a partial message.
                let Some(partial) = self.rare.as_mut().and_then(|rare| rare.partial.as_mut())
                else {
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
                self.end_partial();
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
            OpCode::Close => self.receive_close(payload)?,
        };
        Ok(Some(message))
    }

    /// Inflates the next frame of a compressed message; returns the message after its last.
    fn inflate(&mut self, payload: &[u8], fin: bool) -> Result<Option<Message>, ProtocolError> {
        let Some(Rare {
            partial: Some(partial),
            deflate: Some(d),
            ..
        }) = self.rare.as_deref_mut()
        else {
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
        self.end_partial();
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
}
