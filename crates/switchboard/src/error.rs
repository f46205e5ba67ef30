//! The runtime's error type.

use std::io;

use proto::handshake::HandshakeError;
use proto::{ProtocolError, SendError};

use crate::connect::proxy::ProxyError;
use crate::connect::refusal::Refusal;

/// What can go wrong with a WebSocket connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed, or the peer went away without a closing handshake.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455 or a configured limit; the matching Close frame was sent.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server refused the upgrade: it answered with another status than 101 (or, over
    /// HTTP/2, than 2xx). The refusal has the status, headers and the start of the body.
    #[error("handshake failed: expected 101 switching protocols, got {}", .0.status())]
    Refused(Box<Refusal>),
    /// A plain (`ws://`) connection was answered with a TLS record: the server speaks TLS on
    /// that port, and its URL is `wss://`.
    #[error("the server answered with tls, not http")]
    TlsAnswer,
    /// A message could not be sent (closed connection, oversized control frame, ...).
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// The connection is closed: the driver task ended or the closing handshake is over.
    #[error("connection closed")]
    Closed,
    /// The URL is not a `ws://` (or, with TLS, `wss://`) URL this client can connect to.
    #[error("invalid url: {0}")]
    Url(String),
    /// The server takes no WebSocket over HTTP/2 (RFC 8441): it chose HTTP/1.1 in ALPN, or
    /// did not advertise extended CONNECT. [`Http2Connection::connect`](crate::Http2Connection::connect)
    /// says so; [`connect_with`](crate::connect_with) falls back to HTTP/1.1 instead.
    #[error("no websockets over http/2: {0}")]
    Http2Unavailable(&'static str),
    /// The proxy could not be reached, refused the tunnel, or its URL is invalid.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// An operation took longer than its configured timeout.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::Timeout(_) => Self::new(io::ErrorKind::TimedOut, e),
            Error::Closed => Self::new(io::ErrorKind::NotConnected, e),
            Error::Proxy(e) => e.into(),
            e => Self::new(io::ErrorKind::InvalidData, e),
        }
    }
}
