//! [`Hub`]: serves the channel protocol (see [`protocol`](crate::protocol)) to WebSocket
//! clients, over a [`Broker`].
//!
//! Each connection is served by one task that handles its requests in order (`session.rs`,
//! after `identity.rs` has said who the client is), or, from an event loop, by a task started
//! when it has work and parked between (`session/on_loop.rs`); either sends through an
//! `Outbox` (`outbox.rs`). Channel events come from the broker
//! through the fan-out (`fanout.rs`), which encodes each event once and queues the same frame
//! for every subscriber of the node, without waiting. `interest.rs` counts the node's
//! subscribers per channel, so that the broker delivers only the channels someone follows;
//! `recovery.rs` decides what a client that subscribes again with `since` is given;
//! `mailbox.rs` is how the server side's commands reach a session and how the fan-out ends a
//! connection it can no longer serve; `limits.rs` bounds
//! what one client may do (messages a second, channels) and makes the retry hints of the
//! closes that ask clients to come back later; `heartbeat.rs` sends
//! every connection a sign of life at a fixed interval. `cluster.rs` is what
//! the broker calls (events for the fan-out, other nodes' commands) and how the server API's
//! actions on connections (`server_api.rs`) run on every node. With webhooks, the
//! broker is seen through the webhooks' observer, which turns the hub's calls to it into
//! events for the backend.

mod cluster;
mod config;
mod fanout;
mod heartbeat;
mod identity;
mod interest;
mod limits;
mod mailbox;
mod outbox;
mod pusher_hooks;
mod pusher_session;
mod pusher_wire;
mod recovery;
mod registry;
mod server_api;
mod session;
mod shared;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::Request;
use switchboard::event_loop::{EventLoop, Serving};
use switchboard::{Backpressure, MaybeTlsStream, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

use cluster::Events;
pub use config::{DEFAULT_HEARTBEAT, HubConfig};
use fanout::Fanout;
pub use limits::{MessageRate, RESTART_REASON, restart_hint};
use outbox::Outbox;
pub use server_api::{
    ChannelList, ClientList, ClusterInfo, DEFAULT_HISTORY_LIMIT, HubError, MAX_IDEMPOTENCY_KEY,
    Target,
};
use session::HubHandler;
use shared::Shared;

use crate::broker::{Broker, BrokerError};
use crate::random::random_hex;
use crate::webhook::{self, Observed, WebhookMetrics};

/// The messaging hub: channels with presence, history and recovery. Cheap to clone; clones
/// share the same channels.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use switchboard_hub::{Hub, HubConfig, LocalBroker};
///
/// let hub = Hub::new(Arc::new(LocalBroker::default()), HubConfig::default()).await?;
/// let server = switchboard::Server::builder().bind("127.0.0.1:8080").await?;
/// server.serve(move |ws, request| hub.serve(ws, request)).await?;
/// # Ok(())
/// # }
/// ```
///
/// ## Recovery without gap or duplicate
///
/// A subscription starts *pending*: the hub holds the channel's events for it while it makes
/// sure the node receives the channel, then reads the channel's position and (with `since`)
/// the missed publications from history. The `subscribed` reply, the held events newer than
/// that position, and from then on the live events leave in one order, so a client sees every
/// offset after its `since` once.
///
/// ## Lagging
///
/// A subscriber whose send queue is full (it reads slower than messages arrive) is not sent
/// anything more: the hub closes its connection with 1013 (try again later), after a
/// `disconnect` hint to come back within a second (past the full queue, so that the laggards
/// of one burst do not return as one wave), and the client recovers what it missed when it
/// reconnects with `since`. Dropping messages silently would
/// break the promise above.
///
/// ## Lost streams
///
/// When the broker can no longer deliver a channel without a gap (Redis lost its data, so the
/// channel has a new epoch; or more was published during an outage than history holds), the
/// hub closes the connections of the channel's subscribers with 1012 (service restart). They
/// subscribe again with `since` and learn from the reply what happened (`epoch_changed`,
/// `history_truncated`), or recover what history still holds.
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
    webhooks: Option<Arc<WebhookMetrics>>,
    /// The event loops of [`serve_on_event_loop`](Self::serve_on_event_loop), started on
    /// first use.
    loops: EventLoop<HubHandler>,
}

impl Hub {
    /// A hub on `broker`, which it starts.
    ///
    /// # Errors
    ///
    /// When the broker cannot start.
    pub async fn new(broker: Arc<dyn Broker>, config: HubConfig) -> Result<Self, BrokerError> {
        let node = random_hex(4);
        let (broker, webhooks) = match config.webhooks.clone() {
            Some(webhooks) => {
                let (queue, metrics) = webhook::start(webhooks);
                let observed: Arc<dyn Broker> = Arc::new(Observed::new(broker, queue, &node));
                (observed, Some(metrics))
            }
            None => (broker, None),
        };
        let fanout = Arc::new(Fanout::default());
        let shared = Arc::new(Shared::new(broker.clone(), fanout.clone(), config, node));
        let events = Events {
            fanout,
            shared: Arc::downgrade(&shared),
        };
        broker.start(Arc::new(events)).await?;
        if let Some(every) = shared.config.heartbeat.filter(|every| !every.is_zero()) {
            heartbeat::start(Arc::downgrade(&shared.beats), every);
        }
        let loops = EventLoop::new(HubHandler::new(shared.clone()));
        Ok(Self {
            shared,
            webhooks,
            loops,
        })
    }

