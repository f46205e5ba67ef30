//! What the rest of the hub asks of one session: the server side's commands, in the order they
//! were sent (`registry.rs` hands the mailbox out), and the fan-out's kick, which ends the
//! connection of the hub's own accord. Most connections never get either, so the mailbox is one
//! small block and its queue allocates on the first command. A session with no task waiting on
//! its mailbox (one on an event loop, between events) gives it a waker to start one.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use switchboard::CloseCode;
use tokio::sync::{Notify, oneshot};

use crate::protocol::RequestError;

/// What the server side asks of one connection.
#[derive(Debug)]
pub(super) enum Command {
    /// Subscribe it to `channel` as if it had asked; `done` gets the outcome.
    Subscribe {
        channel: String,
        done: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Unsubscribe it from `channel`; `done` learns whether it was subscribed.
    Unsubscribe {
        channel: String,
        done: oneshot::Sender<bool>,
    },
    /// Close it with this code and reason.
    Disconnect { code: CloseCode, reason: String },
    /// Tell `done` the channels it subscribes to.
    Subscriptions { done: oneshot::Sender<Vec<String>> },
}

/// Why the hub ends a connection of its own accord.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KickReason {
    /// Its send queue is full (see "Lagging" on [`Hub`](super::Hub)).
    Lagging,
    /// A channel it follows lost its stream (see "Lost streams" on [`Hub`](super::Hub)).
    StreamLost,
}

impl KickReason {
    /// The Close frame that tells a client kicked for this reason why, and what to do.
    pub(super) fn close_frame(self) -> (CloseCode, &'static str) {
        match self {
            Self::StreamLost => (
                CloseCode::SERVICE_RESTART,
                "channel stream lost; subscribe again with since",
            ),
            Self::Lagging => (CloseCode::TRY_AGAIN_LATER, "too slow"),
        }
    }
}

/// What a session takes out of its mailbox.
#[derive(Debug)]
pub(super) enum Mail {
    Command(Command),
    /// The hub ends the connection (see [`Mailbox::kick_reason`]).
    Kicked,
}

/// One session's mailbox, shared by the session, the registry and the fan-out.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    /// Wakes the session for a command or a kick; a wake-up with nobody waiting is kept.
    notify: Notify,
    kicked: OnceLock<KickReason>,
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    commands: VecDeque<Command>,
    /// The session is over: commands are refused.
    closed: bool,
    /// Woken with `notify`, for a session that does not wait on it (see [`Mailbox::wake_also`]).
    waker: Option<Waker>,
}

