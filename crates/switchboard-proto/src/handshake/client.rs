//! The client side of the opening handshake: sending the request (RFC 6455 §4.1, first list) and
//! checking the server's response (RFC 6455 §4.1, second list).
//!
//! A client builds the request with [`build_request`], keeps the returned key, writes the request
//! with [`write_request`], reads until [`parse_response`] returns a head, and checks it with
//! [`validate_response`]. The bytes after the head are the server's first frames.
//!
//! Invariants: every request carries a fresh random key from the operating system; a response is
//! accepted only if it passes every check of §4.1, and so names only a subprotocol or extension
//! the client offered.

use http::header::{
    CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::head::{
    head_window, header_map, http_version, incomplete, parse_error, single, version_str,
    write_headers,
};
use super::{BASE64, HandshakeError, MAX_HEADERS, VERSION, accept_key};
use crate::deflate::{DeflateConfig, DeflateError, DeflateParams, EXTENSION_NAME};
use crate::header::{Malformed, has_token, is_token, list_items, parse_extensions};
use base64::Engine as _;

/// Headers the handshake sets itself, which `extra_headers` may therefore not contain.
const RESERVED: [HeaderName; 7] = [
    HOST,
    UPGRADE,
    CONNECTION,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_EXTENSIONS,
];

/// Builds the opening request for `uri`, offering `protocols` in order of preference.
///
/// `uri` is a `ws`, `wss`, `http` or `https` URI with a host. The request targets its path and
/// query (`/` if the path is empty); its `Host` header is the URI's host and port, without the
/// port when it is the scheme's default (80, or 443 for `wss`/`https`). User information in the
/// URI is not sent. The request carries `Upgrade: websocket`, `Connection: Upgrade`,
/// `Sec-WebSocket-Version: 13`, a random `Sec-WebSocket-Key`, `Sec-WebSocket-Protocol` when
/// `protocols` is not empty, and then `extra_headers` (such as `Origin`, `Authorization` or
/// `Cookie`).
///
/// Returns the request and its key, which [`validate_response`] needs.
///
/// # Errors
///
/// - [`HandshakeError::InvalidUri`] if `uri` has no host or another scheme.
/// - [`HandshakeError::InvalidProtocol`] if a protocol is not a token or is listed twice.
/// - [`HandshakeError::ReservedHeader`] if `extra_headers` holds a header the handshake sets:
///   `Host`, `Upgrade`, `Connection` or a `Sec-WebSocket-*` header.
/// - [`HandshakeError::GetRandomFailed`] if the operating system gives no random bytes.
pub fn build_request(
    uri: &Uri,
    protocols: &[&str],
    extra_headers: &HeaderMap,
) -> Result<(Request<()>, String), HandshakeError> {
    // RFC 6455 §4.1 item 7: "The value of this header field MUST be a nonce consisting of a
    // randomly selected 16-byte value that has been base64-encoded [...]. The nonce MUST be
    // selected randomly for each connection."
    let mut nonce = [0; 16];
    getrandom::fill(&mut nonce).map_err(|_| HandshakeError::GetRandomFailed)?;
    request_with_nonce(uri, protocols, extra_headers, nonce)
}

/// Serializes `req` into `out`: the request line, the headers and the blank line that ends the
/// head.
///
/// The request target is written in origin form, the URI's path (or `/`) and query, whatever
/// form `req.uri()` has. The request is written as HTTP/1.1 unless its version is HTTP/1.0.
pub fn write_request(req: &Request<()>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request_target(req.uri()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(version_str(req.version()).as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(req.headers(), out);
}

/// Parses the head of the server's response from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete; read more and call again with the whole
/// buffer. On success returns the response and the length of its head: `buf[len..]` is not part
/// of the handshake (it may hold the server's first frames) and must be handed to the framing
/// layer. The reason phrase is not kept. The response is not yet checked against RFC 6455;
/// [`validate_response`] does that.
///
/// # Errors
///
/// - [`HandshakeError::HeadTooLarge`] if the head does not end within `max_head` bytes: at once
///   when `buf` is longer than `max_head` without a complete head.
/// - [`HandshakeError::TooManyHeaders`] if the head has more than [`MAX_HEADERS`] fields.
/// - [`HandshakeError::MalformedHttp`] if the head is not a valid HTTP/1.x response.
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    let mut raw_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Response::new(&mut raw_headers);
    let len = match raw.parse(head_window(buf, max_head)).map_err(parse_error)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return incomplete(buf, max_head),
    };
    let (Some(minor), Some(code)) = (raw.version, raw.code) else {
        return Err(HandshakeError::MalformedHttp(
            "incomplete status line".into(),
        ));
    };

    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(code)
        .map_err(|_| HandshakeError::MalformedHttp("invalid status code".into()))?;
    *response.version_mut() = http_version(minor)?;
    *response.headers_mut() = header_map(raw.headers)?;
    Ok(Some((response, len)))
}

/// Checks the server's response against RFC 6455 §4.1, given the `key` that [`build_request`]
/// returned and the `protocols` the request offered.
///
/// Returns the subprotocol the server chose, or `None` if it chose none (which the RFC allows
/// even when the client offered some; whether to go on is the application's decision).
///
/// # Errors
///
/// The first violation found, as one of [`HandshakeError::UnexpectedStatus`] (the caller may
/// still act on a 401 or a redirect), [`MissingUpgrade`](HandshakeError::MissingUpgrade),
/// [`UpgradeNotWebSocket`](HandshakeError::UpgradeNotWebSocket),
/// [`ConnectionNotUpgrade`](HandshakeError::ConnectionNotUpgrade),
/// [`MissingAccept`](HandshakeError::MissingAccept),
/// [`AcceptMismatch`](HandshakeError::AcceptMismatch),
/// [`UnrequestedExtension`](HandshakeError::UnrequestedExtension),
/// [`UnrequestedProtocol`](HandshakeError::UnrequestedProtocol) or
/// [`DuplicateHeader`](HandshakeError::DuplicateHeader). On any of them the client must fail the
/// connection.
pub fn validate_response(
    resp: &Response<()>,
    key: &str,
    protocols: &[&str],
) -> Result<Option<String>, HandshakeError> {
    validate_response_with(resp, key, protocols, None).map(|agreed| agreed.protocol)
}

/// What the client and the server agreed on in the opening handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Agreed {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters, if the server accepted the extension.
    pub deflate: Option<DeflateParams>,
}

