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

use super::{
    BASE64, HandshakeError, MAX_HEADERS, VERSION, accept_key, head_window, header_map,
    http_version, incomplete, parse_error, single, version_str, write_headers,
};
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
mod tests {
    use super::*;
    use crate::handshake::server;
    use crate::handshake::test_support::replace_line;
    use proptest::prelude::*;

    /// The server handshake of RFC 6455 §1.2, answering the key `dGhlIHNhbXBsZSBub25jZQ==`.
    const RFC_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\
        \r\n";
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// An unmasked "Hello" text frame (RFC 6455 §5.7).
    const HELLO: &[u8] = &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    fn build(s: &str) -> Result<(Request<()>, String), HandshakeError> {
        build_request(&uri(s), &[], &HeaderMap::new())
    }

    fn parse(head: &str) -> Response<()> {
        let (resp, len) = parse_response(head.as_bytes(), 8192)
            .expect("valid http")
            .expect("complete head");
        assert_eq!(len, head.len());
        resp
    }

    fn validate(head: &str, protocols: &[&str]) -> Result<Option<String>, HandshakeError> {
        validate_response(&parse(head), RFC_KEY, protocols)
    }

    #[test]
    fn rfc_example_response_is_valid_and_names_the_protocol() {
        let chosen = validate(RFC_RESPONSE, &["chat", "superchat"]).expect("valid");
        assert_eq!(chosen.as_deref(), Some("chat"));
    }

    #[test]
    fn built_request_has_the_handshake_headers_and_a_random_16_byte_key() {
        let mut extra = HeaderMap::new();
        extra.insert("origin", HeaderValue::from_static("http://example.com"));
        let (req, key) = build_request(
            &uri("ws://example.com/chat?x=1"),
            &["chat", "superchat"],
            &extra,
        )
        .expect("request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/chat?x=1");
        let headers = req.headers();
        assert_eq!(headers[HOST], "example.com");
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[CONNECTION], "Upgrade");
        assert_eq!(headers[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat, superchat");
        assert_eq!(headers["origin"], "http://example.com");
        assert_eq!(headers[SEC_WEBSOCKET_KEY], key.as_str());
        assert_eq!(BASE64.decode(&key).expect("base64").len(), 16);

        let (_, other_key) = build("ws://example.com/chat").expect("request");
        assert_ne!(key, other_key, "each request gets a fresh nonce");
    }

    #[test]
    fn request_is_written_in_origin_form() {
        let (req, key) = request_with_nonce(
            &uri("wss://example.com/chat"),
            &[],
            &HeaderMap::new(),
            [0; 16],
        )
        .expect("request");
        assert_eq!(key, "AAAAAAAAAAAAAAAAAAAAAA==");
        let mut out = Vec::new();
        write_request(&req, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "GET /chat HTTP/1.1\r\n\
             host: example.com\r\n\
             upgrade: websocket\r\n\
             connection: Upgrade\r\n\
             sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\
             sec-websocket-version: 13\r\n\
             \r\n"
        );
    }

    #[test]
    fn host_omits_the_default_port_and_keeps_any_other() {
        for (uri, host) in [
            ("ws://example.com/", "example.com"),
            ("ws://example.com:80/", "example.com"),
            ("wss://example.com:443/", "example.com"),
            ("http://example.com:80/", "example.com"),
            ("https://example.com:443/", "example.com"),
            ("ws://example.com:8080/", "example.com:8080"),
            ("wss://example.com:80/", "example.com:80"),
            ("ws://example.com:443/", "example.com:443"),
            ("ws://user:secret@example.com:9001/", "example.com:9001"),
            ("ws://[::1]:9001/", "[::1]:9001"),
            ("wss://[::1]/", "[::1]"),
        ] {
            let (req, _) = build(uri).expect(uri);
            assert_eq!(req.headers()[HOST], host, "{uri}");
        }
    }

    #[test]
    fn empty_path_becomes_slash_and_query_is_kept() {
        for (uri, target) in [
            ("ws://example.com", "/"),
            ("ws://example.com?room=1", "/?room=1"),
            ("ws://example.com/a/b?c=d&e", "/a/b?c=d&e"),
        ] {
            let (req, _) = build(uri).expect(uri);
            assert_eq!(req.uri(), target, "{uri}");
        }
    }

    #[test]
    fn non_websocket_uri_is_refused() {
        for uri in ["ftp://example.com/", "/chat", "example.com:80"] {
            let err = build(uri).expect_err(uri);
            assert!(
                matches!(err, HandshakeError::InvalidUri(_)),
                "{uri}: {err:?}"
            );
        }
    }

    #[test]
    fn protocols_must_be_unique_tokens() {
        for protocols in [&[""][..], &["a b"], &["a,b"], &["chat", "chat"], &["é"]] {
            let err = build_request(&uri("ws://example.com/"), protocols, &HeaderMap::new())
                .expect_err("invalid protocol");
            assert!(matches!(err, HandshakeError::InvalidProtocol(_)), "{err:?}");
        }
    }

    #[test]
    fn extra_headers_may_not_override_handshake_headers() {
        let mut extra = HeaderMap::new();
        extra.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static("x"));
        let err =
            build_request(&uri("ws://example.com/"), &[], &extra).expect_err("reserved header");
        assert!(matches!(err, HandshakeError::ReservedHeader(h) if h == SEC_WEBSOCKET_KEY));
    }

