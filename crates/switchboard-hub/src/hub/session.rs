//! One connection's session: who the client is, its requests answered in order, and the end
//! of its subscriptions however it leaves.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::Request;
use serde_json::value::RawValue;
use switchboard::{ClientAddr, CloseCode, Message, PeerAddr, Receiver};
use tokio::time::{Instant, Sleep};

use super::heartbeat;
use super::identity::Identity;
use super::limits::{RateGuard, Verdict, retry_hint};
use super::mailbox::{Command, Mail, Mailbox};
use super::outbox::Outbox;
use super::registry::Profile;
use super::server_api::DEFAULT_HISTORY_LIMIT;
use super::shared::Shared;
use crate::broker::{BrokerError, ClientInfo, HistoryRange};
use crate::hooks::{ConnectDecision, ConnectRequest, Connection};
use crate::protocol::{
    ErrorCode, Reply, Request as Op, RequestError, RequestId, parse_request, request_id,
};
use crate::rules::Access;

mod channels;
mod on_loop;
mod publish;
mod subscriptions;

pub(super) use self::on_loop::HubHandler;
use self::publish::{Queue, answered};
use self::subscriptions::Subscriptions;

/// How widely the clients the hub closes of its own accord spread their return.
const KICK_SPREAD: Duration = Duration::from_secs(1);

/// Room around `data` for the rest of a publish request, before the size check parses it.
const ENVELOPE: usize = 4096;

/// Serves the client of `request` until it leaves; `compression` says whether
/// permessage-deflate was agreed.
///
/// An idle connection's task is this future, so what is large and passing lives in boxes
/// made while it runs: the opening (the request, the connect hook, the first joins), each
/// request's handling, and the end. The request is dropped once the session has started.
pub(super) async fn serve(
    hub: Arc<Shared>,
    sender: Outbox,
    mut receiver: Receiver,
    request: Box<Request<()>>,
    compression: bool,
) {
    let hub = &*hub;
    let Some((mut session, expiry)) = Box::pin(open(hub, sender, request, compression)).await
    else {
        return;
    };
    let mut expiry = expiry.map(|at| Box::pin(tokio::time::sleep_until(at)));
    // Requests are answered until the client leaves, the hub kicks it or its token expires.
    let exit = loop {
        tokio::select! {
            message = receiver.recv() => match message {
                Some(Ok(message)) => {
                    if let Some(exit) = session.hear(message).await {
                        break exit;
                    }
                }
                Some(Err(_)) | None => break Exit::Left,
            },
            mail = session.mailbox.next() => {
                if let Some(exit) = session.read(mail).await {
                    break exit;
                }
            }
            reply = answered(session.in_flight.get()), if !session.in_flight.get().is_empty() => {
                if let Some(reply) = reply {
                    Box::pin(session.send(reply)).await;
                }
            }
            () = expired(&mut expiry) => break Exit::Expired,
        }
    };
    Box::pin(session.end(exit)).await;
}

/// Says who the client of `request` is and starts its session, with the connect hook's
/// channels joined, and when its token expires; `None` for a client the hub will not serve,
/// which has been told why.
async fn open(
    hub: &Shared,
    sender: Outbox,
    request: Box<Request<()>>,
    compression: bool,
) -> Option<(Session<'_>, Option<Instant>)> {
    let query = request.uri().query().unwrap_or("");
    let mut granted = None;
    if let Some(hooks) = &hub.config.hooks {
        let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
        let connect = ConnectRequest::new(request.headers().clone(), query, peer);
        match hooks.connect(&connect).await {
            ConnectDecision::Pass => {}
            ConnectDecision::Allow(connection) => granted = Some(connection),
            ConnectDecision::Refuse(refusal) => {
                let code = Some(CloseCode::from(refusal.code))
                    .filter(|code| code.is_allowed_on_wire())
                    .unwrap_or(CloseCode::POLICY_VIOLATION);
                refuse_with(&sender, code, &refusal.reason).await;
                return None;
            }
        }
    }
    let (identity, info, channels) = match granted {
        Some(Connection {
            user,
            info,
            channels,
            ..
        }) => {
            let identity = Identity {
                user,
                authenticated: true,
                expires_in: None,
            };
            (identity, info, channels)
        }
        None => match Identity::of(query, hub.config.jwt.as_ref(), SystemTime::now()) {
            Ok(identity) => (identity, None, Vec::new()),
            Err(reason) => {
                refuse(&sender, &reason).await;
                return None;
            }
        },
    };
    let expiry = identity.expires_in.map(|d| Instant::now() + d);
    let profile = Profile {
        address: address(&request),
        user_agent: request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(|agent| agent.chars().take(256).collect()),
        compression,
        since: SystemTime::now(),
        sender: sender.clone(),
    };
    drop(request);
    let mut session = Session::start(hub, sender, identity, info, profile).await;
    for channel in channels {
        // The connect hook's channels are the application's own choice: no rules, no hook.
        if let Err(e) = session.join(None, channel, None, true).await {
            session.send(String::from(&e)).await;
        }
    }
    Some((session, expiry))
}

