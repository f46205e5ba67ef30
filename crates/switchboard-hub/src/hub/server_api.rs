//! What the application's backend may do with the hub, as plain async methods on [`Hub`]:
//! publish, broadcast, read history and presence, list nodes and channels, and act on the
//! connections of a user (disconnect, subscribe, unsubscribe), on every node of the
//! deployment (see `cluster.rs`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;
use switchboard::CloseCode;
use tracing::Instrument as _;

use super::Hub;
use super::pusher_wire::Envelope;
use crate::broker::{BrokerError, ClientInfo, History, HistoryRange, StreamPosition};
use crate::nodes::{ChannelInfo, ConnectionInfo, NodeCommand, NodeInfo};
use crate::protocol::{ErrorCode, check_channel};

/// How many publications [`Hub::history`] returns when given no limit.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// Why a server-side call on the hub failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The channel name is empty, too long, or has spaces or control characters.
    #[error("invalid channel {channel:?}: {reason}")]
    InvalidChannel {
        /// The name given.
        channel: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data is larger than [`HubConfig::max_data_size`](crate::HubConfig::max_data_size).
    #[error("data is {size} bytes, limit is {limit}")]
    TooLarge {
        /// The data's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An argument other than a channel or data is out of range (the field is named).
    #[error("{field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker failed; nothing was done unless the error says otherwise.
    #[error(transparent)]
    Unavailable(#[from] BrokerError),
    /// Some connections did what was asked and others could not, or some nodes could not
    /// be asked or did not answer (`reason` says which).
    #[error("only partly done (done on {}): {reason}", connections(*done))]
    Partial {
        /// Connections that did it.
        done: usize,
        /// Why the others did not, or may not have.
        reason: String,
    },
}

fn connections(n: usize) -> String {
    match n {
        1 => "1 connection".to_owned(),
        n => format!("{n} connections"),
    }
}

impl HubError {
    /// A stable code for programs: `invalid_channel`, `too_large`, `bad_request`,
    /// `unavailable` or `partial`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidChannel { .. } => ErrorCode::InvalidChannel.as_str(),
            Self::TooLarge { .. } => ErrorCode::TooLarge.as_str(),
            Self::Invalid { .. } => ErrorCode::BadRequest.as_str(),
            Self::Unavailable(_) => ErrorCode::Unavailable.as_str(),
            Self::Partial { .. } => "partial",
        }
    }
}

/// The deployment, as [`Hub::info`] describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClusterInfo {
    /// This node's version of the hub.
    pub version: &'static str,
    /// Clients connected to the nodes that answered.
    pub connections: usize,
    /// Every node that answered, this one first.
    pub nodes: Vec<NodeInfo>,
    /// Nodes that did not answer in time.
    #[serde(skip_serializing_if = "is_zero")]
    pub unanswered: usize,
}

/// The channels of the deployment, as [`Hub::channels`] lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChannelList {
    /// By name, with their subscribers on every node that answered.
    pub channels: Vec<ChannelInfo>,
    /// Nodes that did not answer in time (their subscribers are not counted).
    #[serde(skip_serializing_if = "is_zero")]
    pub unanswered: usize,
}

