//! [`Mail`]: what a [`Remote`](super::Remote) asks of a connection, queued in its loop's mailbox
//! (`wake.rs`'s `Woken`) until the loop takes it, and fed to the connection with the same
//! engine calls a [`Socket`](super::Socket) makes.
//!
//! Mail names its connection by [`Address`]: the token of its slot and the slot's generation,
//! which changes when the slot is freed, so that mail for a connection that has ended is dropped
//! rather than delivered to the next connection of its token.

use std::sync::Arc;

use proto::{CloseCode, EncodedFrame, Message};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backpressure::{FRAME_OVERHEAD, TOO_SLOW};
use crate::websocket::WebSocket;

/// One connection of a mailbox: its slot's token and the slot's generation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct Address {
    pub(super) token: u32,
    pub(super) generation: u32,
}

/// An item of mail.
#[derive(Debug)]
pub(super) enum Mail {
    Message(Address, Message),
    Frame(Address, EncodedFrame),
    Close(Address, CloseCode, Box<str>),
    /// One frame for many connections of the mailbox, all but `except`: a publication takes
    /// the mailbox's lock once, and the list is shared with the publisher, not copied.
    Frames {
        to: Arc<Vec<Address>>,
        except: Option<Address>,
        frame: EncodedFrame,
    },
}

/// What one connection is sent.
pub(super) enum Letter<'a> {
    Message(Message),
    Frame(&'a EncodedFrame),
    Close(CloseCode, &'a str),
}

impl Mail {
    /// Calls `deliver` with each connection the mail is for and what it is sent, in order.
    pub(super) fn open(self, mut deliver: impl FnMut(Address, Letter<'_>)) {
        match self {
            Self::Message(to, message) => deliver(to, Letter::Message(message)),
            Self::Frame(to, frame) => deliver(to, Letter::Frame(&frame)),
            Self::Close(to, code, reason) => deliver(to, Letter::Close(code, &reason)),
            Self::Frames { to, except, frame } => {
                for &to in to.iter().filter(|&&to| Some(to) != except) {
                    deliver(to, Letter::Frame(&frame));
                }
            }
        }
    }
}

impl Letter<'_> {
    /// Queues the letter on `ws` as its [`Socket`](super::Socket) would; a connection closing
    /// takes no more, and the letter is dropped. A message for a connection whose output is
    /// over its send queue limit meets the server's backpressure policy, as one a split
    /// [`Sender`](crate::Sender) tries to send: a sender elsewhere cannot see the connection
    /// fall behind. `true` when the letter was dropped for want of room and the connection
    /// stays open (the policy is [`Backpressure::Drop`](crate::Backpressure::Drop)): its
    /// handler is told ([`Handler::dropped`](super::Handler::dropped)).
    pub(super) fn feed<S: AsyncRead + AsyncWrite + Unpin>(self, ws: &mut WebSocket<S>) -> bool {
        let cost = match &self {
            Self::Message(message) => message.len() + FRAME_OVERHEAD,
            Self::Frame(frame) => frame.as_bytes().len(),
            Self::Close(..) => 0,
        };
        if cost > 0 && !has_room(ws, cost) {
            return !ws.is_closing();
        }
        let fed = match self {
            Self::Message(message) => ws.feed(message),
            Self::Frame(frame) => ws.feed_encoded(frame),
            Self::Close(code, reason) => ws.start_close(code, reason),
        };
        if let Err(e) = fed {
            tracing::trace!(error = %e, "mail dropped");
        }
        false
    }
}

/// Whether `cost` more bytes fit the connection's send queue (a message larger than the limit
/// fits an empty one). If not, applies the policy: the message is dropped, or the connection
/// is closed with 1013.
fn has_room<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, cost: usize) -> bool {
    let queue = ws.send_queue();
    let queued = ws.buffered_amount();
    if queued == 0 || queued + cost <= queue.limit {
        return true;
    }
    if queue.overflow(ws.metrics(), || ws.is_closing()) {
        tracing::debug!(queued, "send queue full: closing with 1013");
        let _ = ws.start_close(CloseCode::TRY_AGAIN_LATER, TOO_SLOW);
    }
    false
}