/// [`validate_response`] for a request that offered permessage-deflate as `deflate`
/// configures it (the request carries [`DeflateConfig::offer`] in `Sec-WebSocket-Extensions`).
///
/// # Errors
///
/// As [`validate_response`], and [`HandshakeError::InvalidExtension`] when the server's
/// permessage-deflate answer is one the offer did not allow.
pub fn validate_response_with(
    resp: &Response<()>,
    key: &str,
    protocols: &[&str],
    deflate: Option<&DeflateConfig>,
) -> Result<Agreed, HandshakeError> {
    let headers = resp.headers();

    // RFC 6455 §4.1 response check 1: "If the status code received from the server is not 101,
    // the client handles the response per HTTP [RFC2616] procedures."
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::UnexpectedStatus(resp.status()));
    }

    // Check 2: "If the response lacks an |Upgrade| header field or the |Upgrade| header field
    // contains a value that is not an ASCII case-insensitive match for the value "websocket", the
    // client MUST _Fail the WebSocket Connection_."
    if !headers.contains_key(UPGRADE) {
        return Err(HandshakeError::MissingUpgrade);
    }
    let mut upgrade = list_items(headers, &UPGRADE);
    let is_websocket = upgrade
        .next()
        .is_some_and(|item| item.eq_ignore_ascii_case(b"websocket"));
    if !is_websocket || upgrade.next().is_some() {
        return Err(HandshakeError::UpgradeNotWebSocket);
    }

    // Check 3: "If the response lacks a |Connection| header field or the |Connection| header
    // field doesn't contain a token that is an ASCII case-insensitive match for the value
    // "Upgrade", the client MUST _Fail the WebSocket Connection_."
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }

    // Check 4: "If the response lacks a |Sec-WebSocket-Accept| header field or the
    // |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of [the key and
    // the GUID] but ignoring any leading and trailing whitespace, the client MUST _Fail the
    // WebSocket Connection_."
    // §11.3.3: "The |Sec-WebSocket-Accept| header MUST NOT appear more than once in an HTTP
    // response."
    let Some(accept) = single(headers, &SEC_WEBSOCKET_ACCEPT)? else {
        return Err(HandshakeError::MissingAccept);
    };
    let expected = accept_key(key.trim_ascii().as_bytes());
    if accept.as_bytes().trim_ascii() != expected.as_bytes() {
        return Err(HandshakeError::AcceptMismatch);
    }

    check_agreement(headers, protocols, deflate)
}

