//! [`RedisBroker`]: channels shared by several nodes through one Redis.
//!
//! - **Publish** runs one Lua script that gives the publication the channel's next offset,
//!   appends it to the channel's stream (capped at the history size, trimmed by age when a
//!   TTL is set) and publishes it on the channel's Pub/Sub, atomically. Offsets, epochs and
//!   history live in Redis, so a client recovers with `since` on whichever node it reaches.
//! - **Delivery**: a node subscribes to the Pub/Sub of the channels its clients follow, and
//!   only those. It remembers the last offset it delivered per channel; a publication that
//!   skips one (after the Pub/Sub connection was lost and made again) is preceded by the
//!   missing ones, read from the stream. When that cannot be done (the epoch changed because
//!   Redis lost its data, or more was missed than history holds), the hub is told the stream
//!   was lost ([`BrokerEvents::stream_lost`]) and its subscribers recover by reconnecting.
//! - **Presence** entries name the node that made them. Every node refreshes its own
//!   deadline in Redis and sweeps the nodes whose deadline passed, removing their clients and
//!   announcing each leave: a crashed node's clients disappear after
//!   [`RedisConfig::node_timeout`]. After Redis lost its data, or a join or leave failed
//!   during an outage, a node makes Redis's entries match its clients again. Join and leave
//!   events are not kept: a node whose Pub/Sub connection was down misses those of that
//!   time (a `presence` query is always current).
//! - **Outages**: every request to Redis is bounded by [`RedisConfig::timeout`] and fails
//!   with [`BrokerError::Unavailable`] meanwhile (a publish is then not acknowledged); the
//!   connections come back by themselves, with backoff.
//!
//! Keys and scripts are described in `scripts.rs`; everything lives under
//! [`RedisConfig::prefix`].

mod follow;
mod scripts;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::IntoConnectionInfo as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::broker::{
    BoxFuture, Broker, BrokerError, BrokerEvents, ClientInfo, History, HistoryRange, StreamPosition,
};
use crate::local::{HistoryConfig, IDLE_CHANNEL};
use follow::{Command, Follower};
use scripts::{Body, Keys, Scripts};

/// Where the Redis broker connects and how it keeps channels.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` is refused: this build has no
    /// TLS for Redis).
    pub url: String,
    /// How much history each channel keeps (the same for every node of a deployment).
    pub history: HistoryConfig,
    /// Prefix of every key and Pub/Sub channel, so deployments can share one Redis.
    pub prefix: String,
    /// A node whose heartbeat Redis has not seen for this long counts as gone: its clients
    /// leave every channel's presence. Nodes beat three times per timeout.
    pub node_timeout: Duration,
    /// The longest a request to Redis may take before it fails as unavailable.
    pub timeout: Duration,
}

impl RedisConfig {
    /// Defaults for Redis at `url`: 100 messages of history per channel, prefix
    /// `switchboard`, nodes gone after 10 s of silence, requests bounded to 3 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            history: HistoryConfig::default(),
            prefix: "switchboard".into(),
            node_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
        }
    }

    /// How long a channel's position is kept after its last use: for ever while history
    /// holds the channel (no TTL), else until its history expired and ten idle minutes more.
    fn position_ttl(&self) -> Duration {
        match (self.history.size, self.history.ttl) {
            (0, _) => IDLE_CHANNEL,
            (_, Some(ttl)) => ttl + IDLE_CHANNEL,
            (_, None) => Duration::ZERO,
        }
    }
}

