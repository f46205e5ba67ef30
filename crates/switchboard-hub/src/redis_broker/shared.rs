//! What the broker and its tasks share: the Redis server and connection, the keys and
//! scripts, and the requests every part makes (each bounded by [`RedisConfig::timeout`]).
//!
//! On a Redis Cluster the server is the master that owns the shard's slots, which changes
//! when a replica takes over from a failed master: [`Shared::relocate`] finds the new one.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::cluster;
use super::config::{RedisConfig, millis};
use super::connect::Server;
use super::decode::{self, Stream};
use super::keys::Keys;
use super::metrics::{Health, Metrics};
use super::scripts::Scripts;
use super::subscriber::Subscriber;
use crate::broker::{BrokerError, HistoryRange};
use crate::random::random_hex;

/// What the broker and its tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: RedisConfig,
    /// Which shard this is, when there are several (errors then name it).
    index: Option<usize>,
    /// On a Redis Cluster, the first slot of the shard: whose master it follows.
    slot: Option<u16>,
    place: Mutex<Arc<Place>>,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
    pub(super) metrics: Metrics,
    pub(super) health: Health,
}

/// The server a shard is on, and the connection for requests to it.
#[derive(Debug)]
struct Place {
    server: Server,
    con: ConnectionManager,
}

/// What errors about shard `index` on `server` (or the only Redis) name.
fn what(index: Option<usize>, server: &Server) -> String {
    match index {
        Some(index) => format!("redis shard {index} ({})", server.name()),
        None => "redis".to_owned(),
    }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Shared {
    /// The shard `index` (none with one Redis) on `server`, over `con`; on a Redis Cluster,
    /// the shard whose first slot is `slot`.
    pub(super) fn new(
        config: RedisConfig,
        index: Option<usize>,
        slot: Option<u16>,
        server: Server,
        con: ConnectionManager,
        keys: Keys,
    ) -> Self {
        Self {
            health: Health::new(what(index, &server)),
            config,
            index,
            slot,
            place: Mutex::new(Arc::new(Place { server, con })),
            scripts: Scripts::new(&keys),
            keys,
            metrics: Metrics::new(),
        }
    }

    fn place(&self) -> MutexGuard<'_, Arc<Place>> {
        // Replaced whole, so a poisoned lock still holds a usable place.
        self.place.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection for requests (a handle: cheap to clone, reconnects by itself).
    pub(super) fn con(&self) -> ConnectionManager {
        self.place().con.clone()
    }

    /// What errors name: `redis`, or `redis shard N (HOST:PORT)`.
    pub(super) fn what(&self) -> String {
        what(self.index, &self.place().server)
    }

    /// On a Redis Cluster, asks the seeds which master owns the shard's slots now and
    /// moves the shard there when it changed (a replica took over); true when it moved.
    pub(super) async fn relocate(&self) -> bool {
        let Some(slot) = self.slot else {
            return false;
        };
        let masters = match cluster::masters(&self.config).await {
            Ok(masters) => masters,
            Err(e) => {
                tracing::debug!(error = %e, "redis cluster slots not found");
                return false;
            }
        };
        let Some(master) = masters
            .into_iter()
            .find(|master| master.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)))
        else {
            return false;
        };
        let place = self.place().clone();
        if master.server.name() == place.server.name() {
            return false;
        }
        let con = match master.server.manager().await {
            Ok(con) => con,
            Err(e) => {
                tracing::debug!(error = %e, "new redis cluster master not reached");
                return false;
            }
        };
        tracing::warn!(
            shard = self.index,
            from = %place.server.name(),
            to = %master.server.name(),
            "redis cluster slots moved to another master; following them"
        );
        *self.place() = Arc::new(Place {
            server: master.server,
            con,
        });
        self.health.rename(self.what());
        true
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
        let mut con = self.con();
        self.bounded(invocation.invoke_async(&mut con)).await
    }

    /// Opens a Pub/Sub connection, bounded by the connect timeout. A failure is counted, and
    /// is why Pub/Sub is down (for the health check) until the follower is connected again.
    pub(super) async fn pubsub(&self) -> Result<Subscriber, BrokerError> {
        let place = self.place().clone();
        let result = place.server.pubsub().await;
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
    ) -> Result<Stream, BrokerError> {
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
        decode::stream(reply).map_err(unavailable)
    }
}
