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

pub use apps::{AppError, PusherApp, PusherApps};
pub use frames::{ChannelKind, ClientFrame, FrameError, PusherCode};
pub use signature::{AuthError, RequestAuthError, SignedRequest};
