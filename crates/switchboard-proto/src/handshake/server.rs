//! The server side of the opening handshake: reading the client's request (RFC 6455 §4.2.1) and
//! sending the server's response (RFC 6455 §4.2.2).
//!
//! A server reads into a buffer until [`parse_request`] returns a head, checks it with
//! [`accept_response`] (which runs [`validate_request`]), and writes the 101 with
//! [`write_response`]. On an error it writes [`reject_response`] instead and closes the
//! connection. The bytes after the head are the client's first frames.
//!
//! Invariants: a request is accepted only if it passes every check of §4.2.1; the 101 names only a
//! subprotocol the client offered; rejections carry `Connection: close`, because after a failed
//! upgrade the rest of the stream cannot be trusted to be HTTP.

use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::head::{
    head_window, header_map, http_version, incomplete, parse_error, single, version_str,
    write_headers,
};
use super::{HandshakeError, MAX_HEADERS, VERSION, accept_key};
use crate::header::{has_token, list_items};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

/// Decodes a `Sec-WebSocket-Key`. Unlike the strict engine it ignores non-zero bits after the last
/// byte: RFC 6455 §4.1 item 7 itself gives the key `AQIDBAUGBwgJCgsMDQ4PEC==`, whose final `C`
/// carries such bits, and the key is only ever hashed as sent, so nothing depends on them.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Parses the head of a client's request from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete; read more and call again with the whole
/// buffer. On success returns the request and the length of its head: `buf[len..]` is not part
/// of the handshake (it may hold the client's first frames) and must be handed to the framing
/// layer. The request carries the method, the request target as sent, the version (HTTP/1.0 or
/// HTTP/1.1) and the headers, repeated ones in order. It is not yet checked against RFC 6455;
/// [`validate_request`] does that.
///
/// Each call parses from the start of `buf`, at most `max_head` bytes of it.
///
/// # Errors
///
/// - [`HandshakeError::HeadTooLarge`] if the head does not end within `max_head` bytes: at once
///   when `buf` is longer than `max_head` without a complete head.
/// - [`HandshakeError::TooManyHeaders`] if the head has more than [`MAX_HEADERS`] fields.
/// - [`HandshakeError::MalformedHttp`] if the head is not a valid HTTP/1.x request.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    let mut raw_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Request::new(&mut raw_headers);
    let len = match raw.parse(head_window(buf, max_head)).map_err(parse_error)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return incomplete(buf, max_head),
    };
    let (Some(method), Some(target), Some(minor)) = (raw.method, raw.path, raw.version) else {
        return Err(HandshakeError::MalformedHttp(
            "incomplete request line".into(),
        ));
    };

    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(method.as_bytes())
        .map_err(|_| HandshakeError::MalformedHttp("invalid method".into()))?;
    *request.uri_mut() = target
        .parse::<Uri>()
        .map_err(|_| HandshakeError::MalformedHttp("invalid request target".into()))?;
    *request.version_mut() = http_version(minor)?;
    *request.headers_mut() = header_map(raw.headers)?;
    Ok(Some((request, len)))
}

/// Whether `req` asks for a WebSocket upgrade at all: its `Upgrade` header lists `websocket`.
///
/// A server that also serves plain HTTP routes requests for which this is `false` elsewhere. A
/// `true` says nothing about the rest of the handshake; [`validate_request`] checks that.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), &UPGRADE, "websocket")
}

/// Checks `req` against the client handshake of RFC 6455 §4.2.1.
///
/// The checks run in the order of the RFC, except that the version is checked before the key: a
/// client speaking another version should learn which one this server speaks (a 426), whatever
/// its key looks like. `Origin`, the resource name and authentication are left to the caller.
///
/// # Errors
///
/// The first violation found, as one of [`HandshakeError::MethodNotGet`],
/// [`HttpVersion`](HandshakeError::HttpVersion), [`MissingHost`](HandshakeError::MissingHost),
/// [`MissingUpgrade`](HandshakeError::MissingUpgrade),
/// [`UpgradeNotWebSocket`](HandshakeError::UpgradeNotWebSocket),
/// [`ConnectionNotUpgrade`](HandshakeError::ConnectionNotUpgrade),
/// [`MissingVersion`](HandshakeError::MissingVersion),
/// [`UnsupportedVersion`](HandshakeError::UnsupportedVersion),
/// [`MissingKey`](HandshakeError::MissingKey), [`InvalidKey`](HandshakeError::InvalidKey) or
/// [`DuplicateHeader`](HandshakeError::DuplicateHeader). [`HandshakeError::status`] gives the
/// status to answer with.
pub fn validate_request<B>(req: &Request<B>) -> Result<(), HandshakeError> {
    checked_key(req).map(|_| ())
}

