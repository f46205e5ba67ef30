//! [`WebSocket::split`]: a receiver and cloneable senders, with a driver task that owns the
//! socket.
//!
//! The driver answers pings and Close frames and writes queued messages whether or not the
//! application is receiving, without locks: the halves talk to it through channels. A receiver
//! that falls behind makes the driver stop reading (TCP flow control then slows the peer).
//!
//! ## Backpressure
//!
//! What senders queue for the peer is bounded in bytes: the messages waiting for the driver and
//! the bytes the socket has not taken yet count together against the connection's limit
//! ([`ServerBuilder::max_send_queue`](crate::ServerBuilder::max_send_queue), 1 MiB by default).
//! [`Sender::send`] waits for room; [`Sender::try_send`] never waits and applies the
//! connection's [`Backpressure`] policy when there is none, so that a peer that reads slower
//! than it is written to never makes the process's memory grow without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use proto::{CloseCode, EncodedFrame, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};

use crate::backpressure::{Backpressure, SendQueue};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::websocket::WebSocket;

/// Messages the driver buffers for a receiver that is not keeping up.
const RECEIVE_QUEUE: usize = 64;
/// A frame header is at most 14 bytes: what a queued message costs beyond its payload.
const FRAME_OVERHEAD: usize = 14;

type Item = Result<Message, Error>;
type Reserve = Pin<
    Box<dyn Future<Output = Result<mpsc::OwnedPermit<Item>, mpsc::error::SendError<()>>> + Send>,
>;

#[derive(Debug)]
enum Command {
    /// A message and what it was counted as in `Outgoing::queued`.
    Message(Message, usize),
    Encoded(EncodedFrame, usize),
    Close(CloseCode, String),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The send queue's accounting, shared by the senders and the driver.
#[derive(Debug)]
struct Outgoing {
    /// Bytes of messages sent to the driver and not yet handed to the connection.
    queued: AtomicUsize,
    /// Bytes the connection holds that the socket has not taken (published by the driver).
    buffered: AtomicUsize,
    /// Woken when `buffered` shrinks or the driver ends.
    room: Notify,
    queue: SendQueue,
    /// The disconnect policy fired (once).
    overflowed: AtomicBool,
    metrics: Option<Metrics>,
}

impl Outgoing {
    fn total(&self) -> usize {
        self.queued.load(Ordering::Acquire) + self.buffered.load(Ordering::Acquire)
    }

    /// Counts `cost` more bytes if they fit: the total stays within the limit, except that
    /// one message of any size fits an empty queue.
    fn reserve(&self, cost: usize) -> bool {
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            let total = queued + self.buffered.load(Ordering::Acquire);
            if total > 0 && total + cost > self.queue.limit {
                return false;
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + cost,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }
}

/// The sending half of a split [`WebSocket`]. Cheap to clone; every clone feeds the same
/// connection, in the order the sends happen.
#[derive(Clone, Debug)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Command>,
    outgoing: Arc<Outgoing>,
    id: u64,
}

/// The receiving half of a split [`WebSocket`].
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::Receiver<Item>,
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Splits the connection into a receiver and a sender, and spawns a task that drives the
    /// socket until the connection ends.
    ///
    /// The send queue is bounded as the [`Server`](crate::Server) that accepted the
    /// connection says, or by [`set_send_queue`](Self::set_send_queue) (1 MiB, policy
    /// [`Backpressure::Drop`], for other connections).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn split(self) -> (Sender, Receiver) {
        let queue = self.send_queue();
        self.split_queue(queue)
    }

    /// As [`split`](Self::split), with `policy` for a full send queue in place of the
    /// connection's: for an application that closes a slow reader itself, after telling it
    /// why with [`Sender::close_with`], which it could not do behind the Close that
    /// [`Backpressure::Disconnect`] queues.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn split_with(self, policy: Backpressure) -> (Sender, Receiver) {
        let queue = SendQueue {
            policy,
            ..self.send_queue()
        };
        self.split_queue(queue)
    }

    fn split_queue(self, queue: SendQueue) -> (Sender, Receiver) {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (msg_tx, msg_rx) = mpsc::channel(RECEIVE_QUEUE);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let outgoing = Arc::new(Outgoing {
            queued: AtomicUsize::new(0),
            buffered: AtomicUsize::new(self.buffered_amount()),
            room: Notify::new(),
            queue,
            overflowed: AtomicBool::new(false),
            metrics: self.metrics().cloned(),
        });
        tokio::spawn(Driver {
            ws: self,
            commands: Some(cmd_rx),
            messages: Some(msg_tx),
            permit: None,
            reserve: None,
            outgoing: outgoing.clone(),
        });
        let sender = Sender {
            tx: cmd_tx,
            outgoing,
            id,
        };
        (sender, Receiver { rx: msg_rx })
    }
}

