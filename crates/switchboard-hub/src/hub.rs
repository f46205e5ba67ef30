//! [`Hub`]: serves the channel protocol (see [`protocol`](crate::protocol)) to WebSocket
//! clients, over a [`Broker`].
//!
//! Each connection is served by one task that handles its requests in order. Channel events
//! come from the broker through the hub's fan-out, which encodes each event once and queues
//! the same frame for every subscriber of the node, without waiting.
//!
//! ## Recovery without gap or duplicate
//!
//! A subscription starts *pending*: the fan-out holds the channel's events for it while the
//! hub makes sure the node receives the channel, then reads the channel's position and (with
//! `since`) the missed publications from history. The `subscribed` reply, the held events
//! newer than that position, and from then on the live events leave in one order, so a
//! client sees every offset after its `since` once.
//!
//! ## Lagging
//!
//! A subscriber whose send queue is full (it reads slower than messages arrive) is not sent
//! anything more: the hub closes its connection with 1013 (try again later), and the client
//! recovers what it missed when it reconnects with `since`. Dropping messages silently would
//! break the promise above.
//!
//! ## Lost streams
//!
//! When the broker can no longer deliver a channel without a gap (Redis lost its data, so the
//! channel has a new epoch; or more was published during an outage than history holds), the
//! hub closes the connections of the channel's subscribers with 1012 (service restart). They
//! subscribe again with `since` and learn from the reply what happened (`epoch_changed`,
//! `history_truncated`), or recover what history still holds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use switchboard::{CloseCode, EncodedFrame, Message, Sender, TrySendError, Utf8Bytes, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::auth::{JwtKey, LEEWAY};
use crate::broker::{
    Broker, BrokerError, BrokerEvents, ClientInfo, History, HistoryRange, Publication,
    StreamPosition,
};
use crate::protocol::{
    ErrorCode, RecoveryFailure, Reply, Request as Op, RequestError, RequestId, parse_request,
};
use crate::rules::{ChannelRule, policy_for};

/// Room around `data` for the rest of a publish request, before the size check parses it.
const ENVELOPE: usize = 4096;
/// Events held for a pending subscription before the subscriber counts as lagging.
const MAX_PENDING: usize = 4096;
/// The longest name an anonymous client may choose, in characters.
const MAX_NAME: usize = 32;
/// How many publications a `history` request returns when it gives no `limit`.
const DEFAULT_HISTORY_LIMIT: usize = 50;

/// The hub's limits and access rules.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// The largest `data` of a publish, in bytes of JSON (default 64 KiB).
    pub max_data_size: usize,
    /// The most channels one connection may subscribe to (default 100).
    pub max_subscriptions: usize,
    /// The most publications one `history` reply or one recovery carries (default 1000).
    pub max_replay: usize,
    /// Verifies the `token` query parameter; without a key, tokens are refused.
    pub jwt: Option<JwtKey>,
    /// Channel rules, first match wins; unmatched channels are public.
    pub rules: Vec<ChannelRule>,
    /// Origins browsers may connect from (exact `Origin` values); empty allows any.
    pub allowed_origins: Vec<String>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_data_size: 64 * 1024,
            max_subscriptions: 100,
            max_replay: 1000,
            jwt: None,
            rules: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

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
/// server
///     .serve(move |ws, request| {
///         let hub = hub.clone();
///         async move { hub.serve(ws, &request).await }
///     })
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Arc<dyn Broker>,
    fanout: Arc<Fanout>,
    config: HubConfig,
    /// Local subscriptions per channel; the lock also orders the broker's
    /// subscribe/unsubscribe calls, so that a channel's last leave and next join cannot cross.
    interest: tokio::sync::Mutex<HashMap<String, usize>>,
    /// Prefix of this node's connection ids.
    node: String,
    next_conn: AtomicU64,
    connections: AtomicUsize,
}

impl std::fmt::Debug for dyn Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Broker")
    }
}