/// The subprotocols the client offers, in its order of preference: the trimmed items of every
/// `Sec-WebSocket-Protocol` header (RFC 6455 §4.2.1 item 8, §11.3.4).
///
/// Items that are not UTF-8 cannot be tokens, so they are skipped.
pub fn requested_protocols<B>(req: &Request<B>) -> impl Iterator<Item = &str> + use<'_, B> {
    list_items(req.headers(), &SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|item| std::str::from_utf8(item).ok())
}

/// Validates `req` and builds the `101 Switching Protocols` that accepts it (RFC 6455 §4.2.2
/// step 5), naming `protocol` as the subprotocol if one is given.
///
/// The caller chooses `protocol` from [`requested_protocols`], or passes `None` to speak none.
///
/// # Errors
///
/// - Any error of [`validate_request`]; answer it with [`reject_response`].
/// - [`HandshakeError::ProtocolNotOffered`] if `protocol` is not one the client offered. That is
///   a bug in the caller, not the client's fault; its status is 500.
pub fn accept_response<B>(
    req: &Request<B>,
    protocol: Option<&str>,
) -> Result<Response<()>, HandshakeError> {
    let key = checked_key(req)?;

    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.version_mut() = Version::HTTP_11;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    // Base64 output is made of A-Z, a-z, 0-9, '+', '/' and '=', all valid in a header value.
    let accept = HeaderValue::try_from(accept_key(key)).expect("base64 is a valid header value");
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);

    if let Some(protocol) = protocol {
        // RFC 6455 §4.2.2 step 4: "The value chosen MUST be derived from the client's handshake,
        // specifically by selecting one of the values from the |Sec-WebSocket-Protocol| field".
        if !requested_protocols(req).any(|offered| offered == protocol) {
            return Err(HandshakeError::ProtocolNotOffered(protocol.to_owned()));
        }
        let value = HeaderValue::from_str(protocol)
            .map_err(|_| HandshakeError::ProtocolNotOffered(protocol.to_owned()))?;
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(response)
}

/// Whether `req` is an HTTP/2 extended CONNECT (RFC 8441 §4): the request of a WebSocket over
/// an HTTP/2 stream. Its `:protocol` travels beside the headers (hyper's `ext::Protocol`), so the
/// caller checks that it names `websocket`; this only looks at the method and version.
pub fn is_connect_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT && req.version() == Version::HTTP_2
}

