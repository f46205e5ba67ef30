//! [`Group`] and [`Link`]: how connections served together (a [`Server`](crate::Server)'s) are
//! reached from outside their own task, without a [`WebSocket`](crate::WebSocket) knowing who
//! serves it.
//!
//! A group admits connections up to a limit ([`Member`]: counted and given a wake-up slot
//! until dropped), announces its shutdown, fires their deadlines from one sweeper
//! ([`Wakeups`]), and keeps their counters. A WebSocket that belongs to a group holds a
//! [`Link`]: its membership, counts not yet added to the group's [`Metrics`], the code of its
//! first Close, and the waker and deadline last registered, so that the shared slot is locked
//! only when one of those changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Waker};
use std::time::Duration;

use proto::{CloseCode, Message, ProtocolError};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::backpressure::SendQueue;
use crate::metrics::{Metrics, Tally};
use crate::throttle::LogThrottle;
use crate::wakeups::{SlotId, Wakeups};

/// What shutting down sends every WebSocket: a message made per connection, if any, then a
/// Close frame.
#[derive(Clone)]
pub(crate) struct Farewell {
    pub(crate) code: CloseCode,
    pub(crate) reason: String,
    pub(crate) message: Option<Arc<dyn Fn() -> Option<Message> + Send + Sync>>,
}

impl Default for Farewell {
    fn default() -> Self {
        Self {
            code: CloseCode::GOING_AWAY,
            reason: "server shutting down".to_owned(),
            message: None,
        }
    }
}

impl std::fmt::Debug for Farewell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Farewell")
            .field("code", &self.code)
            .field("reason", &self.reason)
            .field("message", &self.message.is_some())
            .finish()
    }
}

/// What the connections of one server share.
#[derive(Debug)]
pub(crate) struct Group {
    metrics: Metrics,
    farewell: Farewell,
    send_queue: SendQueue,
    max_members: usize,
    /// Members admitted and not yet dropped (handshakes, plain HTTP, WebSockets).
    members: AtomicUsize,
    /// Notified when `members` drops to zero.
    idle: Notify,
    shutting_down: AtomicBool,
    /// Set when the grace period ended: members still open are dropped.
    cancelled: AtomicBool,
    wakeups: Wakeups,
}

impl Group {
    /// A group of at most `max_members`, whose connections have the timeouts of `config`.
    pub(crate) fn new(
        config: &proto::Config,
        max_members: usize,
        send_queue: SendQueue,
        metrics: Metrics,
        farewell: Farewell,
    ) -> Self {
        Self {
            metrics,
            farewell,
            send_queue,
            max_members,
            members: AtomicUsize::new(0),
            idle: Notify::new(),
            shutting_down: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            wakeups: Wakeups::new(config),
        }
    }

    /// Counts one more member, unless the group is full.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Member> {
        let admitted = self
            .members
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_members).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Member {
            group: self.clone(),
            slot: self.wakeups.insert(),
        })
    }

    /// Lets [`abort_all`](Self::abort_all) cancel the task of the member in `slot`.
    pub(crate) fn set_abort(&self, slot: SlotId, abort: AbortHandle) {
        self.wakeups.set_abort(slot, abort);
    }

    /// Members admitted and not yet over.
    pub(crate) fn members(&self) -> usize {
        self.members.load(Ordering::Acquire)
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Fires the members' deadlines until [`close`](Self::close) and the last member is gone.
    pub(crate) async fn sweep(&self) {
        self.wakeups.sweep().await;
    }

    /// Tells every member that the group is shutting down (their next receive sends the
    /// [`Farewell`]).
    pub(crate) fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.wakeups.wake_all();
    }

    /// What shutting down sends every WebSocket.
    pub(crate) fn farewell(&self) -> &Farewell {
        &self.farewell
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Cancels every member: aborts its task, or, for one served by an event loop, wakes it
    /// to find itself cancelled.
    pub(crate) fn abort_all(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.wakeups.abort_all();
    }

    /// No members will be admitted any more: the sweeper may end with the last one.
    pub(crate) fn close(&self) {
        self.wakeups.close();
    }

    /// Waits until no member is left (`true`) or `grace` passes (`false`).
    pub(crate) async fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.members() == 0 {
                return true;
            }
            tokio::select! {
                () = idle => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}

/// One admitted connection: counted in its group and holding a wake-up slot until dropped.
#[derive(Debug)]
pub(crate) struct Member {
    group: Arc<Group>,
    slot: SlotId,
}

impl Member {
    /// The member's wake-up slot.
    pub(crate) fn slot(&self) -> SlotId {
        self.slot
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.group.wakeups.remove(self.slot);
        if self.group.members.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.group.idle.notify_waiters();
        }
    }
}

