//! One shard: an independent Redis with its own request connection, publish pipeline,
//! follower (Pub/Sub connection), coalesced reads, presence and heartbeat. A channel lives on
//! one shard, chosen by [`shard_of`]; every node must list the same shards in the same order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::control::Control;
use super::decode::Body;
use super::follow::{Command, Follower};
use super::pipeline::{self, Publish};
use super::presence::Presence;
use super::reads::Reads;
use super::shared::{Shared, unavailable};
use crate::broker::{BoxFuture, BrokerError, BrokerEvents, ClientInfo, StreamPosition};

/// Which of `shards` shards holds `channel`: Lamping and Veach's jump consistent hash of the
/// channel name's 64-bit FNV-1a hash. Both are fixed algorithms with fixed constants, so
/// every node and every version agrees; adding a shard at the end moves about one channel in
/// `shards` (and a moved channel starts a new epoch on its new shard).
pub(super) fn shard_of(channel: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut key = fnv1a(channel.as_bytes());
    let (mut b, mut j) = (-1_i64, 0_i64);
    let buckets = i64::try_from(shards).unwrap_or(i64::MAX);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The reference implementation's arithmetic, in f64 as it is written there.
        j = ((b + 1) as f64 * ((1_i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(b).unwrap_or(0)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One shard and the tasks that serve it.
#[derive(Debug)]
pub(super) struct Shard {
    pub(super) shared: Arc<Shared>,
    pub(super) presence: Arc<Presence>,
    commands: mpsc::Sender<Command>,
    /// The queue of publishes to this shard (see `pipeline.rs`).
    publishes: mpsc::UnboundedSender<Publish>,
    /// History reads being gathered (see `reads.rs`).
    pub(super) reads: Arc<Reads>,
    /// The follower's end of `commands`, until `start` hands it over.
    pending: Mutex<Option<mpsc::Receiver<Command>>>,
}

impl Shard {
    /// The shard over `shared`, with its pipeline writer running (its handle is returned).
    pub(super) fn new(shared: Arc<Shared>, node: String) -> (Self, JoinHandle<()>) {
        let (commands, pending) = mpsc::channel(64);
        let (publishes, queue) = mpsc::unbounded_channel();
        let writer = tokio::spawn(pipeline::write(shared.clone(), queue));
        let shard = Self {
            presence: Arc::new(Presence::new(shared.clone(), node)),
            shared,
            commands,
            publishes,
            reads: Arc::default(),
            pending: Mutex::new(Some(pending)),
        };
        (shard, writer)
    }

    /// Opens the shard's Pub/Sub connection (subscribed to the control channel when
    /// `control` is given) and starts its follower and heartbeat.
    pub(super) async fn start(
        &self,
        control: Option<Arc<Control>>,
        events: Arc<dyn BrokerEvents>,
    ) -> Result<[JoinHandle<()>; 2], BrokerError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(commands) = pending else {
            return Err(unavailable("the broker was already started"));
        };
        let follower = Follower::connect(self.shared.clone(), control, events.clone()).await?;
        Ok([
            tokio::spawn(follower.run(commands)),
            tokio::spawn(self.presence.clone().beat(events)),
        ])
    }

    /// Queues a publish now, so that publishes keep the order of the calls (see
    /// `pipeline.rs`); the future is its answer.
    pub(super) fn queue(
        &self,
        channel: &str,
        from: &ClientInfo,
        data: &RawValue,
        once: Option<(&str, Duration)>,
    ) -> BoxFuture<'static, Result<StreamPosition, BrokerError>> {
        let (done, answer) = oneshot::channel();
        let queued = serde_json::to_string(&Body { from, data })
            .map_err(unavailable)
            .and_then(|body| {
                let publish = Publish {
                    channel: channel.to_owned(),
                    body,
                    once: once.map(|(key, window)| (key.to_owned(), window)),
                    deadline: Instant::now() + self.shared.config.timeout,
                    span: tracing::Span::current(),
                    done,
                };
                self.publishes
                    .send(publish)
                    .map_err(|_| unavailable("the broker is not running"))
            });
        Box::pin(async move {
            queued?;
            answer
                .await
                .map_err(|_| unavailable("the broker is not running"))?
        })
    }

    /// Hands `command` to the follower and waits for its answer.
    pub(super) async fn follower(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), BrokerError>>) -> Command,
    ) -> Result<(), BrokerError> {
        let (done, result) = oneshot::channel();
        // The follower may be busy reconnecting: the wait is bounded, and a command it has
        // not started when the wait ends is dropped (one it finished is undone).
        let wait = self.shared.config.timeout * 2;
        let request = async {
            self.commands
                .send(command(done))
                .await
                .map_err(|_| unavailable("the broker is not running"))?;
            result
                .await
                .map_err(|_| unavailable("the broker is not running"))?
        };
        tokio::time::timeout(wait, request).await.map_err(|_| {
            unavailable(format!(
                "{} pub/sub did not answer within {wait:?}",
                self.shared.what()
            ))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_always_lands_on_the_same_shard() {
        // Pinned: a change here moves channels between shards (and their history is lost to
        // clients) when nodes of two versions share shards.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let spread: Vec<usize> = ["room", "chat:1", "chat:2", "news", "a", "b", "c", "d"]
            .iter()
            .map(|channel| shard_of(channel, 2))
            .collect();
        assert_eq!(spread, [1, 0, 1, 1, 1, 0, 0, 0]);
        assert_eq!(shard_of("room", 1), 0);
        assert_eq!(shard_of("room", 0), 0);
    }

    #[test]
    fn channels_spread_evenly_and_a_new_shard_moves_only_its_share() {
        let channels: Vec<String> = (0..10_000).map(|i| format!("channel-{i}")).collect();
        let mut counts = [0_usize; 3];
        for channel in &channels {
            counts[shard_of(channel, 3)] += 1;
        }
        for count in counts {
            assert!((3_000..3_700).contains(&count), "{counts:?}");
        }
        let moved = channels
            .iter()
            .filter(|c| shard_of(c, 3) != shard_of(c, 4))
            .count();
        // About a quarter move, all of them to the new shard.
        assert!((2_200..2_800).contains(&moved), "{moved}");
        assert!(
            channels
                .iter()
                .filter(|c| shard_of(c, 3) != shard_of(c, 4))
                .all(|c| shard_of(c, 4) == 3)
        );
    }
}
