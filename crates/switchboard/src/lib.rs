//! WebSocket server and client on tokio, on the sans-IO engine of `switchboard-proto`.
//!
//! - [`connect`] opens a client connection to a `ws://` or `wss://` URL ([`tls`] has the
//!   certificates and trust settings), over HTTP/1.1 or HTTP/2 ([`ConnectOptions::http2`]);
//!   [`Http2Connection`] opens several WebSockets on one HTTP/2 connection;
//! - [`accept`] and [`accept_request`] turn a server-side stream (or a request someone else
//!   parsed, as with hyper/axum upgrades) into a connection;
//! - [`Server`] listens (`ws://` or `wss://`), accepts, and runs a handler per connection,
//!   within limits and timeouts, with an accept hook ([`Accept`], [`Reject`]), plain HTTP
//!   routes with async handlers (served by hyper: keep-alive, request bodies, `HEAD`),
//!   [`Metrics`] and a graceful drain;
//! - [`PreparedUpgrade`] serves WebSockets from another HTTP server (hyper, axum);
//! - [`WebSocket`] is one connection: [`recv`](WebSocket::recv) (`None` after a clean close),
//!   [`send`](WebSocket::send), [`close`](WebSocket::close), and [`split`](WebSocket::split)
//!   into a [`Receiver`] and cloneable [`Sender`]s driven by a task of their own, whose send
//!   queue is bounded in bytes ([`Backpressure`]);
//! - [`Topics`] fans messages out to subscribers, encoding each frame once.
//!
//! An echo server:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let server = switchboard::Server::builder().bind("127.0.0.1:9001").await?;
//! server
//!     .serve(|mut ws, _request| async move {
//!         while let Some(Ok(message)) = ws.recv().await {
//!             // Pings are answered by the library; only data comes back.
//!             if message.is_data() && ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//!     .await
//! # }
//! ```
//!
//! A broadcast server, each message encoded once for every recipient:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use switchboard::{Server, Topics};
//!
//! let server = Server::builder().bind("127.0.0.1:9001").await?;
//! let everyone = Topics::new();
//! server
//!     .serve(move |ws, _request| {
//!         let everyone = everyone.clone();
//!         async move {
//!             let (sender, mut receiver) = ws.split();
//!             let _subscription = everyone.subscribe("all", &sender);
//!             while let Some(Ok(message)) = receiver.recv().await {
//!                 everyone.publish("all", &message, Some(&sender));
//!             }
//!         }
//!     })
//!     .await
//! # }
//! ```
//!
//! A client:
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! use switchboard::Message;
//!
//! let (mut ws, _response) = switchboard::connect("ws://127.0.0.1:9001/chat").await?;
//! ws.send(Message::text("hello")).await?;
//! while let Some(message) = ws.recv().await {
//!     println!("{:?}", message?);
//! }
//! # Ok(())
//! # }
//! ```

mod accept;
mod addresses;
mod backpressure;
mod connect;
mod error;
pub mod event_loop;
mod footprint;
mod h2_stream;
mod head;
mod histogram;
mod hook;
mod link;
mod metrics;
mod rate;
mod server;
mod split;
mod stream;
mod throttle;
pub mod tls;
mod topics;
mod wakeups;
mod websocket;

pub use accept::{
    AcceptOptions, PreparedUpgrade, accept, accept_request, accept_with, read_request,
    write_response,
};
pub use backpressure::Backpressure;
pub use connect::{
    ConnectOptions, Http2Connection, Proxy, ProxyError, Refusal, client_handshake, connect,
    connect_with,
};
pub use error::Error;
pub use histogram::Histogram;
pub use hook::{Accept, ClientAddr, PeerAddr, Reject};
pub use ipnet::IpNet;
pub use metrics::{HandshakeFailure, Metrics};
pub use proto::deflate::{DeflateConfig, DeflateParams};
pub use proto::{
    CloseCode, CloseFrame, Config, EncodedFrame, Message, ProtocolError, Role, SendError, Utf8Bytes,
};
pub use rate::TokenBucket;
pub use server::{Server, ServerBuilder};
pub use split::{Receiver, Sender, TrySendError};
pub use stream::{Http2Stream, MaybeTlsStream};
pub use throttle::LogThrottle;
pub use topics::{Subscription, Topics};
pub use websocket::WebSocket;

/// The `http` crate, whose types the handshake and the routes use.
pub use http;
/// The protocol engine, for callers that need the lower-level pieces (handshake helpers, frame
/// headers).
pub use proto;
