//! One connection: subscribes every channel again from its position, sends what waited for a
//! connection, and turns the hub's frames into answers and events, dropping duplicates.

use std::collections::HashMap;
use std::task::Poll;
use std::time::Duration;

use switchboard::{CloseCode, MaybeTlsStream, Message, WebSocket};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::actor::{Actor, Channel, End, Queued};
use crate::command::{Ask, Command};
use crate::event::{ClientError, Event, History, Position, Publication, State};
use crate::wire::{self, Frame, Request, own_id};

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// How long a close waits for the hub's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A request out on this connection, by id.
enum Pending {
    Ask(Ask, Instant),
    Subscribe(String),
    Unsubscribe(Option<oneshot::Sender<Result<(), ClientError>>>),
}

/// What one connection keeps.
struct Link {
    ws: WebSocket<MaybeTlsStream>,
    pending: HashMap<u64, Pending>,
    /// The hub said `connected`.
    connected: bool,
    /// The hub's heartbeat interval, when it sends heartbeats.
    heartbeat: Option<Duration>,
    last_frame: Instant,
    /// From a `disconnect` frame: the least pause before connecting again.
    retry_after: Duration,
    /// The hub refused the token (an `unauthorized` error).
    refused: Option<String>,
}

impl Actor {
    /// Serves one connection until it ends; says how, and whether the hub said `connected`.
    pub(crate) async fn session(&mut self, ws: WebSocket<MaybeTlsStream>) -> (End, bool) {
        let mut link = Link {
            ws,
            pending: HashMap::new(),
            connected: false,
            heartbeat: None,
            last_frame: Instant::now(),
            retry_after: Duration::ZERO,
            refused: None,
        };
        let hello_by = Instant::now() + self.options.request_timeout;
        let refresh_at = self.refresh_at();
        let mut tick = tokio::time::interval(TICK);
        let end = loop {
            // Silence past two heartbeats means the network is gone, whatever the socket says.
            let dead_at = match (link.connected, link.heartbeat) {
                (false, _) => Some(hello_by),
                (true, Some(beat)) => Some(link.last_frame + beat * 2 + Duration::from_secs(1)),
                (true, None) => None,
            };
            let outcome = tokio::select! {
                received = next(&mut link.ws) => self.received(&mut link, received),
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => {
                        let _ = tokio::time::timeout(CLOSE_WAIT, link.ws.close(CloseCode::NORMAL, "")).await;
                        Err(End::Closed)
                    }
                    Some(command) if link.connected => self.online(&mut link, command),
                    Some(command) => {
                        self.offline(command);
                        Ok(())
                    }
                },
                _ = tick.tick() => {
                    self.expire();
                    expire(&mut link.pending);
                    Ok(())
                }
                () = sleep_until(dead_at) => Err(retry(None, if link.connected {
                    "no heartbeat from the hub: the connection is taken as dead"
                } else {
                    "the server did not greet as the hub does (no `connected`)"
                })),
                () = sleep_until(refresh_at) => {
                    let _ = tokio::time::timeout(CLOSE_WAIT, link.ws.close(CloseCode::NORMAL, "token refresh")).await;
                    Err(End::Refresh)
                }
            };
            if let Err(end) = outcome {
                break end;
            }
        };
        let connected = link.connected;
        self.lost(link.pending);
        (end, connected)
    }

    /// Handles what the connection delivered; `Err` when it ended.
    fn received(
        &mut self,
        link: &mut Link,
        received: Option<Result<Message, switchboard::Error>>,
    ) -> Result<(), End> {
        link.last_frame = Instant::now();
        match received {
            Some(Ok(Message::Text(text))) => match wire::parse(&text) {
                Ok(frame) => self.frame(link, frame),
                Err(e) => Err(retry(
                    None,
                    &format!("the server sent a frame that is not the hub's protocol ({e})"),
                )),
            },
            Some(Ok(Message::Close(close))) => {
                let (code, reason) = close.map_or((None, String::new()), |c| {
                    (Some(c.code.0), c.reason.to_string())
                });
                let reason = if reason.is_empty() {
                    code.map_or_else(|| "closed".into(), |c| format!("closed with {c}"))
                } else {
                    reason
                };
                if let Some(why) = link.refused.take() {
                    return Err(End::Refused { code, reason: why });
                }
                if code == Some(CloseCode::POLICY_VIOLATION.0) {
                    return Err(End::Refused { code, reason });
                }
                Err(End::Retry {
                    code,
                    reason,
                    floor: link.retry_after,
                })
            }
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(retry(None, &e.to_string())),
            None => Err(retry(None, "the connection ended")),
        }
    }

    fn frame(&mut self, link: &mut Link, frame: Frame) -> Result<(), End> {
        match frame {
            Frame::Connected(wire::Connected { client, heartbeat }) => {
                link.connected = true;
                link.heartbeat = heartbeat
                    .filter(|beat| beat.is_finite() && *beat > 0.0)
                    .map(Duration::from_secs_f64);
                self.state.send_replace(State::Connected(client));
                self.resume(link)?;
            }
            Frame::Subscribed(wire::Subscribed {
                id,
                channel,
                epoch,
                offset,
                recovered,
                code,
                reason,
                publications,
            }) => {
                let ours = id.as_ref().and_then(own_id);
                if let Some(id) = ours {
                    link.pending.remove(&id);
                }
                let position = Position { epoch, offset };
                let Some(state) = self.channels.get_mut(&channel) else {
                    if ours.is_some() {
                        // Given up on meanwhile (timed out, or unsubscribed).
                        self.unsubscribe(link, &channel, None)?;
                    }
                    return Ok(());
                };
                resumed(state, position, recovered, code, reason, publications);
            }
            Frame::Unsubscribed(wire::Unsubscribed { id, channel }) => {
                match id
                    .as_ref()
                    .and_then(own_id)
                    .and_then(|id| link.pending.remove(&id))
                {
                    Some(Pending::Unsubscribe(Some(done))) => drop(done.send(Ok(()))),
                    Some(_) => {}
                    None => {
                        // The server side unsubscribed this connection.
                        if let Some(state) = self.channels.remove(&channel) {
                            let ended = Event::Unsubscribed {
                                code: None,
                                reason: None,
                            };
                            let _ = state.events.send(ended);
                        }
                    }
                }
            }
            Frame::Ack(wire::Ack { id, offset }) => {
                if let Some(Pending::Ask(Ask::Publish { done, .. }, _)) = take(link, &id) {
                    let _ = done.send(Ok(offset));
                }
            }
            Frame::Presence(wire::PresenceReply { id, clients }) => {
                if let Some(Pending::Ask(Ask::Presence { done, .. }, _)) = take(link, &id) {
                    let _ = done.send(Ok(clients));
                }
            }
            Frame::History(wire::HistoryReply {
                id,
                epoch,
                offset,
                publications,
            }) => {
                if let Some(Pending::Ask(Ask::History { done, .. }, _)) = take(link, &id) {
                    let position = Position { epoch, offset };
                    let _ = done.send(Ok(History {
                        position,
                        publications,
                    }));
                }
            }
            Frame::Error(wire::ErrorReply { id, code, reason }) => {
                self.error(link, id.as_ref(), code, reason);
            }
            Frame::Message(message) => {
                let (channel, publication) = message.into_parts();
                self.deliver(&channel, publication);
            }
            Frame::Join(wire::Member { channel, client }) => {
                self.event(&channel, Event::Join(client));
            }
            Frame::Leave(wire::Member { channel, client }) => {
                self.event(&channel, Event::Leave(client));
            }
            Frame::Disconnect(wire::Disconnect { retry_after_ms }) => {
                link.retry_after = Duration::from_millis(retry_after_ms.unwrap_or(0));
            }
            Frame::Other => {}
        }
        Ok(())
    }

    fn error(
        &mut self,
        link: &mut Link,
        id: Option<&serde_json::Value>,
        code: String,
        reason: String,
    ) {
        let refused = ClientError::Refused {
            code: code.clone(),
            reason: reason.clone(),
        };
        match id.and_then(own_id).and_then(|id| link.pending.remove(&id)) {
            Some(Pending::Ask(ask, _)) => ask.fail(refused),
            Some(Pending::Subscribe(channel)) => {
                if let Some(mut state) = self.channels.remove(&channel) {
                    match state.waiting.take() {
                        Some((done, _)) => drop(done.send(Err(refused))),
                        None => {
                            let ended = Event::Unsubscribed {
                                code: Some(code),
                                reason: Some(reason),
                            };
                            let _ = state.events.send(ended);
                        }
                    }
                }
            }
            // Not subscribed any more: what was asked.
            Some(Pending::Unsubscribe(done)) => {
                if let Some(done) = done {
                    let _ = done.send(Ok(()));
                }
            }
            None if code == "unauthorized" => link.refused = Some(format!("{code}: {reason}")),
            None => tracing::warn!(%code, %reason, "the hub reported an error"),
        }
    }

    /// Subscribes every channel again (from its position) and sends what waited.
    fn resume(&mut self, link: &mut Link) -> Result<(), End> {
        let channels: Vec<(String, Option<Position>, bool)> = self
            .channels
            .iter()
            .map(|(channel, state)| (channel.clone(), state.position.clone(), state.join_leave))
            .collect();
        for (channel, since, join_leave) in channels {
            self.subscribe(link, &channel, since.as_ref(), join_leave)?;
        }
        while let Some(Queued { ask, deadline }) = self.queue.pop_front() {
            self.ask(link, ask, deadline)?;
        }
        Ok(())
    }

    /// A command while connected.
    fn online(&mut self, link: &mut Link, command: Command) -> Result<(), End> {
        match command {
            Command::Subscribe {
                channel,
                join_leave,
                events,
                done,
            } => {
                if self.follow(channel.clone(), join_leave, events, done) {
                    self.subscribe(link, &channel, None, join_leave)?;
                }
            }
            Command::Unsubscribe { channel, done } => {
                if self.channels.remove(&channel).is_none() {
                    if let Some(done) = done {
                        let _ = done.send(Ok(()));
                    }
                    return Ok(());
                }
                self.unsubscribe(link, &channel, done)?;
            }
            Command::Ask(ask) => {
                let deadline = Instant::now() + self.options.request_timeout;
                self.ask(link, ask, deadline)?;
            }
            Command::Close => {}
        }
        Ok(())
    }

    /// Asks the hub to subscribe the connection to `channel`, from `since` when it resumes,
    /// declining its joins and leaves unless `join_leave`.
    fn subscribe(
        &mut self,
        link: &mut Link,
        channel: &str,
        since: Option<&Position>,
        join_leave: bool,
    ) -> Result<(), End> {
        let id = self.id();
        link.pending
            .insert(id, Pending::Subscribe(channel.to_owned()));
        let join_leave = (!join_leave).then_some(false);
        let request = Request::Subscribe {
            channel,
            since,
            join_leave,
            id,
        };
        send(link, &request)
    }

    /// Asks the hub to unsubscribe the connection from `channel`; `done` learns when it has.
    fn unsubscribe(
        &mut self,
        link: &mut Link,
        channel: &str,
        done: Option<oneshot::Sender<Result<(), ClientError>>>,
    ) -> Result<(), End> {
        let id = self.id();
        link.pending.insert(id, Pending::Unsubscribe(done));
        send(link, &Request::Unsubscribe { channel, id })
    }

    fn ask(&mut self, link: &mut Link, ask: Ask, deadline: Instant) -> Result<(), End> {
        let id = self.id();
        let request = match &ask {
            Ask::Publish { channel, data, .. } => Request::Publish { channel, data, id }.to_json(),
            Ask::Presence { channel, .. } => Request::Presence { channel, id }.to_json(),
            Ask::History { channel, limit, .. } => Request::History {
                channel,
                limit: *limit,
                id,
            }
            .to_json(),
        };
        link.pending.insert(id, Pending::Ask(ask, deadline));
        feed(link, request)
    }

    /// A publication for a subscribed channel: delivered unless it was already.
    fn deliver(&mut self, channel: &str, publication: Publication) {
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(position) = &mut state.position else {
            return;
        };
        if publication.offset <= position.offset {
            return; // delivered before a reconnect
        }
        position.offset = publication.offset;
        let _ = state.events.send(Event::Message(publication));
    }

    fn event(&self, channel: &str, event: Event) {
        if let Some(state) = self.channels.get(channel) {
            let _ = state.events.send(event);
        }
    }

    /// The connection is gone: publishes out may or may not have been done; reads wait for
    /// the next connection; unsubscribes are done (a new connection starts without them).
    fn lost(&mut self, pending: HashMap<u64, Pending>) {
        let mut pending: Vec<(u64, Pending)> = pending.into_iter().collect();
        pending.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        for (_, pending) in pending {
            match pending {
                Pending::Ask(ask @ Ask::Publish { .. }, _) => ask.fail(ClientError::Disconnected),
                Pending::Ask(ask, deadline) => self.queue.push_front(Queued { ask, deadline }),
                Pending::Subscribe(_) => {}
                Pending::Unsubscribe(done) => {
                    if let Some(done) = done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
        }
    }
}

/// Applies the hub's `subscribed` to a channel: a first subscription starts at `position`; a
/// resumed one gets what it missed, each publication once, or a gap.
fn resumed(
    state: &mut Channel,
    position: Position,
    recovered: Option<bool>,
    code: Option<String>,
    reason: Option<String>,
    publications: Vec<Publication>,
) {
    match (&mut state.position, recovered) {
        (Some(seen), Some(true)) => {
            let mut missed = 0;
            for publication in publications {
                if publication.offset > seen.offset {
                    seen.offset = publication.offset;
                    missed += 1;
                    let _ = state.events.send(Event::Message(publication));
                }
            }
            seen.offset = seen.offset.max(position.offset);
            let _ = state.events.send(Event::Recovered { missed });
        }
        (Some(seen), _) => {
            let gap = Event::Gap {
                code: code.unwrap_or_else(|| "not_recovered".into()),
                reason: reason.unwrap_or_default(),
                position: position.clone(),
            };
            let _ = state.events.send(gap);
            *seen = position;
        }
        (None, _) => state.position = Some(position),
    }
    if let Some((done, _)) = state.waiting.take() {
        let _ = done.send(Ok(()));
    }
}

fn take(link: &mut Link, id: &serde_json::Value) -> Option<Pending> {
    link.pending.remove(&own_id(id)?)
}

/// Fails the requests out past their deadline.
fn expire(pending: &mut HashMap<u64, Pending>) {
    let now = Instant::now();
    let late: Vec<u64> = pending
        .iter()
        .filter_map(|(id, pending)| match pending {
            Pending::Ask(ask, deadline) if *deadline <= now || ask.abandoned() => Some(*id),
            _ => None,
        })
        .collect();
    for id in late {
        if let Some(Pending::Ask(ask, _)) = pending.remove(&id) {
            ask.fail(ClientError::Timeout);
        }
    }
}

fn retry(code: Option<u16>, reason: &str) -> End {
    End::Retry {
        code,
        reason: reason.to_owned(),
        floor: Duration::ZERO,
    }
}

fn send(link: &mut Link, request: &Request<'_>) -> Result<(), End> {
    feed(link, request.to_json())
}

/// Queues a frame; the connection's next poll writes it.
fn feed(link: &mut Link, json: String) -> Result<(), End> {
    link.ws
        .feed(Message::text(json))
        .map_err(|e| retry(None, &e.to_string()))
}

/// Writes what is queued and reads the next message.
async fn next(ws: &mut WebSocket<MaybeTlsStream>) -> Option<Result<Message, switchboard::Error>> {
    std::future::poll_fn(|cx| {
        if ws.buffered_amount() > 0
            && let Poll::Ready(Err(e)) = ws.poll_flush(cx)
        {
            return Poll::Ready(Some(Err(e)));
        }
        ws.poll_recv(cx)
    })
    .await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