impl Hub {
    /// A hub on `broker`, which it starts.
    ///
    /// # Errors
    ///
    /// When the broker cannot start.
    pub async fn new(broker: Arc<dyn Broker>, config: HubConfig) -> Result<Self, BrokerError> {
        let fanout = Arc::new(Fanout::default());
        broker.start(fanout.clone()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                broker,
                fanout,
                config,
                interest: tokio::sync::Mutex::default(),
                node: crate::random_hex(4),
                next_conn: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// How many clients are connected to this node.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Subscribers dropped because their queue was full (see "Lagging" above).
    pub fn lagged(&self) -> u64 {
        self.inner.fanout.lagged.load(Ordering::Relaxed)
    }

    /// Checks an upgrade request's `Origin` against the allow-list: `Some(403 response)` when a
    /// browser comes from an origin not on it. Requests without `Origin` (not from a browser)
    /// pass. Meant for [`ServerBuilder::check_upgrade`](switchboard::ServerBuilder::check_upgrade).
    pub fn check_origin(&self, request: &Request<()>) -> Option<Response<Bytes>> {
        let allowed = &self.inner.config.allowed_origins;
        let origin = request.headers().get(http::header::ORIGIN)?;
        if allowed.is_empty()
            || allowed
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
        {
            return None;
        }
        let mut response = Response::new(Bytes::from_static(b"origin not allowed\n"));
        *response.status_mut() = StatusCode::FORBIDDEN;
        Some(response)
    }

    /// Serves one client until it leaves. `request` is its upgrade request: the `token` query
    /// parameter (a JWT) names the user; without one, the `name` parameter does, unverified.
    ///
    /// A token that does not verify gets an `unauthorized` error and a close with 1008; so
    /// does a connection whose token expires while it is open.
    pub fn serve<'a, S>(
        &'a self,
        ws: WebSocket<S>,
        request: &'a Request<()>,
    ) -> impl Future<Output = ()> + Send + 'a
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Split here, not in an `async fn`: its future would keep room for the socket (twice)
        // for the connection's whole life, though the socket's own task owns it.
        let (sender, receiver) = ws.split();
        self.session(sender, receiver, request)
    }

    async fn session(
        &self,
        sender: Sender,
        mut receiver: switchboard::Receiver,
        request: &Request<()>,
    ) {
        let query = request.uri().query().unwrap_or("");
        let identity = match self.identify(query) {
            Ok(identity) => identity,
            Err(reason) => {
                refuse(
                    &sender,
                    ErrorCode::Unauthorized,
                    &reason,
                    CloseCode::POLICY_VIOLATION,
                )
                .await;
                return;
            }
        };
        let conn = format!(
            "{}{:x}",
            self.inner.node,
            self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
        );
        let mut session = Session {
            hub: &self.inner,
            id: sender.id(),
            info: ClientInfo {
                user: identity.user,
                conn,
                authenticated: identity.authenticated,
            },
            sender,
            kick: Arc::new(Kick::default()),
            subscriptions: HashSet::new(),
        };
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn = %session.info.conn, user = %session.info.user, "client connected");
        session
            .send(
                Reply::Connected {
                    client: &session.info,
                }
                .to_json(),
            )
            .await;
        let expiry = identity.expires_in.map(|d| tokio::time::Instant::now() + d);
        loop {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(Ok(Message::Text(text))) => session.handle(&text).await,
                    Some(Ok(Message::Binary(_))) => {
                        let reason = "binary frames are not part of the protocol; send JSON text";
                        let e = RequestError::new(None, ErrorCode::Unsupported, reason);
                        session.send(String::from(&e)).await;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                () = session.kick.notify.notified() => {
                    let (code, reason) = session.kick.close_frame();
                    tracing::debug!(conn = %session.info.conn, reason, "closing a client");
                    let sender = session.sender.clone();
                    session.end().await;
                    self.inner.connections.fetch_sub(1, Ordering::Relaxed);
                    // The Close queues behind what the client has yet to read: a client that
                    // reads again gets a gap-free prefix, then the close.
                    let _ = sender.close(code, reason);
                    return;
                }
                () = sleep_until(expiry) => {
                    refuse(&session.sender, ErrorCode::Unauthorized, "token expired",
                        CloseCode::POLICY_VIOLATION).await;
                    break;
                }
            }
        }
        session.end().await;
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn identify(&self, query: &str) -> Result<Identity, String> {
        let token = query_param(query, "token");
        match (token, &self.inner.config.jwt) {
            (Some(token), Some(key)) => {
                let now = SystemTime::now();
                let claims = key.verify(&token, now).map_err(|e| e.to_string())?;
                let expires_in = claims.exp.map(|exp| {
                    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(exp) + LEEWAY;
                    exp.duration_since(now).unwrap_or_default()
                });
                Ok(Identity {
                    user: claims.sub,
                    authenticated: true,
                    expires_in,
                })
            }
            (Some(_), None) => Err("this server does not accept tokens".into()),
            (None, _) => Ok(Identity {
                user: anonymous_name(query_param(query, "name").as_deref()),
                authenticated: false,
                expires_in: None,
            }),
        }
    }
}

