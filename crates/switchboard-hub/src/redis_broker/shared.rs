//! What the broker and its tasks share: the Redis client and connection, the keys and
//! scripts, and the requests every part makes (each bounded by [`RedisConfig::timeout`]).

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::value::RawValue;

use super::config::{RedisConfig, millis};
use super::scripts::{self, Body, Keys, Scripts};
use crate::broker::{BrokerError, ClientInfo, HistoryRange, StreamPosition};
use crate::random::random_hex;

/// What the broker and its tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: RedisConfig,
    pub(super) client: redis::Client,
    pub(super) con: ConnectionManager,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Shared {
    /// Runs a request against Redis, bounded by the configured timeout.
    pub(super) async fn bounded<T>(
        &self,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.config.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(unavailable(format!("redis: {e}"))),
            Err(_) => Err(unavailable(format!(
                "redis did not answer within {:?}",
                self.config.timeout
            ))),
        }
    }

    /// Gives `data` the channel's next offset, appends it to history and publishes it. With
    /// `once` (an idempotency key and its window), a key seen within its window returns the
    /// position it was given instead.
    pub(super) async fn publish(
        &self,
        channel: &str,
        from: &ClientInfo,
        data: &RawValue,
        once: Option<(&str, Duration)>,
    ) -> Result<StreamPosition, BrokerError> {
        let body = serde_json::to_string(&Body { from, data }).map_err(unavailable)?;
        let history = &self.config.history;
        let mut invocation = self.scripts.publish.prepare_invoke();
        invocation
            .key(self.keys.meta(channel))
            .key(self.keys.history(channel));
        if let Some((key, _)) = once {
            invocation.key(self.keys.once(channel, key));
        }
        invocation
            .arg(self.keys.pubsub(channel))
            .arg(random_hex(8))
            .arg(body)
            .arg(history.size)
            .arg(millis(history.ttl.unwrap_or_default()))
            .arg(millis(self.config.position_ttl()));
        if let Some((_, window)) = once {
            // PX refuses 0.
            invocation.arg(millis(window).max(1));
        }
        let mut con = self.con.clone();
        let (epoch, offset): (String, u64) =
            self.bounded(invocation.invoke_async(&mut con)).await?;
        Ok(StreamPosition { epoch, offset })
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
        let mut con = self.con.clone();
        let reply: Vec<String> = self.bounded(invocation.invoke_async(&mut con)).await?;
        scripts::stream(reply).map_err(unavailable)
    }
}
