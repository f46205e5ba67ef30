//! switchboard inside an axum application, through `PreparedUpgrade`: the handshake, the
//! subprotocol, permessage-deflate and the refusal of a bad request, with the route of
//! `examples/axum_upgrade.rs` itself, over HTTP/1.1 and over HTTP/2 (extended CONNECT, with
//! a raw `h2` client), in axum and in an application's own hyper HTTP/2 server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http_body_util::Full;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchboard::http::{Method, Request, StatusCode};
use switchboard::{ConnectOptions, DeflateConfig, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

#[allow(dead_code)] // its `main`
#[path = "../examples/axum_upgrade.rs"]
mod example;

async fn start() -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Router::new()
        .route("/", get(|| async { "plain axum" }))
        .route("/ws", example::websocket_route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, server)
}

#[tokio::test]
async fn an_axum_route_upgrades_to_a_switchboard_websocket() {
    let (addr, server) = start().await;

    let options = ConnectOptions {
        protocols: vec!["echo".into()],
        ..ConnectOptions::default()
    };
    let (mut ws, response) = switchboard::connect_with(&format!("ws://{addr}/ws"), &options)
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("echo"));
    assert_eq!(response.status(), 101);
    // Not offered, so not agreed.
    assert!(!response.headers().contains_key("sec-websocket-extensions"));
    assert_eq!(ws.deflate(), None);
    for text in ["one", "two"] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
    }
    let big = Message::binary(vec![1u8; 200_000]);
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), big);
    ws.close(switchboard::CloseCode::NORMAL, "").await.unwrap();

    // A GET that is not an upgrade gets switchboard's 400 through axum.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("missing upgrade header"), "{answer}");
    server.abort();
}

#[tokio::test]
async fn an_axum_route_negotiates_permessage_deflate() {
    let (addr, server) = start().await;
    let options = ConnectOptions {
        deflate: Some(DeflateConfig::default()),
        ..ConnectOptions::default()
    };
    let (mut ws, response) = switchboard::connect_with(&format!("ws://{addr}/ws"), &options)
        .await
        .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-extensions"],
        "permessage-deflate"
    );
    assert!(ws.deflate().is_some());
    for message in [
        Message::text("short"),
        Message::text("{\"op\":\"publish\"} ".repeat(5000)),
        Message::binary(vec![3u8; 300_000]),
    ] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), message);
    }
    ws.close(switchboard::CloseCode::NORMAL, "").await.unwrap();
    server.abort();
}

/// An HTTP/2 connection with prior knowledge to `addr` whose SETTINGS have arrived.
async fn h2_connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    let settings = async {
        while !client.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, settings)
        .await
        .expect("SETTINGS_ENABLE_CONNECT_PROTOCOL");
    timeout(WAIT, client.ready()).await.unwrap().unwrap()
}

/// An extended CONNECT to `/ws` (RFC 8441) with `:protocol` and the version header.
fn connect_request(protocol: Option<&str>, version: &str) -> Request<()> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri("http://localhost/ws")
        .header("sec-websocket-version", version)
        .header("sec-websocket-protocol", "echo")
        .body(())
        .unwrap();
    if let Some(protocol) = protocol {
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from(protocol));
    }
    request
}

/// A masked client text frame (RFC 6455 §5.3), payload under 126 bytes.
fn masked_text(payload: &[u8]) -> Bytes {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    Bytes::from(frame)
}

/// Two WebSockets on one HTTP/2 connection to `addr`, each echoing on its own stream; then
/// refusals that end their stream only.
async fn websockets_over_http2(addr: SocketAddr) {
    let mut client = h2_connect(addr).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
        let request = connect_request(Some("websocket"), "13");
        let (response, send) = client.send_request(request, false).unwrap();
        let response = timeout(WAIT, response).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("sec-websocket-accept"));
        assert_eq!(response.headers()["sec-websocket-protocol"], "echo");
        sockets.push((send, response.into_body(), BytesMut::new()));
    }
    for round in 0..3 {
        for (i, (send, body, received)) in sockets.iter_mut().enumerate() {
            let text = format!("stream {i} round {round}");
            send.send_data(masked_text(text.as_bytes()), false).unwrap();
            let want = [&[0x81, text.len() as u8][..], text.as_bytes()].concat();
            while received.len() < want.len() {
                let data = timeout(WAIT, body.data()).await.unwrap().unwrap().unwrap();
                let _ = body.flow_control().release_capacity(data.len());
                received.extend_from_slice(&data);
            }
            assert_eq!(received.split_to(want.len()), want);
        }
    }
    // A CONNECT without `:protocol` has no `:path` either: a router answers 404 before the
    // route's 400.
    for (what, request, status) in [
        (
            "version 8",
            connect_request(Some("websocket"), "8"),
            &[400][..],
        ),
        ("no :protocol", connect_request(None, "13"), &[400, 404]),
        (
            "another :protocol",
            connect_request(Some("webtransport"), "13"),
            &[400],
        ),
    ] {
        client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
        let (response, _send) = client.send_request(request, false).unwrap();
        let response = timeout(WAIT, response).await.unwrap().unwrap();
        let got = response.status().as_u16();
        assert!(status.contains(&got), "{what}: {got}");
        assert!(!response.headers().contains_key("connection"), "{what}");
        if what == "version 8" {
            assert_eq!(response.headers()["sec-websocket-version"], "13");
        }
    }
    // The refusals ended their streams only.
    let (send, body, received) = &mut sockets[0];
    send.send_data(masked_text(b"still open"), false).unwrap();
    while received.len() < 12 {
        let data = timeout(WAIT, body.data()).await.unwrap().unwrap().unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        received.extend_from_slice(&data);
    }
    assert_eq!(&received[2..], b"still open");
}

#[tokio::test]
async fn an_axum_route_takes_websockets_over_http2() {
    let (addr, server) = start().await;
    websockets_over_http2(addr).await;
    server.abort();
}

#[tokio::test]
async fn an_applications_own_hyper_http2_server_takes_websockets() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = service_fn(|mut request| async move {
            let response = example::upgrade(&mut request);
            Ok::<_, Infallible>(response.map(Full::<Bytes>::from))
        });
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.enable_connect_protocol();
        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
    });
    websockets_over_http2(addr).await;
    server.abort();
}

#[tokio::test]
async fn accept_request_leaves_an_http2_connect_to_the_http2_server() {
    let mut request = connect_request(Some("websocket"), "13");
    *request.version_mut() = switchboard::http::Version::HTTP_2;
    let (mut client, server) = tokio::io::duplex(1024);
    let options = switchboard::AcceptOptions::default();
    let accepted = switchboard::accept_request(&request, server, BytesMut::new(), &options).await;
    assert!(matches!(accepted, Err(switchboard::Error::Handshake(_))));
    // Nothing was written: the answer is the HTTP/2 server's to send.
    let mut written = Vec::new();
    client.read_to_end(&mut written).await.unwrap();
    assert!(written.is_empty(), "{written:?}");
}
