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
//! channel holds it, so every node sends the same one. The sign-in and watchlist are in
//! `users.rs`, the cache channels' last event in `cache.rs`, client events in
//! `client_events.rs`.
//!
//! Liveness: the client pings when the server has been silent for the `activity_timeout`
//! announced, and is answered `pusher:pong`; a client silent as long is sent `pusher:ping`
//! and closed with 4201 when nothing comes back within [`PONG_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::Request;
use serde_json::value::RawValue;
use switchboard::{CloseCode, Message, Receiver, TokenBucket};
use tokio::time::Instant;

use super::fanout::Events;
use super::limits::{RateGuard, Verdict};
use super::mailbox::{Command, KickReason, Mail, Mailbox};
use super::outbox::Outbox;
use super::pusher_wire::{Roster, Tap, hub_channel};
use super::registry::Profile;
use super::session::{address, close_reason};
use super::shared::Shared;
use crate::broker::{BrokerError, ClientInfo};
use crate::protocol::{ErrorCode, RequestError};
use crate::pusher::PusherApp;
use crate::pusher::frames::{ClientFrame, PROTOCOL, PusherCode};
use crate::pusher::names::{self, ChannelKind, MAX_USER_ID};
use crate::pusher::replies;
use crate::pusher::signature::check_channel_auth;

mod cache;
mod client_events;
mod users;

/// How long a silent connection waits before a `pusher:ping`, announced in
/// `connection_established` (Pusher's 120 s).
pub(super) const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the answer to the server's `pusher:ping` may take (Pusher's 30 s).
pub(super) const PONG_TIMEOUT: Duration = Duration::from_secs(30);

/// Client events one connection may send a second (Pusher's limit).
const CLIENT_EVENTS_PER_SECOND: u32 = 10;

/// The oldest protocol version served: 5 to 7 share every frame this session knows.
const OLDEST_PROTOCOL: u32 = 5;

/// Serves the Pusher client of `request` (its path `/app/{key}`) until it leaves.
///
/// An idle connection's task is this future, so what is large and passing runs boxed: the
/// opening (which drops the request), each request's handling, each send from here, the end.
pub(super) async fn serve(
    hub: Arc<Shared>,
    sender: Outbox,
    mut receiver: Receiver,
    request: Box<Request<()>>,
) {
    let hub = &*hub;
    let Some(mut session) = Box::pin(open(hub, sender, request)).await else {
        return;
    };
    let mut timer = Box::pin(tokio::time::sleep_until(session.deadline()));
    let exit = loop {
        timer.as_mut().reset(session.deadline());
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
                        Box::pin(session.error(None, message)).await;
                    }
                    (Some(Ok(Message::Text(text))), Verdict::Allow) => Box::pin(session.handle(&text)).await,
                    (Some(Ok(Message::Binary(_))), Verdict::Allow) => {
                        let message = "binary frames are not part of the protocol";
                        Box::pin(session.error(None, message)).await;
                    }
                    (Some(Ok(Message::Close(_)) | Err(_)) | None, _) => break Exit::Left,
                    (Some(Ok(_)), _) => {}
                }
            }
            mail = session.mailbox.next() => match mail {
                Mail::Command(command) => {
                    if let Some(exit) = Box::pin(session.obey(command)).await {
                        break exit;
                    }
                }
                Mail::Kicked => break Exit::Kicked,
            },
            () = &mut timer => {
                if session.pinged.is_some() {
                    break Exit::PongTimeout;
                }
                session.pinged = Some(Instant::now());
                Box::pin(session.send(replies::ping())).await;
            }
        }
    };
    Box::pin(session.end(exit)).await;
}

/// Starts the session of the app `request`'s path names; `None` for an unknown app or an
/// unsupported protocol version, which the client has been told.
async fn open(hub: &Shared, sender: Outbox, request: Box<Request<()>>) -> Option<Session<'_>> {
    let key = request.uri().path().strip_prefix("/app/").unwrap_or("");
    let Some(app) = hub.config.pusher.by_key(key) else {
        let message = format!("App key {key} does not exist");
        refuse(&sender, PusherCode::AppNotFound, &message).await;
        return None;
    };
    if let Err((code, message)) = check_protocol(request.uri().query().unwrap_or("")) {
        refuse(&sender, code, &message).await;
        return None;
    }
    Some(Session::start(hub, sender, app, *request).await)
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
async fn refuse(sender: &Outbox, code: PusherCode, message: &str) {
    let _ = sender
        .send(Message::text(replies::error(Some(code), message)))
        .await;
    let _ = sender.close(CloseCode::from(code.code()), close_reason(message));
}

