//! The frames of Pusher Channels protocol 7: what a client sends ([`ClientFrame`], parsed
//! and checked here) and what the server sends (the functions below, each returning the JSON
//! text of one frame).
//!
//! Every frame is `{"event": NAME, "channel": CHANNEL?, "data": DATA}`. The server sends the
//! `data` of its own `pusher:`/`pusher_internal:` events as a JSON string holding JSON (a
//! protocol quirk the clients decode), except `pusher:error`, `pusher:pong`,
//! `pusher:subscription_error`, `pusher:signin_success` and `pusher:cache_miss`, whose data is
//! an object. An event's data goes out as it was
//! given: the string an app triggered, or the value a client event carried.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The protocol version served (`?protocol=7` in the client's URL).
pub const PROTOCOL: u32 = 7;

/// The longest channel name Pusher allows, in bytes.
pub const MAX_CHANNEL: usize = 164;

/// The longest event name Pusher allows, in bytes.
pub const MAX_EVENT_NAME: usize = 200;

/// The largest data of one event, in bytes (Pusher's 10 KB), a client's or an app's.
pub const MAX_EVENT_DATA: usize = 10 * 1024;

/// The longest user id, of a presence member or a signed-in user, in bytes (Pusher's limit).
pub const MAX_USER_ID: usize = 128;

/// The prefix of a user's server-to-user channel: `#server-to-user-USER_ID` carries the events
/// an app sends to that user (`sendToUser`) to each connection signed in as it.
pub const SERVER_TO_USER: &str = "#server-to-user-";

/// The prefix of the hub channels whose presence is a user's signed-in connections:
/// `#online-USER_ID`. A watchlist is subscribed to them; no client can name one, as `#` is no
/// channel name Pusher allows.
pub const ONLINE: &str = "#online-";

/// The most user ids a sign-in's watchlist may name (Pusher's limit).
pub const MAX_WATCHLIST: usize = 100;

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

/// What kind of channel a name is, by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// No prefix: anyone may subscribe.
    Public,
    /// `private-` (and `private-cache-`): a signed auth is needed.
    Private,
    /// `private-encrypted-` (and `private-encrypted-cache-`): private, and its payloads are
    /// end-to-end encrypted by the clients, passed through untouched.
    Encrypted,
    /// `presence-` (and `presence-cache-`): private, with members.
    Presence,
}

impl ChannelKind {
    /// The kind of `channel`.
    pub fn of(channel: &str) -> Self {
        if channel.starts_with("private-encrypted-") {
            Self::Encrypted
        } else if channel.starts_with("private-") {
            Self::Private
        } else if channel.starts_with("presence-") {
            Self::Presence
        } else {
            Self::Public
        }
    }

    /// Whether subscribing needs a signed auth.
    pub fn needs_auth(self) -> bool {
        self != Self::Public
    }

    /// Whether clients may send `client-` events on it.
    pub fn takes_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

/// Whether `channel` is a `cache-` channel (its last event is kept and sent on subscribe).
pub fn is_cache(channel: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|prefix| channel.starts_with(prefix))
}

/// The server-to-user channel of `user_id`.
pub fn server_to_user(user_id: &str) -> String {
    format!("{SERVER_TO_USER}{user_id}")
}

/// Whether `name` is a server-to-user channel, of a user id [`valid_user_id`] allows.
pub fn is_server_to_user(name: &str) -> bool {
    name.strip_prefix(SERVER_TO_USER).is_some_and(valid_user_id)
}

/// Whether `id` is a user id: 1 to [`MAX_USER_ID`] bytes without whitespace or control
/// characters.
pub fn valid_user_id(id: &str) -> bool {
    let allowed = |c: char| !c.is_whitespace() && !c.is_control();
    !id.is_empty() && id.len() <= MAX_USER_ID && id.chars().all(allowed)
}

/// The channel whose presence is `user_id`'s signed-in connections (see [`ONLINE`]).
pub fn online_channel(user_id: &str) -> String {
    format!("{ONLINE}{user_id}")
}

/// What a sign-in's `user_data` says of its user.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// Its `id`.
    pub id: String,
    /// The users whose coming online and going offline it is told, each once.
    pub watchlist: Vec<String>,
}

/// The user a sign-in's `user_data` names: its `id`, a string [`valid_user_id`] allows (as
/// pusher-js and the server libraries require), and its `watchlist` of at most
/// [`MAX_WATCHLIST`] such ids; `None` when it names none or the watchlist is not that.
pub fn signed_in_user(user_data: &str) -> Option<SignedIn> {
    #[derive(Deserialize)]
    struct UserData {
        id: Value,
        #[serde(default)]
        watchlist: Option<Vec<String>>,
    }
    let data = serde_json::from_str::<UserData>(user_data).ok()?;
    let id = match data.id {
        Value::String(id) if valid_user_id(&id) => id,
        _ => return None,
    };
    let mut watchlist = data.watchlist.unwrap_or_default();
    if watchlist.len() > MAX_WATCHLIST || !watchlist.iter().all(|id| valid_user_id(id)) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    watchlist.retain(|id| seen.insert(id.clone()));
    Some(SignedIn { id, watchlist })
}