struct Identity {
    user: String,
    authenticated: bool,
    expires_in: Option<Duration>,
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends an error and closes: for a connection the hub will not serve.
async fn refuse(sender: &Sender, code: ErrorCode, reason: &str, close: CloseCode) {
    let e = RequestError::new(None, code, reason);
    let _ = sender.send(Message::text(String::from(&e))).await;
    let _ = sender.close(close, code.as_str());
}

/// One connection's state, owned by its task.
struct Session<'h> {
    hub: &'h Inner,
    /// The connection's key in the fan-out.
    id: u64,
    info: ClientInfo,
    sender: Sender,
    /// Set by the fan-out when the connection must end (see [`Kick`]).
    kick: Arc<Kick>,
    subscriptions: HashSet<String>,
}

/// Why the hub ends a connection of its own accord.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KickReason {
    /// Its send queue is full (see "Lagging").
    Lagging,
    /// A channel it follows lost its stream (see "Lost streams").
    StreamLost,
}

/// Tells a session to end its connection; the first reason wins.
#[derive(Debug, Default)]
struct Kick {
    notify: Notify,
    reason: std::sync::OnceLock<KickReason>,
}

impl Kick {
    fn kick(&self, reason: KickReason) {
        let _ = self.reason.set(reason);
        self.notify.notify_one();
    }

    fn close_frame(&self) -> (CloseCode, &'static str) {
        match self.reason.get() {
            Some(KickReason::StreamLost) => (
                CloseCode::SERVICE_RESTART,
                "channel stream lost; subscribe again with since",
            ),
            Some(KickReason::Lagging) | None => (CloseCode::TRY_AGAIN_LATER, "too slow"),
        }
    }
}

