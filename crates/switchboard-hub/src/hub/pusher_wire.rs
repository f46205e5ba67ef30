//! What the fan-out needs to serve Pusher sessions (see `pusher_session.rs`): where Pusher
//! channels live among the hub's channels, what a publication on one carries, and what each
//! Pusher subscriber is sent of it.
//!
//! A Pusher app's channel `NAME` is the hub channel `pusher:{app_id}:NAME`, a prefix the
//! hub's own protocol refuses (see [`HUB_PREFIX`](crate::pusher::HUB_PREFIX)), so
//! Pusher channels go through the same broker, on one node or several, and nothing else
//! reaches them. A publication's data there is an [`Envelope`]: the event's name and data,
//! and the socket id of the connection it must not be sent to (a client event's sender).
//!
//! The fan-out encodes a publication once for all Pusher subscribers of a channel, as it
//! does for the hub's own; each subscriber's [`Tap`] only says whether it is skipped.
//! Presence is per user, not per connection: a member is added on its user's first
//! connection to the channel and removed after the last, which each subscriber's
//! [`Roster`] tracks from the broker's joins and leaves. A watchlist is the same on each
//! watched user's online channel, whose presence is the user's signed-in connections: its
//! first and last are the watchlist's `online` and `offline`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard::{EncodedFrame, Utf8Bytes};

use crate::broker::{ClientInfo, Publication};
use crate::pusher::names;
use crate::pusher::replies::{self, Members};
pub(super) use crate::pusher::{hub_channel, pusher_name};

/// A publication's data on a Pusher channel. The strings are `Cow`s: borrowed from the JSON
/// unless it escapes something, as a Laravel event's name does (`App\Events\OrderShipped`).
#[derive(Debug, Deserialize, Serialize)]
pub(super) struct Envelope<'a> {
    /// The event's name.
    #[serde(borrow)]
    pub(super) event: Cow<'a, str>,
    /// Its data, sent on as given.
    #[serde(borrow)]
    pub(super) data: &'a RawValue,
    /// The connection it is not sent to.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub(super) socket_id: Option<Cow<'a, str>>,
    /// A client event's sender on a presence channel, which its frame names.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub(super) user_id: Option<Cow<'a, str>>,
}

impl Envelope<'_> {
    /// The envelope as a publication's data.
    pub(super) fn to_raw(&self) -> Box<RawValue> {
        // An envelope's fields are strings and JSON already: it always serializes.
        serde_json::value::to_raw_value(self).expect("an envelope serializes")
    }
}

/// A publication as Pusher subscribers are sent it.
#[derive(Debug)]
pub(super) struct PusherEvent {
    frame: EncodedFrame,
    socket_id: Option<String>,
}

impl PusherEvent {
    pub(super) fn frame(&self) -> &EncodedFrame {
        &self.frame
    }
}

/// The frame of a publication on Pusher channel `name`; `None` when its data is not an
/// [`Envelope`] (nothing is sent).
pub(super) fn event_frame(name: &str, publication: &Publication) -> Option<PusherEvent> {
    let envelope = envelope_of(name, publication)?;
    let text = replies::event(
        name,
        &envelope.event,
        envelope.data,
        envelope.user_id.as_deref(),
    );
    Some(PusherEvent {
        frame: EncodedFrame::text(&Utf8Bytes::from(text)),
        socket_id: envelope.socket_id.map(Cow::into_owned),
    })
}

/// The text of a publication's frame on Pusher channel `name`, as its subscribers were sent
/// it; `None` when its data is not an [`Envelope`].
pub(super) fn event_text(name: &str, publication: &Publication) -> Option<String> {
    let envelope = envelope_of(name, publication)?;
    Some(replies::event(
        name,
        &envelope.event,
        envelope.data,
        envelope.user_id.as_deref(),
    ))
}

fn envelope_of<'p>(name: &str, publication: &'p Publication) -> Option<Envelope<'p>> {
    match serde_json::from_str(publication.data.get()) {
        Ok(envelope) => Some(envelope),
        Err(e) => {
            tracing::debug!(channel = name, error = %e, "not a Pusher event; skipped");
            None
        }
    }
}