/// The client's address: the one trusted proxies forwarded, else the peer's.
pub(super) fn address(request: &Request<()>) -> Option<String> {
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    match (request.extensions().get::<ClientAddr>(), peer) {
        (Some(client), Some(peer)) if client.0 != peer.ip() => Some(client.0.to_string()),
        (_, Some(peer)) => Some(peer.to_string()),
        (Some(client), None) => Some(client.0.to_string()),
        (None, None) => None,
    }
}

/// Sends an `unauthorized` error and closes with 1008: for a client the hub will not serve.
async fn refuse(sender: &Outbox, reason: &str) {
    let code = ErrorCode::Unauthorized;
    let e = RequestError::new(None, code, reason);
    let _ = sender.send(Message::text(String::from(&e))).await;
    let _ = sender.close(CloseCode::POLICY_VIOLATION, code.as_str());
}

/// Sends an `unauthorized` error with `reason` and closes with `code` and `reason`: for a
/// client the connect hook refused.
async fn refuse_with(sender: &Outbox, code: CloseCode, reason: &str) {
    let e = RequestError::new(None, ErrorCode::Unauthorized, reason);
    let _ = sender.send(Message::text(String::from(&e))).await;
    let _ = sender.close(code, close_reason(reason));
}

/// The longest prefix of `reason` a close frame carries (123 bytes), cut at a character.
pub(super) fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Why a session ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Exit {
    /// The client closed, or its connection failed.
    Left,
    /// The hub kicked it (see [`Mailbox::kick`]).
    Kicked,
    /// Its token expired.
    Expired,
    /// The server side disconnected it, with this code and reason.
    Disconnected(CloseCode, String),
    /// It went on sending over its message rate.
    OverRate,
}

/// One connection's state, owned by its task (or, on an event loop, by the task that runs it
/// while there is work, and parked between).
struct Session<'h> {
    hub: &'h Shared,
    /// The connection's key in the fan-out.
    id: u64,
    info: ClientInfo,
    sender: Outbox,
    /// What the server side asks of this connection, and the fan-out's kick.
    mailbox: Arc<Mailbox>,
    subscriptions: Subscriptions,
    /// Publishes handed to the broker, oldest first. The broker keeps the order they were
    /// handed over in, and they are answered in that order too, before any later reply.
    in_flight: Queue<'h>,
    /// The message rate limit, when the hub has one (boxed: most have none).
    rate: Option<Box<RateGuard>>,
}

/// A [`Session`] between events, with no publish in flight: what a connection on an event
/// loop keeps while its client is idle.
#[derive(Debug)]
struct Parked {
    id: u64,
    info: ClientInfo,
    sender: Outbox,
    mailbox: Arc<Mailbox>,
    subscriptions: Subscriptions,
    rate: Option<Box<RateGuard>>,
}