/// The connections of the deployment, as [`Hub::clients`] lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientList {
    /// By node, then by connection id.
    pub clients: Vec<ConnectionInfo>,
    /// Nodes that did not answer in time (their connections are not listed).
    #[serde(skip_serializing_if = "is_zero")]
    pub unanswered: usize,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes a reference"
)]
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Which connections [`Hub::disconnect`] ends.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Every connection of this user.
    User(&'a str),
    /// The connection with this id.
    Conn(&'a str),
}

/// Who server-side publications are from: no user, no connection, vouched for by the
/// server.
fn server() -> ClientInfo {
    ClientInfo {
        user: String::new(),
        conn: String::new(),
        authenticated: true,
        info: None,
    }
}

fn channel_ok(channel: &str) -> Result<(), HubError> {
    check_channel(channel).map_err(|reason| HubError::InvalidChannel {
        channel: channel.to_owned(),
        reason,
    })
}

impl Hub {
    /// Checks the size of `data`, and that it is a Pusher event on a Pusher channel.
    fn data_ok(&self, channel: &str, data: &RawValue) -> Result<(), HubError> {
        let (size, limit) = (data.get().len(), self.shared.config.max_data_size);
        if size > limit {
            return Err(HubError::TooLarge { size, limit });
        }
        if channel.starts_with(crate::pusher::HUB_PREFIX)
            && let Err(e) = serde_json::from_str::<Envelope<'_>>(data.get())
        {
            return Err(HubError::Invalid {
                field: "data",
                reason: format!(
                    "a Pusher channel's data is {{\"event\": NAME, \"data\": DATA}} ({e})"
                ),
            });
        }
        Ok(())
    }

    /// Publishes `data` to `channel` from the server (its `from` has an empty user and
    /// connection, and `authenticated`), through the broker as a client's publish goes:
    /// an offset, history, delivery on every node. With `idempotency_key`, a publish repeated
    /// with the same key on the same channel within
    /// [`HubConfig::idempotency_window`](crate::HubConfig::idempotency_window) returns the
    /// first one's position and delivers nothing.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`], [`HubError::TooLarge`], [`HubError::Invalid`] for a key
    /// that is empty or longer than [`MAX_IDEMPOTENCY_KEY`], and [`HubError::Unavailable`]
    /// (nothing was published).
    pub async fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        idempotency_key: Option<&str>,
    ) -> Result<StreamPosition, HubError> {
        channel_ok(channel)?;
        self.data_ok(channel, &data)?;
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
        {
            let reason = format!("must be 1 to {MAX_IDEMPOTENCY_KEY} bytes");
            return Err(HubError::Invalid {
                field: "idempotency_key",
                reason,
            });
        }
        let broker = &self.shared.broker;
        // A broker may do its work in the call (`LocalBroker` delivers there): in the span.
        let span = tracing::debug_span!("broker", op = "publish", %channel);
        let published = span.in_scope(|| match idempotency_key {
            None => broker.publish(channel, server(), data),
            Some(key) => {
                let window = self.shared.config.idempotency_window;
                broker.publish_once(channel, server(), data, key, window)
            }
        });
        let position = published.instrument(span).await?;
        Ok(position)
    }

    /// Publishes the same `data` to each of `channels`, as [`publish`](Self::publish) does,
    /// and returns one result per channel, in order. Names and size are checked for all
    /// before any is published.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`] or [`HubError::TooLarge`] before anything is published;
    /// a broker failure on one channel is that channel's result.
    pub async fn broadcast(
        &self,
        channels: &[String],
        data: Box<RawValue>,
    ) -> Result<Vec<Result<StreamPosition, HubError>>, HubError> {
        for channel in channels {
            channel_ok(channel)?;
            self.data_ok(channel, &data)?;
        }
        let mut results = Vec::with_capacity(channels.len());
        for channel in channels {
            let published = self.shared.broker.publish(channel, server(), data.clone());
            results.push(published.await.map_err(HubError::from));
        }
        Ok(results)
    }

    /// The channel's position and its latest publications, oldest first: at most `limit`
    /// (default [`DEFAULT_HISTORY_LIMIT`], never more than
    /// [`HubConfig::max_replay`](crate::HubConfig::max_replay)); with `since`, the first of
    /// those after that offset.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`], [`HubError::Unavailable`].
    pub async fn history(
        &self,
        channel: &str,
        limit: Option<usize>,
        since: Option<u64>,
    ) -> Result<History, HubError> {
        channel_ok(channel)?;
        let limit = limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .min(self.shared.config.max_replay);
        let range = match since {
            None => HistoryRange::Latest(limit),
            Some(offset) => HistoryRange::After { offset, limit },
        };
        Ok(self.shared.broker.history(channel, range).await?)
    }

    /// The clients present on the channel, on every node.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`], [`HubError::Unavailable`].
    pub async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, HubError> {
        channel_ok(channel)?;
        Ok(self.shared.broker.presence(channel).await?)
    }

    /// The channels the connections of every node subscribe to, by name, with how many
    /// subscribe to each; with `pattern`, those it matches (`*` stands for any run of
    /// characters).
    ///
    /// # Errors
    ///
    /// [`HubError::Unavailable`] when the broker cannot reach the other nodes.
    pub async fn channels(&self, pattern: Option<&str>) -> Result<ChannelList, HubError> {
        let pattern = pattern.map(str::to_owned);
        let gathered = self.everywhere(NodeCommand::Channels { pattern }).await?;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for info in gathered
            .replies
            .into_iter()
            .flat_map(|reply| reply.channels)
        {
            *counts.entry(info.channel).or_default() += info.subscribers;
        }
        let channels = counts
            .into_iter()
            .map(|(channel, subscribers)| ChannelInfo {
                channel,
                subscribers,
            });
        Ok(ChannelList {
            channels: channels.collect(),
            unanswered: gathered.unanswered,
        })
    }

    /// The connections of every node whose user contains `user` (ignoring case; every
    /// connection without it), at most `limit` of each node: their address, user agent,
    /// channels, send queue and compression, for an operator to look at.
    ///
    /// # Errors
    ///
    /// [`HubError::Unavailable`] when the broker cannot reach the other nodes.
    pub async fn clients(&self, user: Option<&str>, limit: usize) -> Result<ClientList, HubError> {
        let command = NodeCommand::Connections {
            user: user.map(str::to_owned),
            limit,
        };
        let gathered = self.everywhere(command).await?;
        let clients = gathered.replies.into_iter().flat_map(|r| r.connections);
        Ok(ClientList {
            clients: clients.collect(),
            unanswered: gathered.unanswered,
        })
    }

    /// Every node: its name, its connections, its version.
    ///
    /// # Errors
    ///
    /// [`HubError::Unavailable`] when the broker cannot reach the other nodes.
    pub async fn info(&self) -> Result<ClusterInfo, HubError> {
        let gathered = self.everywhere(NodeCommand::Info).await?;
        let nodes: Vec<NodeInfo> = gathered.replies.into_iter().map(|r| r.node).collect();
        Ok(ClusterInfo {
            version: env!("CARGO_PKG_VERSION"),
            connections: nodes.iter().map(|node| node.connections).sum(),
            nodes,
            unanswered: gathered.unanswered,
        })
    }

    /// Closes the connections of `target` on every node with `code` and `reason`, and
    /// returns how many there were. Each leaves its channels as when its client closes.
    ///
    /// # Errors
    ///
    /// [`HubError::Invalid`] for a code that may not be sent (see
    /// [`CloseCode::is_allowed_on_wire`]) or a reason over 123 bytes;
    /// [`HubError::Partial`] when some node could not be asked or did not answer.
    pub async fn disconnect(
        &self,
        target: Target<'_>,
        code: CloseCode,
        reason: &str,
    ) -> Result<usize, HubError> {
        if !code.is_allowed_on_wire() {
            let reason = format!("{} may not be sent in a Close frame", code.0);
            return Err(HubError::Invalid {
                field: "code",
                reason,
            });
        }
        if reason.len() > 123 {
            let reason = "a close reason is at most 123 bytes".to_owned();
            return Err(HubError::Invalid {
                field: "reason",
                reason,
            });
        }
        let (user, conn) = match target {
            Target::User(user) => (Some(user.to_owned()), None),
            Target::Conn(conn) => (None, Some(conn.to_owned())),
        };
        let command = NodeCommand::Disconnect {
            user,
            conn,
            code: code.0,
            reason: reason.to_owned(),
        };
        self.everywhere(command).await?.complete()
    }

    /// Subscribes every connection of `user`, on every node, to `channel`, whatever the
    /// channel rules say: each gets a `subscribed` event (without `id`) and the channel's
    /// messages from then on, as if it had asked. Returns how many connections are
    /// subscribed (those that already were count).
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`]; [`HubError::Partial`] when some connection could not
    /// be subscribed (the broker failed, or it has its most subscriptions) or some node did
    /// not answer, with how many were.
    pub async fn subscribe(&self, user: &str, channel: &str) -> Result<usize, HubError> {
        channel_ok(channel)?;
        let command = NodeCommand::Subscribe {
            user: user.to_owned(),
            channel: channel.to_owned(),
        };
        self.everywhere(command).await?.complete()
    }

    /// Unsubscribes every connection of `user`, on every node, from `channel`: each that was
    /// subscribed gets an `unsubscribed` event (without `id`) and no more of its messages.
    /// Returns how many were subscribed.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`]; [`HubError::Partial`] when some node could not be
    /// asked or did not answer.
    pub async fn unsubscribe(&self, user: &str, channel: &str) -> Result<usize, HubError> {
        channel_ok(channel)?;
        let command = NodeCommand::Unsubscribe {
            user: user.to_owned(),
            channel: channel.to_owned(),
        };
        self.everywhere(command).await?.complete()
    }
}
