//! The follower's Pub/Sub connection, classic or sharded, behind one interface.
//!
//! A Redis that is not a cluster gets SUBSCRIBE on a RESP2 Pub/Sub connection. A master of a
//! Redis Cluster gets SSUBSCRIBE (sharded Pub/Sub, Redis 7): a publication then reaches only
//! the subscribers of its slot's master instead of crossing the whole cluster bus. The redis
//! client's Pub/Sub connection knows no SSUBSCRIBE, so the sharded one is an ordinary RESP3
//! connection whose pushes (messages, and the client's own notice that the connection is
//! gone) arrive on a channel. Either way, a lost connection ends [`Subscriber::next`], which
//! the follower must see to fill the gap it leaves.

use std::pin::Pin;

use futures_core::Stream as _;
use redis::aio::{MultiplexedConnection, PubSub, PubSubSink, PubSubStream};
use redis::{Msg, PushInfo, PushKind, RedisResult};
use tokio::sync::mpsc;

/// A Pub/Sub connection to one Redis.
pub(super) enum Subscriber {
    Classic {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Sharded {
        con: MultiplexedConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

impl Subscriber {
    pub(super) fn classic(pubsub: PubSub) -> Self {
        let (sink, stream) = pubsub.split();
        Self::Classic { sink, stream }
    }

    /// Over `con`, a RESP3 connection whose pushes go to `pushes`.
    pub(super) fn sharded(
        con: MultiplexedConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    ) -> Self {
        Self::Sharded { con, pushes }
    }

    /// Subscribes to the Pub/Sub channel `name`; answered once messages flow.
    pub(super) async fn subscribe(&mut self, name: &str) -> RedisResult<()> {
        match self {
            Self::Classic { sink, .. } => sink.subscribe(name).await,
            Self::Sharded { con, .. } => redis::cmd("SSUBSCRIBE").arg(name).exec_async(con).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, name: &str) -> RedisResult<()> {
        match self {
            Self::Classic { sink, .. } => sink.unsubscribe(name).await,
            Self::Sharded { con, .. } => redis::cmd("SUNSUBSCRIBE").arg(name).exec_async(con).await,
        }
    }

    /// A round trip, to find a connection that died silently.
    pub(super) async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Self::Classic { sink, .. } => sink.ping::<redis::Value>().await.map(drop),
            Self::Sharded { con, .. } => redis::cmd("PING").exec_async(con).await,
        }
    }

    /// The next message; `None` once the connection is lost.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message not returned stays for the next call.
    pub(super) async fn next(&mut self) -> Option<Msg> {
        match self {
            Self::Classic { stream, .. } => {
                std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
            }
            Self::Sharded { pushes, .. } => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::Disconnection => return None,
                    PushKind::SMessage | PushKind::Message => {
                        if let Some(message) = Msg::from_push_info(push) {
                            return Some(message);
                        }
                    }
                    // Replies to (S)SUBSCRIBE, which the connection also hands here.
                    _ => {}
                }
            },
        }
    }
}
