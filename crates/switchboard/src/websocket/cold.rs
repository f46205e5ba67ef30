//! The part of a [`WebSocket`] that the hot path does not touch, kept out of line.
//!
//! An idle connection's memory is mostly its task, and a server's task is the socket
//! (`footprint.rs` holds the sizes): the engine's state, the transport and two flags inline,
//! and one pointer to [`Cold`], boxed when first needed. A server's connections have it from
//! the start, for their [`Link`] to the server; what few connections use (how the connection
//! ended, the client's timer, what the handshake agreed) sits one box further.

use std::pin::Pin;

use proto::deflate::DeflateParams;
use proto::{Message, ProtocolError};
use tokio::time::Sleep;

use super::WebSocket;
use crate::addresses::AddressTicket;
use crate::backpressure::SendQueue;
use crate::link::Link;
use crate::metrics::Metrics;

#[derive(Debug, Default)]
pub(crate) struct Cold {
    /// Set on connections of a group (a [`Server`](crate::Server)'s).
    pub(super) link: Option<Link>,
    /// How the connection ended, reported once the transport is finished with.
    pub(super) ending: Option<Box<Ending>>,
    /// What the handshake agreed, settings few connections change, and a client's timer.
    pub(super) extras: Option<Box<Extras>>,
}

/// The group link in `cold`, if any (a function of the field, so that the rest of the
/// connection stays free to borrow).
pub(super) fn link(cold: &mut Option<Box<Cold>>) -> Option<&mut Link> {
    cold.as_deref_mut()?.link.as_mut()
}

/// How a connection ended, in order of precedence.
#[derive(Debug)]
pub(super) enum Ending {
    /// It failed; reported after the Close frame went out.
    Failed(ProtocolError),
    /// The peer's Close, reported after our reply went out.
    Closed(Message),
}

#[derive(Debug, Default)]
pub(super) struct Extras {
    pub(super) protocol: Option<String>,
    pub(super) deflate: Option<DeflateParams>,
    /// The send queue of [`split`](WebSocket::split), when not the server's or the default.
    pub(super) send_queue: Option<SendQueue>,
    /// The connection's count under a server's limit per address, when a trusted proxy
    /// forwarded it (a direct client's is its [`Link`]'s).
    pub(super) address: Option<AddressTicket>,
    /// Shutting down sends no [`shutdown_message`](crate::ServerBuilder::shutdown_message),
    /// only the Close frame.
    pub(super) no_shutdown_message: bool,
    /// Fires at the engine's next deadline (keepalive, close timeout); made on first use, and
    /// never on a server's connections (see `Link::poll_deadline`).
    pub(super) timer: Option<Pin<Box<Sleep>>>,
}

impl<S> WebSocket<S> {
    pub(crate) fn attach(&mut self, link: Link) {
        self.cold_mut().link = Some(link);
    }

    /// The connection leaves its task (for an event loop): the server no longer aborts the task
    /// to cancel it.
    pub(crate) fn detach_task(&mut self) {
        if let Some(link) = link(&mut self.cold) {
            link.detach();
        }
    }

    /// Whether the server gave up on its connections at the end of its grace period: a task
    /// is aborted then, a connection without one (in an event loop) asks.
    pub(crate) fn is_cancelled(&mut self) -> bool {
        link(&mut self.cold).is_some_and(|link| link.is_cancelled())
    }

    pub(crate) fn hold(&mut self, ticket: AddressTicket) {
        self.extras_mut().address = Some(ticket);
    }

    pub(super) fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_default()
    }

    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.cold.as_ref()?.link.as_ref().map(Link::metrics)
    }

    pub(crate) fn send_queue(&self) -> SendQueue {
        let Some(cold) = &self.cold else {
            return SendQueue::STANDALONE;
        };
        cold.extras
            .as_ref()
            .and_then(|extras| extras.send_queue)
            .or_else(|| cold.link.as_ref().map(Link::send_queue))
            .unwrap_or(SendQueue::STANDALONE)
    }

    pub(super) fn extras_mut(&mut self) -> &mut Extras {
        self.cold_mut().extras.get_or_insert_default()
    }
}
