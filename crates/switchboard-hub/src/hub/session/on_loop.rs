//! Sessions of connections on an event loop, with no task while the client is idle.
//!
//! The connection's callbacks put what arrives in its [`Seat`]. A task, started when there is
//! work and ending when there is none, runs the session as a `Hub::serve` connection's task
//! does: the opening, the requests in order, the server side's commands and the fan-out's
//! kick (its mailbox wakes the seat), the publishes in flight, the token's expiry and the end.
//! With nothing left to do, the task parks the session in the seat and ends; an idle
//! connection costs its loop slot and the seat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;

use http::Request;
use switchboard::event_loop::{Handler, Socket};
use switchboard::{ClientAddr, CloseCode, Error, Message, PeerAddr};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{Exit, KICK_SPREAD, Outbox, Parked, Session, answered, open};
use crate::hub::limits::retry_hint;
use crate::hub::mailbox::{KickReason, Mailbox};
use crate::hub::shared::Shared;

/// Bytes of messages a seat holds while its session is busy (a burst of subscribes waiting
/// on the broker); past them the client is closed, as it cannot be made to wait.
const MAX_WAITING: usize = 1 << 20;

/// The reason of the close for a client over [`MAX_WAITING`].
const TOO_FAST: &str = "requests arrive faster than they are answered";

/// Serves the hub's protocol from an event loop.
#[derive(Debug)]
pub(crate) struct HubHandler {
    hub: Arc<Shared>,
}

impl HubHandler {
    pub(crate) fn new(hub: Arc<Shared>) -> Self {
        Self { hub }
    }
}

impl Handler for HubHandler {
    type State = Arc<Seat>;

    fn open(&self, socket: &mut Socket<'_>, request: &Request<()>) -> Arc<Seat> {
        let seat = Arc::new(Seat {
            hub: self.hub.clone(),
            runtime: Handle::current(),
            waiting: Mutex::new(Waiting {
                running: true,
                ..Waiting::default()
            }),
            notify: Notify::new(),
            mailbox: OnceLock::new(),
        });
        let opening = Opening {
            sender: Outbox::of_loop(socket.remote()),
            request: Box::new(copy(request)),
            compression: socket.deflate().is_some(),
        };
        seat.runtime.spawn(work(seat.clone(), Some(opening)));
        seat
    }

    fn message(&self, seat: &mut Arc<Seat>, socket: &mut Socket<'_>, message: Message) {
        if !seat.hear(message) {
            let _ = socket.close(CloseCode::TRY_AGAIN_LATER, TOO_FAST);
        }
    }

    /// A subscriber too slow for its send queue, as the fan-out ends one in a task: the hint
    /// to come back within a second goes past the full queue, the Close after it, and the
    /// session ends as kicked.
    fn dropped(&self, seat: &mut Arc<Seat>, socket: &mut Socket<'_>) {
        let (code, reason) = KickReason::Lagging.close_frame();
        let _ = socket.send(retry_hint(code, reason, Duration::ZERO, KICK_SPREAD));
        let _ = socket.close(code, reason);
        if let Some(mailbox) = seat.mailbox.get() {
            self.hub.fanout.lag(mailbox);
        }
    }

    fn close(&self, seat: Arc<Seat>, _: Option<Result<Message, Error>>) {
        let mut waiting = seat.lock();
        waiting.left = true;
        seat.poke(waiting);
    }
}

/// One loop connection's session and what waits for it.
#[derive(Debug)]
pub(crate) struct Seat {
    hub: Arc<Shared>,
    /// Where the session's tasks run: the loop's own runtime, whoever wakes the seat.
    runtime: Handle,
    waiting: Mutex<Waiting>,
    /// Wakes a running task that waits on publishes in flight.
    notify: Notify,
    /// The session's mailbox, once it is open: where a laggard is kicked.
    mailbox: OnceLock<Arc<Mailbox>>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// The client's messages not yet handled, and their bytes.
    messages: VecDeque<Message>,
    bytes: usize,
    /// The session while no task runs it; `None` while it opens or runs, and once it ended.
    parked: Option<Box<Parked>>,
    /// A task opens or runs the session.
    running: bool,
    /// The session was refused or has ended: what the client sends is dropped.
    over: bool,
    /// The connection is over: the session ends after the messages before.
    left: bool,
    /// The client's token has expired.
    expired: bool,
    /// The timer of the token's expiry.
    expiry: Option<AbortHandle>,
}

/// What a session's first task needs to open it.
struct Opening {
    sender: Outbox,
    request: Box<Request<()>>,
    compression: bool,
}

/// What a session's task does next.
enum Next {
    Message(Message),
    Expired,
    Left,
}