    /// What became of the webhook events, when [`HubConfig::webhooks`] is set.
    pub fn webhook_metrics(&self) -> Option<&WebhookMetrics> {
        self.webhooks.as_deref()
    }

    /// How many clients are connected to this node.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Whether the hub's broker can serve now (see [`Broker::health`]): what a health check
    /// tells.
    ///
    /// # Errors
    ///
    /// While the broker's backing service is unreachable, saying why.
    pub fn health(&self) -> Result<(), BrokerError> {
        self.shared.broker.health()
    }

    /// What part of the broker is unreachable while the rest serves (see
    /// [`Broker::degraded`]): a health check tells it with a 200.
    pub fn degraded(&self) -> Option<String> {
        self.shared.broker.degraded()
    }

    /// Appends the hub's metrics to `out`, for a `/metrics` endpoint: the broker's (see
    /// [`Broker::render_metrics`]), what the per-client limits refused (see
    /// [`HubConfig::message_rate`] and [`HubConfig::max_subscriptions`]), and the time from
    /// publish to delivery.
    pub fn render_metrics(&self, out: &mut String) {
        self.shared.broker.render_metrics(out);
        self.shared.limits.render(out);
        self.shared.fanout.render(out);
    }

    /// Subscribers dropped because their queue was full (see [Lagging](Self#lagging)).
    pub fn lagged(&self) -> u64 {
        self.shared.fanout.lagged()
    }

    /// Serves one client until it leaves. `request` is its upgrade request: the connect hook
    /// ([`HubConfig::hooks`]) names the user when it answers; otherwise the `token` query
    /// parameter (a JWT) does, and without one the `name` parameter, unverified. A client the
    /// connect hook refuses gets an `unauthorized` error and a close with the hook's code.
    ///
    /// A token that does not verify gets an `unauthorized` error and a close with 1008; so
    /// does a connection whose token expires while it is open.
    ///
    /// The future holds no borrow, so a server's handler can return it as it is; the request
    /// is dropped once the client is served, and an idle client's future is small (an
    /// `async` block around it would keep room for the socket and the request).
    pub fn serve<S>(
        &self,
        ws: WebSocket<S>,
        request: Request<()>,
    ) -> impl Future<Output = ()> + Send + use<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Split here, not in an `async fn`: its future would keep room for the socket (twice)
        // for the connection's whole life, though the socket's own task owns it; the request
        // goes in a box for the same reason. A full queue only refuses the message: the hub
        // closes a laggard itself, after its retry hint.
        let compression = ws.deflate().is_some();
        let (sender, receiver) = ws.split_with(Backpressure::Drop);
        let sender = Outbox::Task(sender);
        let request = Box::new(request);
        session::serve(self.shared.clone(), sender, receiver, request, compression)
    }

    /// Serves one client as [`serve`](Self::serve) does, from the event loop of this thread
    /// (see [`switchboard::event_loop`]): no task per connection, and none per session while
    /// its client is idle. A session's work (its opening, each request, the server side's
    /// commands) runs in a task started for it and ended when it is done. The future returned
    /// completes at once for a plain TCP connection, which moves into the loop; a TLS or
    /// HTTP/2 one is served by the future itself.
    ///
    /// The protocol, limits, recovery and the end of laggards are [`serve`](Self::serve)'s.
    /// Two things differ: [`ConnectionInfo::send_queue`](crate::ConnectionInfo::send_queue)
    /// reads 0, as a loop connection's queue is its loop's to see, and a client that sends
    /// more than a MiB of requests faster than the hub answers them is closed with 1013,
    /// since a loop cannot stop reading one connection.
    pub fn serve_on_event_loop(
        &self,
        mut ws: WebSocket<MaybeTlsStream>,
        request: Request<()>,
    ) -> Serving {
        // A message that does not fit a subscriber's queue is dropped and its session told:
        // it ends the connection after a retry hint, as for a task's.
        ws.set_backpressure(Backpressure::Drop);
        self.loops.serve(ws, request)
    }

    /// Whether any Pusher app is configured (see [`HubConfig::pusher`]).
    pub fn serves_pusher(&self) -> bool {
        !self.shared.config.pusher.is_empty()
    }

    /// The Pusher apps served (see [`HubConfig::pusher`]).
    pub fn pusher_apps(&self) -> &crate::pusher::PusherApps {
        &self.shared.config.pusher
    }

    /// Serves one client of the Pusher Channels protocol until it leaves. `request` is its
    /// upgrade request, whose path is `/app/{key}` with the key of one of the apps in
    /// [`HubConfig::pusher`]; for another key the client is sent Pusher's error 4001 and
    /// closed with it, as Pusher does.
    ///
    /// A Pusher app's channel `NAME` is the hub channel `pusher:{app_id}:NAME` (see
    /// [`HUB_PREFIX`](crate::pusher::HUB_PREFIX)), which the server side can publish to with
    /// data `{"event": EVENT, "data": DATA}`, and list, as any other channel.
    ///
    /// The future holds no borrow, as [`serve`](Self::serve)'s.
    pub fn serve_pusher<S>(
        &self,
        mut ws: WebSocket<S>,
        request: Request<()>,
    ) -> impl Future<Output = ()> + Send + use<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The server's shutdown message (the hub's `disconnect` hint) is not a Pusher frame:
        // pusher-js would throw on it. The Close frame alone has pusher-js come back.
        ws.skip_shutdown_message();
        let (sender, receiver) = ws.split_with(Backpressure::Drop);
        let sender = Outbox::Task(sender);
        let request = Box::new(request);
        pusher_session::serve(self.shared.clone(), sender, receiver, request)
    }
}