    #[test]
    fn round_trip_through_the_server_agrees_on_a_protocol() {
        let protocols = ["v2.chat", "v1.chat"];
        let (req, key) = build_request(&uri("ws://localhost:9001/"), &protocols, &HeaderMap::new())
            .expect("request");
        let mut wire = Vec::new();
        write_request(&req, &mut wire);

        let (received, len) = server::parse_request(&wire, 8192)
            .expect("valid")
            .expect("complete");
        assert_eq!(len, wire.len());
        server::validate_request(&received).expect("valid handshake");
        let chosen = server::requested_protocols(&received)
            .find(|p| *p == "v1.chat")
            .expect("offered");
        let resp = server::accept_response(&received, Some(chosen)).expect("accepted");
        let mut reply = Vec::new();
        server::write_response(&resp, b"", &mut reply);
        reply.extend_from_slice(HELLO);

        let (answer, len) = parse_response(&reply, 8192)
            .expect("valid")
            .expect("complete");
        assert_eq!(&reply[len..], HELLO);
        let chosen = validate_response(&answer, &key, &protocols).expect("valid response");
        assert_eq!(chosen.as_deref(), Some("v1.chat"));
    }

    #[test]
    fn round_trip_without_protocols_chooses_none() {
        let (req, key) = build("wss://example.com/").expect("request");
        let resp = server::accept_response(&req, None).expect("accepted");
        assert_eq!(validate_response(&resp, &key, &[]).expect("valid"), None);
    }

    #[test]
    fn wrong_or_missing_accept_is_refused() {
        let err = validate_response(&parse(RFC_RESPONSE), "AAAAAAAAAAAAAAAAAAAAAA==", &["chat"])
            .expect_err("other key");
        assert!(matches!(err, HandshakeError::AcceptMismatch), "{err:?}");

        let head = replace_line(RFC_RESPONSE, "Sec-WebSocket-Accept:", "");
        let err = validate(&head, &["chat"]).expect_err("no accept");
        assert!(matches!(err, HandshakeError::MissingAccept), "{err:?}");

        let head = replace_line(
            RFC_RESPONSE,
            "Sec-WebSocket-Accept:",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        );
        let err = validate(&head, &["chat"]).expect_err("two accepts");
        assert!(matches!(err, HandshakeError::DuplicateHeader(h) if h == SEC_WEBSOCKET_ACCEPT));
    }

    #[test]
    fn accept_with_surrounding_whitespace_is_valid() {
        let head = replace_line(
            RFC_RESPONSE,
            "Sec-WebSocket-Accept:",
            "Sec-WebSocket-Accept: \t s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\t ",
        );
        validate(&head, &["chat"]).expect("whitespace is ignored");
    }

