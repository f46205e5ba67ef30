//! [`WebSocket`]: one connection over any `AsyncRead + AsyncWrite` transport.
//!
//! The socket is driven by the caller's calls: [`WebSocket::recv`] reads, answers pings and
//! Close frames, and flushes whatever is queued; [`WebSocket::send`] queues and flushes. All the
//! state lives in the struct, so every method can be cancelled at an `.await` without losing
//! bytes (see each method's "Cancel safety").

//!
//! - `cold.rs`: what the hot path does not touch, out of line (the connection's footprint);
//! - `transport.rs`: reads and writes of the transport;
//! - this file: the public API and the receive loop.

pub(crate) mod cold;
mod transport;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use proto::deflate::{DeflateConfig, DeflateParams};
use proto::{CloseCode, Config, Connection, EncodedFrame, Message, ProtocolError, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::backpressure::{Backpressure, SendQueue};
use crate::error::Error;
use crate::link::Count;
use cold::{Cold, Ending, link};

/// Output that may wait for a slow peer before reading pauses.
const READ_PAUSE: usize = 1 << 20;

/// A WebSocket connection over the transport `S` (a `TcpStream`, a TLS stream, an upgraded
/// HTTP connection, or an in-memory duplex in tests).
///
/// Receive with [`recv`](Self::recv) (or as a [`Stream`](futures_core::Stream)), send with
/// [`send`](Self::send). To receive and send from different tasks, [`split`](Self::split) it.
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    /// What the hot path does not touch (see `cold.rs`).
    cold: Option<Box<Cold>>,
    /// Set once the transport is finished with; `recv` then returns `None`.
    done: bool,
    /// Set once a server has shut down its sending side after the closing handshake.
    shut_down: bool,
    /// For an event loop's driver (`event_loop/driver.rs`): output had to wait for the peer
    /// since the handler last heard of it. Here, in bytes the struct has anyway, rather than
    /// beside it, where it would make every connection of a loop 8 bytes larger.
    pub(crate) waited: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport whose opening handshake is complete.
    ///
    /// `read_buf` holds bytes already read past the handshake (the first frames may share a
    /// read with it); pass an empty buffer if there are none. This is the entry point for
    /// callers that did the HTTP upgrade themselves (hyper, axum).
    pub fn from_raw(io: S, role: Role, config: impl Into<Arc<Config>>, read_buf: BytesMut) -> Self {
        let mut conn = Connection::new(role, config);
        conn.handle_input(&read_buf);
        conn.handle_timeout(Instant::now().into_std());
        Self {
            io,
            conn,
            cold: None,
            done: false,
            shut_down: false,
            waited: false,
        }
    }

    /// Bounds what [`split`](Self::split) senders may queue for the peer to `limit` bytes,
    /// with `policy` for [`Sender::try_send`](crate::Sender::try_send) when full. Connections
    /// accepted by a [`Server`](crate::Server) take the server's settings; others default to
    /// 1 MiB and [`Backpressure::Drop`].
    pub fn set_send_queue(&mut self, limit: usize, policy: Backpressure) {
        self.extras_mut().send_queue = Some(SendQueue { limit, policy });
    }

    /// Sets what happens to a message that does not fit the send queue (see
    /// [`set_send_queue`](Self::set_send_queue)), keeping the queue's limit: for the
    /// connections of an [`EventLoop`](crate::event_loop::EventLoop), whose mail from a
    /// [`Remote`](crate::event_loop::Remote) meets the policy when it arrives.
    pub fn set_backpressure(&mut self, policy: Backpressure) {
        let limit = self.send_queue().limit;
        self.set_send_queue(limit, policy);
    }

    /// Turns on permessage-deflate with the parameters agreed in the handshake, for callers
    /// that did the handshake themselves (see [`from_raw`](Self::from_raw)); `config` gives
    /// the compression level and threshold. Call it before any message is sent or received.
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) {
        self.conn.enable_deflate(params, config);
        self.extras_mut().deflate = Some(*params);
    }

    /// The permessage-deflate parameters agreed in the handshake; `None` when messages are
    /// not compressed.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.cold.as_ref()?.extras.as_ref()?.deflate.as_ref()
    }

    /// Sends this connection no [`shutdown_message`](crate::ServerBuilder::shutdown_message)
    /// when its server shuts down, only the Close frame: for a connection that speaks a
    /// protocol of its own, in which the server's message means nothing or harm.
    pub fn skip_shutdown_message(&mut self) {
        self.extras_mut().no_shutdown_message = true;
    }

    pub(crate) fn with_protocol(mut self, protocol: Option<String>) -> Self {
        if protocol.is_some() {
            self.extras_mut().protocol = protocol;
        }
        self
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.cold.as_ref()?.extras.as_ref()?.protocol.as_deref()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Bytes queued for the peer and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// Receives the next message.
    ///
    /// Pings are answered and a Close is answered as they arrive. A Close from the peer is
    /// returned as [`Message::Close`]; after it, and after any error, `recv` returns `None`. A
    /// clean close is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the peer broke the protocol (the Close frame with the matching
    /// code was sent before this returns), [`Error::Io`] when the transport failed or the peer
    /// vanished without a Close frame.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no message is lost if the future is dropped before it completes.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Sends a message and waits until it is written to the transport.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] after a Close was sent, or for a control payload over 125 bytes;
    /// [`Error::Io`] when the transport failed.
    ///
    /// # Cancel safety
    ///
    /// The message is queued before the first `.await`: if the future is dropped, it is still
    /// sent, in full, by the next operation on this socket.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.feed(message)?;
        self.flush().await
    }

    /// Queues a message without writing it; [`flush`](Self::flush) (or any other operation)
    /// writes it. Queue several messages and flush once to send them in one system call.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), without the I/O errors.
    pub fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        let close = match &message {
            Message::Close(frame) => Some(frame.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code)),
            _ => None,
        };
        let data = message.is_data();
        self.conn.send(message)?;
        if let Some(link) = link(&mut self.cold) {
            if data {
                link.count(Count::MessagesOut, 1);
            }
            if let Some(code) = close {
                link.note_close(code);
            }
        }
        Ok(())
    }

    /// Queues a frame encoded once for many connections (a broadcast); see
    /// [`EncodedFrame`].
    ///
    /// # Errors
    ///
    /// [`Error::Send`] after a Close was sent, or on a client.
    pub fn feed_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.conn.send_encoded(frame)?;
        if let Some(link) = link(&mut self.cold) {
            link.count(Count::MessagesOut, 1);
        }
        Ok(())
    }

    /// Writes everything queued.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the transport failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what was not written yet stays queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Polls for everything queued to be written; see [`flush`](Self::flush).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_write_out(cx).map_err(Error::from)
    }

    /// Closes the connection: sends a Close frame with `code` and `reason`, waits for the
    /// peer's Close (messages that arrive meanwhile are discarded) and ends the transport.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] for a code that may not be sent or a reason over 123 bytes;
    /// [`Error::Io`] when the transport failed. A peer that does not answer within the close
    /// timeout ([`Config::close_timeout`], 5 s by default) is not an error: the transport is
    /// closed anyway.
    ///
    /// # Cancel safety
    ///
    /// The Close frame is queued before the first `.await`; if cancelled, the closing handshake
    /// continues with the next [`recv`](Self::recv).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        while let Some(result) = self.recv().await {
            match result {
                Ok(_) => {}
                Err(Error::Protocol(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Polls for the next message; see [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let result = self.poll_recv_inner(cx);
        if let Some(link) = link(&mut self.cold)
            && result.is_pending()
        {
            // Waiting for input: a good moment to publish this connection's counts.
            link.flush();
        }
        result
    }

    fn poll_recv_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if !self.conn.is_closing()
                && let Some(link) = link(&mut self.cold)
                && let Some(farewell) = link.poll_shutdown(cx)
            {
                let skip = (self.cold.as_ref())
                    .and_then(|cold| cold.extras.as_ref())
                    .is_some_and(|extras| extras.no_shutdown_message);
                if let Some(message) = farewell
                    .message
                    .as_ref()
                    .filter(|_| !skip)
                    .and_then(|make| make())
                {
                    let _ = self.feed(message);
                }
                let _ = self.start_close(farewell.code, &farewell.reason);
            }
            {
                // Also after the engine closed: a keepalive failure is reported then.
                let message = self.conn.poll_message();
                if let (Some(link), Some(result)) = (link(&mut self.cold), &message) {
                    match result {
                        Ok(message) => link.note_received(message),
                        Err(e) => link.note_fault(e),
                    }
                }
                match message {
                    Some(Ok(Message::Close(frame))) => {
                        // A failure reported before takes precedence.
                        self.cold_mut()
                            .ending
                            .get_or_insert_with(|| Box::new(Ending::Closed(Message::Close(frame))));
                        continue;
                    }
                    Some(Ok(message)) => return Poll::Ready(Some(Ok(message))),
                    Some(Err(e)) => {
                        self.cold_mut().ending = Some(Box::new(Ending::Failed(e)));
                        continue;
                    }
                    None => {}
                }
            }
            if self.conn.is_abandoned() {
                // The closing handshake outlived the close timeout: drop the transport.
                return Poll::Ready(self.finish(None));
            }
            if self.poll_timer(cx).is_ready() {
                continue;
            }
            if self.conn.is_closed() {
                if let Err(e) = ready!(self.poll_write_out(cx)) {
                    return Poll::Ready(self.finish(Some(e)));
                }
                // RFC 6455 §7.1.1: "the server SHOULD close the underlying TCP connection
                // first"; a client waits for that by reading to the end, below.
                if self.conn.role() == Role::Server && !self.shut_down {
                    let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    self.shut_down = true;
                }
                // A server that started the handshake then reads to the end, discarding:
                // closing a socket with unread input makes the kernel send a reset, which can
                // destroy the Close frame before the peer reads it (the close timer bounds the
                // wait). A peer that started it sends nothing after its Close: done. So is a
                // peer that failed the keepalive: it is gone, and waiting buys nothing.
                if self.conn.role() == Role::Server
                    && (self.conn.is_closed_by_peer() || self.keepalive_failed())
                {
                    return Poll::Ready(self.finish(None));
                }
            }
            // Before waiting for input, write what is queued (replies, pongs, messages fed
            // since), all of it in one go; a transport that is not writable does not hold up
            // reading.
            match self.poll_write_out(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(self.finish(Some(e))),
                Poll::Ready(Ok(())) => {}
                // A peer that does not read what we send (pongs to a ping flood, echoes) must
                // not make us buffer without bound: stop reading until it catches up.
                Poll::Pending if self.buffered_amount() > READ_PAUSE => return Poll::Pending,
                Poll::Pending => {}
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) => {
                    if self.conn.is_closed() && !self.shut_down {
                        // The client's end of the handshake: answer the server's FIN with ours,
                        // so it need not wait for the socket to be dropped.
                        let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                        self.shut_down = true;
                    }
                    let eof = (!self.conn.is_closed()).then(|| {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed the connection without a close frame",
                        )
                    });
                    return Poll::Ready(self.finish(eof));
                }
                // Committed in poll_read; after the closing handshake the connection discards it.
                Ok(_) => {}
                Err(e) => return Poll::Ready(self.finish(Some(e))),
            }
        }
    }

    /// Whether the connection failed because the peer did not answer the keepalive ping.
    fn keepalive_failed(&self) -> bool {
        let ending = self.cold.as_deref().and_then(|cold| cold.ending.as_deref());
        matches!(
            ending,
            Some(Ending::Failed(ProtocolError::KeepaliveTimeout))
        )
    }

    /// Ends the connection, reporting (in order of precedence) the protocol error, the Close
    /// received, or `io_error`.
    fn finish(&mut self, io_error: Option<io::Error>) -> Option<Result<Message, Error>> {
        self.done = true;
        let ending = self.cold.as_deref_mut().and_then(|cold| {
            if let Some(extras) = &mut cold.extras {
                extras.timer = None;
            }
            cold.ending.take()
        });
        match ending.map(|ending| *ending) {
            Some(Ending::Failed(e)) => Some(Err(e.into())),
            Some(Ending::Closed(close)) => Some(Ok(close)),
            None => io_error.map(|e| Err(e.into())),
        }
    }

    /// Runs the engine's timers: `Ready` after a deadline came due and was handled (a ping may
    /// be queued, or the connection may have failed or given up on its close).
    pub(crate) fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.conn.poll_timeout() else {
            return Poll::Pending;
        };
        if let Some(link) = link(&mut self.cold) {
            // A server's connections share its sweeper instead of a timer each.
            if !link.poll_deadline(deadline, cx) {
                return Poll::Pending;
            }
            self.conn.handle_timeout(Instant::now().into_std());
            return Poll::Ready(());
        }
        let deadline = Instant::from_std(deadline);
        let timer = &mut self.extras_mut().timer;
        let timer = match timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        ready!(timer.as_mut().poll(cx));
        self.conn.handle_timeout(Instant::now().into_std());
        Poll::Ready(())
    }
    pub(crate) fn is_closing(&self) -> bool {
        self.conn.is_closing()
    }

    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !self.conn.is_closing() {
            self.conn.close(code, reason)?;
            if let Some(link) = link(&mut self.cold) {
                link.note_close(code);
            }
        }
        Ok(())
    }
}

impl<S> WebSocket<S> {
    pub(crate) fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The transport and the rest, to put the connection on another transport made from this
    /// one (a socket moved into an event loop) with [`from_parts`](WebSocket::from_parts).
    pub(crate) fn into_parts(self) -> (S, Parts) {
        let Self {
            io,
            conn,
            cold,
            done,
            shut_down,
            waited: _,
        } = self;
        let parts = Parts {
            conn,
            cold,
            done,
            shut_down,
        };
        (io, parts)
    }

    pub(crate) fn from_parts(io: S, parts: Parts) -> Self {
        let Parts {
            conn,
            cold,
            done,
            shut_down,
        } = parts;
        Self {
            io,
            conn,
            cold,
            done,
            shut_down,
            waited: false,
        }
    }
}

/// A [`WebSocket`] without its transport; see [`WebSocket::into_parts`].
pub(crate) struct Parts {
    conn: Connection,
    cold: Option<Box<Cold>>,
    done: bool,
    shut_down: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}