impl Session<'_> {
    async fn send(&self, json: String) {
        // A closed connection ends the loop on the next receive.
        let _ = self.sender.send(Message::text(json)).await;
    }

    async fn handle(&mut self, text: &str) {
        let result = if text.len() > self.hub.config.max_data_size + ENVELOPE {
            Err(RequestError::new(
                None,
                ErrorCode::TooLarge,
                format!(
                    "request is {} bytes; data may be at most {} bytes",
                    text.len(),
                    self.hub.config.max_data_size
                ),
            ))
        } else {
            match parse_request(text) {
                Ok(op) => self.apply(op).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            tracing::debug!(conn = %self.info.conn, error = %e, "request refused");
            self.send(String::from(&e)).await;
        }
    }

    async fn apply(&mut self, op: Op) -> Result<(), RequestError> {
        match op {
            Op::Subscribe { id, channel, since } => self.subscribe(id, channel, since).await,
            Op::Unsubscribe { id, channel } => {
                if !self.subscriptions.remove(&channel) {
                    let reason = format!("not subscribed to {channel}");
                    return Err(RequestError::new(id, ErrorCode::NotSubscribed, reason));
                }
                self.leave(&channel).await;
                let reply = Reply::Unsubscribed {
                    id: id.as_ref(),
                    channel: &channel,
                };
                self.send(reply.to_json()).await;
                Ok(())
            }
            Op::Publish { id, channel, data } => {
                if !policy_for(&self.hub.config.rules, &channel)
                    .may_publish(self.info.authenticated)
                {
                    let reason = format!("publishing on {channel} needs an authenticated user");
                    return Err(RequestError::new(id, ErrorCode::Forbidden, reason));
                }
                let size = data.get().len();
                if size > self.hub.config.max_data_size {
                    let reason = format!(
                        "data is {size} bytes, limit is {}",
                        self.hub.config.max_data_size
                    );
                    return Err(RequestError::new(id, ErrorCode::TooLarge, reason));
                }
                let published = self.hub.broker.publish(&channel, self.info.clone(), data);
                let position = published.await.map_err(|e| unavailable(id.clone(), &e))?;
                if let Some(id) = &id {
                    let reply = Reply::Ack {
                        id,
                        channel: &channel,
                        offset: position.offset,
                    };
                    self.send(reply.to_json()).await;
                }
                Ok(())
            }
            Op::Presence { id, channel } => {
                self.check_read(id.as_ref(), &channel)?;
                let presence = self.hub.broker.presence(&channel).await;
                let clients = presence.map_err(|e| unavailable(id.clone(), &e))?;
                let reply = Reply::Presence {
                    id: id.as_ref(),
                    channel: &channel,
                    clients: &clients,
                };
                self.send(reply.to_json()).await;
                Ok(())
            }
            Op::History { id, channel, limit } => {
                self.check_read(id.as_ref(), &channel)?;
                let limit = limit
                    .unwrap_or(DEFAULT_HISTORY_LIMIT)
                    .min(self.hub.config.max_replay);
                let history = self
                    .hub
                    .broker
                    .history(&channel, HistoryRange::Latest(limit))
                    .await
                    .map_err(|e| unavailable(id.clone(), &e))?;
                let reply = Reply::History {
                    id: id.as_ref(),
                    channel: &channel,
                    epoch: &history.position.epoch,
                    offset: history.position.offset,
                    publications: &history.publications,
                };
                self.send(reply.to_json()).await;
                Ok(())
            }
        }
    }

    fn check_read(&self, id: Option<&RequestId>, channel: &str) -> Result<(), RequestError> {
        if policy_for(&self.hub.config.rules, channel).may_read(self.info.authenticated) {
            Ok(())
        } else {
            let reason = format!("channel {channel} is for authenticated users");
            Err(RequestError::new(id.cloned(), ErrorCode::Forbidden, reason))
        }
    }

    async fn subscribe(
        &mut self,
        id: Option<RequestId>,
        channel: String,
        since: Option<StreamPosition>,
    ) -> Result<(), RequestError> {
        self.check_read(id.as_ref(), &channel)?;
        if self.subscriptions.contains(&channel) {
            let reason = format!("already subscribed to {channel}");
            return Err(RequestError::new(id, ErrorCode::AlreadySubscribed, reason));
        }
        if self.subscriptions.len() >= self.hub.config.max_subscriptions {
            let reason = format!(
                "a connection may subscribe to at most {} channels",
                self.hub.config.max_subscriptions
            );
            return Err(RequestError::new(
                id,
                ErrorCode::TooManySubscriptions,
                reason,
            ));
        }
        let fanout = &self.hub.fanout;
        fanout.add_pending(&channel, self.id, &self.sender, &self.kick);
        if let Err(e) = self.hub.attach(&channel).await {
            fanout.remove(&channel, self.id);
            return Err(unavailable(id, &e));
        }
        let range = match &since {
            Some(since) => HistoryRange::After {
                offset: since.offset,
                limit: self.hub.config.max_replay,
            },
            None => HistoryRange::Latest(0),
        };
        let history = match self.hub.broker.history(&channel, range).await {
            Ok(history) => history,
            Err(e) => {
                fanout.remove(&channel, self.id);
                self.hub.detach(&channel).await;
                return Err(unavailable(id, &e));
            }
        };
        let recovery = since.as_ref().map(|since| recover(since, &history));
        let (recovered, code, reason, publications) = match &recovery {
            None => (None, None, None, &[][..]),
            Some(Ok(())) => (Some(true), None, None, &history.publications[..]),
            Some(Err((code, reason))) => (Some(false), Some(*code), Some(reason.as_str()), &[][..]),
        };
        let reply = Reply::Subscribed {
            id: id.as_ref(),
            channel: &channel,
            epoch: &history.position.epoch,
            offset: history.position.offset,
            recovered,
            code,
            reason,
            publications,
        };
        self.subscriptions.insert(channel.clone());
        fanout.activate(&channel, self.id, reply.to_json(), history.position.offset);
        if let Err(e) = self.hub.broker.join(&channel, self.info.clone()).await {
            tracing::warn!(%channel, error = %e, "presence join failed");
        }
        Ok(())
    }

    /// Leaves a channel: no more events, out of presence, and the node's interest dropped.
    async fn leave(&self, channel: &str) {
        self.hub.fanout.remove(channel, self.id);
        if let Err(e) = self.hub.broker.leave(channel, self.info.clone()).await {
            tracing::warn!(%channel, error = %e, "presence leave failed");
        }
        self.hub.detach(channel).await;
    }

    async fn end(mut self) {
        for channel in std::mem::take(&mut self.subscriptions) {
            self.leave(&channel).await;
        }
        tracing::debug!(conn = %self.info.conn, "client gone");
    }
}

