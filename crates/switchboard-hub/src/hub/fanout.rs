//! The fan-out: delivers channel events from the broker to this node's subscribers. Each
//! event is encoded once per wire (the hub's protocol, or Pusher's for the Pusher sessions'
//! channels, see `pusher_wire.rs`), and the same frame is queued for every live subscriber
//! without waiting; events for a pending subscriber are held until its `subscribed` reply
//! leaves. The live subscribers of event-loop sessions are sent as a group: one mail item per
//! loop and frame (`Recipients`), not one per subscriber.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use switchboard::event_loop::{Recipients, Remote};
use switchboard::{EncodedFrame, Histogram, TrySendError, Utf8Bytes};

use super::mailbox::{KickReason, Mailbox};
use super::outbox::Outbox;
use super::pusher_wire::{self, PusherEvent, Roster, Tap};
use crate::broker::{ClientInfo, Publication};
use crate::protocol::Reply;

/// Events held for a pending subscription before the subscriber counts as lagging.
const MAX_PENDING: usize = 4096;

/// Delivers channel events from the broker to this node's subscribers.
#[derive(Debug, Default)]
pub(super) struct Fanout {
    channels: Mutex<HashMap<String, Channel>>,
    lagged: AtomicU64,
    /// Frames queued for subscribers.
    deliveries: AtomicU64,
    /// From a publication's time to its fan-out here, in microseconds.
    delivery: Histogram,
}

/// One channel's subscribers on this node.
#[derive(Debug, Default)]
struct Channel {
    /// Those sent one by one: the pending, those of a task or of a Pusher session, and those
    /// of a loop until they are grouped.
    one_by_one: HashMap<u64, Subscriber>,
    /// Live subscribers of loop sessions, sent each frame as a group. A loop subscriber
    /// joins them with the first publication past its `covered`, so that the group is sent
    /// every publication it is given.
    grouped: HashMap<u64, Grouped>,
    /// The grouped that are sent joins and leaves too, and those that are not.
    everything: Recipients,
    publications_only: Recipients,
}

/// A grouped subscriber: where it is, and where it is kicked.
#[derive(Debug)]
struct Grouped {
    remote: Remote,
    mailbox: Arc<Mailbox>,
    join_leave: bool,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.one_by_one.is_empty() && self.grouped.is_empty()
    }

    fn remove(&mut self, id: u64) {
        if self.one_by_one.remove(&id).is_some() {
            self.fit();
            return;
        }
        if let Some(grouped) = self.grouped.remove(&id) {
            self.group(grouped.join_leave).remove(&grouped.remote);
        }
    }

    /// Gives back the room of the subscribers that left one by one (for a group, as a whole
    /// channel's do once they are live): a map keeps the room of its largest size.
    fn fit(&mut self) {
        if self.one_by_one.len() * 4 < self.one_by_one.capacity() {
            self.one_by_one.shrink_to_fit();
        }
    }

    /// Moves a live subscriber of a loop session from one by one into its group.
    fn join_group(&mut self, id: u64) {
        let loop_session = |s: &Subscriber| matches!(s.sender, Outbox::Loop { .. });
        if !self.one_by_one.get(&id).is_some_and(loop_session) {
            return;
        }
        let Some(Subscriber {
            sender: Outbox::Loop { remote, .. },
            mailbox,
            join_leave,
            ..
        }) = self.one_by_one.remove(&id)
        else {
            return;
        };
        self.group(join_leave).insert(&remote);
        let grouped = Grouped {
            remote,
            mailbox,
            join_leave,
        };
        self.grouped.insert(id, grouped);
    }

    fn group(&mut self, join_leave: bool) -> &mut Recipients {
        if join_leave {
            &mut self.everything
        } else {
            &mut self.publications_only
        }
    }

    /// Every subscriber's mailbox, for a kick.
    fn mailboxes(self) -> impl Iterator<Item = Arc<Mailbox>> {
        let one_by_one = self.one_by_one.into_values().map(|s| s.mailbox);
        one_by_one.chain(self.grouped.into_values().map(|g| g.mailbox))
    }
}

#[derive(Debug)]
struct Subscriber {
    sender: Outbox,
    /// `Some` while the subscription is pending: events held until `subscribed` is sent.
    pending: Option<Vec<Held>>,
    /// The offset its `subscribed` reply covers: publications up to it were in the reply or
    /// before `since`. A broker may deliver one of them after the reply (through Redis, the
    /// history read that made the reply can outrun the Pub/Sub message), and it is not sent
    /// again.
    covered: u64,
    /// Where the fan-out kicks it.
    mailbox: Arc<Mailbox>,
    /// `Some` for a Pusher session's subscription: it is sent Pusher's frames. Boxed, since
    /// every subscriber's entry has room for it and most have none.
    tap: Option<Box<Tap>>,
    /// Whether it is sent the channel's joins and leaves.
    join_leave: bool,
}

