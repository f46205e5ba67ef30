//! What the client hands the application: events of a subscription, the connection's state,
//! and errors.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A place in a channel's stream: the epoch of its history and the offset of a publication
/// in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub struct Position {
    /// Changes when the channel's history is lost; offsets compare only within one epoch.
    pub epoch: String,
    /// The offset of the latest publication seen (0 before the first).
    pub offset: u64,
}

/// Who a connection belongs to, as the hub tells it.
#[derive(Clone, Debug, Deserialize)]
pub struct ClientInfo {
    /// The user (empty for what the server publishes itself).
    pub user: String,
    /// The connection's id (empty for what the server publishes itself).
    pub conn: String,
    /// Whether the user comes from a verified token or the backend.
    #[serde(default)]
    pub authenticated: bool,
    /// What the backend says about the client, as JSON.
    #[serde(default)]
    pub info: Option<Box<RawValue>>,
}

/// A message published to a channel.
#[derive(Clone, Debug, Deserialize)]
pub struct Publication {
    /// Its place in the channel's stream.
    pub offset: u64,
    /// When the hub accepted it, in milliseconds since the Unix epoch.
    pub time: u64,
    /// Who published it.
    pub from: ClientInfo,
    /// The JSON the publisher sent, as it sent it.
    pub data: Box<RawValue>,
}

/// What a [`Subscription`](crate::Subscription) yields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A publication, each once and in offset order, across reconnects too.
    Message(Publication),
    /// A client joined the channel.
    Join(ClientInfo),
    /// A client left the channel.
    Leave(ClientInfo),
    /// After a reconnect the subscription resumed without a gap: the `missed` publications
    /// published meanwhile came just before, as [`Event::Message`]s.
    Recovered {
        /// How many publications were replayed.
        missed: usize,
    },
    /// After a reconnect the subscription resumed, but publications made meanwhile are lost:
    /// the channel's history was reset (`epoch_changed`), or no longer holds them
    /// (`history_truncated`, `too_many_missed`). Messages go on from `position`.
    Gap {
        /// The hub's code.
        code: String,
        /// The hub's words.
        reason: String,
        /// Where the stream goes on from.
        position: Position,
    },
    /// The subscription ended on the server's side: the server unsubscribed the connection
    /// (no code), or refused to subscribe it again after a reconnect (with the hub's code).
    /// No event follows.
    Unsubscribed {
        /// The hub's error code, when it refused.
        code: Option<String>,
        /// The hub's words.
        reason: Option<String>,
    },
}

/// Where the connection stands; see [`HubClient::state`](crate::HubClient::state).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum State {
    /// Opening a connection.
    Connecting,
    /// Connected, as this client.
    Connected(ClientInfo),
    /// The connection was lost; another is opened after a pause.
    Disconnected {
        /// The close code, when the server sent one.
        code: Option<u16>,
        /// Why, in words.
        reason: String,
    },
    /// The client stopped: it was closed, or cannot go on (a refused token and no way to get
    /// another). With the reason when it did not stop by itself.
    Closed(Option<String>),
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The first connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The hub refused the request.
    #[error("refused: {code}: {reason}")]
    Refused {
        /// The hub's code (`forbidden`, `too_large`, ...).
        code: String,
        /// The hub's words.
        reason: String,
    },
    /// No answer within the request timeout (a request made offline waited that long for a
    /// connection).
    #[error("no answer within the request timeout")]
    Timeout,
    /// The connection was lost while the request was out: whether it took effect is unknown.
    #[error("the connection was lost before the answer came; the outcome is unknown")]
    Disconnected,
    /// Too many requests wait for a connection already.
    #[error("the queue of requests waiting for a connection is full")]
    QueueFull,
    /// The channel is subscribed already by this client.
    #[error("already subscribed to {0}")]
    AlreadySubscribed(String),
    /// The client is closed.
    #[error("the client is closed{}", .0.as_deref().map(|why| format!(": {why}")).unwrap_or_default())]
    Closed(Option<String>),
}

/// A channel's position and its latest publications, as
/// [`HubClient::history`](crate::HubClient::history) returns them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct History {
    /// The channel's current position.
    pub position: Position,
    /// The latest publications, oldest first.
    pub publications: Vec<Publication>,
}
