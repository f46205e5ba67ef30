//! The server's handshake: RFC 6455's example request, every request check of §4.2.1, and
//! the heads it parses and writes.

use super::*;
use crate::handshake::client;
use crate::handshake::test_support::replace_line;
use proptest::prelude::*;

/// The client handshake of RFC 6455 §1.3.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\
    \r\n";

/// A masked "Hello" text frame (RFC 6455 §5.7).
const MASKED_HELLO: &[u8] = &[
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

fn parse(head: &str) -> Request<()> {
    let (req, len) = parse_request(head.as_bytes(), 8192)
        .expect("valid http")
        .expect("complete head");
    assert_eq!(len, head.len());
    req
}

fn rfc_request_with(prefix: &str, line: &str) -> String {
    replace_line(RFC_REQUEST, prefix, line)
}

fn written(resp: &Response<()>, body: &[u8]) -> String {
    let mut out = Vec::new();
    write_response(resp, body, &mut out);
    String::from_utf8(out).expect("ascii")
}

#[test]
fn rfc_example_request_is_accepted_with_rfc_accept_value() {
    let req = parse(RFC_REQUEST);
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/chat");
    assert_eq!(req.version(), Version::HTTP_11);
    assert!(is_upgrade_request(&req));
    validate_request(&req).expect("valid handshake");

    let resp = accept_response(&req, Some("chat")).expect("accepted");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()[SEC_WEBSOCKET_ACCEPT],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
    assert_eq!(
        written(&resp, b""),
        "HTTP/1.1 101 Switching Protocols\r\n\
         upgrade: websocket\r\n\
         connection: Upgrade\r\n\
         sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         sec-websocket-protocol: chat\r\n\
         \r\n"
    );
}

#[test]
fn accept_without_protocol_sends_no_protocol_header() {
    let resp = accept_response(&parse(RFC_REQUEST), None).expect("accepted");
    assert!(!resp.headers().contains_key(SEC_WEBSOCKET_PROTOCOL));
}

#[test]
fn accepting_a_protocol_the_client_did_not_offer_is_a_caller_error() {
    let err = accept_response(&parse(RFC_REQUEST), Some("mqtt")).expect_err("not offered");
    assert!(matches!(&err, HandshakeError::ProtocolNotOffered(p) if p == "mqtt"));
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// A request head, a test for the error it must give, and the status that error maps to.
type Case = (String, fn(&HandshakeError) -> bool, u16);

#[test]
fn each_violation_gives_its_variant_and_status() {
    use HandshakeError as E;
    let cases: Vec<Case> = vec![
        (
            RFC_REQUEST.replacen("GET", "POST", 1),
            |e| matches!(e, E::MethodNotGet),
            400,
        ),
        (
            RFC_REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1),
            |e| matches!(e, E::HttpVersion),
            400,
        ),
        (
            rfc_request_with("Host:", ""),
            |e| matches!(e, E::MissingHost),
            400,
        ),
        (
            rfc_request_with("Host:", "Host: a\r\nHost: b"),
            |e| matches!(e, E::DuplicateHeader(h) if h == HOST),
            400,
        ),
        (
            rfc_request_with("Upgrade:", ""),
            |e| matches!(e, E::MissingUpgrade),
            400,
        ),
        (
            rfc_request_with("Upgrade:", "Upgrade: h2c"),
            |e| matches!(e, E::UpgradeNotWebSocket),
            400,
        ),
        (
            rfc_request_with("Upgrade:", "Upgrade: websocket2"),
            |e| matches!(e, E::UpgradeNotWebSocket),
            400,
        ),
        (
            rfc_request_with("Connection:", ""),
            |e| matches!(e, E::ConnectionNotUpgrade),
            400,
        ),
        (
            rfc_request_with("Connection:", "Connection: keep-alive"),
            |e| matches!(e, E::ConnectionNotUpgrade),
            400,
        ),
        (
            rfc_request_with("Sec-WebSocket-Version:", ""),
            |e| matches!(e, E::MissingVersion),
            426,
        ),
        (
            rfc_request_with("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8"),
            |e| matches!(e, E::UnsupportedVersion),
            426,
        ),
        (
            rfc_request_with("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 13, 8"),
            |e| matches!(e, E::UnsupportedVersion),
            426,
        ),
        (
            rfc_request_with(
                "Sec-WebSocket-Version:",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13",
            ),
            |e| matches!(e, E::DuplicateHeader(h) if h == SEC_WEBSOCKET_VERSION),
            400,
        ),
        (
            rfc_request_with("Sec-WebSocket-Key:", ""),
            |e| matches!(e, E::MissingKey),
            400,
        ),
        (
            rfc_request_with("Sec-WebSocket-Key:", "Sec-WebSocket-Key: not base64!"),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            // base64 of 15 bytes
            rfc_request_with(
                "Sec-WebSocket-Key:",
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
            ),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            // base64 of 17 bytes
            rfc_request_with(
                "Sec-WebSocket-Key:",
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            |e| matches!(e, E::InvalidKey),
            400,
        ),
        (
            rfc_request_with(
                "Sec-WebSocket-Key:",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ),
            |e| matches!(e, E::DuplicateHeader(h) if h == SEC_WEBSOCKET_KEY),
            400,
        ),
    ];
    for (head, is_expected, status) in cases {
        let req = parse(&head);
        let err = validate_request(&req).expect_err(&head);
        assert!(is_expected(&err), "{head:?} gave {err:?}");
        assert_eq!(err.status(), status, "{head:?}");
        // accept_response runs the same checks.
        let err = accept_response(&req, None).expect_err(&head);
        assert!(is_expected(&err), "{head:?} gave {err:?}");

        let (resp, body) = reject_response(&err);
        assert_eq!(resp.status(), status);
        assert_eq!(body, format!("{err}\n"));
        let version = resp.headers().get(SEC_WEBSOCKET_VERSION);
        if status == 426 {
            assert_eq!(version.expect("version header"), "13");
            assert_eq!(resp.headers()[UPGRADE], "websocket");
        } else {
            assert!(version.is_none());
            assert_eq!(resp.headers()[CONNECTION], "close");
        }
    }
}

#[test]
fn connection_token_list_and_lower_case_values_are_accepted() {
    let head = rfc_request_with("Connection:", "Connection: keep-alive, Upgrade");
    validate_request(&parse(&head)).expect("token in a list");

    let head = rfc_request_with("Upgrade:", "upgrade: WebSocket");
    let head = replace_line(&head, "Connection:", "connection: upgrade");
    validate_request(&parse(&head)).expect("lower-case values and names");

    let head = rfc_request_with("Upgrade:", "Upgrade: h2c, websocket");
    validate_request(&parse(&head)).expect("websocket among other protocols");
}

#[test]
fn key_with_surrounding_whitespace_is_trimmed_before_hashing() {
    let head = rfc_request_with(
        "Sec-WebSocket-Key:",
        "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  ",
    );
    let resp = accept_response(&parse(&head), None).expect("accepted");
    assert_eq!(
        resp.headers()[SEC_WEBSOCKET_ACCEPT],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn rfc_section_4_1_example_key_with_trailing_bits_is_accepted() {
    let head = rfc_request_with(
        "Sec-WebSocket-Key:",
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==",
    );
    validate_request(&parse(&head)).expect("16-byte key");
}

#[test]
fn is_upgrade_request_is_false_for_plain_http() {
    let req = parse("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert!(!is_upgrade_request(&req));
    let req = parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n");
    assert!(!is_upgrade_request(&req));
}

#[test]
fn requested_protocols_lists_all_headers_in_order_trimmed() {
    let head = rfc_request_with(
        "Sec-WebSocket-Protocol:",
        "Sec-WebSocket-Protocol: chat ,superchat\r\nSec-WebSocket-Protocol:  v2.mqtt, ",
    );
    let req = parse(&head);
    let offered: Vec<&str> = requested_protocols(&req).collect();
    assert_eq!(offered, ["chat", "superchat", "v2.mqtt"]);
    let resp = accept_response(&req, Some("v2.mqtt")).expect("offered");
    assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "v2.mqtt");
}

#[test]
fn every_partial_head_is_incomplete() {
    let bytes = RFC_REQUEST.as_bytes();
    for end in 0..bytes.len() {
        let parsed = parse_request(&bytes[..end], 8192).expect("no error on a prefix");
        assert!(parsed.is_none(), "prefix of {end} bytes");
    }
}

#[test]
fn bytes_after_the_head_are_left_for_the_caller() {
    let mut buf = RFC_REQUEST.as_bytes().to_vec();
    buf.extend_from_slice(MASKED_HELLO);
    let (_, len) = parse_request(&buf, 8192).expect("valid").expect("complete");
    assert_eq!(len, RFC_REQUEST.len());
    assert_eq!(&buf[len..], MASKED_HELLO);
}

#[test]
fn head_longer_than_the_limit_is_too_large() {
    let bytes = RFC_REQUEST.as_bytes();
    let limit = bytes.len() - 1;

    // Complete, but one byte too long.
    let err = parse_request(bytes, limit).expect_err("too large");
    assert!(matches!(err, HandshakeError::HeadTooLarge { limit: l } if l == limit));
    assert_eq!(err.status(), 431);
    assert_eq!(reject_response(&err).0.status(), 431);

    // Incomplete, and already past the limit.
    let endless = format!("GET / HTTP/1.1\r\nX-Padding: {}", "a".repeat(100));
    let err = parse_request(endless.as_bytes(), 64).expect_err("too large");
    assert!(matches!(err, HandshakeError::HeadTooLarge { limit: 64 }));

    // Exactly at the limit is fine.
    assert!(parse_request(bytes, bytes.len()).expect("fits").is_some());
    // Incomplete but within the limit: wait for more.
    assert!(parse_request(&bytes[..10], 10).expect("fits").is_none());
}

#[test]
fn too_many_headers_is_431() {
    let mut head = String::from("GET / HTTP/1.1\r\n");
    for i in 0..=MAX_HEADERS {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let err = parse_request(head.as_bytes(), 1 << 16).expect_err("too many");
    assert!(matches!(err, HandshakeError::TooManyHeaders));
    assert_eq!(err.status(), 431);
}

#[test]
fn malformed_head_is_400() {
    for head in [
        &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        // The start of a TLS ClientHello, as sent to a plain-text port.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let err = parse_request(head, 8192).expect_err("malformed");
        assert!(matches!(err, HandshakeError::MalformedHttp(_)), "{err:?}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn reject_response_serializes_with_length_and_close() {
    let (resp, body) = reject_response(&HandshakeError::UnsupportedVersion);
    let text = written(&resp, body.as_bytes());
    assert!(
        text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nsec-websocket-version: 13\r\n"), "{text}");
    assert!(
        text.contains("\r\nconnection: Upgrade, close\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
        "{text}"
    );
    assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
    assert!(body.ends_with('\n') && !body.trim_end().contains('\n'));
    assert!(!resp.headers().contains_key(http::header::ALLOW));
}

#[test]
fn request_built_by_the_client_passes_validation() {
    let uri: Uri = "ws://example.com:9001/chat?room=1".parse().expect("uri");
    let (req, _key) =
        client::build_request(&uri, &["chat"], &http::HeaderMap::new()).expect("request");
    let mut wire = Vec::new();
    client::write_request(&req, &mut wire);
    let (parsed, len) = parse_request(&wire, 8192)
        .expect("valid")
        .expect("complete");
    assert_eq!(len, wire.len());
    assert_eq!(parsed.uri(), "/chat?room=1");
    assert_eq!(parsed.headers(), req.headers());
    validate_request(&parsed).expect("valid handshake");
}

proptest! {
    #[test]
    fn parse_request_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some((req, len))) = parse_request(&buf, 256) {
            prop_assert!(len <= buf.len() && len <= 256);
            match accept_response(&req, requested_protocols(&req).next()) {
                Ok(resp) => write_response(&resp, b"", &mut Vec::new()),
                Err(err) => {
                    let (resp, body) = reject_response(&err);
                    write_response(&resp, body.as_bytes(), &mut Vec::new());
                }
            }
        }
    }

    #[test]
    fn arbitrary_header_values_never_panic(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 8),
    ) {
        let names = [
            "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
            "Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
        ];
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for (name, value) in names.iter().zip(&values) {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend(value.iter().filter(|&&b| b != b'\r' && b != b'\n'));
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        if let Ok(Some((req, _))) = parse_request(&head, 4096) {
            let _ = accept_response(&req, requested_protocols(&req).next());
        }
    }

    #[test]
    fn trailing_bytes_never_change_the_head(
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = RFC_REQUEST.as_bytes().to_vec();
        buf.extend_from_slice(&tail);
        let (req, len) = parse_request(&buf, 8192).expect("valid").expect("complete");
        prop_assert_eq!(len, RFC_REQUEST.len());
        prop_assert!(validate_request(&req).is_ok());
    }
}

/// RFC 8441: a WebSocket over an HTTP/2 stream.
mod extended_connect {
    use super::*;

    fn connect(version: Option<&str>) -> Request<()> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/chat")
            .header(SEC_WEBSOCKET_PROTOCOL, "chat, superchat");
        if let Some(version) = version {
            request = request.header(SEC_WEBSOCKET_VERSION, version);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn is_accepted_with_200_and_no_accept_key() {
        let request = connect(Some("13"));
        assert!(is_connect_request(&request));
        assert!(!is_upgrade_request(&request));
        let response = connect_response(&request, Some("chat")).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
        assert!(!response.headers().contains_key(SEC_WEBSOCKET_ACCEPT));
        assert!(!response.headers().contains_key(UPGRADE));
    }

    #[test]
    fn a_get_is_not_one() {
        let mut request = connect(Some("13"));
        *request.method_mut() = Method::GET;
        assert!(!is_connect_request(&request));
        *request.method_mut() = Method::CONNECT;
        *request.version_mut() = Version::HTTP_11;
        assert!(!is_connect_request(&request));
    }

    #[test]
    fn a_wrong_or_missing_version_is_400_naming_13() {
        for request in [connect(Some("8")), connect(None)] {
            let err = connect_response(&request, None).unwrap_err();
            let (response, _) = reject_connect_response(&err);
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
            assert!(!response.headers().contains_key(CONNECTION));
            assert!(!response.headers().contains_key(UPGRADE));
        }
    }

    #[test]
    fn names_only_an_offered_subprotocol() {
        let err = connect_response(&connect(Some("13")), Some("mqtt")).unwrap_err();
        assert!(matches!(err, HandshakeError::ProtocolNotOffered(_)));
    }
}