/// Which of a channel's events a subscriber is sent, and how.
pub(super) struct Events {
    /// The joins and leaves too, not only the publications.
    pub(super) join_leave: bool,
    /// A Pusher session's: it is sent Pusher's frames.
    pub(super) tap: Option<Tap>,
}

#[derive(Debug)]
enum Held {
    Publication(Arc<Publication>),
    Join(ClientInfo),
    Leave(ClientInfo),
}

/// A channel event, as the fan-out sends it.
#[derive(Clone, Copy)]
enum Event<'a> {
    Publication(&'a Arc<Publication>),
    Join(&'a ClientInfo),
    Leave(&'a ClientInfo),
}

impl Event<'_> {
    fn held(self) -> Held {
        match self {
            Self::Publication(p) => Held::Publication(p.clone()),
            Self::Join(client) => Held::Join(client.clone()),
            Self::Leave(client) => Held::Leave(client.clone()),
        }
    }
}

/// One event's frames, each encoded when a subscriber first needs it: once per wire, not
/// once per subscriber.
struct Frames<'a> {
    channel: &'a str,
    event: Event<'a>,
    hub: Option<EncodedFrame>,
    /// The Pusher frame; `None` inside when the data is not a Pusher event.
    pusher: Option<Option<PusherEvent>>,
    /// A Pusher `member_added` or `member_removed`.
    member: Option<EncodedFrame>,
}

impl<'a> Frames<'a> {
    fn new(channel: &'a str, event: Event<'a>) -> Self {
        Self {
            channel,
            event,
            hub: None,
            pusher: None,
            member: None,
        }
    }

    /// What `tap`'s subscriber (a hub session's, for `None`) is sent; `None`: nothing.
    fn for_subscriber(&mut self, tap: Option<&mut Tap>) -> Option<&EncodedFrame> {
        let (channel, event) = (self.channel, self.event);
        let Some(tap) = tap else {
            return Some(self.hub.get_or_insert_with(|| match event {
                Event::Publication(p) => message_frame(channel, p),
                Event::Join(client) => presence_frame(&Reply::Join { channel, client }),
                Event::Leave(client) => presence_frame(&Reply::Leave { channel, client }),
            }));
        };
        let name = pusher_wire::pusher_name(channel)?;
        match event {
            Event::Publication(p) => {
                let pusher = self
                    .pusher
                    .get_or_insert_with(|| pusher_wire::event_frame(name, p))
                    .as_ref()?;
                tap.wants(pusher).then(|| pusher.frame())
            }
            Event::Join(client) if tap.join(client) => Some(
                self.member
                    .get_or_insert_with(|| pusher_wire::member_added(name, client)),
            ),
            Event::Leave(client) if tap.leave(client) => Some(
                self.member
                    .get_or_insert_with(|| pusher_wire::member_removed(name, client)),
            ),
            Event::Join(_) | Event::Leave(_) => None,
        }
    }
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
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
    pub(super) fn add_pending(
        &self,
        channel: &str,
        id: u64,
        sender: &Outbox,
        mailbox: &Arc<Mailbox>,
        events: Events,
    ) {
        let subscriber = Subscriber {
            sender: sender.clone(),
            pending: Some(Vec::new()),
            covered: 0,
            mailbox: mailbox.clone(),
            tap: events.tap.map(Box::new),
            join_leave: events.join_leave,
        };
        self.lock()
            .entry(channel.to_owned())
            .or_default()
            .one_by_one
            .insert(id, subscriber);
    }