impl Mailbox {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every operation leaves the queue consistent, so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `command` for the session; gives it back when the session is over.
    pub(super) fn send(&self, command: Command) -> Result<(), Command> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(command);
        }
        queue.commands.push_back(command);
        let waker = queue.waker.clone();
        drop(queue);
        self.wake(waker);
        Ok(())
    }

    /// Tells the session to end its connection; the first reason wins.
    pub(super) fn kick(&self, reason: KickReason) {
        let _ = self.kicked.set(reason);
        let waker = self.queue().waker.clone();
        self.wake(waker);
    }

    /// Wakes the session, out of the queue's lock: `waker` may take the session's own.
    fn wake(&self, waker: Option<Waker>) {
        self.notify.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Has `waker` woken too whenever a command or the kick arrives, until the mailbox
    /// closes: for a session that takes its mail with [`try_next`](Self::try_next).
    pub(super) fn wake_also(&self, waker: Waker) {
        let mut queue = self.queue();
        if !queue.closed {
            queue.waker = Some(waker);
        }
    }

    /// Why the connection was kicked, once it was.
    pub(super) fn kick_reason(&self) -> Option<KickReason> {
        self.kicked.get().copied()
    }

    /// The next command, or the kick, which comes first once it happened.
    ///
    /// Cancel safe: a command is taken out only when this returns it.
    pub(super) async fn next(&self) -> Mail {
        loop {
            if let Some(mail) = self.try_next() {
                return mail;
            }
            self.notify.notified().await;
        }
    }

    /// The next command, or the kick, if there is one now.
    pub(super) fn try_next(&self) -> Option<Mail> {
        if self.kicked.get().is_some() {
            return Some(Mail::Kicked);
        }
        self.queue().commands.pop_front().map(Mail::Command)
    }

    /// Whether [`try_next`](Self::try_next) would give something.
    pub(super) fn has_mail(&self) -> bool {
        self.kicked.get().is_some() || !self.queue().commands.is_empty()
    }

    /// The session is over: commands queued and sent later are dropped, so that whoever waits
    /// on their answer learns it, and the queue's memory goes, with the waker (which may hold
    /// the session).
    pub(super) fn close(&self) {
        let (commands, waker) = {
            let mut queue = self.queue();
            queue.closed = true;
            (std::mem::take(&mut queue.commands), queue.waker.take())
        };
        drop((commands, waker));
    }

    /// The Close frame that tells a kicked client why, and what to do.
    pub(super) fn close_frame(&self) -> (CloseCode, &'static str) {
        self.kicked
            .get()
            .map_or(KickReason::Lagging, |&reason| reason)
            .close_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_come_in_order_and_a_kick_before_them() {
        let mailbox = Mailbox::default();
        let (done, _) = oneshot::channel();
        mailbox.send(Command::Subscriptions { done }).unwrap();
        let disconnect = Command::Disconnect {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
        };
        mailbox.send(disconnect).unwrap();
        assert!(matches!(
            mailbox.next().await,
            Mail::Command(Command::Subscriptions { .. })
        ));
        mailbox.kick(KickReason::StreamLost);
        mailbox.kick(KickReason::Lagging);
        assert!(matches!(mailbox.next().await, Mail::Kicked));
        assert_eq!(mailbox.kick_reason(), Some(KickReason::StreamLost));
        assert_eq!(mailbox.close_frame().0, CloseCode::SERVICE_RESTART);
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_for_a_command_sent_later() {
        let mailbox = std::sync::Arc::new(Mailbox::default());
        let waiting = tokio::spawn({
            let mailbox = mailbox.clone();
            async move {
                matches!(
                    mailbox.next().await,
                    Mail::Command(Command::Disconnect { .. })
                )
            }
        });
        tokio::task::yield_now().await;
        let disconnect = Command::Disconnect {
            code: CloseCode::NORMAL,
            reason: String::new(),
        };
        mailbox.send(disconnect).unwrap();
        assert!(waiting.await.unwrap());
    }

    /// Counts its wake-ups.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_session_without_a_waiting_task_is_woken_for_each_command_and_the_kick() {
        let mailbox = Mailbox::default();
        let counting = std::sync::Arc::new(Counting(0.into()));
        mailbox.wake_also(Waker::from(counting.clone()));
        let (done, _) = oneshot::channel();
        mailbox.send(Command::Subscriptions { done }).unwrap();
        assert!(mailbox.has_mail());
        assert!(matches!(mailbox.try_next(), Some(Mail::Command(_))));
        assert!(!mailbox.has_mail());
        assert!(mailbox.try_next().is_none());
        mailbox.kick(KickReason::Lagging);
        assert!(matches!(mailbox.try_next(), Some(Mail::Kicked)));
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        // Closing lets go of the waker, which may hold the session that holds the mailbox.
        mailbox.close();
        assert_eq!(std::sync::Arc::strong_count(&counting), 1);
    }

    #[tokio::test]
    async fn a_closed_mailbox_refuses_commands_and_drops_those_queued() {
        let mailbox = Mailbox::default();
        let (done, answer) = oneshot::channel();
        mailbox.send(Command::Subscriptions { done }).unwrap();
        mailbox.close();
        assert!(
            answer.await.is_err(),
            "the waiter learns the session is gone"
        );
        let (done, _) = oneshot::channel();
        assert!(mailbox.send(Command::Subscriptions { done }).is_err());
        assert_eq!(mailbox.queue().commands.capacity(), 0);
    }
}
