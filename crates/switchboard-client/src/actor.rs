//! The connection task: opens connections one after another, and keeps what outlives each
//! (the subscriptions with their positions, requests waiting for a connection, the token).
//! What one connection does is in `session.rs`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use switchboard::{MaybeTlsStream, WebSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::command::{Ask, Command};
use crate::event::{ClientError, Event, Position, State};
use crate::options::ClientOptions;
use crate::token;

/// A subscribed channel, across connections.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// Whether the hub sends the channel's joins and leaves.
    pub(crate) join_leave: bool,
    /// The last publication delivered (or the stream's position when subscribing), once the
    /// hub confirmed the subscription.
    pub(crate) position: Option<Position>,
    /// The application waits for the first confirmation, until the deadline.
    pub(crate) waiting: Option<(oneshot::Sender<Result<(), ClientError>>, Instant)>,
}

/// A request waiting for a connection.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) ask: Ask,
    pub(crate) deadline: Instant,
}

/// How a connection ended, and so what comes next.
#[derive(Debug)]
pub(crate) enum End {
    /// The application closed the client.
    Closed,
    /// Connect again after a pause of at least `floor`.
    Retry {
        code: Option<u16>,
        reason: String,
        floor: Duration,
    },
    /// The hub refused the token: get another, else stop.
    Refused { code: Option<u16>, reason: String },
    /// The token is about to expire: connect again at once with a fresh one.
    Refresh,
}

pub(crate) struct Actor {
    pub(crate) url: String,
    pub(crate) options: ClientOptions,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) state: watch::Sender<State>,
    pub(crate) token: Option<String>,
    pub(crate) channels: HashMap<String, Channel>,
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) next_id: u64,
}

impl Actor {
    pub(crate) fn new(
        url: &str,
        options: ClientOptions,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<State>,
    ) -> Self {
        Self {
            url: url.to_owned(),
            token: options.token.clone(),
            options,
            commands,
            state,
            channels: HashMap::new(),
            queue: VecDeque::new(),
            next_id: 0,
        }
    }

