//! Presence in Redis: the entries this node makes, its heartbeat, the sweep of gone nodes,
//! and making Redis's entries match this node's clients again after they may have diverged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::millis;
use super::shared::{Shared, unavailable};
use crate::broker::{BrokerError, ClientInfo};

/// This node's presence entries, as it made them and as Redis should hold them.
#[derive(Debug)]
pub(super) struct Presence {
    shared: Arc<Shared>,
    /// This node's name in presence entries and the heartbeat set.
    pub(super) node: String,
    /// Presence entries this node made, by (channel, connection id): what Redis is made to
    /// match after it lost them or an outage.
    present: Mutex<HashMap<(String, String), ClientInfo>>,
    /// A join or leave failed: Redis's presence entries may differ from `present`.
    unsure: AtomicBool,
}

impl Presence {
    pub(super) fn new(shared: Arc<Shared>, node: String) -> Self {
        Self {
            shared,
            node,
            present: Mutex::new(HashMap::new()),
            unsure: AtomicBool::new(false),
        }
    }

    fn present(&self) -> MutexGuard<'_, HashMap<(String, String), ClientInfo>> {
        // The map is consistent after every operation, so a poisoned lock is still usable.
        self.present.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `client` to the channel's presence and announces it.
    pub(super) async fn join(&self, channel: &str, client: &ClientInfo) -> Result<(), BrokerError> {
        // Remembered first, so that registering again after a Redis restart includes it.
        self.present()
            .insert((channel.to_owned(), client.conn.clone()), client.clone());
        let joined = self.add(channel, client).await;
        if joined.is_err() {
            self.unsure.store(true, Ordering::Relaxed);
        }
        joined
    }

    /// Removes `client` from the channel's presence and announces it.
    pub(super) async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
    ) -> Result<(), BrokerError> {
        self.present()
            .remove(&(channel.to_owned(), client.conn.clone()));
        let left = self.remove(channel, &client.conn).await;
        if left.is_err() {
            self.unsure.store(true, Ordering::Relaxed);
        }
        left
    }

    /// The clients present on the channel, on every live node, by connection id.
    pub(super) async fn list(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        let shared = &self.shared;
        let mut invocation = shared.scripts.presence.prepare_invoke();
        invocation
            .key(shared.keys.presence(channel))
            .arg(shared.keys.nodes());
        let entries: Vec<String> = shared.invoke(&invocation).await?;
        let mut clients = Vec::with_capacity(entries.len());
        for json in entries {
            match serde_json::from_str::<ClientInfo>(&json) {
                Ok(client) => clients.push(client),
                Err(e) => tracing::warn!(%channel, error = %e, "unreadable presence entry"),
            }
        }
        clients.sort_by(|a, b| a.conn.cmp(&b.conn));
        Ok(clients)
    }

    /// Beats until the broker is dropped, reconciling once Redis answers again after a
    /// failure (joins and leaves may have failed too).
    pub(super) async fn beat(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.shared.config.beat_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconcile = false;
        let mut failing = false;
        loop {
            every.tick().await;
            match self.heartbeat(&mut reconcile).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("redis heartbeat works again");
                }
                Ok(()) => {}
                Err(e) => {
                    reconcile = true;
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, "redis heartbeat failed");
                    }
                }
            }
        }
    }

    /// Adds a presence entry; announces it when it is new.
    async fn add(&self, channel: &str, client: &ClientInfo) -> Result<(), BrokerError> {
        let shared = &self.shared;
        let json = serde_json::to_string(client).map_err(unavailable)?;
        let mut invocation = shared.scripts.join.prepare_invoke();
        invocation
            .key(shared.keys.presence(channel))
            .arg(&client.conn)
            .arg(&self.node)
            .arg(json)
            .arg(shared.keys.pubsub(channel))
            .arg(shared.keys.member(&client.conn, channel))
            .arg(shared.keys.node(&self.node));
        let _fresh: i64 = shared.invoke(&invocation).await?;
        Ok(())
    }

    /// Removes a presence entry; announces it when there was one.
    async fn remove(&self, channel: &str, conn: &str) -> Result<(), BrokerError> {
        let shared = &self.shared;
        let mut invocation = shared.scripts.leave.prepare_invoke();
        invocation
            .key(shared.keys.presence(channel))
            .arg(conn)
            .arg(shared.keys.pubsub(channel))
            .arg(shared.keys.member(conn, channel))
            .arg(shared.keys.node(&self.node));
        let _gone: i64 = shared.invoke(&invocation).await?;
        Ok(())
    }

    /// Beats, sweeps gone nodes, and makes Redis's presence entries of this node match its
    /// clients again when they may differ: Redis did not know the node (it lost its data, or
    /// swept the node after a long silence), or joins and leaves failed during an outage.
    async fn heartbeat(&self, reconcile: &mut bool) -> Result<(), BrokerError> {
        let shared = &self.shared;
        let mut invocation = shared.scripts.heartbeat.prepare_invoke();
        invocation
            .key(shared.keys.nodes())
            .arg(&self.node)
            .arg(millis(shared.config.node_timeout))
            .arg(shared.keys.prefix())
            .arg(shared.keys.node_tag());
        let fresh: i64 = shared.invoke(&invocation).await?;
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
            self.add(channel, client).await?;
        }
        // Entries of clients that are gone: a leave that failed, or a client that left while
        // the joins above ran (and was registered again after its leave).
        let mut con = self.shared.con();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.shared.keys.node(&self.node));
        let members: Vec<String> = self.shared.bounded(members.query_async(&mut con)).await?;
        let mut removed = 0;
        for member in members {
            let Some((conn, channel)) = self.shared.keys.of_member(&member) else {
                continue;
            };
            let key = (channel, conn);
            if !self.present().contains_key(&key) {
                self.remove(&key.0, &key.1).await?;
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
