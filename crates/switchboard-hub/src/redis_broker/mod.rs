//! [`RedisBroker`]: channels shared by several nodes through one Redis.
//!
//! - **Publish** runs one Lua script that gives the publication the channel's next offset,
//!   appends it to the channel's stream (capped at the history size, trimmed by age when a
//!   TTL is set) and publishes it on the channel's Pub/Sub, atomically. Offsets, epochs and
//!   history live in Redis, so a client recovers with `since` on whichever node it reaches.
//!   A node's publishes queue in call order and go to Redis in pipelined batches, one script
//!   call per run of publishes to one channel (`pipeline.rs`).
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
//! - **Commands between nodes** (the server API's disconnect, subscribe, info...) go over one
//!   Pub/Sub channel that every node follows; the asker waits for as many replies as PUBLISH
//!   says nodes heard it (`control.rs`).
//! - **Outages**: every request to Redis is bounded by [`RedisConfig::timeout`] and fails
//!   with [`BrokerError::Unavailable`] meanwhile (a publish is then not acknowledged); the
//!   connections come back by themselves, with backoff. [`Broker::health`] says Redis is
//!   unreachable while the Pub/Sub connection is down or the last request failed.
//! - **History reads** of the same channel and range at the same moment share one read
//!   (`reads.rs`).
//!
//! Keys and scripts are described in `scripts.rs`; everything lives under
//! [`RedisConfig::prefix`]. The settings are in `config.rs`, how connections are opened (TLS,
//! credentials, connect timeout) in `connect.rs`, the connection and requests every part
//! makes in `shared.rs`, presence and the heartbeat in `presence.rs`,
//! delivery in `follow.rs`, and what it counts for `/metrics` in `metrics.rs`.

mod config;
mod connect;
mod control;
mod follow;
mod metrics;
mod pipeline;
mod presence;
mod reads;
mod scripts;
mod shared;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::broker::{
    BoxFuture, Broker, BrokerError, BrokerEvents, ClientInfo, History, HistoryRange, StreamPosition,
};
use crate::nodes::{NodeCommand, NodeReplies};
use crate::random::random_hex;
pub use config::RedisConfig;
pub use connect::RedisConnectOptions;
use connect::Server;
use control::Control;
use follow::{Command, Follower};
use metrics::{Health, Metrics};
use pipeline::Publish;
use presence::Presence;
use reads::Reads;
use scripts::{Body, Keys, Scripts};
use shared::{Shared, unavailable};

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
    /// This node's asks to the others, waiting for replies.
    control: Arc<Control>,
    presence: Arc<Presence>,
    commands: mpsc::Sender<Command>,
    /// The queue of publishes to Redis (see `pipeline.rs`).
    publishes: mpsc::UnboundedSender<Publish>,
    /// History reads being gathered (see `reads.rs`).
    reads: Arc<Reads>,
    /// The follower's end of `commands`, until `start` hands it over.
    pending: Mutex<Option<mpsc::Receiver<Command>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RedisBroker {
    /// Connects to Redis (one connection for requests; [`start`](Broker::start) opens the
    /// Pub/Sub one).
    ///
    /// # Errors
    ///
    /// When the URL or the TLS settings are invalid, or Redis cannot be reached (refused,
    /// TLS or authentication failed, no answer within the connect timeout): the message
    /// names the server, never the password.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        let server = Server::new(&config.url, &config.connect, config.timeout)?;
        let con = server.manager().await?;
        let (commands, pending) = mpsc::channel(64);
        let keys = Keys::new(&config.prefix);
        let node = random_hex(8);
        let shared = Arc::new(Shared {
            config,
            server,
            con,
            keys,
            scripts: Scripts::new(),
            metrics: Metrics::new(),
            health: Health::default(),
        });
        let (publishes, queue) = mpsc::unbounded_channel();
        let writer = tokio::spawn(pipeline::write(shared.clone(), queue));
        Ok(Self {
            control: Arc::new(Control::new(node.clone())),
            presence: Arc::new(Presence::new(shared.clone(), node)),
            shared,
            commands,
            publishes,
            reads: Arc::default(),
            pending: Mutex::new(Some(pending)),
            tasks: Mutex::new(vec![writer]),
        })
    }

    /// Queues a publish now, so that publishes keep the order of the calls (see
    /// `pipeline.rs`); the future is its answer.
    fn queue(
        &self,
        channel: &str,
        from: &ClientInfo,
        data: &RawValue,
        once: Option<(&str, Duration)>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        let (done, answer) = oneshot::channel();
        let queued = serde_json::to_string(&Body { from, data })
            .map_err(unavailable)
            .and_then(|body| {
                let publish = Publish {
                    channel: channel.to_owned(),
                    body,
                    once: once.map(|(key, window)| (key.to_owned(), window)),
                    deadline: Instant::now() + self.shared.config.timeout,
                    done,
                };
                self.publishes
                    .send(publish)
                    .map_err(|_| unavailable("the broker is not running"))
            });
        Box::pin(async move {
            queued?;
            answer
                .await
                .map_err(|_| unavailable("the broker is not running"))?
        })
    }

    /// This node's name in Redis (in presence entries and the heartbeat set).
    pub fn node(&self) -> &str {
        &self.presence.node
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
            let follower =
                Follower::connect(self.shared.clone(), self.control.clone(), events).await?;
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.push(tokio::spawn(follower.run(commands)));
            tasks.push(tokio::spawn(self.presence.clone().beat()));
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
        self.queue(channel, &from, &data, None)
    }

    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.queue(channel, &from, &data, Some((key, window)))
    }

    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let stream = self.reads.read(&self.shared, &channel, range).await?;
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
        Box::pin(async move { self.presence.join(&channel, &client).await })
    }

    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move { self.presence.leave(&channel, &client).await })
    }

    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move { self.presence.list(&channel).await })
    }

    fn ask_nodes(&self, command: &NodeCommand) -> BoxFuture<'_, Result<NodeReplies, BrokerError>> {
        let command = command.clone();
        Box::pin(async move { control::ask(&self.shared, &self.control, &command).await })
    }

    fn health(&self) -> Result<(), BrokerError> {
        self.shared.health.check()
    }

    fn render_metrics(&self, out: &mut String) {
        self.shared.metrics.render(out, &self.shared.health);
    }
}
