//! [`Observed`]: the hub's broker, seen by the webhooks. The hub subscribes the node to a
//! channel at its first local subscriber and unsubscribes it after the last (`interest.rs`),
//! and a session joins and leaves presence for its own connection: each of these calls is
//! one event, queued in the order the hub makes them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::EventKind;
use super::event::Event;
use super::sender::Queue;
use crate::broker::{
    BoxFuture, Broker, BrokerError, BrokerEvents, ClientInfo, History, HistoryRange, StreamPosition,
};
use crate::nodes::{NodeCommand, NodeReplies};

/// A broker that queues a webhook event for each change it is asked to make.
#[derive(Debug)]
pub(crate) struct Observed {
    inner: Arc<dyn Broker>,
    queue: Queue,
    node: String,
}

impl Observed {
    pub(crate) fn new(inner: Arc<dyn Broker>, queue: Queue, node: &str) -> Self {
        Self {
            inner,
            queue,
            node: node.to_owned(),
        }
    }

    fn channel_event(&self, kind: EventKind, channel: &str) {
        if self.queue.wants(kind) {
            self.queue.push(Event::new(kind, channel, &self.node));
        }
    }

    fn member_event(&self, kind: EventKind, channel: &str, client: &ClientInfo) {
        if self.queue.wants(kind) {
            self.queue.push(Event {
                user: Some(client.user.clone()),
                conn: Some(client.conn.clone()),
                ..Event::new(kind, channel, &self.node)
            });
        }
    }
}

impl Broker for Observed {
    fn start(&self, events: Arc<dyn BrokerEvents>) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.inner.start(events)
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            self.inner.subscribe(&channel).await?;
            self.channel_event(EventKind::ChannelOccupied, &channel);
            Ok(())
        })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            // The node's last subscriber is gone even when the broker could not be told.
            self.channel_event(EventKind::ChannelVacated, &channel);
            self.inner.unsubscribe(&channel).await
        })
    }

    fn publish(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.inner.publish(channel, from, data)
    }

    fn publish_once(
        &self,
        channel: &str,
        from: ClientInfo,
        data: Box<RawValue>,
        key: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<StreamPosition, BrokerError>> {
        self.inner.publish_once(channel, from, data, key, window)
    }

    fn history(
        &self,
        channel: &str,
        range: HistoryRange,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        self.inner.history(channel, range)
    }

    fn join(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            self.inner.join(&channel, client.clone()).await?;
            self.member_event(EventKind::MemberAdded, &channel, &client);
            Ok(())
        })
    }

    fn leave(&self, channel: &str, client: ClientInfo) -> BoxFuture<'_, Result<(), BrokerError>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            // The connection is gone from the channel even when the broker could not be told.
            self.member_event(EventKind::MemberRemoved, &channel, &client);
            self.inner.leave(&channel, client).await
        })
    }

    fn presence(&self, channel: &str) -> BoxFuture<'_, Result<Vec<ClientInfo>, BrokerError>> {
        self.inner.presence(channel)
    }

    fn ask_nodes(&self, command: &NodeCommand) -> BoxFuture<'_, Result<NodeReplies, BrokerError>> {
        self.inner.ask_nodes(command)
    }

    fn health(&self) -> Result<(), BrokerError> {
        self.inner.health()
    }

    fn degraded(&self) -> Option<String> {
        self.inner.degraded()
    }

    fn render_metrics(&self, out: &mut String) {
        self.inner.render_metrics(out);
    }
}
