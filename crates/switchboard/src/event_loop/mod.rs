//! [`EventLoop`]: WebSockets served by callbacks from one loop per thread, with no task per
//! connection.
//!
//! A [`Server`](crate::Server) gives each connection a task, and the task's handler an async
//! [`WebSocket`]. That costs every connection a task (its cell, waker and I/O registration)
//! and every message a wake-up through the scheduler. An event loop instead owns every upgraded
//! connection of its thread, learns which sockets are ready from one `epoll`
//! instance (mio, itself waited on through tokio's reactor), and calls a [`Handler`]:
//! [`open`](Handler::open), [`message`](Handler::message), [`drain`](Handler::drain) and
//! [`close`](Handler::close). Replies queued while one read's messages are handled leave
//! together in one write (corking).
//!
//! The handshake stays the server's (TLS, routes, hooks, limits); [`EventLoop::serve`] is the
//! server's handler, and moves each plain TCP WebSocket into the loop of the thread that
//! upgraded it, started there on first use. Everything else about a connection (pings, the
//! closing handshake, keepalive, the send limits, the server's drain, its metrics) is the
//! engine's driver's, as in a task. A WebSocket the loop cannot take (TLS, HTTP/2) runs the same
//! handler in a task of its own.
//!
//! A callback sends to its own connection through its [`Socket`]; anything else (another
//! connection's callback, another thread, a task) sends through a [`Remote`], got from
//! [`Socket::remote`]. A `Remote` posts mail to its loop's mailbox (one per loop, shared by its
//! connections: the same lock as the loop's wakers) and wakes the loop; the loop, each turn,
//! takes the mail, feeds each item to its connection (if the connection has not ended: an
//! address is a token and its slot's generation), then polls each connection that got mail
//! once, so that what was mailed to it in a turn leaves in one write. A connection in a task of
//! its own has a mailbox of its own, taken each time its task is polled. [`Recipients`] groups
//! `Remote`s by loop, so that one frame for many connections takes each loop's lock once.
//!
//! - `driver.rs`: one connection and its handler's state, polled;
//! - `mail.rs`: what a `Remote` posts, and how it is fed to a connection;
//! - `pages.rs`: the connections by token, with their generations;
//! - `remote.rs`: [`Remote`] and [`Recipients`];
//! - `run.rs`: the loop;
//! - `stream.rs`: a socket of the loop as the driver sees it;
//! - `wake.rs`: wakers that name a connection without an allocation, and the mailbox;
//! - this file: the public face.

pub(crate) mod driver;
mod mail;
mod pages;
mod remote;
mod run;
pub(crate) mod stream;
mod wake;

pub use remote::{Recipients, Remote};

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::Request;
use proto::deflate::DeflateParams;
use proto::{CloseCode, EncodedFrame, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;
use driver::Driven;
use mail::Address;
use run::Arrival;
use stream::LoopStream;
use wake::Woken;

/// What an application does with the WebSockets of an [`EventLoop`], uWebSockets-style: a
/// callback per event, and a state per connection.
///
/// Callbacks run on the loop's thread, between reads: a callback that blocks holds up every
/// connection of the loop. Send with the [`Socket`] given; what is sent is queued, and written
/// once the messages of the current read are handled.
pub trait Handler: Send + Sync + 'static {
    /// What the handler keeps per connection.
    type State: Send + 'static;

    /// A WebSocket was upgraded by `request`: its state. May send.
    fn open(&self, socket: &mut Socket<'_>, request: &Request<()>) -> Self::State;

    /// A text or binary message arrived (pings and pongs are answered by the engine).
    fn message(&self, state: &mut Self::State, socket: &mut Socket<'_>, message: Message);

    /// Mail from a [`Remote`] did not fit the connection's send queue and was dropped, under
    /// the [`Backpressure::Drop`](crate::Backpressure::Drop) policy (under
    /// [`Disconnect`](crate::Backpressure::Disconnect) the connection is closed with 1013
    /// instead). The handler may tell the peer and close it: what `socket` sends goes past
    /// the limit. Not called once the connection is closing.
    fn dropped(&self, state: &mut Self::State, socket: &mut Socket<'_>) {
        let _ = (state, socket);
    }

    /// Output that had to wait for a slow peer has all been written: a publisher that paused
    /// may go on.
    fn drain(&self, state: &mut Self::State, socket: &mut Socket<'_>) {
        let _ = (state, socket);
    }

    /// The connection is over: `ending` is the peer's Close, the error that ended it, or
    /// `None` (the peer vanished, or the server dropped it after its grace period).
    fn close(&self, state: Self::State, ending: Option<Result<Message, Error>>) {
        let _ = (state, ending);
    }
}

/// A connection, as its handler's callbacks see it.
pub struct Socket<'a> {
    ws: &'a mut dyn Outlet,
    mailbox: &'a Arc<Woken>,
    address: Address,
}

impl std::fmt::Debug for Socket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("buffered_amount", &self.buffered_amount())
            .finish_non_exhaustive()
    }
}

