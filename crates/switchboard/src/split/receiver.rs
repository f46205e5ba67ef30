//! [`Receiver`]: the receiving half of a split connection, which takes the messages the driver
//! queued for it (at most [`RECEIVE_QUEUE`](super::shared::RECEIVE_QUEUE): when they are
//! there, the driver stops reading until the receiver takes one).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use proto::Message;

use super::shared::{Item, Shared, wake};
use crate::error::Error;

/// The receiving half of a split [`WebSocket`](crate::WebSocket).
pub struct Receiver {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("queued", &self.shared.received().queue.len())
            .finish()
    }
}

impl Receiver {
    /// Receives the next message; see [`WebSocket::recv`](crate::WebSocket::recv).
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv`](crate::WebSocket::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// A message is taken off the queue only when it is returned.
    fn poll_item(&self, cx: &Context<'_>) -> Poll<Option<Item>> {
        let mut received = self.shared.received();
        if let Some(item) = received.queue.pop() {
            // The driver may be waiting for this room.
            let driver = received.driver.unpark();
            drop(received);
            wake(driver);
            return Poll::Ready(Some(item));
        }
        if self.shared.has_ended() {
            return Poll::Ready(None);
        }
        received.receiver.park(cx);
        Poll::Pending
    }
}

impl futures_core::Stream for Receiver {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_item(cx)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut received = self.shared.received();
        received.receiver_gone = true;
        let unread = received.queue.take();
        received.receiver = Default::default();
        // The driver may wait for room, or for this half to go to close the connection.
        let driver = received.driver.unpark();
        drop(received);
        wake(driver);
        drop(unread);
    }
}