/// Builds the extended CONNECT that opens a WebSocket over an HTTP/2 stream (RFC 8441 §4, §5)
/// for `uri`, offering `protocols` in order of preference.
///
/// The request's method is `CONNECT`, its version HTTP/2 and its URI `https://` (`http://`
/// for `ws://`) with `uri`'s host, port, path and query: the `:scheme`, `:authority` and `:path` pseudo-headers. The
/// caller adds `:protocol = websocket`, which its HTTP/2 implementation carries beside the
/// headers. The request carries `Sec-WebSocket-Version: 13`, `Sec-WebSocket-Protocol` when
/// `protocols` is not empty, and then `extra_headers`; not `Sec-WebSocket-Key`, `Upgrade`,
/// `Connection` nor `Host`, which HTTP/2 replaces.
///
/// # Errors
///
/// As [`build_request`], except that no random key is drawn.
pub fn build_http2_request(
    uri: &Uri,
    protocols: &[&str],
    extra_headers: &HeaderMap,
) -> Result<Request<()>, HandshakeError> {
    let (request, _key) = request_with_nonce(uri, protocols, extra_headers, [0; 16])?;
    let (mut parts, ()) = request.into_parts();
    let authority = parts
        .headers
        .remove(HOST)
        .ok_or(HandshakeError::InvalidUri("missing host"))?;
    let authority = authority
        .to_str()
        .map_err(|_| HandshakeError::InvalidUri("host is not a valid header value"))?;
    // RFC 8441 §4: with `:protocol`, "the :scheme and :path pseudo-header fields of the target
    // URI [...] MUST also be included"; §5: the scheme is `https` for `wss` and `http` for `ws`.
    let secure = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("wss") || s.eq_ignore_ascii_case("https"));
    let scheme = if secure { "https" } else { "http" };
    let target = format!("{scheme}://{authority}{}", request_target(uri));
    parts.uri =
        Uri::try_from(target).map_err(|_| HandshakeError::InvalidUri("invalid path or query"))?;
    parts.method = Method::CONNECT;
    parts.version = Version::HTTP_2;
    // RFC 8441 §5: "their functionality has been superseded by the :protocol pseudo-header
    // field": no key, and no connection-specific header (RFC 9113 §8.2.2).
    for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_KEY] {
        parts.headers.remove(name);
    }
    Ok(Request::from_parts(parts, ()))
}

/// Checks the server's answer to an extended CONNECT (RFC 8441 §5): a 2xx status, then the subprotocol and extensions as [`validate_response_with`] does (RFC 6455 §4.1 checks
/// 5 and 6). There is no `Sec-WebSocket-Accept` over HTTP/2.
///
/// # Errors
///
/// [`HandshakeError::UnexpectedStatus`] for any other status (the refusal's, as over HTTP/1.1),
/// and the errors of checks 5 and 6 of [`validate_response_with`].
pub fn validate_http2_response(
    resp: &Response<()>,
    protocols: &[&str],
    deflate: Option<&DeflateConfig>,
) -> Result<Agreed, HandshakeError> {
    // RFC 6455 §4.1 response check 1, with RFC 8441's 2xx in place of the 101: any other
    // status is handled "per HTTP procedures", a refusal as over HTTP/1.1.
    if !resp.status().is_success() {
        return Err(HandshakeError::UnexpectedStatus(resp.status()));
    }
    check_agreement(resp.headers(), protocols, deflate)
}

/// RFC 6455 §4.1 response checks 5 and 6: the extension and the subprotocol the server chose
/// are ones the request offered.
fn check_agreement(
    headers: &HeaderMap,
    protocols: &[&str],
    deflate: Option<&DeflateConfig>,
) -> Result<Agreed, HandshakeError> {
    // Check 5, and RFC 7692 §5.1: the client fails the connection if the answer's
    // permessage-deflate parameters are ones its offer did not allow.
    let deflate = match deflate {
        Some(config) => {
            check_extensions(headers, &[EXTENSION_NAME])?;
            config.accept_response(headers)?
        }
        None => {
            check_extensions(headers, &[])?;
            None
        }
    };

    // Check 6: "If the response includes a |Sec-WebSocket-Protocol| header field and this header
    // field indicates the use of a subprotocol that was not present in the client's handshake
    // [...], the client MUST _Fail the WebSocket Connection_."
    // §11.3.4: "the |Sec-WebSocket-Protocol| header field MUST NOT appear more than once in an
    // HTTP response."
    let Some(protocol) = single(headers, &SEC_WEBSOCKET_PROTOCOL)? else {
        return Ok(Agreed {
            protocol: None,
            deflate,
        });
    };
    let protocol = String::from_utf8_lossy(protocol.as_bytes().trim_ascii());
    if !protocols.contains(&&*protocol) {
        return Err(HandshakeError::UnrequestedProtocol(protocol.into_owned()));
    }
    Ok(Agreed {
        protocol: Some(protocol.into_owned()),
        deflate,
    })
}

