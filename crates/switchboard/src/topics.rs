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
    subscribers: HashMap<u64, Sender>,
    /// The subscribers as publishing walks them, shared by every publish until one
    /// subscribes or leaves: publishing neither copies the list nor clones each sender.
    snapshot: Option<Arc<[Sender]>>,
}

impl Topic {
    fn insert(&mut self, sender: &Sender) {
        self.subscribers.insert(sender.id(), sender.clone());
        self.snapshot = None;
    }

    fn remove(&mut self, sender: &Sender) {
        if self.subscribers.remove(&sender.id()).is_some() {
            self.snapshot = None;
        }
    }

    fn snapshot(&mut self) -> Arc<[Sender]> {
        self.snapshot
            .get_or_insert_with(|| self.subscribers.values().cloned().collect())
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

    /// Subscribes a connection to `topic`.
    pub fn subscribe(&self, topic: &str, sender: &Sender) {
        self.lock()
            .entry(topic.to_owned())
            .or_default()
            .insert(sender);
    }

    /// Unsubscribes a connection from `topic`.
    pub fn unsubscribe(&self, topic: &str, sender: &Sender) {
        let mut topics = self.lock();
        if let Some(subscribers) = topics.get_mut(topic) {
            subscribers.remove(sender);
            if subscribers.subscribers.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Unsubscribes a connection from every topic (when it closes).
    pub fn unsubscribe_all(&self, sender: &Sender) {
        self.lock().retain(|_, subscribers| {
            subscribers.remove(sender);
            !subscribers.subscribers.is_empty()
        });
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
            for (id, s) in &subscribers.subscribers {
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