fn unavailable(id: Option<RequestId>, e: &BrokerError) -> RequestError {
    RequestError::new(id, ErrorCode::Unavailable, e.to_string())
}

/// Whether `history` (read for a client that saw `since`) holds every publication it missed.
fn recover(since: &StreamPosition, history: &History) -> Result<(), (RecoveryFailure, String)> {
    let position = &history.position;
    if since.epoch != position.epoch {
        return Err((
            RecoveryFailure::EpochChanged,
            format!(
                "the channel's history was reset (epoch {} is now {})",
                since.epoch, position.epoch
            ),
        ));
    }
    if since.offset > position.offset {
        return Err((
            RecoveryFailure::OffsetAhead,
            format!(
                "offset {} is ahead of the channel's latest, {}",
                since.offset, position.offset
            ),
        ));
    }
    let missed = position.offset - since.offset;
    let publications = &history.publications;
    let contiguous_from_since = publications
        .first()
        .is_none_or(|first| first.offset == since.offset + 1);
    if !contiguous_from_since || (publications.is_empty() && missed > 0) {
        return Err((
            RecoveryFailure::HistoryTruncated,
            format!(
                "some of the {missed} messages after offset {} are no longer in history",
                since.offset
            ),
        ));
    }
    if publications.len() as u64 != missed {
        return Err((
            RecoveryFailure::TooManyMissed,
            format!(
                "{missed} messages were missed; at most {} are replayed",
                publications.len()
            ),
        ));
    }
    Ok(())
}

