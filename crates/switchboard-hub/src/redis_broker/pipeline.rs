//! Publishes to Redis in pipelined batches.
//!
//! Every publish of the node (from any connection, or the server API) joins one queue when
//! [`Broker::publish`](crate::Broker::publish) is called, before its future is polled. One
//! writer task sends what queued while the previous batch was in Redis as one pipeline, and
//! answers each publish from its reply. Redis runs a pipeline's commands in order, so
//! publications reach Redis in the order they were queued: a connection that keeps several
//! publishes in flight still has them appended in its order, and each answer still means "in
//! Redis, with this offset".
//!
//! Consecutive publishes to one channel (without idempotency key) in a batch become one call
//! of the publish script: consecutive offsets, one history write each, and one Pub/Sub
//! message for all of them, which the followers split again (`decode.rs`).

use std::sync::Arc;
use std::time::Duration;

use redis::{ErrorKind, RedisResult, ServerErrorKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::config::millis;
use super::shared::{Shared, unavailable};
use crate::broker::{BrokerError, StreamPosition};
use crate::random::random_hex;

/// The most publishes sent in one pipeline (the rest wait for the next).
const MAX_BATCH: usize = 256;

/// A publish waiting in the queue.
#[derive(Debug)]
pub(super) struct Publish {
    pub(super) channel: String,
    /// `{"from":CLIENT,"data":DATA}`.
    pub(super) body: String,
    /// An idempotency key and its window.
    pub(super) once: Option<(String, Duration)>,
    /// Past this, waiting for an earlier batch, the publish is answered unavailable and not
    /// sent (so that "unavailable" means "not published" whenever it can).
    pub(super) deadline: Instant,
    /// The caller's span (with its request id, if any), for the line that answers it.
    pub(super) span: tracing::Span,
    pub(super) done: oneshot::Sender<Result<StreamPosition, BrokerError>>,
}

/// Sends queued publishes until the broker is dropped.
pub(super) async fn write(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Publish>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        send(&shared, &mut batch).await;
    }
}

/// One call of the publish script: publishes `start..end` of the batch, all to one channel.
struct Call {
    start: usize,
    end: usize,
}

/// Sends `batch` as one pipeline and answers every publish in it (draining it).
async fn send(shared: &Shared, batch: &mut Vec<Publish>) {
    let now = Instant::now();
    batch.retain_mut(|publish| {
        // A caller that stopped waiting still has its publish sent: a client may publish
        // without asking for an ack and leave at once.
        let expired = publish.deadline <= now;
        if expired {
            let waited = unavailable(format!(
                "{} did not take the publish in time",
                shared.what()
            ));
            let done = std::mem::replace(&mut publish.done, oneshot::channel().0);
            let _ = done.send(Err(waited));
        }
        !expired
    });
    if batch.is_empty() {
        return;
    }
    shared.metrics.batch(batch.len());
    let mut calls: Vec<Call> = Vec::new();
    for (i, publish) in batch.iter().enumerate() {
        match calls.last_mut() {
            Some(call)
                if publish.once.is_none()
                    && batch[call.start].once.is_none()
                    && batch[call.start].channel == publish.channel =>
            {
                call.end = i + 1;
            }
            _ => calls.push(Call {
                start: i,
                end: i + 1,
            }),
        }
    }
    let mut results: Vec<Reply> = calls.iter().map(|_| Reply::NotSent).collect();
    // A Redis that restarted has lost the script: every call fails with NOSCRIPT (those before
    // a SCRIPT FLUSH went through). Those are sent again, in order, once it is loaded.
    for attempt in 0..2 {
        let todo: Vec<usize> = (0..calls.len())
            .filter(|&c| match &results[c] {
                Reply::NotSent => true,
                Reply::Failed(e) => attempt > 0 && is_noscript(e),
                Reply::Published(..) | Reply::Unavailable(_) => false,
            })
            .collect();
        if todo.is_empty() {
            break;
        }
        let request = async {
            if attempt > 0 {
                let mut con = shared.con();
                shared
                    .bounded(shared.scripts.publish.load_async(&mut con))
                    .await?;
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &c in &todo {
                pipe.add_command(command(shared, &batch[calls[c].start..calls[c].end]));
            }
            let mut con = shared.con();
            shared
                .bounded::<Vec<RedisResult<(String, u64)>>>(pipe.query_async(&mut con))
                .await
        };
        match request.await {
            Ok(replies) => {
                for (&c, reply) in todo.iter().zip(replies) {
                    results[c] = match reply {
                        Ok((epoch, first)) => Reply::Published(epoch, first),
                        Err(e) => Reply::Failed(e),
                    };
                }
            }
            Err(BrokerError::Unavailable(why)) => {
                for &c in &todo {
                    results[c] = Reply::Unavailable(why.clone());
                }
                break;
            }
        }
    }
    let mut publishes = batch.drain(..);
    for (call, result) in calls.iter().zip(results) {
        let answer = match result {
            Reply::Published(epoch, first) => Ok((epoch, first)),
            Reply::Failed(e) => {
                shared.metrics.error();
                Err(format!("{}: {e}", shared.what()))
            }
            Reply::Unavailable(e) => Err(e),
            Reply::NotSent => Err("redis: not sent".to_owned()),
        };
        for (k, publish) in publishes.by_ref().take(call.end - call.start).enumerate() {
            let position = match &answer {
                Ok((epoch, first)) => Ok(StreamPosition {
                    epoch: epoch.clone(),
                    offset: first + k as u64,
                }),
                Err(e) => Err(BrokerError::Unavailable(e.clone())),
            };
            publish.span.in_scope(|| match &position {
                Ok(p) => tracing::debug!(channel = %publish.channel, offset = p.offset, "published to redis"),
                Err(e) => tracing::debug!(channel = %publish.channel, error = %e, "publish to redis failed"),
            });
            let _ = publish.done.send(position);
        }
    }
}

/// What became of one call of the publish script.
enum Reply {
    NotSent,
    /// The epoch and the first offset given.
    Published(String, u64),
    /// Redis answered with an error.
    Failed(redis::RedisError),
    /// The pipeline got no answer (its message already says why).
    Unavailable(String),
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// The publish script's call for `publishes`, all to one channel (an idempotent one alone).
fn command(shared: &Shared, publishes: &[Publish]) -> redis::Cmd {
    let first = &publishes[0];
    let channel = &first.channel;
    let history = &shared.config.history;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(shared.scripts.publish.get_hash());
    match &first.once {
        Some((key, _)) => cmd
            .arg(3)
            .arg(shared.keys.meta(channel))
            .arg(shared.keys.history(channel))
            .arg(shared.keys.once(channel, key)),
        None => cmd
            .arg(2)
            .arg(shared.keys.meta(channel))
            .arg(shared.keys.history(channel)),
    };
    // PX refuses 0.
    let window = first
        .once
        .as_ref()
        .map_or(0, |(_, window)| millis(*window).max(1));
    cmd.arg(shared.keys.pubsub(channel))
        .arg(random_hex(8))
        .arg(history.size)
        .arg(millis(history.ttl.unwrap_or_default()))
        .arg(millis(shared.config.position_ttl()))
        .arg(window);
    for publish in publishes {
        cmd.arg(&publish.body);
    }
    cmd
}
