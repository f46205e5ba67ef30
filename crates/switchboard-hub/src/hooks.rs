//! [`Hooks`]: what an application decides about its clients, as plain async functions the hub
//! calls: who a connecting client is, and whether it may subscribe to or publish on a channel.
//! [`HttpProxy`](crate::HttpProxy) is one implementation, which asks the application's backend
//! over HTTP.

use std::fmt::Debug;
use std::net::SocketAddr;

use http::HeaderMap;
use serde_json::value::RawValue;

use crate::broker::{BoxFuture, ClientInfo};

/// The upgrade request of a connecting client, as the connect hook sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// Its headers, cookies included.
    pub headers: HeaderMap,
    /// Its query string, without the `?` (empty when it has none).
    pub query: String,
    /// The client's address, when the server knows it.
    pub remote_addr: Option<SocketAddr>,
}

impl ConnectRequest {
    /// The request a client makes with these headers, query and address.
    pub fn new(
        headers: HeaderMap,
        query: impl Into<String>,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            headers,
            query: query.into(),
            remote_addr,
        }
    }
}

/// A refusal the client receives: the close code (4000–4999 is the range applications own)
/// and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The close code; one a close frame may not carry is sent as 1008 (policy violation).
    pub code: u16,
    /// Why, in words; the close frame carries at most its first 123 bytes.
    pub reason: String,
}

impl Refusal {
    /// A refusal with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Who a connecting client is, as the connect hook decided.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Connection {
    /// The user, authenticated: channel rules (personal channels included) go by it.
    pub user: String,
    /// Shown with the client in presence, and to the client in its `connected` event.
    pub info: Option<Box<RawValue>>,
    /// Channels the client is subscribed to as soon as it is connected, channel rules waived.
    pub channels: Vec<String>,
}

impl Connection {
    /// The connection of `user`, with no info and no channels.
    pub fn user(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            info: None,
            channels: Vec::new(),
        }
    }
}

/// What the connect hook decides.
#[derive(Clone, Debug)]
pub enum ConnectDecision {
    /// The hook has no say: the client is who its token or chosen name says.
    Pass,
    /// The client is this user.
    Allow(Connection),
    /// The client is not served: it gets an `unauthorized` error and a close with this code
    /// and reason.
    Refuse(Refusal),
}

/// What the subscribe hook decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// The client subscribes.
    Allow,
    /// The client gets a `forbidden` error with this reason.
    Refuse(String),
}

/// What the publish hook decides.
#[derive(Clone, Debug)]
pub enum PublishDecision {
    /// Published as the client sent it.
    Allow,
    /// Published with this data instead.
    Rewrite(Box<RawValue>),
    /// The client gets a `forbidden` error with this reason.
    Refuse(String),
}

/// The application's decisions about its clients. The hub calls [`connect`](Self::connect)
/// before a session starts, and [`subscribe`](Self::subscribe) and [`publish`](Self::publish)
/// after the channel rules allowed the request; a session waits for each answer before it
/// handles the client's next request. Every method has a default that lets the client through.
pub trait Hooks: Send + Sync + Debug {
    /// Who the client of `request` is.
    fn connect<'a>(&'a self, request: &'a ConnectRequest) -> BoxFuture<'a, ConnectDecision> {
        let _ = request;
        Box::pin(async { ConnectDecision::Pass })
    }

    /// Whether `client` may subscribe to `channel`.
    fn subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        channel: &'a str,
    ) -> BoxFuture<'a, SubscribeDecision> {
        let _ = (client, channel);
        Box::pin(async { SubscribeDecision::Allow })
    }

    /// Whether `client` may publish `data` on `channel`, and what is published.
    fn publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        channel: &'a str,
        data: &'a RawValue,
    ) -> BoxFuture<'a, PublishDecision> {
        let _ = (client, channel, data);
        Box::pin(async { PublishDecision::Allow })
    }
}
