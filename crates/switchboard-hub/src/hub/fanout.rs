//! The fan-out: delivers channel events from the broker to this node's subscribers. Each
//! event is encoded once, and the same frame is queued for every live subscriber without
//! waiting; events for a pending subscriber are held until its `subscribed` reply leaves.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use switchboard::{EncodedFrame, Histogram, Sender, TrySendError, Utf8Bytes};

use super::kick::{Kick, KickReason};
use crate::broker::{ClientInfo, Publication};
use crate::protocol::Reply;

/// Events held for a pending subscription before the subscriber counts as lagging.
const MAX_PENDING: usize = 4096;

/// Delivers channel events from the broker to this node's subscribers.
#[derive(Debug, Default)]
pub(super) struct Fanout {
    channels: Mutex<HashMap<String, HashMap<u64, Subscriber>>>,
    lagged: AtomicU64,
    /// Frames queued for subscribers.
    deliveries: AtomicU64,
    /// From a publication's time to its fan-out here, in microseconds.
    delivery: Histogram,
}

#[derive(Debug)]
struct Subscriber {
    sender: Sender,
    /// `Some` while the subscription is pending: events held until `subscribed` is sent.
    pending: Option<Vec<Held>>,
    /// The offset its `subscribed` reply covers: publications up to it were in the reply or
    /// before `since`. A broker may deliver one of them after the reply (through Redis, the
    /// history read that made the reply can outrun the Pub/Sub message), and it is not sent
    /// again.
    covered: u64,
    kick: Arc<Kick>,
}

#[derive(Debug)]
enum Held {
    Publication(Arc<Publication>),
    /// A join or leave, already encoded.
    Presence(EncodedFrame),
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Subscriber>>> {
        // Every operation leaves the maps consistent, so a poisoned lock is still usable.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribers dropped because their queue was full.
    pub(super) fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Frames queued for subscribers since the start.
    pub(super) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Publications fanned out since the start.
    pub(super) fn publications(&self) -> u64 {
        self.delivery.count()
    }

    /// Channels with a subscriber on this node.
    pub(super) fn channel_count(&self) -> usize {
        self.lock().len()
    }

    /// Writes the publish-to-deliver histogram.
    pub(super) fn render(&self, out: &mut String) {
        let name = "switchboard_hub_publish_to_deliver_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From when the broker accepted a publication (its time, in ms, on \
             the broker's clock) to when this node queued it for its subscribers.\n\
             # TYPE {name} histogram"
        );
        self.delivery.render(out, name, "", 1e6);
    }

    /// Adds a pending subscriber: the channel's events are held for it until
    /// [`activate`](Self::activate).
    pub(super) fn add_pending(&self, channel: &str, id: u64, sender: &Sender, kick: &Arc<Kick>) {
        let subscriber = Subscriber {
            sender: sender.clone(),
            pending: Some(Vec::new()),
            covered: 0,
            kick: kick.clone(),
        };
        self.lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(id, subscriber);
    }

