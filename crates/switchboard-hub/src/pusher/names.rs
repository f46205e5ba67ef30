//! Pusher's names: channels and their kinds by prefix, socket ids, user ids and the
//! channels the server keeps per user (`#server-to-user-`, `#online-`), and a sign-in's user
//! data; with Pusher's limits on each.

use serde::Deserialize;
use serde_json::Value;

/// The longest channel name Pusher allows, in bytes.
pub const MAX_CHANNEL: usize = 164;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
