//! This node's interest in channels: how many of its connections follow each. The broker
//! delivers a channel to the node from its first subscriber on and stops after the last.

use std::collections::HashMap;
use std::sync::Arc;

use crate::broker::{Broker, BrokerError};

/// Local subscriptions per channel, and the broker told of the first and the last.
#[derive(Debug)]
pub(super) struct Interest {
    broker: Arc<dyn Broker>,
    /// The lock also orders the broker's subscribe/unsubscribe calls, so that a channel's last
    /// leave and next join cannot cross.
    counts: tokio::sync::Mutex<HashMap<String, usize>>,
}

impl Interest {
    pub(super) fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            broker,
            counts: tokio::sync::Mutex::default(),
        }
    }

    /// Counts a local subscription to `channel`, subscribing the node to it first if it is
    /// the only one.
    pub(super) async fn attach(&self, channel: &str) -> Result<(), BrokerError> {
        let mut counts = self.counts.lock().await;
        if !counts.contains_key(channel) {
            self.broker.subscribe(channel).await?;
        }
        *counts.entry(channel.to_owned()).or_default() += 1;
        Ok(())
    }

    /// The channels this node follows, with how many of its connections subscribe to each.
    pub(super) async fn channels(&self) -> Vec<(String, usize)> {
        let counts = self.counts.lock().await;
        counts.iter().map(|(c, n)| (c.clone(), *n)).collect()
    }

    /// Uncounts a local subscription to `channel`; the last one unsubscribes the node.
    pub(super) async fn detach(&self, channel: &str) {
        let mut counts = self.counts.lock().await;
        let Some(count) = counts.get_mut(channel) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            counts.remove(channel);
            if let Err(e) = self.broker.unsubscribe(channel).await {
                tracing::warn!(%channel, error = %e, "broker unsubscribe failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::value::RawValue;

    use super::*;
    use crate::LocalBroker;
    use crate::broker::{ClientInfo, Delivered};

    #[tokio::test]
    async fn the_node_follows_a_channel_from_its_first_subscriber_to_its_last() {
        let broker = Arc::new(LocalBroker::default());
        let delivered = Arc::new(Delivered::default());
        broker.start(delivered.clone()).await.unwrap();
        let publish = async || {
            let from = ClientInfo {
                user: "ann".into(),
                conn: "c1".into(),
                authenticated: false,
                info: None,
            };
            let data = RawValue::from_string("1".into()).unwrap();
            broker.publish("room", from, data).await.unwrap();
            delivered.count()
        };
        let interest = Interest::new(broker.clone());
        interest.attach("room").await.unwrap();
        interest.attach("room").await.unwrap();
        assert_eq!(publish().await, 1);
        interest.detach("room").await;
        assert_eq!(publish().await, 2, "one subscriber is left");
        interest.detach("room").await;
        assert_eq!(publish().await, 2, "the last one left");
        interest.detach("room").await;
        interest.attach("room").await.unwrap();
        assert_eq!(publish().await, 3, "an extra detach is not counted");
    }
}
