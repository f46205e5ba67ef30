//! [`WebSocket::split`]: a receiver and cloneable senders, with a driver task that owns the
//! socket.
//!
//! The driver answers pings and Close frames and writes queued messages whether or not the
//! application is receiving, without locks: the halves talk to it through bounded channels. A
//! receiver that falls behind makes the driver stop reading (TCP flow control then slows the
//! peer); senders wait when the outgoing queue is full.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use proto::{CloseCode, EncodedFrame, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::websocket::WebSocket;

/// Messages the driver buffers for a receiver that is not keeping up.
const RECEIVE_QUEUE: usize = 64;
/// Commands senders can queue before `send` waits.
const SEND_QUEUE: usize = 256;
/// Bytes the driver lets pile up in front of a slow transport before it stops taking commands.
const WRITE_HIGH_WATER: usize = 1 << 20;

type Item = Result<Message, Error>;
type Reserve = Pin<
    Box<dyn Future<Output = Result<mpsc::OwnedPermit<Item>, mpsc::error::SendError<()>>> + Send>,
>;

#[derive(Debug)]
enum Command {
    Message(Message),
    Encoded(EncodedFrame),
    Close(CloseCode, String),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The sending half of a split [`WebSocket`]. Cheap to clone; every clone feeds the same
/// connection, in the order the sends happen.
#[derive(Clone, Debug)]
pub struct Sender {
    tx: mpsc::Sender<Command>,
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
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn split(self) -> (Sender, Receiver) {
        let (cmd_tx, cmd_rx) = mpsc::channel(SEND_QUEUE);
        let (msg_tx, msg_rx) = mpsc::channel(RECEIVE_QUEUE);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(Driver {
            ws: self,
            commands: Some(cmd_rx),
            messages: Some(msg_tx),
            permit: None,
            reserve: None,
        });
        (Sender { tx: cmd_tx, id }, Receiver { rx: msg_rx })
    }
}

impl Sender {
    /// A number that identifies the connection within this process (for maps of subscribers).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues a message for the connection, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the message was not queued.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.tx
            .send(Command::Message(message.into()))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Queues a frame encoded once for many connections, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the frame was not queued.
    pub async fn send_encoded(&self, frame: EncodedFrame) -> Result<(), Error> {
        self.tx
            .send(Command::Encoded(frame))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Queues a frame encoded once for many connections without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended; [`TrySendError::Full`] when its queue
    /// is full (a slow reader): the frame is not queued.
    pub fn try_send_encoded(&self, frame: EncodedFrame) -> Result<(), TrySendError> {
        self.tx
            .try_send(Command::Encoded(frame))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TrySendError::Full,
                mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
            })
    }

    /// Starts the closing handshake with `code` and `reason`; the receiver sees the peer's
    /// Close and then `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    pub async fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), Error> {
        self.tx
            .send(Command::Close(code, reason.into()))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Why [`Sender::try_send_encoded`] did not queue a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The connection's queue is full.
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
    commands: Option<mpsc::Receiver<Command>>,
    /// `None` once the receiver is gone: messages are then read and dropped.
    messages: Option<mpsc::Sender<Item>>,
    /// Room for the next message in the receiver's queue.
    permit: Option<mpsc::OwnedPermit<Item>>,
    /// Waits for room when the receiver's queue is full.
    reserve: Option<Reserve>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn apply(&mut self, command: Command) {
        // Errors here are the application's (a send after close, a long ping): the message
        // is dropped, and the connection's end shows on the receiver.
        let _ = match command {
            Command::Message(m) => self.ws.feed(m),
            Command::Encoded(f) => self.ws.feed_encoded(&f),
            Command::Close(code, reason) => self.ws.start_close(code, &reason),
        };
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
            // Take no more commands while the socket is backed up; the write's wake-up resumes
            // them.
            while this.ws.buffered_amount() < WRITE_HIGH_WATER {
                let Some(commands) = &mut this.commands else {
                    break;
                };
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
                    Poll::Ready(None) => return Poll::Ready(()),
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
                return Poll::Pending;
            }
        }
    }
}