    #[test]
    fn unrequested_protocol_is_refused() {
        let err = validate(RFC_RESPONSE, &["superchat"]).expect_err("not offered");
        assert!(matches!(&err, HandshakeError::UnrequestedProtocol(p) if p == "chat"));
        let err = validate(RFC_RESPONSE, &[]).expect_err("none offered");
        assert!(matches!(&err, HandshakeError::UnrequestedProtocol(p) if p == "chat"));

        let head = replace_line(
            RFC_RESPONSE,
            "Sec-WebSocket-Protocol:",
            "Sec-WebSocket-Protocol: chat, superchat",
        );
        let err = validate(&head, &["chat", "superchat"]).expect_err("a list is not a choice");
        assert!(
            matches!(err, HandshakeError::UnrequestedProtocol(_)),
            "{err:?}"
        );

        let head = replace_line(
            RFC_RESPONSE,
            "Sec-WebSocket-Protocol:",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat",
        );
        let err = validate(&head, &["chat"]).expect_err("two protocol headers");
        assert!(matches!(err, HandshakeError::DuplicateHeader(h) if h == SEC_WEBSOCKET_PROTOCOL));
    }

    #[test]
    fn server_may_choose_no_protocol() {
        let head = replace_line(RFC_RESPONSE, "Sec-WebSocket-Protocol:", "");
        assert_eq!(validate(&head, &["chat"]).expect("valid"), None);
    }

    #[test]
    fn unrequested_extension_is_refused() {
        let head = replace_line(
            RFC_RESPONSE,
            "Sec-WebSocket-Protocol:",
            "Sec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10",
        );
        let err = validate(&head, &["chat"]).expect_err("not offered");
        assert!(
            matches!(&err, HandshakeError::UnrequestedExtension(e) if e == "permessage-deflate"),
            "{err:?}"
        );
    }

