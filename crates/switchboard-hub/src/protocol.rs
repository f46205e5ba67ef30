//! The hub's wire protocol: one JSON object per text frame.
//!
//! Client to server, by `op`:
//!
//! ```text
//! {"op":"subscribe","channel":"room","since":{"epoch":"9f2c..","offset":41},"id":1}
//! {"op":"unsubscribe","channel":"room","id":2}
//! {"op":"publish","channel":"room","data":{"text":"hi"},"id":3}
//! {"op":"presence","channel":"room","id":4}
//! {"op":"history","channel":"room","limit":50,"id":5}
//! ```
//!
//! Server to client, by `type`: first `connected` (the client's user and connection id, as
//! others will see them, and the heartbeat interval), then `subscribed`, `unsubscribed`, `ack`,
//! `presence`, `history`, `error` (replies, carrying the request's `id` when it had one), and
//! `message`, `join`, `leave` (events of a subscribed channel). `id` is a number or a string
//! chosen by the client. Unknown fields are ignored, so that clients written for a later
//! version still work; a client ignores a `type` it does not know, for the same reason.
//!
//! ```text
//! {"type":"connected","client":{"user":"ann","conn":"8c1d2e4f1"},"heartbeat":25}
//! {"type":"heartbeat"}
//! {"type":"disconnect","code":1012,"reason":"restarting","retry_after_ms":5000}
//! ```
//!
//! Liveness: with `heartbeat` in `connected` (seconds, maybe with a fraction; absent when the
//! hub sends none), the hub sends `{"type":"heartbeat"}` on the connection at that interval.
//! Browsers hide protocol pings from scripts, so this is how a page learns that its network is
//! gone while its socket still looks open: a client that receives no frame at all for about
//! twice the interval closes the connection and reconnects.
//!
//! Retry hint: before closing a connection with 1012 (service restart) or 1013 (try again
//! later), the hub may send `disconnect` with the close `code`, a `reason` and
//! `retry_after_ms`; a client waits at least that long (plus jitter, so that the clients of a
//! node do not all come back at once) before it reconnects. Without the hint, a client retries
//! with its usual backoff.
//!
//! The server side may act on a connection unasked (`Hub::subscribe`, `Hub::unsubscribe`,
//! `Hub::disconnect`): the client then gets `subscribed` or `unsubscribed` without `id`, the
//! channel's events as after its own `subscribe`, or a Close frame with the code and reason the
//! server chose. A publication from the server side has `from` with an empty `user` and `conn`
//! and `authenticated` true.
//!
//! Invariants the server keeps: on one connection, the `message`s of a channel arrive in
//! strictly increasing `offset` order, each once, and the `subscribed` reply comes before them;
//! `data` is forwarded as the exact JSON text the publisher sent.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::broker::{ClientInfo, Publication, StreamPosition};

/// A request id: whatever the client chose, echoed in the reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A numeric id.
    Number(u64),
    /// A string id.
    String(String),
}

/// What a client asked for.
#[derive(Debug)]
pub(crate) enum Request {
    Subscribe {
        id: Option<RequestId>,
        channel: String,
        since: Option<StreamPosition>,
        /// Whether the channel's `join` and `leave` events are wanted (the default): a
        /// subscriber of a large channel declines them, as each subscribe would otherwise
        /// reach every other subscriber.
        join_leave: bool,
    },
    Unsubscribe {
        id: Option<RequestId>,
        channel: String,
    },
    Publish {
        id: Option<RequestId>,
        channel: String,
        data: Box<RawValue>,
    },
    Presence {
        id: Option<RequestId>,
        channel: String,
    },
    History {
        id: Option<RequestId>,
        channel: String,
        limit: Option<usize>,
    },
}

/// Every field any op takes; which are required depends on the op. The op is read in place
/// from the frame, not copied (unless it has escapes).
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    id: Option<RequestId>,
    channel: Option<String>,
    data: Option<Box<RawValue>>,
    since: Option<StreamPosition>,
    limit: Option<usize>,
    join_leave: Option<bool>,
}

/// Just the id, to address the error reply of a request whose other fields are wrong.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<RequestId>,
}

