//! [`RedisConfig`]: where the Redis broker connects and how long it keeps what.

use std::time::Duration;

use super::connect::RedisConnectOptions;
use crate::broker::{HistoryConfig, IDLE_CHANNEL};

/// Where the Redis broker connects and how it keeps channels.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host:port[/db]`, or `rediss://` for TLS. Several URLs
    /// separated by commas shard the channels over as many independent Redis servers (see
    /// [`RedisBroker`](super::RedisBroker)); every node must list the same servers in the same
    /// order. A comma in a password is written `%2C`. With [`cluster`](Self::cluster), the
    /// URLs are seeds of one Redis Cluster: any of them that answers tells where the masters
    /// are.
    pub url: String,
    /// [`url`](Self::url) names a Redis Cluster (Redis 7): each master holds the channels of
    /// the slots it owns (see [`RedisBroker`](super::RedisBroker)).
    pub cluster: bool,
    /// TLS trust, credentials and the connect timeout.
    pub connect: RedisConnectOptions,
    /// How much history each channel keeps (the same for every node of a deployment).
    pub history: HistoryConfig,
    /// Prefix of every key and Pub/Sub channel, so deployments can share one Redis.
    pub prefix: String,
    /// A node whose heartbeat Redis has not seen for this long counts as gone: its clients
    /// leave every channel's presence. Nodes beat three times per timeout.
    pub node_timeout: Duration,
    /// The longest a request to Redis may take before it fails as unavailable (the response
    /// timeout; opening a connection has [`RedisConnectOptions::connect_timeout`]).
    pub timeout: Duration,
}

impl RedisConfig {
    /// Defaults for Redis at `url` (not a cluster): 100 messages of history per channel, prefix
    /// `switchboard`, nodes gone after 10 s of silence, requests bounded to 3 s, and
    /// [`RedisConnectOptions::default`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            connect: RedisConnectOptions::default(),
            history: HistoryConfig::default(),
            prefix: "switchboard".into(),
            node_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
        }
    }

    /// The URLs of [`url`](Self::url), one per shard, in order.
    pub(super) fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }

    /// How long a channel's position is kept after its last use: for ever while history
    /// holds the channel (no TTL), else until its history expired and ten idle minutes more.
    pub(super) fn position_ttl(&self) -> Duration {
        match (self.history.size, self.history.ttl) {
            (0, _) => IDLE_CHANNEL,
            (_, Some(ttl)) => ttl + IDLE_CHANNEL,
            (_, None) => Duration::ZERO,
        }
    }

    /// How often a node beats (and its follower pings): three times per node timeout.
    pub(super) fn beat_every(&self) -> Duration {
        self.node_timeout / 3
    }
}

/// A duration in the milliseconds the scripts take (where 0 means no expiry).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
