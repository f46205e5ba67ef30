//! [`WebSocket::split`]: a receiver and cloneable senders, with a driver task that owns the
//! socket.
//!
//! The driver answers pings and Close frames and writes queued messages whether or not the
//! application is receiving. The halves talk to it through two queues in one allocation shared
//! by all of them (`shared.rs`): commands from the senders, in the order they were sent across
//! clones, and messages for the receiver, at most 64 of them. A receiver that falls behind
//! makes the driver stop reading (TCP flow control then slows the peer).
//!
//! The queues hold memory only while they hold items (`queue.rs`): an idle connection keeps
//! none, so that many idle connections cost little beside their sockets.
//!
//! ## Backpressure
//!
//! What senders queue for the peer is bounded in bytes: the messages waiting for the driver and
//! the bytes the socket has not taken yet count together against the connection's limit
//! ([`ServerBuilder::max_send_queue`](crate::ServerBuilder::max_send_queue), 1 MiB by default).
//! [`Sender::send`] waits for room; [`Sender::try_send`] never waits and applies the
//! connection's [`Backpressure`] policy when there is none, so that a peer that reads slower
//! than it is written to never makes the process's memory grow without bound.

mod driver;
mod queue;
mod receiver;
mod sender;
mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use self::driver::Driver;
pub use self::receiver::Receiver;
pub use self::sender::{Sender, TrySendError};
use self::shared::{Outgoing, Shared};
use crate::backpressure::{Backpressure, SendQueue};
use crate::websocket::WebSocket;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::new(Outgoing {
            queued: AtomicUsize::new(0),
            buffered: AtomicUsize::new(self.buffered_amount()),
            room: Notify::new(),
            queue,
            overflowed: AtomicBool::new(false),
            metrics: self.metrics().cloned(),
        }));
        tokio::spawn(Driver::new(self, shared.clone()));
        let receiver = Receiver {
            shared: shared.clone(),
        };
        (Sender { shared, id }, receiver)
    }
}

#[cfg(test)]
mod tests {
    use proto::{CloseCode, Config, Message, Role};
    use tokio::io::DuplexStream;

    use super::shared::RECEIVE_QUEUE;
    use super::*;

    /// A server connection split, and the client at the other end.
    fn split_pair() -> (Sender, Receiver, WebSocket<DuplexStream>) {
        let (io, peer) = tokio::io::duplex(1 << 16);
        let ws = WebSocket::from_raw(io, Role::Server, Config::default(), Default::default());
        let peer = WebSocket::from_raw(peer, Role::Client, Config::default(), Default::default());
        let (sender, receiver) = ws.split();
        (sender, receiver, peer)
    }

    async fn next_text(ws: &mut WebSocket<DuplexStream>) -> String {
        match ws.recv().await {
            Some(Ok(Message::Text(text))) => text.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_send_queue_gives_its_buffer_back_once_drained() {
        let (sender, _receiver, mut peer) = split_pair();
        // The driver has not run yet (this runtime has one thread and nothing yielded).
        for i in 0..100 {
            sender.try_send(Message::text(i.to_string())).unwrap();
        }
        assert!(sender.shared.commands().queue.capacity() >= 100);
        for i in 0..100 {
            assert_eq!(next_text(&mut peer).await, i.to_string());
        }
        assert_eq!(sender.shared.commands().queue.capacity(), 0);
        assert_eq!(sender.buffered_amount(), 0);
    }

    #[tokio::test]
    async fn sends_from_two_clones_arrive_in_the_order_they_were_made() {
        let (first, _receiver, mut peer) = split_pair();
        let second = first.clone();
        for i in 0..50 {
            let sender = if i % 2 == 0 { &first } else { &second };
            if i % 3 == 0 {
                sender.send(Message::text(i.to_string())).await.unwrap();
            } else {
                sender.try_send(Message::text(i.to_string())).unwrap();
            }
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for i in 0..50 {
            assert_eq!(next_text(&mut peer).await, i.to_string());
        }
    }

    #[tokio::test]
    async fn a_receiver_that_does_not_receive_stops_the_driver_reading_at_64_messages() {
        let (_sender, mut receiver, mut peer) = split_pair();
        let sent = 3 * RECEIVE_QUEUE;
        for i in 0..sent {
            peer.send(Message::text(i.to_string())).await.unwrap();
        }
        while receiver.shared.received().queue.len() < RECEIVE_QUEUE {
            tokio::task::yield_now().await;
        }
        // However long the driver runs, it reads no more until the receiver takes one.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(receiver.shared.received().queue.len(), RECEIVE_QUEUE);
        for i in 0..sent {
            match receiver.recv().await {
                Some(Ok(Message::Text(text))) => assert_eq!(text.to_string(), i.to_string()),
                other => panic!("expected message {i}, got {other:?}"),
            }
        }
        assert_eq!(receiver.shared.received().queue.capacity(), 0);
    }

    #[tokio::test]
    async fn dropping_both_halves_closes_the_connection_with_1000() {
        let (sender, receiver, mut peer) = split_pair();
        let clone = sender.clone();
        drop(sender);
        drop(receiver);
        clone.try_send(Message::text("last")).unwrap();
        drop(clone);
        assert_eq!(next_text(&mut peer).await, "last");
        match peer.recv().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::NORMAL),
            other => panic!("expected a Close, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn senders_learn_that_the_connection_ended() {
        let (sender, mut receiver, peer) = split_pair();
        assert!(!sender.is_closed());
        drop(peer);
        assert!(matches!(receiver.recv().await, Some(Err(_)) | None));
        while receiver.recv().await.is_some() {}
        assert!(sender.is_closed());
        assert_eq!(
            sender.try_send(Message::text("late")),
            Err(TrySendError::Closed)
        );
        assert!(sender.send(Message::text("late")).await.is_err());
        assert_eq!(sender.buffered_amount(), 0);
    }
}
