//! Where a session's frames go: its connection's split [`Sender`] when the connection runs in
//! a task of its own, or the [`Remote`] of its event loop's slot. The session, the fan-out,
//! the heartbeat and the registry send through it alike.

use std::sync::atomic::{AtomicU64, Ordering};

use switchboard::event_loop::Remote;
use switchboard::{CloseCode, EncodedFrame, Error, Message, Sender, TrySendError};

/// Ids of loop connections: the high bit set, so that they never meet a [`Sender::id`], which
/// counts up from 1.
static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1 << 63);

/// A connection's sending side.
#[derive(Clone, Debug)]
pub(super) enum Outbox {
    Task(Sender),
    Loop { remote: Remote, id: u64 },
}

impl Outbox {
    /// The sending side of an event-loop connection, with an id of its own.
    pub(super) fn of_loop(remote: Remote) -> Self {
        let id = NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
        Self::Loop { remote, id }
    }

    /// A number that names the connection within this process (for the maps of subscribers).
    pub(super) fn id(&self) -> u64 {
        match self {
            Self::Task(sender) => sender.id(),
            Self::Loop { id, .. } => *id,
        }
    }

    /// Bytes queued for the client and not yet written; 0 for a loop connection, whose queue
    /// only its loop sees.
    pub(super) fn buffered_amount(&self) -> usize {
        match self {
            Self::Task(sender) => sender.buffered_amount(),
            Self::Loop { .. } => 0,
        }
    }

    /// Queues a message: a task's sender waits while its queue is full; a loop's mail meets
    /// the connection's backpressure policy when it arrives.
    pub(super) async fn send(&self, message: Message) -> Result<(), Error> {
        match self {
            Self::Task(sender) => sender.send(message).await,
            Self::Loop { remote, .. } => remote.send(message),
        }
    }

    /// Queues a frame encoded once for many connections without waiting. `Full` only from a
    /// task's sender: a loop connection over its limit is closed by its policy when the frame
    /// arrives.
    pub(super) fn try_send_encoded(&self, frame: &EncodedFrame) -> Result<(), TrySendError> {
        match self {
            Self::Task(sender) => sender.try_send_encoded(frame.clone()),
            Self::Loop { remote, .. } => {
                remote.send_encoded(frame).map_err(|_| TrySendError::Closed)
            }
        }
    }

    /// Starts the closing handshake; what was queued before goes out first.
    pub(super) fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        match self {
            Self::Task(sender) => sender.close(code, reason),
            Self::Loop { remote, .. } => remote.close(code, reason),
        }
    }

    /// Queues `last` past the send queue limit if need be, then closes: the message that
    /// tells a client why it is closed. A loop's mail has no limit of its own to pass: the
    /// connection's queue takes what the loop feeds it.
    pub(super) fn close_with(
        &self,
        last: Message,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        match self {
            Self::Task(sender) => sender.close_with(last, code, reason),
            Self::Loop { remote, .. } => {
                remote.send(last)?;
                remote.close(code, reason)
            }
        }
    }
}
