//! The follower: one task that owns the node's Pub/Sub connection, subscribes it to the
//! channels the hub asks for, and hands their events to the hub in offset order, with no gap.
//!
//! Being one task, it handles the hub's commands and the messages of every channel in one
//! order, so a channel's position (the last offset delivered) needs no lock. Redis delivers a
//! Pub/Sub connection's messages in publish order; the only way to miss some is to lose the
//! connection, so after a reconnect every followed channel is read back from its stream, and
//! a publication that skips offsets makes the follower read the missing ones first. On a Redis
//! Cluster, a follower that cannot connect again asks where its shard's slots went, since a
//! replica may have taken over from a failed master (`Shared::relocate`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Msg;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::config::millis;
use super::control::{self, Control};
use super::decode::{self, Event};
use super::shared::{Shared, unavailable};
use super::subscriber::Subscriber;
use crate::broker::{BrokerError, BrokerEvents, HistoryRange, Publication};

/// First wait before connecting again after the Pub/Sub connection was lost.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the broker asks of the follower.
#[derive(Debug)]
pub(super) enum Command {
    /// Deliver the channel's events from now on; answer once they flow.
    Subscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    /// Stop delivering the channel's events.
    Unsubscribe(String, oneshot::Sender<Result<(), BrokerError>>),
}

/// Where delivery of a channel stands.
#[derive(Debug)]
struct Position {
    epoch: String,
    /// The last offset delivered (or known to be in history when delivery started).
    offset: u64,
    /// The publication delivered at `offset`, if one was: the stream must still hold it
    /// there, else what was delivered is not what Redis has.
    last: Option<Arc<Publication>>,
}

pub(super) struct Follower {
    shared: Arc<Shared>,
    /// On the shard that carries commands between nodes (the first, or on a Redis Cluster
    /// the master of the control channel's slot).
    control: Option<Arc<Control>>,
    events: Arc<dyn BrokerEvents>,
    connection: Option<Subscriber>,
    followed: HashMap<String, Position>,
}

impl Follower {
    /// Opens the Pub/Sub connection, subscribed to the control channel when `control` is
    /// given.
    pub(super) async fn connect(
        shared: Arc<Shared>,
        control: Option<Arc<Control>>,
        events: Arc<dyn BrokerEvents>,
    ) -> Result<Self, BrokerError> {
        let mut connection = shared.pubsub().await?;
        if control.is_some() {
            shared
                .bounded(connection.subscribe(&shared.keys.control()))
                .await?;
        }
        Ok(Self {
            shared,
            control,
            events,
            connection: Some(connection),
            followed: HashMap::new(),
        })
    }