/// The broker over Redis: any number of nodes share channels, history and presence.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use switchboard_hub::{Hub, HubConfig, RedisBroker, RedisConfig};
///
/// let broker = RedisBroker::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let hub = Hub::new(Arc::new(broker), HubConfig::default()).await?;
/// # Ok(())
/// # }
/// ```
///
/// Dropping the broker stops its background tasks (Pub/Sub and heartbeat).
#[derive(Debug)]
pub struct RedisBroker {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    /// The follower's end of `commands`, until `start` hands it over.
    pending: Mutex<Option<mpsc::Receiver<Command>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the broker and its tasks share.
#[derive(Debug)]
struct Shared {
    config: RedisConfig,
    client: redis::Client,
    con: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    /// This node's name in presence entries.
    node: String,
    /// Presence entries this node made, by (channel, connection id): what Redis is made to
    /// match after it lost them or an outage.
    present: Mutex<HashMap<(String, String), ClientInfo>>,
    /// A join or leave failed: Redis's presence entries may differ from `present`.
    unsure: AtomicBool,
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Shared {
    /// Runs a request against Redis, bounded by the configured timeout.
    async fn bounded<T>(
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

    fn present(&self) -> MutexGuard<'_, HashMap<(String, String), ClientInfo>> {
        // The map is consistent after every operation, so a poisoned lock is still usable.
        self.present.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a channel's position (creating it when missing) and `range` of its history.
    async fn stream(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> Result<scripts::Stream, BrokerError> {
        let history = &self.config.history;
        let mut invocation = self.scripts.history.prepare_invoke();
        invocation
            .key(self.keys.meta(channel))
            .key(self.keys.history(channel))
            .arg(crate::random_hex(8));
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

    /// Adds a presence entry; announces it when it is new.
    async fn join(&self, channel: &str, client: &ClientInfo) -> Result<(), BrokerError> {
        let json = serde_json::to_string(client).map_err(unavailable)?;
        let mut con = self.con.clone();
        let mut invocation = self.scripts.join.prepare_invoke();
        invocation
            .key(self.keys.presence(channel))
            .key(self.keys.node(&self.node))
            .arg(&client.conn)
            .arg(&self.node)
            .arg(json)
            .arg(self.keys.pubsub(channel))
            .arg(format!("{} {channel}", client.conn));
        let _fresh: i64 = self.bounded(invocation.invoke_async(&mut con)).await?;
        Ok(())
    }

    /// Removes a presence entry; announces it when there was one.
    async fn leave(&self, channel: &str, conn: &str) -> Result<(), BrokerError> {
        let mut con = self.con.clone();
        let mut invocation = self.scripts.leave.prepare_invoke();
        invocation
            .key(self.keys.presence(channel))
            .key(self.keys.node(&self.node))
            .arg(conn)
            .arg(self.keys.pubsub(channel))
            .arg(format!("{conn} {channel}"));
        let _gone: i64 = self.bounded(invocation.invoke_async(&mut con)).await?;
        Ok(())
    }

    /// Beats, sweeps gone nodes, and makes Redis's presence entries of this node match its
    /// clients again when they may differ: Redis did not know the node (it lost its data, or
    /// swept the node after a long silence), or joins and leaves failed during an outage.
    async fn heartbeat(&self, reconcile: &mut bool) -> Result<(), BrokerError> {
        let mut con = self.con.clone();
        let mut invocation = self.scripts.heartbeat.prepare_invoke();
        invocation
            .key(self.keys.nodes())
            .arg(&self.node)
            .arg(millis(self.config.node_timeout))
            .arg(self.keys.prefix());
        let fresh: i64 = self.bounded(invocation.invoke_async(&mut con)).await?;
        *reconcile |= fresh == 1 || self.unsure.swap(false, Ordering::Relaxed);
        if *reconcile {
            self.reconcile().await?;
            *reconcile = false;
        }
        Ok(())
    }

    async fn reconcile(&self) -> Result<(), BrokerError> {
        let entries: Vec<_> = self.present().clone().into_iter().collect();
        for ((channel, _), client) in &entries {
            self.join(channel, client).await?;
        }
        // Entries of clients that are gone: a leave that failed, or a client that left while
        // the joins above ran (and was registered again after its leave).
        let mut con = self.con.clone();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.keys.node(&self.node));
        let members: Vec<String> = self.bounded(members.query_async(&mut con)).await?;
        let mut removed = 0;
        for member in members {
            let Some((conn, channel)) = member.split_once(' ') else {
                continue;
            };
            let key = (channel.to_owned(), conn.to_owned());
            if !self.present().contains_key(&key) {
                self.leave(channel, conn).await?;
                removed += 1;
            }
        }
        tracing::debug!(
            node = %self.node,
            entries = entries.len(),
            removed,
            "presence reconciled with redis"
        );
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisBroker {
    /// Connects to Redis (one connection for requests; [`start`](Broker::start) opens the
    /// Pub/Sub one).
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis cannot be reached within the configured timeout.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        let invalid = |e| unavailable(format!("invalid redis url {:?}: {e}", config.url));
        // Requests are small and latency matters: no Nagle delay behind an unacknowledged one.
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(invalid)?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(invalid)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let con = tokio::time::timeout(
            config.timeout,
            client.get_connection_manager_with_config(manager),
        )
        .await
        .map_err(|_| unavailable(format!("cannot reach redis at {}: timed out", config.url)))?
        .map_err(|e| unavailable(format!("cannot reach redis at {}: {e}", config.url)))?;
        let (commands, pending) = mpsc::channel(64);
        let keys = Keys::new(&config.prefix);
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client,
                con,
                keys,
                scripts: Scripts::new(),
                node: crate::random_hex(8),
                present: Mutex::new(HashMap::new()),
                unsure: AtomicBool::new(false),
            }),
            commands,
            pending: Mutex::new(Some(pending)),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// This node's name in Redis (in presence entries and the heartbeat set).
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    async fn follower(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), BrokerError>>) -> Command,
    ) -> Result<(), BrokerError> {
        let (done, result) = oneshot::channel();
        // The follower may be busy reconnecting: the wait is bounded, and a command it has
        // not started when the wait ends is dropped (one it finished is undone).
        let wait = self.shared.config.timeout * 2;
        let request = async {
            self.commands
                .send(command(done))
                .await
                .map_err(|_| unavailable("the broker is not running"))?;
            result
                .await
                .map_err(|_| unavailable("the broker is not running"))?
        };
        tokio::time::timeout(wait, request)
            .await
            .map_err(|_| unavailable(format!("redis pub/sub did not answer within {wait:?}")))?
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

impl Broker for RedisBroker {
    fn start(&self, events: Arc<dyn BrokerEvents>) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let pending = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let Some(commands) = pending else {
                return Err(unavailable("the broker was already started"));
            };
            let follower = Follower::connect(self.shared.clone(), events).await?;
            let beat = self.shared.clone();
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.push(tokio::spawn(follower.run(commands)));
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(beat.config.node_timeout / 3);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut reconcile = false;
                let mut failing = false;
                loop {
                    every.tick().await;
                    match beat.heartbeat(&mut reconcile).await {
                        Ok(()) if failing => {
                            failing = false;
                            tracing::info!("redis heartbeat works again");
                        }
                        Ok(()) => {}
                        Err(e) => {
                            // Joins and leaves may have failed too: reconcile once it works.
                            reconcile = true;
                            if !failing {
                                failing = true;
                                tracing::warn!(error = %e, "redis heartbeat failed");
                            }
                        }
                    }
                }
            }));
            Ok(())
        })
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(self.follower(move |done| Command::Subscribe(channel, done)))
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(self.follower(move |done| Command::Unsubscribe(channel, done)))
    }

    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let shared = &self.shared;
            let body = serde_json::to_string(&Body {
                from: &from,
                data: &data,
            })
            .map_err(unavailable)?;
            let history = &shared.config.history;
            let mut invocation = shared.scripts.publish.prepare_invoke();
            invocation
                .key(shared.keys.meta(&channel))
                .key(shared.keys.history(&channel))
                .arg(shared.keys.pubsub(&channel))
                .arg(crate::random_hex(8))
                .arg(body)
                .arg(history.size)
                .arg(millis(history.ttl.unwrap_or_default()))
                .arg(millis(shared.config.position_ttl()));
            let mut con = shared.con.clone();
            let (epoch, offset): (String, u64) =
                shared.bounded(invocation.invoke_async(&mut con)).await?;
            Ok(StreamPosition { epoch, offset })
        })
    }

    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let stream = self.shared.stream(&channel, range).await?;
            Ok(History {
                position: StreamPosition {
                    epoch: stream.epoch,
                    offset: stream.top,
                },
                publications: stream.publications,
            })
        })
    }

    fn join(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            // Remembered first, so that registering again after a Redis restart includes it.
            self.shared
                .present()
                .insert((channel.clone(), client.conn.clone()), client.clone());
            let joined = self.shared.join(&channel, &client).await;
            if joined.is_err() {
                self.shared.unsure.store(true, Ordering::Relaxed);
            }
            joined
        })
    }

    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            self.shared
                .present()
                .remove(&(channel.clone(), client.conn.clone()));
            let left = self.shared.leave(&channel, &client.conn).await;
            if left.is_err() {
                self.shared.unsure.store(true, Ordering::Relaxed);
            }
            left
        })
    }

    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let shared = &self.shared;
            let mut invocation = shared.scripts.presence.prepare_invoke();
            invocation
                .key(shared.keys.presence(&channel))
                .key(shared.keys.nodes());
            let mut con = shared.con.clone();
            let entries: Vec<String> = shared.bounded(invocation.invoke_async(&mut con)).await?;
            let mut clients = Vec::with_capacity(entries.len());
            for json in entries {
                match serde_json::from_str::<ClientInfo>(&json) {
                    Ok(client) => clients.push(client),
                    Err(e) => tracing::warn!(%channel, error = %e, "unreadable presence entry"),
                }
            }
            clients.sort_by(|a, b| a.conn.cmp(&b.conn));
            Ok(clients)
        })
    }
}
