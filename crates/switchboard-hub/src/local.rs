//! [`LocalBroker`]: channels' streams, history and presence in this process's memory.
//!
//! One lock guards every channel, so that an offset is assigned, stored in history and handed
//! to the hub in one step: publications reach the hub in offset order, and a history read sees
//! every publication that was assigned an offset before it. History keeps the last
//! [`HistoryConfig::size`] publications of a channel, and drops those older than
//! [`HistoryConfig::ttl`] when set. A channel nobody follows, with nothing left in history and
//! no activity for ten minutes, is forgotten: if it is used again it starts a new epoch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::broker::{
    BoxFuture, Broker, BrokerError, BrokerEvents, ClientInfo, History, HistoryConfig, HistoryRange,
    IDLE_CHANNEL, Publication, StreamPosition,
};
use crate::idempotency::Remembered;
use crate::random::random_hex;

/// How often the broker looks for channels to forget.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The in-process broker: one node, no dependencies; history is lost when the process ends
/// (the next process starts new epochs, so clients know).
#[derive(Debug)]
pub struct LocalBroker {
    config: HistoryConfig,
    state: Mutex<State>,
    events: OnceLock<Arc<dyn BrokerEvents>>,
}

#[derive(Debug)]
struct State {
    channels: HashMap<String, Stream>,
    last_sweep: Instant,
    /// Positions of idempotent publishes, under the same lock as the streams so that a key
    /// is checked and stored in the step that publishes.
    remembered: Remembered,
}

#[derive(Debug)]
struct Stream {
    epoch: String,
    top: u64,
    history: VecDeque<(Instant, Arc<Publication>)>,
    /// Whether the hub subscribed to this channel (see `Broker::subscribe`).
    followed: bool,
    /// Present clients by connection id.
    presence: BTreeMap<String, ClientInfo>,
    last_used: Instant,
}

impl Stream {
    fn new(now: Instant) -> Self {
        Self {
            epoch: random_hex(8),
            top: 0,
            history: VecDeque::new(),
            followed: false,
            presence: BTreeMap::new(),
            last_used: now,
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch.clone(),
            offset: self.top,
        }
    }

    fn expire(&mut self, config: &HistoryConfig, now: Instant) {
        if let Some(ttl) = config.ttl {
            while let Some((at, _)) = self.history.front() {
                if now.saturating_duration_since(*at) < ttl {
                    break;
                }
                self.history.pop_front();
            }
        }
    }

    fn forgettable(&self, now: Instant) -> bool {
        !self.followed
            && self.presence.is_empty()
            && self.history.is_empty()
            && now.saturating_duration_since(self.last_used) >= IDLE_CHANNEL
    }
}

impl LocalBroker {
    /// A broker keeping `config`'s history per channel.
    pub fn new(config: HistoryConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                channels: HashMap::new(),
                last_sweep: Instant::now(),
                remembered: Remembered::default(),
            }),
            events: OnceLock::new(),
        }
    }

    /// How many channels the broker remembers.
    pub fn channel_count(&self) -> usize {
        self.lock().channels.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the state consistent before anything that could panic, so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the channel's stream (created if new), after dropping expired history and,
    /// now and then, forgetting idle channels.
    fn with_stream<T>(
        &self,
        channel: &str,
        f: impl FnOnce(&mut Stream, &mut Remembered, Option<&dyn BrokerEvents>) -> T,
    ) -> T {
        let now = Instant::now();
        let mut state = self.lock();
        if now.saturating_duration_since(state.last_sweep) >= SWEEP_EVERY {
            state.last_sweep = now;
            let config = self.config;
            state.channels.retain(|_, stream| {
                stream.expire(&config, now);
                !stream.forgettable(now)
            });
        }
        let State {
            channels,
            remembered,
            ..
        } = &mut *state;
        let stream = channels
            .entry(channel.to_owned())
            .or_insert_with(|| Stream::new(now));
        stream.expire(&self.config, now);
        stream.last_used = now;
        f(stream, remembered, self.events.get().map(|e| &**e))
    }
}

