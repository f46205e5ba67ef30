//! Bad handshakes get the right HTTP status and a one-line reason, and never a panic.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server() -> SocketAddr {
    let server = Server::builder()
        .max_head_size(1024)
        .handshake_timeout(Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws, _| async move { while ws.recv().await.is_some() {} }));
    addr
}

/// Sends `request` and returns everything the server answers before closing.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(answer).unwrap()
}

const GOOD_HEADERS: &str = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test]
async fn plain_http_request_gets_426() {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = exchange(server().await, request).await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("upgrade: websocket"),
        "{answer}"
    );
}

#[tokio::test]
async fn wrong_version_gets_426_naming_version_13() {
    let request = format!("GET / HTTP/1.1\r\n{GOOD_HEADERS}Sec-WebSocket-Version: 8\r\n\r\n");
    let answer = exchange(server().await, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer}"
    );
}

#[tokio::test]
async fn missing_key_gets_400_with_a_reason() {
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    let answer = exchange(server().await, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.ends_with("missing sec-websocket-key header\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn non_get_gets_400() {
    let request = format!("POST / HTTP/1.1\r\n{GOOD_HEADERS}Sec-WebSocket-Version: 13\r\n\r\n");
    let answer = exchange(server().await, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let request = format!("GET / HTTP/1.1\r\nX-Padding: {}\r\n\r\n", "a".repeat(2000));
    let answer = exchange(server().await, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn garbage_gets_400() {
    let answer = exchange(
        server().await,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_dropped() {
    let mut stream = TcpStream::connect(server().await).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server's handshake timeout (300 ms here) ends the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "connection still open");
}

#[tokio::test]
async fn server_still_serves_after_bad_clients() {
    let addr = server().await;
    for _ in 0..5 {
        let _ = exchange(addr, b"nonsense\r\n\r\n").await;
    }
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send("still here").await.unwrap();
    ws.close(switchboard::CloseCode::NORMAL, "").await.unwrap();
}
