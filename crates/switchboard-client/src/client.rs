//! [`HubClient`], the application's handle, and [`Subscription`], a channel's events.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::Actor;
use crate::command::{Ask, Command};
use crate::event::{ClientError, ClientInfo, Event, History, State};
use crate::options::{ClientOptions, SubscribeOptions};

/// A client of the hub that reconnects by itself. Cheap to clone; the connection ends when
/// [`close`](Self::close) is called, or when every clone and every [`Subscription`] is
/// dropped.
///
/// Across reconnects every subscription resumes from the last message it delivered: the hub
/// replays what was missed, duplicates are dropped by offset, and a loss the hub cannot make
/// good (its history was reset or is too short) is an [`Event::Gap`], never silent.
#[derive(Clone, Debug)]
pub struct HubClient {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<State>,
}

impl HubClient {
    /// Connects to the hub at `url` (`ws://` or `wss://`, e.g. `ws://127.0.0.1:8080/ws`) and
    /// returns once connected; then keeps the connection up until closed.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] when the first connection fails (the client does not retry
    /// it: a wrong URL or a refused token should be seen at once).
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            let why = format!("{url}: expected a ws:// or wss:// URL");
            return Err(ClientError::Connect(why));
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let (state, mut watching) = watch::channel(State::Connecting);
        tokio::spawn(Actor::new(url, options, receiver, state).run());
        let first = watching
            .wait_for(|state| !matches!(state, State::Connecting))
            .await
            .map(|state| state.clone());
        match first {
            Ok(State::Connected(_)) => Ok(Self {
                commands,
                state: watching,
            }),
            Ok(State::Closed(Some(why)) | State::Disconnected { reason: why, .. }) => {
                let _ = commands.send(Command::Close);
                Err(ClientError::Connect(why))
            }
            _ => Err(ClientError::Connect("the client stopped".into())),
        }
    }

    /// The connection's state now; `changed()` on the receiver waits for the next one.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Subscribes to `channel` and returns once the hub has confirmed; the subscription then
    /// lasts across reconnects until unsubscribed or dropped.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (`forbidden`, `invalid_channel`, ...),
    /// [`ClientError::AlreadySubscribed`], [`ClientError::Timeout`],
    /// [`ClientError::Closed`].
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, ClientError> {
        self.subscribe_with(channel, SubscribeOptions::default())
            .await
    }

    /// [`subscribe`](Self::subscribe), made as `options` say (for example without the
    /// channel's joins and leaves).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, ClientError> {
        let (events, receiver) = mpsc::unbounded_channel();
        let (done, answer) = oneshot::channel();
        self.send(Command::Subscribe {
            channel: channel.to_owned(),
            join_leave: options.join_leave,
            events,
            done,
        })?;
        self.answer(answer).await?;
        Ok(Subscription {
            channel: channel.to_owned(),
            events: receiver,
            commands: self.commands.clone(),
            unsubscribed: false,
        })
    }

    /// Publishes `data` to `channel` and returns its offset once the hub has it. Made while
    /// offline, it waits for the connection (at most the request timeout).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (`forbidden`, `too_large`, ...), [`ClientError::Timeout`],
    /// [`ClientError::Disconnected`] (the connection was lost with the publish out: it may
    /// or may not have been published), [`ClientError::QueueFull`], [`ClientError::Closed`].
    pub async fn publish(&self, channel: &str, data: &impl Serialize) -> Result<u64, ClientError> {
        let data = serde_json::value::to_raw_value(data).map_err(|e| ClientError::Refused {
            code: "bad_request".into(),
            reason: format!("data is not JSON: {e}"),
        })?;
        let (done, answer) = oneshot::channel();
        let channel = channel.to_owned();
        self.send(Command::Ask(Ask::Publish {
            channel,
            data,
            done,
        }))?;
        self.answer(answer).await
    }

    /// The clients present on `channel`.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, ClientError> {
        let (done, answer) = oneshot::channel();
        let channel = channel.to_owned();
        self.send(Command::Ask(Ask::Presence { channel, done }))?;
        self.answer(answer).await
    }

    /// The channel's position and its latest publications (at most `limit`, else the hub's
    /// default).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn history(
        &self,
        channel: &str,
        limit: Option<usize>,
    ) -> Result<History, ClientError> {
        let (done, answer) = oneshot::channel();
        let channel = channel.to_owned();
        self.send(Command::Ask(Ask::History {
            channel,
            limit,
            done,
        }))?;
        self.answer(answer).await
    }

    /// Closes the connection and stops reconnecting; requests still out fail with
    /// [`ClientError::Closed`].
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .map_err(|_| ClientError::Closed(None))
    }

    async fn answer<T>(
        &self,
        answer: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        answer.await.map_err(|_| ClientError::Closed(None))?
    }
}

/// The events of one subscribed channel, as a [`Stream`]; `None` after it ended (see
/// [`Event::Unsubscribed`]) or the client closed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
    unsubscribed: bool,
}

impl Subscription {
    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next event; `None` once the subscription ended.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Unsubscribes and waits for the hub to confirm (at once when offline).
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`], [`ClientError::Closed`].
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.unsubscribed = true;
        let (done, answer) = oneshot::channel();
        let command = Command::Unsubscribe {
            channel: self.channel.clone(),
            done: Some(done),
        };
        self.commands
            .send(command)
            .map_err(|_| ClientError::Closed(None))?;
        answer.await.map_err(|_| ClientError::Closed(None))?
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.unsubscribed {
            let channel = std::mem::take(&mut self.channel);
            let _ = self.commands.send(Command::Unsubscribe {
                channel,
                done: None,
            });
        }
    }
}