impl Seat {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Every operation leaves the state consistent, so a poisoned lock is still usable.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message of the client for the session; `false` when too much waits already.
    fn hear(self: &Arc<Self>, message: Message) -> bool {
        let mut waiting = self.lock();
        if waiting.over {
            return true;
        }
        if waiting.bytes + message.len() > MAX_WAITING && !waiting.messages.is_empty() {
            return false;
        }
        waiting.bytes += message.len();
        waiting.messages.push_back(message);
        self.poke(waiting);
        true
    }

    /// Has the session's task see what arrived (put in `waiting`, the seat's state, locked
    /// once per event): starts one for a parked session, or wakes the one running.
    fn poke(self: &Arc<Self>, mut waiting: MutexGuard<'_, Waiting>) {
        if waiting.running {
            drop(waiting);
            self.notify.notify_one();
        } else if waiting.parked.is_some() {
            waiting.running = true;
            drop(waiting);
            self.runtime.spawn(work(self.clone(), None));
        }
    }

    /// What the session does next, in the order it arrived; the end once nothing is left
    /// before it.
    fn next(&self) -> Option<Next> {
        let mut waiting = self.lock();
        if let Some(message) = waiting.messages.pop_front() {
            waiting.bytes -= message.len();
            if waiting.messages.is_empty() {
                waiting.messages = VecDeque::new();
            }
            return Some(Next::Message(message));
        }
        if waiting.expired {
            return Some(Next::Expired);
        }
        waiting.left.then_some(Next::Left)
    }

    /// Marks the token expired at `at`.
    fn expire_at(self: &Arc<Self>, at: Instant) {
        let seat = Arc::downgrade(self);
        let timer = self.runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(seat) = Weak::upgrade(&seat) {
                let mut waiting = seat.lock();
                waiting.expired = true;
                seat.poke(waiting);
            }
        });
        self.lock().expiry = Some(timer.abort_handle());
    }
}

/// The mailbox's wake-up: the server side's command or the fan-out's kick.
impl Wake for Seat {
    fn wake(self: Arc<Self>) {
        self.poke(self.lock());
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poke(self.lock());
    }
}

/// Runs the session (opening it first, with `opening`) until nothing is left to do, then parks
/// it; or ends it.
async fn work(seat: Arc<Seat>, opening: Option<Opening>) {
    let hub = seat.hub.clone();
    let hub = &*hub;
    let mut session = match opening {
        Some(Opening {
            sender,
            request,
            compression,
        }) => {
            let Some((session, expiry)) = Box::pin(open(hub, sender, request, compression)).await
            else {
                // Refused, and closed: nothing to park.
                let mut waiting = seat.lock();
                waiting.running = false;
                waiting.over = true;
                waiting.messages = VecDeque::new();
                waiting.bytes = 0;
                return;
            };
            if let Some(at) = expiry {
                seat.expire_at(at);
            }
            session.mailbox.wake_also(Waker::from(seat.clone()));
            let _ = seat.mailbox.set(session.mailbox.clone());
            session
        }
        None => match seat.lock().parked.take() {
            Some(parked) => Session::resume(hub, *parked),
            None => return,
        },
    };
    let exit = loop {
        if let Some(mail) = session.mailbox.try_next() {
            if let Some(exit) = session.read(mail).await {
                break exit;
            }
            continue;
        }
        match seat.next() {
            Some(Next::Message(message)) => {
                if let Some(exit) = session.hear(message).await {
                    break exit;
                }
            }
            Some(Next::Expired) => break Exit::Expired,
            Some(Next::Left) => break Exit::Left,
            None if session.in_flight.get().is_empty() => {
                let mut waiting = seat.lock();
                // Checked under the seat's lock, which a wake-up takes to see `running`.
                if waiting.messages.is_empty()
                    && !waiting.left
                    && !waiting.expired
                    && !session.mailbox.has_mail()
                {
                    waiting.parked = Some(Box::new(session.park()));
                    waiting.running = false;
                    return;
                }
            }
            None => {
                tokio::select! {
                    reply = answered(session.in_flight.get()) => {
                        if let Some(reply) = reply {
                            Box::pin(session.send(reply)).await;
                        }
                    }
                    () = seat.notify.notified() => {}
                }
            }
        }
    };
    Box::pin(session.end(exit)).await;
    let mut waiting = seat.lock();
    waiting.running = false;
    waiting.over = true;
    waiting.messages = VecDeque::new();
    waiting.bytes = 0;
    if let Some(timer) = waiting.expiry.take() {
        timer.abort();
    }
}

/// What the session's opening reads of the upgrade request: its URI, headers and addresses.
fn copy(request: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    if let Some(peer) = request.extensions().get::<PeerAddr>() {
        copy.extensions_mut().insert(*peer);
    }
    if let Some(client) = request.extensions().get::<ClientAddr>() {
        copy.extensions_mut().insert(*client);
    }
    copy
}
