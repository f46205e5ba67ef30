//! What the integration tests share.

use std::net::SocketAddr;

use switchboard::{Metrics, ServerBuilder};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// An upgrade request written by hand, for clients that then send what no well-behaved client
/// sends.
#[allow(dead_code)] // for the tests that speak raw TCP
pub(crate) const UPGRADE_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: localhost\r\n\
    Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Reads until the peer closes (or errors); returns everything read.
#[allow(dead_code)] // for the tests that speak raw TCP
pub(crate) async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Starts `builder`'s server running an echo handler; returns its address and metrics.
#[allow(dead_code)] // for the tests of connections in tasks
pub(crate) async fn echo_server(builder: ServerBuilder) -> (SocketAddr, Metrics) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    tokio::spawn(server.serve(|mut ws, _| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    }));
    (addr, metrics)
}
