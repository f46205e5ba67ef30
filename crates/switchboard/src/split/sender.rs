//! [`Sender`]: the cloneable sending half of a split connection, which queues commands for the
//! driver against the send queue's byte limit.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proto::{CloseCode, EncodedFrame, Message};

use super::shared::{Command, Shared, wake};
use crate::backpressure::{FRAME_OVERHEAD, TOO_SLOW};
use crate::error::Error;

/// The sending half of a split [`WebSocket`](crate::WebSocket). Cheap to clone; every clone
/// feeds the same connection, in the order the sends happen.
pub struct Sender {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("id", &self.id)
            .field("buffered_amount", &self.buffered_amount())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
            id: self.id,
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The driver reads the count under this lock before it waits: it sees 0 or is
            // woken here.
            let driver = self.shared.commands().driver.unpark();
            wake(driver);
        }
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
        self.shared.outgoing.total()
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
        self.push(Command::Message(message, cost))
            .map_err(|()| Error::Closed)
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
        self.push(Command::Encoded(frame, cost))
            .map_err(|()| Error::Closed)
    }

    /// Queues a message without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Closed`] when the connection has ended; [`TrySendError::Full`] when its
    /// send queue is full (a slow reader): the message is not queued, and the connection's
    /// [`Backpressure`](crate::Backpressure) policy applies (counted in the server's
    /// metrics): with [`Backpressure::Disconnect`](crate::Backpressure::Disconnect) the
    /// connection is closed with 1013.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        let message = message.into();
        let cost = message.len() + FRAME_OVERHEAD;
        self.try_push(Command::Message(message, cost))
    }

    /// Queues a frame encoded once for many connections without waiting; as
    /// [`try_send`](Self::try_send).
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send).
    pub fn try_send_encoded(&self, frame: EncodedFrame) -> Result<(), TrySendError> {
        let cost = frame.as_bytes().len();
        self.try_push(Command::Encoded(frame, cost))
    }

    /// Starts the closing handshake with `code` and `reason`, without waiting for it: the
    /// receiver sees the peer's Close and then `None`. Queued messages go out first.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the connection has ended.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), Error> {
        self.push(Command::Close(code, reason.into()))
            .map_err(|()| Error::Closed)
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
        self.shared
            .outgoing
            .queued
            .fetch_add(cost, Ordering::AcqRel);
        self.push(Command::Message(last, cost))
            .map_err(|()| Error::Closed)?;
        self.close(code, reason)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.has_ended()
    }

    async fn wait_for_room(&self, cost: usize) -> Result<(), Error> {
        loop {
            let room = self.shared.outgoing.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.is_closed() {
                return Err(Error::Closed);
            }
            if self.shared.outgoing.reserve(cost) {
                return Ok(());
            }
            room.await;
        }
    }

    /// Queues a command whose cost is already reserved; gives the cost back when the
    /// connection has ended.
    fn push(&self, command: Command) -> Result<(), ()> {
        let mut commands = self.shared.commands();
        if self.shared.has_ended() {
            drop(commands);
            let cost = command.cost();
            self.shared
                .outgoing
                .queued
                .fetch_sub(cost, Ordering::AcqRel);
            return Err(());
        }
        commands.queue.push(command);
        let driver = commands.driver.unpark();
        drop(commands);
        wake(driver);
        Ok(())
    }

    fn try_push(&self, command: Command) -> Result<(), TrySendError> {
        if self.is_closed() {
            return Err(TrySendError::Closed);
        }
        let outgoing = &self.shared.outgoing;
        if outgoing.reserve(command.cost()) {
            return self.push(command).map_err(|()| TrySendError::Closed);
        }
        let closing = || outgoing.overflowed.swap(true, Ordering::AcqRel);
        if outgoing.queue.overflow(outgoing.metrics.as_ref(), closing) {
            tracing::debug!(
                id = self.id,
                queued = outgoing.total(),
                "send queue full: closing with 1013"
            );
            let reason = TOO_SLOW.to_owned();
            let _ = self.push(Command::Close(CloseCode::TRY_AGAIN_LATER, reason));
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
