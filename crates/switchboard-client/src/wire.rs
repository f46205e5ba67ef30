//! The hub's JSON frames, as the client writes and reads them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::{ClientInfo, Position, Publication};

/// A request, by `op`.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request<'a> {
    Subscribe {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<&'a Position>,
        /// `Some(false)` declines the channel's joins and leaves; absent, the hub sends them.
        #[serde(skip_serializing_if = "Option::is_none")]
        join_leave: Option<bool>,
        id: u64,
    },
    Unsubscribe {
        channel: &'a str,
        id: u64,
    },
    Publish {
        channel: &'a str,
        data: &'a RawValue,
        id: u64,
    },
    Presence {
        channel: &'a str,
        id: u64,
    },
    History {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        id: u64,
    },
}

impl Request<'_> {
    pub(crate) fn to_json(&self) -> String {
        // Strings, numbers and JSON that was valid when parsed: nothing here fails.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A frame from the hub, by `type`. Ids are the client's own numbers; a frame with an id the
/// client did not send reads as none.
pub(crate) enum Frame {
    Connected(Connected),
    Subscribed(Subscribed),
    Unsubscribed(Unsubscribed),
    Ack(Ack),
    Presence(PresenceReply),
    History(HistoryReply),
    Error(ErrorReply),
    Message(MessageEvent),
    Join(Member),
    Leave(Member),
    Disconnect(Disconnect),
    /// Liveness, and frames of later versions.
    Other,
}

/// Reads a frame: its `type` first, then the fields of that type. (Not a tagged enum: serde
/// buffers those, and the publications' raw JSON cannot be read from a buffer.)
pub(crate) fn parse(text: &str) -> Result<Frame, serde_json::Error> {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let tag: Tag<'_> = serde_json::from_str(text)?;
    Ok(match tag.kind.as_ref() {
        "connected" => Frame::Connected(serde_json::from_str(text)?),
        "subscribed" => Frame::Subscribed(serde_json::from_str(text)?),
        "unsubscribed" => Frame::Unsubscribed(serde_json::from_str(text)?),
        "ack" => Frame::Ack(serde_json::from_str(text)?),
        "presence" => Frame::Presence(serde_json::from_str(text)?),
        "history" => Frame::History(serde_json::from_str(text)?),
        "error" => Frame::Error(serde_json::from_str(text)?),
        "message" => Frame::Message(serde_json::from_str(text)?),
        "join" => Frame::Join(serde_json::from_str(text)?),
        "leave" => Frame::Leave(serde_json::from_str(text)?),
        "disconnect" => Frame::Disconnect(serde_json::from_str(text)?),
        _ => Frame::Other,
    })
}

#[derive(Deserialize)]
pub(crate) struct Connected {
    pub(crate) client: ClientInfo,
    /// Seconds between the hub's heartbeats, when it sends them.
    #[serde(default)]
    pub(crate) heartbeat: Option<f64>,
}

#[derive(Deserialize)]
pub(crate) struct Subscribed {
    #[serde(default)]
    pub(crate) id: Option<serde_json::Value>,
    pub(crate) channel: String,
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    #[serde(default)]
    pub(crate) recovered: Option<bool>,
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) publications: Vec<Publication>,
}

#[derive(Deserialize)]
pub(crate) struct Unsubscribed {
    #[serde(default)]
    pub(crate) id: Option<serde_json::Value>,
    pub(crate) channel: String,
}

#[derive(Deserialize)]
pub(crate) struct Ack {
    pub(crate) id: serde_json::Value,
    pub(crate) offset: u64,
}

#[derive(Deserialize)]
pub(crate) struct PresenceReply {
    pub(crate) id: serde_json::Value,
    pub(crate) clients: Vec<ClientInfo>,
}

#[derive(Deserialize)]
pub(crate) struct HistoryReply {
    pub(crate) id: serde_json::Value,
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    pub(crate) publications: Vec<Publication>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorReply {
    #[serde(default)]
    pub(crate) id: Option<serde_json::Value>,
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) reason: String,
}

/// A publication of a subscribed channel: its fields beside the channel's name.
#[derive(Deserialize)]
pub(crate) struct MessageEvent {
    pub(crate) channel: String,
    pub(crate) offset: u64,
    pub(crate) time: u64,
    pub(crate) from: ClientInfo,
    pub(crate) data: Box<RawValue>,
}

impl MessageEvent {
    pub(crate) fn into_parts(self) -> (String, Publication) {
        let publication = Publication {
            offset: self.offset,
            time: self.time,
            from: self.from,
            data: self.data,
        };
        (self.channel, publication)
    }
}

#[derive(Deserialize)]
pub(crate) struct Member {
    pub(crate) channel: String,
    pub(crate) client: ClientInfo,
}

/// Before a close with 1012 or 1013: when to come back.
#[derive(Deserialize)]
pub(crate) struct Disconnect {
    #[serde(default)]
    pub(crate) retry_after_ms: Option<u64>,
}

/// The client's number in an id the hub echoes.
pub(crate) fn own_id(id: &serde_json::Value) -> Option<u64> {
    id.as_u64()
}
