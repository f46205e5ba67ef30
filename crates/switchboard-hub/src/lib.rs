//! Messaging on top of `switchboard`: what a server does with its connections.
//!
//! - [`Hub`]: channels (rooms) over a JSON protocol ([`protocol`]): publish and subscribe with
//!   per-channel offsets, history, recovery of missed messages after a reconnect, presence with
//!   join/leave, optional JWT authentication ([`JwtKey`]) and per-channel rules
//!   ([`ChannelRule`]). The hub runs on a [`Broker`]: [`LocalBroker`] in-process, or
//!   `RedisBroker` (feature `redis`) shared by several nodes.
//! - [`echo`]: every message goes back to its sender (the first program of every WebSocket
//!   tutorial, and what conformance suites test against);
//! - [`Broadcast`]: every message goes to every other open client, as-is.
//! - [`pusher`]: the Pusher Channels protocol's apps, signatures and frames, and
//!   [`PusherApi`], Pusher's HTTP API for an app's backend.
//!
//! # Design
//!
//! The hub knows WebSocket messages and JSON, never sockets: connections come from the
//! `switchboard` runtime, and everything that must be shared between nodes (offsets, history,
//! presence, delivery) goes through the [`Broker`] trait.

mod api;
mod auth;
mod broker;
mod hooks;
mod http_post;
mod hub;
mod idempotency;
mod local;
mod nodes;
pub mod protocol;
mod proxy;
pub mod pusher;
mod pusher_api;
mod random;
mod raw;
#[cfg(feature = "redis")]
mod redis_broker;
mod request_id;
mod rules;
mod webhook;

pub use api::HttpApi;
pub use auth::{Claims, JwtKey, TokenError};
pub use broker::{
    BoxFuture, Broker, BrokerError, BrokerEvents, ClientInfo, History, HistoryConfig, HistoryRange,
    Publication, StreamPosition,
};
pub use hooks::{
    ConnectDecision, ConnectRequest, Connection, Hooks, PublishDecision, Refusal, SubscribeDecision,
};
pub use hub::{
    ChannelList, ClientList, ClusterInfo, DEFAULT_HEARTBEAT, DEFAULT_HISTORY_LIMIT, Hub, HubConfig,
    HubError, MAX_IDEMPOTENCY_KEY, MessageRate, RESTART_REASON, Target, restart_hint,
};
pub use local::LocalBroker;
pub use nodes::{ChannelInfo, ConnectionInfo, NodeCommand, NodeInfo, NodeReplies, NodeReply};
pub use protocol::ErrorCode;
pub use proxy::{HttpProxy, OnFailure, ProxyEndpoint, ProxyMetrics, ProxyUrlError};
pub use pusher_api::PusherApi;
pub use raw::{Broadcast, BroadcastHandler, Echo, EchoHandler, echo};
#[cfg(feature = "redis")]
pub use redis_broker::{RedisBroker, RedisConfig, RedisConnectOptions};
pub use request_id::{MAX_REQUEST_ID, REQUEST_ID_HEADER};
pub use rules::{ChannelRule, Policy, RuleParseError};
pub use webhook::{EventKind, UnknownEvent, WebhookConfig, WebhookMetrics};
