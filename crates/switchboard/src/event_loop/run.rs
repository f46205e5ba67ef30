//! The loop: one task per thread that owns every WebSocket its
//! [`EventLoop`](super::EventLoop) took on the thread, in pages of slots, learns which sockets
//! are ready from its own `epoll` (mio), and polls only those. Its `epoll` descriptor is itself
//! registered with tokio's reactor, so the loop sleeps with the runtime and wakes when any of
//! its sockets has an event; deadlines and the server's shutdown reach a connection through
//! its waker (`wake.rs`). Mail from `Remote`s comes through the same mailbox as the wakers'
//! tokens, and is fed to its connections before they are polled.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use mio::{Events, Interest, Token};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::driver::Driven;
use super::mail::{Address, Mail};
use super::pages::Pages;
use super::stream::LoopStream;
use super::wake::{LoopId, MAX_TOKENS};
use super::{Handler, Socket};
use crate::websocket::WebSocket;

/// Events taken from `epoll` at once; after a full batch the loop lets other tasks run.
const BATCH: usize = 1024;

/// A WebSocket on its way into a thread's loop.
pub(super) struct Arrival {
    pub(super) ws: WebSocket<LoopStream>,
    pub(super) request: Request<()>,
}

/// Runs a thread's loop until the runtime ends (or, once nothing can send it arrivals, until its
/// last connection is over).
pub(super) async fn run<H: Handler>(handler: Arc<H>, arrivals: mpsc::UnboundedReceiver<Arrival>) {
    let mut state = match Loop::new(handler, arrivals) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(error = %e, "cannot start an event loop");
            return;
        }
    };
    std::future::poll_fn(|cx| state.poll(cx)).await;
}

struct Loop<H: Handler> {
    handler: Arc<H>,
    poll: AsyncFd<mio::Poll>,
    events: Events,
    connections: Pages<Driven<LoopStream, H::State>>,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    /// No more arrivals: the loop ends with its last connection.
    closed: bool,
    id: LoopId,
    /// Tokens woken, taken from `id` each turn.
    woken: Vec<u32>,
    /// Mail posted by `Remote`s, taken from `id` each turn.
    mail: Vec<Mail>,
}

impl<H: Handler> Loop<H> {
    fn new(handler: Arc<H>, arrivals: mpsc::UnboundedReceiver<Arrival>) -> std::io::Result<Self> {
        let id = LoopId::new().ok_or_else(|| std::io::Error::other("too many event loops"))?;
        let poll = mio::Poll::new()?;
        // SAFETY: the `Poll` owns its descriptor until it is dropped with the `AsyncFd`, and is
        // only ever polled through it, never replaced.
        let poll = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Self {
            handler,
            poll,
            events: Events::with_capacity(BATCH),
            connections: Pages::default(),
            arrivals,
            closed: false,
            id,
            woken: Vec::new(),
            mail: Vec::new(),
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            while !self.closed {
                match self.arrivals.poll_recv(cx) {
                    Poll::Ready(Some(arrival)) => self.admit(arrival),
                    Poll::Ready(None) => self.closed = true,
                    Poll::Pending => break,
                }
            }
            let mut woken = std::mem::take(&mut self.woken);
            let mut mail = std::mem::take(&mut self.mail);
            self.id.woken().take(&mut woken, &mut mail, cx.waker());
            if !mail.is_empty() {
                self.deliver(&mut mail, &mut woken);
                // Each connection once, however much it got: its mail leaves in one write.
                woken.sort_unstable();
                woken.dedup();
            }
            self.mail = mail;
            for &token in &woken {
                self.drive(token as usize);
            }
            let any_woken = !woken.is_empty();
            self.woken = woken;

            let mut guard = match self.poll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => {
                    tracing::error!(error = %e, "event loop failed");
                    return Poll::Ready(());
                }
                Poll::Pending if any_woken => continue,
                Poll::Pending if self.closed && self.connections.is_empty() => {
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            };
            if let Err(e) = guard
                .get_inner_mut()
                .poll(&mut self.events, Some(Duration::ZERO))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "event loop failed");
                return Poll::Ready(());
            }
            let full = self.events.iter().count() == BATCH;
            if !full {
                // A short batch emptied `epoll`'s ready list; a later event marks its
                // descriptor readable again.
                guard.clear_ready();
            }
            drop(guard);
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in &events {
                let token = event.token().0;
                if let Some(connection) = self.connections.get_mut(token) {
                    connection.ws.io_mut().ready(event);
                    self.drive(token);
                }
            }
            self.events = events;
            if full {
                // Let the runtime's other tasks (handshakes, timers) have a turn.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Takes in an upgraded WebSocket: registers its socket and opens it with the handler.
    fn admit(&mut self, Arrival { mut ws, request }: Arrival) {
        let token = self.connections.vacant_key();
        if token >= MAX_TOKENS {
            tracing::warn!("event loop full: dropping a connection");
            return;
        }
        let registered = self.poll.get_ref().registry().register(
            ws.io_mut().socket_mut(),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            tracing::warn!(error = %e, "cannot register a connection with the event loop");
            return;
        }
        let address = Address {
            token: token as u32,
            generation: self.connections.generation(token),
        };
        let state = self.handler.open(
            &mut Socket::new(&mut ws, self.id.woken(), address),
            &request,
        );
        self.connections.insert(Driven::new(ws, state));
        // Its first frames may have come with the handshake.
        self.drive(token);
    }

    /// Feeds each item of `mail` to the connections it is for that are still there, and adds
    /// their tokens to `woken`.
    fn deliver(&mut self, mail: &mut Vec<Mail>, woken: &mut Vec<u32>) {
        for item in mail.drain(..) {
            item.open(|to, letter| {
                // A slot's generation changes when its connection ends: mail for an earlier
                // connection of the token is not for this one.
                if self.connections.generation(to.token as usize) != to.generation {
                    return;
                }
                if let Some(connection) = self.connections.get_mut(to.token as usize) {
                    if letter.feed(&mut connection.ws) {
                        let socket = &mut Socket::new(&mut connection.ws, self.id.woken(), to);
                        self.handler.dropped(&mut connection.state, socket);
                    }
                    woken.push(to.token);
                }
            });
        }
    }

    /// Polls connection `token`, and ends it when it is over.
    fn drive(&mut self, token: usize) {
        let address = Address {
            token: token as u32,
            generation: self.connections.generation(token),
        };
        let Some(connection) = self.connections.get_mut(token) else {
            return;
        };
        let waker = self.id.waker(token);
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(ending) =
            connection.poll(&*self.handler, &mut cx, self.id.woken(), address)
            && let Some(connection) = self.connections.remove(token)
        {
            // Closing the socket takes it out of `epoll`.
            self.handler.close(connection.state, ending);
        }
    }
}
