//! The Pusher Channels protocol (version 7), so that apps written for Pusher (pusher-js,
//! Laravel Echo, the official `pusher` server libraries) work against the hub unchanged:
//!
//! - [`apps`]: the apps a server hosts, by key and by id;
//! - [`signature`]: Pusher's HMAC signatures (channel auth, sign-in, server API requests,
//!   webhooks), checked in constant time;
//! - [`frames`]: the client's frames parsed and checked, the server's frames written.
//!
//! The protocol's parts are plain functions over text, with no I/O: the session that serves
//! `/app/{key}` and the HTTP API under `/apps/{id}/` are built on them.

pub mod apps;
pub mod frames;
pub mod signature;

/// The prefix of the hub channels that carry Pusher channels: app `ID`'s channel `NAME` is
/// the hub channel `pusher:ID:NAME`. Clients of the hub's own protocol may not use it, so
/// that only Pusher sessions (and the server side) reach them.
pub const HUB_PREFIX: &str = "pusher:";

pub use apps::{AppError, PusherApp, PusherApps};
pub use frames::{ChannelKind, ClientFrame, FrameError, PusherCode};
pub use signature::{AuthError, RequestAuthError, SignedRequest};