/// Why the hub refused a request: a stable code for programs, a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct RequestError {
    /// The request's id, when it could be read.
    pub id: Option<RequestId>,
    /// What kind of refusal.
    pub code: ErrorCode,
    /// What was wrong, in words.
    pub reason: String,
}

impl RequestError {
    pub(crate) fn new(id: Option<RequestId>, code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            id,
            code,
            reason: reason.into(),
        }
    }
}

/// The machine-readable code of an `error` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// `subscribe` for a channel this connection is already subscribed to.
    AlreadySubscribed,
    /// The request is JSON but a field is missing or has the wrong type.
    BadRequest,
    /// The channel rules do not allow this user to do this on this channel.
    Forbidden,
    /// The channel name is empty, too long, or has spaces or control characters.
    InvalidChannel,
    /// The frame is not a JSON object.
    Malformed,
    /// `unsubscribe` for a channel this connection is not subscribed to.
    NotSubscribed,
    /// `publish` data over the server's size limit.
    TooLarge,
    /// The connection reached its limit of subscriptions.
    TooManySubscriptions,
    /// The connection sends more messages a second than the server allows; the message was
    /// dropped. A client that goes on is closed with 1008.
    RateLimited,
    /// The token in the `token` query parameter is invalid or has expired.
    Unauthorized,
    /// The broker failed or did not answer in time (a Redis broker lost its server, ...); the
    /// request may be retried. A `publish` so answered may still be applied later (it may have
    /// reached Redis before the answer was given up on): a retry may publish it twice.
    Unavailable,
    /// An `op` this server does not know.
    UnknownOp,
    /// A binary frame: the protocol is JSON in text frames.
    Unsupported,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadySubscribed => "already_subscribed",
            Self::BadRequest => "bad_request",
            Self::Forbidden => "forbidden",
            Self::InvalidChannel => "invalid_channel",
            Self::Malformed => "malformed",
            Self::NotSubscribed => "not_subscribed",
            Self::TooLarge => "too_large",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::UnknownOp => "unknown_op",
            Self::Unsupported => "unsupported",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// The `id` of a request, when it has one that can be read, for a reply to a request that is
/// not acted on.
pub(crate) fn request_id(text: &str) -> Option<RequestId> {
    serde_json::from_str::<IdOnly>(text).ok().and_then(|i| i.id)
}

/// Parses one text frame into a request.
pub(crate) fn parse_request(text: &str) -> Result<Request, RequestError> {
    let incoming: Incoming<'_> = match serde_json::from_str(text) {
        Ok(incoming) => incoming,
        Err(e) if e.is_data() => {
            // Valid JSON of the wrong shape: the id may still be readable.
            let id = request_id(text);
            let code = if text.trim_start().starts_with('{') {
                ErrorCode::BadRequest
            } else {
                ErrorCode::Malformed
            };
            return Err(RequestError::new(id, code, e.to_string()));
        }
        Err(e) => {
            return Err(RequestError::new(
                None,
                ErrorCode::Malformed,
                format!("not json: {e}"),
            ));
        }
    };
    let Incoming {
        op,
        id,
        channel,
        data,
        since,
        limit,
        join_leave,
    } = incoming;
    let Some(op) = op else {
        return Err(RequestError::new(id, ErrorCode::BadRequest, "missing op"));
    };
    let known = ["subscribe", "unsubscribe", "publish", "presence", "history"];
    if !known.contains(&&*op) {
        let reason = format!("unknown op {op:?}; known: {}", known.join(", "));
        return Err(RequestError::new(id, ErrorCode::UnknownOp, reason));
    }
    let Some(channel) = channel else {
        return Err(RequestError::new(
            id,
            ErrorCode::BadRequest,
            "missing channel",
        ));
    };
    if let Err(reason) = check_client_channel(&channel) {
        return Err(RequestError::new(id, ErrorCode::InvalidChannel, reason));
    }
    Ok(match &*op {
        "subscribe" => Request::Subscribe {
            id,
            channel,
            since,
            join_leave: join_leave.unwrap_or(true),
        },
        "unsubscribe" => Request::Unsubscribe { id, channel },
        "publish" => match data {
            Some(data) => Request::Publish { id, channel, data },
            None => {
                let reason = "publish needs data (any JSON value but null)";
                return Err(RequestError::new(id, ErrorCode::BadRequest, reason));
            }
        },
        "presence" => Request::Presence { id, channel },
        _ => Request::History { id, channel, limit },
    })
}

