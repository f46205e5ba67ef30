//! A client of the switchboard hub that keeps its subscriptions whole across reconnects.
//!
//! [`HubClient::connect`] opens a connection to a hub (`switchboard serve`, or a server that
//! embeds `switchboard-hub`) and keeps one open: when it is lost (the network, a restart of
//! the server, a dead connection that only the missing heartbeats show), the client connects
//! again after a pause that grows with each failure and is randomized (full jitter), and
//! every [`Subscription`] resumes from the last message it delivered. The hub replays what
//! was missed, the client drops what it had already delivered, and a loss the hub cannot
//! make good is an [`Event::Gap`]: messages arrive once each, in order, or the application is
//! told.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_client::ClientError> {
//! use switchboard_client::{ClientOptions, Event, HubClient};
//!
//! let client = HubClient::connect("ws://127.0.0.1:8080/ws", ClientOptions::default().name("ann"))
//!     .await?;
//! let mut lobby = client.subscribe("lobby").await?;
//! let offset = client.publish("lobby", &serde_json::json!({"text": "hi"})).await?;
//! while let Some(event) = lobby.next().await {
//!     if let Event::Message(publication) = event {
//!         println!("{} {}", publication.offset, publication.data);
//!     }
//! }
//! # let _ = offset;
//! # Ok(())
//! # }
//! ```
//!
//! Requests made while offline wait for the connection, within the request timeout. A
//! publish whose connection was lost before its acknowledgement fails with
//! [`ClientError::Disconnected`]: it may or may not have been published, and the client does
//! not send it again on its own (that could publish it twice). A token the hub refuses (close
//! 1008, or an `unauthorized` error) is not tried again: with
//! [`ClientOptions::get_token`] the client asks for a fresh one (and also shortly before the
//! current one expires), else it stops.

mod actor;
mod backoff;
mod client;
mod command;
mod event;
mod options;
mod session;
mod token;
mod wire;

pub use client::{HubClient, Subscription};
pub use event::{ClientError, ClientInfo, Event, History, Position, Publication, State};
pub use options::{ClientOptions, SubscribeOptions, TokenSource};
