//! What the hub and the sessions of this node share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::config::HubConfig;
use super::fanout::Fanout;
use super::heartbeat::Beats;
use super::interest::Interest;
use super::limits::LimitCounts;
use super::pusher_hooks::PusherHooks;
use super::registry::Registry;
use crate::broker::Broker;

/// The broker, the fan-out and the counts of this node, for every session.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) broker: Arc<dyn Broker>,
    pub(super) fanout: Arc<Fanout>,
    pub(super) config: HubConfig,
    pub(super) interest: Interest,
    /// This node's connections, for what the server side asks of them.
    pub(super) registry: Registry,
    /// The connections the heartbeat goes to.
    pub(super) beats: Arc<Beats>,
    /// Prefix of this node's connection ids, and its name.
    pub(super) node: String,
    next_conn: AtomicU64,
    /// Clients connected to this node.
    pub(super) connections: AtomicUsize,
    /// What the per-client limits refused.
    pub(super) limits: LimitCounts,
    /// When the hub started, in milliseconds since the Unix epoch.
    pub(super) started: u64,
    /// The webhooks of the Pusher apps that have them.
    pub(super) pusher_hooks: PusherHooks,
}

impl Shared {
    pub(super) fn new(
        broker: Arc<dyn Broker>,
        fanout: Arc<Fanout>,
        config: HubConfig,
        node: String,
    ) -> Self {
        Self {
            pusher_hooks: PusherHooks::start(&config.pusher),
            interest: Interest::new(broker.clone()),
            broker,
            fanout,
            config,
            registry: Registry::default(),
            beats: Arc::default(),
            node,
            next_conn: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            limits: LimitCounts::default(),
            started: std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |since| since.as_millis() as u64),
        }
    }

    /// A new connection's id, unique across nodes: the node's random prefix and a count.
    pub(super) fn connection_id(&self) -> String {
        self.connection_ids().0
    }

    /// A new connection's id, and its Pusher socket id: `NODE.N` in decimal, from the same
    /// node and count, so unique across nodes too.
    pub(super) fn connection_ids(&self) -> (String, String) {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
        // The node's name is hex (see `Hub::new`); any other name still gives digits.
        let node = u64::from_str_radix(&self.node, 16).unwrap_or_default();
        (format!("{}{n:x}", self.node), format!("{node}.{n}"))
    }
}