impl<'a> Socket<'a> {
    fn new<S: AsyncRead + AsyncWrite + Unpin>(
        ws: &'a mut WebSocket<S>,
        mailbox: &'a Arc<Woken>,
        address: Address,
    ) -> Self {
        Self {
            ws,
            mailbox,
            address,
        }
    }

    /// A handle that sends to this connection from anywhere, for as long as it lasts; see
    /// [`Remote`]. No allocation: it shares its loop's mailbox.
    pub fn remote(&self) -> Remote {
        Remote::new(self.mailbox.clone(), self.address)
    }

    /// Queues a message; it is written after the current read's messages are handled.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::feed`].
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.ws.feed(message.into())
    }

    /// Queues a frame encoded once for many connections; see [`EncodedFrame`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::feed_encoded`].
    pub fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.ws.feed_encoded(frame)
    }

    /// Starts the closing handshake with `code` and `reason`; [`Handler::close`] follows when
    /// it is over.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] for a code that may not be sent or a reason over 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.ws.start_close(code, reason)
    }

    /// Bytes queued for the peer and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.ws.buffered_amount()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.ws.protocol()
    }

    /// The permessage-deflate parameters agreed in the handshake; `None` when messages are
    /// not compressed.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.ws.deflate()
    }
}

/// What a [`Socket`] does, whatever the WebSocket's transport.
trait Outlet {
    fn feed(&mut self, message: Message) -> Result<(), Error>;
    fn feed_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error>;
    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error>;
    fn buffered_amount(&self) -> usize;
    fn protocol(&self) -> Option<&str>;
    fn deflate(&self) -> Option<&DeflateParams>;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Outlet for WebSocket<S> {
    fn feed(&mut self, message: Message) -> Result<(), Error> {
        Self::feed(self, message)
    }
    fn feed_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        Self::feed_encoded(self, frame)
    }
    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        Self::start_close(self, code, reason)
    }
    fn buffered_amount(&self) -> usize {
        Self::buffered_amount(self)
    }
    fn protocol(&self) -> Option<&str> {
        Self::protocol(self)
    }
    fn deflate(&self) -> Option<&DeflateParams> {
        Self::deflate(self)
    }
}

/// Numbers event loops, to find each one's loop on a thread.
static NEXT_LOOP: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The running loops of this thread, by [`EventLoop`]: where its WebSockets go.
    static HERE: RefCell<HashMap<usize, mpsc::UnboundedSender<Arrival>>> =
        RefCell::new(HashMap::new());
}

/// Serves a [`Server`](crate::Server)'s WebSockets with a [`Handler`], from one loop per
/// thread and no task per connection (see the module docs).
///
/// ```no_run
/// use switchboard::event_loop::{EventLoop, Handler, Socket};
/// use switchboard::{Message, http::Request};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = ();
///     fn open(&self, _: &mut Socket<'_>, _: &Request<()>) {}
///     fn message(&self, _: &mut (), socket: &mut Socket<'_>, message: Message) {
///         let _ = socket.send(message);
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let server = switchboard::Server::builder().bind("127.0.0.1:9001").await?;
/// let echo = EventLoop::new(Echo);
/// server.serve(move |ws, request| echo.serve(ws, request)).await
/// # }
/// ```
#[derive(Debug)]
pub struct EventLoop<H> {
    handler: Arc<H>,
    number: usize,
}