impl Inner {
    /// Counts a local subscription to `channel`, subscribing the node to it first if it is
    /// the only one.
    async fn attach(&self, channel: &str) -> Result<(), BrokerError> {
        let mut interest = self.interest.lock().await;
        if !interest.contains_key(channel) {
            self.broker.subscribe(channel).await?;
        }
        *interest.entry(channel.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Uncounts a local subscription to `channel`; the last one unsubscribes the node.
    async fn detach(&self, channel: &str) {
        let mut interest = self.interest.lock().await;
        let Some(count) = interest.get_mut(channel) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            interest.remove(channel);
            if let Err(e) = self.broker.unsubscribe(channel).await {
                tracing::warn!(%channel, error = %e, "broker unsubscribe failed");
            }
        }
    }
}

/// Delivers channel events from the broker to this node's subscribers.
#[derive(Debug, Default)]
struct Fanout {
    channels: Mutex<HashMap<String, HashMap<u64, Subscriber>>>,
    lagged: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    sender: Sender,
    /// `Some` while the subscription is pending: events held until `subscribed` is sent.
    pending: Option<Vec<Held>>,
    kick: Arc<Kick>,
}

#[derive(Debug)]
enum Held {
    Publication(Arc<Publication>),
    /// A join or leave, already encoded.
    Presence(EncodedFrame),
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Subscriber>>> {
        // Every operation leaves the maps consistent, so a poisoned lock is still usable.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_pending(&self, channel: &str, id: u64, sender: &Sender, kick: &Arc<Kick>) {
        let subscriber = Subscriber {
            sender: sender.clone(),
            pending: Some(Vec::new()),
            kick: kick.clone(),
        };
        self.lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(id, subscriber);
    }

    fn remove(&self, channel: &str, id: u64) {
        let mut channels = self.lock();
        if let Some(subscribers) = channels.get_mut(channel) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Ends a pending subscription: sends `subscribed`, then the held events after `offset`,
    /// and makes the subscriber live, all under the lock so no event slips in between.
    fn activate(&self, channel: &str, id: u64, subscribed: String, offset: u64) {
        let mut channels = self.lock();
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        let Some(subscriber) = subscribers.get_mut(&id) else {
            return; // dropped for lagging meanwhile
        };
        let held = subscriber.pending.take().unwrap_or_default();
        let mut ok = self.send(
            subscriber,
            &EncodedFrame::text(&Utf8Bytes::from(subscribed)),
        );
        for event in held {
            if !ok {
                break;
            }
            ok = match event {
                Held::Publication(p) if p.offset > offset => {
                    self.send(subscriber, &message_frame(channel, &p))
                }
                Held::Publication(_) => true, // already in the reply, or before `since`
                Held::Presence(frame) => self.send(subscriber, &frame),
            };
        }
        if !ok {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Queues `frame` for a live subscriber; on a full queue flags it as lagging.
    fn send(&self, subscriber: &Subscriber, frame: &EncodedFrame) -> bool {
        match subscriber.sender.try_send_encoded(frame.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full) => {
                self.lag(subscriber);
                false
            }
            Err(_) => false,
        }
    }

    fn lag(&self, subscriber: &Subscriber) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
        subscriber.kick.kick(KickReason::Lagging);
    }

    /// Sends an event to the channel's live subscribers and holds it for pending ones. Lagging
    /// and closed subscribers are dropped from the channel.
    fn dispatch(&self, channel: &str, held: impl Fn() -> Held, frame: impl Fn() -> EncodedFrame) {
        let mut channels = self.lock();
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        let mut encoded: Option<EncodedFrame> = None;
        subscribers.retain(|_, subscriber| match &mut subscriber.pending {
            Some(pending) if pending.len() < MAX_PENDING => {
                pending.push(held());
                true
            }
            Some(_) => {
                self.lag(subscriber);
                false
            }
            None => self.send(subscriber, encoded.get_or_insert_with(&frame)),
        });
        if subscribers.is_empty() {
            channels.remove(channel);
        }
    }
}

fn message_frame(channel: &str, publication: &Publication) -> EncodedFrame {
    let json = Reply::Message {
        channel,
        publication,
    }
    .to_json();
    EncodedFrame::text(&Utf8Bytes::from(json))
}

fn presence_frame(reply: &Reply<'_>) -> EncodedFrame {
    EncodedFrame::text(&Utf8Bytes::from(reply.to_json()))
}

impl BrokerEvents for Fanout {
    fn publication(&self, channel: &str, publication: &Arc<Publication>) {
        self.dispatch(
            channel,
            || Held::Publication(publication.clone()),
            || message_frame(channel, publication),
        );
    }

