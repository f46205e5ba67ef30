//! [`RedisBroker`]: channels shared by several nodes through one Redis, sharded over several,
//! or over the masters of a Redis Cluster.
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
//!   during an outage, a node makes Redis's entries match its clients again. Each channel
//!   counts its users' entries in the same scripts, so a join (or leave) knows atomically
//!   whether it is its user's first connection on the channel (or its last) across nodes
//!   ([`Broker::join_user`]). Join and leave
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
//! - **Shards**: with several Redis servers ([`RedisConfig::url`] lists them), each channel
//!   lives on one, chosen by a fixed hash of its name (`shard.rs`), so every node must list
//!   the same servers in the same order. Everything about a channel is on its shard: the
//!   publish script, history, epoch and offset, idempotency keys, presence and Pub/Sub. Each
//!   shard has its own request connection, publish pipeline, follower, coalesced reads and
//!   health, so a shard that is down fails its own channels as unavailable and nothing else;
//!   when it comes back empty its channels start a new epoch, as with one Redis.
//!   What belongs to the node, not to a channel, is placed so that no shard depends on
//!   another. The heartbeat runs on every shard: a shard's presence entries are swept by a
//!   script on that shard, which needs the node's deadline there. Commands between nodes go
//!   over the first shard only: an ask counts its expected replies from what one PUBLISH
//!   answers, which holds on one server only; while the first shard is down those commands
//!   fail as unavailable, and channels on the others still work. [`Broker::health`] fails
//!   only when every shard is down; with some down, [`Broker::degraded`] names them.
//! - **Redis Cluster** ([`RedisConfig::cluster`]): each master is a shard, found from the
//!   seed URLs with `CLUSTER SHARDS` and numbered by the first slot it owns (`cluster.rs`); a
//!   channel goes to the master owning its slot, computed as Redis does from its keys' hash
//!   tag `{CH}` (`slots.rs`), so one script touches one slot. Pub/Sub is sharded (SSUBSCRIBE
//!   and SPUBLISH, `subscriber.rs`): a publication reaches only its master's subscribers, not
//!   the whole cluster bus. The broker routes by itself instead of using the redis client's
//!   cluster client, whose own resubscription would hide lost Pub/Sub connections from the
//!   follower, which must see them to fill the gap. Node keys sit in a slot of each master,
//!   and commands between nodes go through the master that owns the control channel's slot.
//!   When a master fails and a replica takes over its slots, the shard follows them: its
//!   follower, unable to connect again, asks the seeds who owns the shard's first slot now
//!   and moves the shard's connections there (`Shared::relocate`). Replication is
//!   asynchronous, so a publish acknowledged just before its master died may be missing on
//!   that replica, which then gives its offset to another publication; a follower that
//!   delivered it finds the stream shorter or another publication at that offset, and tells
//!   the hub the stream was lost rather than deliver a reused offset. The slot map is read at
//!   connect: a slot moved to another live master (resharding) answers MOVED, which fails
//!   its channels as unavailable with that reason until the nodes restart.
//!
//! The keys are described in `keys.rs`, the Lua scripts in `scripts.rs`, the decoding of what
//! they store and publish in `decode.rs`; everything lives under
//! [`RedisConfig::prefix`] on each shard. The settings are in `config.rs`, how connections are
//! opened (TLS, credentials, connect timeout) in `connect.rs`, a shard's parts in `shard.rs`,
//! the connection and requests every part makes in `shared.rs`, presence and the heartbeat in
//! `presence.rs`, delivery in `follow.rs`, and what it counts for `/metrics` (labelled by
//! shard) in `metrics.rs`.

