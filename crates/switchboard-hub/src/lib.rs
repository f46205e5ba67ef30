//! Messaging on top of `switchboard`: what a server does with its connections.
//!
//! - [`Hub`]: channels (rooms) over a JSON protocol ([`protocol`]): publish and subscribe with
//!   per-channel offsets, history, recovery of missed messages after a reconnect, presence with
//!   join/leave, optional JWT authentication ([`auth`]) and per-channel [`rules`]. The hub runs
//!   on a [`Broker`]: [`LocalBroker`] in-process, or `RedisBroker` (feature `redis`) shared by
//!   several nodes.
//! - [`echo`]: every message goes back to its sender (the first program of every WebSocket
//!   tutorial, and what conformance suites test against);
//! - [`Broadcast`]: every message goes to every other open client, as-is.
//!
//! # Design
//!
//! The hub knows WebSocket messages and JSON, never sockets: connections come from the
//! `switchboard` runtime, and everything that must be shared between nodes (offsets, history,
//! presence, delivery) goes through the [`Broker`] trait.

pub mod auth;
pub mod broker;
mod hub;
mod local;
pub mod protocol;
mod raw;
#[cfg(feature = "redis")]
mod redis_broker;
pub mod rules;

pub use auth::{Claims, JwtKey, TokenError};
pub use broker::{
    Broker, BrokerError, ClientInfo, History, HistoryRange, Publication, StreamPosition,
};
pub use hub::{Hub, HubConfig};
pub use local::{HistoryConfig, LocalBroker};
pub use protocol::ErrorCode;
pub use raw::{Broadcast, Echo, echo};
#[cfg(feature = "redis")]
pub use redis_broker::{RedisBroker, RedisConfig};
pub use rules::{ChannelRule, Policy};

/// `bytes` random bytes from the operating system, in hex (epochs, connection ids).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // No OS randomness: fall back to the clock, which still differs between restarts
        // (all an epoch needs) and between nodes started apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
