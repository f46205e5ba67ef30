//! What one node of a deployment asks of the others: the server API's actions on connections
//! (disconnect, subscribe, unsubscribe) and its questions about them (info, channels,
//! connections) reach
//! every node sharing the broker, because a user's connections may be on any of them.
//!
//! The hub runs a [`NodeCommand`] on its own connections and hands it to
//! [`Broker::ask_nodes`](crate::Broker::ask_nodes) for the others; each of those runs it
//! through [`BrokerEvents::command`](crate::BrokerEvents::command) and answers a
//! [`NodeReply`].

use serde::{Deserialize, Serialize};

/// An action on, or a question about, the connections of every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeCommand {
    /// Say how many connections the node has (every reply does).
    Info,
    /// List the channels the node's connections subscribe to, those `pattern` matches.
    Channels {
        /// `*` stands for any run of characters; none lists every channel.
        pattern: Option<String>,
    },
    /// Close the connections of `user`, or the one with id `conn`.
    Disconnect {
        /// Every connection of this user.
        user: Option<String>,
        /// The connection with this id.
        conn: Option<String>,
        /// The close code (already checked to be one that may be sent).
        code: u16,
        /// The close reason (at most 123 bytes).
        reason: String,
    },
    /// Subscribe every connection of `user` to `channel`.
    Subscribe {
        /// Whose connections.
        user: String,
        /// The channel.
        channel: String,
    },
    /// Unsubscribe every connection of `user` from `channel`.
    Unsubscribe {
        /// Whose connections.
        user: String,
        /// The channel.
        channel: String,
    },
    /// List the node's connections whose user contains `user` (ignoring case), at most
    /// `limit` of them.
    Connections {
        /// Part of a user's name; none lists every connection.
        user: Option<String>,
        /// The most connections one node lists.
        limit: usize,
    },
}

/// One connection, as [`Hub::clients`](crate::Hub::clients) lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection's id.
    pub conn: String,
    /// Its user (empty for an anonymous one).
    pub user: String,
    /// The node it is connected to.
    pub node: String,
    /// The client's address (the one trusted proxies forwarded, else the peer's).
    pub address: Option<String>,
    /// Its `User-Agent` header (at most 256 characters).
    pub user_agent: Option<String>,
    /// The channels it subscribes to; `None` when its session did not answer in time.
    pub subscriptions: Option<Vec<String>>,
    /// Bytes waiting in its send queue; 0 for a connection served on an event loop, whose
    /// queue only its loop sees.
    pub send_queue: usize,
    /// Whether permessage-deflate was agreed.
    pub compression: bool,
    /// When it connected, in milliseconds since the Unix epoch.
    pub since: u64,
}

/// One node, as [`Hub::info`](crate::Hub::info) lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's name: the prefix of its connection ids.
    pub node: String,
    /// Clients connected to the node.
    pub connections: usize,
    /// The node's version of the hub.
    pub version: String,
    /// When the node's hub started, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub started: u64,
    /// Channels its connections subscribe to.
    #[serde(default)]
    pub channels: usize,
    /// Publications it has fanned out to its subscribers since it started.
    #[serde(default)]
    pub publications: u64,
    /// Messages it has queued for its subscribers since it started: publications times the
    /// subscribers each reached, and presence events.
    #[serde(default)]
    pub deliveries: u64,
    /// Subscribers it dropped because their send queue was full.
    #[serde(default)]
    pub lagged: u64,
}

/// A channel, as [`Hub::channels`](crate::Hub::channels) lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel's name.
    pub channel: String,
    /// How many connections subscribe to it.
    pub subscribers: usize,
}

/// What a node answers to a [`NodeCommand`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeReply {
    /// The node that answers.
    pub node: NodeInfo,
    /// How many connections did what was asked (for subscribe, those already subscribed
    /// count; for unsubscribe, those that were subscribed).
    #[serde(default)]
    pub done: usize,
    /// Why some connections could not do it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// For [`NodeCommand::Channels`], the node's channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelInfo>,
    /// For [`NodeCommand::Connections`], the node's connections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ConnectionInfo>,
}

/// The answers of the other nodes to [`Broker::ask_nodes`](crate::Broker::ask_nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeReplies {
    /// One per node that answered in time.
    pub replies: Vec<NodeReply>,
    /// Nodes that heard the command but did not answer in time: whether they did it is
    /// unknown.
    pub unanswered: usize,
}

impl NodeReplies {
    /// Replies from the nodes that answered, and how many did not.
    pub fn new(replies: Vec<NodeReply>, unanswered: usize) -> Self {
        Self {
            replies,
            unanswered,
        }
    }
}
