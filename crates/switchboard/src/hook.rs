//! What a server's accept hook ([`ServerBuilder::on_upgrade`](crate::ServerBuilder::on_upgrade))
//! decides about an upgrade request: [`Accept`] it (with data for the handler and, optionally,
//! the subprotocol) or [`Reject`] it with an HTTP status, like Node ws's `verifyClient` and
//! `handleProtocols`.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// The address of the connection's other end, in every request's extensions
/// (`request.extensions().get::<PeerAddr>()`), for the accept hook, the handler and HTTP routes
/// alike. Behind a proxy, that is the proxy: see [`ClientAddr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address, in the extensions of every upgrade request: the [`PeerAddr`]'s, or
/// when that is one of the
/// [trusted proxies](crate::ServerBuilder::trusted_proxies), the address the proxies forwarded
/// (`Forwarded` or `X-Forwarded-For`). The limit of connections per address counts this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// An accepted upgrade: data to attach to the connection, and the subprotocol.
///
/// Extensions inserted here are in the request the connection handler receives
/// (`request.extensions().get::<T>()`).
#[derive(Debug, Default)]
pub struct Accept {
    pub(crate) extensions: http::Extensions,
    pub(crate) protocol: Option<String>,
}

impl Accept {
    /// Accepts with the server's subprotocol choice and no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches `value` to the connection (a user, a session, a room...).
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// Speaks `protocol`, which must be one the client offered (otherwise the handshake fails
    /// with 500), instead of the first of the server's list that the client offered.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }
}

/// A refused upgrade: the HTTP response the client gets instead of 101.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reject {
    /// Refuses with `status`; the body is the status's reason phrase.
    pub fn new(status: StatusCode) -> Self {
        let body = format!("{}\n", status.canonical_reason().unwrap_or("refused"));
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body),
        }
    }

    /// Sets the body (sent as `text/plain` unless a `Content-Type` header is set).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header (`WWW-Authenticate`, `Retry-After`, ...).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn into_response(self) -> Response<Bytes> {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .headers_mut()
            .entry(http::header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

impl From<StatusCode> for Reject {
    fn from(status: StatusCode) -> Self {
        Self::new(status)
    }
}