mod cluster;
mod config;
mod connect;
mod control;
mod decode;
mod follow;
mod keys;
mod metrics;
mod pipeline;
mod presence;
mod reads;
mod scripts;
mod shard;
mod shared;
mod slots;
mod subscriber;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
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
use follow::Command;
use keys::Keys;
use shard::{Shard, shard_of};
use shared::{Shared, unavailable};
use slots::{SlotMap, hash_slot};

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
    /// At least one; a channel lives on `shards[shard_of(channel)]`.
    shards: Vec<Shard>,
    /// On a Redis Cluster, which shard (master) owns each slot.
    slots: Option<SlotMap>,
    /// This node's asks to the others, waiting for replies (over `shards[control_shard]`).
    control: Arc<Control>,
    control_shard: usize,
    node: String,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RedisBroker {
    /// Connects to Redis: to every shard when [`RedisConfig::url`] lists several (one
    /// connection for requests each; [`start`](Broker::start) opens the Pub/Sub ones).
    ///
    /// # Errors
    ///
    /// When a URL or the TLS settings are invalid, or a Redis cannot be reached (refused, TLS
    /// or authentication failed, no answer within the connect timeout): the message names
    /// the server, never the password.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        let urls = config.urls();
        if urls.is_empty() {
            return Err(unavailable("no redis url"));
        }
        // Each server with the keys it holds, and on a cluster the slots each master owns.
        let (servers, slots) = if config.cluster {
            if config.prefix.contains(['{', '}']) {
                return Err(unavailable(
                    "on a redis cluster the key prefix may not hold `{` or `}`",
                ));
            }
            let masters = cluster::masters(&config).await?;
            let ranges: Vec<_> = masters.iter().map(|m| m.ranges.clone()).collect();
            let slots = SlotMap::new(&ranges).map_err(|slot| {
                unavailable(format!("no master of the redis cluster owns slot {slot}"))
            })?;
            let servers = masters
                .into_iter()
                .map(|master| {
                    // Node keys go in the master's first slot, which also names its shard.
                    let first = master.ranges.first().map_or(0, |r| r.0);
                    let keys = Keys::cluster(&config.prefix, first);
                    (master.server, keys, Some(first))
                })
                .collect();
            (servers, Some(slots))
        } else {
            let servers = urls
                .iter()
                .map(|url| {
                    let server = Server::new(url, &config.connect, config.timeout)?;
                    Ok((server, Keys::new(&config.prefix), None))
                })
                .collect::<Result<Vec<_>, BrokerError>>()?;
            (servers, None)
        };
        let named = servers.len() > 1 || slots.is_some();
        let node = random_hex(8);
        let mut shards = Vec::with_capacity(servers.len());
        let mut tasks = Vec::with_capacity(servers.len());
        for (index, (server, keys, slot)) in servers.into_iter().enumerate() {
            let con = server.manager().await?;
            // With one Redis, errors read as they always did; with shards, they name theirs.
            let index = named.then_some(index);
            let shared = Shared::new(config.clone(), index, slot, server, con, keys);
            let shared = Arc::new(shared);
            let (shard, writer) = Shard::new(shared, node.clone());
            shards.push(shard);
            tasks.push(writer);
        }
        // On a cluster, commands between nodes go through the master of their channel's slot.
        let control_shard = slots.as_ref().map_or(0, |slots| {
            slots.owner(hash_slot(Keys::new(&config.prefix).control().as_bytes()))
        });
        Ok(Self {
            shards,
            slots,
            control: Arc::new(Control::new(node.clone())),
            control_shard,
            node,
            tasks: Mutex::new(tasks),
        })
    }

    /// This node's name in Redis (in presence entries and the heartbeat set).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many Redis servers share the channels: the masters of a Redis Cluster.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard of `channel`: its index in [`RedisConfig::url`]'s list, or on a Redis
    /// Cluster the index of the master that owns its slot, masters ordered by the first slot
    /// they own.
    pub fn shard_of(&self, channel: &str) -> usize {
        match &self.slots {
            Some(slots) => slots.owner(hash_slot(slots::tag(channel).as_bytes())),
            None => shard_of(channel, self.shards.len()),
        }
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[self.shard_of(channel)]
    }

    /// Every shard's reason to be unreachable, by shard.
    fn down(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter_map(|shard| shard.shared.health.check().err())
            .map(|BrokerError::Unavailable(why)| why)
            .collect()
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
            for (index, shard) in self.shards.iter().enumerate() {
                // Commands between nodes go over one shard only (see the module docs).
                let control = (index == self.control_shard).then(|| self.control.clone());
                let started = shard.start(control, events.clone()).await?;
                let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                tasks.extend(started);
            }
            Ok(())
        })
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let shard = self.shard(channel);
        let channel = channel.to_owned();
        Box::pin(shard.follower(move |done| Command::Subscribe(channel, done)))
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let shard = self.shard(channel);
        let channel = channel.to_owned();
        Box::pin(shard.follower(move |done| Command::Unsubscribe(channel, done)))
    }

    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.shard(channel).queue(channel, &from, &data, None)
    }

    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.shard(channel)
            .queue(channel, &from, &data, Some((key, window)))
    }

    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let shard = self.shard(channel);
        let channel = channel.to_owned();
        Box::pin(async move {
            let stream = shard.reads.read(&shard.shared, &channel, range).await?;
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
        let joined = self.join_user(channel, client);
        Box::pin(async move { joined.await.map(|_| ()) })
    }

    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        let left = self.leave_user(channel, client);
        Box::pin(async move { left.await.map(|_| ()) })
    }

    fn join_user(
        &self,
        channel: &str,
        client: ClientInfo,
    ) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let shard = self.shard(channel);
        let channel = channel.to_owned();
        Box::pin(async move { shard.presence.join(&channel, &client).await })
    }

    fn leave_user(
        &self,
        channel: &str,
        client: ClientInfo,
    ) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let shard = self.shard(channel);
        let channel = channel.to_owned();
        Box::pin(async move { shard.presence.leave(&channel, &client).await })
    }

    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        let shard = self.shard(channel);
        let channel = channel.to_owned();
        Box::pin(async move { shard.presence.list(&channel).await })
    }

    fn ask_nodes(&self, command: &NodeCommand) -> BoxFuture<'_, Result<NodeReplies, BrokerError>> {
        let command = command.clone();
        let shared = &self.shards[self.control_shard].shared;
        Box::pin(async move { control::ask(shared, &self.control, &command).await })
    }

    /// Unhealthy when no shard can be reached; with some shards down, see
    /// [`degraded`](Broker::degraded).
    fn health(&self) -> Result<(), BrokerError> {
        let down = self.down();
        if down.len() < self.shards.len() {
            return Ok(());
        }
        Err(BrokerError::Unavailable(down.join("; ")))
    }

    fn degraded(&self) -> Option<String> {
        let down = self.down();
        (!down.is_empty() && down.len() < self.shards.len()).then(|| down.join("; "))
    }

    fn render_metrics(&self, out: &mut String) {
        let shards: Vec<_> = self
            .shards
            .iter()
            .map(|shard| (&shard.shared.metrics, &shard.shared.health))
            .collect();
        metrics::render(out, &shards);
    }
}
