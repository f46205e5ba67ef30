//! [`Driven`]: one connection and its handler's state, polled by whoever serves it (the event
//! loop, or a task of its own). The engine's driver ([`WebSocket::poll_recv`]) does everything
//! a connection needs (pings, the closing handshake, deadlines, the server's shutdown, counts),
//! so a connection behaves on the loop exactly as in a task; this adds the callbacks.

use std::sync::Arc;
use std::task::{Context, Poll};

use proto::Message;
use tokio::io::{AsyncRead, AsyncWrite};

use super::mail::Address;
use super::wake::Woken;
use super::{Handler, Socket};
use crate::error::Error;
use crate::websocket::WebSocket;

/// How a connection ended: the peer's Close, the failure, or neither (the peer vanished, or
/// the server dropped it).
pub(super) type Ending = Option<Result<Message, Error>>;

#[derive(Debug)]
pub(crate) struct Driven<S, St> {
    /// Its `waited` flag: output had to wait for the peer since the handler last heard of it.
    pub(super) ws: WebSocket<S>,
    pub(super) state: St,
}

impl<S: AsyncRead + AsyncWrite + Unpin, St> Driven<S, St> {
    pub(super) fn new(ws: WebSocket<S>, state: St) -> Self {
        Self { ws, state }
    }

    /// Hands the handler every message that has arrived, writes what it queued in reply (all
    /// of it after the last message of a read: corked), and returns the ending once the
    /// connection is over. Its callbacks' [`Socket`]s give `Remote`s to `address` at `mailbox`.
    pub(super) fn poll<H: Handler<State = St>>(
        &mut self,
        handler: &H,
        cx: &mut Context<'_>,
        mailbox: &Arc<Woken>,
        address: Address,
    ) -> Poll<Ending> {
        if self.ws.is_cancelled() {
            // Past the server's grace period; a task would have been aborted.
            return Poll::Ready(None);
        }
        loop {
            match self.ws.poll_recv(cx) {
                Poll::Ready(Some(Ok(message))) if message.is_data() => {
                    handler.message(
                        &mut self.state,
                        &mut Socket::new(&mut self.ws, mailbox, address),
                        message,
                    );
                    continue;
                }
                // Pings and pongs are answered and counted by the engine.
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                // A Close, a failure or the end come last.
                Poll::Ready(ending) => return Poll::Ready(ending),
                Poll::Pending => {}
            }
            // Waiting for input: whatever could be written has been.
            if self.ws.buffered_amount() > 0 {
                self.ws.waited = true;
                return Poll::Pending;
            }
            if !std::mem::take(&mut self.ws.waited) {
                return Poll::Pending;
            }
            handler.drain(
                &mut self.state,
                &mut Socket::new(&mut self.ws, mailbox, address),
            );
        }
    }
}
