//! The [`Broker`] trait: where publications get their offsets, where history and presence
//! live, and how a node hears about what happens on the channels its clients follow.
//!
//! The hub talks to one broker. The in-process [`LocalBroker`](crate::LocalBroker) serves a
//! single node; a broker over Redis lets several nodes share channels (publish through Redis
//! so every node delivers; offsets, history and presence in Redis so a client may reconnect to
//! any node).
//!
//! What a broker promises, and the hub relies on for recovery without gap or duplicate:
//! - offsets of a channel are assigned once, strictly increasing by one from 1, within an
//!   epoch; a new epoch (history lost) restarts them;
//! - every publication, join and leave of a channel the node has [`subscribe`](Broker::subscribe)d
//!   to reaches [`BrokerEvents`] once, in offset order, from the moment `subscribe` returns;
//!   when a broker cannot keep this (its backing service lost data), it says so with
//!   [`BrokerEvents::stream_lost`] before the next event of the channel;
//! - [`history`](Broker::history) sees every publication whose [`publish`](Broker::publish)
//!   returned before it was called, while it is retained;
//! - a publish is taken when [`publish`](Broker::publish) is called, not when its future is
//!   first polled: publishes to a channel called one after another get their offsets in that
//!   order, even when their futures are awaited together (a connection keeps several in
//!   flight this way, and acknowledges them in order).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::nodes::{NodeCommand, NodeReplies, NodeReply};

/// A boxed future, as broker methods return (so that hubs can hold `Arc<dyn Broker>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place in a channel's stream: the epoch of its history, and an offset in it.
///
/// A client that saw everything up to `offset` in `epoch` subscribes again with it as `since`
/// to get what it missed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Changes whenever the channel's history is lost; offsets are comparable only within one.
    pub epoch: String,
    /// The offset of the latest publication (0 before the first).
    pub offset: u64,
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The user: a token's `sub`, the connect hook's user, or the name an anonymous client
    /// chose.
    pub user: String,
    /// The connection's id, unique across nodes.
    pub conn: String,
    /// Whether `user` comes from a verified token or the connect hook.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authenticated: bool,
    /// What the connect hook says about the client, shown with it in presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Box<RawValue>>,
}

// `RawValue` compares as its JSON text.
impl PartialEq for ClientInfo {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user
            && self.conn == other.conn
            && self.authenticated == other.authenticated
            && self.info.as_deref().map(RawValue::get) == other.info.as_deref().map(RawValue::get)
    }
}

impl Eq for ClientInfo {}

impl std::hash::Hash for ClientInfo {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.user.hash(state);
        self.conn.hash(state);
        self.authenticated.hash(state);
        self.info.as_deref().map(RawValue::get).hash(state);
    }
}

/// A message published to a channel, as stored and delivered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Publication {
    /// Its place in the channel's stream.
    pub offset: u64,
    /// When the broker accepted it, in milliseconds since the Unix epoch.
    pub time: u64,
    /// Who published it.
    pub from: ClientInfo,
    /// The JSON the publisher sent, as it sent it.
    pub data: Box<RawValue>,
}

/// Which publications [`Broker::history`] returns, always oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryRange {
    /// The latest `n` publications (0: none, just the position).
    Latest(usize),
    /// The first `limit` publications with an offset above `offset`: what a client that saw
    /// `offset` missed.
    After {
        /// The last offset the client saw.
        offset: u64,
        /// The most publications to return.
        limit: usize,
    },
}

/// The answer of [`Broker::history`].
#[derive(Clone, Debug)]
pub struct History {
    /// The stream's current position: its epoch and latest offset.
    pub position: StreamPosition,
    /// The publications asked for that are still retained, oldest first.
    pub publications: Vec<Arc<Publication>>,
}

/// How much history each channel keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The most publications kept per channel (0: no history, so no recovery either).
    pub size: usize,
    /// Publications older than this are dropped; `None` keeps them until `size` pushes them out.
    pub ttl: Option<Duration>,
}

impl Default for HistoryConfig {
    /// The last 100 publications, however old.
    fn default() -> Self {
        Self {
            size: 100,
            ttl: None,
        }
    }
}

/// How long a broker remembers a channel (its epoch and last offset) that nobody follows,
/// with nothing left in history.
pub(crate) const IDLE_CHANNEL: Duration = Duration::from_secs(600);

/// A broker failed; the request may succeed later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker's backing service cannot be reached or answered with an error.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// What the hub does with channel events: the broker calls these for every channel the node
/// subscribed to, in order per channel. They must not block (the hub only queues).
pub trait BrokerEvents: Send + Sync + 'static {
    /// A publication was accepted.
    fn publication(&self, channel: &str, publication: &Arc<Publication>);
    /// A client joined the channel.
    fn join(&self, channel: &str, client: &ClientInfo);
    /// A client left the channel.
    fn leave(&self, channel: &str, client: &ClientInfo);
    /// The node can no longer deliver the channel without a gap: publications it did not
    /// deliver are gone (the broker's backing service lost its data and the channel has a
    /// new epoch, or lost recent writes and gave their offsets again, or more was missed
    /// during an outage than history holds). Events after this
    /// continue from the channel's current position; subscribers from before must recover
    /// (the hub closes their connections so that they subscribe again with `since`).
    fn stream_lost(&self, channel: &str);
    /// The broker removed `client` from the channel's presence because its node stopped
    /// answering, and it was the last of its user's connections there. Told once, to the one
    /// node that removed it, so that what a user's departure owes beyond the channel's
    /// subscribers (a webhook) is done once; the channel's nodes get the
    /// [`leave`](Self::leave) as for any other. The default does nothing.
    fn user_swept(&self, channel: &str, client: &ClientInfo) {
        let _ = (channel, client);
    }
    /// Another node asks this one to run `command` on its connections (see
    /// [`Broker::ask_nodes`]); the broker sends it what the future answers.
    fn command(&self, command: NodeCommand) -> BoxFuture<'static, NodeReply>;
}