impl Default for LocalBroker {
    fn default() -> Self {
        Self::new(HistoryConfig::default())
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

/// Gives `data` the stream's next offset, keeps it in history (up to `size`) and hands it to
/// the hub when the node follows the channel.
fn append(
    stream: &mut Stream,
    size: usize,
    channel: &str,
    from: ClientInfo,
    data: Box<RawValue>,
    events: Option<&dyn BrokerEvents>,
) -> StreamPosition {
    stream.top += 1;
    // In the caller's span: an API request's or WebSocket publish's id is on this line.
    tracing::debug!(%channel, offset = stream.top, "published in process");
    let publication = Arc::new(Publication {
        offset: stream.top,
        time: unix_millis(),
        from,
        data,
    });
    if size > 0 {
        if stream.history.len() == size {
            stream.history.pop_front();
        }
        stream
            .history
            .push_back((Instant::now(), publication.clone()));
    }
    if stream.followed
        && let Some(events) = events
    {
        events.publication(channel, &publication);
    }
    stream.position()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Broker for LocalBroker {
    fn start(&self, events: Arc<dyn BrokerEvents>) -> BoxFuture<'_, Result<(), BrokerError>> {
        if self.events.set(events).is_err() {
            tracing::warn!("LocalBroker started twice; events keep going to the first hub");
        }
        ready(Ok(()))
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.with_stream(channel, |stream, _, _| stream.followed = true);
        ready(Ok(()))
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.with_stream(channel, |stream, _, _| stream.followed = false);
        ready(Ok(()))
    }

    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        let position = self.with_stream(channel, |stream, _, events| {
            append(stream, self.config.size, channel, from, data, events)
        });
        ready(Ok(position))
    }

    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        let position = self.with_stream(channel, |stream, remembered, events| {
            let now = Instant::now();
            if let Some(position) = remembered.get(channel, key, now) {
                return position;
            }
            let position = append(stream, self.config.size, channel, from, data, events);
            remembered.insert(channel, key, position.clone(), now, window);
            position
        });
        ready(Ok(position))
    }

    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let history = self.with_stream(channel, |stream, _, _| {
            let publications = match range {
                HistoryRange::Latest(n) => {
                    let skip = stream.history.len().saturating_sub(n);
                    stream
                        .history
                        .iter()
                        .skip(skip)
                        .map(|(_, p)| p.clone())
                        .collect()
                }
                HistoryRange::After { offset, limit } => {
                    // Offsets in history are consecutive, so the first one wanted is found by
                    // arithmetic rather than a scan.
                    let first = stream.history.front().map_or(0, |(_, p)| p.offset);
                    let skip =
                        usize::try_from((offset + 1).saturating_sub(first)).unwrap_or(usize::MAX);
                    stream
                        .history
                        .iter()
                        .skip(skip)
                        .take(limit)
                        .map(|(_, p)| p.clone())
                        .collect()
                }
            };
            History {
                position: stream.position(),
                publications,
            }
        });
        ready(Ok(history))
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
        let first = self.with_stream(channel, |stream, _, events| {
            if let Some(events) = events {
                events.join(channel, &client);
            }
            let fresh = !stream.presence.contains_key(&client.conn);
            let known = stream.presence.values().any(|c| c.user == client.user);
            stream.presence.insert(client.conn.clone(), client);
            fresh && !known
        });
        ready(Ok(first))
    }

    fn leave_user(
        &self,
        channel: &str,
        client: ClientInfo,
    ) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let last = self.with_stream(channel, |stream, _, events| {
            if stream.presence.remove(&client.conn).is_none() {
                return false;
            }
            if let Some(events) = events {
                events.leave(channel, &client);
            }
            !stream.presence.values().any(|c| c.user == client.user)
        });
        ready(Ok(last))
    }

    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        let clients = self.with_stream(channel, |stream, _, _| {
            stream.presence.values().cloned().collect()
        });
        ready(Ok(clients))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(user: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            conn: format!("c-{user}"),
            authenticated: false,
            info: None,
        }
    }

    fn data(n: u64) -> Box<RawValue> {
        RawValue::from_string(n.to_string()).unwrap()
    }

    async fn publish_n(broker: &LocalBroker, channel: &str, n: u64) {
        for i in 0..n {
            broker.publish(channel, client("a"), data(i)).await.unwrap();
        }
    }

    fn offsets(history: &History) -> Vec<u64> {
        history.publications.iter().map(|p| p.offset).collect()
    }

    #[tokio::test]
    async fn offsets_increase_by_one_and_history_keeps_the_last_n() {
        let broker = LocalBroker::new(HistoryConfig { size: 3, ttl: None });
        publish_n(&broker, "c", 5).await;
        let h = broker.history("c", HistoryRange::Latest(10)).await.unwrap();
        assert_eq!(h.position.offset, 5);
        assert_eq!(offsets(&h), [3, 4, 5]);
        let h = broker.history("c", HistoryRange::Latest(2)).await.unwrap();
        assert_eq!(offsets(&h), [4, 5]);
        let h = broker
            .history(
                "c",
                HistoryRange::After {
                    offset: 3,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(offsets(&h), [4, 5]);
        let h = broker
            .history(
                "c",
                HistoryRange::After {
                    offset: 1,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(offsets(&h), [3, 4, 5], "what is left after a truncation");
        let h = broker
            .history(
                "c",
                HistoryRange::After {
                    offset: 5,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(h.publications.is_empty());
        let other = broker.history("d", HistoryRange::Latest(1)).await.unwrap();
        assert_eq!(other.position.offset, 0);
        assert_ne!(other.position.epoch, h.position.epoch);
    }

    #[tokio::test(start_paused = true)]
    async fn history_drops_publications_older_than_the_ttl() {
        let broker = LocalBroker::new(HistoryConfig {
            size: 100,
            ttl: Some(Duration::from_secs(10)),
        });
        publish_n(&broker, "c", 2).await;
        tokio::time::advance(Duration::from_secs(6)).await;
        publish_n(&broker, "c", 1).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        let h = broker.history("c", HistoryRange::Latest(10)).await.unwrap();
        assert_eq!(offsets(&h), [3]);
        assert_eq!(h.position.offset, 3, "expiry keeps the offset");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_empty_channels_are_forgotten_and_come_back_with_a_new_epoch() {
        let broker = LocalBroker::new(HistoryConfig {
            size: 10,
            ttl: Some(Duration::from_secs(1)),
        });
        publish_n(&broker, "idle", 1).await;
        broker.subscribe("followed").await.unwrap();
        let idle = broker
            .history("idle", HistoryRange::Latest(0))
            .await
            .unwrap();
        let followed = broker
            .history("followed", HistoryRange::Latest(0))
            .await
            .unwrap();
        tokio::time::advance(IDLE_CHANNEL + SWEEP_EVERY).await;
        broker
            .history("other", HistoryRange::Latest(0))
            .await
            .unwrap();
        assert_eq!(broker.channel_count(), 2, "followed and other remain");
        let again = broker
            .history("followed", HistoryRange::Latest(0))
            .await
            .unwrap();
        assert_eq!(again.position, followed.position);
        let idle_again = broker
            .history("idle", HistoryRange::Latest(0))
            .await
            .unwrap();
        assert_ne!(idle_again.position.epoch, idle.position.epoch);
        assert_eq!(idle_again.position.offset, 0);
    }

    /// The hub counts its clients' interest; the broker only follows a channel or not.
    #[tokio::test]
    async fn subscribing_again_changes_nothing_and_one_unsubscribe_stops_delivery() {
        let broker = LocalBroker::default();
        let delivered = Arc::new(crate::broker::Delivered::default());
        broker.start(delivered.clone()).await.unwrap();
        broker.subscribe("c").await.unwrap();
        broker.subscribe("c").await.unwrap();
        publish_n(&broker, "c", 1).await;
        assert_eq!(delivered.count(), 1);
        broker.unsubscribe("c").await.unwrap();
        publish_n(&broker, "c", 1).await;
        assert_eq!(delivered.count(), 1);
    }

    #[tokio::test]
    async fn a_users_first_join_and_last_leave_are_told() {
        let broker = LocalBroker::default();
        let mut again = client("ann");
        again.conn = "c-ann-2".into();
        assert!(broker.join_user("c", client("ann")).await.unwrap());
        assert!(
            !broker.join_user("c", client("ann")).await.unwrap(),
            "a repeat"
        );
        assert!(!broker.join_user("c", again.clone()).await.unwrap());
        assert!(!broker.leave_user("c", client("ann")).await.unwrap());
        assert!(
            !broker.leave_user("c", client("ann")).await.unwrap(),
            "a repeat"
        );
        assert!(broker.leave_user("c", again).await.unwrap(), "ann's last");
    }

    #[tokio::test]
    async fn presence_tracks_joins_and_leaves() {
        let broker = LocalBroker::default();
        broker.join("c", client("ann")).await.unwrap();
        broker.join("c", client("bob")).await.unwrap();
        broker.leave("c", client("ann")).await.unwrap();
        let present = broker.presence("c").await.unwrap();
        assert_eq!(present, [client("bob")]);
    }
}