/// [`build_request`] with a given nonce, so tests can be deterministic.
fn request_with_nonce(
    uri: &Uri,
    protocols: &[&str],
    extra_headers: &HeaderMap,
    nonce: [u8; 16],
) -> Result<(Request<()>, String), HandshakeError> {
    // RFC 6455 §4.1: "The components of the WebSocket URI passed into this algorithm [...] MUST
    // be valid according to the specification of WebSocket URIs specified in Section 3. If any
    // of the components are invalid, the client MUST _Fail the WebSocket Connection_".
    let scheme = uri
        .scheme_str()
        .ok_or(HandshakeError::InvalidUri("missing scheme"))?;
    let default_port = if scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("wss") || scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return Err(HandshakeError::InvalidUri(
            "scheme is not ws, wss, http or https",
        ));
    };
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or(HandshakeError::InvalidUri("missing host"))?;

    // RFC 6455 §4.1 item 4: "The request MUST contain a |Host| header field whose value contains
    // /host/ plus optionally ":" followed by /port/ (when not using the default port)."
    let host = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    let host = HeaderValue::try_from(host)
        .map_err(|_| HandshakeError::InvalidUri("host is not a valid header value"))?;

    // RFC 6455 §4.1 item 10: "The elements that comprise this value MUST be non-empty strings
    // with characters in the range U+0021 to U+007E not including separator characters as
    // defined in [RFC2616] and MUST all be unique strings." That is RFC 9110's token.
    for (i, protocol) in protocols.iter().enumerate() {
        if !is_token(protocol) || protocols[..i].contains(protocol) {
            return Err(HandshakeError::InvalidProtocol((*protocol).to_owned()));
        }
    }

    if let Some(name) = RESERVED
        .iter()
        .find(|name| extra_headers.contains_key(*name))
    {
        return Err(HandshakeError::ReservedHeader(name.clone()));
    }

    let key = BASE64.encode(nonce);
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    // RFC 6455 §4.1 item 3: "The "Request-URI" part of the request MUST match the /resource
    // name/ defined in Section 3 (a relative URI)".
    *request.uri_mut() = Uri::try_from(request_target(uri))
        .map_err(|_| HandshakeError::InvalidUri("invalid path or query"))?;
    // RFC 6455 §4.1 item 2: "The method of the request MUST be GET, and the HTTP version MUST be
    // at least 1.1."
    *request.version_mut() = Version::HTTP_11;

    let headers = request.headers_mut();
    headers.insert(HOST, host);
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    // Base64 output is made of A-Z, a-z, 0-9, '+', '/' and '=', all valid in a header value.
    let key_value = HeaderValue::from_str(&key).expect("base64 is a valid header value");
    headers.insert(SEC_WEBSOCKET_KEY, key_value);
    headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(VERSION));
    if !protocols.is_empty() {
        let list = protocols.join(", ");
        // Tokens are visible ASCII, checked above.
        let list = HeaderValue::try_from(list).expect("tokens are a valid header value");
        headers.insert(SEC_WEBSOCKET_PROTOCOL, list);
    }
    for (name, value) in extra_headers {
        headers.append(name.clone(), value.clone());
    }
    Ok((request, key))
}

/// The origin-form request target of `uri`: its path, `/` if empty, and its query.
fn request_target(uri: &Uri) -> String {
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// RFC 6455 §4.1 response check 5: "If the response includes a |Sec-WebSocket-Extensions| header
/// field and this header field indicates the use of an extension that was not present in the
/// client's handshake [...], the client MUST _Fail the WebSocket Connection_."
///
/// `offered` holds the names of the extensions the request offered. The header may repeat
/// (RFC 6455 errata 3433 corrects §11.3.2, which said it must not). Only the names are checked
/// here; a value that is not an extension list (§9.1) fails as
/// [`DeflateError::Malformed`].
fn check_extensions(headers: &HeaderMap, offered: &[&str]) -> Result<(), HandshakeError> {
    for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
        let extensions = parse_extensions(value.as_bytes())
            .map_err(|Malformed| HandshakeError::InvalidExtension(DeflateError::Malformed))?;
        for extension in extensions {
            if !offered
                .iter()
                .any(|o| o.eq_ignore_ascii_case(extension.name))
            {
                return Err(HandshakeError::UnrequestedExtension(
                    extension.name.to_owned(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