impl std::fmt::Debug for dyn BrokerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerEvents")
    }
}

/// Channels' streams, history and presence, shared by the nodes of a deployment.
///
/// The hub calls [`start`](Self::start) once, then the rest from many tasks at once.
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering channel events to `events`.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn start(&self, events: Arc<dyn BrokerEvents>) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Makes this node receive `channel`'s events from now on (a Redis broker subscribes to
    /// the channel's Pub/Sub). Returns once events flow. The hub calls it when the node's
    /// first client subscribes to the channel; calls are not counted (the hub counts its
    /// clients), so subscribing again changes nothing.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Stops `channel`'s events to this node (its last client left), however often it was
    /// subscribed to.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Appends `data` from `from` to `channel`'s stream and history, delivers it to every node
    /// subscribed to the channel, and returns the position it was given.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached; then the publication was not delivered.
    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>>;

    /// Publishes as [`publish`](Self::publish) does, once per `key` and channel within
    /// `window`: a repeat within the window, on any node sharing the broker, returns the
    /// position the first one was given and delivers nothing. This is what lets a backend
    /// retry a publish whose answer it did not get.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached; then nothing was published or remembered.
    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>>;

    /// The channel's position and the publications of `range` still retained.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<History, BrokerError>>;

    /// Adds `client` to the channel's presence and tells the channel's nodes it joined.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn join(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Removes `client` from the channel's presence and tells the channel's nodes it left.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Adds `client` to the channel's presence as [`join`](Self::join) does, and says whether
    /// it is the first of its user's connections present on the channel, on any node. The
    /// default joins, then reads the presence: of two connections of one user joining at
    /// once, both may see the other. A broker that decides it with the join (both brokers
    /// here do) says it of exactly one of them.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn join_user(
        &self,
        channel: &str,
        client: ClientInfo,
    ) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let user = client.user.clone();
            self.join(&channel, client).await?;
            let present = self.presence(&channel).await?;
            Ok(present.iter().filter(|c| c.user == user).count() == 1)
        })
    }

    /// Removes `client` from the channel's presence as [`leave`](Self::leave) does, and says
    /// whether it was the last of its user's connections present on the channel, on any
    /// node (false when it was not present). The default leaves, then reads the presence, as
    /// [`join_user`](Self::join_user)'s does.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn leave_user(
        &self,
        channel: &str,
        client: ClientInfo,
    ) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let user = client.user.clone();
            let present = self.presence(&channel).await?;
            let was = present.iter().any(|c| c.conn == client.conn);
            self.leave(&channel, client).await?;
            let present = self.presence(&channel).await?;
            Ok(was && !present.iter().any(|c| c.user == user))
        })
    }

    /// The clients present on the channel, on every node.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached.
    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>>;

    /// Asks every other node sharing the broker to run `command` on its connections (each
    /// through its [`BrokerEvents::command`]), and gathers their replies: those that answer
    /// within the broker's timeout, and a count of those that heard it but did not. The
    /// default, for a broker that serves one node, has no other node to ask.
    ///
    /// # Errors
    ///
    /// When the backing service cannot be reached; then no other node heard the command.
    fn ask_nodes(&self, command: &NodeCommand) -> BoxFuture<'_, Result<NodeReplies, BrokerError>> {
        let _ = command;
        Box::pin(std::future::ready(Ok(NodeReplies::default())))
    }

    /// Whether the broker can serve now, without waiting: an error saying why while its
    /// backing service is unreachable (a health check answers 503 with it). The default, for
    /// a broker with nothing to reach, is always healthy.
    ///
    /// # Errors
    ///
    /// While the backing service is unreachable.
    fn health(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// What part of the broker is unreachable while the rest serves (some shards of several,
    /// say): channels there fail as unavailable, the others work. A health check answers 200
    /// with it: every node sees the same part down, and taking them all out of service would
    /// stop the channels that work too. `None` while all is well, and while
    /// [`health`](Self::health) fails. The default has no parts.
    fn degraded(&self) -> Option<String> {
        None
    }

    /// Appends the broker's own metrics to `out`, in the Prometheus text format (`# HELP`,
    /// `# TYPE`, then the samples). The default has none.
    fn render_metrics(&self, out: &mut String) {
        let _ = out;
    }
}

impl std::fmt::Debug for dyn Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Broker")
    }
}

/// Counts the publications a broker delivers, for tests of what reaches a node.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Delivered(std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl Delivered {
    pub(crate) fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
impl BrokerEvents for Delivered {
    fn publication(&self, _: &str, _: &Arc<Publication>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn join(&self, _: &str, _: &ClientInfo) {}
    fn leave(&self, _: &str, _: &ClientInfo) {}
    fn stream_lost(&self, _: &str) {}
    fn command(&self, _: NodeCommand) -> BoxFuture<'static, NodeReply> {
        Box::pin(std::future::ready(NodeReply::default()))
    }
}