/// Why a session ends.
#[derive(Debug)]
enum Exit {
    /// The client closed, or its connection failed.
    Left,
    /// The hub kicked it (see [`Mailbox::kick`]).
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
    app: &'h PusherApp,
    /// The connection's key in the fan-out.
    id: u64,
    socket_id: String,
    /// Who it is to the hub: no user until a presence channel names one.
    info: ClientInfo,
    sender: Outbox,
    /// What the server side asks of this connection, and the fan-out's kick.
    mailbox: Arc<Mailbox>,
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
    async fn start(
        hub: &'h Shared,
        sender: Outbox,
        app: &'h PusherApp,
        request: Request<()>,
    ) -> Self {
        let (conn, socket_id) = hub.connection_ids();
        let profile = Profile {
            address: address(&request),
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
            mailbox: hub.registry.register(&info.conn, &info.user, profile),
            app,
            socket_id,
            info,
            sender,
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
            replies::connection_established(&session.socket_id, ACTIVITY_TIMEOUT.as_secs());
        session.send(established).await;
        session
    }

    /// Adds this connection to the fan-out of hub channel `channel`, pending, with Pusher's
    /// frames (and the channel's joins and leaves when `join_leave`), and has the node follow
    /// the channel; on failure the connection is taken out again.
    async fn follow(&self, channel: &str, join_leave: bool) -> Result<(), BrokerError> {
        let (hub, id) = (self.hub, self.id);
        let events = Events {
            join_leave,
            tap: Some(Tap::new(&self.socket_id)),
        };
        hub.fanout
            .add_pending(channel, id, &self.sender, &self.mailbox, events);
        let followed = hub.interest.attach(channel).await;
        if followed.is_err() {
            hub.fanout.remove(channel, id);
        }
        followed
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
            Exit::Kicked => Some(match self.mailbox.kick_reason() {
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
                let _ = self.sender.close(code, &reason);
                None
            }
        };
        self.hub.registry.deregister(&self.info.conn);
        self.mailbox.close();
        for (name, member) in std::mem::take(&mut self.channels) {
            self.leave(&name, member).await;
        }
        if let Some(user) = self.user.take() {
            let channel = hub_channel(&self.app.id, &names::server_to_user(&user));
            self.hub.fanout.remove(&channel, self.id);
            self.hub.interest.detach(&channel).await;
            let online = hub_channel(&self.app.id, &names::online_channel(&user));
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
            let error = Message::text(replies::error(Some(code), message));
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
        self.send(replies::error(code, message)).await;
    }

    async fn handle(&mut self, text: &str) {
        match ClientFrame::parse(text) {
            Err(e) => self.error(None, &e.to_string()).await,
            Ok(ClientFrame::Ping) => self.send(replies::pong()).await,
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
        if names::is_server_to_user(&name) {
            return self.subscribe_user_channel(&name).await;
        }
        if self.channels.contains_key(&name) {
            return;
        }
        let member = match self.authorize(&name, auth.as_deref(), channel_data.as_deref()) {
            Ok(member) => member,
            Err((kind, error, status)) => {
                tracing::debug!(conn = %self.info.conn, channel = %name, %error, "subscription refused");
                let refused = replies::subscription_error(&name, kind, &error, status);
                return self.send(refused).await;
            }
        };
        if self.channels.len() >= self.hub.config.max_subscriptions {
            self.hub.limits.subscription_limited();
            let error = format!(
                "a connection may subscribe to at most {} channels",
                self.hub.config.max_subscriptions
            );
            let refused = replies::subscription_error(&name, "LimitReached", &error, 429);
            return self.send(refused).await;
        }
        let channel = hub_channel(&self.app.id, &name);
        let (hub, id) = (self.hub, self.id);
        // Counted before the node's interest shows it, as `PusherHooks::occupancy` needs.
        let (hooks, app_id) = (&hub.pusher_hooks, self.app.id.as_str());
        hooks.occupancy(&*hub.broker, app_id, &name, true).await;
        if let Err(e) = self.follow(&channel, true).await {
            hooks.occupancy(&*hub.broker, app_id, &name, false).await;
            let refused = replies::subscription_error(&name, "Unavailable", &e.to_string(), 503);
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
                    let refused = replies::subscription_error(&name, "Unavailable", &error, 503);
                    return self.send(refused).await;
                }
            },
        };
        let members = roster.as_ref().map(Roster::members);
        let mut replies = vec![replies::subscription_succeeded(&name, members.as_ref())];
        // Every event held while subscribing is newer than the reply, but on a cache channel
        // those up to its last event, which stands for them.
        let mut covered = 0;
        if names::is_cache(&name) {
            match self.cached(&name, &channel).await {
                Ok(Some((offset, event))) => {
                    covered = offset;
                    replies.push(event);
                }
                Ok(None) => {
                    replies.push(replies::cache_miss(&name));
                    hub.pusher_hooks.cache_miss(&self.app.id, &name);
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "cache channel's history unread");
                    replies.push(replies::cache_miss(&name));
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
        if let Err(e) = check_channel_auth(self.app, auth, &self.socket_id, name, data) {
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
