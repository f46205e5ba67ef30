//! One Pusher connection's session, on `/app/{key}` (Pusher Channels protocol 7): the app
//! found by its key, `pusher:connection_established` with the socket id, then the client's
//! frames answered in order until it leaves.
//!
//! A Pusher channel is a hub channel (see `pusher_wire.rs`): subscribing goes through the
//! fan-out, the node's interest and the broker as a hub session's does, with a [`Tap`] that
//! makes the fan-out send Pusher's frames. Private and presence channels need the app's
//! signature of `SOCKET_ID:CHANNEL` (and `:CHANNEL_DATA` for presence); a presence member is
//! the hub's presence of the connection, with the `user_id` and `user_info` the app signed.
//!
//! The socket id is `NODE.N`, the node's number and the connection's count, the same two
//! that make its hub connection id: unique across nodes, as Pusher's are.
//!
//! A sign-in (`pusher:signin`, the app's signature of `SOCKET_ID::user::USER_DATA`) makes the
//! connection its user's: it is subscribed to the user's `#server-to-user-ID` channel, which
//! `sendToUser` triggers to, and is that user's for `terminate_connections`. It is in the
//! presence of the user's online channel, and on the online channels of the users its
//! watchlist names, so that it is told when they come online and go offline (the fan-out's
//! [`Roster`] counts their connections, as on a presence channel). A cache channel's
//! new subscriber is sent the channel's last event from the app (within Pusher's 30 minutes)
//! right after `subscription_succeeded`, or `pusher:cache_miss`: the hub's history of the
//! channel holds it, so every node sends the same one.
//!
//! Liveness: the client pings when the server has been silent for the `activity_timeout`
//! announced, and is answered `pusher:pong`; a client silent as long is sent `pusher:ping`
//! and closed with 4201 when nothing comes back within [`PONG_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Request;
use serde_json::value::RawValue;
use switchboard::{CloseCode, Message, Receiver, Sender, TokenBucket};
use tokio::time::Instant;

use super::fanout::Events;
use super::kick::{Kick, KickReason};
use super::limits::{RateGuard, Verdict};
use super::pusher_wire::{Envelope, Roster, Tap, event_text, from_the_app, hub_channel};
use super::registry::{Command, Profile};
use super::session::{address, close_reason};
use super::shared::Shared;
use crate::broker::{BrokerError, ClientInfo, HistoryRange};
use crate::protocol::{ErrorCode, RequestError};
use crate::pusher::PusherApp;
use crate::pusher::frames::{
    self, ChannelKind, ClientFrame, MAX_EVENT_DATA, MAX_USER_ID, MAX_WATCHLIST, PROTOCOL,
    PusherCode,
};
use crate::pusher::signature::{check_channel_auth, check_user_auth};

/// How long a silent connection waits before a `pusher:ping`, announced in
/// `connection_established` (Pusher's 120 s).
pub(super) const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the answer to the server's `pusher:ping` may take (Pusher's 30 s).
pub(super) const PONG_TIMEOUT: Duration = Duration::from_secs(30);

/// Client events one connection may send a second (Pusher's limit).
const CLIENT_EVENTS_PER_SECOND: u32 = 10;

/// How long a cache channel's last event is sent to new subscribers (Pusher's "up to 30
/// minutes").
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// The oldest protocol version served: 5 to 7 share every frame this session knows.
const OLDEST_PROTOCOL: u32 = 5;

