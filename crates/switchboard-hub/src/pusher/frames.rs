//! What a Pusher Channels protocol 7 client sends: [`ClientFrame`], parsed and checked, or
//! a [`FrameError`] with Pusher's code; and [`PusherCode`], the protocol's close and error
//! codes.
//!
//! Every frame is `{"event": NAME, "channel": CHANNEL?, "data": DATA}`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::names::{is_server_to_user, valid_channel};

/// The protocol version served (`?protocol=7` in the client's URL).
pub const PROTOCOL: u32 = 7;

/// The longest event name Pusher allows, in bytes.
pub const MAX_EVENT_NAME: usize = 200;

/// The largest data of one event, in bytes (Pusher's 10 KB), a client's or an app's.
pub const MAX_EVENT_DATA: usize = 10 * 1024;

/// Pusher's close and error codes (its "Error codes" documentation): 4000–4099 mean "do not
/// reconnect", 4100–4199 "reconnect after a while", 4200–4299 "reconnect now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PusherCode {
    /// 4000: the app accepts only TLS connections.
    SslOnly,
    /// 4001: no app with this key.
    AppNotFound,
    /// 4003: the app is disabled.
    AppDisabled,
    /// 4004: the app is over its connection quota.
    OverQuota,
    /// 4005: no such path.
    PathNotFound,
    /// 4006: the `protocol` parameter is not a number.
    InvalidVersion,
    /// 4007: a protocol version this server does not speak.
    UnsupportedVersion,
    /// 4008: no `protocol` parameter.
    NoVersion,
    /// 4009: the connection is not authorized (a sign-in refused or missing in time).
    Unauthorized,
    /// 4100: over capacity; reconnect after a while.
    OverCapacity,
    /// 4200: reconnect now (the server restarts).
    ReconnectNow,
    /// 4201: no pong in time.
    PongTimeout,
    /// 4202: closed after inactivity.
    Inactive,
    /// 4301: a client event refused by the rate limit.
    ClientEventRateLimit,
}

impl PusherCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::SslOnly => 4000,
            Self::AppNotFound => 4001,
            Self::AppDisabled => 4003,
            Self::OverQuota => 4004,
            Self::PathNotFound => 4005,
            Self::InvalidVersion => 4006,
            Self::UnsupportedVersion => 4007,
            Self::NoVersion => 4008,
            Self::Unauthorized => 4009,
            Self::OverCapacity => 4100,
            Self::ReconnectNow => 4200,
            Self::PongTimeout => 4201,
            Self::Inactive => 4202,
            Self::ClientEventRateLimit => 4301,
        }
    }
}