/// Reads one text frame as the hub does, without acting on it: the op of a well-formed request,
/// or the refusal the client would get. The same decoder the hub runs, for tests and fuzzers.
///
/// # Errors
///
/// The [`RequestError`] (code and reason) of the `error` reply the hub would send.
pub fn check_request(text: &str) -> Result<&'static str, RequestError> {
    Ok(match parse_request(text)? {
        Request::Subscribe { .. } => "subscribe",
        Request::Unsubscribe { .. } => "unsubscribe",
        Request::Publish { .. } => "publish",
        Request::Presence { .. } => "presence",
        Request::History { .. } => "history",
    })
}

/// Channel names: 1 to [`MAX_CHANNEL_LEN`] bytes, no whitespace or control characters (they
/// are shown to people and used as keys by brokers).
pub(crate) fn check_channel(channel: &str) -> Result<(), String> {
    if channel.is_empty() {
        return Err("channel name is empty".into());
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Err(format!(
            "channel name is {} bytes, limit is {MAX_CHANNEL_LEN}",
            channel.len()
        ));
    }
    if channel.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("channel name has whitespace or control characters".into());
    }
    Ok(())
}

/// The channels a client of this protocol may name: [`check_channel`]'s, except those that
/// carry Pusher channels ([`HUB_PREFIX`](crate::pusher::HUB_PREFIX)), which only Pusher
/// sessions and the server side reach.
pub(crate) fn check_client_channel(channel: &str) -> Result<(), String> {
    check_channel(channel)?;
    if channel.starts_with(crate::pusher::HUB_PREFIX) {
        return Err(format!(
            "channel names starting with {:?} are reserved for the Pusher protocol",
            crate::pusher::HUB_PREFIX
        ));
    }
    Ok(())
}

/// Why a `subscribe` with `since` could not replay what was missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecoveryFailure {
    /// The channel's history was lost since (a restart, an idle channel forgotten): the epoch
    /// differs.
    EpochChanged,
    /// Some of the missed messages are no longer in history (over its size or age).
    HistoryTruncated,
    /// More messages were missed than the server replays at once.
    TooManyMissed,
    /// `since` names an offset the channel never reached.
    OffsetAhead,
}

/// Frames the server sends, by `type`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Reply<'a> {
    Connected {
        client: &'a ClientInfo,
        /// The heartbeat interval in seconds, when the hub sends heartbeats.
        #[serde(skip_serializing_if = "Option::is_none")]
        heartbeat: Option<serde_json::Number>,
    },
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<RecoveryFailure>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        publications: &'a [std::sync::Arc<Publication>],
    },
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        channel: &'a str,
    },
    Ack {
        id: &'a RequestId,
        channel: &'a str,
        offset: u64,
    },
    Presence {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        channel: &'a str,
        clients: &'a [ClientInfo],
    },
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        publications: &'a [std::sync::Arc<Publication>],
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        code: ErrorCode,
        reason: &'a str,
    },
    Message {
        channel: &'a str,
        #[serde(flatten)]
        publication: &'a Publication,
    },
    Join {
        channel: &'a str,
        client: &'a ClientInfo,
    },
    Leave {
        channel: &'a str,
        client: &'a ClientInfo,
    },
    /// Before a close with 1012 or 1013: when to come back.
    Disconnect {
        code: u16,
        reason: &'a str,
        retry_after_ms: u64,
    },
}

impl Reply<'_> {
    /// The frame's JSON text.
    pub(crate) fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and `data` is JSON
        // that was validated when it was parsed.
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize a reply");
            String::from(r#"{"type":"error","code":"internal","reason":"serialization"}"#)
        })
    }
}