/// Serves the Pusher client of `request` (its path `/app/{key}`) until it leaves.
pub(super) async fn serve(
    hub: &Shared,
    sender: Sender,
    mut receiver: Receiver,
    request: &Request<()>,
) {
    let key = request.uri().path().strip_prefix("/app/").unwrap_or("");
    let Some(app) = hub.config.pusher.by_key(key) else {
        let message = format!("App key {key} does not exist");
        return refuse(&sender, PusherCode::AppNotFound, &message).await;
    };
    if let Err((code, message)) = check_protocol(request.uri().query().unwrap_or("")) {
        return refuse(&sender, code, &message).await;
    }
    let mut session = Session::start(hub, sender, app.clone(), request).await;
    let exit = loop {
        let deadline = session.deadline();
        tokio::select! {
            message = receiver.recv() => {
                session.heard();
                let verdict = match &message {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => session.check_rate(),
                    _ => Verdict::Allow,
                };
                match (message, verdict) {
                    (_, Verdict::Close) => break Exit::OverRate,
                    (_, Verdict::Refuse) => {
                        hub.limits.rate_limited();
                        let message = "too many messages a second; this one was dropped";
                        session.error(None, message).await;
                    }
                    (Some(Ok(Message::Text(text))), Verdict::Allow) => session.handle(&text).await,
                    (Some(Ok(Message::Binary(_))), Verdict::Allow) => {
                        session.error(None, "binary frames are not part of the protocol").await;
                    }
                    (Some(Ok(Message::Close(_)) | Err(_)) | None, _) => break Exit::Left,
                    (Some(Ok(_)), _) => {}
                }
            }
            Some(command) = session.commands.recv() => {
                if let Some(exit) = session.obey(command).await {
                    break exit;
                }
            }
            () = session.kick.kicked() => break Exit::Kicked,
            () = tokio::time::sleep_until(deadline) => {
                if session.pinged.is_some() {
                    break Exit::PongTimeout;
                }
                session.pinged = Some(Instant::now());
                session.send(frames::ping()).await;
            }
        }
    };
    session.end(exit).await;
}

/// Checks the `protocol` query parameter pusher-js and the other clients send.
fn check_protocol(query: &str) -> Result<(), (PusherCode, String)> {
    let version = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "protocol")
        .map(|(_, value)| value);
    let Some(version) = version else {
        return Err((PusherCode::NoVersion, "No protocol version supplied".into()));
    };
    match version.parse::<u32>() {
        Ok(v) if (OLDEST_PROTOCOL..=PROTOCOL).contains(&v) => Ok(()),
        Ok(v) => Err((
            PusherCode::UnsupportedVersion,
            format!("Unsupported protocol version {v}"),
        )),
        Err(_) => Err((
            PusherCode::InvalidVersion,
            format!("Invalid protocol version {version:?}"),
        )),
    }
}

/// Sends a `pusher:error` with `code` and closes with it, as Pusher ends a connection.
async fn refuse(sender: &Sender, code: PusherCode, message: &str) {
    let _ = sender
        .send(Message::text(frames::error(Some(code), message)))
        .await;
    let _ = sender.close(CloseCode::from(code.code()), close_reason(message));
}

/// Why a session ends.
#[derive(Debug)]
enum Exit {
    /// The client closed, or its connection failed.
    Left,
    /// The hub kicked it (see [`Kick`]).
    Kicked,
    /// The server side disconnected it, with this code and reason.
    Disconnected(CloseCode, String),
    /// It did not answer the server's `pusher:ping`.
    PongTimeout,
    /// It went on sending over the hub's message rate.
    OverRate,
}

/// One Pusher connection's state, owned by its task.
struct Session<'h> {
    hub: &'h Shared,
    app: PusherApp,
    /// The connection's key in the fan-out.
    id: u64,
    socket_id: String,
    /// Who it is to the hub: no user until a presence channel names one.
    info: ClientInfo,
    sender: Sender,
    kick: Arc<Kick>,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    /// Whether a presence member or a sign-in has named its user in the registry (see
    /// [`hub_user`](crate::pusher::hub_user)).
    named: bool,
    /// The user it signed in as, whose server-to-user channel it is on.
    user: Option<String>,
    /// The online channels of the users its watchlist names (hub channels).
    watching: Vec<String>,
    /// Its channels by Pusher name; a presence channel's with the member it joined as.
    channels: HashMap<String, Option<ClientInfo>>,
    client_events: TokenBucket,
    /// The hub's message rate limit, when it has one.
    rate: Option<RateGuard>,
    /// When the client was last heard from.
    heard: Instant,
    /// When the server's `pusher:ping` went unanswered so far.
    pinged: Option<Instant>,
}