    pub(crate) fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(self.options.min_backoff, self.options.max_backoff);
        let mut connected_once = false;
        let mut refresh = self.token.is_none() && self.options.get_token.is_some();
        loop {
            if refresh {
                refresh = false;
                if let Err(why) = self.fresh_token().await {
                    return self.stop(Some(why));
                }
            }
            self.state.send_replace(State::Connecting);
            let end = match self.open().await {
                Ok(ws) => {
                    let (end, connected) = self.session(ws).await;
                    if connected {
                        connected_once = true;
                        backoff.reset();
                    }
                    end
                }
                Err(reason) => End::Retry {
                    code: None,
                    reason,
                    floor: Duration::ZERO,
                },
            };
            let (code, reason, floor) = match end {
                End::Closed => return self.stop(None),
                End::Refresh => {
                    refresh = true;
                    continue;
                }
                End::Refused { code, reason } => {
                    if self.options.get_token.is_none() || !connected_once {
                        return self.stop(Some(reason));
                    }
                    refresh = true;
                    (code, reason, Duration::ZERO)
                }
                End::Retry { reason, .. } if !connected_once => {
                    return self.stop(Some(reason));
                }
                End::Retry {
                    code,
                    reason,
                    floor,
                } => (code, reason, floor),
            };
            self.state
                .send_replace(State::Disconnected { code, reason });
            let pause = backoff.next(floor);
            if !self.pause(pause).await {
                return self.stop(None);
            }
        }
    }

    /// Opens a connection with the name and token in the query string.
    async fn open(&self) -> Result<WebSocket<MaybeTlsStream>, String> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(name) = &self.options.name {
                query.append_pair("name", name);
            }
            if let Some(token) = &self.token {
                query.append_pair("token", token);
            }
            query.finish()
        };
        let url = match (query.is_empty(), self.url.contains('?')) {
            (true, _) => self.url.clone(),
            (false, false) => format!("{}?{query}", self.url),
            (false, true) => format!("{}&{query}", self.url),
        };
        let mut options = self.options.connect.clone();
        options.config.idle_timeout = Some(self.options.ping_interval);
        options.config.pong_timeout = self.options.ping_interval / 2;
        match switchboard::connect_with(&url, &options).await {
            Ok((ws, _)) => Ok(ws),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Asks the token source for a token; `Err` when there is none to be had.
    async fn fresh_token(&mut self) -> Result<(), String> {
        let Some(source) = self.options.get_token.clone() else {
            return Err("the token was refused and there is no way to get another".into());
        };
        let token = source().await?;
        self.token = Some(token);
        Ok(())
    }

    /// When the token must be replaced: a little before it expires.
    pub(crate) fn refresh_at(&self) -> Option<Instant> {
        self.options.get_token.as_ref()?;
        token::refresh_in(self.token.as_deref()?).map(|wait| Instant::now() + wait)
    }

    /// Waits `pause` while taking commands; `false` when the client is to stop.
    async fn pause(&mut self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return false,
                    Some(command) => self.offline(command),
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => self.expire(),
            }
        }
    }

    /// A command while there is no connection.
    pub(crate) fn offline(&mut self, command: Command) {
        match command {
            Command::Subscribe {
                channel,
                join_leave,
                events,
                done,
            } => {
                // The next connection subscribes it.
                self.follow(channel, join_leave, events, done);
            }
            Command::Unsubscribe { channel, done } => {
                // The next connection does not subscribe it.
                self.channels.remove(&channel);
                if let Some(done) = done {
                    let _ = done.send(Ok(()));
                }
            }
            Command::Ask(ask) => self.enqueue(ask),
            Command::Close => {}
        }
    }

    /// Starts keeping `channel` for the application, waiting for the hub's confirmation;
    /// `false` (and the application told) when it already is.
    pub(crate) fn follow(
        &mut self,
        channel: String,
        join_leave: bool,
        events: mpsc::UnboundedSender<Event>,
        done: oneshot::Sender<Result<(), ClientError>>,
    ) -> bool {
        if self.channels.contains_key(&channel) {
            let _ = done.send(Err(ClientError::AlreadySubscribed(channel)));
            return false;
        }
        let deadline = Instant::now() + self.options.request_timeout;
        let state = Channel {
            events,
            join_leave,
            position: None,
            waiting: Some((done, deadline)),
        };
        self.channels.insert(channel, state);
        true
    }

    /// Keeps `ask` for the next connection, if there is room.
    pub(crate) fn enqueue(&mut self, ask: Ask) {
        if self.queue.len() >= self.options.queue_limit {
            ask.fail(ClientError::QueueFull);
            return;
        }
        let deadline = Instant::now() + self.options.request_timeout;
        self.queue.push_back(Queued { ask, deadline });
    }

    /// Fails what waited past its deadline, and forgets what nobody waits for any more.
    pub(crate) fn expire(&mut self) {
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for queued in self.queue.drain(..) {
            if queued.ask.abandoned() {
                continue;
            }
            if queued.deadline <= now {
                queued.ask.fail(ClientError::Timeout);
            } else {
                kept.push_back(queued);
            }
        }
        self.queue = kept;
        self.channels.retain(|_, channel| match &channel.waiting {
            Some((_, deadline)) if *deadline <= now => {
                if let Some((done, _)) = channel.waiting.take() {
                    let _ = done.send(Err(ClientError::Timeout));
                }
                false
            }
            _ => !channel.events.is_closed(),
        });
    }

    /// Stops for good: everything still waiting fails.
    fn stop(mut self, why: Option<String>) {
        let error = ClientError::Closed(why.clone());
        for queued in self.queue.drain(..) {
            queued.ask.fail(error.clone());
        }
        for (_, channel) in self.channels.drain() {
            if let Some((done, _)) = channel.waiting {
                let _ = done.send(Err(error.clone()));
            }
        }
        self.state.send_replace(State::Closed(why));
    }
}
