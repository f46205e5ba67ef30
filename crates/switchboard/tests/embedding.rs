//! switchboard inside an axum application, through `PreparedUpgrade`: the handshake, the
//! subprotocol, permessage-deflate and the refusal of a bad request, as
//! `examples/axum_upgrade.rs` does it.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use switchboard::proto::handshake::server::reject_response;
use switchboard::{AcceptOptions, ConnectOptions, DeflateConfig, Message, PreparedUpgrade};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn upgrade(mut request: Request) -> Response {
    let mut head = switchboard::http::Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    let options = AcceptOptions {
        protocols: vec!["echo".into()],
        deflate: Some(DeflateConfig::default()),
        ..AcceptOptions::default()
    };
    let prepared = match PreparedUpgrade::new(&head, &options) {
        Ok(prepared) => prepared,
        Err(e) => {
            let (head, body) = reject_response(&e);
            let (parts, ()) = head.into_parts();
            return Response::from_parts(parts, Body::from(body));
        }
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = prepared.response().status();
    *response.headers_mut() = prepared.response().headers().clone();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = prepared.into_websocket(TokioIo::new(upgraded), BytesMut::new());
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    response
}

async fn start() -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Router::new()
        .route("/", get(|| async { "plain axum" }))
        .route("/ws", get(upgrade));
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
