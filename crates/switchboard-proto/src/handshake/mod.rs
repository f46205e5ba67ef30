//! The opening handshake (RFC 6455 §4): an HTTP/1.1 `GET` with `Upgrade: websocket`, answered by
//! `101 Switching Protocols`.
//!
//! The module converts between bytes and [`http::Request<()>`] / [`http::Response<()>`] and checks
//! both against the RFC. It never reads a socket: the caller appends what it reads to a buffer and
//! calls [`server::parse_request`] or [`client::parse_response`] again until they return a head.
//! Both return the head's length, because the peer may send its first frames in the same read;
//! the bytes after the head belong to the framing layer and must be handed on, not dropped.
//!
//! Server side, in order: [`server::parse_request`], [`server::is_upgrade_request`] (to route
//! plain HTTP elsewhere), [`server::requested_protocols`] (to choose a subprotocol), then
//! [`server::accept_response`] or, on error, [`server::reject_response`], and finally
//! [`server::write_response`]. Client side: [`client::build_request`], [`client::write_request`],
//! [`client::parse_response`], [`client::validate_response`].
//!
//! permessage-deflate (RFC 7692) rides on the same functions: a client adds
//! [`DeflateConfig::offer`](crate::deflate::DeflateConfig::offer) to the request's
//! `Sec-WebSocket-Extensions` and checks the answer with [`client::validate_response_with`]; a
//! server picks an offer with
//! [`DeflateConfig::negotiate`](crate::deflate::DeflateConfig::negotiate) and adds
//! [`DeflateParams::to_header`](crate::deflate::DeflateParams::to_header) to its 101.
//!
//! What the module does not decide: the resource name (404), the `Origin` policy (403) and
//! authentication (401) belong to the application, which inspects the parsed request before it
//! accepts (RFC 6455 §4.2.2 steps 2–4).
//!
//! Invariants: peer bytes never cause a panic, only a [`HandshakeError`]; a head is never longer
//! than the caller's `max_head`; header names are written as `http` stores them (lower case,
//! which HTTP/1.1 treats as equal to any other case).
//!
//! # Examples
//!
//! A client and a server agree on a connection without any I/O:
//!
//! ```
//! # fn main() -> Result<(), switchboard_proto::handshake::HandshakeError> {
//! use switchboard_proto::handshake::{client, server};
//!
//! let uri: http::Uri = "ws://example.com/chat".parse().unwrap();
//! let (request, key) = client::build_request(&uri, &["chat"], &http::HeaderMap::new())?;
//! let mut wire = Vec::new();
//! client::write_request(&request, &mut wire);
//!
//! let (received, head_len) = server::parse_request(&wire, 8192)?.expect("a complete head");
//! assert_eq!(head_len, wire.len());
//! let response = server::accept_response(&received, Some("chat"))?;
//! let mut reply = Vec::new();
//! server::write_response(&response, b"", &mut reply);
//!
//! let (answer, _) = client::parse_response(&reply, 8192)?.expect("a complete head");
//! let protocol = client::validate_response(&answer, &key, &["chat"])?;
//! assert_eq!(protocol.as_deref(), Some("chat"));
//! # Ok(())
//! # }
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::StatusCode;
use http::header::HeaderName;
use sha1::{Digest as _, Sha1};

pub mod client;
mod head;
pub mod server;

/// The GUID a server appends to the client's key before hashing (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most header fields [`server::parse_request`] and [`client::parse_response`] accept; a head
/// with more fails with [`HandshakeError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

/// The only protocol version this crate speaks (RFC 6455 §4.1 item 9).
const VERSION: &str = "13";