/// The connection ids of this process's servers, in the order the connections opened.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Where a connection comes from, as its log lines say it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Remote {
    /// The client: the peer, or the client a trusted proxy forwarded.
    pub(crate) client: RemoteAddr,
    /// The trusted proxy the connection came through, if any.
    pub(crate) via: Option<SocketAddr>,
}

/// A client's address: with its port when it is the peer's, without when a proxy forwarded it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RemoteAddr {
    Forwarded(IpAddr),
    Peer(SocketAddr),
}

impl std::fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forwarded(ip) => ip.fmt(f),
            Self::Peer(addr) => addr.fmt(f),
        }
    }
}

impl Remote {
    /// From the addresses the server put in a request's extensions: the peer's, and the
    /// client's behind trusted proxies (the peer's own IP when none forwarded one).
    pub(crate) fn of(peer: SocketAddr, client: Option<IpAddr>) -> Self {
        match client {
            Some(ip) if ip != peer.ip() => Self {
                client: RemoteAddr::Forwarded(ip),
                via: Some(peer),
            },
            _ => Self {
                client: RemoteAddr::Peer(peer),
                via: None,
            },
        }
    }
}

/// A WebSocket's link to its group; see the module docs.
pub(crate) struct Link {
    member: Member,
    /// Counts not yet added to the group's metrics.
    tally: Tally,
    /// The code of the first Close frame, sent or received.
    close_code: Option<CloseCode>,
    /// Names the connection in the log lines of its opening and closing. 32 bits fit beside
    /// `close_code`, in bytes the struct has anyway (see `footprint.rs`); they wrap after four
    /// billion connections, which is no harm to a log reader pairing two nearby lines.
    id: u32,
    /// The waker and the deadline last given to the slot ([`NO_DEADLINE`] for none: an
    /// `Option` would take 8 bytes more).
    waker: Option<Waker>,
    armed: u64,
}

/// No deadline armed; never a deadline (see [`Wakeups::deadline_ms`]).
const NO_DEADLINE: u64 = u64::MAX;