/// Whether a publication is the app's (the HTTP API's or the server API's), not a client
/// event: only the app's events are a cache channel's last event, as in Pusher. The server
/// publishes as no connection.
pub(super) fn from_the_app(publication: &Publication) -> bool {
    publication.from.conn.is_empty()
}

/// `member_added` for `client`'s user on Pusher channel `name`; on a user's online channel
/// (see [`ONLINE`](names::ONLINE)), the watchlist event that the user is `online`.
pub(super) fn member_added(name: &str, client: &ClientInfo) -> EncodedFrame {
    if name.starts_with(names::ONLINE) {
        let online = replies::watchlist_events(&[&client.user], &[]);
        return EncodedFrame::text(&Utf8Bytes::from(online));
    }
    let info = user_info(client);
    EncodedFrame::text(&Utf8Bytes::from(replies::member_added(
        name,
        &client.user,
        &info,
    )))
}

/// `member_removed` for `client`'s user on Pusher channel `name`; on a user's online channel,
/// the watchlist event that the user is `offline`.
pub(super) fn member_removed(name: &str, client: &ClientInfo) -> EncodedFrame {
    if name.starts_with(names::ONLINE) {
        let offline = replies::watchlist_events(&[], &[&client.user]);
        return EncodedFrame::text(&Utf8Bytes::from(offline));
    }
    EncodedFrame::text(&Utf8Bytes::from(replies::member_removed(
        name,
        &client.user,
    )))
}

fn user_info(client: &ClientInfo) -> Value {
    client
        .info
        .as_deref()
        .and_then(|info| serde_json::from_str(info.get()).ok())
        .unwrap_or(Value::Null)
}

/// One Pusher subscriber, as the fan-out sees it.
#[derive(Debug)]
pub(super) struct Tap {
    /// Its connection's socket id: envelopes naming it are not sent to it.
    socket_id: String,
    /// On a presence channel, its members, once subscribed.
    roster: Option<Roster>,
}

impl Tap {
    pub(super) fn new(socket_id: &str) -> Self {
        Self {
            socket_id: socket_id.to_owned(),
            roster: None,
        }
    }

    /// Gives the subscriber its channel's members (a presence channel's, as it subscribes).
    pub(super) fn set_roster(&mut self, roster: Roster) {
        self.roster = Some(roster);
    }

    /// Whether `event` is for this subscriber: not the echo of its own client event.
    pub(super) fn wants(&self, event: &PusherEvent) -> bool {
        event.socket_id.as_deref() != Some(self.socket_id.as_str())
    }

    /// Counts a join; whether it adds a member (its user's first connection).
    pub(super) fn join(&mut self, client: &ClientInfo) -> bool {
        self.roster.as_mut().is_some_and(|r| r.join(client))
    }

    /// Counts a leave; whether it removes a member (its user's last connection).
    pub(super) fn leave(&mut self, client: &ClientInfo) -> bool {
        self.roster.as_mut().is_some_and(|r| r.leave(client))
    }
}

/// A presence channel's members: each user once, with the connections it is on the channel
/// with. Joins and leaves count by connection, so a join seen both in the presence read a
/// subscription starts from and as an event counts once.
#[derive(Debug, Default)]
pub(super) struct Roster {
    users: HashMap<String, Member>,
    /// Users in the order they joined, for `subscription_succeeded`.
    order: Vec<String>,
}

#[derive(Debug)]
struct Member {
    info: Value,
    conns: HashSet<String>,
}

impl Roster {
    /// The members of a presence read.
    pub(super) fn of(clients: &[ClientInfo]) -> Self {
        let mut roster = Self::default();
        for client in clients {
            roster.join(client);
        }
        roster
    }

    /// Counts a connection in; whether its user is new.
    pub(super) fn join(&mut self, client: &ClientInfo) -> bool {
        match self.users.get_mut(&client.user) {
            Some(member) => {
                member.conns.insert(client.conn.clone());
                false
            }
            None => {
                let member = Member {
                    info: user_info(client),
                    conns: HashSet::from([client.conn.clone()]),
                };
                self.users.insert(client.user.clone(), member);
                self.order.push(client.user.clone());
                true
            }
        }
    }

