//! One webhook event and its JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{EventKind, Format};

/// `{"type":"member_added","channel":"room","user":"ann","conn":"..","node":"..","time":ms}`;
/// `user` and `conn` only for presence events.
#[derive(Debug, Serialize)]
pub(crate) struct Event {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) conn: Option<String>,
    /// The node that saw it: for occupied and vacated, which node's subscribers they count.
    pub(super) node: String,
    /// When, in milliseconds since the Unix epoch.
    pub(super) time: u64,
}

impl Event {
    pub(super) fn new(kind: EventKind, channel: &str, node: &str) -> Self {
        Self {
            kind: kind.name(),
            channel: channel.to_owned(),
            user: None,
            conn: None,
            node: node.to_owned(),
            time: now_ms(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 on a clock set before it).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The request body: `{"events":[...]}`, and in Pusher's format `{"time_ms":...,
/// "events":[...]}` with the time it is made.
pub(super) fn body<E: Serialize>(events: &[E], format: &Format) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a, E> {
        #[serde(skip_serializing_if = "Option::is_none")]
        time_ms: Option<u64>,
        events: &'a [E],
    }
    let time_ms = matches!(format, Format::Pusher(_)).then(now_ms);
    // Strings and numbers only: serializing cannot fail.
    serde_json::to_vec(&Body { time_ms, events }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_event_names_its_client_and_a_channel_event_does_not() {
        let mut added = Event::new(EventKind::MemberAdded, "room", "ab12");
        added.user = Some("ann".into());
        added.conn = Some("ab121".into());
        added.time = 7;
        let occupied = Event {
            time: 5,
            ..Event::new(EventKind::ChannelOccupied, "room", "ab12")
        };
        assert_eq!(
            String::from_utf8(body(&[occupied, added], &Format::Switchboard)).unwrap(),
            r#"{"events":[{"type":"channel_occupied","channel":"room","node":"ab12","time":5},{"type":"member_added","channel":"room","user":"ann","conn":"ab121","node":"ab12","time":7}]}"#
        );
    }
}