/// Which count of a [`Tally`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    MessagesIn,
    MessagesOut,
    BytesIn,
    BytesOut,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("tally", &self.tally)
            .field("close_code", &self.close_code)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Links an upgraded connection: it counts as open from now on, and is logged at debug
    /// level with an id and `remote`, its client's address (the one trusted proxies forwarded,
    /// else the peer's), which its closing line does not repeat: the id pairs them.
    pub(crate) fn new(member: Member, remote: &Remote) -> Self {
        member.group.metrics.connection_opened();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        match remote.via {
            Some(proxy) => {
                tracing::debug!(conn = id, remote = %remote.client, via = %proxy, "connection opened")
            }
            None => tracing::debug!(conn = id, remote = %remote.client, "connection opened"),
        }
        Self {
            member,
            tally: Tally::default(),
            close_code: None,
            id,
            waker: None,
            armed: NO_DEADLINE,
        }
    }

    /// The group's [`Farewell`] when it is shutting down; if not, its start wakes `cx`.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Option<Farewell> {
        // Registered before the flag is read, so a shutdown in between is not missed.
        self.watch(cx.waker(), self.armed);
        let group = &self.member.group;
        group.is_shutting_down().then(|| group.farewell.clone())
    }

    /// Whether the server gave up on its members at the end of its grace period.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.member.group.cancelled.load(Ordering::Acquire)
    }

    /// The connection left its task for an event loop.
    pub(crate) fn detach(&self) {
        self.member.group.wakeups.detach(self.member.slot);
    }

    /// The time by the sweeper's clock (an atomic load; see [`Wakeups::now`]).
    pub(crate) fn clock(&self) -> std::time::Instant {
        self.member.group.wakeups.now()
    }

    /// Whether `deadline` has come, by the sweeper's clock; if not, it wakes `cx` then.
    pub(crate) fn poll_deadline(
        &mut self,
        deadline: std::time::Instant,
        cx: &mut Context<'_>,
    ) -> bool {
        let wakeups = &self.member.group.wakeups;
        let at = wakeups.deadline_ms(deadline);
        if wakeups.is_due(at) {
            return true;
        }
        self.watch(cx.waker(), at);
        false
    }

    /// Gives the slot `waker` and `deadline` ([`NO_DEADLINE`] for none), if either changed.
    fn watch(&mut self, waker: &Waker, deadline: u64) {
        let same_waker = self.waker.as_ref().is_some_and(|w| w.will_wake(waker));
        if same_waker && deadline == self.armed {
            return;
        }
        let new_waker = (!same_waker).then_some(waker);
        let group = &self.member.group;
        let at = (deadline != NO_DEADLINE).then_some(deadline);
        group.wakeups.register(self.member.slot, new_waker, at);
        if let Some(waker) = new_waker {
            self.waker = Some(waker.clone());
        }
        self.armed = deadline;
    }

    /// The engine closes the connection for `error` (a protocol violation, a limit, a failed
    /// keepalive): counted under its code, and logged at most once a second, since a peer can
    /// cause it at will.
    pub(crate) fn note_fault(&mut self, error: &ProtocolError) {
        static FAULTS: LogThrottle = LogThrottle::new(Duration::from_secs(1));
        let code = error.close_code();
        self.note_close(code);
        FAULTS.log(|suppressed| {
            tracing::info!(code = code.0, reason = %error, suppressed, "closing a connection");
        });
    }

    pub(crate) fn note_close(&mut self, code: CloseCode) {
        self.close_code.get_or_insert(code);
    }

    pub(crate) fn note_received(&mut self, message: &Message) {
        match message {
            Message::Text(_) | Message::Binary(_) => self.count(Count::MessagesIn, 1),
            Message::Close(frame) => {
                self.note_close(frame.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code));
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }

    /// Adds `n` to a count, first adding the tally to the group's metrics whenever the count
    /// would overflow.
    pub(crate) fn count(&mut self, which: Count, n: usize) {
        let mut n = n as u64;
        loop {
            let tally = &mut self.tally;
            let counter = match which {
                Count::MessagesIn => &mut tally.messages_in,
                Count::MessagesOut => &mut tally.messages_out,
                Count::BytesIn => &mut tally.bytes_in,
                Count::BytesOut => &mut tally.bytes_out,
            };
            let room = u64::from(u32::MAX - *counter);
            if n <= room {
                // Fits: at most `room`, itself a u32.
                *counter += n as u32;
                return;
            }
            *counter = u32::MAX;
            n -= room;
            self.flush();
        }
    }

    /// Adds the counts kept so far to the group's metrics.
    pub(crate) fn flush(&mut self) {
        self.member.group.metrics.add(&mut self.tally);
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.member.group.metrics
    }

    pub(crate) fn send_queue(&self) -> SendQueue {
        self.member.group.send_queue
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.flush();
        let code = self.close_code.unwrap_or(CloseCode::ABNORMAL);
        self.member.group.metrics.connection_closed(code.0);
        tracing::debug!(conn = self.id, code = code.0, "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(metrics: &Metrics) -> Link {
        let group = Arc::new(Group::new(
            &proto::Config::default(),
            1,
            SendQueue::SERVER,
            metrics.clone(),
            Farewell::default(),
        ));
        let member = group.admit().expect("room for one");
        Link::new(member, &Remote::of(([127, 0, 0, 1], 1).into(), None))
    }

    #[test]
    fn counts_past_32_bits_reach_the_metrics_whole() {
        let metrics = Metrics::new();
        let mut link = link(&metrics);
        let big = 3 * u64::from(u32::MAX) + 7;
        for _ in 0..2 {
            link.count(Count::BytesIn, (u32::MAX - 1) as usize);
        }
        link.count(Count::BytesIn, (u32::MAX as usize) + 9);
        link.count(Count::BytesOut, usize::try_from(big).unwrap());
        link.count(Count::MessagesOut, 1);
        link.flush();
        assert_eq!(metrics.bytes_received(), big);
        assert_eq!(metrics.bytes_sent(), big);
        assert_eq!(metrics.messages_sent(), 1);
    }
}