    #[test]
    fn deflate_offer_and_answer_round_trip_through_the_server() {
        let config = DeflateConfig {
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let (mut req, key) =
            build_request(&uri("ws://localhost/"), &[], &HeaderMap::new()).expect("request");
        req.headers_mut()
            .insert(SEC_WEBSOCKET_EXTENSIONS, config.offer());
        let mut wire = Vec::new();
        write_request(&req, &mut wire);
        let (received, _) = server::parse_request(&wire, 8192)
            .expect("valid")
            .expect("head");
        let agreed = DeflateConfig::default()
            .negotiate(received.headers())
            .expect("accepted");
        let mut resp = server::accept_response(&received, None).expect("accepted");
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_EXTENSIONS, agreed.to_header());
        let mut reply = Vec::new();
        server::write_response(&resp, b"", &mut reply);
        let (answer, _) = parse_response(&reply, 8192).expect("valid").expect("head");
        let got = validate_response_with(&answer, &key, &[], Some(&config)).expect("valid");
        assert_eq!(got.deflate, Some(agreed));
        assert!(agreed.client_no_context_takeover);

        // Without an offer, the same answer is an unrequested extension.
        let err = validate_response(&answer, &key, &[]).expect_err("not offered");
        assert!(
            matches!(err, HandshakeError::UnrequestedExtension(_)),
            "{err:?}"
        );
        // An answer the offer did not allow fails the handshake.
        let mut bad = answer.clone();
        bad.headers_mut().insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; server_max_window_bits=16"),
        );
        let err = validate_response_with(&bad, &key, &[], Some(&config)).expect_err("invalid");
        assert!(
            matches!(err, HandshakeError::InvalidExtension(_)),
            "{err:?}"
        );
        // A server that declines leaves the connection uncompressed.
        let mut declined = answer;
        declined.headers_mut().remove(SEC_WEBSOCKET_EXTENSIONS);
        let got = validate_response_with(&declined, &key, &[], Some(&config)).expect("valid");
        assert_eq!(got.deflate, None);
    }

    #[test]
    fn offered_extensions_are_accepted_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.append(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("Permessage-Deflate; server_no_context_takeover"),
        );
        headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(""));
        check_extensions(&headers, &["permessage-deflate"]).expect("offered");
        assert!(check_extensions(&headers, &[]).is_err());
        check_extensions(&HeaderMap::new(), &[]).expect("no header");
    }

    #[test]
    fn non_101_status_is_unexpected() {
        let err =
            validate("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", &[]).expect_err("404");
        assert!(matches!(err, HandshakeError::UnexpectedStatus(s) if s == StatusCode::NOT_FOUND));
        assert_eq!(
            err.to_string(),
            "expected 101 switching protocols, got 404 Not Found"
        );
    }

    #[test]
    fn upgrade_and_connection_are_checked() {
        let head = replace_line(RFC_RESPONSE, "Upgrade:", "");
        let err = validate(&head, &["chat"]).expect_err("no upgrade");
        assert!(matches!(err, HandshakeError::MissingUpgrade), "{err:?}");

        let head = replace_line(RFC_RESPONSE, "Upgrade:", "Upgrade: websocket, h2c");
        let err = validate(&head, &["chat"]).expect_err("not exactly websocket");
        assert!(
            matches!(err, HandshakeError::UpgradeNotWebSocket),
            "{err:?}"
        );

        let head = replace_line(RFC_RESPONSE, "Connection:", "Connection: keep-alive");
        let err = validate(&head, &["chat"]).expect_err("no upgrade token");
        assert!(
            matches!(err, HandshakeError::ConnectionNotUpgrade),
            "{err:?}"
        );

        let head = replace_line(RFC_RESPONSE, "Upgrade:", "upgrade: WebSocket");
        let head = replace_line(&head, "Connection:", "connection: keep-alive, upgrade");
        validate(&head, &["chat"]).expect("case-insensitive values and names");
    }

    #[test]
    fn partial_response_is_incomplete_and_oversized_is_refused() {
        let bytes = RFC_RESPONSE.as_bytes();
        for end in 0..bytes.len() {
            let parsed = parse_response(&bytes[..end], 8192).expect("no error on a prefix");
            assert!(parsed.is_none(), "prefix of {end} bytes");
        }
        let err = parse_response(bytes, bytes.len() - 1).expect_err("too large");
        assert!(
            matches!(err, HandshakeError::HeadTooLarge { .. }),
            "{err:?}"
        );
        let err = parse_response(b"HTTP/1.1 101 Switching Protocols\r\nX: aaaa", 16)
            .expect_err("too large");
        assert!(
            matches!(err, HandshakeError::HeadTooLarge { limit: 16 }),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_response_is_refused() {
        for head in ["HTTP/1.1 abc OK\r\n\r\n", "SSH-2.0-OpenSSH_9.6\r\n\r\n"] {
            let err = parse_response(head.as_bytes(), 8192).expect_err(head);
            assert!(matches!(err, HandshakeError::MalformedHttp(_)), "{err:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_response_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some((resp, len))) = parse_response(&buf, 256) {
                prop_assert!(len <= buf.len() && len <= 256);
                let _ = validate_response(&resp, RFC_KEY, &["chat"]);
            }
        }

        #[test]
        fn built_requests_always_validate(
            path in "(/[a-z0-9._~-]{0,8}){0,3}",
            port in proptest::option::of(1u16..),
            protocols in proptest::collection::hash_set("[a-z][a-z0-9.]{0,7}", 0..4),
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let uri = uri(&format!("ws://example.com{port}{path}"));
            let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
            let (req, key) = build_request(&uri, &protocols, &HeaderMap::new()).expect("request");
            let mut wire = Vec::new();
            write_request(&req, &mut wire);
            let (received, _) =
                server::parse_request(&wire, 8192).expect("valid").expect("complete");
            let chosen = protocols.first().copied();
            let resp = server::accept_response(&received, chosen).expect("accepted");
            let got = validate_response(&resp, &key, &protocols).expect("valid response");
            prop_assert_eq!(got.as_deref(), chosen);
        }
    }
}
