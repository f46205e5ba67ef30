//! The driver of a split connection: the task that owns the socket, applies the senders'
//! commands, queues what it reads for the receiver, and ends the connection when both halves
//! are gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use proto::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};

use super::shared::{Command, Item, RECEIVE_QUEUE, Shared, wake};
use crate::websocket::WebSocket;

/// Owns the socket of a split connection; see the module docs.
pub(super) struct Driver<S> {
    ws: WebSocket<S>,
    shared: Arc<Shared>,
    /// Every sender is gone and every command applied.
    senders_gone: bool,
    /// The receiver is gone: messages are then read and dropped.
    receiver_gone: bool,
    /// Messages the receiver's queue has room for, as last seen.
    room: usize,
}

impl<S> Driver<S> {
    pub(super) fn new(ws: WebSocket<S>, shared: Arc<Shared>) -> Self {
        Self {
            ws,
            shared,
            senders_gone: false,
            receiver_gone: false,
            room: RECEIVE_QUEUE,
        }
    }

    /// The connection is over: senders learn it (also those waiting for room), queued
    /// commands are dropped, and the receiver gets `None` after what is queued for it.
    fn end(&mut self) {
        let shared = &self.shared;
        shared.ended.store(true, Ordering::Release);
        let mut commands = shared.commands();
        commands.driver = Default::default();
        let dropped = commands.queue.take();
        drop(commands);
        let cost: usize = dropped.iter().map(Command::cost).sum();
        shared.outgoing.queued.fetch_sub(cost, Ordering::AcqRel);
        drop(dropped);
        shared.outgoing.buffered.store(0, Ordering::Release);
        shared.outgoing.room.notify_waiters();
        let mut received = shared.received();
        received.driver = Default::default();
        let receiver = received.receiver.release();
        drop(received);
        wake(receiver);
    }
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
        self.shared
            .outgoing
            .queued
            .fetch_sub(cost, Ordering::AcqRel);
    }

    /// Publishes the connection's buffered bytes; wakes waiting senders when they shrank.
    fn publish_buffered(&self) {
        let outgoing = &self.shared.outgoing;
        let now = self.ws.buffered_amount();
        let before = outgoing.buffered.swap(now, Ordering::AcqRel);
        if now < before {
            outgoing.room.notify_waiters();
        }
    }

    /// Applies every queued command; `Ready` when there were some or the last sender went.
    fn poll_commands(&mut self, cx: &Context<'_>) -> Poll<()> {
        let mut commands = self.shared.commands();
        if commands.queue.is_empty() {
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                self.senders_gone = true;
                return Poll::Ready(());
            }
            commands.driver.park(cx);
            return Poll::Pending;
        }
        // The whole queue in one go, its buffer freed once applied (see `queue.rs`). Every
        // command fits: senders reserved its bytes against the send queue limit.
        let batch = commands.queue.take();
        drop(commands);
        for command in batch {
            self.apply(command);
        }
        Poll::Ready(())
    }

    /// `Ready` when the receiver's queue has room or nobody listens.
    fn poll_room(&mut self, cx: &Context<'_>) -> Poll<()> {
        if self.room > 0 || self.receiver_gone {
            return Poll::Ready(());
        }
        let mut received = self.shared.received();
        self.receiver_gone = received.receiver_gone;
        self.room = RECEIVE_QUEUE.saturating_sub(received.queue.len());
        if self.room > 0 || self.receiver_gone {
            return Poll::Ready(());
        }
        received.driver.park(cx);
        Poll::Pending
    }

    fn deliver(&mut self, item: Item) {
        if self.receiver_gone {
            return;
        }
        let mut received = self.shared.received();
        if received.receiver_gone {
            self.receiver_gone = true;
            return;
        }
        received.queue.push(item);
        self.room = RECEIVE_QUEUE.saturating_sub(received.queue.len());
        let receiver = received.receiver.unpark();
        drop(received);
        wake(receiver);
    }

    /// Once the senders are gone: whether the receiver is too, else waits for it to go.
    fn receiver_gone(&mut self, cx: &Context<'_>) -> bool {
        if !self.receiver_gone {
            let mut received = self.shared.received();
            self.receiver_gone = received.receiver_gone;
            if !self.receiver_gone {
                received.driver.park(cx);
            }
        }
        self.receiver_gone
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let mut progress = false;
            if !this.senders_gone && this.poll_commands(cx).is_ready() {
                progress = true;
            }
            if this.senders_gone && !this.ws.is_closing() && this.receiver_gone(cx) {
                // Nobody holds either half: close politely.
                let _ = this.ws.start_close(CloseCode::NORMAL, "");
            }
            if this.poll_room(cx).is_ready() {
                match this.ws.poll_recv(cx) {
                    Poll::Ready(Some(item)) => {
                        this.deliver(item);
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

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        self.end();
    }
}