impl<H> Clone for EventLoop<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            number: self.number,
        }
    }
}

impl<H: Handler> EventLoop<H> {
    /// Loops that will serve with `handler` (one per thread, started on first use).
    pub fn new(handler: H) -> Self {
        Self {
            handler: Arc::new(handler),
            number: NEXT_LOOP.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Serves `ws`: a plain TCP WebSocket moves into this thread's loop, and the future returned
    /// completes at once; any other (TLS, HTTP/2) is served by the future itself. Call it from
    /// a [`Server`](crate::Server)'s handler, inside a tokio runtime.
    pub fn serve(&self, ws: WebSocket<MaybeTlsStream>, request: Request<()>) -> Serving {
        let (io, parts) = ws.into_parts();
        let tcp = match io {
            MaybeTlsStream::Plain(tcp) => tcp,
            other => {
                let ws = WebSocket::from_parts(other, parts);
                return Serving(Some(Box::pin(in_task(self.handler.clone(), ws, request))));
            }
        };
        // Out of tokio's reactor and into the loop's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot move a connection into the event loop");
                return Serving(None);
            }
        };
        let socket = LoopStream::new(mio::net::TcpStream::from_std(tcp));
        let mut ws = WebSocket::from_parts(socket, parts);
        ws.detach_task();
        let mut arrival = Arrival { ws, request };
        HERE.with(|here| {
            let mut here = here.borrow_mut();
            // A loop ends with its runtime: then start another.
            for _ in 0..2 {
                let sender = here.entry(self.number).or_insert_with(|| {
                    let (sender, arrivals) = mpsc::unbounded_channel();
                    tokio::spawn(run::run(self.handler.clone(), arrivals));
                    sender
                });
                match sender.send(arrival) {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(back)) => {
                        here.remove(&self.number);
                        arrival = back;
                    }
                }
            }
        });
        Serving(None)
    }
}

/// The future of [`EventLoop::serve`]: done at once when the loop took the connection.
#[must_use = "a WebSocket the loop cannot take is served by this future"]
pub struct Serving(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("in_task", &self.0.is_some())
            .finish()
    }
}

impl Future for Serving {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(task) => task.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// A WebSocket the loop cannot take, served with the same callbacks in its own task.
async fn in_task<H: Handler, S: AsyncRead + AsyncWrite + Unpin>(
    handler: Arc<H>,
    mut ws: WebSocket<S>,
    request: Request<()>,
) {
    // A mailbox of its own, for its one connection, refusing mail once the task ends
    // (also when it is dropped unfinished).
    let mailbox = Arc::new(Woken::default());
    let _closing = Closing(mailbox.clone());
    let address = Address {
        token: 0,
        generation: 0,
    };
    let state = handler.open(&mut Socket::new(&mut ws, &mailbox, address), &request);
    drop(request);
    let mut driven = Driven::new(ws, state);
    let (mut tokens, mut mail) = (Vec::new(), Vec::new());
    let ending = std::future::poll_fn(|cx| {
        mailbox.take(&mut tokens, &mut mail, cx.waker());
        for item in mail.drain(..) {
            item.open(|_, letter| {
                if letter.feed(&mut driven.ws) {
                    let socket = &mut Socket::new(&mut driven.ws, &mailbox, address);
                    handler.dropped(&mut driven.state, socket);
                }
            });
        }
        driven.poll(&*handler, cx, &mailbox, address)
    })
    .await;
    handler.close(driven.state, ending);
}

/// Closes a task's mailbox when the task ends.
struct Closing(Arc<Woken>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}