    /// Drops a subscriber, pending or live.
    pub(super) fn remove(&self, channel: &str, id: u64) {
        let mut channels = self.lock();
        if let Some(subscribers) = channels.get_mut(channel) {
            subscribers.remove(id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Ends a pending subscription: sends `replies` (the reply to the subscribe, and for a
    /// Pusher cache channel its last event), then the held events after `offset`, and makes
    /// the subscriber live, all under the lock so no event slips in between. A Pusher
    /// subscriber on a presence channel is given its `roster` first, which the held joins and
    /// leaves then update.
    pub(super) fn activate(
        &self,
        channel: &str,
        id: u64,
        replies: Vec<String>,
        offset: u64,
        roster: Option<Roster>,
    ) {
        let mut channels = self.lock();
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        let Some(subscriber) = subscribers.one_by_one.get_mut(&id) else {
            return; // dropped for lagging meanwhile
        };
        let held = subscriber.pending.take().unwrap_or_default();
        subscriber.covered = offset;
        if let (Some(tap), Some(roster)) = (&mut subscriber.tap, roster) {
            tap.set_roster(roster);
        }
        let mut ok = true;
        for reply in replies {
            ok = ok && self.send(subscriber, &EncodedFrame::text(&Utf8Bytes::from(reply)));
        }
        let mut sent = 0;
        for event in held {
            if !ok {
                break;
            }
            let event = match &event {
                Held::Publication(p) if p.offset > offset => Event::Publication(p),
                Held::Publication(_) => continue, // already in the reply, or before `since`
                Held::Join(client) => Event::Join(client),
                Held::Leave(client) => Event::Leave(client),
            };
            let frames = &mut Frames::new(channel, event);
            let Some(frame) = frames.for_subscriber(subscriber.tap.as_deref_mut()) else {
                continue;
            };
            ok = self.send(subscriber, frame);
            sent += u64::from(ok);
        }
        self.deliveries.fetch_add(sent, Ordering::Relaxed);
        if !ok {
            subscribers.remove(id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Queues `frame` for a live subscriber; on a full queue flags it as lagging.
    fn send(&self, subscriber: &Subscriber, frame: &EncodedFrame) -> bool {
        match subscriber.sender.try_send_encoded(frame) {
            Ok(()) => true,
            Err(TrySendError::Full) => {
                self.lag(&subscriber.mailbox);
                false
            }
            Err(_) => false,
        }
    }

    /// Counts a subscriber whose queue was full, and has its session end it.
    pub(super) fn lag(&self, mailbox: &Mailbox) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
        mailbox.kick(KickReason::Lagging);
    }

    /// Sends an event to the channel's live subscribers and holds it for pending ones. Lagging
    /// and closed subscribers are dropped from the channel.
    fn dispatch(&self, channel: &str, event: Event<'_>) {
        let mut channels = self.lock();
        let Some(subscribers) = channels.get_mut(channel) else {
            return;
        };
        let offset = match event {
            Event::Publication(p) => Some(p.offset),
            Event::Join(_) | Event::Leave(_) => None,
        };
        let mut frames = Frames::new(channel, event);
        let mut sent = 0;
        let Channel {
            one_by_one,
            grouped,
            everything,
            publications_only,
        } = subscribers;
        if !grouped.is_empty()
            && let Some(frame) = frames.for_subscriber(None)
        {
            everything.send_encoded(frame, None);
            sent += everything.len() as u64;
            if offset.is_some() {
                publications_only.send_encoded(frame, None);
                sent += publications_only.len() as u64;
            }
        }
        let mut joining = Vec::new();
        one_by_one.retain(|&id, subscriber| match &mut subscriber.pending {
            _ if offset.is_none() && !subscriber.join_leave => true,
            Some(pending) if pending.len() < MAX_PENDING => {
                pending.push(event.held());
                true
            }
            Some(_) => {
                self.lag(&subscriber.mailbox);
                false
            }
            None if offset.is_some_and(|offset| offset <= subscriber.covered) => true,
            None => match frames.for_subscriber(subscriber.tap.as_deref_mut()) {
                Some(frame) => {
                    let ok = self.send(subscriber, frame);
                    sent += u64::from(ok);
                    // A loop session's, past `covered`: it is sent every publication from
                    // now on.
                    let loop_session = matches!(subscriber.sender, Outbox::Loop { .. });
                    if ok && loop_session && offset.is_some() && subscriber.tap.is_none() {
                        joining.push(id);
                    }
                    ok
                }
                None => true,
            },
        });
        if !joining.is_empty() {
            for id in joining {
                subscribers.join_group(id);
            }
            subscribers.fit();
        }
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
        self.dispatch(channel, Event::Publication(publication));
    }

    pub(super) fn join(&self, channel: &str, client: &ClientInfo) {
        self.dispatch(channel, Event::Join(client));
    }

    pub(super) fn leave(&self, channel: &str, client: &ClientInfo) {
        self.dispatch(channel, Event::Leave(client));
    }

    pub(super) fn stream_lost(&self, channel: &str) {
        // Pending subscribers go too: their reply may predate the loss.
        let subscribers = self.lock().remove(channel);
        for mailbox in subscribers.into_iter().flat_map(Channel::mailboxes) {
            mailbox.kick(KickReason::StreamLost);
        }
    }
}
