//! Presence in Redis: the entries this node makes (and whether each is its user's first or
//! last on the channel, from the channel's users hash the scripts keep), its heartbeat, the
//! sweep of gone nodes, and making Redis's entries match this node's clients again after
//! they may have diverged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::millis;
use super::shared::{Shared, unavailable};
use crate::broker::{BrokerError, BrokerEvents, ClientInfo};

/// What a join or leave script did (its answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Nothing: the entry was there already (a join) or was not (a leave).
    Unchanged,
    /// The entry came or went; its user has others on the channel.
    Entry,
    /// The entry was its user's first on the channel (a join) or its last (a leave).
    User,
}

impl Change {
    fn of(answer: i64) -> Self {
        match answer {
            0 => Self::Unchanged,
            2 => Self::User,
            _ => Self::Entry,
        }
    }
}

/// A presence entry's key: its channel and connection id.
type Key = (String, String);

/// This node's presence entries.
#[derive(Debug, Default)]
struct Entries {
    /// The entries by key, as this node made them: what Redis is made to match after it
    /// lost them or an outage.
    made: HashMap<Key, ClientInfo>,
    /// Entries whose join or leave is on its way to Redis: the reconciliation leaves them to
    /// it, so that the join (or leave) is the one that finds the entry new (or there), and
    /// says whether it was its user's first (or last).
    busy: HashSet<Key>,
}

/// This node's presence entries, as it made them and as Redis should hold them.
#[derive(Debug)]
pub(super) struct Presence {
    shared: Arc<Shared>,
    /// This node's name in presence entries and the heartbeat set.
    pub(super) node: String,
    /// Presence entries this node made, and those being made or removed.
    present: Mutex<Entries>,
    /// A join or leave failed: Redis's presence entries may differ from `present`.
    unsure: AtomicBool,
}

impl Presence {
    pub(super) fn new(shared: Arc<Shared>, node: String) -> Self {
        Self {
            shared,
            node,
            present: Mutex::default(),
            unsure: AtomicBool::new(false),
        }
    }

    fn present(&self) -> MutexGuard<'_, Entries> {
        // The map is consistent after every operation, so a poisoned lock is still usable.
        self.present.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `client` to the channel's presence and announces it; whether it is its user's
    /// first connection there.
    pub(super) async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
    ) -> Result<bool, BrokerError> {
        let key = (channel.to_owned(), client.conn.clone());
        {
            // Remembered first, so that registering again after a Redis restart includes it.
            let mut present = self.present();
            present.made.insert(key.clone(), client.clone());
            present.busy.insert(key.clone());
        }
        let joined = self.add(channel, client).await;
        self.present().busy.remove(&key);
        if joined.is_err() {
            self.unsure.store(true, Ordering::Relaxed);
        }
        Ok(joined? == Change::User)
    }

    /// Removes `client` from the channel's presence and announces it; whether it was its
    /// user's last connection there.
    pub(super) async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
    ) -> Result<bool, BrokerError> {
        let key = (channel.to_owned(), client.conn.clone());
        {
            let mut present = self.present();
            present.made.remove(&key);
            present.busy.insert(key.clone());
        }
        let left = self.remove(channel, &client.conn).await;
        self.present().busy.remove(&key);
        if left.is_err() {
            self.unsure.store(true, Ordering::Relaxed);
        }
        Ok(left? == Change::User)
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
    pub(super) async fn beat(self: Arc<Self>, events: Arc<dyn BrokerEvents>) {
        let mut every = tokio::time::interval(self.shared.config.beat_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconcile = false;
        let mut failing = false;
        loop {
            every.tick().await;
            match self.heartbeat(&mut reconcile, &*events).await {
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
    async fn add(&self, channel: &str, client: &ClientInfo) -> Result<Change, BrokerError> {
        let shared = &self.shared;
        let json = serde_json::to_string(client).map_err(unavailable)?;
        let mut invocation = shared.scripts.join.prepare_invoke();
        invocation
            .key(shared.keys.presence(channel))
            .key(shared.keys.users(channel))
            .arg(&client.conn)
            .arg(&self.node)
            .arg(json)
            .arg(shared.keys.pubsub(channel))
            .arg(shared.keys.member(&client.conn, channel))
            .arg(shared.keys.node(&self.node))
            .arg(&client.user);
        let change: i64 = shared.invoke(&invocation).await?;
        Ok(Change::of(change))
    }

    /// Removes a presence entry; announces it when there was one.
    async fn remove(&self, channel: &str, conn: &str) -> Result<Change, BrokerError> {
        let shared = &self.shared;
        let mut invocation = shared.scripts.leave.prepare_invoke();
        invocation
            .key(shared.keys.presence(channel))
            .key(shared.keys.users(channel))
            .arg(conn)
            .arg(shared.keys.pubsub(channel))
            .arg(shared.keys.member(conn, channel))
            .arg(shared.keys.node(&self.node));
        let change: i64 = shared.invoke(&invocation).await?;
        Ok(Change::of(change))
    }

    /// Beats, sweeps gone nodes, and makes Redis's presence entries of this node match its
    /// clients again when they may differ: Redis did not know the node (it lost its data, or
    /// swept the node after a long silence), or joins and leaves failed during an outage.
    /// `events` are told of the users whose last entry on a channel the sweep removed.
    async fn heartbeat(
        &self,
        reconcile: &mut bool,
        events: &dyn BrokerEvents,
    ) -> Result<(), BrokerError> {
        let shared = &self.shared;
        let mut invocation = shared.scripts.heartbeat.prepare_invoke();
        invocation
            .key(shared.keys.nodes())
            .arg(&self.node)
            .arg(millis(shared.config.node_timeout))
            .arg(shared.keys.prefix())
            .arg(shared.keys.node_tag());
        let answer: Vec<String> = shared.invoke(&invocation).await?;
        let (fresh, swept) = answer
            .split_first()
            .map_or((false, &[][..]), |(fresh, swept)| (fresh == "1", swept));
        for pair in swept.chunks_exact(2) {
            let Some(channel) = shared.keys.channel_named(&pair[0]) else {
                continue;
            };
            match serde_json::from_str::<ClientInfo>(&pair[1]) {
                Ok(client) => events.user_swept(&channel, &client),
                Err(e) => tracing::warn!(%channel, error = %e, "unreadable presence entry"),
            }
        }
        *reconcile |= fresh || self.unsure.swap(false, Ordering::Relaxed);
        if *reconcile {
            self.reconcile().await?;
            *reconcile = false;
        }
        Ok(())
    }

    async fn reconcile(&self) -> Result<(), BrokerError> {
        let entries: Vec<_> = {
            let present = self.present();
            let idle = (present.made.iter()).filter(|(key, _)| !present.busy.contains(*key));
            idle.map(|(key, client)| (key.clone(), client.clone()))
                .collect()
        };
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
            let gone = {
                let present = self.present();
                !present.made.contains_key(&key) && !present.busy.contains(&key)
            };
            if gone {
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