    /// Serves commands and delivers events until the broker is dropped.
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut backoff = MIN_BACKOFF;
        let mut retry_at = Instant::now();
        // Pings find a connection that died silently; they also keep followed channels'
        // positions from expiring in Redis while nothing is published.
        let mut tick = tokio::time::interval(self.shared.config.beat_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(connection) = &mut self.connection {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => self.command(command).await,
                        None => return,
                    },
                    message = connection.next() => match message {
                        Some(message) => self.message(&message).await,
                        None => self.lost("redis closed the pub/sub connection"),
                    },
                    _ = tick.tick() => self.tick().await,
                }
            } else {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => self.command(command).await,
                        None => return,
                    },
                    () = tokio::time::sleep_until(retry_at) => {
                        if self.reconnect().await {
                            backoff = MIN_BACKOFF;
                        } else if self.shared.relocate().await {
                            // A replica took over the shard's slots: connect to it now.
                            backoff = MIN_BACKOFF;
                            retry_at = Instant::now();
                        } else {
                            retry_at = Instant::now() + backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }
    }

    /// Drops a failed Pub/Sub connection; `run` makes a new one.
    fn lost(&mut self, why: &str) {
        if self.connection.take().is_some() {
            let redis = self.shared.what();
            tracing::warn!(%redis, reason = why, "redis pub/sub connection lost; reconnecting");
            self.shared.health.pubsub(Some(why.to_owned()));
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe(channel, done) => {
                if done.is_closed() {
                    return; // the hub stopped waiting (timed out)
                }
                let fresh = !self.followed.contains_key(&channel);
                let result = self.subscribe(&channel).await;
                if done.send(result).is_err() && fresh {
                    // Nobody counts this subscription: undo it.
                    self.unsubscribe(&channel).await.ok();
                }
            }
            Command::Unsubscribe(channel, done) => {
                let result = self.unsubscribe(&channel).await;
                let _ = done.send(result);
            }
        }
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        self.followed.remove(channel);
        let pubsub = self.shared.keys.pubsub(channel);
        let result = match &mut self.connection {
            // Without a connection there is nothing to undo: the next one will not subscribe
            // to the channel.
            None => Ok(()),
            Some(connection) => self.shared.bounded(connection.unsubscribe(&pubsub)).await,
        };
        if let Err(e) = &result {
            self.lost(&e.to_string());
        }
        result
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        if self.followed.contains_key(channel) {
            return Ok(());
        }
        let Some(connection) = &mut self.connection else {
            let what = self.shared.what();
            return Err(unavailable(format!("{what} pub/sub is reconnecting")));
        };
        let pubsub = self.shared.keys.pubsub(channel);
        if let Err(e) = self.shared.bounded(connection.subscribe(&pubsub)).await {
            self.lost(&e.to_string());
            return Err(e);
        }
        // Every publication from here on comes through Pub/Sub; the position read now says
        // where delivery starts (the hub reads what came before from history).
        match self.shared.stream(channel, HistoryRange::Latest(0)).await {
            Ok(stream) => {
                let position = Position {
                    epoch: stream.epoch,
                    offset: stream.top,
                    last: None,
                };
                self.followed.insert(channel.to_owned(), position);
                Ok(())
            }
            Err(e) => {
                if let Some(connection) = &mut self.connection
                    && self
                        .shared
                        .bounded(connection.unsubscribe(&pubsub))
                        .await
                        .is_err()
                {
                    self.lost("unsubscribe failed");
                }
                Err(e)
            }
        }
    }

    async fn message(&mut self, message: &Msg) {
        let name = message.get_channel_name();
        let Some(channel) = self.shared.keys.channel_of(name) else {
            if let Some(control) = &self.control
                && name == self.shared.keys.control()
            {
                let payload = message.get_payload_bytes();
                control::heard(&self.shared, control, &self.events, payload);
            }
            return;
        };
        if !self.followed.contains_key(channel.as_ref()) {
            return; // unsubscribed meanwhile
        }
        let event = match decode::event(message.get_payload_bytes()) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "unreadable pub/sub message");
                return;
            }
        };
        let channel = channel.into_owned();
        match event {
            Event::Join(client) => self.events.join(&channel, &client),
            Event::Leave(client) => self.events.leave(&channel, &client),
            Event::Publications {
                epoch,
                publications,
            } => {
                for publication in &publications {
                    self.publication(&channel, &epoch, publication).await;
                }
            }
        }
    }

    /// Delivers `publication` when it follows the delivered position; catches up from the
    /// stream when it skips some (which delivers it too), and ignores it when delivered.
    async fn publication(&mut self, channel: &str, epoch: &str, publication: &Arc<Publication>) {
        let Some(position) = self.followed.get_mut(channel) else {
            return; // unsubscribed meanwhile
        };
        if position.epoch == epoch && position.offset >= publication.offset {
            return; // delivered already
        }
        if position.epoch != epoch || position.offset + 1 != publication.offset {
            // A gap, or another epoch: catch up from the stream, which holds this publication
            // too (or tells that the stream was lost).
            if let Err(e) = self.catch_up(channel).await {
                self.lost(&e.to_string());
            }
            return;
        }
        position.offset = publication.offset;
        position.last = Some(publication.clone());
        self.events.publication(channel, publication);
    }

    /// Delivers what the channel's stream holds past the delivered position. When that is
    /// not everything that was missed (another epoch, or history too short), or the stream
    /// no longer holds what was delivered (a Redis that lost recent writes, such as a
    /// replica that took over before it had them, gives their offsets again), the hub is
    /// told the stream was lost, and delivery goes on from the stream's current position.
    async fn catch_up(&mut self, channel: &str) -> Result<(), BrokerError> {
        let Some(position) = self.followed.get(channel) else {
            return Ok(());
        };
        // The last publication delivered is read again, to check it is still there.
        let check = position.last.is_some() && position.offset > 0;
        let range = HistoryRange::After {
            offset: position.offset - u64::from(check),
            limit: self
                .shared
                .config
                .history
                .size
                .saturating_add(usize::from(check)),
        };
        let stream = self.shared.stream(channel, range).await?;
        let Some(position) = self.followed.get_mut(channel) else {
            return Ok(());
        };
        let mut missed = &stream.publications[..];
        let mut same = true;
        if let (true, Some(last), Some(first)) = (check, &position.last, missed.first())
            && first.offset == position.offset
        {
            // Trimmed from history, it cannot be checked; present, it must be the same.
            same = first.time == last.time
                && first.from.conn == last.from.conn
                && first.data.get() == last.data.get();
            missed = &missed[1..];
        }
        let whole = same
            && stream.epoch == position.epoch
            && stream.top >= position.offset
            && missed.len() as u64 == stream.top - position.offset
            && missed
                .iter()
                .zip(position.offset + 1..)
                .all(|(p, offset)| p.offset == offset);
        if whole {
            for publication in missed {
                self.events.publication(channel, publication);
            }
            if let Some(newest) = missed.last() {
                position.last = Some(newest.clone());
            }
        } else {
            tracing::warn!(
                %channel,
                epoch = %position.epoch,
                offset = position.offset,
                now_epoch = %stream.epoch,
                now_offset = stream.top,
                "channel stream lost (redis lost its data, or more was missed than history holds)"
            );
            self.events.stream_lost(channel);
        }
        if !whole {
            position.last = None;
        }
        position.epoch = stream.epoch;
        position.offset = stream.top;
        Ok(())
    }

    /// Connects Pub/Sub again, subscribes to every followed channel and catches up each.
    async fn reconnect(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut connection = match shared.pubsub().await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::debug!(error = %e, "redis pub/sub reconnect failed");
                return false;
            }
        };
        if self.control.is_some()
            && let Err(e) = shared
                .bounded(connection.subscribe(&shared.keys.control()))
                .await
        {
            tracing::debug!(error = %e, "redis pub/sub resubscribe failed");
            return false;
        }
        for channel in self.followed.keys() {
            let pubsub = shared.keys.pubsub(channel);
            if let Err(e) = shared.bounded(connection.subscribe(&pubsub)).await {
                tracing::debug!(error = %e, "redis pub/sub resubscribe failed");
                return false;
            }
        }
        self.connection = Some(connection);
        let channels: Vec<String> = self.followed.keys().cloned().collect();
        for channel in &channels {
            if let Err(e) = self.catch_up(channel).await {
                tracing::debug!(error = %e, "redis catch-up failed");
                self.connection = None;
                return false;
            }
        }
        let redis = self.shared.what();
        tracing::info!(%redis, channels = channels.len(), "redis pub/sub connected again");
        self.shared.health.pubsub(None);
        true
    }

    async fn tick(&mut self) {
        let Some(connection) = &mut self.connection else {
            return;
        };
        if let Err(e) = self.shared.bounded(connection.ping()).await {
            self.lost(&e.to_string());
            return;
        }
        let ttl = millis(self.shared.config.position_ttl());
        if ttl == 0 || self.followed.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for channel in self.followed.keys() {
            pipe.cmd("PEXPIRE")
                .arg(self.shared.keys.meta(channel))
                .arg(ttl)
                .ignore();
        }
        let mut con = self.shared.con();
        if let Err(e) = self.shared.bounded(pipe.query_async::<()>(&mut con)).await {
            tracing::debug!(error = %e, "refreshing channel positions failed");
        }
    }
}
