//! switchboard inside an axum application, through `PreparedUpgrade`: the handshake, the
//! subprotocol, permessage-deflate and the refusal of a bad request, with the route of
//! `examples/axum_upgrade.rs` itself.

use axum::Router;
use axum::routing::get;
use switchboard::{ConnectOptions, DeflateConfig, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[allow(dead_code)] // its `main`
#[path = "../examples/axum_upgrade.rs"]
mod example;

async fn start() -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Router::new()
        .route("/", get(|| async { "plain axum" }))
        .route("/ws", get(example::upgrade));
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