impl Sender {
    /// A number that identifies the connection within this process (for maps of subscribers).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes queued for the peer and not yet taken by the socket: messages waiting for the
    /// connection's task and the frames it holds. At most the send queue limit (or one
    /// message larger than it).
    pub fn buffered_amount(&self) -> usize {
        self.outgoing.total()
    }

    /// Queues a message for the connection, waiting while its send queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the message was not queued.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        let cost = message.len() + FRAME_OVERHEAD;
        self.wait_for_room(cost).await?;
        self.push(Command::Message(message, cost), cost)
            .map_err(|_| Error::Closed)
    }

    /// Queues a frame encoded once for many connections, waiting while the send queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the frame was not queued.
    pub async fn send_encoded(&self, frame: EncodedFrame) -> Result<(), Error> {
        let cost = frame.as_bytes().len();
        self.wait_for_room(cost).await?;
        self.push(Command::Encoded(frame, cost), cost)
            .map_err(|_| Error::Closed)
    }

    /// Queues a message without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Closed`] when the connection has ended; [`TrySendError::Full`] when its
    /// send queue is full (a slow reader): the message is not queued, and the connection's
    /// [`Backpressure`] policy applies (counted in the server's metrics): with
    /// [`Backpressure::Disconnect`] the connection is closed with 1013.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        let message = message.into();
        let cost = message.len() + FRAME_OVERHEAD;
        self.try_push(Command::Message(message, cost), cost)
    }

    /// Queues a frame encoded once for many connections without waiting; as
    /// [`try_send`](Self::try_send).
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send).
    pub fn try_send_encoded(&self, frame: EncodedFrame) -> Result<(), TrySendError> {
        let cost = frame.as_bytes().len();
        self.try_push(Command::Encoded(frame, cost), cost)
    }

    /// Starts the closing handshake with `code` and `reason`, without waiting for it: the
    /// receiver sees the peer's Close and then `None`. Queued messages go out first.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), Error> {
        self.tx
            .send(Command::Close(code, reason.into()))
            .map_err(|_| Error::Closed)
    }

    /// Queues `last`, past the send queue limit if need be, then starts the closing handshake
    /// as [`close`](Self::close) does: for the message that tells a peer why it is closed and
    /// what to do, which must reach it also when it is closed for reading too slowly.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    pub fn close_with(
        &self,
        last: impl Into<Message>,
        code: CloseCode,
        reason: impl Into<String>,
    ) -> Result<(), Error> {
        let last = last.into();
        let cost = last.len() + FRAME_OVERHEAD;
        self.outgoing.queued.fetch_add(cost, Ordering::AcqRel);
        self.push(Command::Message(last, cost), cost)
            .map_err(|()| Error::Closed)?;
        self.close(code, reason)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    async fn wait_for_room(&self, cost: usize) -> Result<(), Error> {
        loop {
            let room = self.outgoing.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.tx.is_closed() {
                return Err(Error::Closed);
            }
            if self.outgoing.reserve(cost) {
                return Ok(());
            }
            room.await;
        }
    }

    /// Sends a command whose `cost` is already reserved.
    fn push(&self, command: Command, cost: usize) -> Result<(), ()> {
        self.tx.send(command).map_err(|_| {
            self.outgoing.queued.fetch_sub(cost, Ordering::AcqRel);
        })
    }

    fn try_push(&self, command: Command, cost: usize) -> Result<(), TrySendError> {
        if self.tx.is_closed() {
            return Err(TrySendError::Closed);
        }
        if self.outgoing.reserve(cost) {
            return self.push(command, cost).map_err(|()| TrySendError::Closed);
        }
        let outgoing = &self.outgoing;
        match outgoing.queue.policy {
            Backpressure::Drop => {
                if let Some(metrics) = &outgoing.metrics {
                    metrics.backpressure_drop();
                }
            }
            Backpressure::Disconnect => {
                if !outgoing.overflowed.swap(true, Ordering::AcqRel) {
                    if let Some(metrics) = &outgoing.metrics {
                        metrics.backpressure_disconnect();
                    }
                    tracing::debug!(
                        id = self.id,
                        queued = outgoing.total(),
                        "send queue full: closing with 1013"
                    );
                    let reason = "send queue full: reading too slowly".to_owned();
                    let _ = self
                        .tx
                        .send(Command::Close(CloseCode::TRY_AGAIN_LATER, reason));
                }
            }
        }
        Err(TrySendError::Full)
    }
}