/// Checks an HTTP/2 extended CONNECT whose `:protocol` is `websocket` (RFC 8441 §5): the
/// version header of RFC 6455 §4.2.1 item 6. Neither `Upgrade`, `Connection` nor
/// `Sec-WebSocket-Key` is used over HTTP/2.
///
/// # Errors
///
/// [`HandshakeError::MissingVersion`], [`UnsupportedVersion`](HandshakeError::UnsupportedVersion)
/// or [`DuplicateHeader`](HandshakeError::DuplicateHeader); answer with
/// [`reject_connect_response`].
pub fn validate_connect_request<B>(req: &Request<B>) -> Result<(), HandshakeError> {
    // RFC 8441 §5: "The [...] Sec-WebSocket-Version [...] header fields are used on the CONNECT
    // request as they are on the GET request in [RFC6455]" (Sec-WebSocket-Key and
    // Sec-WebSocket-Accept are not: "their functionality has been superseded by the :protocol
    // pseudo-header field").
    let Some(version) = single(req.headers(), &SEC_WEBSOCKET_VERSION)? else {
        return Err(HandshakeError::MissingVersion);
    };
    if version.as_bytes().trim_ascii() != VERSION.as_bytes() {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(())
}

/// Validates an extended CONNECT ([`validate_connect_request`]) and builds the `200` that
/// accepts it (RFC 8441 §5: "a 2xx status code"; there is no `Sec-WebSocket-Accept`), naming
/// `protocol` as the subprotocol if one is given.
///
/// # Errors
///
/// As [`validate_connect_request`] and [`accept_response`].
pub fn connect_response<B>(
    req: &Request<B>,
    protocol: Option<&str>,
) -> Result<Response<()>, HandshakeError> {
    validate_connect_request(req)?;
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::OK;
    *response.version_mut() = Version::HTTP_2;
    if let Some(protocol) = protocol {
        if !requested_protocols(req).any(|offered| offered == protocol) {
            return Err(HandshakeError::ProtocolNotOffered(protocol.to_owned()));
        }
        let value = HeaderValue::from_str(protocol)
            .map_err(|_| HandshakeError::ProtocolNotOffered(protocol.to_owned()))?;
        response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(response)
}

/// [`reject_response`] for an extended CONNECT: a wrong or missing version is `400` with
/// `Sec-WebSocket-Version: 13` (a 426 needs an `Upgrade` header, which HTTP/2 forbids), and
/// the connection-specific headers RFC 9113 §8.2.2 forbids are left out: the refusal ends the
/// stream, not the connection.
pub fn reject_connect_response(err: &HandshakeError) -> (Response<()>, String) {
    let (mut response, body) = reject_response(err);
    *response.version_mut() = Version::HTTP_2;
    let headers = response.headers_mut();
    headers.remove(CONNECTION);
    headers.remove(UPGRADE);
    if response.status() == StatusCode::UPGRADE_REQUIRED {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    (response, body)
}

/// Builds the error response for a request that failed with `err`, and its body.
///
/// The status is [`HandshakeError::status`]; the body is the error's text and a newline, sent as
/// `text/plain; charset=utf-8` with its `Content-Length` and `Connection: close`. A 426 also
/// carries `Sec-WebSocket-Version: 13` and `Upgrade: websocket`. Write both with
/// [`write_response`], then close the connection.
pub fn reject_response(err: &HandshakeError) -> (Response<()>, String) {
    let status = err.status();
    let body = format!("{err}\n");

    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_11;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if status == StatusCode::UPGRADE_REQUIRED {
        // RFC 6455 §4.2.2 step 4: "the server MUST abort the WebSocket handshake [...] and instead
        // send an appropriate HTTP error code (such as 426 Upgrade Required) and a
        // |Sec-WebSocket-Version| header field indicating the version(s) the server is capable
        // of understanding."
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(VERSION));
        // RFC 9110 §7.8: "A server that sends a 426 (Upgrade Required) response MUST send an
        // Upgrade header field to indicate the acceptable protocols" and "When Upgrade is sent,
        // the sender MUST also send a Connection header field [...] that contains the "upgrade"
        // connection option".
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade, close"));
    } else {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    (response, body)
}

/// Serializes `resp` and `body` into `out`: the status line with the canonical reason phrase, the
/// headers, a blank line, then `body`.
///
/// The response is written as HTTP/1.1 unless its version is HTTP/1.0. The caller is responsible
/// for a `Content-Length` that matches `body`; [`reject_response`] sets one.
pub fn write_response(resp: &Response<()>, body: &[u8], out: &mut Vec<u8>) {
    let status = resp.status();
    out.extend_from_slice(version_str(resp.version()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(resp.headers(), out);
    out.extend_from_slice(body);
}

/// Runs the checks of §4.2.1 and returns the trimmed `Sec-WebSocket-Key`, which the accept value
/// is computed from.
fn checked_key<B>(req: &Request<B>) -> Result<&[u8], HandshakeError> {
    let headers = req.headers();

    // RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }

    // RFC 6455 §4.2.1 item 2: "A |Host| header field containing the server's authority."
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
    // request message that lacks a Host header field and to any request message that contains
    // more than one Host header field line".
    if single(headers, &HOST)?.is_none() {
        return Err(HandshakeError::MissingHost);
    }

    // RFC 6455 §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value."
    if !headers.contains_key(UPGRADE) {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::UpgradeNotWebSocket);
    }

    // RFC 6455 §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade",
    // treated as an ASCII case-insensitive value."
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }

    // RFC 6455 §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    // §11.3.5: "the |Sec-WebSocket-Version| header field MUST NOT appear more than once in an
    // HTTP request."
    let Some(version) = single(headers, &SEC_WEBSOCKET_VERSION)? else {
        return Err(HandshakeError::MissingVersion);
    };
    if version.as_bytes().trim_ascii() != VERSION.as_bytes() {
        return Err(HandshakeError::UnsupportedVersion);
    }

    // RFC 6455 §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded [...]
    // value that, when decoded, is 16 bytes in length."
    // §11.3.1: "The |Sec-WebSocket-Key| header field MUST NOT appear more than once in an HTTP
    // request."
    let Some(key) = single(headers, &SEC_WEBSOCKET_KEY)? else {
        return Err(HandshakeError::MissingKey);
    };
    let key = key.as_bytes().trim_ascii();
    // 16 bytes encode to 24 characters with padding; checking the length first bounds the work.
    // The buffer has room for the 18 bytes 24 characters could hold without padding.
    let mut nonce = [0; 18];
    if key.len() != 24 || !matches!(KEY_BASE64.decode_slice(key, &mut nonce), Ok(16)) {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