impl<'h> Session<'h> {
    /// Counts the connection and tells the client who it is.
    async fn start(
        hub: &'h Shared,
        sender: Outbox,
        identity: Identity,
        info: Option<Box<RawValue>>,
        profile: Profile,
    ) -> Self {
        let info = ClientInfo {
            user: identity.user,
            conn: hub.connection_id(),
            authenticated: identity.authenticated,
            info,
        };
        let session = Self {
            hub,
            id: sender.id(),
            mailbox: hub.registry.register(&info.conn, &info.user, profile),
            info,
            sender,
            subscriptions: Subscriptions::default(),
            in_flight: Queue::default(),
            rate: hub
                .config
                .message_rate
                .map(|rate| Box::new(RateGuard::new(rate))),
        };
        hub.connections.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn = %session.info.conn, user = %session.info.user, "client connected");
        let heartbeat = hub.config.heartbeat.filter(|every| !every.is_zero());
        let connected = Reply::Connected {
            client: &session.info,
            heartbeat: heartbeat.map(heartbeat::announced),
        };
        session.send(connected.to_json()).await;
        if heartbeat.is_some() {
            hub.beats.add(&session.sender);
        }
        session
    }

    /// Ends the session, however it ends: tells the client why when the hub ends it, leaves
    /// every channel and uncounts the connection.
    async fn end(mut self, exit: Exit) {
        if exit != Exit::Left {
            self.flush().await;
        }
        // What the hub closes with, and whether that Close waits until the session is done.
        let close = match exit {
            Exit::Left => None,
            Exit::Expired => {
                refuse(&self.sender, "token expired").await;
                Some((
                    CloseCode::POLICY_VIOLATION,
                    "token expired".to_owned(),
                    false,
                ))
            }
            Exit::Kicked => {
                let (code, reason) = self.mailbox.close_frame();
                // The subscribers of a lost channel, or the laggards of a burst, come back
                // spread over a second rather than at once. The hint goes past a full queue,
                // and the Close right after it.
                let hint = retry_hint(code, reason, Duration::ZERO, KICK_SPREAD);
                let _ = self.sender.close_with(hint, code, reason);
                Some((code, reason.to_owned(), false))
            }
            Exit::OverRate => {
                self.hub.limits.rate_limit_closed();
                let reason = "message rate exceeded".to_owned();
                Some((CloseCode::POLICY_VIOLATION, reason, true))
            }
            Exit::Disconnected(code, reason) => Some((code, reason, true)),
        };
        if let Some((code, reason, _)) = &close {
            // Once per close, but a flood of them (a burst of laggards, a flooder coming back)
            // at most once a second.
            self.hub.limits.log.log(|suppressed| {
                tracing::info!(
                    conn = %self.info.conn,
                    user = %self.info.user,
                    code = code.0,
                    reason = %reason,
                    suppressed,
                    "closing a client"
                );
            });
        }
        self.hub.registry.deregister(&self.info.conn);
        self.mailbox.close();
        self.hub.beats.remove(&self.sender);
        for channel in self.subscriptions.take() {
            self.leave(&channel).await;
        }
        self.hub.connections.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(conn = %self.info.conn, "client gone");
        if let Some((code, reason, true)) = close {
            // The Close queues behind what the client has yet to read: a client that reads
            // again gets a gap-free prefix, then the close.
            let _ = self.sender.close(code, &reason);
        }
    }

    /// Does what the server side asks; `Some` when the connection must end.
    async fn obey(&mut self, command: Command) -> Option<Exit> {
        match command {
            Command::Subscribe { channel, done } => {
                let result = if self.subscriptions.contains(&channel) {
                    Ok(())
                } else {
                    self.join(None, channel, None, true).await
                };
                let _ = done.send(result);
            }
            Command::Unsubscribe { channel, done } => {
                let was = self.subscriptions.remove(&channel);
                if was {
                    self.leave(&channel).await;
                    let reply = Reply::Unsubscribed {
                        id: None,
                        channel: &channel,
                    };
                    self.send(reply.to_json()).await;
                }
                let _ = done.send(was);
            }
            Command::Disconnect { code, reason } => return Some(Exit::Disconnected(code, reason)),
            Command::Subscriptions { done } => {
                let _ = done.send(self.subscriptions.sorted());
            }
        }
        None
    }

    /// Handles a message of the client; `Some` when the session must end.
    async fn hear(&mut self, message: Message) -> Option<Exit> {
        match message {
            Message::Text(text) => match self.check_rate() {
                Verdict::Allow => Box::pin(self.handle(&text)).await,
                Verdict::Refuse => Box::pin(self.refuse_over_rate(request_id(&text))).await,
                Verdict::Close => return Some(Exit::OverRate),
            },
            Message::Binary(_) => match self.check_rate() {
                Verdict::Allow => {
                    let reason = "binary frames are not part of the protocol; send JSON text";
                    let e = RequestError::new(None, ErrorCode::Unsupported, reason);
                    Box::pin(self.send(String::from(&e))).await;
                }
                Verdict::Refuse => Box::pin(self.refuse_over_rate(None)).await,
                Verdict::Close => return Some(Exit::OverRate),
            },
            Message::Close(_) => return Some(Exit::Left),
            Message::Ping(_) | Message::Pong(_) => {}
        }
        None
    }

    /// Handles what the mailbox gave; `Some` when the session must end.
    async fn read(&mut self, mail: Mail) -> Option<Exit> {
        match mail {
            Mail::Command(command) => Box::pin(self.obey(command)).await,
            Mail::Kicked => Some(Exit::Kicked),
        }
    }

    /// The session between events, with nothing in flight.
    fn park(mut self) -> Parked {
        debug_assert!(self.in_flight.get().is_empty());
        Parked {
            id: self.id,
            info: self.info,
            sender: self.sender,
            mailbox: self.mailbox,
            subscriptions: self.subscriptions,
            rate: self.rate,
        }
    }

    /// A parked session, going on.
    fn resume(hub: &'h Shared, parked: Parked) -> Self {
        Self {
            hub,
            id: parked.id,
            info: parked.info,
            sender: parked.sender,
            mailbox: parked.mailbox,
            subscriptions: parked.subscriptions,
            in_flight: Queue::default(),
            rate: parked.rate,
        }
    }

    fn check_rate(&mut self) -> Verdict {
        self.rate
            .as_mut()
            .map_or(Verdict::Allow, |rate| rate.check())
    }

    /// Answers a message over the rate, which is dropped.
    async fn refuse_over_rate(&mut self, id: Option<RequestId>) {
        self.hub.limits.rate_limited();
        let reason = "too many messages a second; this one was dropped";
        let e = RequestError::new(id, ErrorCode::RateLimited, reason);
        self.flush().await;
        self.send(String::from(&e)).await;
    }

    async fn send(&self, json: String) {
        // A closed connection ends the loop on the next receive.
        let _ = self.sender.send(Message::text(json)).await;
    }

    /// Answers every publish in flight, so that a reply sent next comes after them.
    async fn flush(&mut self) {
        while !self.in_flight.get().is_empty() {
            if let Some(reply) = answered(self.in_flight.get()).await {
                self.send(reply).await;
            }
        }
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
                Ok(op) => {
                    // A publish's answer may wait; any other reply comes after those waiting.
                    if !matches!(op, Op::Publish { .. }) {
                        self.flush().await;
                    }
                    self.apply(op).await
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            tracing::debug!(conn = %self.info.conn, error = %e, "request refused");
            self.flush().await;
            self.send(String::from(&e)).await;
        }
    }

    async fn apply(&mut self, op: Op) -> Result<(), RequestError> {
        match op {
            Op::Subscribe {
                id,
                channel,
                since,
                join_leave,
            } => self.subscribe(id, channel, since, join_leave).await,
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
            Op::Publish { id, channel, data } => self.publish(id, channel, data).await,
            Op::Presence { id, channel } => {
                self.check(id.as_ref(), &channel, Access::Read)?;
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
                self.check(id.as_ref(), &channel, Access::Read)?;
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

    /// The user a verified token names, which the channel rules go by; `None` for a client
    /// without one, whatever name it chose.
    fn user(&self) -> Option<&str> {
        self.info.authenticated.then_some(self.info.user.as_str())
    }
}

fn unavailable(id: Option<RequestId>, e: &BrokerError) -> RequestError {
    RequestError::new(id, ErrorCode::Unavailable, e.to_string())
}

/// Completes when the token's expiry, if any, has come.
async fn expired(expiry: &mut Option<Pin<Box<Sleep>>>) {
    match expiry {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}