/// Whether `name` is a channel name Pusher allows: 1 to [`MAX_CHANNEL`] bytes of letters,
/// digits and `_ - = @ , . ;`.
pub fn valid_channel(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
    !name.is_empty() && name.len() <= MAX_CHANNEL && name.chars().all(allowed)
}

/// Whether `id` is a socket id: two runs of digits joined by a dot, as `1234.5678`.
pub fn valid_socket_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('.')
        .is_some_and(|(a, b)| digits(a) && digits(b))
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

fn frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    let mut frame = json!({ "event": event, "data": data });
    if let Some(channel) = channel {
        frame["channel"] = json!(channel);
    }
    frame.to_string()
}

/// `pusher:connection_established`, the first frame of every connection.
pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
    let data = json!({ "socket_id": socket_id, "activity_timeout": activity_timeout_secs });
    frame(
        "pusher:connection_established",
        None,
        &json!(data.to_string()),
    )
}

/// `pusher:error`, with Pusher's code when there is one.
pub fn error(code: Option<PusherCode>, message: &str) -> String {
    let data = json!({ "code": code.map(PusherCode::code), "message": message });
    frame("pusher:error", None, &data)
}

/// `pusher:ping`, the server's keepalive.
pub fn ping() -> String {
    frame("pusher:ping", None, &json!({}))
}

/// `pusher:pong`, the answer to a client's ping.
pub fn pong() -> String {
    frame("pusher:pong", None, &json!({}))
}

/// A presence channel's members as `subscription_succeeded` lists them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Members {
    /// Each member once: its `user_id` and `user_info` (null for none).
    pub members: Vec<(String, Value)>,
}

/// `pusher_internal:subscription_succeeded`; for a presence channel, with its members.
pub fn subscription_succeeded(channel: &str, members: Option<&Members>) -> String {
    let data = match members {
        None => json!({}),
        Some(members) => {
            let ids: Vec<&str> = members.members.iter().map(|(id, _)| id.as_str()).collect();
            let hash: serde_json::Map<String, Value> = members.members.iter().cloned().collect();
            json!({ "presence": { "ids": ids, "hash": hash, "count": ids.len() } })
        }
    };
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &json!(data.to_string()),
    )
}

/// `pusher:subscription_error`: why a subscription was refused, with an HTTP-like status.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    let data = json!({ "type": kind, "error": error, "status": status });
    frame("pusher:subscription_error", Some(channel), &data)
}

/// `pusher_internal:member_added`.
pub fn member_added(channel: &str, user_id: &str, user_info: &Value) -> String {
    let data = json!({ "user_id": user_id, "user_info": user_info });
    frame(
        "pusher_internal:member_added",
        Some(channel),
        &json!(data.to_string()),
    )
}

/// `pusher_internal:member_removed`.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let data = json!({ "user_id": user_id });
    frame(
        "pusher_internal:member_removed",
        Some(channel),
        &json!(data.to_string()),
    )
}

/// `pusher:signin_success`, with the signed user data.
pub fn signin_success(user_data: &str) -> String {
    frame(
        "pusher:signin_success",
        None,
        &json!({ "user_data": user_data }),
    )
}

/// `pusher_internal:watchlist_events`: which watched users are `online` and which `offline`
/// (each list left out when empty).
pub fn watchlist_events(online: &[&str], offline: &[&str]) -> String {
    let events: Vec<Value> = [("online", online), ("offline", offline)]
        .into_iter()
        .filter(|(_, users)| !users.is_empty())
        .map(|(name, users)| json!({ "name": name, "user_ids": users }))
        .collect();
    let data = json!({ "events": events });
    frame(
        "pusher_internal:watchlist_events",
        None,
        &json!(data.to_string()),
    )
}

/// `pusher:cache_miss`: a cache channel with no event yet.
pub fn cache_miss(channel: &str) -> String {
    frame("pusher:cache_miss", Some(channel), &json!({}))
}