/// Why [`Sender::try_send`] did not queue a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The connection's send queue is full.
    #[error("send queue full")]
    Full,
    /// The connection has ended.
    #[error("connection closed")]
    Closed,
}

impl Receiver {
    /// Receives the next message; see [`WebSocket::recv`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for Receiver {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Owns the socket of a split connection; see the module docs.
struct Driver<S> {
    ws: WebSocket<S>,
    /// `None` once every sender is gone.
    commands: Option<mpsc::UnboundedReceiver<Command>>,
    /// `None` once the receiver is gone: messages are then read and dropped.
    messages: Option<mpsc::Sender<Item>>,
    /// Room for the next message in the receiver's queue.
    permit: Option<mpsc::OwnedPermit<Item>>,
    /// Waits for room when the receiver's queue is full.
    reserve: Option<Reserve>,
    outgoing: Arc<Outgoing>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn apply(&mut self, command: Command) {
        // Errors here are the application's (a send after close, a long ping): the message
        // is dropped, and the connection's end shows on the receiver.
        let cost = match command {
            Command::Message(m, cost) => {
                let _ = self.ws.feed(m);
                cost
            }
            Command::Encoded(f, cost) => {
                let _ = self.ws.feed_encoded(&f);
                cost
            }
            Command::Close(code, reason) => {
                let _ = self.ws.start_close(code, &reason);
                0
            }
        };
        // The bytes move from `queued` to `buffered`: publish the new home first, so the
        // total never reads low.
        self.publish_buffered();
        self.outgoing.queued.fetch_sub(cost, Ordering::AcqRel);
    }

    /// Publishes the connection's buffered bytes; wakes waiting senders when they shrank.
    fn publish_buffered(&self) {
        let now = self.ws.buffered_amount();
        let before = self.outgoing.buffered.swap(now, Ordering::AcqRel);
        if now < before {
            self.outgoing.room.notify_waiters();
        }
    }
    /// Gets room in the receiver's queue; `Ready(true)` when there is room or nobody listens.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.permit.is_some() {
            return Poll::Ready(true);
        }
        let Some(messages) = &self.messages else {
            return Poll::Ready(true);
        };
        if self.reserve.is_none() {
            match messages.clone().try_reserve_owned() {
                Ok(permit) => {
                    self.permit = Some(permit);
                    return Poll::Ready(true);
                }
                Err(mpsc::error::TrySendError::Full(tx)) => {
                    self.reserve = Some(Box::pin(tx.reserve_owned()));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.messages = None;
                    return Poll::Ready(true);
                }
            }
        }
        let Some(reserve) = &mut self.reserve else {
            return Poll::Ready(true);
        };
        match reserve.as_mut().poll(cx) {
            Poll::Ready(Ok(permit)) => {
                self.reserve = None;
                self.permit = Some(permit);
                Poll::Ready(true)
            }
            Poll::Ready(Err(_)) => {
                self.reserve = None;
                self.messages = None;
                Poll::Ready(true)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let mut progress = false;
            // Every command fits: senders reserved its bytes against the send queue limit.
            while let Some(commands) = &mut this.commands {
                match commands.poll_recv(cx) {
                    Poll::Ready(Some(command)) => this.apply(command),
                    Poll::Ready(None) => this.commands = None,
                    Poll::Pending => break,
                }
                progress = true;
            }
            if this.commands.is_none() && this.messages.is_none() && !this.ws.is_closing() {
                // Nobody holds either half: close politely.
                let _ = this.ws.start_close(CloseCode::NORMAL, "");
            }
            if this.poll_room(cx).is_ready() {
                match this.ws.poll_recv(cx) {
                    Poll::Ready(Some(item)) => {
                        if let Some(permit) = this.permit.take() {
                            this.messages = Some(permit.send(item));
                        }
                        progress = true;
                    }
                    Poll::Ready(None) => {
                        this.end();
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            } else {
                // Keep writing and keep the timers running while the receiver catches up; a
                // failure shows on the next receive.
                if this.ws.poll_timer(cx).is_ready() {
                    progress = true;
                }
                let _ = this.ws.poll_write_out(cx);
            }
            if !progress {
                this.publish_buffered();
                return Poll::Pending;
            }
        }
    }
}

impl<S> Driver<S> {
    /// The connection is over: senders waiting for room learn it.
    fn end(&mut self) {
        self.commands = None;
        self.outgoing.buffered.store(0, Ordering::Release);
        self.outgoing.room.notify_waiters();
    }
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        self.end();
    }
}