    /// Counts a connection out; whether that was its user's last.
    pub(super) fn leave(&mut self, client: &ClientInfo) -> bool {
        let Some(member) = self.users.get_mut(&client.user) else {
            return false;
        };
        if !member.conns.remove(&client.conn) || !member.conns.is_empty() {
            return false;
        }
        self.users.remove(&client.user);
        self.order.retain(|user| user != &client.user);
        true
    }

    /// The members as `subscription_succeeded` lists them.
    pub(super) fn members(&self) -> Members {
        let members = self
            .order
            .iter()
            .filter_map(|user| Some((user.clone(), self.users.get(user)?.info.clone())))
            .collect();
        Members { members }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(user: &str, conn: &str) -> ClientInfo {
        ClientInfo {
            user: user.to_owned(),
            conn: conn.to_owned(),
            authenticated: true,
            info: Some(RawValue::from_string(format!(r#"{{"name":"{user}"}}"#)).unwrap()),
        }
    }

    fn publication(data: &str) -> Publication {
        Publication {
            offset: 1,
            data: RawValue::from_string(data.to_owned()).unwrap(),
            from: client("ann", "c1"),
            time: 0,
        }
    }

    #[test]
    fn pusher_channels_are_prefixed_by_their_app() {
        let channel = hub_channel("42", "presence-room");
        assert_eq!(channel, "pusher:42:presence-room");
        assert_eq!(pusher_name(&channel), Some("presence-room"));
        assert_eq!(pusher_name("room"), None);
        assert_eq!(pusher_name("pusher:nocolon"), None);
    }

    #[test]
    fn an_envelope_becomes_an_event_frame_except_for_its_sender() {
        let data = RawValue::from_string(r#"{"x":1}"#.to_owned()).unwrap();
        let envelope = Envelope {
            event: "client-typing".into(),
            data: &data,
            socket_id: Some("1.2".into()),
            user_id: Some("ann".into()),
        };
        let event = event_frame("presence-r", &publication(envelope.to_raw().get())).unwrap();
        assert!(!Tap::new("1.2").wants(&event));
        assert!(Tap::new("1.3").wants(&event));
        // A short unmasked text frame: two bytes of header, then the text.
        let text = String::from_utf8(event.frame.as_bytes()[2..].to_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"event":"client-typing","channel":"presence-r","data":{"x":1},"user_id":"ann"}"#
        );
        assert!(event_frame("a", &publication(r#"{"no":"event"}"#)).is_none());
        assert!(event_frame("a", &publication("[1]")).is_none());
    }

    #[test]
    fn names_the_json_escapes_go_through() {
        // Laravel names an event by its class unless it says otherwise.
        let data = RawValue::from_string("{}".to_owned()).unwrap();
        let envelope = Envelope {
            event: r"App\Events\OrderShipped".into(),
            data: &data,
            socket_id: None,
            user_id: Some(r#"ann "the" \ one"#.into()),
        };
        let raw = envelope.to_raw();
        let read: Envelope<'_> = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(read.event, r"App\Events\OrderShipped");
        let event = event_frame("orders", &publication(raw.get())).unwrap();
        let text = String::from_utf8(event.frame.as_bytes()[2..].to_vec()).unwrap();
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["event"], r"App\Events\OrderShipped");
        assert_eq!(frame["user_id"], r#"ann "the" \ one"#);
    }

    #[test]
    fn members_count_once_per_user_across_connections() {
        let mut roster = Roster::of(&[client("ann", "c1"), client("ann", "c1")]);
        assert!(
            !roster.join(&client("ann", "c1")),
            "seen in the read and as an event"
        );
        assert!(
            !roster.join(&client("ann", "c2")),
            "a second connection of ann"
        );
        assert!(roster.join(&client("bob", "c3")));
        assert!(!roster.leave(&client("ann", "c1")));
        assert!(!roster.leave(&client("ann", "c1")), "a leave counted twice");
        let ids: Vec<String> = roster.members().members.into_iter().map(|m| m.0).collect();
        assert_eq!(ids, ["ann", "bob"]);
        assert!(roster.leave(&client("ann", "c2")), "ann's last connection");
        assert!(!roster.leave(&client("zed", "c9")));
        let members = roster.members().members;
        assert_eq!(
            members,
            [("bob".to_owned(), serde_json::json!({"name": "bob"}))]
        );
    }
}
