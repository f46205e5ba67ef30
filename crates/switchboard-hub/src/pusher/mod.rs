//! The Pusher Channels protocol (version 7), so that apps written for Pusher (pusher-js,
//! Laravel Echo, the official `pusher` server libraries) work against the hub unchanged:
//!
//! - [`apps`]: the apps a server hosts, by key and by id;
//! - [`signature`]: Pusher's HMAC signatures (channel auth, sign-in, server API requests,
//!   webhooks), checked in constant time;
//! - [`names`]: channel names and kinds, socket ids, user ids, a sign-in's user data;
//! - [`frames`]: the client's frames parsed and checked, and Pusher's codes;
//! - [`replies`]: the server's frames written.
//!
//! The protocol's parts are plain functions over text, with no I/O: the session that serves
//! `/app/{key}` and the HTTP API under `/apps/{id}/` are built on them.

pub mod apps;
pub mod frames;
pub mod names;
pub mod replies;
pub mod signature;

/// The prefix of the hub channels that carry Pusher channels: app `ID`'s channel `NAME` is
/// the hub channel `pusher:ID:NAME`. Clients of the hub's own protocol may not use it, so
/// that only Pusher sessions (and the server side) reach them.
pub const HUB_PREFIX: &str = "pusher:";

/// The hub channel of app `app_id`'s channel `name`.
pub fn hub_channel(app_id: &str, name: &str) -> String {
    format!("{HUB_PREFIX}{app_id}:{name}")
}

/// The Pusher channel name of a hub channel, `None` when it is not one.
pub fn pusher_name(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix(HUB_PREFIX)?;
    rest.split_once(':').map(|(_, name)| name)
}

/// The hub user of app `app_id`'s user `user_id`: a Pusher connection is this user once a
/// presence channel names it, so that the server side can end a Pusher user's connections
/// (the hub's `disconnect` by user) without reaching another app's user of the same id.
pub fn hub_user(app_id: &str, user_id: &str) -> String {
    format!("{HUB_PREFIX}{app_id}:{user_id}")
}

pub use apps::{AppError, PusherApp, PusherApps};
pub use frames::{ClientFrame, FrameError, PusherCode};
pub use names::ChannelKind;
pub use signature::{AuthError, RequestAuthError, SignedRequest};