    /// Drops a subscriber, pending or live.
    pub(super) fn remove(&self, channel: &str, id: u64) {
        let mut channels = self.lock();
        if let Some(subscribers) = channels.get_mut(channel) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Ends a pending subscription: sends `subscribed`, then the held events after `offset`,
    /// and makes the subscriber live, all under the lock so no event slips in between.
    pub(super) fn activate(&self, channel: &str, id: u64, subscribed: String, offset: u64) {
        let mut channels = self.lock();
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        let Some(subscriber) = subscribers.get_mut(&id) else {
            return; // dropped for lagging meanwhile
        };
        let held = subscriber.pending.take().unwrap_or_default();
        subscriber.covered = offset;
        let mut ok = self.send(
            subscriber,
            &EncodedFrame::text(&Utf8Bytes::from(subscribed)),
        );
        let mut sent = 0;
        for event in held {
            if !ok {
                break;
            }
            let frame = match event {
                Held::Publication(p) if p.offset > offset => message_frame(channel, &p),
                Held::Publication(_) => continue, // already in the reply, or before `since`
                Held::Presence(frame) => frame,
            };
            ok = self.send(subscriber, &frame);
            sent += u64::from(ok);
        }
        self.deliveries.fetch_add(sent, Ordering::Relaxed);
        if !ok {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Queues `frame` for a live subscriber; on a full queue flags it as lagging.
    fn send(&self, subscriber: &Subscriber, frame: &EncodedFrame) -> bool {
        match subscriber.sender.try_send_encoded(frame.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full) => {
                self.lag(subscriber);
                false
            }
            Err(_) => false,
        }
    }

    fn lag(&self, subscriber: &Subscriber) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
        subscriber.kick.kick(KickReason::Lagging);
    }

    /// Sends an event to the channel's live subscribers and holds it for pending ones. Lagging
    /// and closed subscribers are dropped from the channel.
    /// `offset` is a publication's, `None` for presence events.
    fn dispatch(
        &self,
        channel: &str,
        offset: Option<u64>,
        held: impl Fn() -> Held,
        frame: impl Fn() -> EncodedFrame,
    ) {
        let mut channels = self.lock();
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        let mut encoded: Option<EncodedFrame> = None;
        let mut sent = 0;
        subscribers.retain(|_, subscriber| match &mut subscriber.pending {
            Some(pending) if pending.len() < MAX_PENDING => {
                pending.push(held());
                true
            }
            Some(_) => {
                self.lag(subscriber);
                false
            }
            None if offset.is_some_and(|offset| offset <= subscriber.covered) => true,
            None => {
                let ok = self.send(subscriber, encoded.get_or_insert_with(&frame));
                sent += u64::from(ok);
                ok
            }
        });
        // One add per event, not per subscriber: the fan-out's hot loop stays free of atomics.
        self.deliveries.fetch_add(sent, Ordering::Relaxed);
        if subscribers.is_empty() {
            channels.remove(channel);
        }
    }
}

fn message_frame(channel: &str, publication: &Publication) -> EncodedFrame {
    let json = Reply::Message {
        channel,
        publication,
    }
    .to_json();
    EncodedFrame::text(&Utf8Bytes::from(json))
}

fn presence_frame(reply: &Reply<'_>) -> EncodedFrame {
    EncodedFrame::text(&Utf8Bytes::from(reply.to_json()))
}

/// The broker's channel events, as [`Events`](super::cluster::Events) passes them on.
impl Fanout {
    pub(super) fn publication(&self, channel: &str, publication: &Arc<Publication>) {
        // Milliseconds on both sides; a clock behind the broker's counts as no wait.
        let now = SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default();
        let since = now.saturating_sub(Duration::from_millis(publication.time));
        self.delivery.observe_micros(since);
        // In the publisher's span when the broker delivers in process (see `LocalBroker`).
        tracing::debug!(%channel, offset = publication.offset, "delivering");
        self.dispatch(
            channel,
            Some(publication.offset),
            || Held::Publication(publication.clone()),
            || message_frame(channel, publication),
        );
    }

    pub(super) fn join(&self, channel: &str, client: &ClientInfo) {
        let frame = presence_frame(&Reply::Join { channel, client });
        self.dispatch(
            channel,
            None,
            || Held::Presence(frame.clone()),
            || frame.clone(),
        );
    }

    pub(super) fn leave(&self, channel: &str, client: &ClientInfo) {
        let frame = presence_frame(&Reply::Leave { channel, client });
        self.dispatch(
            channel,
            None,
            || Held::Presence(frame.clone()),
            || frame.clone(),
        );
    }

    pub(super) fn stream_lost(&self, channel: &str) {
        // Pending subscribers go too: their reply may predate the loss.
        let subscribers = self.lock().remove(channel);
        for subscriber in subscribers.into_iter().flat_map(HashMap::into_values) {
            subscriber.kick.kick(KickReason::StreamLost);
        }
    }
}