    fn join(&self, channel: &str, client: &ClientInfo) {
        let frame = presence_frame(&Reply::Join { channel, client });
        self.dispatch(channel, || Held::Presence(frame.clone()), || frame.clone());
    }

    fn leave(&self, channel: &str, client: &ClientInfo) {
        let frame = presence_frame(&Reply::Leave { channel, client });
        self.dispatch(channel, || Held::Presence(frame.clone()), || frame.clone());
    }

    fn stream_lost(&self, channel: &str) {
        // Pending subscribers go too: their reply may predate the loss.
        let subscribers = self.lock().remove(channel);
        for subscriber in subscribers.into_iter().flat_map(HashMap::into_values) {
            subscriber.kick.kick(KickReason::StreamLost);
        }
    }
}

/// The value of query parameter `name`, percent-decoded (`+` is a space, as in forms).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3).and_then(|p| hex_pair(p[0], p[1])) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    u8::try_from(digit(high)? * 16 + digit(low)?).ok()
}

/// The name an anonymous client asked for, cleaned up: no control characters, at most
/// [`MAX_NAME`] characters, "anonymous" when empty.
fn anonymous_name(requested: Option<&str>) -> String {
    let name: String = requested
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let name: String = name.trim().chars().take(MAX_NAME).collect();
    if name.is_empty() {
        "anonymous".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let q = "name=Ann%20Lee&token=a.b.c&x=%zz&empty&plus=a+b&bad=%4";
        assert_eq!(query_param(q, "name").as_deref(), Some("Ann Lee"));
        assert_eq!(query_param(q, "token").as_deref(), Some("a.b.c"));
        assert_eq!(query_param(q, "x").as_deref(), Some("%zz"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "plus").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%4"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(
            query_param("n=%C3%A9%FF", "n").as_deref(),
            Some("é\u{fffd}")
        );
    }

    #[test]
    fn anonymous_names_are_cleaned() {
        assert_eq!(anonymous_name(None), "anonymous");
        assert_eq!(anonymous_name(Some("  \u{7}  ")), "anonymous");
        assert_eq!(anonymous_name(Some(" ann\n ")), "ann");
        assert_eq!(anonymous_name(Some(&"x".repeat(100))).len(), MAX_NAME);
    }

    fn history(epoch: &str, top: u64, offsets: &[u64]) -> History {
        History {
            position: StreamPosition {
                epoch: epoch.into(),
                offset: top,
            },
            publications: offsets
                .iter()
                .map(|&offset| {
                    Arc::new(Publication {
                        offset,
                        time: 0,
                        from: ClientInfo {
                            user: "u".into(),
                            conn: "c".into(),
                            authenticated: false,
                        },
                        data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
                    })
                })
                .collect(),
        }
    }

    fn since(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn recovery_needs_the_same_epoch_and_every_missed_offset() {
        assert_eq!(recover(&since("e", 5), &history("e", 5, &[])), Ok(()));
        assert_eq!(recover(&since("e", 3), &history("e", 5, &[4, 5])), Ok(()));
        let code = |r: Result<(), (RecoveryFailure, String)>| r.unwrap_err().0;
        assert_eq!(
            code(recover(&since("old", 3), &history("e", 5, &[4, 5]))),
            RecoveryFailure::EpochChanged
        );
        assert_eq!(
            code(recover(&since("e", 2), &history("e", 5, &[4, 5]))),
            RecoveryFailure::HistoryTruncated
        );
        assert_eq!(
            code(recover(&since("e", 2), &history("e", 5, &[]))),
            RecoveryFailure::HistoryTruncated
        );
        assert_eq!(
            code(recover(&since("e", 2), &history("e", 5, &[3, 4]))),
            RecoveryFailure::TooManyMissed
        );
        assert_eq!(
            code(recover(&since("e", 9), &history("e", 5, &[]))),
            RecoveryFailure::OffsetAhead
        );
    }
}
