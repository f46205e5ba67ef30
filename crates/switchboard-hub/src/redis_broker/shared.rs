//! What the broker and its tasks share: the Redis server and connection, the keys and
//! scripts, and the requests every part makes (each bounded by [`RedisConfig::timeout`]).

use std::future::Future;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::config::{RedisConfig, millis};
use super::connect::Server;
use super::metrics::{Health, Metrics};
use super::scripts::{self, Keys, Scripts};
use super::subscriber::Subscriber;
use crate::broker::{BrokerError, HistoryRange};
use crate::random::random_hex;

/// What the broker and its tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: RedisConfig,
    /// Which shard this is, `shard N (HOST:PORT)`, when there are several.
    pub(super) shard: Option<String>,
    pub(super) server: Server,
    pub(super) con: ConnectionManager,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
    pub(super) metrics: Metrics,
    pub(super) health: Health,
}

/// What errors about `shard` (`shard N (HOST:PORT)`, or none with one Redis) name.
pub(super) fn what(shard: Option<&str>) -> String {
    match shard {
        Some(shard) => format!("redis {shard}"),
        None => "redis".to_owned(),
    }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Shared {
    /// What errors name: `redis`, or `redis shard N (HOST:PORT)`.
    pub(super) fn what(&self) -> String {
        what(self.shard.as_deref())
    }

    /// Runs a request against Redis, bounded by the configured timeout; counts its round
    /// trip and how it ended.
    pub(super) async fn bounded<T>(
        &self,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let sent = Instant::now();
        let result = match tokio::time::timeout(self.config.timeout, request).await {
            Ok(Ok(value)) => {
                self.health.answered();
                Ok(value)
            }
            Ok(Err(e)) => {
                self.metrics.error();
                Err(format!("{}: {e}", self.what()))
            }
            Err(_) => {
                self.metrics.timeout();
                Err(format!(
                    "{} did not answer within {:?}",
                    self.what(),
                    self.config.timeout
                ))
            }
        };
        self.metrics.round_trip(sent.elapsed());
        result.map_err(|why| {
            self.health.failed(&why);
            BrokerError::Unavailable(why)
        })
    }

    /// Runs a script (by hash, loading it when Redis lacks it), bounded by the configured
    /// timeout.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, BrokerError> {
        let mut con = self.con.clone();
        self.bounded(invocation.invoke_async(&mut con)).await
    }

    /// Opens a Pub/Sub connection, bounded by the connect timeout. A failure is counted, and
    /// is why Pub/Sub is down (for the health check) until the follower is connected again.
    pub(super) async fn pubsub(&self) -> Result<Subscriber, BrokerError> {
        let result = self.server.pubsub().await;
        if let Err(BrokerError::Unavailable(why)) = &result {
            self.metrics.error();
            self.health.pubsub(Some(why.clone()));
        }
        result
    }

    /// Reads a channel's position (creating it when missing) and `range` of its history.
    pub(super) async fn stream(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> Result<scripts::Stream, BrokerError> {
        let history = &self.config.history;
        let mut invocation = self.scripts.history.prepare_invoke();
        invocation
            .key(self.keys.meta(channel))
            .key(self.keys.history(channel))
            .arg(random_hex(8));
        match range {
            HistoryRange::Latest(n) => invocation.arg("latest").arg(n).arg(0),
            HistoryRange::After { offset, limit } => invocation
                .arg("after")
                .arg(format!("0-{}", offset.saturating_add(1)))
                .arg(limit),
        };
        invocation
            .arg(millis(history.ttl.unwrap_or_default()))
            .arg(millis(self.config.position_ttl()));
        let reply: Vec<String> = self.invoke(&invocation).await?;
        scripts::stream(reply).map_err(unavailable)
    }
}