/// Computes the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: the base64 of the SHA-1 of
/// the key (as sent, not decoded) followed by [`GUID`] (RFC 6455 §4.2.2 step 5.4).
///
/// # Examples
///
/// ```
/// use switchboard_proto::handshake::accept_key;
///
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// Why an opening handshake failed.
///
/// Variants follow the order in which the checks run: reading the head, the request checks of
/// RFC 6455 §4.2.1, the response checks of §4.1, then mistakes of the local caller. Errors in a
/// request map to the status a server answers with, see [`HandshakeError::status`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head did not end within the caller's limit.
    #[error("http head is longer than {limit} bytes")]
    HeadTooLarge {
        /// The limit the caller passed as `max_head`.
        limit: usize,
    },
    /// The head has more than [`MAX_HEADERS`] header fields.
    #[error("more than {} header fields", MAX_HEADERS)]
    TooManyHeaders,
    /// The head is not valid HTTP/1.x; the text says which part is wrong.
    #[error("malformed http head: {0}")]
    MalformedHttp(String),
    /// A header field that may appear once appears more than once (RFC 6455 §11.3,
    /// RFC 9112 §3.2 for `Host`).
    #[error("duplicate {0} header")]
    DuplicateHeader(HeaderName),
    /// The request method is not `GET` (RFC 6455 §4.2.1 item 1).
    #[error("method is not get")]
    MethodNotGet,
    /// The request is older than HTTP/1.1 (RFC 6455 §4.2.1 item 1).
    #[error("http version is older than 1.1")]
    HttpVersion,
    /// The request has no `Host` header (RFC 6455 §4.2.1 item 2).
    #[error("missing host header")]
    MissingHost,
    /// The message has no `Upgrade` header (RFC 6455 §4.2.1 item 3, §4.1 response check 2).
    #[error("missing upgrade header")]
    MissingUpgrade,
    /// The `Upgrade` header does not name `websocket` (RFC 6455 §4.2.1 item 3, §4.1 check 2).
    #[error("upgrade header does not name websocket")]
    UpgradeNotWebSocket,
    /// The `Connection` header is missing or lacks the `upgrade` token (RFC 6455 §4.2.1 item 4,
    /// §4.1 response check 3).
    #[error("connection header lacks the upgrade token")]
    ConnectionNotUpgrade,
    /// The request has no `Sec-WebSocket-Version` header (RFC 6455 §4.2.1 item 6).
    #[error("missing sec-websocket-version header, this server speaks version 13")]
    MissingVersion,
    /// The request asks for a version other than 13 (RFC 6455 §4.2.1 item 6, §4.4).
    #[error("unsupported websocket version, this server speaks version 13")]
    UnsupportedVersion,
    /// The request has no `Sec-WebSocket-Key` header (RFC 6455 §4.2.1 item 5).
    #[error("missing sec-websocket-key header")]
    MissingKey,
    /// The `Sec-WebSocket-Key` is not the base64 of exactly 16 bytes (RFC 6455 §4.2.1 item 5).
    #[error("sec-websocket-key is not the base64 of 16 bytes")]
    InvalidKey,
    /// The server answered with a status other than 101 (RFC 6455 §4.1 response check 1).
    #[error("expected 101 switching protocols, got {0}")]
    UnexpectedStatus(StatusCode),
    /// The response has no `Sec-WebSocket-Accept` header (RFC 6455 §4.1 response check 4).
    #[error("missing sec-websocket-accept header")]
    MissingAccept,
    /// The `Sec-WebSocket-Accept` does not match the key the client sent (RFC 6455 §4.1
    /// response check 4).
    #[error("sec-websocket-accept does not match the key")]
    AcceptMismatch,
    /// The server chose an extension the client did not offer (RFC 6455 §4.1 response check 5).
    #[error("server chose extension {0:?}, which the client did not offer")]
    UnrequestedExtension(String),
    /// The server's permessage-deflate answer is one the client's offer did not allow
    /// (RFC 7692 §5.1, §7.1), or its `Sec-WebSocket-Extensions` is not an extension list
    /// (RFC 6455 §9.1).
    #[error("invalid permessage-deflate answer: {0}")]
    InvalidExtension(#[from] crate::deflate::DeflateError),
    /// The server chose a subprotocol the client did not offer (RFC 6455 §4.1 response check 6).
    #[error("server chose subprotocol {0:?}, which the client did not offer")]
    UnrequestedProtocol(String),
    /// Caller error: the URI passed to [`client::build_request`] is not a WebSocket URI
    /// (RFC 6455 §3); the text says why.
    #[error("not a websocket uri: {0}")]
    InvalidUri(&'static str),
    /// Caller error: a subprotocol passed to [`client::build_request`] is not a token, or is
    /// listed twice (RFC 6455 §4.1 item 10).
    #[error("subprotocol {0:?} is not a unique token")]
    InvalidProtocol(String),
    /// Caller error: an extra header passed to [`client::build_request`] is one the handshake
    /// sets itself.
    #[error("{0} header is set by the handshake")]
    ReservedHeader(HeaderName),
    /// Caller error: the subprotocol passed to [`server::accept_response`] is not one the client
    /// offered (RFC 6455 §4.2.2 step 4).
    #[error("subprotocol {0:?} was not offered by the client")]
    ProtocolNotOffered(String),
    /// The operating system's random number generator failed, so no key could be made.
    #[error("os random number generator failed")]
    GetRandomFailed,
}

impl HandshakeError {
    /// The HTTP status a server answers a request that failed with this error.
    ///
    /// - 400 Bad Request for a malformed head and for every §4.2.1 violation except the version,
    ///   as RFC 6455 §4.2.1 suggests. A method other than `GET` also gets 400, not 405: a 405 must
    ///   carry an `Allow` header listing the resource's methods (RFC 9110 §15.5.6), which only the
    ///   application knows.
    /// - 426 Upgrade Required for a missing or unsupported `Sec-WebSocket-Version` (RFC 6455
    ///   §4.2.2 step 4); [`server::reject_response`] adds `Sec-WebSocket-Version: 13`.
    /// - 431 Request Header Fields Too Large for [`HeadTooLarge`](Self::HeadTooLarge) and
    ///   [`TooManyHeaders`](Self::TooManyHeaders) (RFC 6585 §5).
    /// - 500 Internal Server Error for everything a request cannot cause: response checks, which
    ///   only a client makes, and mistakes of the local caller.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::MissingVersion | Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::MalformedHttp(_)
            | Self::DuplicateHeader(_)
            | Self::MethodNotGet
            | Self::HttpVersion
            | Self::MissingHost
            | Self::MissingUpgrade
            | Self::UpgradeNotWebSocket
            | Self::ConnectionNotUpgrade
            | Self::MissingKey
            | Self::InvalidKey => StatusCode::BAD_REQUEST,
            Self::UnexpectedStatus(_)
            | Self::MissingAccept
            | Self::AcceptMismatch
            | Self::UnrequestedExtension(_)
            | Self::InvalidExtension(_)
            | Self::UnrequestedProtocol(_)
            | Self::InvalidUri(_)
            | Self::InvalidProtocol(_)
            | Self::ReservedHeader(_)
            | Self::ProtocolNotOffered(_)
            | Self::GetRandomFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response that refuses the request, body included: [`server::reject_response`] as
    /// one value, for an HTTP server whose body type is made from a `String` (hyper, axum).
    pub fn to_response<B: From<String>>(&self) -> http::Response<B> {
        let (head, body) = server::reject_response(self);
        let (parts, ()) = head.into_parts();
        http::Response::from_parts(parts, B::from(body))
    }
}

/// Helpers the client and server tests share.
#[cfg(test)]
mod test_support {
    /// `head` with the line starting with `prefix` replaced by `line`, or removed when `line` is
    /// empty.
    pub(super) fn replace_line(head: &str, prefix: &str, line: &str) -> String {
        let mut out = String::new();
        for l in head.split_inclusive("\r\n") {
            if !l.starts_with(prefix) {
                out.push_str(l);
            } else if !line.is_empty() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_section_1_3() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn version_errors_map_to_426_and_size_errors_to_431() {
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::MissingVersion.status(), 426);
        assert_eq!(HandshakeError::HeadTooLarge { limit: 1 }.status(), 431);
        assert_eq!(HandshakeError::TooManyHeaders.status(), 431);
        assert_eq!(HandshakeError::MethodNotGet.status(), 400);
        assert_eq!(HandshakeError::ProtocolNotOffered("x".into()).status(), 500);
    }

    #[test]
    fn display_is_lower_case_without_period() {
        let errors = [
            HandshakeError::HeadTooLarge { limit: 8 },
            HandshakeError::TooManyHeaders,
            HandshakeError::DuplicateHeader(http::header::HOST),
            HandshakeError::MethodNotGet,
            HandshakeError::UnsupportedVersion,
            HandshakeError::UnexpectedStatus(StatusCode::NOT_FOUND),
            HandshakeError::GetRandomFailed,
        ];
        for err in errors {
            let text = err.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(!text.starts_with(char::is_uppercase), "{text}");
        }
    }
}