impl From<&RequestError> for String {
    fn from(e: &RequestError) -> Self {
        Reply::Error {
            id: e.id.as_ref(),
            code: e.code,
            reason: &e.reason,
        }
        .to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> RequestError {
        match parse_request(text) {
            Err(e) => e,
            Ok(request) => panic!("{text} parsed as {request:?}"),
        }
    }

    #[test]
    fn parses_every_op() {
        let r = parse_request(
            r#"{"op":"subscribe","channel":"room","since":{"epoch":"e1","offset":41},"id":1}"#,
        )
        .unwrap();
        let Request::Subscribe {
            id,
            channel,
            since,
            join_leave,
        } = r
        else {
            panic!("{r:?}")
        };
        assert!(join_leave, "joins and leaves are sent unless declined");
        assert_eq!(id, Some(RequestId::Number(1)));
        assert_eq!(channel, "room");
        assert_eq!(
            since,
            Some(StreamPosition {
                epoch: "e1".into(),
                offset: 41
            })
        );
        // An op with an escape cannot be read in place, and is read all the same.
        let r = parse_request(r#"{"op":"pub\u006cish","channel":"room","data":1}"#);
        assert!(matches!(r, Ok(Request::Publish { .. })), "{r:?}");
        let r = parse_request(r#"{"op":"subscribe","channel":"room","join_leave":false}"#);
        assert!(
            matches!(
                r,
                Ok(Request::Subscribe {
                    join_leave: false,
                    ..
                })
            ),
            "{r:?}"
        );
        let r =
            parse_request(r#"{"op":"publish","channel":"room","data":{"text":"hi" },"id":"x"}"#)
                .unwrap();
        let Request::Publish { id, data, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(id, Some(RequestId::String("x".into())));
        // The data is kept as the publisher's exact text.
        assert_eq!(data.get(), r#"{"text":"hi" }"#);
        assert!(matches!(
            parse_request(r#"{"op":"history","channel":"c","limit":5}"#),
            Ok(Request::History { limit: Some(5), .. })
        ));
        assert!(matches!(
            parse_request(r#"{"op":"presence","channel":"c","extra":[1,2]}"#),
            Ok(Request::Presence { id: None, .. })
        ));
        assert!(matches!(
            parse_request(r#"{"op":"unsubscribe","channel":"c"}"#),
            Ok(Request::Unsubscribe { .. })
        ));
    }

    #[test]
    fn bad_input_gets_a_code_and_keeps_the_id_when_readable() {
        assert_eq!(error_of("{not json").code, ErrorCode::Malformed);
        assert_eq!(error_of("[1,2]").code, ErrorCode::Malformed);
        assert_eq!(error_of("").code, ErrorCode::Malformed);
        let e = error_of(r#"{"op":"dance","channel":"c","id":9}"#);
        assert_eq!(
            (e.code, e.id),
            (ErrorCode::UnknownOp, Some(RequestId::Number(9)))
        );
        let e = error_of(r#"{"op":"subscribe","channel":5,"id":"a"}"#);
        assert_eq!(
            (e.code, e.id),
            (ErrorCode::BadRequest, Some(RequestId::String("a".into())))
        );
        assert_eq!(error_of(r#"{"channel":"c"}"#).code, ErrorCode::BadRequest);
        assert_eq!(error_of(r#"{"op":"publish"}"#).code, ErrorCode::BadRequest);
        assert_eq!(
            error_of(r#"{"op":"publish","channel":"c","data":null}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            error_of(r#"{"op":"subscribe","channel":"a b"}"#).code,
            ErrorCode::InvalidChannel
        );
        let long = format!(r#"{{"op":"subscribe","channel":"{}"}}"#, "x".repeat(129));
        assert_eq!(error_of(&long).code, ErrorCode::InvalidChannel);
    }

    #[test]
    fn error_reply_names_code_reason_and_id() {
        let e = RequestError::new(Some(RequestId::Number(3)), ErrorCode::Forbidden, "no");
        let json: serde_json::Value = serde_json::from_str(&String::from(&e)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"error","id":3,"code":"forbidden","reason":"no"})
        );
    }
}
