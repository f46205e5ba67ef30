//! Publish/subscribe over split connections: a message published to a topic is encoded once and
//! its frame shared by every subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::{EncodedFrame, Message};

use crate::split::{Sender, TrySendError};

/// Topics and their subscribers. Cheap to clone; clones share the same topics.
///
/// ## Lagging
///
/// Publishing never waits for a subscriber: a subscriber whose send queue is full (it reads
/// slower than messages arrive) misses that message, and the miss is counted in
/// [`dropped`](Self::dropped). The connection's [`Backpressure`](crate::Backpressure) policy
/// then applies: under `Disconnect` (a server's default) it is closed with 1013.
#[derive(Clone, Debug, Default)]
pub struct Topics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    topics: Mutex<HashMap<String, Topic>>,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Topic {
    /// Each subscribed connection, by [`Sender::id`], with its number of [`Subscription`]s.
    subscribers: HashMap<u64, (Sender, usize)>,
    /// The subscribers as publishing walks them, shared by every publish until one
    /// subscribes or leaves: publishing neither copies the list nor clones each sender.
    snapshot: Option<Arc<[Sender]>>,
}

impl Topic {
    fn insert(&mut self, sender: &Sender) {
        let (_, count) = self
            .subscribers
            .entry(sender.id())
            .or_insert_with(|| (sender.clone(), 0));
        *count += 1;
        if *count == 1 {
            self.snapshot = None;
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, count)) = self.subscribers.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                self.subscribers.remove(&id);
                self.snapshot = None;
            }
        }
    }

    fn snapshot(&mut self) -> Arc<[Sender]> {
        self.snapshot
            .get_or_insert_with(|| self.subscribers.values().map(|(s, _)| s.clone()).collect())
            .clone()
    }
}

impl Topics {
    /// No topics yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Topic>> {
        // A panic while holding the lock leaves the map consistent (every operation is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes a connection to `topic` until the returned [`Subscription`] is dropped
    /// (keep it for as long as the connection wants the topic, typically the handler's life:
    /// a handler that ends or is cancelled leaves its topics).
    ///
    /// Subscribing a connection twice to a topic delivers each message once; it leaves when
    /// both subscriptions are dropped.
    pub fn subscribe(&self, topic: &str, sender: &Sender) -> Subscription {
        self.lock()
            .entry(topic.to_owned())
            .or_default()
            .insert(sender);
        Subscription {
            topics: self.clone(),
            topic: topic.to_owned(),
            id: sender.id(),
        }
    }

    fn leave(&self, topic: &str, id: u64) {
        let mut topics = self.lock();
        if let Some(subscribers) = topics.get_mut(topic) {
            subscribers.remove(id);
            if subscribers.subscribers.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// How many connections are subscribed to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.lock()
            .get(topic)
            .map_or(0, |subscribers| subscribers.subscribers.len())
    }

    /// Sends a text or binary message to every subscriber of `topic` except `skip` (the
    /// publisher, usually), encoding it once. Returns how many subscribers it was queued for;
    /// control messages are not published (0).
    pub fn publish(&self, topic: &str, message: &Message, skip: Option<&Sender>) -> usize {
        let Some(frame) = EncodedFrame::from_message(message) else {
            return 0;
        };
        let subscribers = match self.lock().get_mut(topic) {
            Some(subscribers) => subscribers.snapshot(),
            None => return 0,
        };
        self.deliver(&frame, subscribers.iter(), skip)
    }

    /// Sends a text or binary message to every subscriber of every topic, once each.
    pub fn broadcast(&self, message: &Message, skip: Option<&Sender>) -> usize {
        let Some(frame) = EncodedFrame::from_message(message) else {
            return 0;
        };
        let mut everyone: HashMap<u64, Sender> = HashMap::new();
        for subscribers in self.lock().values() {
            for (id, (s, _)) in &subscribers.subscribers {
                everyone.entry(*id).or_insert_with(|| s.clone());
            }
        }
        self.deliver(&frame, everyone.values(), skip)
    }

    fn deliver<'a>(
        &self,
        frame: &EncodedFrame,
        subscribers: impl Iterator<Item = &'a Sender>,
        skip: Option<&Sender>,
    ) -> usize {
        let skip = skip.map(Sender::id);
        let mut queued = 0;
        for sender in subscribers.filter(|s| Some(s.id()) != skip) {
            match sender.try_send_encoded(frame.clone()) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full) => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed) => {}
            }
        }
        queued
    }

    /// Messages not delivered because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// A connection's subscription to a topic of [`Topics`]; dropping it unsubscribes.
#[derive(Debug)]
#[must_use = "dropping the subscription unsubscribes at once"]
pub struct Subscription {
    topics: Topics,
    topic: String,
    id: u64,
}

impl Subscription {
    /// The topic subscribed to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.topics.leave(&self.topic, self.id);
    }
}

#[cfg(test)]
mod tests {
    use proto::{Config, Role};

    use super::*;
    use crate::WebSocket;

    fn sender() -> Sender {
        let (io, peer) = tokio::io::duplex(1024);
        std::mem::forget(peer);
        let ws = WebSocket::from_raw(io, Role::Server, Config::default(), Default::default());
        ws.split().0
    }

    #[tokio::test]
    async fn dropping_the_subscription_unsubscribes() {
        let topics = Topics::new();
        let sender = sender();
        let first = topics.subscribe("room", &sender);
        let second = topics.subscribe("room", &sender);
        assert_eq!(topics.subscriber_count("room"), 1);
        assert_eq!(topics.publish("room", &Message::text("once"), None), 1);
        drop(first);
        assert_eq!(topics.subscriber_count("room"), 1);
        drop(second);
        assert_eq!(topics.subscriber_count("room"), 0);
        assert_eq!(topics.publish("room", &Message::text("nobody"), None), 0);
    }

    #[tokio::test]
    async fn a_cancelled_handler_leaves_its_topics() {
        let topics = Topics::new();
        let handler = tokio::spawn({
            let topics = topics.clone();
            async move {
                let sender = sender();
                let _subscription = topics.subscribe("room", &sender);
                std::future::pending::<()>().await;
            }
        });
        while topics.subscriber_count("room") == 0 {
            tokio::task::yield_now().await;
        }
        handler.abort();
        let _ = handler.await;
        assert_eq!(topics.subscriber_count("room"), 0);
    }
}