/// A frame a client sent, checked.
#[derive(Debug)]
pub enum ClientFrame {
    /// `pusher:ping`: answer `pusher:pong`.
    Ping,
    /// `pusher:pong`: the answer to the server's ping.
    Pong,
    /// `pusher:subscribe`.
    Subscribe {
        /// The channel.
        channel: String,
        /// `KEY:SIGNATURE`, for a private or presence channel.
        auth: Option<String>,
        /// For a presence channel: JSON with `user_id` and optional `user_info`, as signed.
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// `pusher:signin`.
    Signin {
        /// `KEY:SIGNATURE` of the socket id and `user_data`.
        auth: String,
        /// JSON with at least `id`, as signed.
        user_data: String,
    },
    /// A `client-` event, to the channel's other subscribers.
    ClientEvent {
        /// Its name, starting with `client-`.
        event: String,
        /// The channel.
        channel: String,
        /// Its data, passed on as sent.
        data: Box<RawValue>,
    },
}

/// Why a client's frame was refused: the text goes back in a `pusher:error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a JSON object with a string `event`.
    #[error("invalid frame: expected a JSON object with an \"event\" string")]
    NotAFrame,
    /// A `pusher:` event that does not exist.
    #[error("unsupported event {0:?}")]
    UnknownEvent(String),
    /// An event of the client's own that is not `client-`.
    #[error("client events must start with \"client-\": {0:?}")]
    NotClientEvent(String),
    /// A field missing or of the wrong type.
    #[error("invalid {event}: {what}")]
    Field {
        /// The event.
        event: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// A channel name Pusher does not allow.
    #[error("invalid channel name {0:?}")]
    Channel(String),
    /// An event name longer than [`MAX_EVENT_NAME`].
    #[error("event name too long ({0} bytes, at most 200)")]
    EventName(usize),
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: Option<String>,
    auth: Option<String>,
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct SigninData {
    auth: Option<String>,
    user_data: Option<String>,
}

/// The data of a `pusher:` event: an object, or (some clients) a string holding one.
fn data_of<T: for<'de> Deserialize<'de>>(
    data: Option<&RawValue>,
    event: &'static str,
) -> Result<T, FrameError> {
    let wrong = FrameError::Field {
        event,
        what: "data must be an object",
    };
    let data = data.ok_or(wrong.clone())?;
    match serde_json::from_str::<T>(data.get()) {
        Ok(value) => Ok(value),
        Err(_) => {
            let inner: String = serde_json::from_str(data.get()).map_err(|_| wrong.clone())?;
            serde_json::from_str(&inner).map_err(|_| wrong)
        }
    }
}

impl ClientFrame {
    /// Parses and checks one text message.
    ///
    /// # Errors
    ///
    /// [`FrameError`], whose text is what the client is told.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let raw: Raw<'_> = serde_json::from_str(text).map_err(|_| FrameError::NotAFrame)?;
        let channel = |channel: Option<String>, event| {
            let channel = channel.ok_or(FrameError::Field {
                event,
                what: "no channel",
            })?;
            // A server-to-user channel is subscribed to by name once signed in (pusher-js
            // does), never published to by a client: client events refuse it by kind.
            if valid_channel(&channel) || is_server_to_user(&channel) {
                Ok(channel)
            } else {
                Err(FrameError::Channel(channel))
            }
        };
        match raw.event {
            "pusher:ping" => Ok(Self::Ping),
            "pusher:pong" => Ok(Self::Pong),
            "pusher:subscribe" => {
                let event = "pusher:subscribe";
                let data: SubscribeData = data_of(raw.data.as_deref(), event)?;
                Ok(Self::Subscribe {
                    channel: channel(data.channel, event)?,
                    auth: data.auth,
                    channel_data: data.channel_data,
                })
            }
            "pusher:unsubscribe" => {
                let event = "pusher:unsubscribe";
                let data: SubscribeData = data_of(raw.data.as_deref(), event)?;
                Ok(Self::Unsubscribe {
                    channel: channel(data.channel, event)?,
                })
            }
            "pusher:signin" => {
                let event = "pusher:signin";
                let data: SigninData = data_of(raw.data.as_deref(), event)?;
                let missing = |what| FrameError::Field { event, what };
                Ok(Self::Signin {
                    auth: data.auth.ok_or(missing("no auth"))?,
                    user_data: data.user_data.ok_or(missing("no user_data"))?,
                })
            }
            name if name.starts_with("pusher:") || name.starts_with("pusher_internal:") => {
                Err(FrameError::UnknownEvent(name.to_owned()))
            }
            name if !name.starts_with("client-") => {
                Err(FrameError::NotClientEvent(name.to_owned()))
            }
            name if name.len() > MAX_EVENT_NAME => Err(FrameError::EventName(name.len())),
            name => Ok(Self::ClientEvent {
                event: name.to_owned(),
                channel: channel(raw.channel, "client event")?,
                data: raw.data.unwrap_or_else(null),
            }),
        }
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::names::{MAX_WATCHLIST, SignedIn, signed_in_user};
    use super::*;

    #[test]
    fn pusher_js_frames_parse() {
        // As pusher-js 8 sends them.
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}"#),
            Ok(ClientFrame::Subscribe { channel, auth: Some(auth), channel_data: None })
                if channel == "my-channel" && auth.is_empty()
        ));
        let presence = r#"{"event":"pusher:subscribe","data":{"auth":"k:s","channel_data":"{\"user_id\":\"1\"}","channel":"presence-room"}}"#;
        assert!(matches!(
            ClientFrame::parse(presence),
            Ok(ClientFrame::Subscribe { channel_data: Some(d), .. }) if d == r#"{"user_id":"1"}"#
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientFrame::Ping)
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#),
            Ok(ClientFrame::Unsubscribe { channel }) if channel == "a"
        ));
        let client =
            ClientFrame::parse(r#"{"event":"client-typing","channel":"private-a","data":{"x":1}}"#);
        assert!(matches!(
            client,
            Ok(ClientFrame::ClientEvent { ref event, ref channel, ref data })
                if event == "client-typing" && channel == "private-a" && data.get() == r#"{"x":1}"#
        ));
        // Data as a string holding the object (older clients).
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#),
            Ok(ClientFrame::Subscribe { channel, .. }) if channel == "b"
        ));
        assert!(matches!(
            ClientFrame::parse(
                r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#
            ),
            Ok(ClientFrame::Signin { .. })
        ));
    }

    #[test]
    fn a_sign_in_names_its_user_by_a_string_id() {
        assert_eq!(
            signed_in_user(r#"{"id":"ann","user_info":{"n":1},"watchlist":["bob","cy","bob"]}"#),
            Some(SignedIn {
                id: "ann".to_owned(),
                watchlist: vec!["bob".to_owned(), "cy".to_owned()]
            })
        );
        assert!(
            signed_in_user(r#"{"id":"ann"}"#)
                .unwrap()
                .watchlist
                .is_empty()
        );
        let many: Vec<String> = (0..=MAX_WATCHLIST).map(|i| i.to_string()).collect();
        let over = json!({ "id": "ann", "watchlist": many }).to_string();
        for bad in [
            over.as_str(),
            r#"{"id":"ann","watchlist":[7]}"#,
            r#"{"id":"ann","watchlist":"bob"}"#,
            r#"{"id":7}"#,
            r#"{"id":""}"#,
            r#"{"user_id":"ann"}"#,
            r#"{"id":"a b"}"#,
            "ann",
            "[]",
        ] {
            assert_eq!(signed_in_user(bad), None, "{bad}");
        }
        assert_eq!(
            signed_in_user(&format!(r#"{{"id":"{}"}}"#, "a".repeat(129))),
            None
        );
        let subscribe =
            r##"{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-ann"}}"##;
        assert!(matches!(
            ClientFrame::parse(subscribe),
            Ok(ClientFrame::Subscribe { channel, .. }) if channel == "#server-to-user-ann"
        ));
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        let refused = |text| ClientFrame::parse(text).unwrap_err();
        assert_eq!(refused("not json"), FrameError::NotAFrame);
        assert_eq!(refused(r#"{"data":{}}"#), FrameError::NotAFrame);
        assert_eq!(refused(r#"{"event":5}"#), FrameError::NotAFrame);
        assert_eq!(refused("[]"), FrameError::NotAFrame);
        assert_eq!(
            refused(r#"{"event":"pusher:nope","data":{}}"#),
            FrameError::UnknownEvent("pusher:nope".into())
        );
        assert_eq!(
            refused(r#"{"event":"typing","channel":"private-a","data":{}}"#),
            FrameError::NotClientEvent("typing".into())
        );
        assert!(matches!(
            refused(r#"{"event":"pusher:subscribe","data":5}"#),
            FrameError::Field { .. }
        ));
        assert!(matches!(
            refused(r#"{"event":"pusher:subscribe","data":{}}"#),
            FrameError::Field {
                what: "no channel",
                ..
            }
        ));
        assert_eq!(
            refused(r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#),
            FrameError::Channel("a b".into())
        );
        let long = format!(
            r#"{{"event":"client-{}","channel":"private-a"}}"#,
            "x".repeat(200)
        );
        assert_eq!(refused(&long), FrameError::EventName(207));
        assert!(matches!(
            refused(r#"{"event":"client-x","data":{}}"#),
            FrameError::Field { .. }
        ));
    }
}