impl<'h> Session<'h> {
    /// Counts the connection and tells the client its socket id.
    async fn start(hub: &'h Shared, sender: Sender, app: PusherApp, request: &Request<()>) -> Self {
        let (conn, socket_id) = hub.connection_ids();
        let profile = Profile {
            address: address(request),
            user_agent: request
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|agent| agent.to_str().ok())
                .map(|agent| agent.chars().take(256).collect()),
            compression: false,
            since: SystemTime::now(),
            sender: sender.clone(),
        };
        let info = ClientInfo {
            user: "anonymous".to_owned(),
            conn,
            authenticated: false,
            info: None,
        };
        let session = Self {
            hub,
            id: sender.id(),
            commands: hub.registry.register(&info.conn, &info.user, profile),
            app,
            socket_id,
            info,
            sender,
            kick: Arc::new(Kick::default()),
            named: false,
            user: None,
            watching: Vec::new(),
            channels: HashMap::new(),
            client_events: TokenBucket::new(
                f64::from(CLIENT_EVENTS_PER_SECOND),
                CLIENT_EVENTS_PER_SECOND,
            ),
            rate: hub.config.message_rate.map(RateGuard::new),
            heard: Instant::now(),
            pinged: None,
        };
        hub.connections.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn = %session.info.conn, socket_id = %session.socket_id, app = %session.app.id, "Pusher client connected");
        let established =
            frames::connection_established(&session.socket_id, ACTIVITY_TIMEOUT.as_secs());
        session.send(established).await;
        session
    }

    /// When the connection is next due a ping, or its end for not answering one.
    fn deadline(&self) -> Instant {
        match self.pinged {
            Some(pinged) => pinged + PONG_TIMEOUT,
            None => self.heard + ACTIVITY_TIMEOUT,
        }
    }

    fn check_rate(&mut self) -> Verdict {
        self.rate.as_mut().map_or(Verdict::Allow, RateGuard::check)
    }

    fn heard(&mut self) {
        self.heard = Instant::now();
        self.pinged = None;
    }

    /// Leaves every channel and uncounts the connection, telling the client why when the
    /// hub ends it.
    async fn end(mut self, exit: Exit) {
        let close = match exit {
            Exit::Left => None,
            Exit::Kicked => Some(match self.kick.reason() {
                Some(KickReason::StreamLost) => (PusherCode::ReconnectNow, "Reconnect now"),
                Some(KickReason::Lagging) | None => (
                    PusherCode::OverCapacity,
                    "Over capacity: the client reads too slowly",
                ),
            }),
            Exit::PongTimeout => Some((PusherCode::PongTimeout, "Pong reply not received")),
            // Come back after a while, as over capacity: Pusher has no code of its own for it.
            Exit::OverRate => {
                self.hub.limits.rate_limit_closed();
                Some((PusherCode::OverCapacity, "message rate exceeded"))
            }
            Exit::Disconnected(code, reason) => {
                let _ = self.sender.close(code, reason);
                None
            }
        };
        self.hub.registry.deregister(&self.info.conn);
        for (name, member) in std::mem::take(&mut self.channels) {
            self.leave(&name, member).await;
        }
        if let Some(user) = self.user.take() {
            let channel = hub_channel(&self.app.id, &frames::server_to_user(&user));
            self.hub.fanout.remove(&channel, self.id);
            self.hub.interest.detach(&channel).await;
            let online = hub_channel(&self.app.id, &frames::online_channel(&user));
            if let Err(e) = self
                .hub
                .broker
                .leave(&online, self.online_member(&user))
                .await
            {
                tracing::warn!(channel = %online, error = %e, "presence leave failed");
            }
        }
        for channel in std::mem::take(&mut self.watching) {
            self.hub.fanout.remove(&channel, self.id);
            self.hub.interest.detach(&channel).await;
        }
        self.hub.connections.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(conn = %self.info.conn, "Pusher client gone");
        if let Some((code, message)) = close {
            // Past a full queue: a laggard is told too.
            let error = Message::text(frames::error(Some(code), message));
            let _ = self
                .sender
                .close_with(error, CloseCode::from(code.code()), message);
        }
    }

    /// Does what the server side asks; `Some` when the connection must end.
    async fn obey(&mut self, command: Command) -> Option<Exit> {
        match command {
            Command::Subscribe { done, .. } => {
                let reason = "a Pusher connection subscribes itself";
                let _ = done.send(Err(RequestError::new(None, ErrorCode::Unsupported, reason)));
            }
            Command::Unsubscribe { channel, done } => {
                let name = super::pusher_wire::pusher_name(&channel).map(str::to_owned);
                let member = name.as_ref().and_then(|name| self.channels.remove(name));
                if let (Some(name), Some(member)) = (&name, &member) {
                    self.leave(name, member.clone()).await;
                }
                let _ = done.send(member.is_some());
            }
            Command::Disconnect { code, reason } => return Some(Exit::Disconnected(code, reason)),
            Command::Subscriptions { done } => {
                let mut channels: Vec<String> = (self.channels.keys())
                    .map(|name| hub_channel(&self.app.id, name))
                    .collect();
                channels.sort();
                let _ = done.send(channels);
            }
        }
        None
    }

    async fn send(&self, text: String) {
        // A closed connection ends the loop on the next receive.
        let _ = self.sender.send(Message::text(text)).await;
    }

    async fn error(&self, code: Option<PusherCode>, message: &str) {
        tracing::debug!(conn = %self.info.conn, message, "Pusher frame refused");
        self.send(frames::error(code, message)).await;
    }

    async fn handle(&mut self, text: &str) {
        match ClientFrame::parse(text) {
            Err(e) => self.error(None, &e.to_string()).await,
            Ok(ClientFrame::Ping) => self.send(frames::pong()).await,
            Ok(ClientFrame::Pong) => {}
            Ok(ClientFrame::Subscribe {
                channel,
                auth,
                channel_data,
            }) => self.subscribe(channel, auth, channel_data).await,
            Ok(ClientFrame::Unsubscribe { channel }) => {
                if let Some(member) = self.channels.remove(&channel) {
                    self.leave(&channel, member).await;
                }
            }
            Ok(ClientFrame::Signin { auth, user_data }) => self.signin(&auth, &user_data).await,
            Ok(ClientFrame::ClientEvent {
                event,
                channel,
                data,
            }) => self.client_event(&event, &channel, &data).await,
        }
    }

    /// Subscribes to Pusher channel `name`: its auth checked, then `subscription_succeeded`
    /// (with the members of a presence channel) and the channel's events.
    async fn subscribe(
        &mut self,
        name: String,
        auth: Option<String>,
        channel_data: Option<String>,
    ) {
        if frames::is_server_to_user(&name) {
            return self.subscribe_user_channel(&name).await;
        }
        if self.channels.contains_key(&name) {
            return;
        }
        let member = match self.authorize(&name, auth.as_deref(), channel_data.as_deref()) {
            Ok(member) => member,
            Err((kind, error, status)) => {
                tracing::debug!(conn = %self.info.conn, channel = %name, %error, "subscription refused");
                let refused = frames::subscription_error(&name, kind, &error, status);
                return self.send(refused).await;
            }
        };
        if self.channels.len() >= self.hub.config.max_subscriptions {
            self.hub.limits.subscription_limited();
            let error = format!(
                "a connection may subscribe to at most {} channels",
                self.hub.config.max_subscriptions
            );
            let refused = frames::subscription_error(&name, "LimitReached", &error, 429);
            return self.send(refused).await;
        }
        let channel = hub_channel(&self.app.id, &name);
        let (hub, id) = (self.hub, self.id);
        // Counted before the node's interest shows it, as `PusherHooks::occupancy` needs.
        let (hooks, app_id) = (&hub.pusher_hooks, self.app.id.as_str());
        hooks.occupancy(&*hub.broker, app_id, &name, true).await;
        let tap = Tap::new(&self.socket_id);
        hub.fanout.add_pending(
            &channel,
            id,
            &self.sender,
            &self.kick,
            Events {
                join_leave: true,
                tap: Some(tap),
            },
        );
        if let Err(e) = hub.interest.attach(&channel).await {
            hub.fanout.remove(&channel, id);
            hooks.occupancy(&*hub.broker, app_id, &name, false).await;
            let refused = frames::subscription_error(&name, "Unavailable", &e.to_string(), 503);
            return self.send(refused).await;
        }
        let roster = match &member {
            None => None,
            Some(me) => match hub.broker.presence(&channel).await {
                Ok(clients) => {
                    let mut roster = Roster::of(&clients);
                    roster.join(me);
                    Some(roster)
                }
                Err(e) => {
                    hub.fanout.remove(&channel, id);
                    hub.interest.detach(&channel).await;
                    hooks.occupancy(&*hub.broker, app_id, &name, false).await;
                    let error = e.to_string();
                    let refused = frames::subscription_error(&name, "Unavailable", &error, 503);
                    return self.send(refused).await;
                }
            },
        };
        let members = roster.as_ref().map(Roster::members);
        let mut replies = vec![frames::subscription_succeeded(&name, members.as_ref())];
        // Every event held while subscribing is newer than the reply, but on a cache channel
        // those up to its last event, which stands for them.
        let mut covered = 0;
        if frames::is_cache(&name) {
            match self.cached(&name, &channel).await {
                Ok(Some((offset, event))) => {
                    covered = offset;
                    replies.push(event);
                }
                Ok(None) => {
                    replies.push(frames::cache_miss(&name));
                    hub.pusher_hooks.cache_miss(&self.app.id, &name);
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "cache channel's history unread");
                    replies.push(frames::cache_miss(&name));
                }
            }
        }
        self.channels.insert(name.clone(), member.clone());
        hub.fanout.activate(&channel, id, replies, covered, roster);
        if let Some(me) = &member
            && !self.named
        {
            // Its first presence member names the connection's user for the server side.
            self.named = true;
            let user = crate::pusher::hub_user(&self.app.id, &me.user);
            hub.registry.rename(&self.info.conn, &user);
        }
        if let Some(me) = member {
            let user = me.user.clone();
            // Its user's first connection on the channel, on any node: `member_added`.
            match hub.broker.join_user(&channel, me).await {
                Ok(true) => hub.pusher_hooks.member(&self.app.id, &name, &user, true),
                Ok(false) => {}
                Err(e) => tracing::warn!(%channel, error = %e, "presence join failed"),
            }
        }
    }

    /// The text and offset of the last event the app published to cache channel `name` (hub
    /// channel `channel`) within [`CACHE_TTL`], from the channel's history; client events
    /// are passed over, as Pusher does not cache them.
    async fn cached(
        &self,
        name: &str,
        channel: &str,
    ) -> Result<Option<(u64, String)>, BrokerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let ttl = CACHE_TTL.as_millis();
        // The newest publication is the app's but after client events: then up to
        // `max_replay` are read to find it.
        let mut limit = 1;
        loop {
            let range = HistoryRange::Latest(limit);
            let history = self.hub.broker.history(channel, range).await?;
            for publication in history.publications.iter().rev() {
                if now.saturating_sub(u128::from(publication.time)) > ttl {
                    return Ok(None);
                }
                if from_the_app(publication) {
                    let text = event_text(name, publication);
                    return Ok(text.map(|text| (publication.offset, text)));
                }
            }
            let max = self.hub.config.max_replay;
            if history.publications.len() < limit || limit >= max {
                return Ok(None);
            }
            limit = max;
        }
    }

    /// Signs the connection in as the user `user_data` names, when the app signed it: the
    /// user's server-to-user channel subscribed, `signin_success`, and the connection its
    /// user's for the server side. A refusal is `pusher:error` 4009, and the connection stays.
    async fn signin(&mut self, auth: &str, user_data: &str) {
        let refused = PusherCode::Unauthorized;
        if let Err(e) = check_user_auth(&self.app, auth, &self.socket_id, user_data) {
            return self
                .error(Some(refused), &format!("Invalid signature: {e}"))
                .await;
        }
        let Some(signed_in) = frames::signed_in_user(user_data) else {
            let message = format!(
                "user_data must be JSON with an id, a string of 1 to {MAX_USER_ID} bytes, and \
                 an optional watchlist of at most {MAX_WATCHLIST} such ids"
            );
            return self.error(Some(refused), &message).await;
        };
        let user = signed_in.id;
        if let Some(current) = &self.user {
            if *current == user {
                return self.send(frames::signin_success(user_data)).await;
            }
            let message = format!("already signed in as {current}");
            return self.error(Some(refused), &message).await;
        }
        let (hub, id) = (self.hub, self.id);
        let channel = hub_channel(&self.app.id, &frames::server_to_user(&user));
        let events = Events {
            join_leave: false,
            tap: Some(Tap::new(&self.socket_id)),
        };
        hub.fanout
            .add_pending(&channel, id, &self.sender, &self.kick, events);
        if let Err(e) = hub.interest.attach(&channel).await {
            hub.fanout.remove(&channel, id);
            return self.error(None, &format!("sign-in failed: {e}")).await;
        }
        let succeeded = vec![frames::signin_success(user_data)];
        hub.fanout.activate(&channel, id, succeeded, 0, None);
        // A sign-in names the connection's user over a presence member's.
        self.named = true;
        let hub_user = crate::pusher::hub_user(&self.app.id, &user);
        hub.registry.rename(&self.info.conn, &hub_user);
        let online = hub_channel(&self.app.id, &frames::online_channel(&user));
        if let Err(e) = hub.broker.join(&online, self.online_member(&user)).await {
            tracing::warn!(channel = %online, error = %e, "presence join failed");
        }
        self.user = Some(user);
        self.watch(&signed_in.watchlist).await;
    }

    /// This connection in its user's online channel.
    fn online_member(&self, user: &str) -> ClientInfo {
        ClientInfo {
            user: user.to_owned(),
            conn: self.info.conn.clone(),
            authenticated: true,
            info: None,
        }
    }

    /// Subscribes to the online channels of `users`: a first `watchlist_events` with those
    /// online and those offline, read from the channels' presence, then each change.
    async fn watch(&mut self, users: &[String]) {
        let (hub, id) = (self.hub, self.id);
        let mut watched = Vec::with_capacity(users.len());
        for user in users {
            let channel = hub_channel(&self.app.id, &frames::online_channel(user));
            let events = Events {
                join_leave: true,
                tap: Some(Tap::new(&self.socket_id)),
            };
            hub.fanout
                .add_pending(&channel, id, &self.sender, &self.kick, events);
            if let Err(e) = hub.interest.attach(&channel).await {
                hub.fanout.remove(&channel, id);
                tracing::warn!(%channel, error = %e, "watchlist channel unavailable");
                continue;
            }
            let roster = match hub.broker.presence(&channel).await {
                Ok(clients) => Roster::of(&clients),
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "watchlist presence unread");
                    Roster::default()
                }
            };
            let online = !roster.members().members.is_empty();
            self.watching.push(channel.clone());
            watched.push((channel, user.as_str(), online, roster));
        }
        let of = |online: bool| -> Vec<&str> {
            let users = watched.iter().filter(|w| w.2 == online);
            users.map(|w| w.1).collect()
        };
        let first = frames::watchlist_events(&of(true), &of(false));
        // The first state goes out ahead of every change held meanwhile.
        let mut replies = vec![first];
        for (channel, _, _, roster) in watched {
            hub.fanout
                .activate(&channel, id, std::mem::take(&mut replies), 0, Some(roster));
        }
    }

    /// Answers a subscribe to a server-to-user channel, as pusher-js sends after its sign-in:
    /// the connection is on its own user's since the sign-in, and never on another's.
    async fn subscribe_user_channel(&self, name: &str) {
        let own = self.user.as_deref().map(frames::server_to_user);
        let reply = if own.as_deref() == Some(name) {
            frames::subscription_succeeded(name, None)
        } else {
            let error = "a server-to-user channel is its signed-in user's only";
            frames::subscription_error(name, "AuthError", error, 403)
        };
        self.send(reply).await;
    }

    /// Checks the auth a private or presence channel needs; for a presence channel, the
    /// member it signs. `Err` is a `subscription_error`'s type, error and status.
    fn authorize(
        &self,
        name: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Result<Option<ClientInfo>, (&'static str, String, u16)> {
        let kind = ChannelKind::of(name);
        if !kind.needs_auth() {
            return Ok(None);
        }
        let auth = auth.filter(|auth| !auth.is_empty());
        let Some(auth) = auth else {
            let error = format!("{name} needs an auth signed by the app");
            return Err(("AuthError", error, 401));
        };
        let data = channel_data.filter(|_| kind == ChannelKind::Presence);
        if let Err(e) = check_channel_auth(&self.app, auth, &self.socket_id, name, data) {
            let error = format!("Invalid signature: {e}");
            return Err(("AuthError", error, 401));
        }
        if kind != ChannelKind::Presence {
            return Ok(None);
        }
        let member = data.and_then(|data| self.member(data));
        match member {
            Some(member) => Ok(Some(member)),
            None => {
                let error =
                    format!("channel_data must be JSON with a user_id of 1 to {MAX_USER_ID} bytes");
                Err(("AuthError", error, 400))
            }
        }
    }

    /// The presence member that signed `channel_data` names: `user_id` (a string, or a
    /// number some server libraries send) and `user_info`.
    fn member(&self, channel_data: &str) -> Option<ClientInfo> {
        #[derive(serde::Deserialize)]
        struct ChannelData {
            user_id: serde_json::Value,
            #[serde(default)]
            user_info: Option<Box<RawValue>>,
        }
        let data: ChannelData = serde_json::from_str(channel_data).ok()?;
        let user = match data.user_id {
            serde_json::Value::String(id) => id,
            serde_json::Value::Number(id) => id.to_string(),
            _ => return None,
        };
        if user.is_empty() || user.len() > MAX_USER_ID {
            return None;
        }
        Some(ClientInfo {
            user,
            conn: self.info.conn.clone(),
            authenticated: true,
            info: data.user_info.filter(|info| info.get() != "null"),
        })
    }

    /// Leaves Pusher channel `name`: no more events, out of presence, and the node's
    /// interest dropped.
    async fn leave(&self, name: &str, member: Option<ClientInfo>) {
        let channel = hub_channel(&self.app.id, name);
        self.hub.fanout.remove(&channel, self.id);
        if let Some(member) = member {
            let user = member.user.clone();
            let hooks = &self.hub.pusher_hooks;
            match self.hub.broker.leave_user(&channel, member).await {
                Ok(true) => hooks.member(&self.app.id, name, &user, false),
                Ok(false) => {}
                Err(e) => tracing::warn!(%channel, error = %e, "presence leave failed"),
            }
        }
        // After the detach, as `PusherHooks::occupancy` needs.
        self.hub.interest.detach(&channel).await;
        let hooks = &self.hub.pusher_hooks;
        hooks
            .occupancy(&*self.hub.broker, &self.app.id, name, false)
            .await;
    }

    /// Publishes a client event to the channel's other subscribers, when the app allows them
    /// and the channel takes them.
    async fn client_event(&mut self, event: &str, name: &str, data: &RawValue) {
        if !self.app.client_events {
            let message = "client events are not enabled for this app";
            return self.error(None, message).await;
        }
        if !ChannelKind::of(name).takes_client_events() {
            let message = "client events are only for private and presence channels";
            return self.error(None, message).await;
        }
        let Some(member) = self.channels.get(name) else {
            let message = format!("client event on {name}, which this connection is not on");
            return self.error(None, &message).await;
        };
        let member = member.clone();
        if !self.client_events.try_take() {
            let message = format!(
                "Client event rejected - only {CLIENT_EVENTS_PER_SECOND} per second allowed"
            );
            return self
                .error(Some(PusherCode::ClientEventRateLimit), &message)
                .await;
        }
        let limit = MAX_EVENT_DATA.min(self.hub.config.max_data_size);
        let size = data.get().len();
        if size > limit {
            let message =
                format!("Payload too large: client event data is {size} bytes, limit is {limit}");
            return self.error(None, &message).await;
        }
        let envelope = Envelope {
            event: event.into(),
            data,
            socket_id: Some(self.socket_id.as_str().into()),
            user_id: member.as_ref().map(|m| m.user.as_str().into()),
        };
        let envelope_data = envelope.to_raw();
        let channel = hub_channel(&self.app.id, name);
        let user_id = member.as_ref().map(|m| m.user.clone());
        let from = member.unwrap_or_else(|| self.info.clone());
        let published = self.hub.broker.publish(&channel, from, envelope_data).await;
        match published {
            Ok(_) => self.hub.pusher_hooks.client_event(
                &self.app.id,
                name,
                event,
                data,
                &self.socket_id,
                user_id.as_deref(),
            ),
            Err(e) => {
                self.error(None, &format!("client event not sent: {e}"))
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_version_is_checked_as_pusher_does() {
        assert!(check_protocol("client=js&version=8.4.0&protocol=7").is_ok());
        assert!(check_protocol("protocol=5").is_ok());
        let code = |query| check_protocol(query).unwrap_err().0;
        assert_eq!(code("client=js"), PusherCode::NoVersion);
        assert_eq!(code("protocol=8"), PusherCode::UnsupportedVersion);
        assert_eq!(code("protocol=4"), PusherCode::UnsupportedVersion);
        assert_eq!(code("protocol=seven"), PusherCode::InvalidVersion);
    }
}
