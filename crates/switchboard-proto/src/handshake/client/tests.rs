//! The client's handshake: RFC 6455's example response, the request it builds, and every
//! response check of §4.1.

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
    let err = build_request(&uri("ws://example.com/"), &[], &extra).expect_err("reserved header");
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
    let err =
        parse_response(b"HTTP/1.1 101 Switching Protocols\r\nX: aaaa", 16).expect_err("too large");
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

/// RFC 8441: the extended CONNECT carries the target as pseudo-headers and no key, and the
/// server's checks accept it.
#[test]
fn http2_request_is_a_connect_without_key_that_the_server_accepts() {
    let mut extra = HeaderMap::new();
    extra.insert("origin", HeaderValue::from_static("https://example.com"));
    let request = build_http2_request(
        &uri("wss://example.com:8443/chat?room=1"),
        &["chat", "superchat"],
        &extra,
    )
    .unwrap();
    assert_eq!(request.method(), Method::CONNECT);
    assert_eq!(request.version(), Version::HTTP_2);
    assert_eq!(
        request.uri().to_string(),
        "https://example.com:8443/chat?room=1"
    );
    let headers = request.headers();
    for absent in [HOST, UPGRADE, CONNECTION, SEC_WEBSOCKET_KEY] {
        assert!(!headers.contains_key(&absent), "{absent}");
    }
    assert_eq!(headers[SEC_WEBSOCKET_VERSION], "13");
    assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat, superchat");
    assert_eq!(headers["origin"], "https://example.com");
    assert!(server::is_connect_request(&request));
    let response = server::connect_response(&request, Some("superchat")).unwrap();
    let agreed = validate_http2_response(&response, &["chat", "superchat"], None).unwrap();
    assert_eq!(agreed.protocol.as_deref(), Some("superchat"));

    let plain = build_http2_request(&uri("ws://example.com/"), &[], &HeaderMap::new()).unwrap();
    assert_eq!(plain.uri().to_string(), "http://example.com/");
    let err = build_http2_request(&uri("wss://example.com/"), &[], &{
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("elsewhere"));
        headers
    })
    .unwrap_err();
    assert!(matches!(err, HandshakeError::ReservedHeader(_)), "{err:?}");
}

/// RFC 8441 §5: 2xx accepts; any other status is the refusal's, and the subprotocol and
/// extension checks of RFC 6455 still apply.
#[test]
fn http2_response_needs_2xx_and_only_what_was_offered() {
    let response = |status: u16, headers: &[(&str, &str)]| {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        *response.version_mut() = Version::HTTP_2;
        for (name, value) in headers {
            response.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    };
    assert_eq!(
        validate_http2_response(&response(200, &[]), &[], None).unwrap(),
        Agreed::default()
    );
    for status in [101, 400, 404, 501, 503] {
        let err = validate_http2_response(&response(status, &[]), &[], None).unwrap_err();
        assert!(
            matches!(err, HandshakeError::UnexpectedStatus(s) if s.as_u16() == status),
            "{err:?}"
        );
    }
    let err = validate_http2_response(
        &response(200, &[("sec-websocket-protocol", "other")]),
        &["chat"],
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, HandshakeError::UnrequestedProtocol(_)),
        "{err:?}"
    );
    let deflated = response(200, &[("sec-websocket-extensions", "permessage-deflate")]);
    let err = validate_http2_response(&deflated, &[], None).unwrap_err();
    assert!(
        matches!(err, HandshakeError::UnrequestedExtension(_)),
        "{err:?}"
    );
    let agreed = validate_http2_response(&deflated, &[], Some(&DeflateConfig::default())).unwrap();
    assert!(agreed.deflate.is_some());
}
