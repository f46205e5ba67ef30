//! What the senders, the receiver and the driver of a split connection share: one allocation
//! per connection, holding the send queue's byte accounting, the queue of commands for the
//! driver and the queue of messages for the receiver, with the wakers each side leaves when
//! it waits for the other.
//!
//! Each queue is a [`Queue`] behind a `std` mutex, held only to push, pop or take and to
//! leave or take a waker: the two sides rarely meet there (the driver takes every command in
//! one go), and an uncontended lock costs less than a channel's atomics, without the buffers
//! tokio's channels allocate up front.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

use proto::{CloseCode, EncodedFrame, Message};
use tokio::sync::Notify;

use super::queue::Queue;
use crate::backpressure::SendQueue;
use crate::error::Error;
use crate::metrics::Metrics;

/// Messages the driver buffers for a receiver that is not keeping up.
pub(super) const RECEIVE_QUEUE: usize = 64;

pub(super) type Item = Result<Message, Error>;

#[derive(Debug)]
pub(super) enum Command {
    /// A message and what it was counted as in `Outgoing::queued`.
    Message(Message, usize),
    Encoded(EncodedFrame, usize),
    Close(CloseCode, String),
}

impl Command {
    /// What the command counts for in `Outgoing::queued`.
    pub(super) fn cost(&self) -> usize {
        match self {
            Self::Message(_, cost) | Self::Encoded(_, cost) => *cost,
            Self::Close(..) => 0,
        }
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) outgoing: Outgoing,
    pub(super) commands: Mutex<Commands>,
    pub(super) received: Mutex<Received>,
    /// Senders alive: the driver stops waiting for commands when the last one is dropped.
    pub(super) senders: AtomicUsize,
    /// The driver has ended: nothing more is queued, and the receiver gets `None` once its
    /// queue is empty. Set before the driver's last look at each queue, under its lock, so a
    /// side that reads it under a queue's lock sees it in time.
    pub(super) ended: AtomicBool,
}

impl Shared {
    pub(super) fn new(outgoing: Outgoing) -> Self {
        Self {
            outgoing,
            commands: Mutex::new(Commands {
                queue: Queue::new(),
                driver: Parked::default(),
            }),
            received: Mutex::new(Received {
                queue: Queue::new(),
                receiver: Parked::default(),
                driver: Parked::default(),
                receiver_gone: false,
            }),
            senders: AtomicUsize::new(1),
            ended: AtomicBool::new(false),
        }
    }

    pub(super) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub(super) fn commands(&self) -> MutexGuard<'_, Commands> {
        lock(&self.commands)
    }

    pub(super) fn received(&self) -> MutexGuard<'_, Received> {
        lock(&self.received)
    }
}

/// A panic while a queue's lock is held (a waker's) leaves the queue consistent: every
/// critical section is one push, pop or take and a flag.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commands from the senders to the driver.
#[derive(Debug)]
pub(super) struct Commands {
    pub(super) queue: Queue<Command>,
    /// The driver, waiting for a command or for the last sender to go.
    pub(super) driver: Parked,
}

/// Messages from the driver to the receiver, at most [`RECEIVE_QUEUE`].
#[derive(Debug)]
pub(super) struct Received {
    pub(super) queue: Queue<Item>,
    /// The receiver, waiting for a message.
    pub(super) receiver: Parked,
    /// The driver, waiting for room (or, once the senders are gone, for the receiver to go).
    pub(super) driver: Parked,
    /// The receiver was dropped: the driver reads and drops what comes.
    pub(super) receiver_gone: bool,
}

/// A task waiting on the other side of a queue. The waker is kept between waits, so that a
/// task that waits again only raises the flag instead of cloning its waker each time.
#[derive(Debug, Default)]
pub(super) struct Parked {
    waker: Option<Waker>,
    waiting: bool,
}

impl Parked {
    pub(super) fn park(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
        self.waiting = true;
    }

    /// The waker of the task if it waits, for the caller to wake once it has let go of the
    /// lock: a waker may run code (an executor's) that takes the same lock.
    #[must_use = "wake the waker, after the lock is released"]
    pub(super) fn unpark(&mut self) -> Option<Waker> {
        if std::mem::take(&mut self.waiting) {
            self.waker.clone()
        } else {
            None
        }
    }

    /// As [`unpark`](Self::unpark), and forgets the task: nothing will wake it here again.
    #[must_use = "wake the waker, after the lock is released"]
    pub(super) fn release(&mut self) -> Option<Waker> {
        let waker = self.unpark();
        self.waker = None;
        waker
    }
}

/// Wakes a task that [`Parked::unpark`] returned.
pub(super) fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The send queue's accounting, shared by the senders and the driver.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Bytes of messages sent to the driver and not yet handed to the connection.
    pub(super) queued: AtomicUsize,
    /// Bytes the connection holds that the socket has not taken (published by the driver).
    pub(super) buffered: AtomicUsize,
    /// Woken when `buffered` shrinks or the driver ends.
    pub(super) room: Notify,
    pub(super) queue: SendQueue,
    /// The disconnect policy fired (once).
    pub(super) overflowed: AtomicBool,
    pub(super) metrics: Option<Metrics>,
}

impl Outgoing {
    pub(super) fn total(&self) -> usize {
        self.queued.load(Ordering::Acquire) + self.buffered.load(Ordering::Acquire)
    }

    /// Counts `cost` more bytes if they fit: the total stays within the limit, except that
    /// one message of any size fits an empty queue.
    pub(super) fn reserve(&self, cost: usize) -> bool {
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