/// An app's or a client's event on a channel; a client event on a presence channel names its
/// sender's `user_id`.
pub fn event(channel: &str, event: &str, data: &RawValue, user_id: Option<&str>) -> String {
    // By hand: `data` goes out byte for byte as given (an encrypted payload must not change).
    let mut out = String::with_capacity(data.get().len() + channel.len() + event.len() + 48);
    out.push_str("{\"event\":");
    out.push_str(&json!(event).to_string());
    out.push_str(",\"channel\":");
    out.push_str(&json!(channel).to_string());
    out.push_str(",\"data\":");
    out.push_str(data.get());
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        out.push_str(&json!(user_id).to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

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

    #[test]
    fn channel_names_and_kinds() {
        assert_eq!(ChannelKind::of("news"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("private-a"), ChannelKind::Private);
        assert_eq!(
            ChannelKind::of("private-encrypted-a"),
            ChannelKind::Encrypted
        );
        assert_eq!(ChannelKind::of("presence-a"), ChannelKind::Presence);
        assert!(!ChannelKind::Public.needs_auth() && ChannelKind::Encrypted.needs_auth());
        assert!(!ChannelKind::Encrypted.takes_client_events());
        assert!(is_cache("cache-a") && is_cache("presence-cache-a") && !is_cache("a-cache-"));
        assert!(valid_channel("private-a_b-c=d@e,f.g;h"));
        assert!(!valid_channel("") && !valid_channel("a:b") && !valid_channel("é"));
        assert!(valid_channel(&"a".repeat(164)) && !valid_channel(&"a".repeat(165)));
        assert!(is_server_to_user("#server-to-user-ann") && !is_server_to_user("#server-to-user-"));
        assert!(!is_server_to_user("#server-to-user-a b") && !valid_channel("#server-to-user-ann"));
        assert!(valid_socket_id("1234.5678"));
        assert!(!valid_socket_id("1234") && !valid_socket_id(".1") && !valid_socket_id("1.a"));
    }

    #[test]
    fn server_frames_are_what_the_clients_decode() {
        let established = parsed(&connection_established("1.2", 120));
        assert_eq!(established["event"], "pusher:connection_established");
        // A string holding JSON.
        let data = parsed(established["data"].as_str().unwrap());
        assert_eq!(data, json!({"socket_id": "1.2", "activity_timeout": 120}));

        let members = Members {
            members: vec![
                ("1".into(), json!({"name": "Ann"})),
                ("2".into(), Value::Null),
            ],
        };
        let ok = parsed(&subscription_succeeded("presence-r", Some(&members)));
        assert_eq!(ok["channel"], "presence-r");
        let data = parsed(ok["data"].as_str().unwrap());
        assert_eq!(
            data,
            json!({"presence": {"ids": ["1", "2"], "hash": {"1": {"name": "Ann"}, "2": null}, "count": 2}})
        );
        assert_eq!(parsed(&subscription_succeeded("a", None))["data"], "{}");

        let added = parsed(&member_added("presence-r", "3", &json!({"n": 1})));
        assert_eq!(
            parsed(added["data"].as_str().unwrap()),
            json!({"user_id": "3", "user_info": {"n": 1}})
        );
        let removed = parsed(&member_removed("presence-r", "3"));
        assert_eq!(
            parsed(removed["data"].as_str().unwrap()),
            json!({"user_id": "3"})
        );

        assert_eq!(
            parsed(&error(Some(PusherCode::AppNotFound), "no app")),
            json!({"event": "pusher:error", "data": {"code": 4001, "message": "no app"}})
        );
        assert_eq!(parsed(&error(None, "x"))["data"]["code"], Value::Null);
        assert_eq!(parsed(&pong()), json!({"event": "pusher:pong", "data": {}}));
        assert_eq!(
            parsed(&signin_success(r#"{"id":"ann"}"#)),
            json!({"event": "pusher:signin_success", "data": {"user_data": r#"{"id":"ann"}"#}})
        );
        let watched = parsed(&watchlist_events(&["bob"], &[]));
        assert_eq!(watched["event"], "pusher_internal:watchlist_events");
        assert_eq!(
            parsed(watched["data"].as_str().unwrap()),
            json!({"events": [{"name": "online", "user_ids": ["bob"]}]})
        );
        assert_eq!(
            parsed(&cache_miss("cache-a")),
            json!({"event": "pusher:cache_miss", "channel": "cache-a", "data": {}})
        );
        let refused = parsed(&subscription_error("private-a", "AuthError", "bad", 401));
        assert_eq!(refused["data"]["status"], 401);
    }

    #[test]
    fn an_event_keeps_its_data_byte_for_byte() {
        let data = RawValue::from_string(r#""{\"a\": 1}""#.to_owned()).unwrap();
        let text = event("news", "update", &data, None);
        assert_eq!(
            text,
            r#"{"event":"update","channel":"news","data":"{\"a\": 1}"}"#
        );
        let object = RawValue::from_string(r#"{ "x" : [1,2] }"#.to_owned()).unwrap();
        let text = event("presence-r", "client-t", &object, Some("u\"1"));
        assert!(text.contains(r#""data":{ "x" : [1,2] }"#), "{text}");
        assert_eq!(parsed(&text)["user_id"], "u\"1");
    }
}
